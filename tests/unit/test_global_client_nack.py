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
from collections.abc import Iterator

import pytest

from roger_actors.errors import GlobalTimeoutError
from roger_actors.partition import global_client
from tests.memory_rig import PID, Rig


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    try:
        yield made
    finally:
        made.run(made.link.close())
        made.loop.close()


def test_a_refused_request_raises_and_the_next_one_gets_a_new_reply_channel(rig: Rig) -> None:
    full = {"x-max-length": 0, "x-overflow": "reject-publish"}
    rig.run(rig.link.declare(global_client.queue_name(PID), full))

    async def go() -> None:
        first = await global_client._reply_channel(rig.link)
        with pytest.raises(GlobalTimeoutError, match="refused the request 'snapshot'"):
            await global_client.request(rig.link, PID, "snapshot", [], timeout=0.05)
        second = await global_client._reply_channel(rig.link)
        assert second is not first
        assert first.channel is not None and not first.channel.is_closed, "closed later"
        await asyncio.sleep(0.1)  # the refused request's time has passed
        assert first.channel.is_closed
        assert second.channel is not None and not second.channel.is_closed

    rig.run(go())
