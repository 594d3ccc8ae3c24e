"""Specification: an AMQP link's scratch channel (``AmqpLink._scratch``), on
which queues are declared and counted apart from the control channel.

Declares one after the other reuse one spare channel; a channel that an
operation left with an error is closed and never reused; an unused spare
closes after ``scratch.SPARE_SECONDS``, so an idle link holds none. On the
in-memory broker.

Run with ``scripts/test tests/unit/test_scratch_channel.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roger_actors.transport import scratch
from roger_actors.transport.amqp import AmqpLink
from roger_actors.transport.base import Channel, NotFound
from roger_actors.transport.scratch import ScratchChannels
from tests.memory_rig import Rig


class CountingLink:
    """The rig's link, and every channel it opened on its connection."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.link: AmqpLink = rig.link
        self.opened: list[Channel] = []
        connection = self.link.connection
        assert connection is not None
        opener = connection.channel

        async def channel(**options: Any) -> Channel:
            made = await opener(**options)
            self.opened.append(made)
            return made

        connection.channel = channel  # type: ignore[method-assign]

    def open_channels(self) -> list[Channel]:
        return [channel for channel in self.opened if not channel.is_closed]


@pytest.fixture
def counting(rig: Rig) -> CountingLink:
    return CountingLink(rig)


def test_declares_one_after_the_other_reuse_one_channel(rig: Rig, counting: CountingLink) -> None:
    async def go() -> None:
        for i in range(5):
            await rig.link.declare_replicated(f"scratch-q{i}")
        await rig.link.declare_work_queue("scratch-work")
        assert await rig.link.counts("scratch-q0") == (0, 0)

    rig.run(go())

    assert len(counting.opened) == 1
    assert counting.open_channels() == counting.opened, "kept as the spare"


def test_a_channel_left_by_an_error_is_closed_and_not_reused(
    rig: Rig, counting: CountingLink
) -> None:
    async def go() -> None:
        await rig.link.declare_replicated("scratch-there")
        with pytest.raises(NotFound):
            await rig.link.counts("scratch-missing")  # the broker closes the channel
        assert await rig.link.counts("scratch-there") == (0, 0)

    rig.run(go())

    first, second = counting.opened
    assert first.is_closed and not second.is_closed


def test_a_block_that_raises_closes_its_channel(rig: Rig, counting: CountingLink) -> None:
    async def go() -> None:
        with pytest.raises(RuntimeError):
            async with rig.link._scratch():
                raise RuntimeError("an answer may still be on its way")
        await rig.link.declare_replicated("scratch-after")

    rig.run(go())

    first, second = counting.opened
    assert first.is_closed and not second.is_closed


def test_operations_at_once_each_get_a_channel_and_one_stays_spare(
    rig: Rig, counting: CountingLink
) -> None:
    used: list[Channel] = []

    async def use(name: str) -> None:
        async with rig.link._scratch() as channel:
            used.append(channel)
            await asyncio.sleep(0.01)  # the broker's answer takes a while
            await channel.queue_declare(name, durable=True)

    async def go() -> None:
        await rig.link.declare_replicated("scratch-first")  # leaves a spare
        await asyncio.gather(*(use(f"scratch-c{i}") for i in range(4)))
        await asyncio.sleep(0.05)  # the extra ones close in the background

    rig.run(go())

    assert len({id(channel) for channel in used}) == 4, "never one channel for two users"
    assert used[0] is counting.opened[0], "the spare went to the first"
    assert len(counting.opened) == 4
    assert len(counting.open_channels()) == 1


def test_an_unused_spare_closes_after_its_time(
    rig: Rig, counting: CountingLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scratch, "SPARE_SECONDS", 0.05)

    async def go() -> None:
        await rig.link.declare_replicated("scratch-idle")
        assert len(counting.open_channels()) == 1
        for _ in range(200):
            if not counting.open_channels():
                return
            await asyncio.sleep(0.01)

    rig.run(go())

    assert counting.open_channels() == []
    assert rig.link._own_scratch is not None and len(rig.link._own_scratch) == 0


def test_a_link_that_reconnects_opens_a_new_spare(rig: Rig, counting: CountingLink) -> None:
    async def go() -> None:
        await rig.link.declare_replicated("scratch-before")
        await rig.link.close()
        await rig.link.connect()
        await rig.link.declare_replicated("scratch-after")

    rig.run(go())

    assert counting.opened[0].is_closed, "the old connection's spare went with it"
    spares = rig.link._own_scratch
    assert spares is not None and len(spares) == 1, "the new connection's spare"
    assert not spares._spares[0][0].is_closed


class _FakeChannel:
    """Just what ScratchChannels looks at: open or closed."""

    def __init__(self) -> None:
        self.is_closed = False

    async def close(self) -> None:
        self.is_closed = True


class _Opener:
    """Opens fake channels, and keeps them in ``made``."""

    def __init__(self) -> None:
        self.made: list[_FakeChannel] = []

    async def __call__(self) -> Any:
        self.made.append(_FakeChannel())
        return self.made[-1]


def test_a_pool_keeps_at_most_its_spares_and_closes_each_once_unused_for_its_time() -> None:
    opener = _Opener()
    made = opener.made

    async def go() -> None:
        spares = ScratchChannels(opener, max_spares=2, idle_seconds=0.1)
        taken = [await spares.take() for _ in range(3)]
        assert len(made) == 3, "each operation at once gets its own"
        for channel in taken:
            spares.give_back(channel)
        await asyncio.sleep(0)  # the close of the oldest, beyond max_spares
        assert [c.is_closed for c in made] == [True, False, False]
        assert await spares.take() is made[2], "the spare given back last"
        await asyncio.sleep(0.05)
        spares.give_back(made[2])  # used again: its time starts again
        for _ in range(100):
            if made[1].is_closed:
                break
            await asyncio.sleep(0.01)
        assert made[1].is_closed and not made[2].is_closed
        for _ in range(100):
            if made[2].is_closed:
                break
            await asyncio.sleep(0.01)
        assert made[2].is_closed and len(spares) == 0

    asyncio.run(go())


def test_a_spare_the_broker_closed_is_not_taken() -> None:
    opener = _Opener()
    made = opener.made

    async def go() -> None:
        spares = ScratchChannels(opener, max_spares=4, idle_seconds=5.0)
        spares.give_back(await spares.take())
        made[0].is_closed = True  # a channel error, or its connection went
        assert await spares.take() is made[1]
        spares.clear()

    asyncio.run(go())
