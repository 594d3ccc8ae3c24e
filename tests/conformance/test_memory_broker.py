"""What only the in-memory broker has: named instances, its URL, its event
loop, and a broker-side close of every connection. Plus ``connect``'s
refusal of an unknown scheme."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest

from roger_actors.transport import memory
from roger_actors.transport.base import (
    ConnectionLost,
    Message,
    NotFound,
    PreconditionFailed,
    connect,
)

from .conftest import run

pytestmark = pytest.mark.conformance


@pytest.fixture
def url() -> Iterator[str]:
    """A fresh broker's URL; the broker is forgotten afterwards."""
    name = f"memory://unit-{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        memory.forget_broker(name)


def test_brokers_with_different_names_do_not_share_queues(url: str) -> None:
    other = url + "-other"

    async def body() -> None:
        first = await connect(url)
        second = await connect(other)
        await (await first.channel()).queue_declare("shared-name")
        channel = await second.channel()
        with pytest.raises(NotFound):
            await channel.queue_declare("shared-name", passive=True)
        again = await connect(url)
        ok = await (await again.channel()).queue_declare("shared-name", passive=True)
        assert ok.queue == "shared-name"
        for connection in (first, second, again):
            await connection.close()

    try:
        run(body())
    finally:
        memory.forget_broker(other)


def test_memory_alone_names_the_default_broker() -> None:
    assert memory.broker("memory://") is memory.broker("memory://default")
    assert memory.broker("memory:///") is memory.broker("memory://default")


@pytest.mark.parametrize(
    "bad", ["memory://name/path", "memory://name?x=1", "memory://name#frag", "amqp://h/"]
)
def test_a_malformed_memory_url_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="url"):
        memory.broker(bad)


def test_connect_refuses_an_unknown_scheme_naming_it() -> None:
    with pytest.raises(ValueError, match="'ftp'"):
        run(connect("ftp://somewhere/"))


def test_connect_to_an_unreachable_rabbitmq_is_connection_lost_without_the_password() -> None:
    with pytest.raises(ConnectionLost) as lost:
        run(connect("amqp://guest:s3cret-pw@127.0.0.1:1/", timeout=3))
    assert "127.0.0.1:1" in str(lost.value)
    assert "s3cret-pw" not in str(lost.value)


def test_queues_outlive_the_event_loop_and_timers_resume_on_the_next(url: str) -> None:
    async def declare() -> None:
        connection = await connect(url)
        channel = await connection.channel()
        await channel.queue_declare("kept")
        await channel.queue_declare("expiring", arguments={"x-expires": 100})
        await channel.publish(b"still here", routing_key="kept")
        await connection.close()

    async def check() -> None:
        connection = await connect(url)
        channel = await connection.channel()
        got = await channel.get("kept")
        assert got is not None and got.body == b"still here"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while "expiring" in memory.broker(url).queues:
            assert loop.time() < deadline, "the expiring queue was never deleted"
            await asyncio.sleep(0.02)
        await connection.close()

    run(declare())
    run(check())


def test_a_broker_in_use_on_one_event_loop_refuses_another(url: str) -> None:
    first = asyncio.new_event_loop()
    try:
        held = first.run_until_complete(connect(url))
        with pytest.raises(RuntimeError, match="another event loop"):
            run(connect(url))
        first.run_until_complete(held.close())
        run(connect(url))  # free again once its connections are closed
    finally:
        first.close()


def test_close_all_connections_closes_every_connection_with_connection_lost(url: str) -> None:
    async def body() -> None:
        connections = [await connect(url) for _ in range(3)]
        seen: list[BaseException | None] = []
        for connection in connections:
            connection.add_close_callback(seen.append)
        memory.broker(url).close_all_connections("maintenance")
        assert all(c.is_closed for c in connections)
        assert [type(e) for e in seen] == [ConnectionLost] * 3
        assert all("maintenance" in str(e) for e in seen)
        with pytest.raises(ConnectionLost):
            await connections[0].channel()
        late: list[BaseException | None] = []
        connections[0].add_close_callback(late.append)  # already closed: at once
        assert isinstance(late[0], ConnectionLost)

    run(body())


def test_a_failing_consumer_callback_does_not_stop_deliveries(url: str) -> None:
    async def body() -> None:
        connection = await connect(url)
        channel = await connection.channel()
        await channel.queue_declare("q")
        seen: list[bytes] = []
        done = asyncio.Event()

        async def fragile(message: Message) -> None:
            seen.append(message.body)
            await message.ack()
            if message.body == b"1":
                raise RuntimeError("a bug in the consumer")
            done.set()

        await channel.consume("q", fragile)
        await channel.publish(b"1", routing_key="q")
        await channel.publish(b"2", routing_key="q")
        await asyncio.wait_for(done.wait(), 5)
        assert seen == [b"1", b"2"]
        await connection.close()

    run(body())


def test_a_queue_argument_the_broker_does_not_model_is_refused_not_ignored(url: str) -> None:
    async def body() -> None:
        connection = await connect(url)
        channel = await connection.channel()
        with pytest.raises(PreconditionFailed, match="x-max-priority"):
            await channel.queue_declare("q", arguments={"x-max-priority": 5})
        await connection.close()

    run(body())


def test_a_delivery_held_past_consumer_timeout_closes_its_channel_and_requeues(url: str) -> None:
    async def body() -> None:
        memory.broker(url).consumer_timeout = 0.1
        connection = await connect(url)
        channel = await connection.channel()
        closed: asyncio.Queue[BaseException | None] = asyncio.Queue()
        channel.add_close_callback(closed.put_nowait)
        await channel.queue_declare("q")
        await channel.publish(b"slow", routing_key="q")
        await channel.publish(b"quick", routing_key="q")
        quick_channel = await connection.channel()
        held = await channel.get("q")
        quick = await quick_channel.get("q")
        assert held is not None and quick is not None
        await quick.ack()  # settled in time: its channel stays open
        error = await asyncio.wait_for(closed.get(), 5)
        assert isinstance(error, PreconditionFailed) and "timed out" in str(error)
        assert not quick_channel.is_closed and not connection.is_closed
        again = await quick_channel.get("q")
        assert again is not None and (again.body, again.redelivered) == (b"slow", True)
        await again.ack()
        await connection.close()

    run(body())


def test_connections_left_open_on_a_closed_loop_are_lost_and_return_their_messages(
    url: str,
) -> None:
    lost: list[BaseException | None] = []

    async def leave_open() -> None:
        connection = await connect(url)
        connection.add_close_callback(lost.append)
        channel = await connection.channel()
        await channel.queue_declare("q")
        await channel.publish(b"1", routing_key="q")
        await channel.publish(b"2", routing_key="q")
        taken: asyncio.Queue[Message] = asyncio.Queue()

        async def take(message: Message) -> None:
            await taken.put(message)

        await channel.consume("q", take)
        await asyncio.wait_for(taken.get(), 5)
        await asyncio.wait_for(taken.get(), 5)  # both unacked; the loop then ends

    async def afterwards() -> None:
        connection = await connect(url)
        assert [type(e) for e in lost] == [ConnectionLost]
        channel = await connection.channel()
        assert (await channel.queue_declare("q", passive=True)).consumer_count == 0
        bodies = []
        while (got := await channel.get("q", no_ack=True)) is not None:
            assert got.redelivered
            bodies.append(got.body)
        assert bodies == [b"1", b"2"]
        await connection.close()

    run(leave_open())
    run(afterwards())
