"""Acks of one consumer channel: as few frames as possible, never a tag twice.

A fake channel plays the broker's rule: acking a tag that is not outstanding
(already acked, or covered by an earlier ``multiple`` ack) is a channel error.
Its writes yield to the event loop, as aiormq's may, so concurrent
``ack_many`` calls interleave.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from roger_actors.transport.amqp import AmqpLink, _Consumer


class BrokerRules:
    """What RabbitMQ checks on basic.ack and basic.nack, frame by frame (the
    transport interface's ``Channel.ack``/``nack``)."""

    def __init__(self, delivered: int, rng: random.Random) -> None:
        self.outstanding = set(range(1, delivered + 1))
        self.frames = 0
        self.rng = rng
        self.is_closed = False

    async def _write(self) -> None:
        self.frames += 1
        if self.rng.random() < 0.5:
            await asyncio.sleep(0)

    async def ack(self, tag: int, *, multiple: bool = False) -> None:
        await self._write()
        if tag not in self.outstanding:
            raise AssertionError(f"unknown delivery tag {tag}")
        if multiple:
            self.outstanding -= {t for t in self.outstanding if t <= tag}
        else:
            self.outstanding.discard(tag)

    async def nack(self, tag: int, *, multiple: bool = False, requeue: bool = True) -> None:
        await self._write()
        if tag not in self.outstanding:
            raise AssertionError(f"unknown delivery tag {tag} (nack)")
        self.outstanding.discard(tag)


async def _settle_in_random_order(seed: int, delivered: int) -> BrokerRules:
    rng = random.Random(seed)
    broker = BrokerRules(delivered, rng)
    link = AmqpLink("amqp://unused", lambda event: None)
    link.consumers["q"] = _Consumer(broker, "q", 1)  # type: ignore[arg-type]
    link._channel_for = lambda key, generation: broker  # type: ignore[method-assign,assignment,return-value]
    tags = list(range(1, delivered + 1))
    rng.shuffle(tags)
    calls: list[Any] = []
    while tags:
        size = rng.randint(1, 8)
        batch, tags = tags[:size], tags[size:]
        nacked = [tag for tag in batch if rng.random() < 0.05]
        calls.extend(link.nack("q", 1, tag) for tag in nacked)
        calls.append(link.ack_many("q", 1, [tag for tag in batch if tag not in nacked]))
    await asyncio.gather(*calls)
    return broker


@pytest.mark.parametrize("seed", range(40))
def test_concurrent_acks_settle_every_delivery_exactly_once(seed: int) -> None:
    delivered = 300
    broker = asyncio.run(_settle_in_random_order(seed, delivered))
    assert not broker.outstanding, f"never acked: {sorted(broker.outstanding)[:10]}"


def test_in_order_completion_is_acked_with_far_fewer_frames_than_jobs() -> None:
    async def run() -> BrokerRules:
        broker = BrokerRules(1000, random.Random(0))
        link = AmqpLink("amqp://unused", lambda event: None)
        link.consumers["q"] = _Consumer(broker, "q", 1)  # type: ignore[arg-type]
        link._channel_for = lambda key, generation: broker  # type: ignore[method-assign,assignment,return-value]
        for start in range(1, 1001, 10):
            await link.ack_many("q", 1, list(range(start, start + 10)))
        return broker

    broker = asyncio.run(run())
    assert not broker.outstanding
    assert broker.frames == 100


def _link_on(broker: BrokerRules) -> AmqpLink:
    link = AmqpLink("amqp://unused", lambda event: None)
    link.consumers["q"] = _Consumer(broker, "q", 1)  # type: ignore[arg-type]
    link._channel_for = lambda key, generation: broker  # type: ignore[method-assign,assignment,return-value]
    return link


def test_a_burst_of_single_acks_shares_a_few_flushes_and_each_call_returns_once_written() -> None:
    async def run() -> tuple[BrokerRules, list[bool]]:
        broker = BrokerRules(500, random.Random(1))
        link = _link_on(broker)
        # 500 calls of one tag each, all asked for before any is written.
        results = await asyncio.gather(*(link.ack_many("q", 1, [tag]) for tag in range(1, 501)))
        return broker, results

    broker, results = asyncio.run(run())
    assert results == [True] * 500
    assert not broker.outstanding
    assert broker.frames <= 3, f"{broker.frames} frames for one burst"


def test_a_flush_that_fails_raises_in_every_call_it_carried_and_the_next_flush_works() -> None:
    class Failing(BrokerRules):
        fail = True

        async def ack(self, tag: int, *, multiple: bool = False) -> None:
            if self.fail:
                self.fail = False
                raise ConnectionError("channel closed")
            await super().ack(tag, multiple=multiple)

    async def run() -> tuple[list[Any], bool]:
        broker = Failing(10, random.Random(2))
        link = _link_on(broker)
        first = await asyncio.gather(
            *(link.ack_many("q", 1, [tag]) for tag in (1, 2, 3)), return_exceptions=True
        )
        later = await link.ack_many("q", 1, [4])
        return first, later

    first, later = asyncio.run(run())
    assert [type(outcome) for outcome in first] == [ConnectionError] * 3
    assert later is True
