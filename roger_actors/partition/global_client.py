"""Talking to a partition's Global over RabbitMQ.

Every node running a partition runs a Global actor consuming the queue
``roger-global.<partition>`` with ``x-single-active-consumer``: RabbitMQ
delivers to one of them (the active one) and moves on to another when its
consumer goes away. A request is a CBOR message ``{"v": 1, "op": str,
"args": list}`` published (mandatory, confirmed) to that queue with
``reply_to`` set to RabbitMQ's direct reply-to pseudo queue and an
``expiration`` equal to the caller's timeout, so a request nobody took in
time is dropped instead of being applied after the caller gave up. The
reply is ``{"v": 1, "ok": bool, "value": any, "kind": str, "cid": str}``
(``cid``: the request's correlation id, so a reply answers one request only).

Authentication (``cluster_secret`` set, see :mod:`roger_actors.cluster_auth`):
a request carries the signature headers for
``purpose_global_request(partition)``, a reply those for
``PURPOSE_GLOBAL_REPLY``. The Global drops a request that fails its check
(no reply, no change); :func:`request` ignores a reply that fails its check
or names another correlation id, as if it had not come (counted and logged
by a :class:`~roger_actors.cluster_auth.DropLog`): the genuine reply, if
any, is still taken, otherwise the call ends in ``GlobalTimeoutError``.
Without a secret nothing is signed or checked.

The queue expires (``x-expires``) :data:`QUEUE_EXPIRES_SECONDS` after its
last consumer left. So a request to a partition that is started nowhere
fails at once (the broker returns the unroutable message) with
:class:`~roger_actors.errors.NotStartedError`; during a failover or a
restart of the Global (the queue still exists) the request waits in the
queue and is answered by the next active Global. A request that gets no
reply is checked every :data:`PROBE_SECONDS`: with no consumer on the queue
it fails with ``NotStartedError``; past its timeout with
:class:`~roger_actors.errors.GlobalTimeoutError`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from typing import Any

import cbor2

from roger_actors import cbor_strict
from roger_actors.cluster_auth import (
    PURPOSE_GLOBAL_REPLY,
    AuthError,
    ClusterAuth,
    DropLog,
    purpose_global_request,
)
from roger_actors.errors import GlobalTimeoutError, NotStartedError, RogerError
from roger_actors.queue import validate_partition_id
from roger_actors.transport.amqp import AmqpLink
from roger_actors.transport.base import (
    Channel,
    Connection,
    Message,
    Nacked,
    NotFound,
    Properties,
    Unroutable,
)
from roger_actors.transport.scratch import close_in_background
from roger_actors.transport.shared import ConnectionView

#: Prefix of a partition's Global request queue.
QUEUE_PREFIX = "roger-global."
#: The Global request queue is deleted this long after its last consumer left.
QUEUE_EXPIRES_SECONDS = 30
#: Arguments of the Global request queue.
QUEUE_ARGUMENTS: dict[str, Any] = {
    "x-single-active-consumer": True,
    "x-expires": QUEUE_EXPIRES_SECONDS * 1000,
}
#: RabbitMQ's direct reply-to pseudo queue.
REPLY_TO = "amq.rabbitmq.reply-to"
#: Seconds a request waits for Global by default.
CALL_TIMEOUT = 10.0
#: A request with no reply yet checks this often that some Global consumes.
PROBE_SECONDS = 1.0
VERSION = 1
#: Deepest nesting accepted in a request.
REQUEST_DEPTH = 8
#: Deepest nesting accepted in a reply (the snapshot reply is a map of lists).
REPLY_DEPTH = 8
#: Prefixes of the reply queues a Global answers to: RabbitMQ's direct
#: reply-to and server-named queues. Any other ``reply_to`` is refused, so a
#: request cannot make the Global publish into a queue of the sender's choice.
REPLY_TO_PREFIXES = ("amq.rabbitmq.reply-to", "amq.gen-")
#: No authentication (no secret): the default of :func:`request`.
NO_AUTH = ClusterAuth(None)

log = logging.getLogger("roger_actors.global")
_dropped_replies = DropLog(log, "Global replies")


def queue_name(partition_id: str) -> str:
    """The Global request queue of a partition."""
    return QUEUE_PREFIX + validate_partition_id(partition_id)


# ---------------------------------------------------------------- wire format


def encode_request(op: str, args: list[Any]) -> bytes:
    """The request message body for ``op(*args)``."""
    return bytes(cbor2.dumps({"v": VERSION, "op": op, "args": list(args)}))


def decode_request(body: bytes) -> tuple[str, list[Any]]:
    """``(op, args)`` of a request body; ValueError naming the problem otherwise."""
    try:
        raw = cbor_strict.loads(body, max_depth=REQUEST_DEPTH, big_integers=True)
    except cbor_strict.CborError as exc:
        raise ValueError(f"Global request is not acceptable CBOR: {exc}") from None
    if not isinstance(raw, dict) or raw.get("v") != VERSION:
        raise ValueError("Global request must be a map with v=1")
    op, args = raw.get("op"), raw.get("args")
    if not isinstance(op, str) or not isinstance(args, list):
        raise ValueError("Global request needs a str 'op' and a list 'args'")
    return op, args


def encode_reply(ok: bool, value: Any, kind: str = "", correlation_id: str = "") -> bytes:
    """A reply body: ``value`` when ``ok``, else the error message and its
    ``kind``; ``correlation_id`` is the request's."""
    return bytes(
        cbor2.dumps({"v": VERSION, "ok": ok, "value": value, "kind": kind, "cid": correlation_id})
    )


def decode_reply(body: bytes, correlation_id: str | None = None) -> Any:
    """The value of a reply; raises the error it carries (ValueError for bad
    requests, RogerError otherwise). The body is decoded strictly
    (:mod:`roger_actors.cbor_strict`: no tags, bounded depth); a body that is
    not a reply raises RogerError, and so does a reply to another
    correlation id than ``correlation_id`` (when given)."""
    try:
        raw = cbor_strict.loads(body, max_depth=REPLY_DEPTH)
    except cbor_strict.CborError as exc:
        raise RogerError(f"malformed reply from Global: {exc}") from None
    if (
        not isinstance(raw, dict)
        or raw.get("v") != VERSION
        or not isinstance(raw.get("ok"), bool)
        or not isinstance(raw.get("kind", ""), str)
    ):
        raise RogerError("malformed reply from Global")
    if correlation_id is not None and raw.get("cid", correlation_id) != correlation_id:
        raise RogerError("reply from Global answers another request")
    if raw["ok"]:
        return raw.get("value")
    value = raw.get("value")
    message = value[:2000] if isinstance(value, str) else f"error of type {type(value).__name__}"
    if raw.get("kind") == "ValueError":
        raise ValueError(message)
    raise RogerError(message)


def replyable(reply_to: str) -> bool:
    """True for a ``reply_to`` a Global may publish its reply to (see
    :data:`REPLY_TO_PREFIXES`)."""
    return reply_to.startswith(REPLY_TO_PREFIXES)


# ---------------------------------------------------------------- requests


class _ReplyChannel:
    """A confirmed channel consuming direct reply-to; replies matched by correlation id."""

    def __init__(self) -> None:
        self.channel: Channel | None = None
        self.waiting: dict[str, tuple[asyncio.Future[bytes], ClusterAuth]] = {}
        #: Replaced after a nack: closed once no request waits on it.
        self.retired = False

    async def open(self, connection: Connection) -> None:
        self.channel = await connection.channel(publisher_confirms=True)
        await self.channel.consume(REPLY_TO, self._on_reply, no_ack=True)

    async def _on_reply(self, message: Message) -> None:
        props = message.properties
        correlation = props.correlation_id or ""
        waiting = self.waiting.get(correlation)
        if waiting is None:
            return
        future, auth = waiting
        body = message.body
        try:
            auth.check(PURPOSE_GLOBAL_REPLY, body, props.headers)
        except AuthError as exc:
            _dropped_replies.drop(str(exc))
            return  # not the Global's: keep waiting for the genuine reply
        self.waiting.pop(correlation, None)
        if not future.done():
            future.set_result(body)


_channels: weakref.WeakKeyDictionary[Connection, _ReplyChannel] = weakref.WeakKeyDictionary()
_opening: weakref.WeakKeyDictionary[Connection, asyncio.Lock] = weakref.WeakKeyDictionary()


def _home(connection: Connection) -> Connection:
    """The connection a reply channel is opened on and kept for: the shared
    connection under a link's view (one reply channel serves every link on
    it; replies are matched by correlation id), else the link's own."""
    return connection.shared if isinstance(connection, ConnectionView) else connection


async def _reply_channel(link: AmqpLink) -> _ReplyChannel:
    if link.connection is None or not link.is_open:
        raise ConnectionError("AMQP link is not connected")
    connection = _home(link.connection)
    lock = _opening.setdefault(connection, asyncio.Lock())
    async with lock:
        found = _channels.get(connection)
        if found is None or found.channel is None or found.channel.is_closed:
            found = _ReplyChannel()
            await found.open(connection)
            _channels[connection] = found
        return found


async def request(
    link: AmqpLink,
    partition_id: str,
    op: str,
    args: list[Any],
    timeout: float = CALL_TIMEOUT,
    auth: ClusterAuth = NO_AUTH,
) -> Any:
    """Send ``op(*args)`` to the partition's active Global and return its reply.

    Runs on the link's loop. The request is signed with ``auth`` and the
    reply must be (see the module docstring). Raises NotStartedError when no
    Global of the partition runs anywhere, GlobalTimeoutError when the broker
    nacks the request (its queue cannot take it now: try again), ValueError for a request Global
    refused, RogerError for a malformed reply, and GlobalTimeoutError when no
    (acceptable) reply came within ``timeout`` seconds.
    """
    queue = queue_name(partition_id)
    replies = await _reply_channel(link)
    correlation = uuid.uuid4().hex
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    replies.waiting[correlation] = (future, auth)
    body = encode_request(op, args)
    signed: dict[str, Any] = auth.headers(purpose_global_request(partition_id), body)
    channel = replies.channel
    assert channel is not None
    try:
        try:
            await channel.publish(
                body,
                routing_key=queue,
                properties=Properties(
                    reply_to=REPLY_TO,
                    correlation_id=correlation,
                    expiration=str(max(1, int(timeout * 1000))),
                    content_type="application/cbor",
                    headers=signed or None,
                ),
                mandatory=True,
            )
        except Unroutable:
            raise NotStartedError(
                f"partition {partition_id!r} is not started anywhere (no Global)"
            ) from None
        except Nacked:
            # Nacked: the request queue cannot take it now (a quorum queue
            # still starting, or electing a leader after a broker node died).
            # The next request goes out on a new channel: on RabbitMQ 3.10 a
            # channel that published to the queue during the election can
            # have every later publish nacked for minutes after the new
            # leader took over.
            _retire_reply_channel(link, replies)
            raise GlobalTimeoutError(
                f"the broker refused the request {op!r} to the Global of partition "
                f"{partition_id!r} (its request queue is not available now); try again"
            ) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise GlobalTimeoutError(
                    f"Global of partition {partition_id!r} did not answer {op!r} "
                    f"within {timeout} s"
                )
            try:
                answer = await asyncio.wait_for(asyncio.shield(future), min(left, PROBE_SECONDS))
            except TimeoutError:
                if not await _has_consumer(link, queue):
                    raise NotStartedError(
                        f"partition {partition_id!r} is not started anywhere (no Global)"
                    ) from None
                continue
            return decode_reply(answer, correlation)
    finally:
        replies.waiting.pop(correlation, None)
        if replies.retired and not replies.waiting and replies.channel is not None:
            close_in_background(replies.channel)


def _retire_reply_channel(link: AmqpLink, replies: _ReplyChannel) -> None:
    """Forget ``replies`` as ``link``'s reply channel: the next request opens
    a new one, and ``replies`` is closed when the last request waiting on it
    (each bounded by its own timeout) has ended."""
    connection = None if link.connection is None else _home(link.connection)
    if connection is not None and _channels.get(connection) is replies:
        del _channels[connection]
    replies.retired = True


async def _has_consumer(link: AmqpLink, queue: str) -> bool:
    try:
        _, consumers = await link.counts(queue)
    except NotFound:
        return False
    return consumers > 0


__all__ = [
    "CALL_TIMEOUT",
    "NO_AUTH",
    "QUEUE_ARGUMENTS",
    "REPLY_TO_PREFIXES",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "queue_name",
    "replyable",
    "request",
]
