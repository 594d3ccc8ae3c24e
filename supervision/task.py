"""Elixir's ``Task`` and ``Task.Supervisor``: run one function in its own actor.

From ordinary code (outside actors)::

    task = Task.async_(crunch, data)        # Elixir's Task.async(fn)
    value = task.await_(timeout=5.0)         # Task.await(task, 5000)

    sup = ...  # a task_supervisor("tasks") child somewhere in the tree
    TaskSupervisor.start_child(sup, notify, user_id)            # fire and forget
    value = TaskSupervisor.async_nolink(sup, crunch, data).await_()

From inside a :class:`~supervision.Server` (which must never block)::

    ref = TaskSupervisor.async_nolink_from(self, sup, crunch, data)
    ...
    def handle_info(self, message):
        if isinstance(message, TaskReply) and message.ref == ref: ...

The function and its arguments travel in messages: on multiprocTCPBase they
must pickle (a module-level function, or a ``functools.partial`` of one, with
picklable arguments; no lambdas or closures). The task's actor runs the
function once and ends: ``"normal"`` after it returned, a
:class:`~supervision.Crash` after it raised. Where it runs: its own OS
process on multiprocTCPBase; the caller's thread on simpleSystemBase (the
function has run by the time ``async_`` returns); a worker thread on the
``light`` base (``asyncio.to_thread``), so that a long function does not stop
the other light actors. On multiprocTCPBase too the function runs in a
thread of the task's process, so that the task's actor still takes messages
(an await, its supervisor's shutdown) meanwhile.

Killing a task (an ``await_`` past its timeout, ``shutdown``) SIGKILLs its
process on multiprocTCPBase. In-process (simple, light) the actor is ended
at once, but a Python thread cannot be stopped: on light the function runs on
in its worker thread and its result is dropped.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from thespian.actors import ActorExitRequest, ActorSystem, WatchMessage

from . import calls
from .errors import CallTimeout, NoProc, SupervisionError
from .light import LightSystem, TaskDone, loop_of, start_task
from .protocol import Call, ChildStarted, ChildStartFailed, From, InitChild, Kill, StartChild
from .reasons import NORMAL, Crash, ExitReason
from .server import NOREPLY, Server
from .spec import ChildSpec, DynamicSupervisorSpec
from .supervisor import DynamicSupervisor

#: Elixir's ``Task.await`` default (5000 ms).
DEFAULT_AWAIT = 5.0

#: Seconds a task under a supervisor gets to stop on its supervisor's
#: shutdown before it is killed (Elixir's ``Task.Supervisor`` default, 5000 ms).
TASK_SHUTDOWN = 5.0


class TaskExit(SupervisionError):
    """The task ended without a result; ``reason`` is its exit reason.

    A :class:`~supervision.Crash` when the function raised (``reason.exception``
    holds the exception when it pickles), ``"killed"`` when its process was
    killed, ``"shutdown"`` when its supervisor stopped it, ``"noproc"`` when no
    task lives at the address any more (it was awaited already, or killed).
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(f"task exited: {reason}")
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


@dataclass(frozen=True)
class TaskReply:
    """What a Server gets in ``handle_info`` for a task it started with
    :meth:`TaskSupervisor.async_nolink_from`: ``ok=True`` and the function's
    return value, or ``ok=False`` and the task's exit reason (a ``Crash``,
    ``"shutdown"``...)."""

    ref: str
    ok: bool
    value: Any


@dataclass(frozen=True)
class _Job:
    fun: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class _Go:
    job: _Job


@dataclass(frozen=True)
class _Await:
    pass


_RUN = "run"


class _TaskRunner(Server):
    """The actor of one task.

    ``mode``: ``"await"`` (the outcome is held until an ``_Await`` call takes
    it; the job comes with the ``_Go`` call, answered with the pid),
    ``"detached"`` (the same for a runner started outside any supervisor: it
    reaps itself), ``"push"`` (the job is in the start arguments; the outcome
    is sent to ``owner`` as ``TaskReply(ref, ...)``), ``"forget"`` (the job
    is in the start arguments; nobody is told).
    """

    def init(
        self, mode: str, job: _Job | None = None, owner: Any = None, ref: str | None = None
    ) -> Any:
        self._mode = mode
        self._job = job
        self._owner = owner
        self._ref = ref
        self._outcome: tuple[bool, Any] | None = None
        self._waiter: From | None = None
        self._told = False
        self._pipe = -1
        self._thread_outcome: tuple[bool, Any] = (False, None)
        if job is not None:
            self.continue_with(_RUN)
        return None

    def get_state(self) -> Any:
        return {"mode": self._mode, "done": self._outcome is not None}

    def handle_call(self, request: Any, from_: From) -> Any:
        if isinstance(request, _Go) and self._job is None:
            self._job = request.job
            self.continue_with(_RUN)
            return os.getpid()
        if isinstance(request, _Await):
            if self._outcome is None:
                self._waiter = from_
                return NOREPLY
            self._hand_over(from_)
            return NOREPLY
        return super().handle_call(request, from_)

    def handle_continue(self, term: Any) -> None:
        job = self._job
        assert job is not None
        try:
            loop_of(self)
        except SupervisionError:
            pass
        else:  # light: a worker thread, so that the other actors on the loop go on
            start_task(self, asyncio.to_thread(job.fun, *job.args), tag=_RUN)
            return
        if self.multiprocess:
            # a thread of this actor's process, so that the actor still takes
            # messages (an await, its supervisor's shutdown) while it runs
            self._run_in_thread(job)
            return
        self._done(*_outcome(job))

    def _run_in_thread(self, job: _Job) -> None:
        readable, writable = os.pipe()
        self._pipe = readable
        self.watch_fileno(readable)

        def work() -> None:
            self._thread_outcome = _outcome(job)
            os.write(writable, b"x")
            os.close(writable)

        threading.Thread(target=work, name="supervision-task", daemon=True).start()

    def handle_info(self, message: Any) -> None:
        if isinstance(message, TaskDone) and message.tag == _RUN:
            if message.error is not None:
                self._done(False, Crash.from_exception(message.error))
            else:
                self._done(True, message.result)
            return
        if isinstance(message, WatchMessage) and self._pipe in message.ready:
            self.unwatch_fileno(self._pipe)
            os.close(self._pipe)
            self._pipe = -1
            self._done(*self._thread_outcome)
            return
        super().handle_info(message)

    def _done(self, ok: bool, value: Any) -> None:
        self._outcome = (ok, value)
        if self._mode == "push":
            self._tell_owner(ok, value)
            self.stop(NORMAL if ok else value)
        elif self._mode == "forget":
            self.stop(NORMAL if ok else value)
        elif self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            self._hand_over(waiter)

    def _hand_over(self, from_: From) -> None:
        assert self._outcome is not None
        ok, value = self._outcome
        if ok:
            self.reply(from_, value)
            self.stop(NORMAL)
        else:
            self.reply_error(from_, TaskExit(value))
            self.stop(value)

    def _tell_owner(self, ok: bool, value: Any) -> None:
        if not self._told and self._owner is not None and self._ref is not None:
            self._told = True
            self.send(self._owner, TaskReply(self._ref, ok, value))

    def terminate(self, reason: ExitReason) -> None:
        if self._mode == "push":  # stopped before it finished (its supervisor's shutdown)
            self._tell_owner(False, reason)

    def _sv_exit(self, reason: ExitReason) -> None:
        if self._mode == "detached":
            self._sv_parent = None  # no supervisor to reap it: it reaps itself
        super()._sv_exit(reason)


def _outcome(job: _Job) -> tuple[bool, Any]:
    """Run the job: ``(True, value)``, or ``(False, Crash)`` when it raised."""
    try:
        return (True, job.fun(*job.args))
    except Exception as exc:
        return (False, Crash.from_exception(exc))


def _in_process(system: ActorSystem) -> bool:
    return isinstance(system, LightSystem) or calls._is_simple(system)


def _job(fun: Callable[..., Any], args: tuple[Any, ...], system: ActorSystem) -> _Job:
    if not callable(fun):
        raise TypeError(f"a task runs a callable, got {fun!r}")
    job = _Job(fun, tuple(args))
    if not _in_process(system):
        try:
            pickle.dumps(job)
        except Exception as exc:
            raise TypeError(
                f"task function {fun!r} and its arguments must pickle on a multi-process "
                f"base (use a module-level function): {exc}"
            ) from None
    return job


def _spec(args: tuple[Any, ...]) -> ChildSpec:
    return ChildSpec(
        "task",
        (_TaskRunner, args),
        restart="temporary",
        shutdown=TASK_SHUTDOWN,
        start_timeout=None,
    )


@dataclass(frozen=True)
class Task:
    """A running task, as returned by :meth:`async_` and
    :meth:`TaskSupervisor.async_nolink` (Elixir's ``%Task{}``); to be awaited
    once, by ordinary code (not inside an actor: use
    :meth:`TaskSupervisor.async_nolink_from` there)."""

    address: Any
    pid: int
    system: ActorSystem | None = field(default=None, compare=False, repr=False)

    @classmethod
    def async_(
        cls, fun: Callable[..., Any], *args: Any, system: ActorSystem | None = None
    ) -> Task:
        """Run ``fun(*args)`` in a new actor of its own (Elixir's ``Task.async``)
        and return at once (on simpleSystemBase: once it ran).

        The task is under no supervisor and is not restarted. Elixir links the
        task to its caller, so that a crash takes the caller down: ordinary
        code has no process to take down, and a crash is raised by
        :meth:`await_` instead. Raises ``TypeError`` when ``fun`` or ``args``
        do not pickle on a multi-process base, ``SupervisionError`` when the
        actor cannot be started.
        """
        asys = system or calls.current_system()
        job = _job(fun, args, asys)
        address = _spawn(asys)
        pid: int = calls.call(address, _Go(job), None, system=asys)
        return cls(address, pid, asys)

    def await_(self, timeout: float | None = DEFAULT_AWAIT) -> Any:
        """Wait for the task's result (Elixir's ``Task.await(task, timeout)``,
        5 s by default; ``None``: wait forever).

        Returns what the function returned. Raises :class:`TaskExit` with the
        exit reason when the task ended without a result: a ``Crash`` when the
        function raised, ``"killed"``, ``"shutdown"`` (its supervisor stopped
        it), ``"noproc"`` (it was awaited already or killed). Raises
        :class:`~supervision.CallTimeout` when no result came within
        ``timeout`` seconds; the task is then killed, as Elixir's caller exit
        kills the linked task. A task is awaited once: its actor ends when it
        handed over its result.
        """
        try:
            return calls.call(self.address, _Await(), timeout, system=self.system)
        except CallTimeout:
            self._kill()
            raise CallTimeout(self, timeout) from None
        except NoProc as gone:
            raise TaskExit(gone.reason) from None

    def yield_(self, timeout: float | None = DEFAULT_AWAIT) -> Any:
        """Like :meth:`await_`, but ``None`` when no result came within
        ``timeout`` seconds; the task then runs on (Elixir's ``Task.yield``),
        and can be asked again. A crash raises :class:`TaskExit` as in
        :meth:`await_` (Elixir returns ``{:exit, reason}``). A function that
        returns ``None`` cannot be told from a timeout: use :meth:`await_`
        for those."""
        try:
            return calls.call(self.address, _Await(), timeout, system=self.system)
        except CallTimeout:
            return None
        except NoProc as gone:
            raise TaskExit(gone.reason) from None

    def shutdown(self, timeout: float = 0.5) -> Any:
        """End the task (Elixir's ``Task.shutdown``): its result when it has
        finished (or finishes within ``timeout`` seconds), else ``None`` after
        killing it. A task that crashed raises :class:`TaskExit`, one already
        gone ``TaskExit("noproc")``. The task does not get to run any cleanup:
        a function in progress cannot be interrupted but by a kill."""
        try:
            return calls.call(self.address, _Await(), timeout, system=self.system)
        except CallTimeout:
            self._kill()
            return None
        except NoProc as gone:
            raise TaskExit(gone.reason) from None

    def _kill(self) -> None:
        """SIGKILL the task's process (multi-process bases); in-process, end
        the actor without its ``terminate`` (Elixir's ``exit(pid, :kill)``)."""
        if self.pid != os.getpid():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        asys = self.system or calls.current_system()
        _tell(asys, self.address, Kill())
        _tell(asys, self.address, ActorExitRequest())


def _tell(system: ActorSystem, address: Any, message: Any) -> None:
    if calls._is_simple(system):
        with calls._lock:
            system.tell(address, message)
        return
    with system.private() as endpoint:
        endpoint.tell(address, message)


#: Seconds a new detached task's actor may take to answer its start.
_SPAWN_TIMEOUT = 30.0


def _spawn(system: ActorSystem) -> Any:
    """Start a ``detached`` runner outside any supervisor; returns its address."""
    init = InitChild(("detached",), {}, os.getpid())
    if calls._is_simple(system):
        with calls._lock:
            address = system.createActor(_TaskRunner)
            system.tell(address, init)
            _started(system, address, simple=True)
            return address
    with system.private() as endpoint:
        creator = system if isinstance(system, LightSystem) else endpoint
        address = creator.createActor(_TaskRunner)
        endpoint.tell(address, init)
        _started(endpoint, address, simple=False)
        return address


def _started(endpoint: Any, address: Any, *, simple: bool) -> None:
    deadline = time.monotonic() + _SPAWN_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        answer = endpoint.listen(0 if simple else max(0.0, remaining))
        if isinstance(answer, ChildStarted):
            return
        if isinstance(answer, ChildStartFailed):
            raise SupervisionError(f"task actor at {address} failed to start: {answer.reason}")
        if answer is None and (simple or remaining <= 0):
            raise SupervisionError(f"task actor at {address} did not start")
        # anything else is a stale reply to an earlier exchange: drop it


class TaskSupervisor(DynamicSupervisor):
    """Elixir's ``Task.Supervisor``: a DynamicSupervisor of ``temporary``
    tasks (never restarted; forgotten when they end). Put one in a tree with
    :func:`task_supervisor`. Each task gets :data:`TASK_SHUTDOWN` seconds to
    stop on the supervisor's shutdown; one whose function is still running
    then is killed."""

    @staticmethod
    def start_child(
        supervisor: Any,
        fun: Callable[..., Any],
        *args: Any,
        system: ActorSystem | None = None,
    ) -> Any:
        """Run ``fun(*args)`` in a new task under ``supervisor``, from ordinary
        code, and return the task's address at once (fire and forget: Elixir's
        ``Task.Supervisor.start_child``). Its result is dropped; a crash is
        logged by the supervisor and not restarted. Raises what
        :func:`supervision.start_child` raises (``MaxChildren``, ``NoProc``...)."""
        asys = system or calls.current_system()
        spec = _spec(("forget", _job(fun, args, asys)))
        return calls.start_child(supervisor, spec, system=asys)

    @staticmethod
    def async_nolink(
        supervisor: Any,
        fun: Callable[..., Any],
        *args: Any,
        system: ActorSystem | None = None,
    ) -> Task:
        """Run ``fun(*args)`` in a new task under ``supervisor``, from ordinary
        code; await it with :meth:`Task.await_` (Elixir's
        ``Task.Supervisor.async_nolink``). Not linked: a crash is raised by
        ``await_`` as :class:`TaskExit`, the supervisor logs it and does not
        restart it. Raises what :func:`supervision.start_child` raises."""
        asys = system or calls.current_system()
        job = _job(fun, args, asys)
        address = calls.start_child(supervisor, _spec(("await",)), system=asys)
        pid: int = calls.call(address, _Go(job), None, system=asys)
        return Task(address, pid, asys)

    @staticmethod
    def async_nolink_from(
        server: Server, supervisor: Any, fun: Callable[..., Any], *args: Any
    ) -> str:
        """From inside ``server``'s handlers: run ``fun(*args)`` in a new task
        under ``supervisor``, without blocking; returns the task's ref.

        ``server.handle_info`` then gets exactly one ``TaskReply(ref, ok,
        value)`` for every end the task can observe: ``ok=True`` with the
        result; ``ok=False`` with the exit reason after a crash (a ``Crash``)
        or its supervisor's shutdown (``"shutdown"``). Not linked: a crash
        never takes ``server`` down. A task that is SIGKILLed or
        ``brutal_kill``\\ ed sends nothing. ``handle_info`` also gets the
        supervisor's ``CallReply`` of the start, with the same ``ref``: with
        ``ok=False`` (``MaxChildren``, ``NoProc``...) the task was not
        started and no ``TaskReply`` follows. On multiprocTCPBase ``fun``
        and ``args`` must pickle (checked when the supervisor starts it).
        """
        ref = uuid.uuid4().hex
        spec = _spec(("push", _Job(fun, tuple(args)), server.address, ref))
        server.send(supervisor, Call(ref, StartChild(spec)))
        return ref


def task_supervisor(
    child_id: Any = "task_supervisor", *, max_children: int | None = None
) -> ChildSpec:
    """The ChildSpec of a :class:`TaskSupervisor` (``permanent``, its
    supervisor's ``"infinity"`` shutdown): at most ``max_children`` tasks
    at once (``None``: no bound; past it ``MaxChildren``)."""
    spec = DynamicSupervisorSpec(max_children=max_children)
    return ChildSpec(child_id, (TaskSupervisor, (spec,)))


__all__ = [
    "DEFAULT_AWAIT",
    "Task",
    "TaskExit",
    "TaskReply",
    "TaskSupervisor",
    "task_supervisor",
]
