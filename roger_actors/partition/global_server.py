"""Roger's Global: the one place in the cluster where a partition's state lives.

Every node running a partition runs a Global actor; all of them consume the
partition's request queue (:mod:`roger_actors.partition.global_client`) with
``x-single-active-consumer``, so RabbitMQ delivers requests to exactly one of
them at a time, the *active* one, and to another one when its consumer goes
away (the process died, the connection dropped, the partition stopped there).

A Global becomes the active one when it gets its first request after it
(re)connected. Before it answers anything it *takes over*: it reads the
partition's replica queue (:func:`replica_queue_name`) and the persister's
snapshot and takes the newest (largest ``(epoch, seq)``, see
:mod:`~roger_actors.partition.global_state`) of those and of its own memory
(the state it held when it last lost its connection), in a new epoch past
every one it saw, and commits that before its first answer. So a Global that
comes back after another one was active and changed the state never wins
with its old state: the other's replicas are newer. It applies requests one
at a time in arrival order, replies, then acks the request. A request that was
delivered but not acked when the Global died goes back to the queue and is
answered by the next one. Casts that follow from a request (``cancel``,
``queue_pause``, ``queue_resume``) are published on the ``system`` fanout
exchange, so every node hears them, with publisher confirms: a cast that
is not confirmed is published again (back-off up to
:data:`CAST_RETRY_MAX_SECONDS`), and the request is answered and acked
only once its casts are confirmed. If the Global dies or loses its channel
before that, the request goes back to the queue and the next Global applies
it again; every operation that casts is idempotent (``cancel_job`` renews
the mark), so the cast then goes out from there.

Authentication (``cluster_secret``, :mod:`roger_actors.cluster_auth`): a
request must be signed for ``purpose_global_request(partition)``; one that is
not, or that names a ``reply_to`` other than direct reply-to or a
server-named queue, is acked and dropped, unanswered, without touching the
state (counted and logged by a rate-limited :class:`DropLog`). Replies are
signed with ``PURPOSE_GLOBAL_REPLY``, casts with ``PURPOSE_SYSTEM``, and
snapshots are sealed with ``purpose_snapshot(partition)``.

Persistence and replication: requests that change the state get the next
``seq`` and are stored through the configured ``StatePersister`` and
published (persistent, confirmed) to the replica queue before they are
answered, one store and one replica for all the requests handled together
(group commit), so an answered change is not lost when the Global is killed
right after or loses its connection, even with the ``Stub`` persister. The
replica queue is declared by the first replica a Global publishes (a
partition whose Global state never changed has none, and a take-over finds
nothing to read there), is durable, keeps the two newest replicas (``x-max-length``
2, so a late replica of a Global that lost its turn cannot evict the newer
one alone) and expires :data:`REPLICA_EXPIRES_SECONDS` after no Global of
the partition touched it (the active one does every :data:`REPLICA_RENEW_SECONDS`:
a ``basic.get`` whose message goes straight back; a declare alone does not
keep a quorum queue alive, and the replicas expired ten minutes after the
queue's creation).
Its messages are marked (AMQP ``type`` :data:`REPLICA_TYPE`, ``app_id``
:data:`REPLICA_APP_ID`) and sealed as snapshots are. A store or a replica
that fails is logged and tried again every :data:`SAVE_SECONDS` (the answers
are not held back: until it succeeds, such changes live only in this
Global). The state is also stored when the broker connection is lost and on
a clean stop (before the consumer is closed, so the next Global loads what
this one knew).

A stored snapshot or a replica that fails its check (bad seal, not a
snapshot, a message in the replica queue that is not marked as a replica, a
store that raises on load) is refused loudly (error log) and never replaced
by an empty state: the Global holds no state, answers every request with an
error (``RogerError`` at the caller, the request not applied), stores
nothing, and tries the load again on the next request, at most every
:data:`SAVE_SECONDS`. Only when nothing is stored at all does it start
empty. Expired cancel marks are dropped on every request and every
:data:`SAVE_SECONDS`.

Bad input: a request that does not decode, names an unknown operation or
has bad arguments is answered with an error (``ValueError`` at the caller)
and acked; it never crashes the actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from thespian.actors import WatchMessage

from roger_actors.cluster_auth import (
    PURPOSE_GLOBAL_REPLY,
    PURPOSE_SYSTEM,
    AuthError,
    ClusterAuth,
    DropLog,
    purpose_global_request,
    purpose_snapshot,
)
from roger_actors.config import Config
from roger_actors.queue import validate_partition_id
from roger_actors.system_protocol import encode_command, exchange_name
from roger_actors.transport.amqp import LinkLost, properties, together
from roger_actors.transport.base import (
    Channel,
    Connection,
    Message,
    Nacked,
    NotFound,
    Properties,
)
from roger_actors.transport.link_owner import LinkOwner
from supervision import From, Server

from .global_client import QUEUE_ARGUMENTS, decode_request, encode_reply, queue_name, replyable
from .global_state import Applied, GlobalState

log = logging.getLogger("roger_actors.global")

#: Seconds between two tries to store a state whose store failed.
SAVE_SECONDS = 1.0
#: Requests delivered to the active Global ahead of the one being handled.
PREFETCH = 64
#: First and longest wait between two tries to publish a cast not confirmed.
CAST_RETRY_SECONDS = 0.1
CAST_RETRY_MAX_SECONDS = 5.0
#: Seconds between two error lines about a refused snapshot.
REFUSED_LOG_SECONDS = 30.0
#: Prefix of a partition's replica queue (see the module docstring).
REPLICA_PREFIX = "roger-replica."
#: The replica queue keeps the two newest replicas (a late one from a Global
#: that lost its turn cannot evict the newer one alone) and is deleted this
#: long after no Global of the partition touched it.
REPLICA_EXPIRES_SECONDS = 600
REPLICA_ARGUMENTS: dict[str, Any] = {
    "x-max-length": 2,
    "x-overflow": "drop-head",
    "x-expires": REPLICA_EXPIRES_SECONDS * 1000,
}
#: A Global that took over or published a replica touches the replica queue
#: this often (renews its x-expires: see :meth:`AmqpLink.touch`), a quarter
#: of the expiry, when the queue is there; the
#: first time at a random point of that period, so that the partitions of a
#: node do not all renew at once.
REPLICA_RENEW_SECONDS = REPLICA_EXPIRES_SECONDS / 4
#: AMQP ``type`` and ``app_id`` of a replica message.
REPLICA_TYPE = "roger-global-replica"
REPLICA_APP_ID = "roger-actors"
#: Most messages read from the replica queue at a take-over.
REPLICA_READ_LIMIT = 16


def replica_queue_name(partition_id: str) -> str:
    """The durable queue holding the newest replicas of a partition's state."""
    return REPLICA_PREFIX + validate_partition_id(partition_id)


@dataclass(frozen=True)
class GlobalStatus:
    """Call: ``{"pid", "connected", "loaded", "served", "dropped", "version"}``
    of this Global (``loaded``: it is, or was since it last consumed, the
    active one; ``dropped``: requests refused unanswered, see the module
    docstring; ``version``: ``[epoch, seq]`` of the state it holds, None
    when it holds none)."""


@dataclass(frozen=True)
class _Request:
    generation: int
    tag: int
    body: bytes
    reply_to: str
    correlation_id: str
    headers: dict[str, Any] | None = None


class _Unavailable(Exception):
    """The Global holds no state (its stored state was refused)."""


class GlobalServer(Server, LinkOwner):
    """A partition's Global on this node; see the module docstring."""

    def init(self, partition_id: str, config: Config) -> None:
        """Connect and start consuming the partition's request queue."""
        self.partition_id = partition_id
        self.auth = ClusterAuth(config.cluster_secret)
        self.ttl = config.cancel_mark_ttl
        self.drops = DropLog(log, f"requests to the Global of {partition_id!r}")
        #: When the last take-over was refused (monotonic), None when it was not.
        self.refused_at: float | None = None
        self.refused_logged = float("-inf")
        self.persister = config.make_persister()
        self.persister_ready = False
        #: The state while this Global is the active one, else None.
        self.state: GlobalState | None = None
        #: The state this Global held when it last stopped being active: one
        #: candidate of its next take-over (see :meth:`_take_over`).
        self.memory: GlobalState | None = None
        #: Requests that came while the take-over reads the replicas.
        self.pending: list[_Request] = []
        self.taking_over = False
        #: The state changed since it was last committed (needs a new seq).
        self.dirty = False
        #: The last committed snapshot (sealed) and whether the persister
        #: and the replica queue have it.
        self.committed: bytes | None = None
        self.unstored = False
        self.unreplicated = False
        self.renewed = time.monotonic() - random.uniform(0, REPLICA_RENEW_SECONDS)
        self.served = 0
        self.connected = False
        self.generation = 0
        self.channel: Any = None
        self.replica_channel: Channel | None = None
        #: The connection ``replica_channel`` belongs to.
        self.replica_on: Connection | None = None
        self.replica_queue = replica_queue_name(partition_id)
        #: The replica queue was there at the take-over or declared since
        #: (only then is it touched to keep it).
        self.replica_exists = False
        self.exchange = exchange_name(config.system_exchange_prefix)
        self.node_name = config.node_name
        self.open_link(
            f"roger-global-{partition_id}",
            config.amqp.urls(),
            config.amqp.connection_timeout_seconds,
        )
        self._connect()
        #: The save timer armed (:meth:`_arm_save`): its number and when it fires.
        self.save_timer = 0
        self.save_at: float | None = None
        self._arm_save()

    # ------------------------------------------------------------ connection

    def _connect(self) -> None:
        self.generation += 1
        generation = self.generation
        queue = queue_name(self.partition_id)

        async def on_message(message: Message) -> None:
            props = message.properties
            self.io.post(
                _Request(
                    generation,
                    message.delivery_tag,
                    message.body,
                    props.reply_to or "",
                    props.correlation_id or "",
                    dict(props.headers) if props.headers else None,
                )
            )

        async def connect() -> None:
            try:
                await self.link.connect()
                assert self.link.connection is not None
                channel = await self.link.connection.channel(publisher_confirms=True)
                await together(
                    channel.exchange_declare(self.exchange, exchange_type="fanout", durable=True),
                    self.link.declare_replicated(queue, QUEUE_ARGUMENTS),
                )
                await channel.qos(PREFETCH)
                self.channel = channel
                await channel.consume(queue, on_message)
            except Exception as exc:
                self.io.post(("failed", generation, repr(exc)))
                return
            channel.add_close_callback(lambda _: self.io.post(("closed", generation)))
            self.io.post(("connected", generation))

        self.io.submit(connect())

    async def _replica_channel(self) -> Channel:
        """The open channel (with confirms) for the replica queue, opened (and
        the queue declared) when there is none: at the first replica this
        Global publishes, so a partition whose Global state never changed
        has no replica queue. Raises when the link is down."""
        channel = self.replica_channel
        connection = self.link.connection
        if channel is None or channel.is_closed or self.replica_on is not connection:
            if connection is None or not self.link.is_open:
                raise ConnectionError("AMQP link is not connected")
            channel = await connection.channel(publisher_confirms=True)
            await self.link.declare_replicated(self.replica_queue, REPLICA_ARGUMENTS)
            self.replica_channel, self.replica_on = channel, connection
            self.replica_exists = True
        return channel

    def handle_info(self, message: Any) -> None:
        """Requests and connection events; the save timer; reconnects."""
        try:
            self._handle_info(message)
        finally:
            self._arm_save()

    def _save_delay(self) -> float:
        """Seconds until the next save is needed: :data:`SAVE_SECONDS` while a
        change is not committed, stored or replicated; else when the replica
        queue is due for a renewal or the oldest cancel mark for expiry, so an
        idle Global wakes up once per :data:`REPLICA_RENEW_SECONDS` (150 s)."""
        if self.dirty or self.unstored or self.unreplicated:
            return SAVE_SECONDS
        delay = REPLICA_RENEW_SECONDS - (time.monotonic() - self.renewed)
        if self.state is not None:
            due = self.state.expiry_in()
            if due is not None:
                delay = min(delay, due + 1.0)  # the marks' clock counts whole seconds
        return max(SAVE_SECONDS, delay)

    def _arm_save(self) -> None:
        """Arm the save timer for :meth:`_save_delay` unless one armed fires
        sooner; after every message. A timer superseded fires unheeded."""
        delay = self._save_delay()
        at = time.monotonic() + delay
        if self.save_at is not None and self.save_at <= at + 0.01:
            return
        self.save_timer += 1
        self.save_at = at
        self.send_after(delay, ("save", self.save_timer))

    def _handle_info(self, message: Any) -> None:
        if isinstance(message, WatchMessage):
            answers: list[tuple[Any, _Request, bytes | None, list[bytes]]] = []
            for event in self.io.drain():
                if isinstance(event, _Request):
                    if event.generation != self.generation:
                        continue
                    if self.state is None and (self.pending or not self._refused_recently()):
                        # Nothing is answered before the take-over is done.
                        self.pending.append(event)
                        self._start_take_over()
                    else:
                        answers.append(self._on_request(event))
                elif isinstance(event, tuple) and event[0] == "replicas":
                    if event[1] == self.generation and self.taking_over:
                        self.taking_over = False
                        self._take_over(event[2], event[3])
                        pending, self.pending = self.pending, []
                        answers.extend(self._on_request(r) for r in pending)
                elif isinstance(event, tuple) and event[0] == "unreplicated":
                    if event[1] == self.generation and event[2] is self.committed:
                        self.unreplicated = True
                else:
                    self._on_event(event)
            if answers:
                # Group commit: what these requests changed is stored and
                # replicated before any of them is answered (and acked).
                self._commit(answers)
        elif isinstance(message, tuple) and message[:1] == ("save",):
            if message[1:] != (self.save_timer,):
                return  # superseded by a sooner one
            self.save_at = None
            if self.state is not None and self.state.expire():
                self.dirty = True
            self._commit([])
            self._renew()
        elif message == "reconnect":
            self._connect()
        else:
            super().handle_info(message)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, LinkLost):
            self._on_lost(f"connection lost: {event.reason}")
        elif isinstance(event, tuple) and event[1] == self.generation:
            if event[0] == "connected":
                self.connected = True
                self.link_up()
                log.info("%s: Global consuming its request queue", self.partition_id)
            elif event[0] == "failed":
                self._on_lost(f"cannot connect: {event[2]}")
            elif event[0] == "closed" and self.connected:
                self._on_lost("request channel closed")

    def _on_lost(self, why: str) -> None:
        """Store what changed, keep the state only as a candidate of the next
        take-over (another Global may own it now), and connect again after a
        back-off."""
        log.warning("%s: Global %s", self.partition_id, why)
        self._commit([], replicate=False)
        if self.state is not None:
            self.memory = self.state
        self.state = None
        self.pending.clear()  # the broker requeued them with the channel
        self.taking_over = False
        self.connected = False
        self.generation += 1  # requests of the old channel were requeued by the broker
        self.io.submit(self.link.close())
        self.reconnect_later()

    # ------------------------------------------------------------ state

    def _refused_recently(self) -> bool:
        return self.refused_at is not None and time.monotonic() - self.refused_at < SAVE_SECONDS

    def _start_take_over(self) -> None:
        """Read the replica queue (on the loop), then :meth:`_take_over`."""
        if self.taking_over:
            return
        self.taking_over = True
        generation = self.generation

        async def read() -> None:
            try:
                found = await self._read_replicas()
            except Exception as exc:
                self.io.post(("replicas", generation, None, exc))
            else:
                self.io.post(("replicas", generation, found, None))

        self.io.submit(read())

    async def _read_replicas(self) -> list[bytes]:
        """The bodies of the messages in the replica queue, which is left as it
        was (they are got unacked on a channel of their own, closed after);
        none when there is no replica queue (no Global of the partition
        published a replica, or none touched it for REPLICA_EXPIRES_SECONDS).
        Raises ValueError for a message that is not marked as a replica."""
        assert self.link.connection is not None
        channel = await self.link.connection.channel(publisher_confirms=False)
        found: list[bytes] = []
        self.replica_exists = True
        try:
            for _ in range(REPLICA_READ_LIMIT):
                try:
                    message = await channel.get(self.replica_queue)
                except NotFound:
                    self.replica_exists = False  # never declared, or expired
                    break
                if message is None:
                    break
                props = message.properties
                if props.type != REPLICA_TYPE or props.app_id != REPLICA_APP_ID:
                    raise ValueError(
                        f"a message in {self.replica_queue!r} is not a replica of the Global "
                        f"state (no type {REPLICA_TYPE!r} from {REPLICA_APP_ID!r})"
                    )
                found.append(message.body)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return found

    def _take_over(self, replicas: list[bytes] | None, error: BaseException | None) -> None:
        """Become the active Global: the state is the newest (largest
        ``(epoch, seq)``) of this Global's memory, the replicas and the
        persister's snapshot, in a new epoch past every one seen. Refused
        (``self.state`` stays None, logged) when the replicas could not be read
        or one of them, or the stored snapshot, fails its check."""
        candidates: list[GlobalState] = []
        try:
            if error is not None:
                raise error
            assert replicas is not None
            purpose = purpose_snapshot(self.partition_id)
            for blob in replicas:
                candidates.append(
                    GlobalState.decode(self.auth.unseal(purpose, blob), ttl=self.ttl)
                )
            stored = self._load()
        except Exception as exc:
            self._refuse(exc)
            return
        if stored is None:
            return  # refused (logged by _load)
        candidates.append(stored)
        if self.memory is not None:
            candidates.append(self.memory)
        state = max(candidates, key=GlobalState.version)
        seen = max(c.epoch for c in candidates)
        state.epoch = seen + 1
        state.seq = 0
        self.state, self.memory = state, None
        # The new epoch is committed (stored, replicated) before any answer,
        # unless no Global of the partition ever had a state: an empty first
        # epoch fences nothing off (every change is replicated before it is
        # answered), and a partition whose state never changes then has no
        # replica queue.
        self.dirty = seen > 0 or state != GlobalState(ttl=state.ttl)
        if self.refused_at is not None:
            log.warning("%s: Global took over after refusing the state", self.partition_id)
        self.refused_at = None
        log.info(
            "%s: Global active (epoch %d) with %d cancelled, %d queued, %d executing, "
            "%d paused (from %d replicas, the persister%s)",
            self.partition_id,
            state.epoch,
            len(state.cancelled),
            len(state.queued),
            len(state.executing),
            len(state.paused),
            len(replicas or ()),
            " and its memory" if len(candidates) > len(replicas or ()) + 1 else "",
        )

    def _refuse(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.refused_at = now
        if now - self.refused_logged >= REFUSED_LOG_SECONDS:
            self.refused_logged = now
            shown = str(exc) if isinstance(exc, AuthError | ValueError) else repr(exc)
            log.error(
                "%s: Global refuses the stored or replicated state (%s: %s); it answers "
                "every request with an error and tries again; it never starts empty while "
                "a state is stored (remove or repair the stored snapshot, or purge %r, "
                "to recover)",
                self.partition_id,
                type(exc).__name__,
                shown[:300],
                self.replica_queue,
            )

    def _load(self) -> GlobalState | None:
        """The persister's state; empty (version (0, 0)) when nothing is
        stored; None (logged as an error) when what is stored is refused or
        cannot be read."""
        try:
            if not self.persister_ready:
                self.persister.init(self.partition_id)
                self.persister_ready = True
            data = self.persister.load(self.partition_id)
            if not data:
                return GlobalState(ttl=self.ttl)
            body = self.auth.unseal(purpose_snapshot(self.partition_id), data)
            return GlobalState.decode(body, ttl=self.ttl)
        except Exception as exc:
            self._refuse(exc)
            return None

    def _commit(
        self,
        answers: list[tuple[Any, _Request, bytes | None, list[bytes]]],
        replicate: bool = True,
    ) -> None:
        """Group commit: a changed state gets the next ``seq`` and its sealed
        snapshot is stored (persister, on this thread) and replicated (the
        replica queue, confirmed); then ``answers`` are sent. A failed store or
        replication is logged and tried again every :data:`SAVE_SECONDS`; the
        answers are not held back for it."""
        if self.state is not None and self.dirty:
            self.state.seq += 1
            self.committed = self.auth.seal(
                purpose_snapshot(self.partition_id), self.state.encode()
            )
            self.dirty = False
            self.unstored = self.unreplicated = True
        if self.unstored and self.committed is not None:
            self._store(self.committed)
        body = self.committed if replicate and self.unreplicated else None
        if body is not None:
            self.unreplicated = False
        if body is None and not answers:
            return
        self.io.submit(self._replicate_then_answer(self.generation, body, answers))

    def _store(self, sealed: bytes) -> None:
        try:
            if not self.persister_ready:
                self.persister.init(self.partition_id)
                self.persister_ready = True
            self.persister.store(self.partition_id, sealed)
        except Exception:
            log.exception("%s: storing the Global state failed; will retry", self.partition_id)
            return
        self.unstored = False

    async def _replicate_then_answer(
        self,
        generation: int,
        body: bytes | None,
        answers: list[tuple[Any, _Request, bytes | None, list[bytes]]],
    ) -> None:
        """Publish the replica ``body`` (persistent, confirmed), then answer."""
        if body is not None:
            try:
                channel = await self._replica_channel()
                await channel.publish(
                    body,
                    routing_key=self.replica_queue,
                    properties=Properties(
                        type=REPLICA_TYPE, app_id=REPLICA_APP_ID, delivery_mode=2
                    ),
                )
            except Exception as exc:
                log.warning(
                    "%s: replicating the Global state failed (%r); will retry",
                    self.partition_id,
                    exc,
                )
                self.io.post(("unreplicated", generation, body))
        if answers:
            await asyncio.gather(*(self._answer(*answer) for answer in answers))

    def _renew(self) -> None:
        """Touch the replica queue now and then (a touch renews its x-expires;
        a declare alone does not keep a quorum queue), when there is one: it
        is declared by the first replica published."""
        now = time.monotonic()
        if not self.connected or now - self.renewed < REPLICA_RENEW_SECONDS:
            return
        self.renewed = now
        if not self.replica_exists:
            return

        async def renew() -> None:
            with contextlib.suppress(Exception):
                await self.link.touch(self.replica_queue)

        self.io.submit(renew())

    def _on_request(self, request: _Request) -> tuple[Any, _Request, bytes | None, list[bytes]]:
        """Apply one request; returns what :meth:`_answer` needs to answer it
        (reply None: acked unanswered)."""
        try:
            purpose = purpose_global_request(self.partition_id)
            self.auth.check(purpose, request.body, request.headers)
        except AuthError as exc:
            self.drops.drop(str(exc))
            return self.channel, request, None, []
        if request.reply_to and not replyable(request.reply_to):
            self.drops.drop("reply_to is not a reply queue")
            return self.channel, request, None, []
        applied: Applied | None = None
        try:
            op, args = decode_request(request.body)
            if self.state is None:
                raise _Unavailable()
            applied = self.state.apply(self.partition_id, op, args)
            reply = encode_reply(True, applied.value, "", request.correlation_id)
        except _Unavailable:
            reply = encode_reply(
                False,
                f"the stored Global state of partition {self.partition_id!r} is refused "
                "(see the Global's log); the request was not applied",
                "error",
                request.correlation_id,
            )
        except ValueError as exc:
            log.warning("%s: Global refused a request: %s", self.partition_id, str(exc)[:500])
            reply = encode_reply(False, str(exc), "ValueError", request.correlation_id)
        except Exception as exc:
            log.exception("%s: Global request failed", self.partition_id)
            reply = encode_reply(False, repr(exc), "error", request.correlation_id)
        self.served += 1
        casts: list[bytes] = []
        if applied is not None:
            self.dirty = self.dirty or applied.dirty
            casts = [encode_command(c, a, self.node_name) for c, a in applied.casts]
        return self.channel, request, reply, casts

    async def _publish_cast(self, channel: Any, body: bytes) -> None:
        """Publish one cast on the System exchange until the broker confirms it
        (back-off between tries); raises when the channel is closed."""
        wait = CAST_RETRY_SECONDS
        while True:
            try:
                await channel.publish(
                    body,
                    exchange=self.exchange,
                    routing_key="",
                    properties=properties(headers=self.auth.headers(PURPOSE_SYSTEM, body) or None),
                )
                return
            except Nacked as exc:
                log.warning("%s: Global cast not confirmed (%r); again", self.partition_id, exc)
            except Exception as exc:
                if channel.is_closed:
                    raise
                log.warning("%s: Global cast failed (%r); again", self.partition_id, exc)
            await asyncio.sleep(wait)
            wait = min(wait * 2, CAST_RETRY_MAX_SECONDS)

    async def _answer(
        self, channel: Any, request: _Request, reply: bytes | None, casts: list[bytes]
    ) -> None:
        """Publish the casts (confirmed), then the reply (signed), then ack. On
        any failure the request stays unacked: the broker gives it to the next
        Global when this channel closes."""
        try:
            for body in casts:
                await self._publish_cast(channel, body)
            if request.reply_to and reply is not None:
                signed: dict[str, Any] = self.auth.headers(PURPOSE_GLOBAL_REPLY, reply)
                await channel.publish(
                    reply,
                    routing_key=request.reply_to,
                    properties=Properties(
                        correlation_id=request.correlation_id, headers=signed or None
                    ),
                )
            await channel.ack(request.tag)
        except Exception as exc:
            log.warning("%s: Global could not answer: %r", self.partition_id, exc)

    # ------------------------------------------------------------ calls

    def handle_call(self, request: Any, from_: From) -> Any:
        """GlobalStatus."""
        if isinstance(request, GlobalStatus):
            return {
                "pid": os.getpid(),
                "connected": self.connected,
                "loaded": self.state is not None,
                "served": self.served,
                "dropped": self.drops.total,
                "version": list(self.state.version()) if self.state is not None else None,
            }
        return super().handle_call(request, from_)

    def terminate(self, reason: Any) -> None:
        """Store a changed state, then close the connection: requests not
        answered go back to the queue, for the next active Global."""
        self._commit([], replicate=False)
        last = None
        if self.connected and self.unreplicated and self.committed is not None:
            last = self._replicate_then_answer(self.generation, self.committed, [])
        self.close_link("Global", last, 5.0)
        close = getattr(self.persister, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.debug("closing the persister failed", exc_info=True)


__all__ = ["GlobalServer", "GlobalStatus", "replica_queue_name"]
