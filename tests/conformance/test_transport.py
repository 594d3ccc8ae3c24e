"""The transport conformance suite: RabbitMQ's behaviour for the subset Roger
uses, which both implementations of the interface (aiormq on RabbitMQ, the
in-memory broker) must show. Each test runs once per transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roger_actors.transport.base import (
    AccessRefused,
    Channel,
    ChannelClosed,
    Connection,
    ConnectionLost,
    Message,
    Nacked,
    NotFound,
    Outgoing,
    PreconditionFailed,
    Properties,
    ResourceLocked,
    Unroutable,
)

from .conftest import WAIT, Kit, eventually, next_item, run

pytestmark = pytest.mark.conformance

QUORUM = {"x-queue-type": "quorum"}
#: How long a quorum queue may outlive its x-expires on RabbitMQ (its check
#: runs on a tick of about 5 s).
QUORUM_TICK = 10.0


class Inbox:
    """A consumer callback that collects deliveries in an asyncio queue."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()

    async def __call__(self, message: Message) -> None:
        await self.messages.put(message)

    async def next(self, timeout: float = WAIT) -> Message:
        """The next delivery (at most ``timeout`` s)."""
        message: Message = await next_item(self.messages, timeout)
        return message


async def ready(channel: Channel, queue: str) -> int:
    """The ready-message count of ``queue`` (a passive declare)."""
    return (await channel.queue_declare(queue, passive=True)).message_count


async def _ready_is(channel: Channel, queue: str, count: int) -> bool:
    return await ready(channel, queue) == count


async def gone(connection: Connection, queue: str) -> bool:
    """True when ``queue`` does not exist (a passive declare, on a scratch channel)."""
    channel = await connection.channel()
    try:
        await channel.queue_declare(queue, passive=True)
    except NotFound:
        return True
    await channel.close()
    return False


async def unroutable(channel: Channel, queue: str) -> bool:
    """True when a mandatory publish to ``queue`` is returned: it no longer
    exists. (Unlike a passive declare, a publish does not renew a classic
    queue's ``x-expires``.)"""
    try:
        await channel.publish(b"probe", routing_key=queue, mandatory=True)
    except Unroutable:
        return True
    return False


async def publish_all(channel: Channel, queue: str, bodies: list[bytes]) -> None:
    for body in bodies:
        await channel.publish(body, routing_key=queue)


# --------------------------------------------------------------- publish and consume


def test_a_published_message_is_delivered_with_its_properties_and_acked(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        ok = await channel.queue_declare(queue, durable=True)
        assert (ok.queue, ok.message_count, ok.consumer_count) == (queue, 0, 0)
        props = Properties(
            message_id="m-1",
            headers={"k": "v", "n": 3},
            content_type="application/cbor",
            delivery_mode=2,
            correlation_id="c-1",
            app_id="roger",
        )
        await channel.publish(b"hello", routing_key=queue, properties=props, mandatory=True)
        assert await ready(channel, queue) == 1
        inbox = Inbox()
        tag = await channel.consume(queue, inbox)
        message = await inbox.next()
        assert message.body == b"hello"
        assert message.headers == {"k": "v", "n": 3}
        assert message.properties.message_id == "m-1"
        assert message.properties.content_type == "application/cbor"
        assert message.properties.delivery_mode == 2
        assert message.properties.correlation_id == "c-1"
        assert message.properties.app_id == "roger"
        assert (message.exchange, message.routing_key) == ("", queue)
        assert message.redelivered is False
        assert message.consumer_tag == tag
        assert (await channel.queue_declare(queue, durable=True)).consumer_count == 1
        await message.ack()
        await channel.cancel(tag)
        await eventually(
            lambda: _counts_are(channel, queue, 0, 0), "the queue is empty and unconsumed"
        )
        await connection.close()

    run(body())


async def _counts_are(channel: Channel, queue: str, messages: int, consumers: int) -> bool:
    ok = await channel.queue_declare(queue, passive=True)
    return (ok.message_count, ok.consumer_count) == (messages, consumers)


def test_a_nacked_message_with_requeue_comes_back_flagged_redelivered(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await channel.publish(b"again", routing_key=queue)
        inbox = Inbox()
        await channel.consume(queue, inbox)
        first = await inbox.next()
        assert first.redelivered is False
        await first.nack(requeue=True)
        second = await inbox.next()
        assert (second.body, second.redelivered) == (b"again", True)
        assert second.delivery_tag != first.delivery_tag
        await channel.reject(second.delivery_tag, requeue=False)
        await eventually(lambda: _counts_are(channel, queue, 0, 1), "the rejected message is gone")
        await connection.close()

    run(body())


def test_prefetch_holds_back_deliveries_until_one_is_acked(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await publish_all(channel, queue, [b"%d" % i for i in range(5)])
        await channel.qos(2)
        inbox = Inbox()
        await channel.consume(queue, inbox)
        first, second = await inbox.next(), await inbox.next()
        assert (first.body, second.body) == (b"0", b"1")
        assert await ready(channel, queue) == 3
        assert inbox.messages.empty()
        await channel.ack(first.delivery_tag)
        third = await inbox.next()
        assert third.body == b"2"
        assert await ready(channel, queue) == 2
        await channel.ack(third.delivery_tag, multiple=True)  # acks 1 and 2
        assert [(await inbox.next()).body for _ in range(2)] == [b"3", b"4"]
        await connection.close()

    run(body())


def test_every_delivery_made_before_a_cancel_reaches_the_consumer(transport: Kit) -> None:
    """A consumer cancelled while the broker was delivering to it gets every
    delivery made before the cancel: none is left unacked on the channel
    with nobody to settle it (a client drops a delivery that comes after
    its cancel-ok). Nacked back, they and the undelivered rest are the
    whole queue again (but the one acked)."""

    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await publish_all(channel, queue, [b"%d" % i for i in range(50)])
        await channel.qos(1)
        inbox = Inbox()
        tag = await channel.consume(queue, inbox)
        first = await inbox.next()
        # The ack makes the broker deliver the next message while the cancel
        # is on its way: that delivery comes before the cancel's answer.
        await channel.ack(first.delivery_tag)
        await channel.cancel(tag)
        received: list[Message] = []

        async def accounted() -> bool:
            while not inbox.messages.empty():
                received.append(inbox.messages.get_nowait())
            return await ready(channel, queue) + len(received) == 49

        await eventually(accounted, "every message delivered or still in the queue")
        for message in received:
            await channel.nack(message.delivery_tag, requeue=True)
        await eventually(lambda: _ready_is(channel, queue, 49), "all 49 back in the queue")
        await connection.close()

    run(body())


def test_basic_get_returns_the_next_message_then_none_when_empty(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        assert await channel.get(queue) is None
        await publish_all(channel, queue, [b"a", b"b"])
        got = await channel.get(queue)
        assert got is not None
        assert (got.body, got.message_count, got.redelivered) == (b"a", 1, False)
        await channel.nack(got.delivery_tag, requeue=True)
        again = await channel.get(queue)
        assert again is not None and (again.body, again.redelivered) == (b"a", True)
        await again.ack()
        last = await channel.get(queue, no_ack=True)
        assert last is not None and last.body == b"b"
        assert await channel.get(queue) is None
        assert await ready(channel, queue) == 0
        await connection.close()

    run(body())


def test_purge_drops_ready_messages_and_counts_them(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await publish_all(channel, queue, [b"1", b"2", b"3"])
        held = await channel.get(queue)
        assert held is not None
        assert await channel.queue_purge(queue) == 2
        assert await ready(channel, queue) == 0
        await held.nack(requeue=True)  # an unacked message survives a purge
        await eventually(lambda: _ready_is(channel, queue, 1), "the held message is back")
        await connection.close()

    run(body())


def test_delete_removes_the_queue_with_its_messages(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await publish_all(channel, queue, [b"1", b"2"])
        assert await channel.queue_delete(queue) == 2
        assert await gone(connection, queue)
        assert await channel.queue_delete(queue) == 0  # a missing queue is fine
        await connection.close()

    run(body())


def test_purge_or_get_of_a_missing_queue_is_not_found_and_closes_only_that_channel(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        missing = transport.name("missing")
        for operation in ("purge", "get", "passive"):
            channel = await connection.channel()
            closed: list[BaseException | None] = []
            channel.add_close_callback(closed.append)
            with pytest.raises(NotFound):
                if operation == "purge":
                    await channel.queue_purge(missing)
                elif operation == "get":
                    await channel.get(missing)
                else:
                    await channel.queue_declare(missing, passive=True)
            assert channel.is_closed
            await eventually(lambda seen=closed: _true(bool(seen)), "the close callback ran")
            assert isinstance(closed[0], NotFound)
            with pytest.raises(ChannelClosed):
                await channel.queue_declare(transport.name("after"))
        other = await connection.channel()
        assert not connection.is_closed
        await other.queue_declare(transport.name("fine"))
        await connection.close()

    run(body())


async def _true(value: bool) -> bool:
    return value


# ----------------------------------------------------------------------- publishing


def test_a_mandatory_unroutable_publish_is_returned(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel(publisher_confirms=True)
        nowhere = transport.name("nowhere")
        with pytest.raises(Unroutable) as returned:
            await channel.publish(b"lost", routing_key=nowhere, mandatory=True)
        assert returned.value.message.body == b"lost"
        assert returned.value.message.routing_key == nowhere
        # without mandatory it is confirmed and dropped; the channel stays open
        await channel.publish(b"dropped", routing_key=nowhere)
        assert not channel.is_closed
        await connection.close()

    run(body())


def test_publish_many_confirms_every_message_and_keeps_their_order(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel(publisher_confirms=True)
        queue = transport.name("q")
        await channel.queue_declare(queue, durable=True, arguments=QUORUM)
        batch = [
            Outgoing(queue, f"m{i}".encode(), Properties(message_id=f"id-{i}", delivery_mode=2))
            for i in range(600)
        ]
        assert await channel.publish_many(batch, mandatory=True) == [None] * 600
        assert await channel.publish_many([]) == []
        assert await ready(channel, queue) == 600
        for i in range(600):
            got = await channel.get(queue, no_ack=True)
            assert got is not None
            assert (got.body, got.properties.message_id) == (f"m{i}".encode(), f"id-{i}")
            assert got.properties.delivery_mode == 2
        await connection.close()

    run(body())


def test_publish_many_reports_each_messages_own_outcome(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel(publisher_confirms=True)
        full, other, nowhere = transport.name("full"), transport.name("other"), transport.name("no")
        await channel.queue_declare(
            full, arguments={"x-max-length": 2, "x-overflow": "reject-publish"}
        )
        await channel.queue_declare(other)
        batch = [Outgoing(full, b"1"), Outgoing(full, b"2"), Outgoing(full, b"3")]
        batch += [Outgoing(nowhere, b"lost"), Outgoing(other, b"fine")]

        outcomes = await channel.publish_many(batch, mandatory=True)

        assert outcomes[:2] == [None, None] and outcomes[4] is None
        assert isinstance(outcomes[2], Nacked)
        returned = outcomes[3]
        assert isinstance(returned, Unroutable)
        assert (returned.message.body, returned.message.routing_key) == (b"lost", nowhere)
        assert (await ready(channel, full), await ready(channel, other)) == (2, 1)
        assert not channel.is_closed
        await connection.close()

    run(body())


def test_publish_many_to_a_missing_exchange_fails_every_message_and_closes_the_channel(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel(publisher_confirms=True)
        missing = transport.exchange("missing")
        batch = [Outgoing("k", b"a"), Outgoing("k", b"b")]

        outcomes = await channel.publish_many(batch, exchange=missing)

        assert isinstance(outcomes[0], NotFound)
        assert all(isinstance(outcome, ChannelClosed) for outcome in outcomes)
        await eventually(lambda: _true(channel.is_closed), "the channel is closed")
        again = await channel.publish_many([Outgoing("k", b"c")])
        assert [type(outcome) for outcome in again] == [ChannelClosed]
        await connection.close()

    run(body())


def test_a_publish_to_a_missing_exchange_is_not_found(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        with pytest.raises(NotFound):
            await channel.publish(b"x", exchange=transport.exchange("missing"), routing_key="k")
        assert channel.is_closed
        await connection.close()

    run(body())


def test_fanout_exchange_delivers_to_every_bound_queue(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        exchange = transport.exchange("fan")
        await channel.exchange_declare(exchange, "fanout", durable=True)
        first, second = transport.name("a"), transport.name("b")
        for queue in (first, second):
            await channel.queue_declare(queue)
            await channel.queue_bind(queue, exchange)
        await channel.publish(b"both", exchange=exchange, routing_key="ignored", mandatory=True)
        for queue in (first, second):
            got = await channel.get(queue)
            assert got is not None
            assert (got.body, got.exchange, got.routing_key) == (b"both", exchange, "ignored")
            await got.ack()
        await channel.queue_unbind(second, exchange)
        await channel.publish(b"one", exchange=exchange)
        assert (await ready(channel, first), await ready(channel, second)) == (1, 0)
        await channel.queue_unbind(first, exchange)
        with pytest.raises(Unroutable):
            await channel.publish(b"none", exchange=exchange, mandatory=True)
        with pytest.raises(PreconditionFailed):
            await channel.exchange_declare(exchange, "direct", durable=True)
        channel = await connection.channel()
        with pytest.raises(NotFound):
            await channel.queue_bind(first, transport.exchange("absent"))
        await connection.close()

    run(body())


def test_reject_publish_overflow_nacks_the_publisher(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(
            queue, arguments={"x-max-length": 2, "x-overflow": "reject-publish"}
        )
        await publish_all(channel, queue, [b"1", b"2"])
        with pytest.raises(Nacked):
            await channel.publish(b"3", routing_key=queue)
        assert await ready(channel, queue) == 2
        got = await channel.get(queue, no_ack=True)
        assert got is not None and got.body == b"1"
        await channel.publish(b"4", routing_key=queue)
        assert await ready(channel, queue) == 2
        await connection.close()

    run(body())


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_drop_head_overflow_keeps_the_newest_messages(transport: Kit, queue_type: str) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        args: dict[str, Any] = {"x-max-length": 2, "x-overflow": "drop-head"}
        if queue_type == "quorum":
            args |= QUORUM
        await channel.queue_declare(queue, durable=True, arguments=args)
        await publish_all(channel, queue, [b"1", b"2", b"3"])
        bodies = []
        while (got := await channel.get(queue, no_ack=True)) is not None:
            bodies.append(got.body)
        assert bodies == [b"2", b"3"]
        await connection.close()

    run(body())


def test_a_length_limit_of_zero_keeps_nothing(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue, arguments={"x-max-length": 0})
        await channel.publish(b"gone", routing_key=queue, mandatory=True)
        assert await ready(channel, queue) == 0
        await connection.close()

    run(body())


# ------------------------------------------------------------ exclusive, server-named


def test_an_exclusive_queue_is_locked_for_other_connections_and_dies_with_its_own(
    transport: Kit,
) -> None:
    async def body() -> None:
        owner = await transport.connect()
        other = await transport.connect()
        queue = transport.name("mine")
        owned = await owner.channel()
        await owned.queue_declare(queue, exclusive=True)
        for operation in ("declare", "passive", "consume", "get", "purge", "delete"):
            channel = await other.channel()
            with pytest.raises(ResourceLocked):
                if operation == "declare":
                    await channel.queue_declare(queue, exclusive=True)
                elif operation == "passive":
                    await channel.queue_declare(queue, passive=True)
                elif operation == "consume":
                    await channel.consume(queue, Inbox())
                elif operation == "get":
                    await channel.get(queue)
                elif operation == "purge":
                    await channel.queue_purge(queue)
                else:
                    await channel.queue_delete(queue)
        publisher = await other.channel()
        await publisher.publish(b"to it", routing_key=queue, mandatory=True)
        assert await ready(owned, queue) == 1
        await owner.close()
        await eventually(lambda: gone(other, queue), "the exclusive queue is deleted")
        await other.close()

    run(body())


def test_a_server_named_queue_gets_an_amq_gen_name(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        first = await channel.queue_declare("", exclusive=True, auto_delete=True)
        second = await channel.queue_declare("", exclusive=True)
        assert first.queue.startswith("amq.gen-") and second.queue.startswith("amq.gen-")
        assert first.queue != second.queue
        await channel.publish(b"x", routing_key=first.queue, mandatory=True)
        assert await ready(channel, first.queue) == 1
        with pytest.raises(AccessRefused):
            await channel.queue_declare("amq.mine")
        await connection.close()

    run(body())


def test_an_auto_delete_queue_goes_when_its_last_consumer_cancels(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("auto")
        await channel.queue_declare(queue, auto_delete=True)
        first = await channel.consume(queue, Inbox())
        second = await channel.consume(queue, Inbox())
        await channel.cancel(first)
        assert not await gone(connection, queue)
        await channel.cancel(second)
        await eventually(lambda: gone(connection, queue), "the auto-delete queue is deleted")
        await connection.close()

    run(body())


# --------------------------------------------------------- TTL, dead letters, expiry


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_an_expired_message_is_dead_lettered_with_an_x_death_header(
    transport: Kit, queue_type: str
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        source, target = transport.name("source"), transport.name("target")
        await channel.queue_declare(target, durable=True)
        args: dict[str, Any] = {"x-dead-letter-exchange": ""}
        args["x-dead-letter-routing-key"] = target
        if queue_type == "quorum":
            args |= QUORUM
        await channel.queue_declare(source, durable=True, arguments=args)
        props = Properties(expiration="50", headers={"mine": 1}, message_id="e-1")
        await channel.publish(b"late", routing_key=source, properties=props)
        inbox = Inbox()
        await channel.consume(target, inbox)
        dead = await inbox.next()
        assert dead.body == b"late"
        assert dead.properties.message_id == "e-1"
        assert dead.properties.expiration is None
        assert dead.routing_key == target
        headers = dead.headers
        assert headers["mine"] == 1
        (death,) = headers["x-death"]
        assert death["reason"] == "expired"
        assert death["queue"] == source
        assert death["count"] == 1
        assert death["exchange"] == ""
        assert list(death["routing-keys"]) == [source]
        assert death["original-expiration"] == "50"
        assert headers["x-first-death-reason"] == "expired"
        assert headers["x-first-death-queue"] == source
        await connection.close()

    run(body())


def test_a_queue_message_ttl_dead_letters_to_the_original_routing_key_by_default(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        exchange = transport.exchange("dlx")
        await channel.exchange_declare(exchange, "fanout")
        source, target = transport.name("source"), transport.name("target")
        await channel.queue_declare(target)
        await channel.queue_bind(target, exchange)
        await channel.queue_declare(
            source, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": exchange}
        )
        await publish_all(channel, source, [b"1", b"2"])
        inbox = Inbox()
        await channel.consume(target, inbox)
        first, second = await inbox.next(), await inbox.next()
        assert (first.body, second.body) == (b"1", b"2")
        assert (first.exchange, first.routing_key) == (exchange, source)
        (death,) = first.headers["x-death"]
        assert (death["reason"], death["queue"]) == ("expired", source)
        assert "original-expiration" not in death
        assert await ready(channel, source) == 0
        await connection.close()

    run(body())


def test_a_rejected_message_is_dead_lettered_and_x_death_counts_each_time(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        work, retry = transport.name("work"), transport.name("retry")
        await channel.queue_declare(
            work,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": retry},
        )
        await channel.queue_declare(
            retry,
            arguments={
                "x-message-ttl": 20,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": work,
            },
        )
        await channel.publish(b"job", routing_key=work)
        inbox = Inbox()
        await channel.consume(work, inbox)
        first = await inbox.next()
        assert "x-death" not in first.headers
        await first.nack(requeue=False)
        second = await inbox.next()
        deaths = {(d["queue"], d["reason"]): d["count"] for d in second.headers["x-death"]}
        assert deaths == {(work, "rejected"): 1, (retry, "expired"): 1}
        assert second.headers["x-death"][0]["queue"] == retry  # the latest first
        assert second.redelivered is False
        await second.nack(requeue=False)
        third = await inbox.next()
        deaths = {(d["queue"], d["reason"]): d["count"] for d in third.headers["x-death"]}
        assert deaths == {(work, "rejected"): 2, (retry, "expired"): 2}
        assert third.headers["x-first-death-reason"] == "rejected"
        assert third.headers["x-first-death-queue"] == work
        await third.ack()
        await connection.close()

    run(body())


def test_a_message_expires_only_at_the_head_of_its_queue(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue, target = transport.name("q"), transport.name("dead")
        await channel.queue_declare(target)
        await channel.queue_declare(
            queue,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": target},
        )
        await channel.publish(b"slow", routing_key=queue, properties=Properties(expiration="60000"))
        await channel.publish(b"fast", routing_key=queue, properties=Properties(expiration="10"))
        first = await channel.get(queue)
        assert first is not None and first.body == b"slow"
        await first.ack()
        # now at the head, the short one is expired: never delivered, dead-lettered
        await eventually(lambda: _ready_is(channel, target, 1), "the expired message dead-letters")
        assert await channel.get(queue) is None
        await connection.close()

    run(body())


def test_x_expires_deletes_a_queue_left_unused(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("expiring")
        await channel.queue_declare(queue, arguments={"x-expires": 300})
        await channel.publish(b"kept until then", routing_key=queue)
        await eventually(lambda: unroutable(channel, queue), "the unused queue is deleted")
        assert await gone(connection, queue)
        await connection.close()

    run(body())


def test_a_consumer_keeps_an_expiring_queue_and_its_cancel_starts_the_clock(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("expiring")
        await channel.queue_declare(queue, arguments={"x-expires": 200})
        tag = await channel.consume(queue, Inbox())
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < 0.5:  # over twice its x-expires, in use all along
            assert not await unroutable(channel, queue)
        await channel.cancel(tag)
        await eventually(lambda: unroutable(channel, queue), "the queue expires once unused")
        await connection.close()

    run(body())


def test_passive_declares_and_publishes_do_not_keep_a_quorum_queue_alive(transport: Kit) -> None:
    """A quorum queue counts consumers, basic.get and a (non-passive)
    redeclare as use; RabbitMQ 3.10 checks its x-expires every 5 s or so."""

    async def body() -> None:
        connection = await transport.connect()
        queue = transport.name("expiring")
        channel = await connection.channel()
        await channel.queue_declare(queue, durable=True, arguments={"x-expires": 300, **QUORUM})

        async def used_in_vain() -> bool:
            nonlocal connection, channel
            try:
                await channel.queue_declare(queue, passive=True)
                return await unroutable(channel, queue)
            except NotFound:
                return True
            except Nacked:
                return False  # RabbitMQ: a publish that meets the deletion
            except ConnectionLost:
                # RabbitMQ 3.10.8 may fail the connection (INTERNAL_ERROR) when
                # an operation meets the quorum queue while it is being deleted.
                connection = await transport.connect()
                channel = await connection.channel()
                return False

        await eventually(used_in_vain, "the quorum queue expires", timeout=QUORUM_TICK)
        await connection.close()

    run(body())


# --------------------------------------------------------------- quorum deliveries


def test_a_quorum_queue_counts_returns_and_dead_letters_past_its_delivery_limit(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        work, dead = transport.name("work"), transport.name("dead")
        await channel.queue_declare(dead, durable=True)
        await channel.queue_declare(
            work,
            durable=True,
            arguments={
                **QUORUM,
                "x-delivery-limit": 1,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead,
            },
        )
        await channel.publish(b"poison", routing_key=work)
        first = await channel.get(work)
        assert first is not None and first.headers["x-delivery-count"] == 0
        await first.nack(requeue=True)
        second = await channel.get(work)
        assert second is not None and second.redelivered
        assert second.headers["x-delivery-count"] == 1
        await second.nack(requeue=True)
        await eventually(lambda: _ready_is(channel, dead, 1), "the poison message dead-letters")
        assert await channel.get(work) is None
        got = await channel.get(dead)
        assert got is not None
        (death,) = got.headers["x-death"]
        assert (death["reason"], death["queue"]) == ("delivery_limit", work)
        await connection.close()

    run(body())


@pytest.mark.parametrize(
    "flags",
    [
        {"durable": True, "exclusive": True},
        {"durable": True, "auto_delete": True},
        {"durable": False},
    ],
)
def test_a_quorum_queue_must_be_durable_and_neither_exclusive_nor_auto_delete(
    transport: Kit, flags: dict[str, bool]
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        with pytest.raises(PreconditionFailed):
            await channel.queue_declare(transport.name("q"), arguments=QUORUM, **flags)
        await connection.close()

    run(body())


def test_a_quorum_queue_counts_a_return_by_a_closed_channel(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        queue = transport.name("q")
        channel = await connection.channel()
        await channel.queue_declare(queue, durable=True, arguments=QUORUM)
        await channel.publish(b"x", routing_key=queue)
        got = await channel.get(queue)
        assert got is not None and got.headers["x-delivery-count"] == 0
        await channel.close()
        channel = await connection.channel()
        again = await channel.get(queue)
        assert again is not None and again.redelivered
        assert again.headers["x-delivery-count"] == 1
        await connection.close()

    run(body())


def test_a_classic_queue_declared_without_a_type_is_the_classic_type(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        queue = transport.name("q")
        channel = await connection.channel()
        await channel.queue_declare(queue, durable=True)
        await channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
        with pytest.raises(PreconditionFailed):
            await channel.queue_declare(queue, durable=True, arguments=QUORUM)
        await connection.close()

    run(body())


# ------------------------------------------------------------------ single active


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_single_active_consumer_fails_over_to_the_next_consumer(
    transport: Kit, queue_type: str
) -> None:
    async def body() -> None:
        first_conn, second_conn = await transport.connect(), await transport.connect()
        first, second = await first_conn.channel(), await second_conn.channel()
        queue = transport.name("sac")
        args: dict[str, Any] = {"x-single-active-consumer": True}
        if queue_type == "quorum":
            args |= QUORUM
        await first.queue_declare(queue, durable=True, arguments=args)
        one, two = Inbox(), Inbox()
        await first.consume(queue, one)
        await second.consume(queue, two)
        await publish_all(first, queue, [b"1", b"2"])
        got = [await one.next(), await one.next()]
        assert [m.body for m in got] == [b"1", b"2"]
        assert two.messages.empty()
        await got[0].ack()
        await first_conn.close()  # "2" unacked: back to the queue, to the new active one
        taken = await two.next()
        assert (taken.body, taken.redelivered) == (b"2", True)
        await second.publish(b"3", routing_key=queue)
        assert (await two.next()).body == b"3"
        await second_conn.close()

    run(body())


# ------------------------------------------------------------------- redeclaring


def test_a_redeclare_with_other_arguments_or_properties_fails_the_precondition(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        queue = transport.name("q")
        channel = await connection.channel()
        args = {"x-message-ttl": 1000, "x-dead-letter-exchange": ""}
        await channel.queue_declare(queue, durable=True, arguments=args)
        again = await channel.queue_declare(queue, durable=True, arguments=dict(args))
        assert again.queue == queue
        for changed in (
            {"durable": True, "arguments": {"x-message-ttl": 2000, "x-dead-letter-exchange": ""}},
            {"durable": True, "arguments": {"x-dead-letter-exchange": ""}},
            {"durable": True, "arguments": {**args, "x-max-length": 3}},
            {"durable": False, "arguments": args},
        ):
            channel = await connection.channel()
            with pytest.raises(PreconditionFailed):
                await channel.queue_declare(queue, **changed)  # type: ignore[arg-type]
            assert channel.is_closed
        channel = await connection.channel()
        ok = await channel.queue_declare(queue, passive=True)
        assert ok.queue == queue
        await connection.close()

    run(body())


def test_an_invalid_queue_argument_fails_the_precondition(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        for args in ({"x-expires": 0}, {"x-max-length": -1}, {"x-overflow": "sideways"}):
            channel = await connection.channel()
            with pytest.raises(PreconditionFailed):
                await channel.queue_declare(transport.name("bad"), arguments=args)
        await connection.close()

    run(body())


# --------------------------------------------------------------- connections


def test_closing_a_connection_requeues_its_unacked_messages(transport: Kit) -> None:
    async def body() -> None:
        queue = transport.name("q")
        taker = await transport.connect()
        channel = await taker.channel()
        await channel.queue_declare(queue)
        await publish_all(channel, queue, [b"1", b"2"])
        inbox = Inbox()
        await channel.consume(queue, inbox)
        first, second = await inbox.next(), await inbox.next()
        await first.ack()
        closed: list[BaseException | None] = []
        taker.add_close_callback(closed.append)
        channel_closed: list[BaseException | None] = []
        channel.add_close_callback(channel_closed.append)
        await taker.close()
        assert taker.is_closed and closed == [None]
        await eventually(lambda: _true(bool(channel_closed)), "the channel's close callback ran")
        assert channel_closed == [None] and channel.is_closed
        with pytest.raises(ConnectionLost):
            await taker.channel()
        with pytest.raises((ConnectionLost, ChannelClosed)):
            await channel.queue_declare(queue, passive=True)
        other = await transport.connect()
        again = await other.channel()
        got = await again.get(queue)
        assert got is not None and (got.body, got.redelivered) == (second.body, True)
        await other.close()

    run(body())


def test_a_connection_the_broker_drops_reports_it_lost_and_requeues(transport: Kit) -> None:
    async def body() -> None:
        queue = transport.name("q")
        victim = await transport.connect()
        lost: asyncio.Queue[BaseException | None] = asyncio.Queue()
        victim.add_close_callback(lost.put_nowait)
        channel = await victim.channel()
        channel_lost: asyncio.Queue[BaseException | None] = asyncio.Queue()
        channel.add_close_callback(channel_lost.put_nowait)
        await channel.queue_declare(queue)
        await channel.publish(b"held", routing_key=queue)
        held = await channel.get(queue)
        assert held is not None
        await transport.drop(victim)
        assert isinstance(await next_item(lost, 10), ConnectionLost)
        assert isinstance(await next_item(channel_lost), ConnectionLost)
        assert victim.is_closed and channel.is_closed
        other = await transport.connect()
        check = await other.channel()
        got = await check.get(queue)
        assert got is not None and (got.body, got.redelivered) == (b"held", True)
        await other.close()

    run(body())


def test_an_unknown_delivery_tag_closes_the_channel(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        closed: asyncio.Queue[BaseException | None] = asyncio.Queue()
        channel.add_close_callback(closed.put_nowait)
        try:
            await channel.ack(999)
        except PreconditionFailed:
            pass  # the in-memory broker can tell at once; RabbitMQ answers later
        assert isinstance(await next_item(closed), PreconditionFailed)
        assert channel.is_closed
        assert not connection.is_closed
        await connection.close()

    run(body())


# ------------------------------------------------------------------ request/reply


def test_direct_reply_to_carries_a_reply_back_to_the_requester(transport: Kit) -> None:
    async def body() -> None:
        server_conn, client_conn = await transport.connect(), await transport.connect()
        server, client = await server_conn.channel(), await client_conn.channel()
        requests = transport.name("requests")
        await server.queue_declare(requests)

        async def serve(message: Message) -> None:
            reply_to = message.properties.reply_to
            assert reply_to is not None and reply_to.startswith("amq.rabbitmq.reply-to.")
            await server.publish(
                b"re: " + message.body,
                routing_key=reply_to,
                properties=Properties(correlation_id=message.properties.correlation_id),
            )
            await message.ack()

        await server.consume(requests, serve)
        replies = Inbox()
        await client.consume("amq.rabbitmq.reply-to", replies, no_ack=True)
        await client.publish(
            b"ping",
            routing_key=requests,
            properties=Properties(reply_to="amq.rabbitmq.reply-to", correlation_id="r-1"),
            mandatory=True,
        )
        reply = await replies.next()
        assert (reply.body, reply.properties.correlation_id) == (b"re: ping", "r-1")
        await server_conn.close()
        await client_conn.close()

    run(body())


def test_direct_reply_to_needs_a_no_ack_reply_consumer_on_the_channel(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        requests = transport.name("requests")
        channel = await connection.channel()
        await channel.queue_declare(requests)
        with pytest.raises(PreconditionFailed):
            await channel.publish(
                b"ping",
                routing_key=requests,
                properties=Properties(reply_to="amq.rabbitmq.reply-to"),
            )
        channel = await connection.channel()
        with pytest.raises(PreconditionFailed):
            await channel.consume("amq.rabbitmq.reply-to", Inbox(), no_ack=False)
        await connection.close()

    run(body())


# ------------------------------------------------------------------- more edges


def test_a_zero_ttl_message_reaches_a_waiting_consumer_and_dead_letters_otherwise(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue, dead = transport.name("q"), transport.name("dead")
        await channel.queue_declare(dead)
        await channel.queue_declare(
            queue, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
        )
        now = Properties(expiration="0")
        await channel.publish(b"nobody waits", routing_key=queue, properties=now)
        await eventually(lambda: _ready_is(channel, dead, 1), "the unconsumed message dead-letters")
        inbox = Inbox()
        await channel.consume(queue, inbox)
        await channel.publish(b"taken", routing_key=queue, properties=now)
        assert (await inbox.next()).body == b"taken"
        await connection.close()

    run(body())


def test_a_direct_exchange_routes_by_binding_key(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        exchange = transport.exchange("direct")
        await channel.exchange_declare(exchange, "direct")
        red, blue = transport.name("red"), transport.name("blue")
        for queue, key in ((red, "red"), (blue, "blue")):
            await channel.queue_declare(queue)
            await channel.queue_bind(queue, exchange, routing_key=key)
        await channel.publish(b"r", exchange=exchange, routing_key="red", mandatory=True)
        with pytest.raises(Unroutable):
            await channel.publish(b"g", exchange=exchange, routing_key="green", mandatory=True)
        assert (await ready(channel, red), await ready(channel, blue)) == (1, 0)
        await connection.close()

    run(body())


def test_a_publish_refused_by_one_of_its_queues_is_nacked_but_reaches_the_others(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        exchange = transport.exchange("fan")
        await channel.exchange_declare(exchange, "fanout")
        full, roomy = transport.name("full"), transport.name("roomy")
        await channel.queue_declare(
            full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await channel.queue_declare(roomy)
        for queue in (full, roomy):
            await channel.queue_bind(queue, exchange)
        with pytest.raises(Nacked):
            await channel.publish(b"x", exchange=exchange)
        assert (await ready(channel, full), await ready(channel, roomy)) == (0, 1)
        await connection.close()

    run(body())


def test_delete_if_unused_or_if_empty_refuses_a_queue_in_use_or_not_empty(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await channel.publish(b"x", routing_key=queue)
        with pytest.raises(PreconditionFailed):
            await channel.queue_delete(queue, if_empty=True)
        channel = await connection.channel()
        await channel.consume(queue, Inbox(), no_ack=True)
        await eventually(lambda: _ready_is(channel, queue, 0), "the message is consumed")
        other = await connection.channel()
        with pytest.raises(PreconditionFailed):
            await other.queue_delete(queue, if_unused=True)
        other = await connection.channel()
        assert await other.queue_delete(queue, if_empty=True) == 0
        assert await gone(connection, queue)
        await connection.close()

    run(body())


def test_an_exclusive_consumer_keeps_other_consumers_out(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await channel.consume(queue, Inbox(), exclusive=True)
        other = await connection.channel()
        with pytest.raises(AccessRefused):
            await other.consume(queue, Inbox())
        await connection.close()

    run(body())


def test_deliveries_of_a_cancelled_consumer_can_still_be_settled(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await publish_all(channel, queue, [b"1", b"2", b"3"])
        inbox = Inbox()
        tag = await channel.consume(queue, inbox)
        got = [await inbox.next() for _ in range(3)]
        await channel.cancel(tag)
        await channel.ack(got[0].delivery_tag)
        await channel.nack(got[2].delivery_tag, multiple=True, requeue=True)
        await eventually(lambda: _ready_is(channel, queue, 2), "the two nacked are back")
        again = await channel.get(queue, no_ack=True)
        assert again is not None and (again.body, again.redelivered) == (b"2", True)
        await connection.close()

    run(body())


def test_header_values_arrive_as_amqp_carries_them_and_unsendable_ones_are_refused(
    transport: Kit,
) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        headers = {
            "int": 7,
            "big": 2**40,
            "neg": -3,
            "text": "é",
            "flag": True,
            "none": None,
            "ratio": 1.5,
            "list": [1, "a", {"k": "v"}],
            "table": {"inner": {"deep": 1}},
        }
        await channel.publish(b"x", routing_key=queue, properties=Properties(headers=headers))
        got = await channel.get(queue, no_ack=True)
        assert got is not None
        assert got.headers == headers
        for unsendable in ({"t": (1, 2)}, {"o": object()}, {"b": b"bytes"}):
            with pytest.raises(TypeError):
                await channel.publish(
                    b"x", routing_key=queue, properties=Properties(headers=unsendable)
                )
        assert not channel.is_closed
        await channel.publish(b"still fine", routing_key=queue)
        assert await ready(channel, queue) == 1
        await connection.close()

    run(body())


def test_deleting_a_queue_cancels_its_consumers_and_tells_their_channel(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        cancelled: asyncio.Queue[str] = asyncio.Queue()
        channel.add_cancel_callback(cancelled.put_nowait)
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await channel.publish(b"held", routing_key=queue)
        inbox = Inbox()
        tag = await channel.consume(queue, inbox)
        held = await inbox.next()
        other = await connection.channel()
        assert await other.queue_delete(queue) == 0  # the held message is not ready
        assert await next_item(cancelled) == tag
        await held.ack()  # settling a delivery of a deleted queue is fine
        assert not channel.is_closed
        await channel.queue_declare(queue)
        assert await ready(channel, queue) == 0
        await connection.close()

    run(body())


def test_a_byte_length_limit_drops_the_oldest_messages(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue, arguments={"x-max-length-bytes": 10})
        await publish_all(channel, queue, [b"aaaa", b"bbbb", b"cccc"])
        bodies = []
        while (got := await channel.get(queue, no_ack=True)) is not None:
            bodies.append(got.body)
        assert bodies == [b"bbbb", b"cccc"]
        await connection.close()

    run(body())


def test_a_delivery_cannot_be_settled_once_its_channel_is_closed(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue = transport.name("q")
        await channel.queue_declare(queue)
        await channel.publish(b"x", routing_key=queue)
        got = await channel.get(queue)
        assert got is not None
        await channel.close()
        with pytest.raises(ChannelClosed):
            await got.ack()
        check = await connection.channel()
        back = await check.get(queue)
        assert back is not None and back.redelivered
        await connection.close()

    run(body())


def test_reject_publish_dlx_nacks_and_dead_letters_the_refused_message(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        channel = await connection.channel()
        queue, dead = transport.name("q"), transport.name("dead")
        await channel.queue_declare(dead)
        await channel.queue_declare(
            queue,
            arguments={
                "x-max-length": 1,
                "x-overflow": "reject-publish-dlx",
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead,
            },
        )
        await channel.publish(b"kept", routing_key=queue)
        with pytest.raises(Nacked):
            await channel.publish(b"refused", routing_key=queue)
        await eventually(lambda: _ready_is(channel, dead, 1), "the refused message dead-letters")
        got = await channel.get(dead, no_ack=True)
        assert got is not None and got.body == b"refused"
        assert got.headers["x-death"][0]["reason"] == "maxlen"
        await connection.close()

    run(body())


def test_consumers_of_one_queue_share_its_messages_each_delivered_once(transport: Kit) -> None:
    async def body() -> None:
        connection = await transport.connect()
        queue = transport.name("q")
        setup = await connection.channel()
        await setup.queue_declare(queue)
        deliveries: asyncio.Queue[tuple[int, Message]] = asyncio.Queue()
        for index in range(2):
            channel = await connection.channel()
            await channel.qos(1)

            async def take(message: Message, index: int = index) -> None:
                await deliveries.put((index, message))

            await channel.consume(queue, take)
        await publish_all(setup, queue, [b"%d" % i for i in range(10)])
        seen: list[bytes] = []
        per_consumer = [0, 0]
        for _ in range(10):
            index, message = await next_item(deliveries)
            seen.append(message.body)
            per_consumer[index] += 1
            await message.ack()
        assert sorted(seen) == sorted(b"%d" % i for i in range(10))
        assert min(per_consumer) >= 1  # both took part
        assert deliveries.empty()
        await connection.close()

    run(body())
