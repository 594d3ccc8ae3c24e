"""``Server``: a GenServer-like behaviour on a Thespian actor.

Subclass it and override the callbacks you need::

    class Counter(Server):
        def init(self, start=0):
            self.count = start

        def handle_call(self, request, from_):
            if request == "get":
                return self.count
            raise ValueError(f"unknown request {request!r}")

        def handle_cast(self, request):
            if request == "incr":
                self.count += 1

Semantics (OTP's ``gen_server``, in Python terms):

- ``init(*args, **kwargs)`` runs when the supervisor starts the child. An
  exception makes the start fail with a :class:`~supervision.reasons.Crash`;
  returning :data:`IGNORE` makes the supervisor record the child as not
  running. State lives on ``self``.
- ``handle_call(request, from_)``: the return value is the reply, unless it
  is :data:`NOREPLY`; then answer later with ``self.reply(from_, value)``.
- ``handle_cast(request)``: no reply.
- ``handle_info(message)``: everything else: timers set with
  :meth:`send_after`, ``CallReply`` answers to :meth:`call_async`,
  ``Exited`` for actors this server created itself, and raw messages.
- An exception in any handler ends the server ("let it crash"): a pending
  caller gets :class:`~supervision.NoProc` at once, ``terminate(crash)``
  runs, and the supervisor sees the :class:`~supervision.reasons.Crash`.
- Except: an exception of a class listed in ``reply_errors`` raised by
  ``handle_call`` is sent to the caller, who raises it, and the server lives
  on (bad input gets an error, not a crash).
- ``self.stop(reason="normal")`` ends the server after the current handler
  (and its reply) with ``reason``.
- ``terminate(reason)`` runs when the server stops for any reason it can
  observe: ``stop``, a crash, or its supervisor's shutdown (``"shutdown"``),
  as for an OTP server that traps exits. It does not run on a brutal kill or
  a SIGKILL, and it must finish within the child's ``shutdown`` seconds or
  the process is killed. An exception in ``terminate`` is logged; the exit
  reason stays what it was.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

from thespian.actors import (
    ActorExitRequest,
    ChildActorExited,
    WakeupMessage,
)

from .errors import NoProc, UnknownRequest
from .process import _DEFERRED, IGNORE, Process, log
from .protocol import (
    Call,
    CallReply,
    Cast,
    Exited,
    ExitNotice,
    From,
    ShutdownRequest,
)
from .reasons import KILLED, NORMAL, ExitReason

#: Returned by ``handle_call`` to reply later with ``Server.reply``.
NOREPLY: Any = type("NoReply", (), {"__repr__": lambda self: "NOREPLY"})()


class TimerRef(int):
    """Identifies a timer set with :meth:`Server.send_after`."""


class _Timer:
    __slots__ = ("message", "ref")

    def __init__(self, ref: int, message: Any) -> None:
        self.ref = ref
        self.message = message


class Server(Process):
    """A generic server actor; see the module documentation for the contract."""

    #: Exceptions that ``handle_call`` may raise to *answer* the caller with an
    #: error (the caller raises it) instead of crashing the server: use for
    #: bad requests (validation errors), never for broken state.
    reply_errors: tuple[type[Exception], ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sv_stop_reason: ExitReason = None
        self._sv_timers: set[int] = set()
        self._sv_timer_ids = itertools.count(1)
        self._sv_current_call: From | None = None
        self._sv_reaped: list[Any] = []

    # ------------------------------------------------------------ callbacks

    def init(self, *args: Any, **kwargs: Any) -> Any:
        """Set up state from the child spec's arguments.

        Raise to fail the start; return :data:`IGNORE` to start nothing.
        """
        return None

    def handle_call(self, request: Any, from_: From) -> Any:
        """Answer a call. The return value is the reply unless it is :data:`NOREPLY`.

        The default answers :class:`~supervision.UnknownRequest` and lives on.
        """
        raise _Unknown(request)

    def handle_cast(self, request: Any) -> None:
        """Handle a cast. The default logs it and lives on."""
        log.warning("%s: unexpected cast %r", type(self).__qualname__, request)

    def handle_info(self, message: Any) -> None:
        """Handle any other message. The default logs it and lives on."""
        log.warning("%s: unexpected message %r", type(self).__qualname__, message)

    def terminate(self, reason: ExitReason) -> None:
        """Clean up before exiting with ``reason``. The default does nothing."""

    # ------------------------------------------------------------ helpers

    def reply(self, from_: From, value: Any) -> None:
        """Send ``value`` as the reply to the call identified by ``from_``."""
        self.send(from_.address, CallReply(from_.ref, True, value))

    def reply_error(self, from_: From, error: Exception) -> None:
        """Make the caller of ``from_`` raise ``error`` (it must pickle)."""
        self.send(from_.address, CallReply(from_.ref, False, error))

    def stop(self, reason: ExitReason = NORMAL) -> None:
        """End this server with ``reason`` once the current handler returns."""
        self._sv_stop_reason = reason

    def send_after(self, seconds: float, message: Any) -> TimerRef:
        """Deliver ``message`` to ``handle_info`` after ``seconds``; returns a timer ref.

        On simpleSystemBase timers fire only while some caller waits on the
        actor system (``call``, ``Application.wait``...).
        """
        ref = TimerRef(next(self._sv_timer_ids))
        self._sv_timers.add(ref)
        self.wakeupAfter(timedelta(seconds=max(0.0, seconds)), _Timer(ref, message))
        return ref

    def cancel_timer(self, ref: TimerRef) -> bool:
        """Cancel a timer; False when it already fired or was cancelled."""
        if ref in self._sv_timers:
            self._sv_timers.discard(ref)
            return True
        return False

    def cast(self, address: Any, request: Any) -> None:
        """Send ``request`` to ``handle_cast`` of the server at ``address``."""
        self.send(address, Cast(request))

    def call_async(self, address: Any, request: Any) -> str:
        """Send a call without blocking; the ``CallReply`` with the returned ref
        arrives in ``handle_info``. (A blocking call inside an actor would
        deadlock the actor; this is the actor-side form of ``call``.)"""
        ref = uuid.uuid4().hex
        self.send(address, Call(ref, request))
        return ref

    # ------------------------------------------------------------ protocol

    def _sv_start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = self.init(*args, **kwargs)
        if result is IGNORE:
            return IGNORE
        if self._sv_stop_reason is not None:
            raise RuntimeError(f"stop({self._sv_stop_reason!r}) called in init")
        return result if result is not _DEFERRED else None

    def _sv_running(self, message: Any, sender: Any) -> None:
        if isinstance(message, Call):
            self._sv_on_call(message, sender)
        elif isinstance(message, Cast):
            self.handle_cast(message.request)
        elif isinstance(message, ShutdownRequest):
            if sender == self.parent:
                self._sv_finish(message.reason)
                return
            self.handle_info(message)
        elif isinstance(message, WakeupMessage) and isinstance(message.payload, _Timer):
            if message.payload.ref in self._sv_timers:
                self._sv_timers.discard(message.payload.ref)
                self.handle_info(message.payload.message)
        elif isinstance(message, ExitNotice):
            self._sv_reap(sender)
            self.handle_info(Exited(sender, message.reason))
        elif isinstance(message, ChildActorExited):
            if not self._sv_forget_reaped(message.childAddress):
                self.handle_info(Exited(message.childAddress, KILLED))
        else:
            self.handle_info(message)
        if self._sv_stop_reason is not None:
            self._sv_finish(self._sv_stop_reason)

    def _sv_on_call(self, message: Call, sender: Any) -> None:
        from_ = From(sender, message.ref)
        self._sv_current_call = from_
        try:
            result = self.handle_call(message.request, from_)
        except _Unknown as unknown:
            self._sv_current_call = None
            self.reply_error(
                from_, UnknownRequest(f"{type(self).__qualname__}: no handler for {unknown}")
            )
            return
        except self.reply_errors as error:
            self._sv_current_call = None
            self.reply_error(from_, error)
            return
        self._sv_current_call = None
        if result is not NOREPLY:
            self.reply(from_, result)

    def _sv_crash(self, exc: BaseException) -> None:
        if self._sv_current_call is not None:
            self.reply_error(
                self._sv_current_call,
                NoProc(f"{type(self).__qualname__} crashed handling the call: {exc!r}"),
            )
            self._sv_current_call = None
        super()._sv_crash(exc)

    def _sv_on_crash(self, reason: ExitReason) -> None:
        self._sv_run_terminate(reason)

    def _sv_abrupt_exit(self) -> None:
        self._sv_run_terminate("shutdown")

    def _sv_finish(self, reason: ExitReason) -> None:
        self._sv_run_terminate(reason)
        self._sv_exit(reason)

    def _sv_run_terminate(self, reason: ExitReason) -> None:
        self._sv_timers.clear()
        try:
            self.terminate(reason)
        except Exception:
            log.exception("%s: terminate(%r) raised", type(self).__qualname__, reason)

    def _sv_reap(self, address: Any) -> None:
        self.send(address, ActorExitRequest())
        self._sv_reaped.append(address)
        del self._sv_reaped[:-64]

    def _sv_forget_reaped(self, address: Any) -> bool:
        for i, known in enumerate(self._sv_reaped):
            if known == address:
                del self._sv_reaped[i]
                return True
        return False


class _Unknown(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__(repr(request))
