"""The transport interface on RabbitMQ, through aiormq: a thin adapter.

Each call maps to one aiormq call; aiormq's and pamqp's objects are turned
into the interface's values (:class:`~.base.Message`,
:class:`~.base.DeclareOk`, :class:`~.base.Properties`) and their exceptions
into the interface's (:func:`translate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, cast

import aiormq
import aiormq.exceptions
from aiormq.abc import AbstractChannel, AbstractConnection, ChannelFrame, DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

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
    Outgoing,
    PreconditionFailed,
    Properties,
    ResourceLocked,
    TransportError,
    Unroutable,
)
from .tables import from_spec as _from_spec
from .tables import to_spec as _to_spec
from .urls import address_of

__all__ = ["AiormqChannel", "AiormqConnection", "connect_aiormq", "translate"]

_CHANNEL_ERRORS: tuple[tuple[type[aiormq.exceptions.ChannelClosed], type[ChannelError]], ...] = (
    (aiormq.exceptions.ChannelNotFoundEntity, NotFound),
    (aiormq.exceptions.ChannelLockedResource, ResourceLocked),
    (aiormq.exceptions.ChannelPreconditionFailed, PreconditionFailed),
    (aiormq.exceptions.ChannelAccessRefused, AccessRefused),
)


def _reply(exc: BaseException) -> tuple[int, str]:
    """(reply code, reply text) of an aiormq channel/connection error."""
    frame = exc.args[0] if exc.args else None
    code = getattr(frame, "reply_code", None)
    text = getattr(frame, "reply_text", None)
    if isinstance(code, int) and isinstance(text, str):
        return code, text
    return 0, str(exc)


def translate(exc: BaseException) -> BaseException:
    """The interface's exception for an aiormq one (``exc`` itself when it is
    neither aiormq's nor a connection error: a bug, a cancellation)."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, aiormq.exceptions.PublishError) and exc.message is not None:
        return Unroutable(_message(exc.message, None), str(exc.args[0] if exc.args else "NO_ROUTE"))
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return Nacked(str(exc))
    if isinstance(exc, aiormq.exceptions.AMQPConnectionError | ConnectionError):
        return ConnectionLost(f"{type(exc).__name__}: {exc}")
    for theirs, ours in _CHANNEL_ERRORS:
        if isinstance(exc, theirs):
            code, text = _reply(exc)
            return ours(text, code or None)
    if isinstance(exc, aiormq.exceptions.AMQPChannelError):
        code, text = _reply(exc)
        return ChannelClosed(text, code)
    if isinstance(exc, aiormq.exceptions.ChannelInvalidStateError):
        return ChannelClosed(str(exc))
    if isinstance(exc, aiormq.exceptions.AMQPError):
        return TransportError(f"{type(exc).__name__}: {exc}")
    return exc


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def _message(raw: DeliveredMessage, channel: Channel | None) -> Message:
    delivery = raw.delivery
    count = delivery.message_count if isinstance(delivery, spec.Basic.GetOk) else None
    return Message(
        body=bytes(raw.body),
        properties=_from_spec(raw.header.properties),
        delivery_tag=int(getattr(delivery, "delivery_tag", 0) or 0),
        redelivered=bool(getattr(delivery, "redelivered", False)),
        exchange=str(getattr(delivery, "exchange", "") or ""),
        routing_key=str(getattr(delivery, "routing_key", "") or ""),
        channel=channel,
        consumer_tag=getattr(delivery, "consumer_tag", None),
        message_count=None if count is None else int(count),
    )


def _watch(
    future: asyncio.Future[Any], callback: CloseCallback, on_purpose: Callable[[], bool]
) -> None:
    """Call ``callback`` when aiormq's ``closing`` future is done."""

    def done(fut: asyncio.Future[Any]) -> None:
        error: BaseException | None = None
        if not on_purpose():
            raw = None if fut.cancelled() else fut.exception()
            error = translate(raw) if raw is not None else ConnectionLost("closed by the broker")
        callback(error)

    future.add_done_callback(done)


class AiormqChannel(Channel):
    """A :class:`~.base.Channel` over an aiormq channel (``raw``)."""

    def __init__(self, raw: AbstractChannel, connection: AiormqConnection) -> None:
        self.raw = raw
        self._connection = connection
        self._closing_on_purpose = False

    @property
    def is_closed(self) -> bool:
        """True once the channel is closed."""
        return bool(self.raw.is_closed)

    @property
    def publisher_confirms(self) -> bool:
        """True when publishes wait for the broker's confirm."""
        return bool(getattr(self.raw, "publisher_confirms", False))

    def add_close_callback(self, callback: CloseCallback) -> None:
        """See :meth:`~.base.Channel.add_close_callback`; a channel closed by
        its connection's loss reports :class:`~.base.ConnectionLost`."""

        def on_close(error: BaseException | None) -> None:
            if error is not None and self._connection.is_closed:
                error = ConnectionLost(str(error))
            callback(error)

        _watch(
            self.raw.closing,
            on_close,
            lambda: self._closing_on_purpose or self._connection.closing_on_purpose,
        )

    def add_cancel_callback(self, callback: Callable[[str], None]) -> None:
        """See :meth:`~.base.Channel.add_cancel_callback`."""

        def on_cancel(frame: Any) -> None:
            callback(str(getattr(frame, "consumer_tag", "") or ""))

        self.raw.on_consumer_cancel_callbacks.add(on_cancel)

    async def close(self) -> None:
        """See :meth:`~.base.Channel.close`."""
        self._closing_on_purpose = True
        if not self.raw.is_closed:
            with contextlib.suppress(Exception):
                await self.raw.close()

    def _check(self) -> None:
        if self._connection.is_closed:
            raise ConnectionLost("the connection is closed")
        if self.raw.is_closed:
            raise ChannelClosed("the channel is closed")

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
        async with _translated():
            ok = await self.raw.queue_declare(
                queue,
                passive=passive,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=dict(arguments) if arguments is not None else None,
            )
        return DeclareOk(str(ok.queue), int(ok.message_count or 0), int(ok.consumer_count or 0))

    async def queue_delete(
        self, queue: str, *, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        """See :meth:`~.base.Channel.queue_delete`."""
        self._check()
        async with _translated():
            ok = await self.raw.queue_delete(queue, if_unused=if_unused, if_empty=if_empty)
        return int(ok.message_count or 0)

    async def queue_purge(self, queue: str) -> int:
        """See :meth:`~.base.Channel.queue_purge`."""
        self._check()
        async with _translated():
            ok = await self.raw.queue_purge(queue)
        return int(ok.message_count or 0)

    async def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """See :meth:`~.base.Channel.queue_bind`."""
        self._check()
        async with _translated():
            await self.raw.queue_bind(
                queue, exchange, routing_key=routing_key, arguments=_args(arguments)
            )

    async def queue_unbind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """See :meth:`~.base.Channel.queue_unbind`."""
        self._check()
        async with _translated():
            await self.raw.queue_unbind(
                queue, exchange, routing_key=routing_key, arguments=_args(arguments)
            )

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
        """See :meth:`~.base.Channel.exchange_declare`."""
        self._check()
        async with _translated():
            await self.raw.exchange_declare(
                exchange,
                exchange_type=exchange_type,
                passive=passive,
                durable=durable,
                auto_delete=auto_delete,
                arguments=_args(arguments),
            )

    async def exchange_delete(self, exchange: str) -> None:
        """See :meth:`~.base.Channel.exchange_delete`."""
        self._check()
        async with _translated():
            await self.raw.exchange_delete(exchange)

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
        async with _translated():
            # With confirms, the broker's confirm is what is waited for: not
            # also the frames' write, which aiormq waits for holding the
            # channel's lock, so that publishes in flight at once (say
            # enqueue_many's) would go out one per loop round.
            confirm = await cast(aiormq.Channel, self.raw).basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=_to_spec(properties),
                mandatory=mandatory,
                wait=not self.publisher_confirms,
            )
        if self.publisher_confirms and not isinstance(confirm, spec.Basic.Ack):
            raise _not_confirmed(exchange, routing_key, confirm)

    async def publish_many(
        self, messages: Sequence[Outgoing], *, exchange: str = "", mandatory: bool = False
    ) -> list[TransportError | None]:
        """See :meth:`~.base.Channel.publish_many`. On a channel with confirms,
        every message's frames go to the connection's writer in one piece,
        under the channel's lock, each with its confirm registered where
        aiormq's reader settles it (its delivery tag, and its message id for a
        return), so a batch costs one write instead of a task, a lock and a
        write per message. Without confirms, or on an aiormq whose channel
        keeps that state elsewhere, it is the interface's default. A routing
        key over 255 bytes raises ValueError before anything is sent."""
        raw = cast(aiormq.Channel, self.raw)
        if not messages:
            return []
        for message in messages:
            if len(message.routing_key.encode()) > 255:
                raise ValueError(f"routing key over 255 bytes: {message.routing_key[:64]!r}...")
        try:
            self._check()
        except TransportError as exc:
            return [exc] * len(messages)
        if not self.publisher_confirms or not _pipelined(raw):
            return await super().publish_many(messages, exchange=exchange, mandatory=mandatory)
        pending: list[tuple[asyncio.Future[Any], str, int]] = []
        # aiormq rejects the futures of its channel's store when the channel
        # or its connection closes; the confirms are plain futures, and this
        # one future of the store stands for them all.
        closed = raw.create_future()
        try:
            try:
                # aiormq refuses the lock of a closed channel (6.8 at once,
                # 7.x also when it closed while this waited for the lock)
                async with raw.lock:
                    first = raw.delivery_tag
                    sent = False
                    try:
                        frames = self._frames(messages, exchange, mandatory, pending)
                        await raw.write_queue.put(
                            ChannelFrame.marshall(channel_number=raw.number, frames=frames)
                        )
                        sent = True
                    finally:
                        if not sent:
                            # The broker saw none of them: give their tags back.
                            raw.delivery_tag = first
                            for future, _, tag in pending:
                                raw.confirmations.pop(tag, None)
                                future.cancel()
            except aiormq.exceptions.ChannelInvalidStateError:
                return [ChannelClosed("the channel is closed")] * len(messages)
            outcomes = await _confirms([future for future, _, _ in pending], closed)
        finally:
            closed.cancel()
            for _, message_id, tag in pending:
                if raw.message_id_delivery_tag.get(message_id) == tag:
                    del raw.message_id_delivery_tag[message_id]
        return [_outcome(o, exchange, m) for o, m in zip(outcomes, messages, strict=True)]

    def _frames(
        self,
        messages: Sequence[Outgoing],
        exchange: str,
        mandatory: bool,
        pending: list[tuple[asyncio.Future[Any], str, int]],
    ) -> list[Any]:
        """The frames of ``messages``, each with its delivery tag taken and its
        confirm registered (appended to ``pending``). Holds the channel's lock."""
        raw = cast(aiormq.Channel, self.raw)
        frames: list[Any] = []
        methods: dict[str, spec.Basic.Publish] = {}
        for message in messages:
            method = methods.get(message.routing_key)
            if method is None:
                method = methods[message.routing_key] = spec.Basic.Publish(
                    exchange=exchange, routing_key=message.routing_key, mandatory=mandatory
                )
            props = _to_spec(message.properties)
            if not props.message_id:
                props.message_id = uuid.uuid4().hex
            raw.delivery_tag += 1
            tag = raw.delivery_tag
            future = raw.loop.create_future()
            raw.confirmations[tag] = future
            raw.message_id_delivery_tag[props.message_id] = tag
            pending.append((future, props.message_id, tag))
            frames.append(method)
            frames.append(ContentHeader(properties=props, body_size=len(message.body)))
            frames.extend(raw._split_body(message.body))
        return frames

    async def qos(self, prefetch_count: int) -> None:
        """See :meth:`~.base.Channel.qos`."""
        if prefetch_count < 0:
            raise ValueError(f"prefetch_count must be >= 0, not {prefetch_count}")
        self._check()
        async with _translated():
            await self.raw.basic_qos(prefetch_count=prefetch_count)

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

        async def on_message(raw: DeliveredMessage) -> None:
            await callback(_message(raw, self))

        async with _translated():
            ok = await self.raw.basic_consume(
                queue,
                on_message,
                no_ack=no_ack,
                exclusive=exclusive,
                consumer_tag=consumer_tag,
                arguments=_args(arguments),
            )
        return str(ok.consumer_tag)

    async def cancel(self, consumer_tag: str) -> None:
        """See :meth:`~.base.Channel.cancel`."""
        self._check()
        async with _translated():
            await self.raw.basic_cancel(consumer_tag)

    async def get(self, queue: str, *, no_ack: bool = False) -> Message | None:
        """See :meth:`~.base.Channel.get`."""
        self._check()
        async with _translated():
            raw = await self.raw.basic_get(queue, no_ack=no_ack)
        if isinstance(raw.delivery, spec.Basic.GetEmpty):
            return None
        return _message(raw, self)

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        """See :meth:`~.base.Channel.ack`."""
        self._check()
        try:  # the hot path: no context manager
            await self.raw.basic_ack(delivery_tag, multiple=multiple)
        except Exception as exc:
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def nack(
        self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True
    ) -> None:
        """See :meth:`~.base.Channel.nack`."""
        self._check()
        try:
            await self.raw.basic_nack(delivery_tag, multiple=multiple, requeue=requeue)
        except Exception as exc:
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def reject(self, delivery_tag: int, *, requeue: bool = True) -> None:
        """See :meth:`~.base.Channel.reject`."""
        self._check()
        async with _translated():
            await self.raw.basic_reject(delivery_tag, requeue=requeue)


def _pipelined(raw: Any) -> bool:
    """True when the (open) aiormq channel ``raw`` keeps its publisher state
    in :data:`_PIPELINED`."""
    try:
        return all(hasattr(raw, name) for name in _PIPELINED)
    except Exception:  # a property that refuses (aiormq 6.8's lock, when closed)
        return False


#: The aiormq channel state :meth:`AiormqChannel.publish_many` publishes
#: through (the same from aiormq 6.8 to 7.x).
_PIPELINED = (
    "lock",
    "delivery_tag",
    "confirmations",
    "message_id_delivery_tag",
    "write_queue",
    "number",
    "create_future",
    "_split_body",
)


async def _confirms(futures: list[asyncio.Future[Any]], closed: asyncio.Future[Any]) -> list[Any]:
    """Each of ``futures``' result or exception, once all are done; when
    ``closed`` fails first (the channel or connection went), the ones still
    pending take its exception."""
    together = asyncio.gather(*futures, return_exceptions=True)
    try:
        await asyncio.wait((together, closed), return_when=asyncio.FIRST_COMPLETED)
        if not together.done():
            raw = closed.exception() if not closed.cancelled() else None
            error = translate(raw) if raw is not None else None
            if not isinstance(error, TransportError):
                # aiormq rejects with a bare Exception when closed without a reason
                error = ConnectionLost(f"the channel closed: {raw!r}")
            for future in futures:
                if not future.done():
                    future.set_exception(error)
        return await together
    finally:
        together.cancel()


def _outcome(outcome: Any, exchange: str, message: Outgoing) -> TransportError | None:
    """The interface's outcome of one pipelined publish's confirm future."""
    if isinstance(outcome, asyncio.CancelledError):
        # aiormq cancels what is pending when the channel closes on purpose.
        return ChannelClosed("the channel closed before the confirm")
    if isinstance(outcome, BaseException):
        mapped = translate(outcome)
        if isinstance(mapped, TransportError):
            return mapped
        raise mapped
    if isinstance(outcome, spec.Basic.Ack):
        return None
    return _not_confirmed(exchange, message.routing_key, outcome)


def _not_confirmed(exchange: str, routing_key: str, confirm: Any) -> Nacked:
    """The error of a publish the broker answered with ``confirm``, not an ack."""
    return Nacked(f"publish to {exchange!r}/{routing_key!r} not confirmed: {confirm!r}")


def _args(arguments: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(arguments) if arguments is not None else None


class AiormqConnection(Connection):
    """A :class:`~.base.Connection` over an aiormq connection (``raw``)."""

    def __init__(self, raw: AbstractConnection) -> None:
        self.raw = raw
        self._closing_on_purpose = False

    @property
    def closing_on_purpose(self) -> bool:
        """True once :meth:`close` was called (its owner closed it)."""
        return self._closing_on_purpose

    @property
    def is_closed(self) -> bool:
        """True once the connection is closed."""
        return bool(self.raw.is_closed)

    @property
    def frame_max(self) -> int:
        """The ``frame_max`` RabbitMQ and aiormq agreed on (0 before the tune)."""
        tune = getattr(self.raw, "connection_tune", None)
        return int(getattr(tune, "frame_max", 0) or 0)

    def add_close_callback(self, callback: CloseCallback) -> None:
        """See :meth:`~.base.Connection.add_close_callback`."""

        def on_close(error: BaseException | None) -> None:
            if error is not None and not isinstance(error, ConnectionLost):
                error = ConnectionLost(str(error))
            callback(error)

        _watch(self.raw.closing, on_close, lambda: self._closing_on_purpose)

    async def channel(self, *, publisher_confirms: bool = True) -> AiormqChannel:
        """See :meth:`~.base.Connection.channel`."""
        if self.raw.is_closed:
            raise ConnectionLost("the connection is closed")
        async with _translated():
            raw = await self.raw.channel(
                publisher_confirms=publisher_confirms, frame_buffer_size=FRAME_BUFFER
            )
        return AiormqChannel(raw, self)

    async def close(self) -> None:
        """See :meth:`~.base.Connection.close`."""
        self._closing_on_purpose = True
        if not self.raw.is_closed:
            with contextlib.suppress(Exception):
                await self.raw.close()


#: Frames a connection queues for its writer, and a channel for its reader,
#: before the one that queues them waits. aiormq's default, 10, made every
#: channel of a connection wait for its slowest one (the connection reads
#: frames in order and stops at a full channel queue: one partition's
#: deliveries held back another's on a shared connection) and made a burst
#: of publishes or acks wait for the writer every few frames. What a channel
#: is sent is bounded anyway: by its prefetch, or its publishes in flight.
FRAME_BUFFER = 4096


class _BufferedConnection(aiormq.Connection):
    """aiormq's connection with a write queue of :data:`FRAME_BUFFER` frames."""

    FRAME_BUFFER_SIZE = FRAME_BUFFER


async def _open(url: str) -> aiormq.Connection:
    connection = _BufferedConnection(url)
    await connection.connect()
    return connection


async def connect_aiormq(url: str, *, timeout: float | None = 10.0) -> AiormqConnection:
    """Connect to RabbitMQ at ``url`` (``amqp://`` or ``amqps://``, aiormq's
    query parameters), waiting at most ``timeout`` seconds (None: no bound).
    Raises :class:`~.base.ConnectionLost` naming ``host:port`` (never the
    password) when it cannot."""
    try:
        raw = await asyncio.wait_for(_open(url), timeout)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        raise ConnectionLost(
            f"cannot connect to the broker at {address_of(url)}: no answer within {timeout} s"
        ) from None
    except Exception as exc:
        raise ConnectionLost(
            f"cannot connect to the broker at {address_of(url)}: {type(exc).__name__}"
        ) from exc
    return AiormqConnection(raw)
