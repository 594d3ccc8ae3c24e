"""Specification: a channel error on an AMQP link's control channel (the
broker closes that channel, the connection stays up) is survived: the next
declare, publish or get opens a new control channel on the same connection.

Before, every later declare, publish and get of the link failed until the
connection dropped: a Consumer could no longer park or give back its keyed
jobs, and held them unacked, never run (seen once in CI as half the jobs
of one execution key never running across two nodes).

Run with ``scripts/test tests/integration/test_link_control_channel.py``.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from roger_actors.transport.amqp import AmqpLink, properties
from roger_actors.transport.base import NotFound
from roger_actors.transport.memory import forget_broker
from tests.partition_harness import BROKER

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("transport", ["rabbitmq", "memory"])
def test_the_link_opens_a_new_control_channel_after_a_channel_error(transport: str) -> None:
    tag = uuid.uuid4().hex[:10]
    url = BROKER + f"?name=roger-test-{tag}" if transport == "rabbitmq" else f"memory://ctl-{tag}"
    queue = f"tctl-{tag}"

    async def run() -> tuple[bytes, bool]:
        link = AmqpLink([url], lambda event: None)
        await link.connect()
        try:
            connection = link.connection
            assert link.control is None, "opened by the first operation that needs it"
            broken = await link.control_channel()
            with pytest.raises(NotFound):
                await broken.queue_declare(f"tctl-{tag}-missing", passive=True)
            for _ in range(100):  # the broker's channel.close arrives
                if broken.is_closed:
                    break
                await asyncio.sleep(0.01)
            assert broken.is_closed, "a channel error closes the channel"

            await link.declare(queue)
            await link.publish(queue, b"after the error", properties(message_id="1"))
            message = await link.get(queue)
            assert message is not None
            await message.ack()
            await link.delete_queue(queue)
            return message.body, link.connection is connection and link.is_open
        finally:
            await link.close()

    try:
        assert asyncio.run(run()) == (b"after the error", True)
    finally:
        if transport == "memory":
            forget_broker(url)
