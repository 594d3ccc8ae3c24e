"""OTP supervisors on Thespian: ``Supervisor`` and ``DynamicSupervisor``.

A supervisor is an actor that starts, watches and restarts its children
(:class:`~supervision.Server` or supervisor actors) following OTP's rules:

Start
    ``Supervisor`` children start one after another in the order of the
    spec; each child's ``init`` has finished before the next starts. If one
    fails to start, the children already started are stopped (in reverse
    order) and the supervisor's own start fails with reason
    ``("shutdown", ("failed_to_start_child", id, reason))``.
Restart
    When a child exits, its ``restart`` type decides: ``permanent`` is
    always restarted, ``transient`` only after an abnormal exit,
    ``temporary`` never (and its spec is dropped). The ``strategy`` decides
    what else happens: ``one_for_one`` restarts the child alone;
    ``one_for_all`` stops every other child (reverse start order) and starts
    them all again in order; ``rest_for_one`` does that for the children
    started after it. Stopped ``temporary`` siblings are not restarted.
    A restart whose start fails is tried again (each try counts as a
    restart); meanwhile the child shows as ``"restarting"``.
Intensity
    Every restart is recorded in whole seconds (as OTP); if more than
    ``max_restarts`` happened in the last ``max_seconds``, the supervisor
    stops all its children and exits with reason ``"shutdown"``, which its
    own supervisor handles like any child exit: escalation, up to the
    application.
Auto shutdown
    With ``auto_shutdown`` ``"any_significant"`` / ``"all_significant"`` a
    ``significant`` child that ends by itself and is not restarted (any of
    them / the last running one) makes the supervisor stop its children and
    exit ``"shutdown"`` (OTP 24).
Start timeout
    A child whose ``init`` overruns its ``start_timeout`` is SIGKILLed (its
    pid is known from the fork) and the start fails with ``"start_timeout"``.
Shutdown
    On its parent's ``ShutdownRequest`` a ``Supervisor`` stops its children
    in reverse start order, each per its ``shutdown``: ``brutal_kill`` kills
    at once; a number of seconds asks the child to stop and kills it when
    the time runs out; ``infinity`` waits. A ``DynamicSupervisor`` stops its
    children all at once (no order, as OTP's ``simple_one_for_one``).
Requests
    While it starts, restarts or stops children a supervisor answers nothing
    else; requests wait their turn (OTP's supervisor is equally synchronous).
    No request, malformed or not, makes a supervisor crash.

Killing uses SIGKILL on the child's process on multi-process bases. On
``simpleSystemBase`` everything runs in one thread: a child cannot be
interrupted, so a shutdown timeout there only stops waiting for a child that
never answers, and ``brutal_kill`` ends the child without its ``terminate``.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Generator, Hashable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest, ChildActorExited, WakeupMessage

from . import clock
from .errors import (
    AlreadyPresent,
    AlreadyStarted,
    InvalidSpec,
    MaxChildren,
    NotFound,
    NotSupported,
    Restarting,
    Running,
    StartError,
    SupervisionError,
    UnknownRequest,
)
from .placement import placed_class
from .process import _DEFERRED, IGNORE, Process
from .protocol import (
    Call,
    CallReply,
    ChildIgnored,
    ChildInfo,
    ChildStarted,
    ChildStartFailed,
    CountChildren,
    DeleteChild,
    ExitNotice,
    GetChildSpec,
    InitChild,
    Kill,
    RestartChild,
    ShutdownRequest,
    StartChild,
    TerminateChild,
    WhichChildren,
)
from .reasons import KILLED, SHUTDOWN, Crash, ExitReason, is_normal
from .spec import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_MAX_SECONDS,
    ChildSpec,
    DynamicSupervisorSpec,
    Start,
    SupervisorSpec,
    check_significant,
)

log = logging.getLogger("supervision.supervisor")

#: Seconds to wait for the exit of a child that was sent SIGKILL.
KILL_WAIT = 5.0

_TIMEOUT: Any = type("Timeout", (), {"__repr__": lambda self: "TIMEOUT"})()


@dataclass
class _Child:
    spec: ChildSpec
    key: Hashable
    address: Any = None
    pid: int | None = None
    restarting: bool = False
    #: The address of the last process started for this child (OTP keeps the
    #: old pid in ``{restarting, Pid}``; a DynamicSupervisor finds it by it).
    last_address: Any = None

    @property
    def running(self) -> bool:
        return self.address is not None


@dataclass
class _Wait:
    match: Callable[[Any, Any], bool]
    timeout: float | None
    token: int = 0


@dataclass(frozen=True)
class _OpTimeout:
    token: int


@dataclass(frozen=True)
class _TryAgain:
    key: Hashable


Op = Generator[_Wait, Any, None]


def _is_exit_of(child: _Child) -> Callable[[Any, Any], bool]:
    address = child.address

    def match(message: Any, sender: Any) -> bool:
        if isinstance(message, ExitNotice):
            return bool(sender == address)
        if isinstance(message, ChildActorExited):
            return bool(message.childAddress == address)
        return False

    return match


def _is_late_start_answer(message: Any) -> bool:
    return isinstance(message, (ChildStarted, ChildStartFailed, ChildIgnored))


@dataclass
class _Stopping:
    child: _Child
    deadline: float | None
    killed: bool = False
    reason: ExitReason = None


class _SupervisorBase(Process):
    """Operation machinery shared by supervisors: a running operation is a
    generator that yields what it waits for; other messages wait in order."""

    _supervision_kind = "supervisor"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._op: Op | None = None
        self._wait: _Wait | None = None
        self._deferred: list[tuple[Any, Any]] = []
        self._tokens = itertools.count(1)
        self._restarts: collections.deque[int] = collections.deque()
        #: Children given up at their start timeout whose exit is still to come.
        self._abandoned: list[Any] = []
        self._max_restarts = DEFAULT_MAX_RESTARTS
        self._max_seconds: float = DEFAULT_MAX_SECONDS
        self._auto_shutdown = "never"

    # ------------------------------------------------------------ op runner

    def _run(self, op: Op) -> None:
        """Start ``op`` now (no other op may be running)."""
        assert self._op is None
        self._op = op
        self._advance(None)

    def _advance(self, value: Any) -> None:
        while self._op is not None:
            try:
                wait = self._op.send(value)
            except StopIteration:
                self._op = None
                self._wait = None
                self._drain()
                return
            self._wait = wait
            for i, (message, sender) in enumerate(self._deferred):
                if wait.match(message, sender):
                    del self._deferred[i]
                    value = (message, sender)
                    break
            else:
                if wait.timeout is not None:
                    wait.token = next(self._tokens)
                    self.wakeupAfter(
                        timedelta(seconds=max(0.0, wait.timeout)), _OpTimeout(wait.token)
                    )
                return

    def _drain(self) -> None:
        while self._op is None and self._deferred and self._sv_phase == "running":
            message, sender = self._deferred.pop(0)
            self._handle(message, sender)

    def _sv_running(self, message: Any, sender: Any) -> None:
        if isinstance(message, WakeupMessage) and isinstance(message.payload, _OpTimeout):
            if self._wait is not None and message.payload.token == self._wait.token:
                self._advance(_TIMEOUT)
            return
        if self._op is not None:
            assert self._wait is not None
            if self._wait.match(message, sender):
                self._advance((message, sender))
            else:
                self._deferred.append((message, sender))
            return
        self._handle(message, sender)

    def _handle(self, message: Any, sender: Any) -> None:
        """Handle one message with no operation running."""
        if self._abandoned and self._from_abandoned(message, sender):
            return
        if isinstance(message, Call):
            self._sv_on_call(message, sender)
        elif isinstance(message, ExitNotice):
            child = self._find_address(sender)
            self.send(sender, ActorExitRequest())
            if child is not None:
                self._run(self._on_child_exit(child, message.reason))
        elif isinstance(message, ChildActorExited):
            child = self._find_address(message.childAddress)
            if child is not None:
                self._run(self._on_child_exit(child, KILLED))
        elif isinstance(message, ShutdownRequest):
            if sender == self.parent:
                self._run(self._shutdown(message.reason))
        elif isinstance(message, _TryAgain):
            child = self._find_key(message.key)
            if child is not None and child.restarting:
                self._run(self._restart(child))
        else:
            log.warning("%s: unexpected message %r", type(self).__qualname__, message)

    def _from_abandoned(self, message: Any, sender: Any) -> bool:
        """A late word of a child given up at its start timeout: reap it."""
        if isinstance(message, ChildActorExited):
            gone = message.childAddress
            if any(a == gone for a in self._abandoned):
                self._abandoned = [a for a in self._abandoned if a != gone]
                return True
            return False
        if (_is_late_start_answer(message) or isinstance(message, ExitNotice)) and any(
            a == sender for a in self._abandoned
        ):
            self.send(sender, ActorExitRequest())
            return True
        return False

    def _sv_on_call(self, message: Call, sender: Any) -> None:
        request = message.request

        def answer(ok: bool, value: Any) -> None:
            self.send(sender, CallReply(message.ref, ok, value))

        try:
            handler = self._request_handler(request)
            if handler is None:
                answer(False, UnknownRequest(f"{type(self).__qualname__}: {request!r}"))
                return
            result = handler(request)
        except SupervisionError as error:
            answer(False, error)
            return
        except Exception as error:  # a malformed request never takes a supervisor down
            log.warning("%s: cannot handle %r: %r", self, request, error)
            answer(False, InvalidSpec(f"cannot handle {type(request).__name__}: {error!r}"))
            return
        if isinstance(result, Generator):
            self._run(self._answering(result, answer))
        else:
            answer(True, result)

    def _answering(self, op: Generator[_Wait, Any, Any], answer: Callable[[bool, Any], None]) -> Op:
        try:
            result = yield from op
        except SupervisionError as error:
            answer(False, error)
            return
        answer(True, result)

    def _request_handler(self, request: Any) -> Callable[[Any], Any] | None:
        raise NotImplementedError

    # ------------------------------------------------------------ children

    def _children(self) -> list[_Child]:
        raise NotImplementedError

    def _find_address(self, address: Any) -> _Child | None:
        for child in self._children():
            if child.address is not None and child.address == address:
                return child
        return None

    def _find_key(self, key: Hashable) -> _Child | None:
        for child in self._children():
            if child.key == key:
                return child
        return None

    def _remove(self, child: _Child) -> None:
        raise NotImplementedError

    def _start_child(self, child: _Child) -> Generator[_Wait, Any, tuple[str, Any]]:
        """Start one child; returns ``("ok", address)``, ``("ignore", None)`` or
        ``("error", reason)``. Sets ``child.address``/``pid`` on success."""
        spec = child.spec
        actor_class = spec.actor_class
        if spec.placement == "process":
            actor_class = placed_class(actor_class, self)
        try:
            address = self.createActor(actor_class)
        except Exception as exc:
            return ("error", Crash.from_exception(exc))
        forked = self._forked_pid(address)
        self.send(address, InitChild(spec.start.args, spec.start.kwargs, os.getpid(), spec.name))

        def match(message: Any, sender: Any) -> bool:
            if isinstance(message, (ChildStarted, ChildStartFailed, ChildIgnored)):
                return bool(sender == address)
            if isinstance(message, ChildActorExited):
                return bool(message.childAddress == address)
            return False

        got = yield _Wait(match, spec.start_timeout)
        answer = got if got is _TIMEOUT else got[0]
        if isinstance(answer, ChildStarted):
            child.address, child.pid, child.restarting = address, answer.pid, False
            child.last_address = address
            return ("ok", address)
        if isinstance(answer, ChildActorExited):
            return ("error", KILLED)
        self.send(address, ActorExitRequest())
        if isinstance(answer, ChildIgnored):
            return ("ignore", None)
        if isinstance(answer, ChildStartFailed):
            return ("error", answer.reason)
        log.error("%s: child %r did not start within %s s", self, spec.id, spec.start_timeout)
        yield from self._kill_unstarted(address, forked)
        return ("error", "start_timeout")

    def _forked_pid(self, address: Any) -> int | None:
        """The OS pid of the process Thespian forked for the child at
        ``address`` (multi-process bases; None elsewhere). Known right after
        ``createActor``, before the child runs its ``init``, so that a child
        hung in ``init`` can be killed."""
        manager = getattr(self, "_myRef", None)
        for info in getattr(manager, "_child_procs", None) or ():
            if getattr(info, "childAddr", None) == address:
                pid = getattr(getattr(info, "childProc", None), "pid", None)
                if isinstance(pid, int) and pid != os.getpid():
                    return pid
        return None

    def _kill_unstarted(self, address: Any, pid: int | None) -> Op:
        """End a child whose ``init`` overran its ``start_timeout``: SIGKILL
        its process and wait (at most :data:`KILL_WAIT`) for Thespian to
        report its exit. Without a pid (single-process base) the child is sent
        ``Kill`` and abandoned: whatever it sends later is reaped, not
        mistaken for a new child."""
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            else:

                def match(message: Any, sender: Any) -> bool:
                    if isinstance(message, ChildActorExited):
                        return bool(message.childAddress == address)
                    return _is_late_start_answer(message) and bool(sender == address)

                deadline = time.monotonic() + KILL_WAIT
                while True:
                    got = yield _Wait(match, max(0.0, deadline - time.monotonic()))
                    if got is not _TIMEOUT and isinstance(got[0], ChildActorExited):
                        return
                    if got is _TIMEOUT:
                        break
        self.send(address, Kill())
        self.send(address, ActorExitRequest())
        self._abandoned.append(address)

    def _kill(self, child: _Child) -> None:
        if child.pid is not None and child.pid != os.getpid():
            try:
                os.kill(child.pid, signal.SIGKILL)
                return
            except ProcessLookupError:
                pass
        self.send(child.address, Kill())
        self.send(child.address, ActorExitRequest())

    def _stop_children(self, children: Iterable[_Child], kill: bool = False) -> Op:
        """Stop ``children`` all at once, each per its shutdown; wait for all."""
        now = time.monotonic()
        stopping: list[_Stopping] = []
        for child in children:
            if child.address is None:
                continue
            shutdown = child.spec.shutdown
            if kill or shutdown == "brutal_kill":
                self._kill(child)
                stopping.append(_Stopping(child, now + KILL_WAIT, killed=True))
            else:
                self.send(child.address, ShutdownRequest(SHUTDOWN))
                deadline = None if shutdown == "infinity" else now + float(shutdown)  # type: ignore[arg-type]
                stopping.append(_Stopping(child, deadline))
        pending = list(stopping)
        while pending:

            def match(message: Any, sender: Any) -> bool:
                return any(_is_exit_of(s.child)(message, sender) for s in pending)

            deadlines = [s.deadline for s in pending if s.deadline is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            got = yield _Wait(match, timeout)
            if got is _TIMEOUT:
                now = time.monotonic()
                for s in list(pending):
                    if s.deadline is None or s.deadline > now:
                        continue
                    if s.killed:
                        log.error("%s: child %r did not exit after kill", self, s.child.spec.id)
                        s.reason = KILLED
                        pending.remove(s)
                    else:
                        log.warning(
                            "%s: child %r did not stop within %s s: killing it",
                            self,
                            s.child.spec.id,
                            s.child.spec.shutdown,
                        )
                        self._kill(s.child)
                        s.killed, s.deadline = True, now + KILL_WAIT
                continue
            message, sender = got
            s = next(s for s in pending if _is_exit_of(s.child)(message, sender))
            pending.remove(s)
            if isinstance(message, ExitNotice):
                self.send(s.child.address, ActorExitRequest())
                s.reason = message.reason
            else:
                s.reason = KILLED
        for s in stopping:
            self._notify_exit(s.child.address, s.child.spec, s.reason)
            s.child.address, s.child.pid = None, None
            expected = s.reason == SHUTDOWN or (s.killed and s.reason == KILLED)
            if not expected and not (s.child.spec.restart != "permanent" and is_normal(s.reason)):
                log.error("%s: child %r stopped with %s", self, s.child.spec.id, s.reason)

    # ------------------------------------------------------------ restarts

    def _add_restart(self) -> bool:
        """Record a restart; False when that exceeds the intensity.

        As OTP (``erlang:monotonic_time(1)``), restarts are stamped in whole
        seconds (the clock floored) and one is remembered while its stamp is
        ``>= now - max_seconds``: the effective window is ``[max_seconds,
        max_seconds + 1)`` seconds long."""
        now = math.floor(clock.monotonic())
        threshold = now - self._max_seconds
        restarts = self._restarts
        if restarts and now < restarts[-1]:  # a clock source that went back
            restarts = self._restarts = collections.deque(t for t in restarts if t >= threshold)
        while restarts and restarts[0] < threshold:  # oldest first
            restarts.popleft()
        restarts.append(now)
        return len(restarts) <= self._max_restarts

    def child_exited(self, address: Any, spec: ChildSpec, reason: ExitReason) -> None:
        """Hook: the child process at ``address`` (started from ``spec``) ended.

        Called once per child process, whether it exited by itself, was killed
        or was stopped by this supervisor, before any restart. The default does
        nothing; an exception here is logged and ignored.
        """

    def _notify_exit(self, address: Any, spec: ChildSpec, reason: ExitReason) -> None:
        try:
            self.child_exited(address, spec, reason)
        except Exception:
            log.exception("%s: child_exited hook raised", self)

    def _on_child_exit(self, child: _Child, reason: ExitReason) -> Op:
        self._notify_exit(child.address, child.spec, reason)
        child.address, child.pid = None, None
        restart = child.spec.restart
        if restart == "permanent" or (restart == "transient" and not is_normal(reason)):
            log.error("%s: child %r exited with %s", self, child.spec.id, reason)
            yield from self._restart(child)
            return
        if not is_normal(reason):
            log.error("%s: child %r exited with %s", self, child.spec.id, reason)
        if restart == "temporary":
            self._remove(child)
        self._after_child_gone(child)
        if self._auto_shutdown_due(child):
            log.info(
                "%s: significant child %r ended: shutting down (auto_shutdown %s)",
                self,
                child.spec.id,
                self._auto_shutdown,
            )
            yield from self._stop_all()
            self._sv_exit(SHUTDOWN)

    def _after_child_gone(self, child: _Child) -> None:
        """Hook: a child ended and will not be restarted."""

    def _auto_shutdown_due(self, child: _Child) -> bool:
        """OTP's ``do_auto_shutdown``: ``child`` ended by itself and is not
        restarted; True when the supervisor is now to shut itself down."""
        if self._auto_shutdown == "never" or not child.spec.significant:
            return False
        if self._auto_shutdown == "any_significant":
            return True
        return not any(
            c.spec.significant and (c.running or c.restarting)
            for c in self._children()
            if c is not child
        )

    def _restart(self, child: _Child) -> Op:
        if not self._add_restart():
            log.error(
                "%s: reached max restart intensity (%d in %s s); shutting down",
                self,
                self._max_restarts,
                self._max_seconds,
            )
            if child.spec.restart == "temporary":
                self._remove(child)
            child.restarting = False
            yield from self._stop_all()
            self._sv_exit(SHUTDOWN)
            return
        yield from self._restart_by_strategy(child)

    def _restart_by_strategy(self, child: _Child) -> Op:
        raise NotImplementedError

    def _restart_one(self, child: _Child) -> Op:
        result, detail = yield from self._start_child(child)
        if result == "error":
            log.error("%s: restart of %r failed: %s", self, child.spec.id, detail)
            child.restarting = True
            self.send(self.myAddress, _TryAgain(child.key))
        elif result == "ignore":
            child.restarting = False
            if child.spec.restart == "temporary":
                self._remove(child)
            self._after_child_gone(child)

    # ------------------------------------------------------------ shutdown

    def _stop_all(self) -> Op:
        raise NotImplementedError

    def _shutdown(self, reason: ExitReason) -> Op:
        yield from self._stop_all()
        self._sv_exit(reason)

    def _sv_abrupt_exit(self) -> None:
        # Thespian itself sends ActorExitRequest to every child after this.
        self._op = None

    def _sv_on_crash(self, reason: ExitReason) -> None:
        for child in self._children():
            if child.address is not None:
                self._kill(child)

    def __str__(self) -> str:
        return f"{type(self).__qualname__}@{self.myAddress}"


class Supervisor(_SupervisorBase):
    """A supervisor with a static, ordered list of children.

    Override :meth:`init` to return a :class:`~supervision.SupervisorSpec`,
    or start ``Supervisor`` itself with a ``SupervisorSpec`` as its only
    argument. Children may be added later with ``start_child``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kids: list[_Child] = []
        self._strategy = "one_for_one"

    def init(self, *args: Any, **kwargs: Any) -> SupervisorSpec:
        """Return this supervisor's spec. The default takes it as the only argument."""
        if len(args) == 1 and not kwargs and isinstance(args[0], SupervisorSpec):
            return args[0]
        raise InvalidSpec(
            f"{type(self).__qualname__}.init must return a SupervisorSpec "
            "(or start Supervisor with one SupervisorSpec argument)"
        )

    def _sv_start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        spec = self.init(*args, **kwargs)
        if spec is IGNORE:
            return IGNORE
        if not isinstance(spec, SupervisorSpec):
            raise InvalidSpec(f"init returned {spec!r}, not a SupervisorSpec")
        self._strategy = spec.strategy
        self._max_restarts, self._max_seconds = spec.max_restarts, spec.max_seconds
        self._auto_shutdown = spec.auto_shutdown
        self._run(self._start_all(spec.children))
        return _DEFERRED

    def _start_all(self, specs: Iterable[ChildSpec]) -> Op:
        for spec in specs:
            child = _Child(spec, spec.id)
            result, detail = yield from self._start_child(child)
            if result == "error":
                log.error("%s: child %r failed to start: %s", self, spec.id, detail)
                yield from self._stop_all()
                self._sv_start_failed((SHUTDOWN, ("failed_to_start_child", spec.id, detail)))
                return
            if result == "ok" or spec.restart != "temporary":
                self._kids.append(child)
        self._sv_started()

    # children bookkeeping

    def _children(self) -> list[_Child]:
        return self._kids

    def _remove(self, child: _Child) -> None:
        self._kids = [c for c in self._kids if c is not child]

    def _stop_all(self) -> Op:
        for child in reversed(list(self._kids)):
            if child.running:
                yield from self._stop_children([child])
            child.restarting = False
            if child.spec.restart == "temporary":
                self._remove(child)

    def _restart_by_strategy(self, child: _Child) -> Op:
        if self._strategy == "one_for_one":
            yield from self._restart_one(child)
            return
        if self._strategy == "one_for_all":
            group = list(self._kids)
        else:  # rest_for_one
            group = self._kids[self._kids.index(child) :]
        for sibling in reversed(group):
            if sibling.running:
                yield from self._stop_children([sibling])
                if sibling.spec.restart == "temporary":
                    self._remove(sibling)
        for sibling in group:
            sibling.restarting = False
        group = [c for c in group if c in self._kids]
        for sibling in group:
            result, detail = yield from self._start_child(sibling)
            if result == "error":
                log.error("%s: restart of %r failed: %s", self, sibling.spec.id, detail)
                sibling.restarting = True
                self.send(self.myAddress, _TryAgain(sibling.key))
                return
            if result == "ignore" and sibling.spec.restart == "temporary":
                self._remove(sibling)

    # requests

    def _request_handler(self, request: Any) -> Callable[[Any], Any] | None:
        handlers: dict[type, Callable[[Any], Any]] = {
            StartChild: self._req_start_child,
            TerminateChild: self._req_terminate_child,
            RestartChild: self._req_restart_child,
            DeleteChild: self._req_delete_child,
            WhichChildren: self._req_which_children,
            CountChildren: self._req_count_children,
            GetChildSpec: self._req_get_childspec,
        }
        return handlers.get(type(request))

    def _existing(self, child_id: Hashable) -> _Child:
        child = self._find_key(child_id)
        if child is None:
            raise NotFound(f"no child with id {child_id!r}")
        return child

    def _req_start_child(self, request: StartChild) -> Any:
        spec = request.spec
        if not isinstance(spec, ChildSpec):
            raise InvalidSpec(f"start_child: expected a ChildSpec, got {spec!r}")
        check_significant(spec, self._auto_shutdown)
        existing = self._find_key(spec.id)
        if existing is not None:
            if existing.running:
                raise AlreadyStarted(spec.id, existing.address)
            raise AlreadyPresent(f"child {spec.id!r} is present (not running)")
        return self._start_new(spec)

    def _start_new(self, spec: ChildSpec) -> Generator[_Wait, Any, Any]:
        child = _Child(spec, spec.id)
        result, detail = yield from self._start_child(child)
        if result == "error":
            raise _start_error(spec, detail)
        if result == "ok" or spec.restart != "temporary":
            self._kids.append(child)
        return child.address

    def _req_terminate_child(self, request: TerminateChild) -> Any:
        child = self._existing(request.child)
        return self._terminate(child)

    def _terminate(self, child: _Child) -> Generator[_Wait, Any, None]:
        if child.running:
            yield from self._stop_children([child])
        child.restarting = False
        if child.spec.restart == "temporary":
            self._remove(child)

    def _req_restart_child(self, request: RestartChild) -> Any:
        child = self._existing(request.child_id)
        if child.restarting:
            raise Restarting(f"child {request.child_id!r} is restarting")
        if child.running:
            raise Running(f"child {request.child_id!r} is running")
        return self._restart_stopped(child)

    def _restart_stopped(self, child: _Child) -> Generator[_Wait, Any, Any]:
        result, detail = yield from self._start_child(child)
        if result == "error":
            raise _start_error(child.spec, detail)
        return child.address

    def _req_delete_child(self, request: DeleteChild) -> None:
        child = self._existing(request.child_id)
        if child.restarting:
            raise Restarting(f"child {request.child_id!r} is restarting")
        if child.running:
            raise Running(f"child {request.child_id!r} is running")
        self._remove(child)

    def _req_which_children(self, request: WhichChildren) -> list[ChildInfo]:
        # OTP keeps its children newest first and lists them so.
        return [_info(child.spec.id, child) for child in reversed(self._kids)]

    def _req_count_children(self, request: CountChildren) -> dict[str, int]:
        return _count(self._kids)

    def _req_get_childspec(self, request: GetChildSpec) -> ChildSpec:
        return self._existing(request.child_id).spec


class DynamicSupervisor(_SupervisorBase):
    """A supervisor whose children are all added at run time (Elixir's
    ``DynamicSupervisor``, OTP's ``simple_one_for_one``).

    Strategy is ``one_for_one``; children are identified by address;
    ``max_children`` bounds how many it holds (running or restarting).
    ``restart_child`` and ``delete_child`` raise :class:`~supervision.NotSupported`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kids: list[_Child] = []
        self._keys = itertools.count(1)
        self._max_children: int | None = None
        self._extra_arguments: tuple[Any, ...] = ()

    def init(self, *args: Any, **kwargs: Any) -> DynamicSupervisorSpec:
        """Return this supervisor's flags. The default takes a
        ``DynamicSupervisorSpec`` as the only argument, or uses the defaults."""
        if not args and not kwargs:
            return DynamicSupervisorSpec()
        if len(args) == 1 and not kwargs and isinstance(args[0], DynamicSupervisorSpec):
            return args[0]
        raise InvalidSpec(f"{type(self).__qualname__}.init must return a DynamicSupervisorSpec")

    def _sv_start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        spec = self.init(*args, **kwargs)
        if spec is IGNORE:
            return IGNORE
        if not isinstance(spec, DynamicSupervisorSpec):
            raise InvalidSpec(f"init returned {spec!r}, not a DynamicSupervisorSpec")
        self._max_restarts, self._max_seconds = spec.max_restarts, spec.max_seconds
        self._max_children = spec.max_children
        self._extra_arguments = spec.extra_arguments
        self._auto_shutdown = spec.auto_shutdown
        return None

    def _children(self) -> list[_Child]:
        return self._kids

    def _remove(self, child: _Child) -> None:
        self._kids = [c for c in self._kids if c is not child]

    def _after_child_gone(self, child: _Child) -> None:
        self._remove(child)

    def _stop_all(self) -> Op:
        yield from self._stop_children([c for c in self._kids if c.running])
        self._kids = []

    def _restart_by_strategy(self, child: _Child) -> Op:
        yield from self._restart_one(child)

    def _request_handler(self, request: Any) -> Callable[[Any], Any] | None:
        handlers: dict[type, Callable[[Any], Any]] = {
            StartChild: self._req_start_child,
            TerminateChild: self._req_terminate_child,
            RestartChild: _not_supported,
            DeleteChild: _not_supported,
            WhichChildren: lambda r: [_info(None, c) for c in self._kids],
            CountChildren: lambda r: _count(self._kids),
        }
        return handlers.get(type(request))

    def _req_start_child(self, request: StartChild) -> Any:
        spec = request.spec
        if not isinstance(spec, ChildSpec):
            raise InvalidSpec(f"start_child: expected a ChildSpec, got {spec!r}")
        check_significant(spec, self._auto_shutdown)
        if self._max_children is not None and len(self._kids) >= self._max_children:
            raise MaxChildren(f"max_children ({self._max_children}) reached")
        if self._extra_arguments:
            start: Start = spec.start
            extended = Start(start.actor_class, self._extra_arguments + start.args, start.kwargs)
            spec = dataclasses.replace(spec, start=extended)
        return self._start_new(spec)

    def _start_new(self, spec: ChildSpec) -> Generator[_Wait, Any, Any]:
        child = _Child(spec, next(self._keys))
        result, detail = yield from self._start_child(child)
        if result == "error":
            raise _start_error(spec, detail)
        if result == "ok":
            self._kids.append(child)
        return child.address

    def _req_terminate_child(self, request: TerminateChild) -> Any:
        if not isinstance(request.child, ActorAddress):
            # OTP: terminate_child of a simple_one_for_one by anything but a
            # pid is {error, simple_one_for_one}.
            raise NotSupported(
                f"a DynamicSupervisor terminates children by address, not by {request.child!r}"
            )
        child = self._find_address(request.child)
        if child is None:
            # A child between restart attempts is found by the address of the
            # process that died (OTP's {restarting, OldPid}); terminating it
            # ends the retries.
            child = next(
                (
                    c
                    for c in self._kids
                    if c.restarting
                    and c.last_address is not None
                    and c.last_address == request.child
                ),
                None,
            )
        if child is None:
            raise NotFound(f"no child at {request.child!r}")
        return self._terminate(child)

    def _terminate(self, child: _Child) -> Generator[_Wait, Any, None]:
        if child.running:
            yield from self._stop_children([child])
        child.restarting = False
        self._remove(child)


def _start_error(spec: ChildSpec, reason: ExitReason) -> SupervisionError:
    """The error of a failed start: ``AlreadyStarted`` with the holder's address
    when the child's name is taken (OTP's ``{already_started, Pid}``), else
    ``StartError`` with the reason."""
    if (
        spec.name is not None
        and isinstance(reason, tuple)
        and len(reason) == 2
        and reason[0] == "already_started"
    ):
        return AlreadyStarted(spec.id, reason[1], spec.name)
    return StartError(spec.id, reason)


def _not_supported(request: Any) -> Any:
    raise NotSupported(f"{type(request).__name__} is not supported by a DynamicSupervisor")


def _info(child_id: Hashable, child: _Child) -> ChildInfo:
    address = "restarting" if child.restarting else child.address
    return ChildInfo(child_id, address, str(child.spec.type), (child.spec.actor_class,))


def _count(children: list[_Child]) -> dict[str, int]:
    supervisors = sum(1 for c in children if c.spec.type == "supervisor")
    return {
        "specs": len(children),
        "active": sum(1 for c in children if c.running),
        "supervisors": supervisors,
        "workers": len(children) - supervisors,
    }


__all__ = ["DynamicSupervisor", "Supervisor"]
