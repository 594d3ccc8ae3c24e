"""Roger's Global: the one place in the cluster where a partition's state lives.

Every node running a partition runs a Global actor; all of them consume the
partition's request queue (:mod:`roger_actors.partition.global_client`) with
``x-single-active-consumer``, so RabbitMQ delivers requests to exactly one of
them at a time, the *active* one, and to another one when its consumer goes
away (the process died, the connection dropped, the partition stopped there).

The active Global loads the state from the persister when it gets its first
request after starting to consume (so a Global that takes over starts from
the last snapshot, not from what it knew before), applies requests one at a
time in arrival order, replies, then acks the request. A request that was
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

Persistence: requests that change the state are stored through the
configured ``StatePersister`` before they are answered, one store for all
the requests handled together (group commit), so an answered change is not
lost when the Global is killed right after. A store that fails is logged
and tried again every :data:`SAVE_SECONDS` (the answers are not held back:
until it succeeds, such changes live only in this Global). The state is
also stored when the broker connection is lost and on a clean stop (before
the consumer is closed, so the next Global loads what this one knew).

A stored snapshot that fails its check (bad seal, not a snapshot, a store
that raises on load) is refused loudly (error log) and never replaced by an
empty state: the Global holds no state, answers every request with an
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
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from pamqp import commands as spec
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
from roger_actors.system_protocol import encode_command, exchange_name
from roger_actors.transport.amqp import AmqpLink, LinkLost, properties
from roger_actors.transport.backoff import Backoff
from roger_actors.transport.loop import LoopThread
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


@dataclass(frozen=True)
class GlobalStatus:
    """Call: ``{"pid", "connected", "loaded", "served", "dropped"}`` of this
    Global (``loaded``: it is, or was since it last consumed, the active one;
    ``dropped``: requests refused unanswered, see the module docstring)."""


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


class Global(Server):
    """A partition's Global on this node; see the module docstring."""

    def init(self, partition_id: str, config: Config) -> None:
        """Connect and start consuming the partition's request queue."""
        self.partition_id = partition_id
        self.auth = ClusterAuth(config.cluster_secret)
        self.ttl = config.cancel_mark_ttl
        self.drops = DropLog(log, f"requests to the Global of {partition_id!r}")
        #: When the last load was refused (monotonic), None when it was not.
        self.refused_at: float | None = None
        self.refused_logged = float("-inf")
        self.persister = config.make_persister()
        self.persister_ready = False
        self.state: GlobalState | None = None
        self.dirty = False
        self.served = 0
        self.connected = False
        self.generation = 0
        self.channel: Any = None
        self.exchange = exchange_name(config.system_exchange_prefix)
        self.node_name = config.node_name
        self.backoff = Backoff()
        self.io = LoopThread(f"roger-global-{partition_id}")
        self.link = AmqpLink(
            config.amqp.urls(), self.io.post, config.amqp.connection_timeout_seconds or 10.0
        )
        self.watch_fileno(self.io.fileno)
        self._connect()
        self.send_after(SAVE_SECONDS, "save")

    # ------------------------------------------------------------ connection

    def _connect(self) -> None:
        self.generation += 1
        generation = self.generation
        queue = queue_name(self.partition_id)

        async def on_message(message: Any) -> None:
            props = message.header.properties
            self.io.post(
                _Request(
                    generation,
                    int(message.delivery.delivery_tag),
                    bytes(message.body),
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
                await channel.exchange_declare(self.exchange, exchange_type="fanout", durable=True)
                await channel.queue_declare(queue, durable=True, arguments=QUEUE_ARGUMENTS)
                await channel.basic_qos(prefetch_count=PREFETCH)
                self.channel = channel
                await channel.basic_consume(queue, on_message)
            except Exception as exc:
                self.io.post(("failed", generation, repr(exc)))
                return
            channel.closing.add_done_callback(lambda _: self.io.post(("closed", generation)))
            self.io.post(("connected", generation))

        self.io.submit(connect())

    def handle_info(self, message: Any) -> None:
        """Requests and connection events; the save timer; reconnects."""
        if isinstance(message, WatchMessage):
            answers: list[tuple[Any, _Request, bytes | None, list[bytes]]] = []
            for event in self.io.drain():
                if isinstance(event, _Request):
                    if event.generation == self.generation:
                        answers.append(self._on_request(event))
                else:
                    self._on_event(event)
            if answers:
                # Group commit: what these requests changed is stored before
                # any of them is answered (and acked).
                self._save()
                for answer in answers:
                    self.io.submit(self._answer(*answer))
        elif message == "save":
            if self.state is not None and self.state.expire():
                self.dirty = True
            self._save()
            self.send_after(SAVE_SECONDS, "save")
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
                self.backoff.reset()
                log.info("%s: Global consuming its request queue", self.partition_id)
            elif event[0] == "failed":
                self._on_lost(f"cannot connect: {event[2]}")
            elif event[0] == "closed" and self.connected:
                self._on_lost("request channel closed")

    def _on_lost(self, why: str) -> None:
        """Save what changed, forget the state (another Global may own it now),
        and connect again after a back-off."""
        log.warning("%s: Global %s", self.partition_id, why)
        self._save()
        self.state = None
        self.connected = False
        self.generation += 1  # requests of the old channel were requeued by the broker
        self.io.submit(self.link.close())
        self.send_after(self.backoff.next(), "reconnect")

    # ------------------------------------------------------------ state

    def _load(self) -> GlobalState | None:
        """The stored state; empty when nothing is stored; None (logged as an
        error) when what is stored is refused or cannot be read."""
        now = time.monotonic()
        if self.refused_at is not None and now - self.refused_at < SAVE_SECONDS:
            return None
        try:
            if not self.persister_ready:
                self.persister.init(self.partition_id)
                self.persister_ready = True
            data = self.persister.load(self.partition_id)
            if not data:
                state = GlobalState(ttl=self.ttl)
            else:
                body = self.auth.unseal(purpose_snapshot(self.partition_id), data)
                state = GlobalState.decode(body, ttl=self.ttl)
        except Exception as exc:
            self.refused_at = now
            if now - self.refused_logged >= REFUSED_LOG_SECONDS:
                self.refused_logged = now
                shown = str(exc) if isinstance(exc, AuthError | ValueError) else repr(exc)
                reason = shown[:300]
                log.error(
                    "%s: Global refuses the stored state (%s: %s); it answers every request "
                    "with an error and tries again; it never starts empty while a state is "
                    "stored (remove or repair the stored snapshot to recover)",
                    self.partition_id,
                    type(exc).__name__,
                    reason,
                )
            return None
        if self.refused_at is not None:
            log.warning("%s: Global loaded its stored state after refusing it", self.partition_id)
        self.refused_at = None
        log.info(
            "%s: Global active with %d cancelled, %d queued, %d executing, %d paused",
            self.partition_id,
            len(state.cancelled),
            len(state.queued),
            len(state.executing),
            len(state.paused),
        )
        return state

    def _save(self) -> None:
        if not self.dirty or self.state is None:
            return
        try:
            if not self.persister_ready:
                self.persister.init(self.partition_id)
                self.persister_ready = True
            sealed = self.auth.seal(purpose_snapshot(self.partition_id), self.state.encode())
            self.persister.store(self.partition_id, sealed)
        except Exception:
            log.exception("%s: storing the Global state failed; will retry", self.partition_id)
            return
        self.dirty = False

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
        if self.state is None:
            self.state = self._load()
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
                confirm = await channel.basic_publish(
                    body,
                    exchange=self.exchange,
                    routing_key="",
                    properties=properties(headers=self.auth.headers(PURPOSE_SYSTEM, body) or None),
                )
                if isinstance(confirm, spec.Basic.Ack):
                    return
                log.warning("%s: Global cast not confirmed (%r); again", self.partition_id, confirm)
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
                await channel.basic_publish(
                    reply,
                    routing_key=request.reply_to,
                    properties=spec.Basic.Properties(
                        correlation_id=request.correlation_id, headers=signed or None
                    ),
                )
            await channel.basic_ack(request.tag)
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
            }
        return super().handle_call(request, from_)

    def terminate(self, reason: Any) -> None:
        """Store a changed state, then close the connection: requests not
        answered go back to the queue, for the next active Global."""
        self._save()
        try:
            self.io.submit(self.link.close()).result(timeout=5)
        except Exception:
            log.debug("closing the Global link failed", exc_info=True)
        self.io.stop()
        close = getattr(self.persister, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.debug("closing the persister failed", exc_info=True)


__all__ = ["Global", "GlobalStatus"]
