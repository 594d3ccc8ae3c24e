"""The transport interface: an AMQP 0-9-1 subset that does not name a client library.

Roger talks to its broker through a :class:`Connection` and its
:class:`Channel` objects. Two implementations exist: RabbitMQ through aiormq
(:mod:`roger_actors.transport.aiormq_transport`) and an in-memory broker for
one process (:mod:`roger_actors.transport.memory`). :func:`connect` picks one
by the URL's scheme. ``docs/transport.md`` lists the operations and queue
arguments in scope and the RabbitMQ behaviours both implementations share.

The rules both follow, as RabbitMQ does:

- a channel error (:class:`ChannelError` and its subclasses) closes the
  channel it happened on; the connection and its other channels stay usable;
- every operation on a closed channel raises :class:`ChannelClosed`, on a
  closed connection :class:`ConnectionLost`;
- closing a channel or a connection returns its unacked deliveries to their
  queues (flagged ``redelivered``) and cancels its consumers;
- consumer callbacks run as tasks on the event loop of the connection.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "AccessRefused",
    "Channel",
    "ChannelClosed",
    "ChannelError",
    "CloseCallback",
    "Connection",
    "ConnectionLost",
    "ConsumerCallback",
    "DeclareOk",
    "ExchangeType",
    "Message",
    "Nacked",
    "NotFound",
    "Outgoing",
    "PreconditionFailed",
    "Properties",
    "ResourceLocked",
    "TransportError",
    "Unroutable",
    "connect",
]

ExchangeType = Literal["direct", "fanout", "topic", "headers"]


# --------------------------------------------------------------------------- errors


class TransportError(Exception):
    """Base of every error a transport raises (callers catch these, never a
    client library's own)."""


class ConnectionLost(TransportError, ConnectionError):
    """The connection is closed: the broker went away, closed it (for example
    ``rabbitmqctl close_all_connections``), the network failed, or it was
    closed by its owner. Also raised when no connection could be made."""


class ChannelClosed(TransportError):
    """The channel is closed (by its owner, by a channel error, or because its
    connection closed). ``reply_code`` and ``reply_text`` are the broker's
    when it closed the channel (0 and "" otherwise)."""

    def __init__(self, reply_text: str = "", reply_code: int = 0) -> None:
        super().__init__(reply_text or type(self).__name__)
        self.reply_code = reply_code
        self.reply_text = reply_text


class ChannelError(ChannelClosed):
    """The broker refused an operation; the channel it ran on is now closed."""

    code = 0

    def __init__(self, reply_text: str = "", reply_code: int | None = None) -> None:
        super().__init__(reply_text, self.code if reply_code is None else reply_code)


class AccessRefused(ChannelError):
    """ACCESS_REFUSED (403): e.g. declaring a queue named ``amq.*``."""

    code = 403


class NotFound(ChannelError):
    """NOT_FOUND (404): the queue or exchange does not exist (a passive
    declare, a bind, a consume, a ``basic.get``, a purge of a missing queue,
    a publish to a missing exchange)."""

    code = 404


class ResourceLocked(ChannelError):
    """RESOURCE_LOCKED (405): the queue is exclusive to another connection."""

    code = 405


class PreconditionFailed(ChannelError):
    """PRECONDITION_FAILED (406): a redeclare with other properties or
    arguments, an invalid argument, an unknown delivery tag, ..."""

    code = 406


class Unroutable(TransportError):
    """A ``mandatory`` publish reached no queue and the broker returned it.
    ``message`` is the returned message (its ``exchange`` and
    ``routing_key`` as published)."""

    def __init__(self, message: Message, reply_text: str = "NO_ROUTE") -> None:
        super().__init__(
            f"{reply_text}: exchange {message.exchange!r}, routing key {message.routing_key!r}"
        )
        self.message = message
        self.reply_text = reply_text


class Nacked(TransportError):
    """The broker refused a confirmed publish (``basic.nack``), e.g. a queue
    at its ``x-max-length`` with ``x-overflow: reject-publish``."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Properties:
    """The AMQP basic properties of a message, by their AMQP names (all optional).

    ``expiration`` is the per-message TTL in milliseconds, as a decimal
    string (AMQP's encoding); ``delivery_mode`` 2 is persistent, 1 transient.
    """

    content_type: str | None = None
    content_encoding: str | None = None
    headers: Mapping[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None

    def evolve(self, **changes: Any) -> Properties:
        """A copy with ``changes`` applied (unknown names raise TypeError)."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message of :meth:`Channel.publish_many`: where it goes (the
    routing key on the call's exchange), its body and its properties."""

    routing_key: str
    body: bytes
    properties: Properties | None = None


@dataclass(frozen=True)
class DeclareOk:
    """The answer to a queue declare: the queue's name (the server's name for
    a server-named queue) and its counts of ready messages and consumers."""

    queue: str
    message_count: int
    consumer_count: int


@dataclass(frozen=True)
class Message:
    """A message delivered by a consumer or fetched by :meth:`Channel.get`.

    ``delivery_tag`` names it on ``channel`` (for :meth:`Channel.ack` and
    friends; it is meaningless on any other channel). ``redelivered`` is True
    when the message was delivered before and returned to the queue.
    ``message_count`` is the number of messages left in the queue after a
    ``basic.get`` (None for consumer deliveries).
    """

    body: bytes
    properties: Properties
    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    channel: Channel | None = field(default=None, compare=False, repr=False)
    consumer_tag: str | None = None
    message_count: int | None = None

    @property
    def headers(self) -> dict[str, Any]:
        """The message's headers (a new dict; empty when it has none)."""
        return dict(self.properties.headers or {})

    async def ack(self) -> None:
        """Ack this message on the channel it came from (see :meth:`Channel.ack`)."""
        await self._channel().ack(self.delivery_tag)

    async def nack(self, requeue: bool = True) -> None:
        """Nack this message on the channel it came from (see :meth:`Channel.nack`)."""
        await self._channel().nack(self.delivery_tag, requeue=requeue)

    def _channel(self) -> Channel:
        if self.channel is None:
            raise ChannelClosed("the message has no channel to settle it on")
        return self.channel


#: A consumer: called (as a task) with each delivery.
ConsumerCallback = Callable[[Message], Awaitable[None]]
#: Called once when a channel or connection closes: None when its owner
#: closed it, else the error that closed it.
CloseCallback = Callable[[BaseException | None], None]


# --------------------------------------------------------------------------- interface


class Channel(abc.ABC):
    """One AMQP channel. Not for concurrent use from several event loops.

    Every method raises :class:`ChannelClosed` when the channel is closed,
    :class:`ConnectionLost` when its connection is, and the
    :class:`ChannelError` the broker answers (which closes the channel).
    """

    @property
    @abc.abstractmethod
    def is_closed(self) -> bool:
        """True once the channel is closed (by anyone)."""

    @property
    @abc.abstractmethod
    def publisher_confirms(self) -> bool:
        """True when publishes on this channel wait for the broker's confirm."""

    @abc.abstractmethod
    def add_close_callback(self, callback: CloseCallback) -> None:
        """Call ``callback`` once when the channel closes (at once, with the
        closing error or None, if it is already closed)."""

    @abc.abstractmethod
    def add_cancel_callback(self, callback: Callable[[str], None]) -> None:
        """Call ``callback`` with the consumer tag each time the broker cancels
        a consumer of this channel (its queue was deleted or expired); the
        consumer gets no more deliveries and its unacked ones may still be
        settled."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the channel; its unacked deliveries go back to their queues and
        its consumers are cancelled. Closing a closed channel does nothing."""

    # queues and exchanges

    @abc.abstractmethod
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
        """Declare ``queue`` (``""``: a new server-named queue, ``amq.gen-...``).

        ``passive`` only checks that it exists (:class:`NotFound` if not) and
        returns its counts. A redeclare with other properties or arguments
        raises :class:`PreconditionFailed`; a queue exclusive to another
        connection :class:`ResourceLocked`; a name starting with ``amq.``
        :class:`AccessRefused`.
        """

    @abc.abstractmethod
    async def queue_delete(
        self, queue: str, *, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        """Delete ``queue`` with its messages; returns how many it held. A
        missing queue is not an error (returns 0). Its consumers are cancelled."""

    @abc.abstractmethod
    async def queue_purge(self, queue: str) -> int:
        """Drop the ready messages of ``queue`` (not its unacked deliveries);
        returns how many. :class:`NotFound` if it does not exist."""

    @abc.abstractmethod
    async def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """Bind ``queue`` to ``exchange``; :class:`NotFound` if either is missing."""

    @abc.abstractmethod
    async def queue_unbind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """Remove a binding (a missing binding is not an error)."""

    @abc.abstractmethod
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
        """Declare ``exchange``; a redeclare of another type or durability raises
        :class:`PreconditionFailed`, a passive one of a missing exchange
        :class:`NotFound`."""

    @abc.abstractmethod
    async def exchange_delete(self, exchange: str) -> None:
        """Delete ``exchange`` and its bindings (a missing one is not an error)."""

    # publishing

    @abc.abstractmethod
    async def publish(
        self,
        body: bytes,
        *,
        exchange: str = "",
        routing_key: str = "",
        properties: Properties | None = None,
        mandatory: bool = False,
    ) -> None:
        """Publish ``body``. On a channel with publisher confirms, returns once
        the broker confirmed it and raises :class:`Unroutable` when it was
        ``mandatory`` and reached no queue, :class:`Nacked` when the broker
        refused it. Without confirms it returns once sent, and a returned
        message is dropped (so use confirms with ``mandatory``). A missing
        ``exchange`` raises :class:`NotFound` (closing the channel; without
        confirms, possibly on a later operation)."""

    async def publish_many(
        self, messages: Sequence[Outgoing], *, exchange: str = "", mandatory: bool = False
    ) -> list[TransportError | None]:
        """Publish ``messages`` to ``exchange``, in the order given, without
        waiting for one's confirm before sending the next; return each one's
        outcome, in the same order: ``None`` once it was confirmed (or, without
        confirms, sent), else the error :meth:`publish` would have raised for
        it (:class:`Unroutable`, :class:`Nacked`; :class:`ChannelClosed` or
        :class:`ConnectionLost` for each one not confirmed when the channel or
        connection went). Only a cancellation, or an error that is not a
        :class:`TransportError` (a bug), raises: messages already sent may then
        be on the broker or not.

        This default runs one :meth:`publish` per message at once, each sending
        before it first waits (so they go out in order); an implementation may
        send them with less work per message."""

        async def one(message: Outgoing) -> TransportError | None:
            try:
                await self.publish(
                    message.body,
                    exchange=exchange,
                    routing_key=message.routing_key,
                    properties=message.properties,
                    mandatory=mandatory,
                )
            except TransportError as exc:
                return exc
            return None

        return list(await asyncio.gather(*(one(m) for m in messages)))

    # consuming

    @abc.abstractmethod
    async def qos(self, prefetch_count: int) -> None:
        """Limit each consumer started after this on the channel to
        ``prefetch_count`` unacked deliveries (0: no limit)."""

    @abc.abstractmethod
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
        """Start a consumer on ``queue``; returns its consumer tag. ``callback``
        runs as a task for each delivery. ``queue`` may be
        ``amq.rabbitmq.reply-to`` (direct reply-to, ``no_ack`` only): a publish
        on this channel with that ``reply_to`` gets a reply address routed to
        this consumer."""

    @abc.abstractmethod
    async def cancel(self, consumer_tag: str) -> None:
        """Stop the consumer ``consumer_tag``; its unacked deliveries stay
        unacked (ack or nack them as usual). An unknown tag is ignored."""

    @abc.abstractmethod
    async def get(self, queue: str, *, no_ack: bool = False) -> Message | None:
        """``basic.get``: the next ready message of ``queue``, or None when it
        has none. :class:`NotFound` if it does not exist."""

    @abc.abstractmethod
    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        """Ack a delivery of this channel (``multiple``: all up to it). An
        unknown tag raises :class:`PreconditionFailed` (closing the channel;
        on RabbitMQ possibly on a later operation, acks are not answered)."""

    @abc.abstractmethod
    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None:
        """Nack a delivery: back to its queue (``redelivered``) when ``requeue``,
        else dead-lettered (reason ``rejected``) or dropped."""

    async def reject(self, delivery_tag: int, *, requeue: bool = True) -> None:
        """Reject one delivery (as :meth:`nack` of one tag)."""
        await self.nack(delivery_tag, requeue=requeue)


class Connection(abc.ABC):
    """One connection to a broker. Use it from the event loop it was made on."""

    @property
    @abc.abstractmethod
    def is_closed(self) -> bool:
        """True once the connection is closed (by anyone)."""

    @property
    def frame_max(self) -> int:
        """The largest frame the connection may carry, as negotiated with the
        broker, in bytes (0: no limit known, as on the in-memory broker)."""
        return 0

    @abc.abstractmethod
    def add_close_callback(self, callback: CloseCallback) -> None:
        """Call ``callback`` once when the connection closes: with None when
        :meth:`close` closed it, else with a :class:`ConnectionLost` (the
        connection-lost event). At once if it is already closed."""

    @abc.abstractmethod
    async def channel(self, *, publisher_confirms: bool = True) -> Channel:
        """Open a channel (with publisher confirms unless told otherwise)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection and its channels (their unacked deliveries go
        back to their queues, their exclusive queues are deleted). Closing a
        closed connection does nothing."""


async def connect(url: str, *, timeout: float | None = 10.0) -> Connection:
    """Open a connection to the broker at ``url``.

    ``amqp://`` and ``amqps://`` connect to RabbitMQ (through aiormq);
    ``memory://name`` to the in-memory broker ``name`` of this process
    (``memory://`` alone: the one named ``default``). ``timeout`` bounds the
    connection attempt (None: no bound). Raises :class:`ConnectionLost` when
    the broker cannot be reached (its message names the address, never a
    password) and :class:`ValueError` naming the URL's scheme when it is
    none of these.
    """
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ValueError(f"url is not a valid URL: {exc}") from None
    if scheme in ("amqp", "amqps"):
        from .aiormq_transport import connect_aiormq

        return await connect_aiormq(url, timeout=timeout)
    if scheme == "memory":
        from .memory import connect_memory

        return await connect_memory(url)
    raise ValueError(f"url has the scheme {scheme!r}; expected 'amqp', 'amqps' or 'memory'")
