"""The lifecycle every supervised actor shares (``Server`` and supervisors).

A :class:`Process` is a Thespian actor that follows the supervision protocol
(:mod:`supervision.protocol`):

1. Its parent creates it and sends ``InitChild``; it runs its start logic and
   answers ``ChildStarted(pid)``, ``ChildIgnored`` or ``ChildStartFailed``.
   With a ``name`` (``ChildSpec.name``) it first registers the name with the
   actor system's registry (:mod:`supervision.registry`) and runs its start
   logic only once registered; a name held by another live actor fails the
   start with ``("already_started", holder)``.
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
6. Monitors and links between any two actors (:mod:`supervision.monitors`):
   before its ``ExitNotice`` an exiting actor sends ``Down`` to its monitors,
   ``ExitSignal`` to its links and ``NoProc`` to every monitored ``Call`` it
   has not answered; an actor that already exited answers a new monitor
   or link at once with its exit reason. A watcher learns of a SIGKILL
   from the port watch of its target.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from thespian.actors import (
    Actor,
    ActorExitRequest,
    ChildActorExited,
    ThespianWatch,
    WakeupMessage,
)

from .errors import NameTaken, NoProc
from .monitors import NOPROC, WATCH_INTERVAL, PortWatches, noproc_error, tcp_port
from .protocol import (
    Call,
    CallReply,
    ChildIgnored,
    ChildStarted,
    ChildStartFailed,
    Demonitor,
    Down,
    Exited,
    ExitNotice,
    ExitSignal,
    InitChild,
    Kill,
    Link,
    Linked,
    Monitor,
    Monitored,
    Unlink,
)
from .reasons import KILLED, NORMAL, SHUTDOWN, Crash, ExitReason
from .registry import REGISTRY, Register, Registry

log = logging.getLogger("supervision")

#: Returned by ``init`` to start nothing (OTP ``ignore``).
IGNORE: Any = type("Ignore", (), {"__repr__": lambda self: "IGNORE"})()

#: Seconds an exited actor waits to be reaped by its parent before it reaps itself.
ZOMBIE_TIMEOUT = 10.0

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _prctl(option: int, argument: Any) -> bool:
    """Linux's ``prctl(option, argument)`` for this process; False where it
    is not available (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, argument, 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return True


def _arm_parent_death() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies
    (``PR_SET_PDEATHSIG``); False where that is not available (not Linux: no
    link, the zombie timer still applies)."""
    return _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _name_process(name: str) -> None:
    """Set this process's name as ``ps -o comm`` and ``top`` show it (Linux
    keeps 15 bytes); nothing where ``prctl`` is not available."""
    _prctl(_PR_SET_NAME, name.encode()[:15])


def _die_with_parent(parent_pid: int) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies.

    Returns False when the parent is already gone.
    """
    if os.getppid() != parent_pid:
        return os.getppid() != 1
    if not _arm_parent_death():
        return True
    return os.getppid() == parent_pid


#: The pid of the process whose death this process is armed to die with.
_armed_in: int | None = None


def _die_with_forker() -> None:
    """In an actor process that Thespian forked (multiprocTCPBase), ask Linux to
    SIGKILL this process when the process that forked it dies, and end it at
    once when that one is gone already.

    Called when the actor object is built, before it handles any message:
    ``InitChild`` arms the same link, but an actor whose creator was killed
    between the fork and its ``InitChild`` never gets one, and lived on as an
    orphan (seen in a chaos soak: 4 orphaned actor processes in 90 s). Does
    nothing outside a ``multiprocessing`` child (simpleSystemBase, light), and
    once per process."""
    global _armed_in
    forker = multiprocessing.parent_process()
    if forker is None or forker.pid is None or _armed_in == os.getpid():
        return
    _armed_in = os.getpid()
    if not _arm_parent_death():
        return
    if os.getppid() != forker.pid:
        os._exit(1)  # the forker died before the link was armed


class _ThespianForks:
    """Arms :func:`_die_with_forker` in every process Thespian forks (an actor,
    the admin's logger), as the process starts: ``multiprocessing`` runs its
    after-fork hooks in the child before the process's target. Arming only
    when the actor object is built left a window (Thespian's start-up in the
    child: logging, transport, loading the class) in which a creator's death
    left an orphan behind; a chaos soak still found 5. Processes that are not
    Thespian's (a user's own ``multiprocessing`` children) are left alone."""

    TARGETS = frozenset({"startChild", "startupASLogger"})

    def __call__(self) -> None:
        target = getattr(multiprocessing.current_process(), "_target", None)
        module = getattr(target, "__module__", "") or ""
        if module.startswith("thespian.") and getattr(target, "__name__", "") in self.TARGETS:
            _die_with_forker()


#: Kept alive here: ``register_after_fork`` holds its object weakly.
_THESPIAN_FORKS = _ThespianForks()
multiprocessing.util.register_after_fork(_THESPIAN_FORKS, _ThespianForks.__call__)


class _ZombieTimeout:
    """Wake-up payload: the parent never reaped this exited actor."""


class _WatchTick:
    """Wake-up payload: time to poll the ports of the watched actors."""


@dataclass
class _Watch:
    """A monitor (``kind="monitor"``) or link (``"link"``) this actor holds on ``address``."""

    kind: str
    address: Any


class _InitStop(Exception):
    """Raised by a start that asked to stop: the start fails with ``reason`` itself."""

    def __init__(self, reason: ExitReason) -> None:
        super().__init__(repr(reason))
        self.reason = reason


class Process(Actor):  # type: ignore[misc]
    """Base of every actor that a supervisor can start. Not used directly.

    Subclasses implement ``_start`` (run at ``InitChild``), ``_running``
    (every message while running) and may override ``_abrupt_exit``.
    """

    _supervision_process = True
    _supervision_kind = "worker"

    #: When True, an exit signal from a linked actor is delivered as an
    #: ``Exited(address, reason)`` message instead of ending this actor
    #: (OTP's ``process_flag(trap_exit, true)``). Supervisors always trap.
    trap_exit: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _die_with_forker()
        self._sv_phase = "new"  # new -> running -> exited
        self._sv_parent: Any = None
        self._sv_parent_pid: int | None = None
        self._sv_exit_reason: ExitReason = None
        self._sv_killed = False
        self._sv_watched: list[int] = []
        self._sv_monitors: dict[str, Any] = {}  # ref -> watcher: who monitors me
        self._sv_call_monitors: dict[str, Any] = {}  # call ref -> caller, not yet answered
        self._sv_links: list[Any] = []
        self._sv_watches: dict[str, _Watch] = {}  # my monitors and links on others
        self._sv_ports = PortWatches()
        self._sv_ticking = False
        self._sv_init: InitChild | None = None  # waiting for its name's registration
        self._sv_register_ref: str | None = None

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

    def send(self, targetAddr: Any, msg: Any) -> None:
        """Thespian's ``send``; a ``CallReply`` also ends the monitor of its call."""
        if isinstance(msg, CallReply) and self._sv_call_monitors:
            self._sv_call_monitors.pop(msg.ref, None)
        super().send(targetAddr, msg)

    def _sv_lifecycle(self, message: Any, sender: Any) -> None:
        if self._sv_watch_protocol(message, sender):
            return
        if isinstance(message, ActorExitRequest):
            reason: ExitReason = KILLED if self._sv_killed else SHUTDOWN
            if self._sv_phase == "running" and not self._sv_killed:
                replaced = self._sv_abrupt_exit()
                reason = reason if replaced is None else replaced
            if self._sv_phase != "exited":
                self._sv_exit_reason = reason
            self._sv_phase = "exited"
            self._sv_notify_exit(self._sv_exit_reason)
            return
        if isinstance(message, Kill):
            self._sv_killed = True
            return
        if self._sv_phase == "running":
            if isinstance(message, Call) and message.monitor is not None:
                self._sv_call_monitors[message.ref] = message.monitor
            self._sv_running(message, sender)
        elif self._sv_phase == "new":
            if isinstance(message, InitChild) and self._sv_init is None:
                self._sv_init_child(message, sender)
            elif (
                isinstance(message, CallReply)
                and self._sv_init is not None
                and message.ref == self._sv_register_ref
            ):
                self._sv_registered(message)
            elif isinstance(message, Call):
                self.send(sender, CallReply(message.ref, False, NoProc("actor not started")))
        else:  # exited: only reaping matters
            if isinstance(message, Call):
                error = noproc_error(self.myAddress, self._sv_exit_reason)
                self.send(sender, CallReply(message.ref, False, error))
            elif isinstance(message, WakeupMessage) and isinstance(message.payload, _ZombieTimeout):
                self.send(self.myAddress, ActorExitRequest())

    # ------------------------------------------------------------ monitors and links

    def _sv_watch_protocol(self, message: Any, sender: Any) -> bool:
        """Handle the monitor/link protocol; True when ``message`` was consumed."""
        exited = self._sv_phase == "exited"
        if isinstance(message, Monitor):
            if exited:
                # dead when the monitor reached it: OTP's (distributed) noproc
                self.send(message.watcher, Down(message.ref, self.myAddress, NOPROC))
            else:
                self._sv_monitors[message.ref] = message.watcher
                if message.confirm:
                    self.send(message.watcher, Monitored(message.ref))
            return True
        if isinstance(message, Monitored):
            self._sv_ports.confirm(message.ref)
            return True
        if isinstance(message, Demonitor):
            self._sv_monitors.pop(message.ref, None)
            return True
        if isinstance(message, Link):
            if exited:
                self.send(message.linker, ExitSignal(self.myAddress, NOPROC))
                return True
            if not self._sv_is_linked(message.linker):
                self._sv_add_link(message.linker)
            if message.ref:
                self.send(message.linker, Linked(message.ref))
            return True
        if isinstance(message, Linked):
            self._sv_ports.confirm(message.ref)
            return True
        if isinstance(message, Unlink):
            self._sv_drop_link(message.address)
            return True
        if isinstance(message, Down):
            watch = self._sv_watches.pop(message.ref, None)
            self._sv_ports.discard(message.ref)
            # a Down for a monitor that was removed meanwhile is dropped (OTP's demonitor)
            if watch is None or self._sv_phase != "running":
                return True
            self._sv_running(message, sender)
            return True
        if isinstance(message, ExitSignal):
            if not self._sv_drop_link(message.address) or self._sv_phase != "running":
                return True
            if self.trap_exit or self._supervision_kind == "supervisor":
                self._sv_running(Exited(message.address, message.reason), message.address)
            elif message.reason != NORMAL:
                self._sv_exit_signal(message.reason)
            return True
        if isinstance(message, WakeupMessage) and isinstance(message.payload, _WatchTick):
            self._sv_ticking = False
            if self._sv_phase == "running":
                self._sv_poll_watches()
            return True
        return False

    def _sv_exit_signal(self, reason: ExitReason) -> None:
        """An exit signal from a link ends this (non-trapping) actor with ``reason``."""
        self._sv_exit(reason)

    def _sv_monitor(self, address: Any) -> str:
        ref = uuid.uuid4().hex
        self._sv_watches[ref] = _Watch("monitor", address)
        watched = self._sv_port_watch(ref, address, pending=True)
        self.send(address, Monitor(ref, self.myAddress, confirm=watched))
        return ref

    def _sv_demonitor(self, ref: str) -> bool:
        watch = self._sv_watches.get(ref)
        if watch is None or watch.kind != "monitor":
            return False
        del self._sv_watches[ref]
        self._sv_ports.discard(ref)
        self.send(watch.address, Demonitor(ref))
        return True

    def _sv_link(self, address: Any) -> None:
        if self._sv_is_linked(address):
            return
        key, watched = self._sv_add_link(address, pending=True)
        self.send(address, Link(self.myAddress, key if watched else ""))

    def _sv_unlink(self, address: Any) -> None:
        if self._sv_drop_link(address):
            self.send(address, Unlink(self.myAddress))

    def _sv_is_linked(self, address: Any) -> bool:
        return any(peer == address for peer in self._sv_links)

    def _sv_add_link(self, address: Any, *, pending: bool = False) -> tuple[str, bool]:
        """Record a link with ``address`` and watch its port (``pending``: until
        the peer confirms it with ``Linked``); ``(watch key, port watched)``."""
        self._sv_links.append(address)
        key = f"link-{uuid.uuid4().hex}"
        self._sv_watches[key] = _Watch("link", address)
        return key, self._sv_port_watch(key, address, pending=pending)

    def _sv_drop_link(self, address: Any) -> bool:
        linked = self._sv_is_linked(address)
        self._sv_links = [peer for peer in self._sv_links if peer != address]
        for key, watch in list(self._sv_watches.items()):
            if watch.kind == "link" and watch.address == address:
                del self._sv_watches[key]
                self._sv_ports.discard(key)
        return linked

    def _sv_port_watch(self, key: str, address: Any, *, pending: bool = False) -> bool:
        """Watch the port of ``address`` under ``key``; False on in-process bases
        (nothing can be SIGKILLed apart there). ``pending``: see PortWatches.add."""
        if tcp_port(self.myAddress) is None:
            return False
        self._sv_ports.add(key, address, pending=pending)
        self._sv_schedule_tick()
        return True

    def _sv_schedule_tick(self) -> None:
        if self._sv_ports and not self._sv_ticking:
            self._sv_ticking = True
            self.wakeupAfter(timedelta(seconds=WATCH_INTERVAL), _WatchTick())

    def _sv_poll_watches(self) -> None:
        for key, reason in self._sv_ports.poll():
            watch = self._sv_watches.get(key)
            if watch is None or self._sv_phase != "running":
                continue
            if watch.kind == "monitor":
                self._sv_lifecycle(Down(key, watch.address, reason), watch.address)
            else:
                self._sv_lifecycle(ExitSignal(watch.address, reason), watch.address)
        if self._sv_phase == "running":
            self._sv_schedule_tick()

    def _sv_notify_exit(self, reason: ExitReason) -> None:
        """Tell every monitor, link and waiting monitored caller that this actor exits."""
        me = self.myAddress
        monitors, self._sv_monitors = self._sv_monitors, {}
        calls, self._sv_call_monitors = self._sv_call_monitors, {}
        links, self._sv_links = self._sv_links, []
        self._sv_watches.clear()
        self._sv_ports = PortWatches()
        for ref, watcher in monitors.items():
            self.send(watcher, Down(ref, me, reason))
        for ref, caller in calls.items():
            self.send(caller, CallReply(ref, False, noproc_error(me, reason)))
        for peer in links:
            self.send(peer, ExitSignal(me, reason))

    # ------------------------------------------------------------ start

    def _sv_init_child(self, message: InitChild, sender: Any) -> None:
        self._sv_parent = sender
        self._sv_parent_pid = message.parent_pid
        if self.multiprocess and not _die_with_parent(message.parent_pid):
            self._sv_phase = "exited"
            self.send(self.myAddress, ActorExitRequest())
            return
        if message.name is not None:
            # register the name first (OTP's {local, Name}); init runs on the answer
            self._sv_init = message
            self._sv_register_ref = uuid.uuid4().hex
            registry = self.createActor(Registry, globalName=REGISTRY)
            # monitored: a registry that is gone answers NoProc (dead letters)
            # instead of leaving the start hanging
            register = Register(message.name, self.myAddress)
            self.send(registry, Call(self._sv_register_ref, register, self.myAddress))
            return
        self._sv_run_init(message)

    def _sv_registered(self, reply: CallReply) -> None:
        """The registry answered this child's registration: run ``init``, or
        fail the start with ``("already_started", holder)`` (OTP's reason)."""
        message, self._sv_init = self._sv_init, None
        assert message is not None
        if reply.ok:
            self._sv_run_init(message)
            return
        error = reply.value
        reason: ExitReason
        if isinstance(error, NameTaken):
            reason = ("already_started", error.address)
        elif isinstance(error, BaseException):
            reason = Crash.from_exception(error)
        else:  # pragma: no cover - the registry answers errors with exceptions
            reason = error
        log.error("%s: cannot register %r: %s", type(self).__qualname__, message.name, error)
        self._sv_start_failed(reason)

    def _sv_run_init(self, message: InitChild) -> None:
        self._sv_phase = "running"
        try:
            result = self._sv_start(message.args, message.kwargs)
        except _InitStop as stop:
            log.error("%s stopped in init: %r", type(self).__qualname__, stop.reason)
            self._sv_start_failed(stop.reason)
            return
        except Exception as exc:
            crash = Crash.from_exception(exc)
            log.error("%s failed to start: %s", type(self).__qualname__, crash)
            self._sv_start_failed(crash)
            return
        if result is IGNORE:
            self._sv_phase = "exited"
            self._sv_exit_reason = NORMAL
            self._sv_notify_exit(NORMAL)
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
        self._sv_notify_exit(reason)
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

    def _sv_crash(self, exc: BaseException, reason: Crash | None = None) -> None:
        """Exit with the crash of ``exc`` (``reason`` when the caller built it already)."""
        if reason is None:
            reason = Crash.from_exception(exc)
        log.error("%s crashed: %s\n%s", type(self).__qualname__, reason, reason.traceback)
        replaced = self._sv_on_crash(reason)
        self._sv_exit(reason if replaced is None else replaced)

    def _sv_on_crash(self, reason: ExitReason) -> ExitReason:
        """Hook run once when a handler raised, before the exit notice; a
        value other than None replaces the exit reason."""
        return None

    def _sv_abrupt_exit(self) -> ExitReason:
        """Hook run when Thespian ends the actor without the protocol
        (its parent exited, or the actor system is shutting down); a value
        other than None replaces the exit reason (``"shutdown"``)."""
        return None

    def _sv_exit(self, reason: ExitReason) -> None:
        """Leave the running phase with ``reason``: notify the parent, await reaping."""
        if self._sv_phase == "exited":
            return
        self._sv_phase = "exited"
        self._sv_exit_reason = reason
        self._sv_notify_exit(reason)
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
