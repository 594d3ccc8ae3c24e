"""Specification: a partition's work queues on the broker as one Consumer
consumes them (``roger_actors.partition.consumer_channels``): declared,
consumed one channel each, paused and resumed in turn, reconfigured, counted.
On the in-memory broker.

Run with ``scripts/test tests/unit/test_consumer_channels.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from roger_actors.partition import consumer_core as core
from roger_actors.partition import retry
from roger_actors.partition.consumer_channels import ConsumerChannels
from roger_actors.queue import Queue
from roger_actors.transport.amqp import AmqpLink, Delivery, properties
from roger_actors.transport.base import NotFound
from tests.memory_rig import PID, Rig


class SlowLink(AmqpLink):
    """A link whose ``basic.consume`` takes a while, as over a network."""

    async def resume(self, key: str) -> None:
        await asyncio.sleep(0.02)
        await super().resume(key)


class Channels:
    """A ConsumerChannels on its own link to the rig's broker, and its deliveries."""

    def __init__(self, rig: Rig, link_class: type[AmqpLink] = AmqpLink) -> None:
        self.rig = rig
        self.events: list[Any] = []
        self.link = link_class(rig.url, self.events.append, timeout=2.0)
        self.channels = ConsumerChannels(self.link, PID, 20)

    def publish(self, queue_type: str, message_id: str) -> None:
        name = Queue.make_name(PID, queue_type)
        self.rig.run(self.link.publish(name, b"job", properties(message_id=message_id)))

    def delivered(self) -> list[str]:
        async def settle() -> None:
            for _ in range(20):
                await asyncio.sleep(0.005)

        self.rig.run(settle())
        return sorted(e.message_id for e in self.events if isinstance(e, Delivery))

    def close(self) -> None:
        self.rig.run(self.link.close())


@pytest.fixture
def channels(rig: Rig) -> Iterator[Channels]:
    made = Channels(rig)
    try:
        yield made
    finally:
        made.close()


def test_open_declares_each_queue_type_and_consumes_none_until_resumed(
    rig: Rig, channels: Channels
) -> None:
    rig.run(channels.channels.open([("a", 2, 4), ("off", 0, 0)]))
    for queue_type in ("a", "off"):
        assert rig.messages(Queue.make_name(PID, queue_type)) == 0
        assert rig.messages(Queue.invalid_name(PID, queue_type)) == 0
        with pytest.raises(NotFound):  # declared by the first burial, as in Roger
            rig.messages(retry.buried_queue(PID, queue_type, 100)[0])
    channels.publish("a", "j1")
    assert channels.delivered() == []  # made, not started
    rig.run(channels.channels.resume(["a"]))
    assert channels.delivered() == ["j1"]
    assert rig.run(channels.channels.counts("a")) == (0, 1)
    assert rig.run(channels.channels.counts("off"))[1] == 0  # max_workers 0: no consumer


def test_a_paused_queue_delivers_nothing_until_it_is_resumed(rig: Rig, channels: Channels) -> None:
    rig.run(channels.channels.open([("a", 1, 1)]))
    rig.run(channels.channels.resume(["a"]))
    rig.run(channels.channels.pause(["a"]))
    channels.publish("a", "j1")
    assert channels.delivered() == []
    assert rig.run(channels.channels.counts("a")) == (1, 0)
    rig.run(channels.channels.reconcile(run=["a"], stop=[]))
    assert channels.delivered() == ["j1"]


def test_changes_begun_together_reach_the_broker_in_the_order_they_began(rig: Rig) -> None:
    channels = Channels(rig, SlowLink)
    try:
        rig.run(channels.channels.open([("a", 1, 1)]))

        async def together() -> None:
            # Out of turn, the pause would find no consumer tag yet, do
            # nothing, and the queue would be consumed while paused.
            resume = asyncio.ensure_future(channels.channels.resume(["a"]))
            await asyncio.sleep(0)
            await channels.channels.pause(["a"])
            await resume

        rig.run(together())
        channels.publish("a", "j1")
        assert channels.delivered() == []
    finally:
        channels.close()


def test_a_reconfiguration_stops_removed_queues_adds_new_ones_and_starts_a_queue_from_zero(
    rig: Rig, channels: Channels
) -> None:
    rig.run(channels.channels.open([("old", 1, 1), ("grow", 0, 0)]))
    rig.run(channels.channels.resume(["old"]))
    queues = {"old": core.QueueState("old", 1), "grow": core.QueueState("grow", 0)}
    _, plan = core.reconfigure(queues, {"grow": 2, "new": 1}, core.PauseBits(), adaptive=False)
    rig.run(channels.channels.apply(plan, consuming=True))
    for queue_type in ("old", "grow", "new"):
        channels.publish(queue_type, f"j-{queue_type}")
    assert channels.delivered() == ["j-grow", "j-new"]
    assert rig.run(channels.channels.counts("old")) == (1, 0)


def test_stats_report_each_queue_with_the_brokers_counts(rig: Rig, channels: Channels) -> None:
    rig.run(channels.channels.open([("a", 1, 1)]))
    channels.publish("a", "j1")
    channels.publish("a", "j2")
    stats = rig.run(channels.channels.stats({"a": (3, True)}))
    assert stats == {
        "a": {"max_workers": 3, "paused": True, "message_count": 2, "consumer_count": 0}
    }
    assert rig.run(channels.channels.purge("a")) == 2


def test_counts_while_disconnected_raise_connection_error_naming_the_partition(
    rig: Rig, channels: Channels
) -> None:
    with pytest.raises(ConnectionError, match=f"partition '{PID}': not connected"):
        rig.run(channels.channels.counts("a"))
