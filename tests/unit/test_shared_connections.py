"""Specification: links of one event loop share broker connections
(``roger_actors.transport.shared``), on the in-memory broker: each link is
a view with channels of its own on one connection; a view's close closes
only its channels; the connection's loss reaches every link on it; a
connection takes a bounded number of views; an exclusive queue a link owns
goes with the link.

Run with ``scripts/test tests/unit/test_shared_connections.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from roger_actors.partition import execution_fence
from roger_actors.transport import shared as shared_mod
from roger_actors.transport.amqp import AmqpLink, LinkLost, properties
from roger_actors.transport.base import ConnectionLost
from roger_actors.transport.memory import MemoryConnection, forget_broker
from roger_actors.transport.shared import SharedConnections


def _run(scenario: Callable[[str, SharedConnections], Awaitable[Any]]) -> Any:
    url = f"memory://shared-{uuid.uuid4().hex[:8]}"
    try:
        return asyncio.run(scenario(url, SharedConnections()))
    finally:
        forget_broker(url)


def _link(url: str, pool: SharedConnections, events: list[Any] | None = None) -> AmqpLink:
    return AmqpLink([url], (events if events is not None else []).append, 5.0, pool)


def test_links_of_one_loop_share_one_connection_each_with_its_own_channels() -> None:
    async def scenario(url: str, pool: SharedConnections) -> None:
        first, second = _link(url, pool), _link(url, pool)
        await asyncio.gather(first.connect(), second.connect())
        assert len(pool.connections()) == 1, "one connect for links opening at once"
        assert first.connection is not second.connection
        assert first.control is None and second.control is None, "opened when needed"
        assert await first.control_channel() is not await second.control_channel()

        await first.declare("q")
        await second.publish("q", b"from the second", properties(message_id="1"))
        message = await first.get("q")
        assert message is not None and message.body == b"from the second"
        await message.ack()
        await first.close()
        await second.close()

    _run(scenario)


def test_closing_a_link_closes_its_channels_only_and_the_last_closes_the_connection() -> None:
    async def scenario(url: str, pool: SharedConnections) -> None:
        first, second = _link(url, pool), _link(url, pool)
        await first.connect()
        await second.connect()
        [connection] = pool.connections()
        await first.declare("q")
        first_control = first.control
        assert first_control is not None

        await first.close()
        assert first_control.is_closed and not first.is_open
        assert second.is_open and not connection.is_closed
        await second.publish("q", b"still", properties(message_id="2"))

        await second.close()
        assert connection.is_closed
        assert pool.connections() == []

    _run(scenario)


def test_the_loss_of_the_shared_connection_reaches_every_link_and_they_reconnect() -> None:
    async def scenario(url: str, pool: SharedConnections) -> None:
        events: list[Any] = []
        links = [_link(url, pool, events) for _ in range(3)]
        await asyncio.gather(*(link.connect() for link in links))
        [connection] = pool.connections()
        assert isinstance(connection, MemoryConnection)

        connection.lose(ConnectionLost("the broker went away"))
        assert [type(e) for e in events] == [LinkLost, LinkLost, LinkLost]
        assert not any(link.is_open for link in links)

        await asyncio.gather(*(link.connect() for link in links))
        [again] = pool.connections()
        assert again is not connection
        assert all(link.is_open for link in links)
        for link in links:
            await link.close()

    _run(scenario)


def test_a_full_connection_takes_no_new_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_mod, "VIEWS_PER_CONNECTION", 2)

    async def scenario(url: str, pool: SharedConnections) -> None:
        links = [_link(url, pool) for _ in range(3)]
        for link in links:
            await link.connect()
        assert len(pool.connections()) == 2
        for link in links:
            await link.close()

    _run(scenario)


def test_a_presence_queue_goes_with_its_link_while_the_shared_connection_stays() -> None:
    async def scenario(url: str, pool: SharedConnections) -> tuple[bool, bool]:
        holder, watcher = _link(url, pool), _link(url, pool)
        await holder.connect()
        await watcher.connect()
        name = execution_fence.presence_queue_name("p", "incarnation")
        await execution_fence.declare_presence(holder, name)
        before = await execution_fence.is_present(watcher, name)
        await holder.close()
        after = await execution_fence.is_present(watcher, name)
        await watcher.close()
        return before, after

    assert _run(scenario) == (True, False)


def test_links_of_a_shared_connection_reuse_each_others_spare_scratch_channels() -> None:
    async def scenario(url: str, pool: SharedConnections) -> tuple[int, bool]:
        links = [_link(url, pool) for _ in range(4)]
        await asyncio.gather(*(link.connect() for link in links))
        (connection,) = pool.connections()
        opened: list[Any] = []
        opener = connection.channel

        async def channel(**options: Any) -> Any:
            made = await opener(**options)
            opened.append(made)
            return made

        connection.channel = channel  # type: ignore[method-assign]
        for i, link in enumerate(links):  # one link after the other, as starts go
            await link.declare_replicated(f"spare-{i}")
        await links[0].close()  # the spare is the connection's, not the first link's
        await links[1].declare_replicated("spare-after")
        spare_open = not opened[0].is_closed
        for link in links[1:]:
            await link.close()
        return len(opened), spare_open

    assert _run(scenario) == (1, True)
