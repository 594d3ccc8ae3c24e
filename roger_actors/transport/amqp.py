"""An AMQP link over the transport interface, for actors that own a :class:`LoopThread`.

:class:`AmqpLink` lives on the loop thread. It holds one connection, one
channel per consumed queue (with that queue's prefetch) and one channel with
publisher confirms for publishing and queue management. Deliveries and
connection loss are posted to the owning actor as :class:`Delivery` and
:class:`LinkLost` events. Acks and nacks are fire-and-forget from the actor
thread; a delivery from a channel that has since been closed cannot be
acked (the broker has already requeued it) and is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

# Both transports are imported here, with the link, and not first when a loop
# thread connects: a process forked (a placed child) while another thread is
# half way through importing a module would keep that module half-imported.
from . import aiormq_transport as _aiormq_transport  # noqa: F401
from . import memory as _memory  # noqa: F401
from . import scratch
from .base import (
    Channel,
    ChannelClosed,
    Connection,
    ConnectionLost,
    Message,
    NotFound,
    Outgoing,
    PreconditionFailed,
    Properties,
    TransportError,
    connect,
)
from .scratch import ScratchChannels, close_in_background
from .shared import ConnectionView, SharedConnections
from .urls import address_of, redact_url, split_urls

log = logging.getLogger("roger_actors.amqp")

PERSISTENT = 2


async def together(*steps: Awaitable[Any]) -> list[Any]:
    """Run ``steps`` at once and return their results in order once all have
    ended. Raises the first step's error, in the order given, after every
    step ended; cancelled, it cancels the steps. Steps gain only when each
    uses a channel of its own (aiormq answers one RPC of a channel at a
    time): the scratch channels of :meth:`AmqpLink._scratch` are."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


@dataclass(frozen=True)
class Delivery:
    """A message delivered on the consumer channel ``key`` (generation ``generation``)."""

    key: str
    generation: int
    tag: int
    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    redelivered: bool
    #: The message's properties as delivered (to republish it faithfully).
    properties: Properties | None = None
    #: When it was delivered (``time.monotonic()`` on the loop thread): the
    #: broker's ``consumer_timeout`` counts from about then.
    received: float = field(default_factory=time.monotonic)


#: ``x-delivery-limit`` of a new work queue unless the caller names one:
#: RabbitMQ 4.x's own default for quorum queues.
DEFAULT_DELIVERY_LIMIT = 20
#: Suffix of a work queue's dead-letter target (``<work queue>.invalid``).
DEAD_LETTER_SUFFIX = ".invalid"


def work_queue_arguments(name: str, delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> dict[str, Any]:
    """The arguments a new work queue ``name`` is declared with: a quorum queue
    whose messages returned more than ``delivery_limit`` times (and any other
    dead letter: a producer's per-message TTL, a reject) go, at least once
    (``x-dead-letter-strategy``, which needs ``x-overflow: reject-publish``;
    work queues have no length limit, so the overflow setting never applies),
    to ``<name>.invalid`` with the broker's ``x-death`` header saying why."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": name + DEAD_LETTER_SUFFIX,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


@dataclass(frozen=True)
class LinkLost:
    """The connection closed (broker restart, ``close_all_connections``, network)."""

    reason: str


@dataclass(frozen=True)
class ChannelLost:
    """The broker closed the consumer channel ``key`` (a channel error); its
    unacked deliveries went back to the queue. The connection is still up."""

    key: str
    generation: int


@dataclass
class _Consumer:
    channel: Channel
    queue: str
    generation: int
    consumer_tag: str = ""
    #: Every delivery tag up to this one is settled (a channel numbers its
    #: deliveries 1, 2, 3...).
    watermark: int = 0
    #: Settled tags above the watermark.
    settled: set[int] = field(default_factory=set)
    #: Of those, the ones the broker was already told about (acked one by one
    #: or nacked): a ``multiple`` ack must not name them again.
    told: set[int] = field(default_factory=set)
    closing_on_purpose: bool = False
    ack_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Tags :meth:`AmqpLink.ack_many` was given that the next flush acks.
    unsent: list[int] = field(default_factory=list)
    #: Settled by the next flush (its outcome), None when no tag waits.
    next_flush: asyncio.Future[bool] | None = None
    #: The task that writes the flushes, one after another.
    flusher: asyncio.Task[None] | None = None


def properties(
    *,
    message_id: str | None = None,
    app_id: str | None = None,
    headers: dict[str, Any] | None = None,
    expiration_ms: int | None = None,
    content_type: str | None = None,
    persistent: bool = True,
) -> Properties:
    """Build message properties (persistent by default)."""
    return Properties(
        message_id=message_id,
        app_id=app_id,
        headers=headers,
        expiration=str(expiration_ms) if expiration_ms is not None else None,
        content_type=content_type,
        delivery_mode=PERSISTENT if persistent else 1,
    )


def quorum_arguments(arguments: dict[str, Any] | None) -> dict[str, Any]:
    """``arguments`` with ``x-queue-type: quorum`` (a new dict)."""
    return {**(arguments or {}), "x-queue-type": "quorum"}


class BrokerAddresses:
    """The broker URLs a connection may use (the nodes of one RabbitMQ cluster)
    and where the next connection attempt starts.

    ``urls`` is one URL, a string of several separated by commas (see
    :func:`~roger_actors.transport.urls.split_urls`) or a sequence of URLs.
    :meth:`connect` tries them in turn and remembers the one that answered:
    the next :meth:`connect` (a reconnect, usually because that broker node
    went away) starts with the address after it, so it reaches a surviving
    node at the first attempt. Share one instance between the successive
    links of one user (as :class:`~roger_actors.transport.publisher.Publisher`
    does) to keep that order across links. Not thread-safe: use it from one
    event loop.
    """

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls: tuple[str, ...] = tuple(split_urls(urls))
        if not self.urls or not all(self.urls):
            raise ValueError("at least one broker URL is needed, and none may be empty")
        #: Index of the address the next :meth:`connect` tries first.
        self.start = 0
        #: Index of the address of the last connection made (None: none yet).
        self.current: int | None = None

    def __len__(self) -> int:
        return len(self.urls)

    def order(self) -> list[int]:
        """Indices of the addresses in the order the next :meth:`connect` tries them."""
        return [(self.start + k) % len(self.urls) for k in range(len(self.urls))]

    async def connect(self, timeout: float | None) -> Connection:
        """Connect to the first address that answers, in :meth:`order`, waiting
        at most ``timeout`` seconds (None: no limit) for each attempt.

        Returns the open connection. Raises :class:`ConnectionError` when no
        address answered; its message names every address tried (``host:port``,
        never a password) and why each failed, and it is chained to the last
        failure. Cancellation propagates at once (no further address is tried).
        """
        failures: list[str] = []
        last: BaseException | None = None
        for index in self.order():
            url = self.urls[index]
            try:
                connection = await asyncio.wait_for(connect(url, timeout=None), timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The interface's ConnectionLost wraps the client's own error:
                # name that one (the address is named below).
                cause: BaseException = exc
                if isinstance(exc, ConnectionLost) and exc.__cause__ is not None:
                    cause = exc.__cause__
                last = cause
                failures.append(f"{address_of(url)}: {_describe_failure(cause, url, timeout)}")
                continue
            self.current = index
            self.start = (index + 1) % len(self.urls)
            if failures:
                log.warning(
                    "connected to the broker at %s after failing at %s",
                    address_of(url),
                    "; ".join(failures),
                )
            return connection
        if len(self.urls) == 1:
            message = f"cannot connect to the broker at {failures[0]}"
        else:
            message = (
                f"cannot connect to any of the {len(self.urls)} broker addresses: "
                + "; ".join(failures)
            )
        raise ConnectionError(message) from last

    def redacted(self) -> list[str]:
        """The URLs with their passwords replaced by ``***``."""
        return [redact_url(url) for url in self.urls]


def _describe_failure(exc: BaseException, url: str, timeout: float | None) -> str:
    """``exc`` as text for an error message, with ``url``'s password removed."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) and not str(exc):
        return f"no answer within {timeout} s"
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = text.replace(url, redact_url(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        for form in {password, unquote(password), quote(unquote(password), safe="")}:
            if len(form) >= 3:  # replacing a one-letter password would garble the text
                text = text.replace(form, "***")
    return text


class AmqpLink:
    """One AMQP connection and its channels; every coroutine runs on the loop thread.

    ``url``: one broker URL, several (a sequence, or a string separated by
    commas) or a shared :class:`BrokerAddresses`; :meth:`connect` fails over
    among them. ``timeout``: seconds per connection attempt (None: no limit).
    """

    def __init__(
        self,
        url: str | Sequence[str] | BrokerAddresses,
        post: Callable[[Any], None],
        timeout: float | None = 10.0,
        shared: SharedConnections | None = None,
    ):
        self.addresses = url if isinstance(url, BrokerAddresses) else BrokerAddresses(url)
        self.post = post
        self.timeout = timeout
        #: Where :meth:`connect` takes a view of a shared connection (None:
        #: a connection of the link's own).
        self.shared = shared
        #: Exclusive queues this link deletes when it closes (:meth:`own_queue`).
        self.owned: set[str] = set()
        self.connection: Connection | None = None
        self.control: Channel | None = None
        self.consumers: dict[str, _Consumer] = {}
        #: Queues :meth:`declare` made on this connection -> their kind.
        self._declared: dict[str, str] = {}
        self._generation = 0
        self._lost = False
        self._control_lock: asyncio.Lock | None = None
        #: The spare scratch channel of a connection of the link's own (a
        #: shared connection has its own spares), made at the first use.
        self._own_scratch: ScratchChannels | None = None

    @property
    def url(self) -> str:
        """The URL of the current (or last) connection; the first one before any."""
        current = self.addresses.current
        return self.addresses.urls[0 if current is None else current]

    @property
    def connect_timeout(self) -> float | None:
        """The longest :meth:`connect` may take: ``timeout`` per address (None: no limit)."""
        return None if self.timeout is None else self.timeout * len(self.addresses)

    async def connect(self) -> None:
        """Open the connection; the control channel (with confirms) is opened
        by the first operation that needs it (:meth:`control_channel`), so an
        idle link holds no channel.

        Tries the broker addresses in turn (:meth:`BrokerAddresses.connect`),
        each for at most ``timeout`` seconds: a reconnect starts with the
        address after the one last used. Raises :class:`ConnectionError`
        naming every address tried when none answered.
        """
        self._lost = False
        self._declared.clear()
        self.owned.clear()
        self._drop_spare()
        self.control = None
        if self.shared is None:
            self.connection = await self.addresses.connect(self.timeout)
        else:
            addresses, timeout = self.addresses, self.timeout
            self.connection = await self.shared.open(
                addresses.urls, lambda: addresses.connect(timeout)
            )
        self.connection.add_close_callback(self._on_close)

    def _on_close(self, error: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        reason = "closed" if error is None else repr(error)
        self.consumers.clear()
        self.post(LinkLost(reason))

    @property
    def is_open(self) -> bool:
        """True while the connection is usable."""
        return self.connection is not None and not self.connection.is_closed and not self._lost

    async def close(self) -> None:
        """Close everything (unacked deliveries go back to their queues); the
        exclusive queues the link owns are deleted first when its connection
        is shared (they would outlive the link)."""
        was_open = self.is_open
        self._lost = True
        self.consumers.clear()
        if self._own_scratch is not None:
            self._own_scratch.forget()  # its spare closes with the connection
            self._own_scratch = None
        if self.connection is None:
            return
        if was_open and self.shared is not None and self.owned:
            with contextlib.suppress(Exception):
                async with self._scratch() as channel:
                    for name in sorted(self.owned):
                        await channel.queue_delete(name)
        self.owned.clear()
        with contextlib.suppress(Exception):
            await self.connection.close()

    def own_queue(self, name: str) -> None:
        """The exclusive queue ``name``, declared on this link's connection,
        is the link's: deleted when the link closes (on a connection of its
        own the broker deletes it with the connection anyway)."""
        self.owned.add(name)

    async def control_channel(self) -> Channel:
        """The control channel (with confirms), opened at the first call and
        again when a channel error closed it while the connection stays up (a
        broker channel exception closes only its channel: without this every
        later declare, publish and get of the link would fail until the
        connection drops). ConnectionError when the link is down; what
        opening a channel raises."""
        control = self.control
        if control is not None and not control.is_closed:
            return control
        if self.connection is None or not self.is_open:
            raise ConnectionError("AMQP link is not connected")
        if self._control_lock is None:
            self._control_lock = asyncio.Lock()  # made on the loop thread
        async with self._control_lock:
            if self.control is None or self.control.is_closed:
                if self.control is not None:
                    log.warning("the control channel was closed; opening a new one")
                self.control = await self.connection.channel(publisher_confirms=True)
            return self.control

    async def declare(self, name: str, arguments: dict[str, Any] | None = None) -> int:
        """Declare a durable (classic) queue; returns its message count."""
        control = await self.control_channel()
        ok = await control.queue_declare(name, durable=True, arguments=arguments)
        return ok.message_count

    async def declare_replicated(self, name: str, arguments: dict[str, Any] | None = None) -> int:
        """Declare a durable queue with ``arguments``, as a quorum queue where the
        broker has them; returns its message count.

        A quorum queue is replicated on the nodes of a RabbitMQ cluster, so it
        stays usable (and keeps its messages) when one broker node dies; a
        classic queue is reachable only while its home node runs. A queue that
        already exists as a classic one keeps its type (it is declared with
        ``arguments``, or only checked when its arguments differ). Raises the
        broker's channel error when the queue cannot be declared (e.g.
        :class:`~.base.NotFound` for a classic queue whose home node is down).
        Used for every durable queue of a partition but the execution-waiting
        ones (which are read with ``basic.get`` and a requeue, counted by a
        quorum queue's delivery limit): ``.invalid``, ``.buried``, retry and
        lease holding queues, the Global request, replica and state queues.
        """
        known = self._declared.get(name)
        if known is None:
            known, count = await self._declare_first(name, arguments)
            if known != "existing":
                self._declared[name] = known
            return count
        args = quorum_arguments(arguments) if known == "quorum" else arguments
        ok = await (await self.control_channel()).queue_declare(name, durable=True, arguments=args)
        return ok.message_count

    async def _declare_first(self, name: str, arguments: dict[str, Any] | None) -> tuple[str, int]:
        """The first :meth:`declare_replicated` of ``name`` on this connection, on scratch
        channels (a failed declare closes its channel): ``(kind, message count)``
        with kind ``"quorum"``, ``"classic"`` (no quorum queues here) or
        ``"existing"`` (a classic queue there already)."""
        attempts: list[tuple[str, dict[str, Any] | None, bool]] = [
            ("quorum", quorum_arguments(arguments), False)
        ]
        for attempt, (kind, args, passive) in enumerate(attempts):
            try:
                async with self._scratch() as channel:
                    if passive:
                        ok = await channel.queue_declare(name, passive=True)
                    else:
                        ok = await channel.queue_declare(name, durable=True, arguments=args)
                return kind, ok.message_count
            except PreconditionFailed:
                # It exists with other arguments: a classic queue. Declare it as
                # one (which renews its x-expires), else only check it is there.
                if attempt == 0:
                    attempts.append(("existing", arguments, False))
                elif not passive:
                    attempts.append(("existing", None, True))
                else:
                    raise
            except NotFound:
                raise  # a classic queue whose home node is down
            except ChannelClosed:
                if attempt != 0:
                    raise
                attempts.append(("classic", arguments, False))  # no quorum queues here
        raise AssertionError("unreachable")  # pragma: no cover

    async def declare_work_queue(
        self, name: str, delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    ) -> str:
        """Declare a durable work queue and its dead-letter target
        ``<name>.invalid`` (both at once): a quorum queue with
        :func:`work_queue_arguments` where the broker has them. A queue that
        already exists with other arguments (an older version's plain quorum
        queue, a classic queue: the broker answers PRECONDITION_FAILED, on a
        scratch channel) is used as it is; the Consumer's own delivery count
        check still sets its poison messages aside, and an operator can add the
        dead-letter target with a policy (``docs/roger-differences.md``). Returns the type used
        (``"quorum"``, ``"classic"`` when the broker has no quorum queues, or
        ``"existing"``). Raises what the broker or the connection raises
        otherwise (a lost connection: :class:`~.base.ConnectionLost`)."""
        kind, _ = await together(
            self._declare_work(name, delivery_limit),
            self.declare_replicated(name + DEAD_LETTER_SUFFIX),
        )
        return str(kind)

    async def _declare_work(self, name: str, delivery_limit: int) -> str:
        try:
            async with self._scratch() as channel:
                await channel.queue_declare(
                    name, durable=True, arguments=work_queue_arguments(name, delivery_limit)
                )
            return "quorum"
        except PreconditionFailed:
            # It exists with other arguments (a classic queue): use it as it is.
            await self._scratch_passive(name)
            return "existing"
        except ConnectionLost:
            raise
        except TransportError:
            # No quorum queues on this broker.
            await self.declare(name)
            return "classic"

    async def _scratch_passive(self, name: str) -> None:
        async with self._scratch() as channel:
            await channel.queue_declare(name, passive=True)

    async def counts(self, name: str) -> tuple[int, int]:
        """(message_count, consumer_count) of an existing queue (passive declare)."""
        async with self._scratch() as channel:
            ok = await channel.queue_declare(name, passive=True)
            return ok.message_count, ok.consumer_count

    @contextlib.asynccontextmanager
    async def _scratch(self) -> AsyncIterator[Channel]:
        """A channel without confirms for operations that may fail with a
        channel error (which closes only that channel: never the control one).

        It is a spare one when one is open (the link's own, or its shared
        connection's: :class:`~.scratch.ScratchChannels`), else a new one.
        When the block ends without an error and the channel is still open,
        it becomes a spare again: the declares of a partition's start reuse
        a few channels instead of opening and closing one each. A channel the
        block left with an error (a channel error, a timeout, a cancellation:
        an answer may still be on its way) is closed, never reused. Raises
        what opening a channel raises."""
        connection = self.connection
        assert connection is not None
        spares = self._spares_of(connection)
        channel = await spares.take()
        try:
            yield channel
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        if channel.is_closed or self.connection is not connection or not self.is_open:
            close_in_background(channel)  # the block's caller need not wait for it
            return
        spares.give_back(channel)

    def _spares_of(self, connection: Connection) -> ScratchChannels:
        """The spare scratch channels for ``connection``: a shared
        connection's, else the link's own (one spare)."""
        if isinstance(connection, ConnectionView):
            return connection.scratch
        if self._own_scratch is None:

            async def open_channel() -> Channel:
                return await connection.channel(publisher_confirms=False)

            self._own_scratch = ScratchChannels(
                open_channel, max_spares=1, idle_seconds=scratch.SPARE_SECONDS
            )
        return self._own_scratch

    def _drop_spare(self) -> None:
        """Close the link's own spare scratch channel (in the background), if any."""
        spares, self._own_scratch = self._own_scratch, None
        if spares is not None:
            spares.clear()

    async def purge(self, name: str) -> int:
        """Purge a queue; returns the number of messages removed."""
        return await (await self.control_channel()).queue_purge(name)

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        props: Properties,
        exchange: str = "",
        mandatory: bool = True,
    ) -> None:
        """Publish and wait for the broker's confirm; raises
        :class:`~.base.Nacked` if it is nacked or, being ``mandatory``,
        :class:`~.base.Unroutable` when it reached no queue."""
        await (await self.control_channel()).publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=props,
            mandatory=mandatory,
        )

    async def publish_many(
        self, messages: Sequence[Outgoing], exchange: str = "", mandatory: bool = True
    ) -> list[TransportError | None]:
        """Publish ``messages`` in order on the control channel, pipelined (see
        :meth:`~.base.Channel.publish_many`), and return each one's outcome:
        None once confirmed, else its error (:class:`~.base.Unroutable` when
        ``mandatory`` and it reached no queue, :class:`~.base.Nacked`, or the
        channel's or connection's loss). ConnectionError when the link is down
        (nothing was published)."""
        channel = await self.control_channel()
        return await channel.publish_many(messages, exchange=exchange, mandatory=mandatory)

    async def consume(self, key: str, queue: str, prefetch: int, start: bool = True) -> None:
        """Open a channel for ``queue`` with ``prefetch`` unacked at most; consume
        from it unless ``start`` is False (see :meth:`resume`)."""
        assert self.connection is not None
        await self.cancel(key)
        channel = await self.connection.channel(publisher_confirms=False)
        await channel.qos(prefetch)
        self._generation += 1
        consumer = _Consumer(channel, queue, self._generation)
        self.consumers[key] = consumer

        def on_close(error: BaseException | None) -> None:
            if consumer.closing_on_purpose or self._lost or isinstance(error, ConnectionLost):
                return
            if error is not None:
                log.error("consumer channel %r closed: %r", key, error)
            if self.consumers.get(key) is consumer:
                del self.consumers[key]
            self.post(ChannelLost(key, consumer.generation))

        channel.add_close_callback(on_close)
        if start:
            await self.resume(key)

    async def resume(self, key: str) -> None:
        """Start (again) consuming on the channel of ``key``. Not safe to run
        at the same time as :meth:`pause` of the same key (a pause during the
        basic.consume finds no tag): the Consumer runs them one at a time."""
        consumer = self.consumers.get(key)
        if consumer is None or consumer.consumer_tag:
            return
        generation = consumer.generation

        async def on_message(message: Message) -> None:
            props = message.properties
            self.post(
                Delivery(
                    key,
                    generation,
                    message.delivery_tag,
                    message.body,
                    dict(props.headers or {}),
                    props.message_id,
                    message.redelivered,
                    props,
                )
            )

        consumer.consumer_tag = await consumer.channel.consume(consumer.queue, on_message)

    async def pause(self, key: str) -> None:
        """Stop new deliveries on ``key`` (basic.cancel); unacked ones stay with us."""
        consumer = self.consumers.get(key)
        if consumer is None or not consumer.consumer_tag:
            return
        tag, consumer.consumer_tag = consumer.consumer_tag, ""
        await consumer.channel.cancel(tag)

    async def set_prefetch(self, key: str, prefetch: int) -> None:
        """Change the prefetch of a consumer channel.

        A per-consumer prefetch only applies to consumers started after it is
        set (and quorum queues refuse a channel-wide one), so a running
        consumer is cancelled and started again; its unacked deliveries stay
        with us and are acked as usual.
        """
        consumer = self.consumers.get(key)
        if consumer is None:
            return
        await consumer.channel.qos(prefetch)
        if consumer.consumer_tag:
            await self.pause(key)
            await self.resume(key)

    async def cancel(self, key: str) -> None:
        """Stop consuming ``key``; its channel closes and unacked deliveries are requeued."""
        consumer = self.consumers.pop(key, None)
        if consumer is None:
            return
        consumer.closing_on_purpose = True
        with contextlib.suppress(Exception):
            await consumer.channel.close()

    def _channel_for(self, key: str, generation: int) -> Channel | None:
        consumer = self.consumers.get(key)
        if consumer is None or consumer.generation != generation or consumer.channel.is_closed:
            return None
        return consumer.channel

    async def ack(self, key: str, generation: int, tag: int) -> bool:
        """Ack one delivery; False when its channel is gone (it was requeued)."""
        return await self.ack_many(key, generation, [tag])

    async def ack_many(self, key: str, generation: int, tags: list[int]) -> bool:
        """Ack deliveries of one consumer channel with as few frames as possible.

        The tags wait for the channel's next flush, which acks every tag
        given since the one before in one go (acks asked for while a flush
        is written share the next one, so a burst of calls costs a few
        flushes, not one frame and one loop round each). Of the tags that,
        with those settled before, complete the oldest outstanding ones,
        the highest is acked with one ``multiple`` ack; the others are acked
        one by one (a long job never holds back the acks, and so the
        prefetch window, of the jobs after it). Returns once the flush with
        these tags is written: False when the channel is gone (its
        deliveries were requeued); raises what writing the flush raised.
        Cancelling the caller leaves the flush be.
        """
        consumer = self.consumers.get(key)
        channel = self._channel_for(key, generation)
        if consumer is None or channel is None:
            return False
        consumer.unsent.extend(tags)
        flush = consumer.next_flush
        if flush is None:
            flush = consumer.next_flush = asyncio.get_running_loop().create_future()
            if consumer.flusher is None or consumer.flusher.done():
                consumer.flusher = asyncio.create_task(self._flush_acks(consumer, channel))
        return await asyncio.shield(flush)

    async def _flush_acks(self, consumer: _Consumer, channel: Channel) -> None:
        """Write the flushes of ``consumer`` until no tag waits (see ack_many)."""
        while consumer.next_flush is not None:
            flush, consumer.next_flush = consumer.next_flush, None
            tags, consumer.unsent = consumer.unsent, []
            try:
                async with consumer.ack_lock:
                    # Frames must reach the broker in the order decided here:
                    # a later multiple ack must not overtake the single ack of
                    # a tag it covers (a nack takes the lock too).
                    sent = await self._ack_in_order(consumer, channel, tags)
            except asyncio.CancelledError:
                flush.cancel()
                if consumer.next_flush is not None:
                    consumer.next_flush.cancel()
                    consumer.next_flush = None
                raise
            except BaseException as exc:
                flush.set_exception(exc)
                flush.exception()  # retrieved: a caller that went away leaves no warning
            else:
                flush.set_result(sent)

    async def _ack_in_order(
        self, consumer: _Consumer, channel: Channel, tags: list[int]
    ) -> bool:
        consumer.settled.update(tags)
        top = 0  # highest tag of the settled prefix not yet told to the broker
        covered = consumer.watermark  # every tag up to it is settled
        while consumer.watermark + 1 in consumer.settled:
            consumer.watermark = covered = consumer.watermark + 1
            consumer.settled.discard(covered)
            if covered in consumer.told:
                consumer.told.discard(covered)
            else:
                top = covered
        singles = [tag for tag in tags if tag > covered]
        consumer.told.update(singles)
        if top:
            await channel.ack(top, multiple=True)
        for tag in singles:
            await channel.ack(tag)
        return True

    async def nack(self, key: str, generation: int, tag: int, requeue: bool = True) -> bool:
        """Nack one delivery (requeue by default); False when its channel is gone."""
        consumer = self.consumers.get(key)
        channel = self._channel_for(key, generation)
        if consumer is None or channel is None:
            return False
        async with consumer.ack_lock:
            consumer.settled.add(tag)
            consumer.told.add(tag)
            await channel.nack(tag, requeue=requeue)
        return True

    async def delete_queue(self, name: str) -> None:
        """Delete the queue ``name`` with its messages (a missing one is fine);
        raises when the connection is not usable."""
        await (await self.control_channel()).queue_delete(name)

    async def touch(self, name: str) -> None:
        """Use the queue ``name`` so that its ``x-expires`` starts again: a
        ``basic.get`` on a scratch channel, and a message it took is put back
        at once (``basic.nack`` with requeue). A quorum queue counts only
        consumers and ``basic.get`` as uses (RabbitMQ 3.10): neither a
        declare nor a publish keeps one alive, and a quorum queue in constant
        use through publishes alone is deleted, with its messages, its
        ``x-expires`` after its creation. Raises what the broker raises (a
        missing queue closes only the scratch channel)."""
        async with self._scratch() as channel:
            message = await channel.get(name)
            if message is not None:
                await channel.nack(message.delivery_tag, requeue=True)

    async def get(self, queue: str) -> Message | None:
        """basic.get without ack (the caller settles it: ``Message.ack()`` or
        ``Message.nack()``, on the channel it came from)."""
        return await (await self.control_channel()).get(queue)
