"""The lifecycle every supervised actor shares (``Server`` and supervisors).

A :class:`Process` is a Thespian actor that follows the supervision protocol
(:mod:`supervision.protocol`):

1. Its parent creates it and sends ``InitChild``; it runs its start logic and
   answers ``ChildStarted(pid)``, ``ChildIgnored`` or ``ChildStartFailed``.
2. While running, an exception escaping any handler ends it ("let it crash"):
   Thespian's retry-then-``PoisonMessage`` behaviour never applies.
3. However it ends, it sends its parent one ``ExitNotice(reason)`` and then
   waits, doing nothing, for the parent to reap it with ``ActorExitRequest``.
   Sending the reason *before* the actor exits, and letting the parent end
   it, is what makes the exit reason reliable: Thespian's own
   ``ChildActorExited`` carries no reason and can overtake other messages.
4. A ``ChildActorExited`` for a child that sent no ``ExitNotice`` means the
   child was killed (SIGKILL, OOM killer...): its reason is ``"killed"``.
5. On a multi-process base the child asks the kernel to kill it when its
   parent process dies (``PR_SET_PDEATHSIG``), which is OTP's link from
   supervisor to child: no orphaned actor outlives a killed supervisor.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from datetime import timedelta
from typing import Any

from thespian.actors import (
    Actor,
    ActorExitRequest,
    ChildActorExited,
    ThespianWatch,
    WakeupMessage,
)

from .errors import NoProc
from .protocol import (
    Call,
    CallReply,
    ChildIgnored,
    ChildStarted,
    ChildStartFailed,
    ExitNotice,
    InitChild,
    Kill,
)
from .reasons import KILLED, Crash, ExitReason

log = logging.getLogger("supervision")

#: Returned by ``init`` to start nothing (OTP ``ignore``).
IGNORE: Any = type("Ignore", (), {"__repr__": lambda self: "IGNORE"})()

#: Seconds an exited actor waits to be reaped by its parent before it reaps itself.
ZOMBIE_TIMEOUT = 10.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies.

    Returns False when the parent is already gone.
    """
    if os.getppid() != parent_pid:
        return os.getppid() != 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no link, the zombie timer still applies
        return True
    return os.getppid() == parent_pid


class _ZombieTimeout:
    """Wake-up payload: the parent never reaped this exited actor."""


class Process(Actor):  # type: ignore[misc]
    """Base of every actor that a supervisor can start. Not used directly.

    Subclasses implement ``_start`` (run at ``InitChild``), ``_running``
    (every message while running) and may override ``_abrupt_exit``.
    """

    _supervision_process = True
    _supervision_kind = "worker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sv_phase = "new"  # new -> running -> exited
        self._sv_parent: Any = None
        self._sv_parent_pid: int | None = None
        self._sv_exit_reason: ExitReason = None
        self._sv_killed = False
        self._sv_watched: list[int] = []

    # ------------------------------------------------------------ properties

    @property
    def address(self) -> Any:
        """This actor's own address."""
        return self.myAddress

    @property
    def parent(self) -> Any:
        """The address of the actor that started this one (its supervisor)."""
        return self._sv_parent

    @property
    def multiprocess(self) -> bool:
        """True when this actor runs in its own OS process (not on simpleSystemBase)."""
        return self._sv_parent_pid is not None and self._sv_parent_pid != os.getpid()

    # ------------------------------------------------------------ Thespian entry

    def receiveMessage(self, message: Any, sender: Any) -> Any:
        """Thespian's entry point: route by lifecycle phase; never lets an exception out."""
        try:
            self._sv_lifecycle(message, sender)
        except Exception as exc:
            if self._sv_phase == "running":
                self._sv_crash(exc)
            else:
                log.exception("%s: error while %s", type(self).__qualname__, self._sv_phase)
        if self._sv_watched and self._sv_phase == "running":
            return ThespianWatch(list(self._sv_watched))
        return None

    def watch_fileno(self, fileno: int) -> None:
        """Deliver a ``WatchMessage`` whenever ``fileno`` is readable
        (multi-process TCP/UDP bases only; Thespian's ``ThespianWatch``)."""
        if fileno not in self._sv_watched:
            self._sv_watched.append(fileno)

    def unwatch_fileno(self, fileno: int) -> None:
        """Stop watching ``fileno``."""
        if fileno in self._sv_watched:
            self._sv_watched.remove(fileno)

    def _sv_lifecycle(self, message: Any, sender: Any) -> None:
        if isinstance(message, ActorExitRequest):
            if self._sv_phase == "running" and not self._sv_killed:
                self._sv_abrupt_exit()
            self._sv_phase = "exited"
            return
        if isinstance(message, Kill):
            self._sv_killed = True
            return
        if self._sv_phase == "running":
            self._sv_running(message, sender)
        elif self._sv_phase == "new":
            if isinstance(message, InitChild):
                self._sv_init_child(message, sender)
            elif isinstance(message, Call):
                self.send(sender, CallReply(message.ref, False, NoProc("actor not started")))
        else:  # exited: only reaping matters
            if isinstance(message, Call):
                self.send(sender, CallReply(message.ref, False, NoProc("actor has exited")))
            elif isinstance(message, WakeupMessage) and isinstance(message.payload, _ZombieTimeout):
                self.send(self.myAddress, ActorExitRequest())

    # ------------------------------------------------------------ start

    def _sv_init_child(self, message: InitChild, sender: Any) -> None:
        self._sv_parent = sender
        self._sv_parent_pid = message.parent_pid
        if self.multiprocess and not _die_with_parent(message.parent_pid):
            self._sv_phase = "exited"
            self.send(self.myAddress, ActorExitRequest())
            return
        self._sv_phase = "running"
        try:
            result = self._sv_start(message.args, message.kwargs)
        except Exception as exc:
            crash = Crash.from_exception(exc)
            log.error("%s failed to start: %s", type(self).__qualname__, crash)
            self._sv_start_failed(crash)
            return
        if result is IGNORE:
            self._sv_phase = "exited"
            self.send(self._sv_parent, ChildIgnored())
            self._sv_await_reaping()
        elif result is not _DEFERRED:
            self._sv_started()

    def _sv_started(self) -> None:
        """Tell the parent that the start succeeded."""
        self.send(self._sv_parent, ChildStarted(os.getpid()))

    def _sv_start_failed(self, reason: ExitReason) -> None:
        """Tell the parent that the start failed, then wait to be reaped."""
        self._sv_phase = "exited"
        self._sv_exit_reason = reason
        self.send(self._sv_parent, ChildStartFailed(reason))
        self._sv_await_reaping()

    def _sv_start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the start logic; return ``IGNORE``, ``_DEFERRED`` or anything else.

        ``_DEFERRED`` means the start goes on asynchronously and the subclass
        calls ``_started()`` or ``_start_failed()`` itself.
        """
        raise NotImplementedError

    # ------------------------------------------------------------ running

    def _sv_running(self, message: Any, sender: Any) -> None:
        raise NotImplementedError

    def _on_child_actor_exited(self, message: ChildActorExited) -> None:
        """Hook for ChildActorExited while running."""

    # ------------------------------------------------------------ exit

    def _sv_crash(self, exc: BaseException) -> None:
        reason = Crash.from_exception(exc)
        log.error("%s crashed: %s\n%s", type(self).__qualname__, reason, reason.traceback)
        self._sv_on_crash(reason)
        self._sv_exit(reason)

    def _sv_on_crash(self, reason: ExitReason) -> None:
        """Hook run once when a handler raised, before the exit notice."""

    def _sv_abrupt_exit(self) -> None:
        """Hook run when Thespian ends the actor without the protocol
        (its parent exited, or the actor system is shutting down)."""

    def _sv_exit(self, reason: ExitReason) -> None:
        """Leave the running phase with ``reason``: notify the parent, await reaping."""
        if self._sv_phase == "exited":
            return
        self._sv_phase = "exited"
        self._sv_exit_reason = reason
        if self._sv_parent is None:
            self.send(self.myAddress, ActorExitRequest())
            return
        self.send(self._sv_parent, ExitNotice(reason))
        self._sv_await_reaping()

    def _sv_await_reaping(self) -> None:
        if self.multiprocess:
            self.wakeupAfter(timedelta(seconds=ZOMBIE_TIMEOUT), _ZombieTimeout())


_DEFERRED: Any = type("Deferred", (), {"__repr__": lambda self: "DEFERRED"})()

__all__ = ["IGNORE", "KILLED", "Process"]
