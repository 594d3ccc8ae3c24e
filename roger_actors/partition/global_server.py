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
exchange, so every node hears them.

Persistence: requests that change the state are stored through the
configured ``StatePersister`` before they are answered, one store for all
the requests handled together (group commit), so an answered change is not
lost when the Global is killed right after. A store that fails is logged
and tried again every :data:`SAVE_SECONDS` (the answers are not held back:
until it succeeds, such changes live only in this Global). The state is
also stored when the broker connection is lost and on a clean stop (before
the consumer is closed, so the next Global loads what this one knew).

Bad input: a request that does not decode, names an unknown operation or
has bad arguments is answered with an error (``ValueError`` at the caller)
and acked; it never crashes the actor.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from pamqp import commands as spec
from thespian.actors import WatchMessage

from roger_actors.config import Config
from roger_actors.system_protocol import encode_command, exchange_name
from roger_actors.transport.amqp import AmqpLink, LinkLost
from roger_actors.transport.backoff import Backoff
from roger_actors.transport.loop import LoopThread
from supervision import From, Server

from .global_client import QUEUE_ARGUMENTS, decode_request, encode_reply, queue_name
from .global_state import Applied, GlobalState

log = logging.getLogger("roger_actors.global")

#: Seconds between two tries to store a state whose store failed.
SAVE_SECONDS = 1.0
#: Requests delivered to the active Global ahead of the one being handled.
PREFETCH = 64


@dataclass(frozen=True)
class GlobalStatus:
    """Call: ``{"pid", "connected", "loaded", "served"}`` of this Global
    (``loaded``: it is, or was since it last consumed, the active one)."""


@dataclass(frozen=True)
class _Request:
    generation: int
    tag: int
    body: bytes
    reply_to: str
    correlation_id: str


class Global(Server):
    """A partition's Global on this node; see the module docstring."""

    def init(self, partition_id: str, config: Config) -> None:
        """Connect and start consuming the partition's request queue."""
        self.partition_id = partition_id
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
            config.amqp.url(), self.io.post, config.amqp.connection_timeout_seconds or 10.0
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
                )
            )

        async def connect() -> None:
            try:
                await self.link.connect()
                assert self.link.connection is not None
                channel = await self.link.connection.channel(publisher_confirms=False)
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
            answers: list[tuple[Any, _Request, bytes, list[bytes]]] = []
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

    def _load(self) -> GlobalState:
        if not self.persister_ready:
            self.persister.init(self.partition_id)
            self.persister_ready = True
        data = self.persister.load(self.partition_id)
        try:
            state = GlobalState.decode(data)
        except ValueError:
            log.exception("%s: stored Global state unreadable; starting empty", self.partition_id)
            state = GlobalState()
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
            self.persister.store(self.partition_id, self.state.encode())
        except Exception:
            log.exception("%s: storing the Global state failed; will retry", self.partition_id)
            return
        self.dirty = False

    def _on_request(self, request: _Request) -> tuple[Any, _Request, bytes, list[bytes]]:
        """Apply one request; returns what :meth:`_answer` needs to answer it."""
        if self.state is None:
            self.state = self._load()
        applied: Applied | None = None
        try:
            op, args = decode_request(request.body)
            applied = self.state.apply(self.partition_id, op, args)
            reply = encode_reply(True, applied.value)
        except ValueError as exc:
            log.warning("%s: Global refused a request: %s", self.partition_id, exc)
            reply = encode_reply(False, str(exc), "ValueError")
        except Exception as exc:
            log.exception("%s: Global request failed", self.partition_id)
            reply = encode_reply(False, repr(exc), "error")
        self.served += 1
        casts: list[bytes] = []
        if applied is not None:
            self.dirty = self.dirty or applied.dirty
            casts = [encode_command(c, a, self.node_name) for c, a in applied.casts]
        return self.channel, request, reply, casts

    async def _answer(
        self, channel: Any, request: _Request, reply: bytes, casts: list[bytes]
    ) -> None:
        try:
            for body in casts:
                await channel.basic_publish(body, exchange=self.exchange, routing_key="")
            if request.reply_to:
                await channel.basic_publish(
                    reply,
                    routing_key=request.reply_to,
                    properties=spec.Basic.Properties(correlation_id=request.correlation_id),
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
