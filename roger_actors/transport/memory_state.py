"""The state of an in-memory broker: its exchanges, queues and their
messages, consumers and timers, and the rules RabbitMQ applies to them
(routing, TTL and dead-lettering, length limits, ``x-expires``, single active
consumer, quorum delivery counts, queue argument checks).

:mod:`roger_actors.transport.memory` puts the transport interface on top.
Everything here runs on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .base import ConnectionLost, ConsumerCallback, PreconditionFailed, Properties
from .tables import round_trip

if TYPE_CHECKING:
    from .memory import MemoryChannel, MemoryConnection

__all__ = [
    "EQUIVALENT_ARGS",
    "REPLY_PREFIX",
    "REPLY_TO",
    "Consumer",
    "Exchange",
    "MemoryBroker",
    "QueueState",
    "Stored",
    "Unacked",
    "check_arguments",
    "equivalent",
]

REPLY_TO = "amq.rabbitmq.reply-to"
REPLY_PREFIX = REPLY_TO + "."

#: Queue arguments a redeclare must repeat with the same value (RabbitMQ's list).
EQUIVALENT_ARGS = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
)
_OVERFLOWS = ("drop-head", "reject-publish", "reject-publish-dlx")
#: Queue arguments RabbitMQ acts on that this broker does not model: refused
#: (PRECONDITION_FAILED) rather than silently ignored.
_UNSUPPORTED_ARGS = ("x-max-priority",)


def now_ms(loop: asyncio.AbstractEventLoop) -> float:
    """The loop's clock in milliseconds (TTL deadlines use it)."""
    return loop.time() * 1000.0


# ------------------------------------------------------------------ broker state


@dataclass
class Stored:
    """A message in a queue (or out for delivery)."""

    body: bytes
    properties: Properties
    exchange: str
    routing_key: str
    seq: int
    #: Loop time (ms) after which it is expired; None: never.
    expires_at: float | None = None
    redelivered: bool = False
    #: Returns to a quorum queue (its ``x-delivery-count``).
    returns: int = 0


@dataclass
class Exchange:
    name: str
    type: str
    durable: bool
    auto_delete: bool
    #: (queue, routing key) pairs.
    bindings: list[tuple[str, str]] = field(default_factory=list)


@dataclass(eq=False)
class Consumer:
    channel: MemoryChannel
    queue: str
    tag: str
    callback: ConsumerCallback
    no_ack: bool
    exclusive: bool
    prefetch: int
    unacked: int = 0


@dataclass
class Unacked:
    message: Stored
    queue: str
    consumer: Consumer | None
    #: Closes the channel when the delivery stays unacked past ``consumer_timeout``.
    timer: asyncio.TimerHandle | None = None


class QueueState:
    """One queue: its ready messages in order, its consumers and its timers."""

    def __init__(
        self,
        broker: MemoryBroker,
        name: str,
        durable: bool,
        auto_delete: bool,
        owner: MemoryConnection | None,
        arguments: dict[str, Any],
    ) -> None:
        self.broker = broker
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.owner = owner
        self.arguments = arguments
        self.quorum = arguments.get("x-queue-type") == "quorum"
        self.ready: list[Stored] = []
        self.consumers: list[Consumer] = []
        self.had_consumer = False
        self.round_robin = 0
        self.ttl_timer: asyncio.TimerHandle | None = None
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.deleted = False

    # arguments

    @property
    def single_active(self) -> bool:
        """True when ``x-single-active-consumer`` is set."""
        return bool(self.arguments.get("x-single-active-consumer", False))

    @property
    def max_length(self) -> int | None:
        """``x-max-length`` (None: no limit)."""
        value = self.arguments.get("x-max-length")
        return None if value is None else int(value)

    @property
    def max_length_bytes(self) -> int | None:
        """``x-max-length-bytes`` (None: no limit)."""
        value = self.arguments.get("x-max-length-bytes")
        return None if value is None else int(value)

    def _over(self, extra: int = 0, extra_bytes: int = 0) -> bool:
        """Whether the ready messages (plus ``extra`` of ``extra_bytes``) pass a limit."""
        limit, limit_bytes = self.max_length, self.max_length_bytes
        if limit is not None and len(self.ready) + extra > limit:
            return True
        if limit_bytes is not None:
            return sum(len(m.body) for m in self.ready) + extra_bytes > limit_bytes
        return False

    @property
    def overflow(self) -> str:
        """``x-overflow`` (``drop-head`` by default)."""
        return str(self.arguments.get("x-overflow", "drop-head"))

    @property
    def message_ttl(self) -> int | None:
        """``x-message-ttl`` in ms (None: none)."""
        value = self.arguments.get("x-message-ttl")
        return None if value is None else int(value)

    @property
    def expires(self) -> int | None:
        """``x-expires`` in ms (None: never)."""
        value = self.arguments.get("x-expires")
        return None if value is None else int(value)

    @property
    def delivery_limit(self) -> int | None:
        """``x-delivery-limit`` of a quorum queue (None: none, or classic)."""
        value = self.arguments.get("x-delivery-limit")
        return None if value is None or not self.quorum else int(value)

    # use and expiry

    def touch(self) -> None:
        """The queue was used: restart its ``x-expires`` clock (none runs while
        it has consumers)."""
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
            self.expiry_timer = None
        if self.expires is None or self.consumers or self.deleted:
            return
        self.expiry_timer = self.broker.loop.call_later(self.expires / 1000.0, self._expire)

    def _expire(self) -> None:
        self.expiry_timer = None
        if not self.consumers and not self.deleted:
            self.broker.delete_queue(self.name)

    # messages

    def enqueue(self, message: Stored) -> bool:
        """Add a routed message; False when ``reject-publish`` refused it."""
        if self.overflow != "drop-head" and self._over(1, len(message.body)):
            if self.overflow == "reject-publish-dlx":
                self.dead_letter(message, "maxlen")
            return False
        ttl = self.message_ttl
        now = now_ms(self.broker.loop)
        expiration = message.properties.expiration
        deadlines = [now + ttl] if ttl is not None else []
        if expiration is not None:
            deadlines.append(now + int(expiration))
        message.expires_at = min(deadlines) if deadlines else None
        if message.expires_at is not None and message.expires_at <= now:
            # Expired on arrival (a TTL of 0): only a consumer ready for it
            # now, with nothing queued before it, gets it.
            self.drop_expired()
            consumer = None if self.ready else self._eligible()
            if consumer is None:
                self.dead_letter(message, "expired")
            else:
                consumer.channel.deliver(consumer, self, message)
            return True
        self.ready.append(message)
        while self.ready and self._over():
            self.dead_letter(self.ready.pop(0), "maxlen")
        self.dispatch()
        return True

    def requeue(self, message: Stored) -> None:
        """Put an unacked message back (in its original place), or dead-letter it
        when a quorum queue's delivery limit is passed."""
        message.redelivered = True
        if self.quorum:
            message.returns += 1
            limit = self.delivery_limit
            if limit is not None and message.returns > limit:
                self.dead_letter(message, "delivery_limit")
                return
        index = len(self.ready)
        while index > 0 and self.ready[index - 1].seq > message.seq:
            index -= 1
        self.ready.insert(index, message)

    def drop_expired(self) -> None:
        """Dead-letter the expired messages at the head; arm the timer for the next."""
        now = now_ms(self.broker.loop)
        while (
            self.ready and self.ready[0].expires_at is not None and self.ready[0].expires_at <= now
        ):
            self.dead_letter(self.ready.pop(0), "expired")
        if self.ttl_timer is not None:
            self.ttl_timer.cancel()
            self.ttl_timer = None
        if self.ready and self.ready[0].expires_at is not None and not self.deleted:
            delay = max(0.0, (self.ready[0].expires_at - now) / 1000.0)
            self.ttl_timer = self.broker.loop.call_later(delay, self._on_ttl)

    def _on_ttl(self) -> None:
        self.ttl_timer = None
        self.dispatch()

    def dead_letter(self, message: Stored, reason: str) -> None:
        """Send ``message`` to the dead-letter exchange (or drop it) with ``x-death``."""
        exchange = self.arguments.get("x-dead-letter-exchange")
        if exchange is None:
            return
        routing_key = self.arguments.get("x-dead-letter-routing-key", message.routing_key)
        headers = dict(message.properties.headers or {})
        deaths = [dict(d) for d in headers.get("x-death", []) if isinstance(d, Mapping)]
        entry = next(
            (d for d in deaths if d.get("queue") == self.name and d.get("reason") == reason), None
        )
        if entry is not None:
            deaths.remove(entry)
            entry["count"] = int(entry.get("count", 0)) + 1
            entry["time"] = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        else:
            entry = {
                "count": 1,
                "reason": reason,
                "queue": self.name,
                "time": datetime.datetime.now(datetime.UTC).replace(microsecond=0),
                "exchange": message.exchange,
                "routing-keys": [message.routing_key],
            }
            if message.properties.expiration is not None:
                entry["original-expiration"] = message.properties.expiration
        deaths.insert(0, entry)
        headers["x-death"] = deaths
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-queue", self.name)
        headers.setdefault("x-first-death-exchange", message.exchange)
        properties = round_trip(message.properties.evolve(headers=headers, expiration=None))
        self.broker.loop.call_soon(
            self.broker.route, message.body, properties, str(exchange), str(routing_key)
        )

    def _eligible(self) -> Consumer | None:
        consumers = self.consumers[:1] if self.single_active else self.consumers
        if not consumers:
            return None
        for step in range(len(consumers)):
            consumer = consumers[(self.round_robin + step) % len(consumers)]
            if consumer.no_ack or not consumer.prefetch or consumer.unacked < consumer.prefetch:
                self.round_robin = (self.round_robin + step + 1) % max(1, len(consumers))
                return consumer
        return None

    def dispatch(self) -> None:
        """Deliver ready messages to consumers with room for them."""
        self.drop_expired()
        while self.ready and not self.deleted:
            consumer = self._eligible()
            if consumer is None:
                break
            message = self.ready.pop(0)
            consumer.channel.deliver(consumer, self, message)
            self.drop_expired()

    def counts(self) -> tuple[int, int]:
        """(ready messages, consumers), after dropping expired heads."""
        self.drop_expired()
        return len(self.ready), len(self.consumers)


class MemoryBroker:
    """One in-memory broker: its exchanges, queues and connections.

    Use it from one event loop at a time: the loop of its first connection,
    or of a later one when none is open any more.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        #: Seconds a delivery may stay unacked before the broker closes its
        #: channel with PRECONDITION_FAILED, as RabbitMQ's ``consumer_timeout``
        #: (its default, 30 min); None: no limit. Applies to deliveries made
        #: after it is set.
        self.consumer_timeout: float | None = 1800.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.queues: dict[str, QueueState] = {}
        self.exchanges: dict[str, Exchange] = {
            name: Exchange(name, kind, True, False)
            for name, kind in (("amq.direct", "direct"), ("amq.fanout", "fanout"))
        }
        self.connections: set[MemoryConnection] = set()
        self.reply_routes: dict[str, Consumer] = {}
        self._seq = itertools.count(1)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the broker runs on (RuntimeError before any connection)."""
        if self._loop is None:
            raise RuntimeError(f"memory broker {self.name!r} has no event loop yet")
        return self._loop

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        if self.connections and self._loop is not None and not self._loop.is_closed():
            raise RuntimeError(
                f"memory broker {self.name!r} is in use on another event loop; "
                "memory:// serves one event loop at a time"
            )
        self._loop = loop
        # Connections left open on a loop that has closed can do nothing more:
        # they are lost (their consumers taken off first, so that what they
        # return goes to no other dead consumer).
        stale = list(self.connections)
        for connection in stale:
            for channel in list(connection.channels):
                channel.detach_consumers()
        for connection in stale:
            connection.lose(ConnectionLost("its event loop closed"))
        for queue in self.queues.values():  # timers of a former loop are gone
            queue.touch()
            queue.drop_expired()

    def close_all_connections(self, reason: str = "closed by the broker") -> None:
        """Close every connection from the broker side, as ``rabbitmqctl
        close_all_connections`` does: each gets its connection-lost event
        (:class:`~.base.ConnectionLost` with ``reason``), its unacked
        deliveries go back to their queues and its exclusive queues go."""
        for connection in list(self.connections):
            connection.lose(ConnectionLost(reason))

    def next_seq(self) -> int:
        """The next message sequence number (orders requeued messages)."""
        return next(self._seq)

    # routing

    def route(
        self, body: bytes, properties: Properties, exchange: str, routing_key: str
    ) -> tuple[bool, bool]:
        """Route a message: (reached a queue, refused by one)."""
        targets: list[str]
        if exchange == "":
            if routing_key.startswith(REPLY_PREFIX):
                consumer = self.reply_routes.get(routing_key)
                if consumer is None:
                    return False, False
                stored = Stored(body, properties, exchange, routing_key, self.next_seq())
                consumer.channel.deliver(consumer, None, stored)
                return True, False
            targets = [routing_key] if routing_key in self.queues else []
        else:
            found = self.exchanges.get(exchange)
            if found is None:
                return False, False
            targets = [q for q, key in found.bindings if _matches(found.type, key, routing_key)]
        refused = False
        routed = False
        for name in dict.fromkeys(targets):
            queue = self.queues.get(name)
            if queue is None:
                continue
            routed = True
            stored = Stored(body, properties, exchange, routing_key, self.next_seq())
            if not queue.enqueue(stored):
                refused = True
        return routed, refused

    def delete_queue(self, name: str) -> int:
        """Delete a queue (its consumers are cancelled); returns its ready count."""
        queue = self.queues.pop(name, None)
        if queue is None:
            return 0
        queue.deleted = True
        for timer in (queue.ttl_timer, queue.expiry_timer):
            if timer is not None:
                timer.cancel()
        for consumer in list(queue.consumers):
            consumer.channel.forget_consumer(consumer.tag)
        queue.consumers.clear()
        for exchange in self.exchanges.values():
            exchange.bindings = [(q, k) for q, k in exchange.bindings if q != name]
        return len(queue.ready)


def _matches(kind: str, binding: str, routing_key: str) -> bool:
    """Whether a binding of an exchange of type ``kind`` takes ``routing_key``."""
    return kind == "fanout" or binding == routing_key


def check_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a queue declare's ``arguments`` once checked as RabbitMQ checks
    them. Raises :class:`~.base.PreconditionFailed` naming the first invalid
    argument (or one this broker does not model)."""
    args = dict(arguments)

    def bad(key: str) -> PreconditionFailed:
        return PreconditionFailed(f"PRECONDITION_FAILED - invalid arg '{key}': {args[key]!r}")

    for key in ("x-expires",):
        if key in args and (not _is_int(args[key]) or args[key] <= 0):
            raise bad(key)
    for key in ("x-message-ttl", "x-max-length", "x-max-length-bytes", "x-delivery-limit"):
        if key in args and (not _is_int(args[key]) or args[key] < 0):
            raise bad(key)
    for key in _UNSUPPORTED_ARGS:
        if key in args:
            raise PreconditionFailed(f"queue argument '{key}' is not supported by memory://")
    if "x-overflow" in args and args["x-overflow"] not in _OVERFLOWS:
        raise bad("x-overflow")
    if "x-queue-type" in args and args["x-queue-type"] not in ("classic", "quorum"):
        raise bad("x-queue-type")
    if "x-single-active-consumer" in args and not isinstance(
        args["x-single-active-consumer"], bool
    ):
        raise bad("x-single-active-consumer")
    for key in ("x-dead-letter-exchange", "x-dead-letter-routing-key"):
        if key in args and not isinstance(args[key], str):
            raise bad(key)
    return args


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def equivalent(key: str, mine: Any, theirs: Any) -> bool:
    """Whether a redeclare's value of argument ``key`` matches the queue's
    (absent is None; an absent ``x-queue-type`` is ``classic``)."""
    if key == "x-queue-type":
        return (mine or "classic") == (theirs or "classic")
    return bool(mine == theirs)
