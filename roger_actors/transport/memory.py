"""An in-memory AMQP broker for one process, behind the transport interface.

``memory://name`` connects to the broker ``name`` of this process (created
on first use; ``memory://`` alone is ``default``), so tests can each take a
broker of their own. The broker follows RabbitMQ 3.10's behaviour for the
subset in :mod:`roger_actors.transport.base` (``docs/transport.md`` lists it
and the few timing differences): the default exchange routes by queue name;
direct and fanout exchanges with bindings; ``mandatory`` returns;
publisher confirms and nacks; exclusive, auto-delete and server-named
queues; prefetch; ack, nack and reject with or without requeue; basic.get;
purge; delete; per-message and per-queue TTL with dead-lettering and the
``x-death`` header; ``x-expires``; ``x-max-length`` with ``drop-head`` and
``reject-publish``; single active consumer; quorum queues'
``x-delivery-count`` and ``x-delivery-limit``; direct reply-to; the
broker's ``consumer_timeout``; a broker-side close of every connection
(:meth:`MemoryBroker.close_all_connections`) for fault tests. The queue
state and its rules are in :mod:`roger_actors.transport.memory_state`.

Everything runs on one asyncio event loop, the loop of the connections (a
broker with open connections refuses one from another loop); TTLs and
expiries are timers on it. Nothing is persisted: the broker lives as long as
the process (or until :func:`forget_broker`). Consumer callbacks run as
tasks; an exception in one is logged and otherwise ignored, as with aiormq.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .base import (
    AccessRefused,
    Channel,
    ChannelClosed,
    ChannelError,
    CloseCallback,
    Connection,
    ConnectionLost,
    ConsumerCallback,
    DeclareOk,
    ExchangeType,
    Message,
    Nacked,
    NotFound,
    PreconditionFailed,
    Properties,
    ResourceLocked,
    Unroutable,
)
from .memory_state import (
    EQUIVALENT_ARGS,
    REPLY_PREFIX,
    REPLY_TO,
    Consumer,
    Exchange,
    MemoryBroker,
    QueueState,
    Stored,
    Unacked,
    check_arguments,
    equivalent,
)
from .tables import round_trip

__all__ = [
    "MemoryBroker",
    "MemoryChannel",
    "MemoryConnection",
    "broker",
    "connect_memory",
    "forget_broker",
]

log = logging.getLogger("roger_actors.transport.memory")


_brokers: dict[str, MemoryBroker] = {}


def _broker_name(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"url {url!r} is not a valid memory:// URL: {exc}") from None
    if parts.scheme.lower() != "memory":
        raise ValueError(f"url {url!r} is not a memory:// URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"url {url!r}: a memory:// URL is memory://<name>, nothing after the name")
    return parts.netloc or "default"


def broker(url: str) -> MemoryBroker:
    """The broker of ``url`` (``memory://name``), created when new.
    Raises ValueError naming ``url`` when it is not such a URL."""
    name = _broker_name(url)
    found = _brokers.get(name)
    if found is None:
        found = _brokers[name] = MemoryBroker(name)
    return found


def forget_broker(url: str) -> None:
    """Close the connections of the broker of ``url`` (connection lost) and
    drop it with its queues; the next connect makes a new, empty one."""
    found = _brokers.pop(_broker_name(url), None)
    if found is not None and found._loop is not None and not found._loop.is_closed():
        found.close_all_connections("the broker was removed")


async def connect_memory(url: str) -> MemoryConnection:
    """Connect to the broker of ``url`` (``memory://name``) on the running loop.
    Raises ValueError for a malformed URL and RuntimeError when the broker is
    in use on another event loop."""
    found = broker(url)
    found._attach(asyncio.get_running_loop())
    connection = MemoryConnection(found)
    found.connections.add(connection)
    return connection


class MemoryChannel(Channel):
    """A channel of a :class:`MemoryConnection`."""

    def __init__(self, connection: MemoryConnection, confirms: bool, number: int) -> None:
        #: The channel's number on its connection (1, 2, ...), for messages.
        self.number = number
        self._connection = connection
        self._broker = connection.broker
        self._confirms = confirms
        self._closed = False
        self._close_error: BaseException | None = None
        self._callbacks: list[CloseCallback] = []
        self._cancel_callbacks: list[Callable[[str], None]] = []
        self._tags = itertools.count(1)
        self._consumer_tags = itertools.count(1)
        self._prefetch = 0
        self._unacked: dict[int, Unacked] = {}
        self._consumers: dict[str, Consumer] = {}
        self._reply_address: str | None = None

    # state

    @property
    def is_closed(self) -> bool:
        """True once the channel is closed."""
        return self._closed

    @property
    def publisher_confirms(self) -> bool:
        """True when publishes wait for the broker's confirm."""
        return self._confirms

    def add_close_callback(self, callback: CloseCallback) -> None:
        """See :meth:`~.base.Channel.add_close_callback`."""
        if self._closed:
            callback(self._close_error)
        else:
            self._callbacks.append(callback)

    def add_cancel_callback(self, callback: Callable[[str], None]) -> None:
        """See :meth:`~.base.Channel.add_cancel_callback`."""
        self._cancel_callbacks.append(callback)

    async def close(self) -> None:
        """See :meth:`~.base.Channel.close`."""
        self.shut(None)

    def shut(self, error: BaseException | None) -> None:
        """Close: requeue unacked deliveries, cancel consumers, run callbacks."""
        if self._closed:
            return
        self._closed = True
        self._close_error = error
        for tag in list(self._consumers):
            self._cancel(tag)
        touched: dict[str, QueueState] = {}
        for record in sorted(self._unacked.values(), key=lambda r: r.message.seq):
            if record.timer is not None:
                record.timer.cancel()
            queue = self._broker.queues.get(record.queue)
            if queue is not None:
                queue.requeue(record.message)
                touched[queue.name] = queue
        self._unacked.clear()
        for queue in touched.values():
            queue.dispatch()
        self._connection.channels.discard(self)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _safely(callback, error)

    def _check(self) -> None:
        if self._connection.is_closed:
            raise ConnectionLost("the connection is closed")
        if self._closed:
            raise ChannelClosed(
                f"the channel is closed: {self._close_error}" if self._close_error else "",
            )

    def _fail(self, error: ChannelError) -> ChannelError:
        """Close the channel with a channel error; returns it for raising."""
        self.shut(error)
        return error

    def _queue(self, name: str, *, use: bool = False) -> QueueState:
        queue = self._broker.queues.get(name)
        if queue is None:
            raise self._fail(NotFound(f"NOT_FOUND - no queue '{name}' in vhost '/'"))
        if queue.owner is not None and queue.owner is not self._connection:
            raise self._fail(
                ResourceLocked(
                    f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}'"
                )
            )
        if use:
            queue.touch()
        return queue

    # queues and exchanges

    async def queue_declare(
        self,
        queue: str = "",
        *,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> DeclareOk:
        """See :meth:`~.base.Channel.queue_declare`."""
        self._check()
        if passive:
            found = self._queue(queue)
            if not found.quorum:
                found.touch()
            return DeclareOk(found.name, *found.counts())
        if queue.startswith("amq."):
            raise self._fail(
                AccessRefused(
                    f"ACCESS_REFUSED - queue name '{queue}' contains reserved prefix 'amq.*'"
                )
            )
        try:
            args = check_arguments(arguments or {})
        except PreconditionFailed as exc:
            raise self._fail(exc) from None
        name = queue or "amq.gen-" + secrets.token_urlsafe(16)
        existing = self._broker.queues.get(name)
        if existing is not None:
            self._queue(name)  # locked?
            self._equivalence(existing, durable, auto_delete, args)
            existing.touch()
            return DeclareOk(name, *existing.counts())
        if args.get("x-queue-type") == "quorum":
            for flag, value, text in (
                (durable, False, "non-durable"),
                (exclusive, True, "exclusive"),
                (auto_delete, True, "auto-delete"),
            ):
                if value == flag:
                    raise self._fail(
                        PreconditionFailed(
                            f"PRECONDITION_FAILED - invalid property '{text}' for queue '{name}'"
                        )
                    )
        created = QueueState(
            self._broker, name, durable, auto_delete, self._connection if exclusive else None, args
        )
        self._broker.queues[name] = created
        if exclusive:
            self._connection.exclusive.add(name)
        created.touch()
        return DeclareOk(name, 0, 0)

    def _equivalence(
        self, queue: QueueState, durable: bool, auto_delete: bool, args: dict[str, Any]
    ) -> None:
        problems = []
        if queue.durable != durable:
            problems.append(f"inequivalent arg 'durable' for queue '{queue.name}'")
        if queue.auto_delete != auto_delete:
            problems.append(f"inequivalent arg 'auto_delete' for queue '{queue.name}'")
        for key in EQUIVALENT_ARGS:
            if not equivalent(key, args.get(key), queue.arguments.get(key)):
                problems.append(
                    f"inequivalent arg '{key}' for queue '{queue.name}': received "
                    f"{args.get(key)!r} but current is {queue.arguments.get(key)!r}"
                )
        if problems:
            raise self._fail(PreconditionFailed("PRECONDITION_FAILED - " + problems[0]))

    async def queue_delete(
        self, queue: str, *, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        """See :meth:`~.base.Channel.queue_delete`."""
        self._check()
        if queue not in self._broker.queues:
            return 0
        found = self._queue(queue)
        if if_unused and found.consumers:
            raise self._fail(PreconditionFailed(f"PRECONDITION_FAILED - queue '{queue}' in use"))
        if if_empty and found.ready:
            raise self._fail(PreconditionFailed(f"PRECONDITION_FAILED - queue '{queue}' not empty"))
        count = self._broker.delete_queue(queue)
        self._connection.exclusive.discard(queue)
        return count

    async def queue_purge(self, queue: str) -> int:
        """See :meth:`~.base.Channel.queue_purge`."""
        self._check()
        found = self._queue(queue)
        count = len(found.ready)
        found.ready.clear()
        found.drop_expired()
        return count

    async def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """See :meth:`~.base.Channel.queue_bind` (binding arguments are ignored)."""
        self._check()
        if exchange == "":
            raise self._fail(
                AccessRefused("ACCESS_REFUSED - operation not permitted on the default exchange")
            )
        found = self._exchange(exchange)
        self._queue(queue)
        if (queue, routing_key) not in found.bindings:
            found.bindings.append((queue, routing_key))

    async def queue_unbind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """See :meth:`~.base.Channel.queue_unbind`."""
        self._check()
        found = self._broker.exchanges.get(exchange)
        if found is not None and (queue, routing_key) in found.bindings:
            found.bindings.remove((queue, routing_key))

    def _exchange(self, name: str) -> Exchange:
        found = self._broker.exchanges.get(name)
        if found is None:
            raise self._fail(NotFound(f"NOT_FOUND - no exchange '{name}' in vhost '/'"))
        return found

    async def exchange_declare(
        self,
        exchange: str,
        exchange_type: ExchangeType = "direct",
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """See :meth:`~.base.Channel.exchange_declare` (direct and fanout
        exchanges only: another type raises :class:`~.base.PreconditionFailed`)."""
        self._check()
        if passive:
            self._exchange(exchange)
            return
        if exchange_type not in ("direct", "fanout"):
            raise self._fail(
                PreconditionFailed(
                    f"exchange type {exchange_type!r} is not supported by the memory transport"
                )
            )
        existing = self._broker.exchanges.get(exchange)
        if existing is not None:
            if (existing.type, existing.durable, existing.auto_delete) != (
                exchange_type,
                durable,
                auto_delete,
            ):
                raise self._fail(
                    PreconditionFailed(
                        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{exchange}'"
                    )
                )
            return
        if exchange.startswith("amq.") or exchange == "":
            raise self._fail(
                AccessRefused(f"ACCESS_REFUSED - exchange name '{exchange}' is reserved")
            )
        self._broker.exchanges[exchange] = Exchange(exchange, exchange_type, durable, auto_delete)

    async def exchange_delete(self, exchange: str) -> None:
        """See :meth:`~.base.Channel.exchange_delete`."""
        self._check()
        if exchange.startswith("amq."):
            raise self._fail(AccessRefused(f"ACCESS_REFUSED - exchange '{exchange}' is reserved"))
        self._broker.exchanges.pop(exchange, None)

    # publishing

    async def publish(
        self,
        body: bytes,
        *,
        exchange: str = "",
        routing_key: str = "",
        properties: Properties | None = None,
        mandatory: bool = False,
    ) -> None:
        """See :meth:`~.base.Channel.publish`."""
        self._check()
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        # What an AMQP client can send, with the value types it would receive.
        props = round_trip(properties or Properties(delivery_mode=1), len(body))
        if props.expiration is not None and not (
            props.expiration.isdigit() and props.expiration.isascii()
        ):
            raise self._fail(
                PreconditionFailed(f"PRECONDITION_FAILED - invalid expiration {props.expiration!r}")
            )
        if props.reply_to == REPLY_TO:
            if self._reply_address is None:
                raise self._fail(
                    PreconditionFailed("PRECONDITION_FAILED - fast reply consumer does not exist")
                )
            props = props.evolve(reply_to=self._reply_address)
        if exchange != "":
            self._exchange(exchange)
        routed, refused = self._broker.route(bytes(body), props, exchange, routing_key)
        await asyncio.sleep(0)
        if not routed and mandatory and self._confirms:
            returned = Message(bytes(body), props, 0, False, exchange, routing_key)
            raise Unroutable(returned, "NO_ROUTE")
        if refused and self._confirms:
            raise Nacked(f"the broker refused the publish to {exchange!r}/{routing_key!r}")

    # consuming

    async def qos(self, prefetch_count: int) -> None:
        """See :meth:`~.base.Channel.qos`."""
        if prefetch_count < 0:
            raise ValueError(f"prefetch_count must be >= 0, not {prefetch_count}")
        self._check()
        self._prefetch = prefetch_count

    async def consume(
        self,
        queue: str,
        callback: ConsumerCallback,
        *,
        no_ack: bool = False,
        exclusive: bool = False,
        consumer_tag: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> str:
        """See :meth:`~.base.Channel.consume`."""
        self._check()
        tag = consumer_tag or f"amq.ctag-{secrets.token_urlsafe(12)}"
        if tag in self._consumers:
            raise self._fail(
                PreconditionFailed(f"NOT_ALLOWED - attempt to reuse consumer tag '{tag}'")
            )
        if queue == REPLY_TO:
            if not no_ack:
                raise self._fail(
                    PreconditionFailed("PRECONDITION_FAILED - reply consumer cannot acknowledge")
                )
            if self._reply_address is not None:
                raise self._fail(
                    PreconditionFailed("PRECONDITION_FAILED - reply consumer already set")
                )
            consumer = Consumer(self, REPLY_TO, tag, callback, True, False, 0)
            self._reply_address = REPLY_PREFIX + secrets.token_urlsafe(16)
            self._broker.reply_routes[self._reply_address] = consumer
            self._consumers[tag] = consumer
            return tag
        found = self._queue(queue)
        if (exclusive and found.consumers) or any(c.exclusive for c in found.consumers):
            raise self._fail(AccessRefused(f"ACCESS_REFUSED - queue '{queue}' in exclusive use"))
        consumer = Consumer(self, queue, tag, callback, no_ack, exclusive, self._prefetch)
        found.consumers.append(consumer)
        found.had_consumer = True
        found.touch()
        self._consumers[tag] = consumer
        found.dispatch()
        return tag

    async def cancel(self, consumer_tag: str) -> None:
        """See :meth:`~.base.Channel.cancel`."""
        self._check()
        self._cancel(consumer_tag)

    def _cancel(self, tag: str) -> None:
        consumer = self._consumers.pop(tag, None)
        if consumer is None:
            return
        if consumer.queue == REPLY_TO:
            if self._reply_address is not None:
                self._broker.reply_routes.pop(self._reply_address, None)
            self._reply_address = None
            return
        queue = self._broker.queues.get(consumer.queue)
        if queue is None or consumer not in queue.consumers:
            return
        queue.consumers.remove(consumer)
        if not queue.consumers and queue.auto_delete and queue.had_consumer:
            self._broker.delete_queue(queue.name)
            return
        queue.touch()
        queue.dispatch()

    def detach_consumers(self) -> None:
        """Take this channel's consumers off their queues, delivering nothing."""
        for consumer in self._consumers.values():
            queue = self._broker.queues.get(consumer.queue)
            if queue is not None and consumer in queue.consumers:
                queue.consumers.remove(consumer)
        if self._reply_address is not None:
            self._broker.reply_routes.pop(self._reply_address, None)
            self._reply_address = None
        self._consumers.clear()

    def forget_consumer(self, tag: str) -> None:
        """The broker cancelled the consumer ``tag`` (its queue was deleted)."""
        if self._consumers.pop(tag, None) is None or self._closed:
            return
        for callback in list(self._cancel_callbacks):
            try:
                callback(tag)
            except Exception:
                log.exception("a consumer-cancel callback failed")

    def deliver(self, consumer: Consumer, queue: QueueState | None, message: Stored) -> None:
        """Hand ``message`` to ``consumer`` (a task on the loop)."""
        tag = next(self._tags)
        if not consumer.no_ack and queue is not None:
            self._unacked[tag] = self._track(tag, Unacked(message, queue.name, consumer))
            consumer.unacked += 1
        self._connection.spawn(consumer.callback(self._message(message, tag, queue, consumer.tag)))

    def _message(
        self, stored: Stored, tag: int, queue: QueueState | None, consumer_tag: str | None
    ) -> Message:
        props = stored.properties
        if queue is not None and queue.quorum:
            props = props.evolve(
                headers={**(props.headers or {}), "x-delivery-count": stored.returns}
            )
        return Message(
            body=stored.body,
            properties=props,
            delivery_tag=tag,
            redelivered=stored.redelivered,
            exchange=stored.exchange,
            routing_key=stored.routing_key,
            channel=self,
            consumer_tag=consumer_tag,
            message_count=len(queue.ready) if consumer_tag is None and queue is not None else None,
        )

    async def get(self, queue: str, *, no_ack: bool = False) -> Message | None:
        """See :meth:`~.base.Channel.get`."""
        self._check()
        found = self._queue(queue, use=True)
        found.drop_expired()
        if not found.ready:
            return None
        stored = found.ready.pop(0)
        tag = next(self._tags)
        if not no_ack:
            self._unacked[tag] = self._track(tag, Unacked(stored, found.name, None))
        message = self._message(stored, tag, found, None)
        found.drop_expired()
        return message

    def _track(self, tag: int, record: Unacked) -> Unacked:
        timeout = self._broker.consumer_timeout
        if timeout is not None:
            record.timer = self._broker.loop.call_later(timeout, self._timed_out, tag, timeout)
        return record

    def _timed_out(self, tag: int, timeout: float) -> None:
        if tag in self._unacked and not self._closed:
            self.shut(
                PreconditionFailed(
                    f"PRECONDITION_FAILED - delivery acknowledgement on channel {self.number} "
                    f"timed out. Timeout value used: {int(timeout * 1000)} ms."
                )
            )

    def _settle(self, delivery_tag: int, multiple: bool) -> list[Unacked]:
        if multiple:
            tags = [t for t in self._unacked if delivery_tag == 0 or t <= delivery_tag]
            if delivery_tag and delivery_tag not in self._unacked:
                tags = []
        else:
            tags = [delivery_tag] if delivery_tag in self._unacked else []
        if not tags:
            raise self._fail(
                PreconditionFailed(f"PRECONDITION_FAILED - unknown delivery tag {delivery_tag}")
            )
        records = [self._unacked.pop(t) for t in sorted(tags)]
        for record in records:
            if record.timer is not None:
                record.timer.cancel()
            if record.consumer is not None:
                record.consumer.unacked -= 1
        return records

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        """See :meth:`~.base.Channel.ack`."""
        self._check()
        records = self._settle(delivery_tag, multiple)
        self._redispatch(records)

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None:
        """See :meth:`~.base.Channel.nack`."""
        self._check()
        records = self._settle(delivery_tag, multiple)
        for record in records:
            queue = self._broker.queues.get(record.queue)
            if queue is None:
                continue
            if requeue:
                queue.requeue(record.message)
            else:
                queue.dead_letter(record.message, "rejected")
        self._redispatch(records)

    def _redispatch(self, records: list[Unacked]) -> None:
        for name in dict.fromkeys(r.queue for r in records):
            queue = self._broker.queues.get(name)
            if queue is not None:
                queue.dispatch()


class MemoryConnection(Connection):
    """A connection to a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.channels: set[MemoryChannel] = set()
        self.exclusive: set[str] = set()
        self._closed = False
        self._error: BaseException | None = None
        self._callbacks: list[CloseCallback] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count(1)

    @property
    def is_closed(self) -> bool:
        """True once the connection is closed."""
        return self._closed

    def add_close_callback(self, callback: CloseCallback) -> None:
        """See :meth:`~.base.Connection.add_close_callback`."""
        if self._closed:
            callback(self._error)
        else:
            self._callbacks.append(callback)

    async def channel(self, *, publisher_confirms: bool = True) -> MemoryChannel:
        """See :meth:`~.base.Connection.channel`."""
        if self._closed:
            raise ConnectionLost(f"the connection is closed: {self._error or 'by its owner'}")
        channel = MemoryChannel(self, publisher_confirms, next(self._numbers))
        self.channels.add(channel)
        return channel

    async def close(self) -> None:
        """See :meth:`~.base.Connection.close`."""
        self.lose(None)

    def lose(self, error: ConnectionLost | None) -> None:
        """Close the connection: by its owner (``error`` None) or by the broker
        (the connection-lost event, ``error`` passed to the callbacks)."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        for channel in list(self.channels):
            channel.shut(error if error is not None else None)
        for name in list(self.exclusive):
            queue = self.broker.queues.get(name)
            if queue is not None and queue.owner is self:
                self.broker.delete_queue(name)
        self.exclusive.clear()
        self.broker.connections.discard(self)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _safely(callback, error)

    def spawn(self, coro: Any) -> None:
        """Run a consumer callback as a task; log what it raises."""
        task: asyncio.Task[None] = self.broker.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a consumer callback failed", exc_info=task.exception())


def _safely(callback: Callable[[BaseException | None], None], error: BaseException | None) -> None:
    try:
        callback(error)
    except Exception:
        log.exception("a close callback failed")
