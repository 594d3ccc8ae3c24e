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
  with ``reason``. Called in ``init`` it makes the start fail with ``reason``
  itself (OTP's ``{stop, Reason}`` from ``init``). When ``handle_call``
  returns a reply and called ``stop``, ``terminate`` runs first and the
  reply is sent after it, even when ``terminate`` raises (OTP's
  ``{stop, Reason, Reply, State}``).
- ``terminate(reason)`` runs when the server stops for any reason it can
  observe: ``stop``, a crash, an exit signal from a link, or its
  supervisor's shutdown (``"shutdown"``), as for an OTP server that traps
  exits. It does not run on a brutal kill or a SIGKILL, and it must finish
  within the child's ``shutdown`` seconds or the process is killed. An
  exception in ``terminate`` becomes the exit reason (a ``Crash``), so a
  ``transient`` child stopping ``"normal"`` whose ``terminate`` fails is
  restarted.
- ``self.continue_with(term)``: once the current callback (``init``
  included, after the start was reported) returns, ``handle_continue(term)``
  runs before any other message (OTP's ``{continue, Term}``).
- ``self.idle_timeout(seconds)``: if no message arrives within ``seconds``
  after the current callback returns, ``handle_info(TIMEOUT)`` runs (OTP's
  timeout in a callback's return). Any message handled cancels it.
- Monitors and links with any actor (supervised or not, in any process of
  the actor system): ``self.monitor(address)`` -> ref, then
  ``handle_info(Down(ref, address, reason))`` exactly once, unless
  ``self.demonitor(ref)`` came first; ``self.link_to(address)`` (OTP's ``link``): when either
  side exits with a reason other than ``"normal"``, the other exits with
  the same reason (running ``terminate``), unless it sets
  ``trap_exit = True``: then it gets ``handle_info(Exited(address, reason))``
  (every reason, ``"normal"`` included). Dead targets give reason
  ``"noproc"`` at once, SIGKILLed ones ``"killed"``
  (see :mod:`supervision.monitors`).
- Every :func:`supervision.call` monitors the server while it waits: if the
  server exits before it replies (crash in any handler, ``stop`` with the
  reply deferred, SIGKILL), the caller raises ``NoProc`` with the exit
  reason at once.
- :func:`supervision.stop` (``gen_server:stop``) and
  :func:`supervision.get_state` (``sys:get_state``, answered by
  :meth:`Server.get_state`) work on any Server.
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
from .process import _DEFERRED, IGNORE, Process, _InitStop, log
from .protocol import (
    Call,
    CallReply,
    Cast,
    Exited,
    ExitNotice,
    From,
    GetState,
    ShutdownRequest,
    StopRequest,
)
from .reasons import KILLED, NORMAL, Crash, ExitReason

#: Returned by ``handle_call`` to reply later with ``Server.reply``.
NOREPLY: Any = type("NoReply", (), {"__repr__": lambda self: "NOREPLY"})()


#: What ``handle_info`` receives when an :meth:`Server.idle_timeout` ran out.
TIMEOUT: Any = type("Timeout", (), {"__repr__": lambda self: "TIMEOUT"})()


class TimerRef(int):
    """Identifies a timer set with :meth:`Server.send_after`."""


class _Idle:
    __slots__ = ("token",)

    def __init__(self, token: int) -> None:
        self.token = token


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
        self._sv_held_reply: tuple[From, Any] | None = None
        self._sv_continues: list[Any] = []
        self._sv_idle: float | None = None
        self._sv_idle_token = 0

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
        """Clean up before exiting with ``reason``. The default does nothing.

        An exception raised here replaces the exit reason with a ``Crash``.
        """

    def handle_continue(self, term: Any) -> None:
        """Run the work asked for with :meth:`continue_with`. The default raises
        (a continue nobody handles is a programming error: the server crashes)."""
        raise NotImplementedError(f"{type(self).__qualname__} has no handle_continue for {term!r}")

    def get_state(self) -> Any:
        """What :func:`supervision.get_state` returns (must pickle on
        multi-process bases). The default: the public attributes of ``self``."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    # ------------------------------------------------------------ helpers

    def reply(self, from_: From, value: Any) -> None:
        """Send ``value`` as the reply to the call identified by ``from_``."""
        self.send(from_.address, CallReply(from_.ref, True, value))

    def reply_error(self, from_: From, error: Exception) -> None:
        """Make the caller of ``from_`` raise ``error`` (it must pickle)."""
        self.send(from_.address, CallReply(from_.ref, False, error))

    def stop(self, reason: ExitReason = NORMAL) -> None:
        """End this server with ``reason`` once the current handler returns
        (in ``init``: the start fails with ``reason``)."""
        self._sv_stop_reason = reason

    def continue_with(self, term: Any) -> None:
        """Run ``handle_continue(term)`` right after the current callback,
        before any other message (several calls run in order)."""
        self._sv_continues.append(term)

    def idle_timeout(self, seconds: float) -> None:
        """Deliver :data:`TIMEOUT` to ``handle_info`` if no message arrives
        within ``seconds`` after the current callback returns."""
        self._sv_idle = max(0.0, float(seconds))

    def monitor(self, address: Any) -> str:
        """Monitor the actor at ``address``; returns the monitor's ref.

        ``handle_info`` gets ``Down(ref, address, reason)`` once it exits
        (``"noproc"`` at once when nothing lives there, ``"killed"`` after a
        SIGKILL, seen within a few tenths of a second on multiprocTCPBase).
        The monitor is set up asynchronously, as in distributed Erlang: one
        that reaches an actor already exited (even one not yet reaped by its
        supervisor) gives ``"noproc"``, whatever the actor died of.
        """
        return self._sv_monitor(address)

    def demonitor(self, ref: str) -> bool:
        """Remove a monitor: no ``Down`` for ``ref`` is delivered afterwards.
        False when ``ref`` is not (or no longer) an active monitor."""
        return self._sv_demonitor(ref)

    def link_to(self, address: Any) -> None:
        """Link this server with the actor at ``address`` (OTP's ``link/1``;
        both ways, idempotent; not named ``link``, which Roger's servers use
        for their AMQP link).

        When one of them exits with a reason other than ``"normal"``, the
        other exits with that reason (after ``terminate``) unless it traps
        exits (``trap_exit = True``: it gets ``Exited(address, reason)``
        in ``handle_info``). Linking to a dead address gives reason ``"noproc"``.
        """
        self._sv_link(address)

    def unlink_from(self, address: Any) -> None:
        """Remove the link with ``address``; no exit signal from it afterwards."""
        self._sv_unlink(address)

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
            raise _InitStop(self._sv_stop_reason)
        return result if result is not _DEFERRED else None

    def _sv_started(self) -> None:
        super()._sv_started()
        self._sv_after_callback()

    def _sv_running(self, message: Any, sender: Any) -> None:
        if isinstance(message, WakeupMessage):
            payload = message.payload
            if isinstance(payload, _Idle):
                if payload.token != self._sv_idle_token:
                    return  # a cancelled idle timeout
                message = TIMEOUT
            elif isinstance(payload, _Timer):
                if payload.ref not in self._sv_timers:
                    return  # a cancelled timer
        self._sv_idle_token += 1  # any message cancels the idle timeout
        self._sv_dispatch(message, sender)
        self._sv_after_callback()

    def _sv_dispatch(self, message: Any, sender: Any) -> None:
        if isinstance(message, Call):
            self._sv_on_call(message, sender)
        elif isinstance(message, Cast):
            self.handle_cast(message.request)
        elif isinstance(message, ShutdownRequest):
            if sender == self.parent:
                self._sv_stop_reason = message.reason
                return
            self.handle_info(message)
        elif isinstance(message, WakeupMessage) and isinstance(message.payload, _Timer):
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

    def _sv_after_callback(self) -> None:
        """Run pending continues, then a pending stop, then arm the idle timeout."""
        while self._sv_continues and self._sv_stop_reason is None and self._sv_phase == "running":
            self.handle_continue(self._sv_continues.pop(0))
        if self._sv_phase != "running":
            return
        if self._sv_stop_reason is not None:
            self._sv_finish(self._sv_stop_reason)
            return
        if self._sv_idle is not None:
            seconds, self._sv_idle = self._sv_idle, None
            self.wakeupAfter(timedelta(seconds=seconds), _Idle(self._sv_idle_token))

    def _sv_exit_signal(self, reason: ExitReason) -> None:
        self._sv_finish(reason)

    def _sv_on_call(self, message: Call, sender: Any) -> None:
        from_ = From(sender, message.ref)
        request = message.request
        if isinstance(request, StopRequest):
            # no reply: the caller's monitor reports the exit, after terminate
            self._sv_stop_reason = request.reason
            return
        if isinstance(request, GetState):
            self.reply(from_, self.get_state())
            return
        self._sv_current_call = from_
        try:
            result = self.handle_call(request, from_)
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
        if result is NOREPLY:
            return
        if self._sv_stop_reason is not None:
            self._sv_held_reply = (from_, result)  # sent after terminate
            return
        self.reply(from_, result)

    def _sv_crash(self, exc: BaseException, reason: Crash | None = None) -> None:
        if reason is None:
            reason = Crash.from_exception(exc)
        if self._sv_current_call is not None:
            self.reply_error(
                self._sv_current_call,
                NoProc(
                    f"{type(self).__qualname__} crashed handling the call: {exc!r}",
                    reason=reason,
                ),
            )
            self._sv_current_call = None
        self._sv_continues.clear()
        super()._sv_crash(exc, reason)

    def _sv_on_crash(self, reason: ExitReason) -> ExitReason:
        return self._sv_run_terminate(reason)

    def _sv_abrupt_exit(self) -> ExitReason:
        return self._sv_run_terminate("shutdown")

    def _sv_finish(self, reason: ExitReason) -> None:
        try:
            final = self._sv_run_terminate(reason)
        finally:
            if self._sv_held_reply is not None:
                from_, value = self._sv_held_reply
                self._sv_held_reply = None
                self.reply(from_, value)
        self._sv_exit(final)

    def _sv_run_terminate(self, reason: ExitReason) -> ExitReason:
        """Run ``terminate(reason)``; returns the exit reason: ``reason``, or
        the ``Crash`` of an exception ``terminate`` raised."""
        self._sv_timers.clear()
        self._sv_idle_token += 1
        try:
            self.terminate(reason)
        except Exception as exc:
            log.exception("%s: terminate(%r) raised", type(self).__qualname__, reason)
            return Crash.from_exception(exc)
        return reason

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
