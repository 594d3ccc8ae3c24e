"""Specification: a Global request the broker refuses (``basic.nack``)
raises GlobalTimeoutError, and the next request goes out on a new reply
channel (``roger_actors.partition.global_client``). On RabbitMQ 3.10 a
channel that published to a quorum request queue during its leader election
can have its later publishes nacked for minutes; a new channel is not.
On the in-memory broker, whose queue refuses with ``x-overflow:
reject-publish``.

Run with ``scripts/test tests/unit/test_global_client_nack.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from roger_actors.errors import GlobalTimeoutError
from roger_actors.partition import global_client
from roger_actors.transport.base import Channel, Message, Properties
from tests.memory_rig import PID, Rig

#: A request queue that refuses every publish (``basic.nack``).
FULL = {"x-max-length": 0, "x-overflow": "reject-publish"}


async def closed_soon(channel: Channel) -> bool:
    """Whether ``channel`` is closed within a second (it closes in a task)."""
    for _ in range(100):
        if channel.is_closed:
            return True
        await asyncio.sleep(0.01)
    return False


def test_a_refused_request_raises_and_the_next_one_gets_a_new_reply_channel(rig: Rig) -> None:
    rig.run(rig.link.declare(global_client.queue_name(PID), FULL))

    async def go() -> None:
        first = await global_client._reply_channel(rig.link)
        with pytest.raises(GlobalTimeoutError, match="refused the request 'snapshot'"):
            await global_client.request(rig.link, PID, "snapshot", [], timeout=5.0)
        second = await global_client._reply_channel(rig.link)
        assert second is not first
        assert first.channel is not None and await closed_soon(first.channel), "none waits on it"
        assert second.channel is not None and not second.channel.is_closed

    rig.run(go())


def test_a_request_waiting_on_a_replaced_channel_still_gets_its_reply(rig: Rig) -> None:
    rig.run(rig.link.declare(global_client.queue_name(PID), FULL))
    rig.run(rig.link.declare(global_client.queue_name("other")))

    async def go() -> None:
        assert rig.link.connection is not None
        global_side = await rig.link.connection.channel()
        requests: asyncio.Queue[Message] = asyncio.Queue()
        await global_side.consume(global_client.queue_name("other"), requests.put, no_ack=True)
        first = await global_client._reply_channel(rig.link)
        waiting = asyncio.create_task(
            global_client.request(rig.link, "other", "ping", [], timeout=5.0)
        )
        asked = await asyncio.wait_for(requests.get(), 2.0)

        with pytest.raises(GlobalTimeoutError, match="refused"):
            await global_client.request(rig.link, PID, "snapshot", [], timeout=0.05)
        await asyncio.sleep(0.1)  # past the refused request's own timeout
        assert first.channel is not None and not first.channel.is_closed, "a request waits"

        correlation = asked.properties.correlation_id or ""
        await global_side.publish(
            global_client.encode_reply(True, "pong", correlation_id=correlation),
            routing_key=asked.properties.reply_to or "",
            properties=Properties(correlation_id=correlation),
        )
        assert await asyncio.wait_for(waiting, 2.0) == "pong"
        assert await closed_soon(first.channel), "closed once its last request ended"

    rig.run(go())
