"""Lightweight actors: many supervised actors in one OS process, on asyncio.

``LightSystem`` is an actor system (the subset of Thespian's ``ActorSystem``
that :mod:`supervision` uses) whose actors are ordinary Python objects in
this process, all run by one asyncio event loop. The actor classes are the
usual ones, unchanged: :class:`~supervision.Server`,
:class:`~supervision.Supervisor`, :class:`~supervision.DynamicSupervisor`,
the application master, any Thespian ``Actor`` subclass. Each gets a
reference object standing in for Thespian's, so that ``send``,
``createActor``, ``wakeupAfter``, ``myAddress`` and a returned
``ThespianWatch`` work as on Thespian. Start one with
``Application(root, base="light")`` (or ``LightSystem()`` and
``Application(root, system=...)``).

Guarantees (each covered by ``tests/unit/test_light.py``):

- **One loop per host process.** By default every ``LightSystem`` of the
  process shares one event loop, run by a daemon thread started on first
  use (:func:`host_loop`). ``LightSystem(loop=...)`` runs the actors on an
  event loop the caller runs instead (the one aiormq uses, say): actor code
  and that loop's coroutines then share one thread, with no hop.
- **Delivery**: messages are handled one at a time, in the order they were
  sent between any two actors (one FIFO for the whole system). The loop
  gets control back at least every :data:`SLICE_SECONDS` of message
  handling, so timers and I/O are served while actors are busy; a handler
  that runs long still delays everything (nothing can preempt Python code).
- **Timers** (``wakeupAfter``, hence ``Server.send_after`` and every
  supervisor timeout) are ``loop.call_later``: they fire on time with
  nobody calling ``ask``/``listen``.
- **File descriptors**: a ``ThespianWatch(filenos)`` returned by
  ``receiveMessage`` registers the fds with the loop (``add_reader``); a
  readable fd is delivered as ``WatchMessage([fd])``, after which the actor
  must return ``ThespianWatch`` again to keep watching (as on Thespian).
  :func:`start_task` runs a coroutine on the loop for an actor and delivers
  its outcome as :class:`TaskDone`.
- **An exception ends only that actor.** ``supervision`` actors turn a
  handler exception into a ``Crash`` exit themselves (the supervisor applies
  OTP's rules). A raw Thespian actor whose ``receiveMessage`` raises is
  ended (its parent gets ``ChildActorExited``); nothing else is disturbed.
- **Exit**: an actor that handled ``ActorExitRequest`` is removed; each of
  its children still alive gets ``ActorExitRequest``; its parent gets
  ``ChildActorExited``; its tasks from :func:`start_task` are cancelled,
  its fds unwatched.
- **Dead letters**: a ``Call`` sent to an actor that is gone is answered
  ``CallReply(ok=False, NoProc)`` at once (OTP's ``noproc``); anything else
  sent there is dropped.
- **Blocking calls from ordinary code** (``supervision.call``, ``cast``,
  ``Application``) work from any thread but the loop's own (there they
  raise ``SupervisionError``, since waiting would stop the loop): use
  :func:`acall` from coroutines on the loop, ``Server.call_async`` in actors.

Not provided: kills that interrupt a running handler (a ``brutal_kill`` or
shutdown timeout of an in-process child ends it only once its handler
returns, as on simpleSystemBase; a child started with
``ChildSpec(placement="process")`` runs in its own OS process and is
SIGKILLed, see :mod:`supervision.placement`), capabilities, source loading,
dead-letter handlers, troupes. Thespian's global names are kept in a plain
table (``createActor(globalName=...)`` gives the live actor of that name or
creates it top-level), enough for :mod:`supervision.registry`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import importlib
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from thespian.actors import (
    Actor,
    ActorAddress,
    ActorExitRequest,
    ChildActorExited,
    ThespianWatch,
    WakeupMessage,
    WatchMessage,
)

from .errors import CallTimeout, SupervisionError
from .monitors import NOPROC, noproc_error
from .protocol import Call, CallReply, Down, ExitSignal, Link, Monitor

log = logging.getLogger("supervision.light")

#: The ``base`` name that selects this runtime in ``Application``/``start_actor_system``.
LIGHT_BASE = "light"

#: Longest stretch of message handling before the loop serves timers and I/O.
SLICE_SECONDS = 0.001

_ids = itertools.count(1)

#: This process's pid, kept current across forks (``os.getpid`` is a system call).
_pid = os.getpid()


def _after_fork() -> None:
    global _pid, _last_words_changed
    _pid = os.getpid()
    _last_words.clear()  # the parent's tasks are not this process's
    _last_words_changed = threading.Condition()  # another thread may have held it


os.register_at_fork(after_in_child=_after_fork)


class LightAddress(ActorAddress):  # type: ignore[misc]
    """The address of a light actor (or endpoint): unique in this OS process."""

    def __init__(self, number: int) -> None:
        super().__init__(("light", _pid, number))

    def __str__(self) -> str:
        _, pid, number = self.addressDetails
        return f"ActorAddr-light:{pid}:{number}"


@dataclass(frozen=True)
class TaskDone:
    """Delivered to an actor when a coroutine it started with :func:`start_task`
    ends: ``result`` when it returned, ``error`` when it raised or was cancelled."""

    tag: Any
    result: Any = None
    error: BaseException | None = None


class _Ref:
    """What a hosted actor sees as Thespian's ``_myRef``: its address and the
    operations ``Actor.send``/``createActor``/``wakeupAfter`` delegate to."""

    __slots__ = (
        "address",
        "alive",
        "children",
        "globalName",
        "instance",
        "key",
        "parent",
        "system",
        "tasks",
        "watched",
    )

    def __init__(self, system: LightSystem, instance: Any, parent: _Ref | None) -> None:
        self.address = LightAddress(next(_ids))
        self.key = self.address.addressDetails
        self.system = system
        self.instance = instance
        self.parent = parent
        self.children: dict[Any, _Ref] | None = None
        self.watched: set[int] | None = None
        self.tasks: set[asyncio.Task[Any]] | None = None
        self.alive = True
        self.globalName = None

    # Thespian's actor-side interface ------------------------------------

    def actor_send(self, target: Any, message: Any) -> None:
        """``Actor.send``: queue ``message`` for ``target`` (loop thread)."""
        self.system._post(target, message, self.address)

    def createActor(
        self,
        actorClass: Any,
        targetActorRequirements: Any = None,
        globalName: Any = None,
        sourceHash: Any = None,
    ) -> Any:
        """``Actor.createActor``: a child of this actor, in this system; with
        ``globalName`` the system's live actor of that name, else a new
        top-level actor under it (see :meth:`LightSystem.createActor`)."""
        if sourceHash is not None:
            raise NotImplementedError("light actors have no loaded sources")
        return self.system._create(actorClass, self, globalName)

    def wakeupAfter(self, timePeriod: Any, payload: Any = None) -> None:
        """``Actor.wakeupAfter``: a ``WakeupMessage`` after ``timePeriod`` (loop timer)."""
        self.system._wakeup(self, timePeriod, payload)

    def handleDeadLetters(self, address: Any, enable: bool) -> None:
        """Not supported: dead letters are dropped (a ``Call`` answered ``NoProc``)."""
        raise NotImplementedError("light actors have no dead-letter handlers")

    def notifyOnSystemRegistrationChanges(self, address: Any, enable: bool) -> None:
        """Not supported (no convention of actor systems)."""
        raise NotImplementedError("light actors have no system registrations")

    def actorSystemShutdown(self) -> None:
        """Shut the whole light system down (asynchronously)."""
        self.system._begin_shutdown()


class _Endpoint:
    """A mailbox for ordinary (non-actor) code: what ``ActorSystem.private()``
    gives on Thespian. Messages to its address are queued for :meth:`listen`."""

    def __init__(self, system: LightSystem) -> None:
        self.system = system
        #: What supervision.calls reads off a Thespian endpoint (no transport here).
        self._systemBase = system
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ref = _Ref(system, self, None)
        system._actors[self._ref.key] = self._ref

    @property
    def address(self) -> Any:
        """The endpoint's address (the ``sender`` of what it tells)."""
        return self._ref.address

    def receiveMessage(self, message: Any, sender: Any) -> None:
        """Loop side: keep ``message`` for :meth:`listen`."""
        self._queue.put(message)

    def tell(self, address: Any, message: Any) -> None:
        """Send ``message`` to ``address`` from this endpoint."""
        self.system._external_post(address, message, self._ref.address)

    def listen(self, timeout: float | None = None) -> Any:
        """The next message sent to this endpoint, or None after ``timeout`` seconds."""
        self.system._forbid_blocking()
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def ask(self, address: Any, message: Any, timeout: float | None = None) -> Any:
        """:meth:`tell` then :meth:`listen`."""
        self.tell(address, message)
        return self.listen(timeout)

    def close(self) -> None:
        """Stop receiving; later messages to the address are dead letters."""
        self._ref.alive = False
        self.system._actors.pop(self._ref.key, None)


# ---------------------------------------------------------------- the loop

_host: asyncio.AbstractEventLoop | None = None
_host_lock = threading.Lock()


def host_loop() -> asyncio.AbstractEventLoop:
    """The process's shared event loop for light actors, run by a daemon thread
    (``supervision-light``) started on the first call; the same loop after."""
    global _host
    with _host_lock:
        if _host is not None and not _host.is_closed():
            return _host
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        threading.Thread(target=run, name="supervision-light", daemon=True).start()
        ready.wait()
        _host = loop
        return loop


def _seconds(period: Any) -> float:
    if isinstance(period, timedelta):
        return max(0.0, period.total_seconds())
    return max(0.0, float(period))


class LightSystem:
    """An actor system whose actors run on one asyncio loop in this process.

    ``loop``: the event loop to run on (default :func:`host_loop`); it must
    be running (or run later) for anything to happen. ``slice_seconds``:
    see :data:`SLICE_SECONDS`. Public methods are Thespian's ``ActorSystem``
    ones that :mod:`supervision` uses; they may be called from any thread,
    but the blocking ones (``listen``, ``ask``, ``private`` endpoints'
    ``listen``) not from the loop's own thread.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        slice_seconds: float = SLICE_SECONDS,
    ) -> None:
        self._loop = loop if loop is not None else host_loop()
        #: Read by ``supervision.calls`` to tell bases apart.
        self._systemBase = self
        #: A call to a dead address is answered NoProc here (no dead-letter
        #: actor is needed, see supervision.monitors.ensure_dead_letters).
        self.answers_dead_letters = True
        self._slice = slice_seconds
        self._actors: dict[Any, _Ref] = {}
        self._top: dict[Any, _Ref] = {}
        #: Thespian's global names: name -> the live actor created under it.
        self._globals: dict[Any, _Ref] = {}
        self._queue: collections.deque[tuple[Any, Any, Any]] = collections.deque()
        self._scheduled = False
        self._live = 0
        self._closing = False
        self._emptied = threading.Event()
        self._emptied.set()
        self._endpoint: _Endpoint | None = None
        self._idle_waiters: list[concurrent.futures.Future[None]] = []

    # ------------------------------------------------------------ public

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the actors run on."""
        return self._loop

    @property
    def actor_count(self) -> int:
        """How many actors are alive (endpoints not counted)."""
        return self._live

    def createActor(
        self,
        actorClass: Any,
        targetActorRequirements: Any = None,
        globalName: Any = None,
        sourceHash: Any = None,
    ) -> Any:
        """Create a top-level actor; returns its address. Raises what the
        class's ``__init__`` raises, ``SupervisionError`` once shut down.

        ``globalName`` (as Thespian): when a live actor was created under that
        name, its address is returned and nothing is created; else the new
        actor is top-level (whoever created it) and holds the name until it
        ends."""
        if sourceHash is not None:
            raise NotImplementedError("light actors have no loaded sources")
        return self._on_loop(self._create, actorClass, None, globalName)

    def tell(self, address: Any, message: Any) -> None:
        """Send ``message`` to ``address`` (replies go to :meth:`listen`)."""
        self._external_post(address, message, self._system_endpoint().address)

    def listen(self, timeout: float | None = None) -> Any:
        """The next message sent to this system's own endpoint, or None after ``timeout``."""
        return self._system_endpoint().listen(timeout)

    def ask(self, address: Any, message: Any, timeout: float | None = None) -> Any:
        """:meth:`tell` then :meth:`listen`."""
        return self._system_endpoint().ask(address, message, timeout)

    @contextlib.contextmanager
    def private(self) -> Iterator[_Endpoint]:
        """A private endpoint (own address and mailbox) for one exchange."""
        self._forbid_blocking()
        endpoint = _Endpoint(self)
        try:
            yield endpoint
        finally:
            endpoint.close()

    def settle(self, timeout: float = 10.0) -> None:
        """Block until no message is waiting to be handled: every message sent
        so far, and every message its handling sent, was handled.

        Timers that are not due yet, watched fds and running tasks are not
        waited for. Meant for tests that step a system and then look at it
        (simpleSystemBase settles inside every ``tell``). Raises
        ``CallTimeout`` when messages keep coming for ``timeout`` seconds,
        ``SupervisionError`` on the loop's own thread.
        """
        self._forbid_blocking()
        done: concurrent.futures.Future[None] = self._on_loop(self._idle_future)
        try:
            done.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise CallTimeout("settle", timeout) from None

    def _idle(self) -> bool:
        """No message is waiting for delivery (call on the loop)."""
        return not (self._queue or self._scheduled)

    def _idle_future(self) -> concurrent.futures.Future[None]:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        if not self._idle():
            self._idle_waiters.append(done)
        else:
            done.set_result(None)
        return done

    def shutdown(self, timeout: float = 10.0) -> None:
        """End every actor (``ActorExitRequest`` to each top-level actor, which
        ends its children) and wait up to ``timeout`` seconds for all to be gone.
        Messages sent afterwards are dropped."""
        if self._on_loop_thread():
            self._begin_shutdown()
            return
        try:
            self._on_loop(self._begin_shutdown)
        except SupervisionError:
            return
        if not self._emptied.wait(timeout):
            log.warning("light system: %d actors still alive after %s s", self._live, timeout)

    # ------------------------------------------------------------ loop side

    def _create(self, actor_class: Any, parent: _Ref | None, global_name: Any = None) -> Any:
        if self._closing:
            raise SupervisionError("the light actor system is shut down")
        if global_name is not None:
            named = self._globals.get(global_name)
            if named is not None and named.alive:
                return named.address
            parent = None
        if isinstance(actor_class, str):
            module, _, name = actor_class.rpartition(".")
            actor_class = getattr(importlib.import_module(module), name)
        if not (isinstance(actor_class, type) and issubclass(actor_class, Actor)):
            raise TypeError(f"not an Actor class: {actor_class!r}")
        instance = actor_class()
        ref = _Ref(self, instance, parent)
        instance._myRef = ref
        self._actors[ref.key] = ref
        if global_name is not None:
            ref.globalName = global_name
            self._globals[global_name] = ref
        if parent is None:
            self._top[ref.key] = ref
        else:
            if parent.children is None:
                parent.children = {}
            parent.children[ref.key] = ref
        self._live += 1
        self._emptied.clear()
        return ref.address

    def _post(self, target: Any, message: Any, sender: Any) -> None:
        self._queue.append((target, message, sender))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._scheduled = False
        pending = self._queue
        actors = self._actors
        deadline = time.perf_counter() + self._slice
        while pending:
            target, message, sender = pending.popleft()
            try:
                ref = actors.get(target.addressDetails)
            except (AttributeError, TypeError):
                ref = None
            if ref is None:
                self._dead_letter(target, message, sender)
                continue
            self._deliver(ref, message, sender)
            if time.perf_counter() >= deadline:
                break
        if pending and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._pump)
        elif not pending and not self._scheduled and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.set_result(None)

    def _deliver(self, ref: _Ref, message: Any, sender: Any) -> None:
        instance = ref.instance
        try:
            result = instance.receiveMessage(message, sender)
        except KeyboardInterrupt:
            raise
        except BaseException:
            log.exception("%s raised in receiveMessage: it ends", type(instance).__qualname__)
            self._end(ref)
            return
        if isinstance(message, ActorExitRequest):
            self._end(ref)
        elif result is not None or ref.watched:
            self._set_watch(ref, result)

    def _end(self, ref: _Ref) -> None:
        if not ref.alive:
            return
        ref.alive = False
        self._actors.pop(ref.key, None)
        if ref.globalName is not None and self._globals.get(ref.globalName) is ref:
            del self._globals[ref.globalName]
        if ref.watched:
            for fd in ref.watched:
                self._loop.remove_reader(fd)
            ref.watched = None
        if ref.tasks:
            for task in list(ref.tasks):
                task.cancel()
            ref.tasks = None
        if ref.children:
            for child in list(ref.children.values()):
                self._post(child.address, ActorExitRequest(), ref.address)
        parent = ref.parent
        if parent is None:
            self._top.pop(ref.key, None)
        else:
            if parent.children is not None:
                parent.children.pop(ref.key, None)
            if parent.alive:
                self._post(parent.address, ChildActorExited(ref.address), ref.address)
        ref.instance = None
        ref.parent = None
        self._live -= 1
        if self._live == 0:
            self._emptied.set()

    def _dead_letter(self, target: Any, message: Any, sender: Any) -> None:
        """A message to an address where no actor lives: what expects an
        answer gets the one a dead process gives in OTP (``noproc``)."""
        if not self._closing:
            reply_to: Any = None
            answer: Any = None
            if isinstance(message, Call):
                reply_to = sender
                answer = CallReply(message.ref, False, noproc_error(target, NOPROC))
            elif isinstance(message, Monitor):
                reply_to, answer = message.watcher, Down(message.ref, target, NOPROC)
            elif isinstance(message, Link):
                reply_to, answer = message.linker, ExitSignal(target, NOPROC)
            try:
                alive = reply_to is not None and reply_to.addressDetails in self._actors
            except (AttributeError, TypeError):
                alive = False
            if alive:
                self._post(reply_to, answer, target)
                return
        log.debug("dead letter to %s: %r", target, message)

    def _wakeup(self, ref: _Ref, period: Any, payload: Any) -> None:
        self._loop.call_later(_seconds(period), self._fire, ref, WakeupMessage(period, payload))

    def _fire(self, ref: _Ref, message: Any) -> None:
        if ref.alive:
            self._deliver(ref, message, ref.address)

    def _set_watch(self, ref: _Ref, result: Any) -> None:
        wanted = set(result.filenos) if isinstance(result, ThespianWatch) else set()
        current = ref.watched or set()
        for fd in current - wanted:
            self._loop.remove_reader(fd)
        for fd in wanted - current:
            self._loop.add_reader(fd, self._fd_ready, ref, fd)
        ref.watched = wanted or None

    def _fd_ready(self, ref: _Ref, fd: int) -> None:
        self._loop.remove_reader(fd)
        if ref.watched is not None:
            ref.watched.discard(fd)
        if ref.alive:
            self._deliver(ref, WatchMessage([fd]), ref.address)

    def _begin_shutdown(self) -> None:
        self._closing = True
        for ref in list(self._top.values()):
            self._post(ref.address, ActorExitRequest(), None)
        if self._live == 0:
            self._emptied.set()

    # ------------------------------------------------------------ threads

    def _on_loop_thread(self) -> bool:
        return asyncio._get_running_loop() is self._loop

    def _forbid_blocking(self) -> None:
        if self._on_loop_thread():
            raise SupervisionError(
                "a blocking call on the light actors' own loop thread would stop the loop: "
                "use supervision.light.acall (coroutines) or Server.call_async (actors)"
            )

    def _external_post(self, target: Any, message: Any, sender: Any) -> None:
        if self._on_loop_thread():
            self._post(target, message, sender)
        else:
            self._loop.call_soon_threadsafe(self._post, target, message, sender)

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._on_loop_thread():
            return fn(*args)
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        try:
            self._loop.call_soon_threadsafe(run)
        except RuntimeError as exc:  # the loop is closed
            raise SupervisionError(f"the light actors' loop is closed: {exc}") from None
        try:
            return done.result(timeout=60)
        except concurrent.futures.TimeoutError:
            raise SupervisionError("the light actors' loop is not running") from None

    def _system_endpoint(self) -> _Endpoint:
        if self._endpoint is None:
            self._endpoint = _Endpoint(self)
        return self._endpoint


# ---------------------------------------------------------------- asyncio helpers


def _ref_of(actor: Any) -> _Ref:
    ref = getattr(actor, "_myRef", None)
    if not isinstance(ref, _Ref):
        raise SupervisionError(f"{actor!r} is not a light actor")
    return ref


def loop_of(actor: Any) -> asyncio.AbstractEventLoop:
    """The event loop that runs ``actor`` (a light actor); SupervisionError otherwise."""
    return _ref_of(actor).system.loop


def start_task(actor: Any, coro: Coroutine[Any, Any, Any], tag: Any = None) -> asyncio.Task[Any]:
    """Run ``coro`` on ``actor``'s loop (call it from the actor's own handlers).

    When it ends, ``TaskDone(tag, result, error)`` is delivered to the actor
    (``error`` is the exception, ``CancelledError`` included). The task is
    cancelled when the actor ends. Raises ``SupervisionError`` for an actor
    that is not a light actor.
    """
    ref = _ref_of(actor)
    system = ref.system
    task = system.loop.create_task(coro)
    if ref.tasks is None:
        ref.tasks = set()
    ref.tasks.add(task)

    def done(finished: asyncio.Task[Any]) -> None:
        if ref.tasks is not None:
            ref.tasks.discard(finished)
        if not ref.alive:
            return
        if finished.cancelled():
            outcome = TaskDone(tag, None, asyncio.CancelledError())
        elif finished.exception() is not None:
            outcome = TaskDone(tag, None, finished.exception())
        else:
            outcome = TaskDone(tag, finished.result(), None)
        system._post(ref.address, outcome, ref.address)

    task.add_done_callback(done)
    return task


#: Tasks this process's exit waits for (see :func:`last_words`).
_last_words: set[asyncio.Task[Any]] = set()
_last_words_changed = threading.Condition()


def last_words(task: asyncio.Task[Any]) -> None:
    """Have the end of this process wait for ``task``, a coroutine that
    outlives the actor that started it (a connection's close, the last acks
    of an actor's ``terminate``): a placed process (see
    :mod:`supervision.placement`) whose child has ended exits once every
    such task is done, or after at most ``placement.LAST_WORDS_SECONDS``;
    code that ends a process itself waits with :func:`wait_last_words`.
    ``task`` must be bounded in time by its owner; it is forgotten when it
    ends, whatever its outcome. Call it from the task's loop."""
    with _last_words_changed:
        _last_words.add(task)
    task.add_done_callback(_said)


def _said(task: asyncio.Task[Any]) -> None:
    with _last_words_changed:
        _last_words.discard(task)
        if not _last_words:
            _last_words_changed.notify_all()


def wait_last_words(timeout: float) -> bool:
    """Wait, from any thread but the loop's, until every task given to
    :func:`last_words` in this process has ended, at most ``timeout``
    seconds; True when none is left (False: some are still running, and go
    on). On the loop's own thread it would wait for itself: use
    :func:`last_words_said` there."""
    with _last_words_changed:
        return _last_words_changed.wait_for(lambda: not _last_words, timeout)


async def last_words_said(timeout: float) -> bool:
    """:func:`wait_last_words` for a coroutine on the tasks' loop: returns
    once every one of them on the running loop has ended (True) or
    ``timeout`` seconds passed (False); the tasks themselves are left
    running either way."""
    deadline = time.monotonic() + timeout
    loop = asyncio.get_running_loop()
    while True:
        with _last_words_changed:
            pending = [task for task in _last_words if task.get_loop() is loop]
        if not pending:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.wait(pending, timeout=left)


async def acall(
    system: LightSystem, address: Any, request: Any, timeout: float | None = 5.0
) -> Any:
    """``supervision.call`` for coroutines running on ``system``'s loop.

    Returns the reply; raises ``CallTimeout`` after ``timeout`` seconds,
    ``NoProc`` when the actor is gone or died handling the call, or the
    error the actor replied with.
    """
    if asyncio.get_running_loop() is not system.loop:
        raise SupervisionError("acall must run on the light system's own loop")
    future: asyncio.Future[Any] = system.loop.create_future()

    class _Waiter:
        def receiveMessage(self, message: Any, sender: Any) -> None:
            if isinstance(message, CallReply) and message.ref == call.ref and not future.done():
                future.set_result(message)

    call = Call(f"acall-{next(_ids)}", request)
    ref = _Ref(system, _Waiter(), None)
    system._actors[ref.key] = ref
    try:
        system._post(address, call, ref.address)
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise CallTimeout(request, timeout) from None
    finally:
        ref.alive = False
        system._actors.pop(ref.key, None)
    if reply.ok:
        return reply.value
    raise reply.value


__all__ = [
    "LIGHT_BASE",
    "SLICE_SECONDS",
    "LightAddress",
    "LightSystem",
    "TaskDone",
    "acall",
    "host_loop",
    "last_words",
    "last_words_said",
    "loop_of",
    "start_task",
    "wait_last_words",
]
