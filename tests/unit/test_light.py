"""``supervision.light``: in-process actors on asyncio.

Two parts:

1. The supervision unit suites (``test_server``, ``test_server_otp``,
   ``test_supervisor``, ``test_dynamic_supervisor``, ``test_application``,
   ``test_task``, ``test_registry``) run again here on ``base="light"``:
   their test functions are imported and collected with this module's
   ``tree`` fixture. Left out (:data:`SYNC_ONLY`) are the tests that rely on
   simpleSystemBase running every actor to completion inside the caller's
   ``call``/``cast``; on a live runtime they race (or, for the dead address,
   get ``NoProc`` instead of ``CallTimeout``, as ``call`` documents).
2. The runtime's own guarantees: an exception ends only that actor; timers
   fire with nobody calling ``ask``/``listen``; a crash is restarted by its
   supervisor in this process; fds and coroutines share the actors' loop;
   a loop the caller runs can host the actors.

Waits are bounded waits on events; no timing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from thespian.actors import Actor, ActorExitRequest, ChildActorExited

import tests.unit.test_application as suite_application
import tests.unit.test_dynamic_supervisor as suite_dynamic
import tests.unit.test_registry as suite_registry
import tests.unit.test_server as suite_server
import tests.unit.test_server_otp as suite_server_otp
import tests.unit.test_supervisor as suite_supervisor
import tests.unit.test_task as suite_task
from supervision import (
    Application,
    ChildSpec,
    DynamicSupervisorSpec,
    From,
    NoProc,
    Server,
    SupervisionError,
    SupervisorSpec,
    call,
    cast,
    start_child,
    which_children,
)
from supervision.light import LightSystem, TaskDone, acall, start_task
from tests.actors import DynSup, Sup
from tests.unit_actors import Tree

# ---------------------------------------------------------------- the suites, on light

#: Tests that need simpleSystemBase's synchronous completion (see the module doc).
SYNC_ONLY = {
    # a cast returns before the server handled it: TERMINATED is read too early
    "test_exception_in_handle_cast_crashes_the_server",
    # NoProc reaches the caller before the supervisor restarts: the journal is read too early
    "test_exception_in_handle_call_runs_terminate_with_the_crash",
    # the dead address answers NoProc at once here, not CallTimeout
    "test_call_to_a_dead_address_raises_call_timeout_at_once_on_simple_system_base",
    # the test advances the fake clock before the supervisor has seen the exit
    "test_restarts_older_than_max_seconds_do_not_count",
    # a failed restart is retried through the mailbox: which_children may see "restarting"
    "test_failed_restart_is_retried_until_it_succeeds",
    # the spy's which_children answers may still be on their way
    "test_child_shows_as_restarting_between_failed_restart_attempts",
    # a cast returns before the server handled it: the watcher is asked too early
    # (the server machine of property_tests/test_server_model.py covers these on light)
    "test_monitor_delivers_down_with_the_exit_reason_once",
    "test_linked_crash_ends_a_non_trapping_server_with_the_same_reason",
    "test_the_link_works_both_ways",
    "test_trapping_server_gets_exited_and_lives_on",
}

for _suite in (
    suite_server,
    suite_server_otp,
    suite_supervisor,
    suite_dynamic,
    suite_application,
    suite_task,
    suite_registry,
):
    for _name in dir(_suite):
        if (
            _name.startswith("test_")
            and _name not in SYNC_ONLY
            and callable(getattr(_suite, _name))
        ):
            globals()[_name] = getattr(_suite, _name)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    """A Tree whose Applications run on ``base="light"``."""
    with Tree(tmp_path, base="light") as t:
        yield t


# ---------------------------------------------------------------- actors of these tests

#: Events and records shared with the actors below (they run in this process).
EVENTS: dict[str, threading.Event] = {}
SEEN: dict[str, list[Any]] = {}


def event(name: str) -> threading.Event:
    """The event ``name`` (created cleared on first use)."""
    return EVENTS.setdefault(name, threading.Event())


@pytest.fixture(autouse=True)
def _fresh_records() -> Iterator[None]:
    EVENTS.clear()
    SEEN.clear()
    yield
    EVENTS.clear()
    SEEN.clear()


class Counter(Server):
    """Counts casts ``"incr"``; call ``"get"`` returns the count, ``"crash"``
    raises; every ``init`` appends its thread id to ``SEEN[name]`` and sets
    the event ``started-<name>-<n>``."""

    def init(self, name: str) -> None:
        self.name = name
        self.count = 0
        SEEN.setdefault(self.name, []).append(threading.get_ident())
        event(f"started-{name}-{len(SEEN[name])}").set()

    def handle_cast(self, request: Any) -> None:
        if request == "incr":
            self.count += 1
        elif request == "crash":
            raise RuntimeError("crash on cast")

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "get":
            return self.count
        if request == "pid":
            return os.getpid()
        if request == "crash":
            raise RuntimeError("crash on call")
        return super().handle_call(request, from_)


class Alarm(Server):
    """``init(name, seconds)`` sets a ``send_after``; the tick sets event ``name``
    and records the thread it ran on."""

    def init(self, name: str, seconds: float) -> None:
        self.name = name
        self.send_after(seconds, "tick")

    def handle_info(self, message: Any) -> None:
        if message == "tick":
            SEEN[self.name] = [threading.get_ident()]
            event(self.name).set()


class Watcher(Server):
    """``init(fd)`` watches ``fd``; each ``WatchMessage`` reads what is there,
    appends it to ``SEEN["watch"]`` and sets event ``watch``."""

    def init(self, fd: int) -> None:
        self.sock = socket.socket(fileno=os.dup(fd))
        self.sock.setblocking(False)
        self.watch_fileno(self.sock.fileno())

    def handle_info(self, message: Any) -> None:
        data = self.sock.recv(4096)
        SEEN.setdefault("watch", []).append((type(message).__name__, data))
        event("watch").set()

    def terminate(self, reason: Any) -> None:
        self.unwatch_fileno(self.sock.fileno())
        self.sock.close()


class Tasker(Server):
    """Call ``("sleep", seconds, value)``: runs a coroutine on the actors' loop
    that sleeps and returns ``value``; the reply comes from the ``TaskDone``,
    with the threads the handler and the coroutine ran on."""

    def init(self) -> None:
        self.waiting: dict[Any, From] = {}

    def handle_call(self, request: Any, from_: From) -> Any:
        _, seconds, value = request
        handler_thread = threading.get_ident()

        async def work() -> tuple[Any, int, int]:
            await asyncio.sleep(seconds)
            return value, handler_thread, threading.get_ident()

        start_task(self, work(), tag=value)
        self.waiting[value] = from_
        from supervision import NOREPLY

        return NOREPLY

    def handle_info(self, message: Any) -> None:
        if isinstance(message, TaskDone):
            self.reply(self.waiting.pop(message.tag), (message.result, message.error))


class RawParent(Actor):  # type: ignore[misc]
    """A plain Thespian actor: ``"spawn"`` creates two RawChild actors and
    answers their addresses; it records every ``ChildActorExited`` in ``SEEN``."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if message == "spawn":
            self.send(sender, (self.createActor(RawChild), self.createActor(RawChild)))
        elif isinstance(message, ChildActorExited):
            SEEN.setdefault("exited", []).append(message.childAddress)
            event("exited").set()


class RawChild(Actor):  # type: ignore[misc]
    """A plain Thespian actor: ``"boom"`` raises, anything else is echoed."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if message == "boom":
            raise ValueError("boom")
        if not isinstance(message, ActorExitRequest):
            self.send(sender, ("echo", message))


def one_for_one(*children: ChildSpec) -> ChildSpec:
    """A root Sup over ``children`` (one_for_one, generous intensity)."""
    spec = SupervisorSpec(list(children), "one_for_one", max_restarts=50, max_seconds=1)
    return ChildSpec("root", (Sup, (spec,)), start_timeout=None)


@pytest.fixture
def app() -> Iterator[list[Application]]:
    """Applications to stop at the end of the test."""
    apps: list[Application] = []
    yield apps
    for a in apps:
        a.stop(timeout=30)


def start(apps: list[Application], root: ChildSpec, **kw: Any) -> Any:
    """Start an Application of ``root`` on light; returns the root's address."""
    a = Application(root, base="light", **kw)
    apps.append(a)
    return a.start()


def kids(sup: Any) -> dict[Any, Any]:
    return {info.id: info.address for info in which_children(sup)}


# ---------------------------------------------------------------- guarantees


def test_timers_fire_with_nobody_calling_ask_or_listen(app: list[Application]) -> None:
    start(app, one_for_one(ChildSpec("alarm", (Alarm, ("alarm", 0.05)))))

    # This thread only waits on an event: no call, ask or listen runs the actors.
    assert event("alarm").wait(10), "the timer never fired"
    assert SEEN["alarm"] != [threading.get_ident()]


def test_a_crash_is_restarted_by_its_supervisor_in_this_process(app: list[Application]) -> None:
    root = start(app, one_for_one(ChildSpec("c", (Counter, ("c",)))))
    first = kids(root)["c"]

    cast(first, "crash")  # nobody waits on the crashing actor

    assert event("started-c-2").wait(10), "the crashed child was not restarted"
    second = kids(root)["c"]
    assert second not in (None, first)
    assert call(second, "pid") == os.getpid()
    assert call(second, "get") == 0


def test_an_exception_ends_only_that_actor_and_its_siblings_keep_their_state(
    app: list[Application],
) -> None:
    root = start(
        app, one_for_one(ChildSpec("a", (Counter, ("a",))), ChildSpec("b", (Counter, ("b",))))
    )
    a, b = kids(root)["a"], kids(root)["b"]
    for _ in range(3):
        cast(b, "incr")

    with pytest.raises(NoProc):
        call(a, "crash")

    assert call(b, "get") == 3  # same actor, same state
    assert kids(root)["b"] == b
    assert kids(root)["a"] not in (None, a)
    with pytest.raises(NoProc):  # the crashed actor's address answers nobody
        call(a, "get", timeout=5)


def test_a_raw_thespian_actor_that_raises_is_ended_alone_and_its_parent_is_told() -> None:
    system = LightSystem()
    try:
        parent = system.createActor(RawParent)
        first, second = system.ask(parent, "spawn", 10)

        system.tell(first, "boom")

        assert event("exited").wait(10), "the parent got no ChildActorExited"
        assert SEEN["exited"] == [first]
        assert system.ask(second, "still there?", 10) == ("echo", "still there?")
    finally:
        system.shutdown()
    assert system.actor_count == 0


def test_watched_fd_wakes_the_actor_on_the_loop(app: list[Application]) -> None:
    ours, theirs = socket.socketpair()
    try:
        start(app, one_for_one(ChildSpec("w", (Watcher, (theirs.fileno(),)))))
        ours.sendall(b"one")
        assert event("watch").wait(10), "no WatchMessage for a readable fd"
        event("watch").clear()
        ours.sendall(b"two")  # the watch is renewed after each wake-up
        assert event("watch").wait(10)
        assert SEEN["watch"] == [("WatchMessage", b"one"), ("WatchMessage", b"two")]
    finally:
        ours.close()
        theirs.close()


def test_start_task_runs_coroutines_on_the_actors_own_thread(app: list[Application]) -> None:
    root = start(app, one_for_one(ChildSpec("t", Tasker)))

    (value, handler_thread, task_thread), error = call(kids(root)["t"], ("sleep", 0.01, "v"))

    assert (value, error) == ("v", None)
    assert handler_thread == task_thread != threading.get_ident()


def test_actors_run_on_an_event_loop_the_caller_runs() -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        system = LightSystem(loop=loop)
        a = Application(one_for_one(ChildSpec("c", (Counter, ("c",)))), system=system)
        root = a.start()
        try:
            assert SEEN["c"] == [runner.ident]
            counter = kids(root)["c"]
            cast(counter, "incr")
            got = asyncio.run_coroutine_threadsafe(acall(system, counter, "get"), loop).result(10)
            assert got == 1
        finally:
            a.stop(timeout=30)
        system.shutdown()
        assert system.actor_count == 0
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()


def test_a_blocking_call_on_the_loop_thread_is_refused() -> None:
    system = LightSystem()
    try:
        counter = system.createActor(Counter)

        async def blocking() -> None:
            call(counter, "get", system=system)

        future = asyncio.run_coroutine_threadsafe(blocking(), system.loop)
        with pytest.raises(SupervisionError, match="loop"):
            future.result(10)
    finally:
        system.shutdown()


def test_many_dynamic_children_share_the_process_and_stop_with_the_tree(
    app: list[Application],
) -> None:
    dyn = ChildSpec("dyn", (DynSup, (DynamicSupervisorSpec(),)))
    root = start(app, one_for_one(dyn))
    sup = kids(root)["dyn"]
    children = [start_child(sup, ChildSpec("c", (Counter, (f"c{i}",)))) for i in range(200)]

    assert {call(c, "pid") for c in children} == {os.getpid()}
    system = app[0].system
    assert isinstance(system, LightSystem)
    assert system.actor_count == 1 + 1 + 1 + 200  # master, root, dyn, children

    app.pop().stop(timeout=30)

    assert system.actor_count == 0
