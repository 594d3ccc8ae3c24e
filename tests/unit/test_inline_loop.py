"""Specification: the I/O loop of a light actor (``InlineLoop`` in
``roger_actors.transport.loop``), and the link glue (``LinkOwner``) choosing
it for actors that run on :mod:`supervision.light`: the actor's coroutines
run on the loop the actor runs on, with no thread of their own, and its
link closes after ``terminate`` returns, its last words first.

Run with ``scripts/test tests/unit/test_inline_loop.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from thespian.actors import WatchMessage

from roger_actors.transport.link_owner import LinkOwner
from roger_actors.transport.loop import InlineLoop, LoopThread
from roger_actors.transport.memory import forget_broker
from supervision import (
    Application,
    ChildSpec,
    From,
    Server,
    SupervisorSpec,
    call,
    which_children,
)
from supervision.light import wait_last_words
from supervision.supervisor import Supervisor


def _no_wake() -> None:
    pass


def test_submitted_coroutines_run_on_the_callers_loop_and_post_to_the_inbox() -> None:
    async def scenario() -> None:
        wakes: list[int] = []
        io = InlineLoop(asyncio.get_running_loop(), lambda: wakes.append(1))

        async def work() -> int:
            io.post("done")
            return threading.get_ident()

        future = io.submit(work())
        assert not future.done()  # it runs once the caller gives the loop back
        assert await asyncio.wrap_future(future) == threading.get_ident()
        await asyncio.sleep(0)  # the wake-up comes at the end of the round
        assert wakes == [1]
        assert io.drain() == ["done"]
        io.stop()

    asyncio.run(scenario())


def test_every_post_of_one_loop_round_wakes_the_actor_once_and_none_after_stop() -> None:
    async def scenario() -> None:
        wakes: list[list[Any]] = []
        io: InlineLoop

        def wake() -> None:
            wakes.append(io.drain())

        io = InlineLoop(asyncio.get_running_loop(), wake)
        for n in range(5):
            io.post(n)
        assert wakes == []  # not while the round that posted runs
        await asyncio.sleep(0)
        assert wakes == [[0, 1, 2, 3, 4]]
        io.post("next round")
        await asyncio.sleep(0)
        assert wakes == [[0, 1, 2, 3, 4], ["next round"]]
        io.post("after stop")
        io.stop()
        await asyncio.sleep(0)
        assert len(wakes) == 2

    asyncio.run(scenario())


def test_stop_cancels_the_tasks_still_running_and_a_later_submit_never_runs() -> None:
    async def scenario() -> None:
        io = InlineLoop(asyncio.get_running_loop(), _no_wake)
        ran: list[str] = []

        async def forever() -> None:
            await asyncio.sleep(3600)

        async def later() -> None:
            ran.append("later")

        running = io.submit(forever())
        await asyncio.sleep(0)
        io.stop()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.wrap_future(running), 5)
        assert running.cancelled()
        assert not io.alive
        assert io.submit(later()).cancelled()
        await asyncio.sleep(0)
        assert ran == []

    asyncio.run(scenario())


def test_cancelling_a_submit_future_cancels_its_task() -> None:
    async def scenario() -> None:
        io = InlineLoop(asyncio.get_running_loop(), _no_wake)
        ended = asyncio.Event()

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                ended.set()

        future = io.submit(forever())
        await asyncio.sleep(0)
        future.cancel()
        await asyncio.wait_for(ended.wait(), 5)
        io.stop()

    asyncio.run(scenario())


def test_a_detached_coroutine_outlives_stop_and_is_ended_at_its_bound() -> None:
    async def scenario() -> None:
        io = InlineLoop(asyncio.get_running_loop(), _no_wake)
        seen: list[str] = []
        cut = asyncio.Event()

        async def finish() -> None:
            seen.append("finished")

        async def hang() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                cut.set()

        io.stop()
        io.detach(finish(), 5.0, "finishing")
        io.detach(hang(), 0.05, "hanging")
        await asyncio.wait_for(cut.wait(), 5)
        assert seen == ["finished"]

    asyncio.run(scenario())


# ---------------------------------------------------------------- on a light actor

#: What the actor below saw (it runs in this process).
SEEN: dict[str, Any] = {}


class Linked(LinkOwner, Server):
    """Opens a link to ``url`` and connects; call ``"where"`` answers the
    I/O loop's kind and whether the link is open; its ``terminate`` records
    that it returned and closes the link with last words that record
    whether they ran after it."""

    def init(self, url: str) -> None:
        self.open_link("test-inline", [url], 2.0)
        self.events: list[Any] = []
        self.connect_link()
        SEEN["link"] = self.link

    def handle_info(self, message: Any) -> None:
        if isinstance(message, WatchMessage):
            self.events.extend(self.io.drain())

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "where":
            return type(self.io).__name__, self.link.is_open, list(self.events)
        return super().handle_call(request, from_)

    def terminate(self, reason: Any) -> None:
        async def last_words() -> None:
            SEEN["last words after terminate"] = SEEN.get("terminate returned", False)
            SEEN["link open at last words"] = self.link.is_open

        self.close_link("test", last_words(), 2.0)
        SEEN["terminate returned"] = True


class Root(Supervisor):
    def init(self, url: str) -> SupervisorSpec:
        return SupervisorSpec([ChildSpec("linked", (Linked, (url,)))], "one_for_one")


@pytest.fixture
def url() -> Iterator[str]:
    SEEN.clear()
    name = f"memory://inline-{time.monotonic_ns()}"
    yield name
    forget_broker(name)


def _wait(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_light_actors_link_runs_on_the_actors_loop_with_no_io_thread(url: str) -> None:
    app = Application(ChildSpec("root", (Root, (url,)), type="supervisor"), base="light")
    root = app.start()
    try:
        [linked] = [info.address for info in which_children(root)]

        def where() -> Any:
            return call(linked, "where", 5)

        _wait(lambda: where()[1], "the link connected")
        kind, is_open, events = where()
        assert (kind, is_open, events) == ("InlineLoop", True, [("connected", None)])
        assert not [t for t in threading.enumerate() if t.name == "test-inline"]
    finally:
        app.stop(timeout=30)
    _wait(lambda: not SEEN["link"].is_open, "the link closed after the actor ended")
    assert SEEN["terminate returned"] is True
    assert SEEN["last words after terminate"] is True
    assert SEEN["link open at last words"] is True


def test_an_actor_off_the_light_base_keeps_a_loop_thread_of_its_own() -> None:
    owner = _Bare()
    owner.open_link("test-bare", ["memory://inline-bare"], None)
    try:
        assert isinstance(owner.io, LoopThread)
        assert [t for t in threading.enumerate() if t.name == "test-bare"]
    finally:
        owner.close_link("test")
        forget_broker("memory://inline-bare")


class _Bare(LinkOwner):
    """A LinkOwner that is not an actor at all (no light system)."""

    def watch_fileno(self, fileno: int) -> None:
        pass

    def send_after(self, seconds: float, message: Any) -> Any:
        return None


def test_wait_last_words_returns_once_the_detached_last_words_have_run() -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    said: list[str] = []
    release = threading.Event()

    async def last_words() -> None:
        await asyncio.get_running_loop().run_in_executor(None, release.wait)
        said.append("leave")

    detached = threading.Event()

    def detach() -> None:  # on the loop, as an actor's terminate would
        InlineLoop(loop, _no_wake).detach(last_words(), 10.0, "closing the test link")
        detached.set()

    try:
        loop.call_soon_threadsafe(detach)
        assert detached.wait(5)

        assert wait_last_words(0.2) is False, "it waits while the last words are pending"
        release.set()
        assert wait_last_words(10.0) is True
        assert said == ["leave"]
    finally:
        release.set()
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
