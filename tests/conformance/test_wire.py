"""The embedded broker's AMQP front end (WireServer): what a hostile or broken
client can do to it, and what only the wire path has (frames, credentials).
The behaviour of the broker behind it is the conformance suite's ("wire")."""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Iterator

import aiormq
import pytest

from roger_actors.transport import embedded
from roger_actors.transport.base import connect

pytestmark = pytest.mark.conformance


@pytest.fixture
def broker() -> Iterator[embedded.EmbeddedBroker]:
    name = f"wire-{secrets.token_hex(4)}"
    served = embedded.serve(name)
    yield served
    embedded.shutdown(name)


def run(coro: object) -> object:
    async def bounded() -> object:
        return await asyncio.wait_for(coro, 20)  # type: ignore[arg-type]

    return asyncio.run(bounded())


async def _round_trip(url: str, body: bytes) -> bytes:
    connection = await connect(url)
    try:
        channel = await connection.channel()
        queue = (await channel.queue_declare("", exclusive=True)).queue
        await channel.publish(body, routing_key=queue)
        message = await channel.get(queue, no_ack=True)
        assert message is not None
        return message.body
    finally:
        await connection.close()


async def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh socket; what the server sent until it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return received


def test_it_listens_on_loopback_only_with_a_fresh_password(broker: embedded.EmbeddedBroker) -> None:
    sockets = broker._server._server.sockets  # type: ignore[union-attr]
    assert {s.getsockname()[0] for s in sockets} == {"127.0.0.1"}
    assert len(broker.password) >= 24
    other = embedded.serve(f"wire-{secrets.token_hex(4)}")
    try:
        assert other.password != broker.password
    finally:
        embedded.shutdown(other.name)
    assert broker.password not in repr(broker)


def test_other_credentials_are_refused_and_the_server_goes_on(
    broker: embedded.EmbeddedBroker,
) -> None:
    wrong = broker.url.replace(broker.password, "not-the-password")
    with pytest.raises((aiormq.exceptions.AMQPConnectionError, ConnectionError)):
        run(aiormq.connect(wrong))
    assert run(_round_trip(broker.url, b"after")) == b"after"


def test_a_client_that_does_not_speak_amqp_gets_the_protocol_header_and_is_closed(
    broker: embedded.EmbeddedBroker,
) -> None:
    answer = run(_raw(broker.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert answer == b"AMQP\x00\x00\x09\x01"
    assert run(_round_trip(broker.url, b"still up")) == b"still up"


def test_a_frame_larger_than_frame_max_closes_that_connection_only(
    broker: embedded.EmbeddedBroker,
) -> None:
    async def oversized() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
        writer.write(b"AMQP\x00\x00\x09\x01")
        await reader.read(7)  # the start of connection.start is enough
        writer.write(struct.pack(">BHI", 1, 0, 10_000_000) + b"\x00" * 64)
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return rest

    run(oversized())  # the server closes it (read() returns at EOF)
    assert run(_round_trip(broker.url, b"next")) == b"next"


def test_a_body_larger_than_a_frame_arrives_whole(broker: embedded.EmbeddedBroker) -> None:
    body = secrets.token_bytes(1_000_000)
    assert run(_round_trip(broker.url, body)) == body
