"""Roger's System: the node's broker connection and the cluster around it.

The System actor holds the node's own AMQP connection (reconnecting with
back-off when it drops) and, on it, the node's part of the cluster:

- the durable fanout exchange :func:`~roger_actors.system_protocol.exchange_name`
  (``system``, or ``<prefix>system``), and two exclusive server-named queues:
  the *command* queue, bound to the exchange, and the *reply* queue, where
  other nodes answer this node's calls (through the default exchange);
- a heartbeat cast every :data:`HEARTBEAT_INTERVAL` seconds; the members of
  the cluster are the nodes heard from within :data:`HEARTBEAT_TIMEOUT`
  (a node that stops cleanly says ``leave`` and drops out at once);
- the commands it answers: ``ping`` ("pong"), ``heartbeat``, ``leave``, and
  the partition commands ``cancel``, ``queue_pause``, ``queue_resume``, which
  are forwarded to the node's registry as
  :class:`~roger_actors.system_protocol.PartitionCommand` (answered "ok");
  the commands of :data:`~roger_actors.system_protocol.APPLY_COMMANDS`
  (``node_info``, ``partition_start``...) it does not answer: it forwards
  them as :class:`~roger_actors.system_protocol.ApplyCommand` to the node's
  ApplySystem (:mod:`roger_actors.node.apply_system`), which replies over its own
  connection (an error reply comes from the System only when the
  ApplySystem cannot be reached);
  anything else is answered with an error (ok=False) and logged. A
  malformed message, or a reply nobody waits for, is logged and dropped.

Every message taken from the broker is checked before anything is done with
it: its size, its signature (with a ``cluster_secret``: purpose
:data:`~roger_actors.cluster_auth.PURPOSE_SYSTEM` on the command queue,
:data:`~roger_actors.cluster_auth.PURPOSE_SYSTEM_REPLY` on the reply queue),
its shape, and, for a call, its ``reply_to`` (a server-named queue or direct
reply-to only). A message that fails is dropped: it changes nothing, is
counted in :class:`Stats` and logged at most once per 10 s
(:class:`~roger_actors.cluster_auth.DropLog`). Everything this System
publishes is signed the same way. No message, however hostile, makes the
System raise: a failure while handling one is logged and counted
(``"errors"``).

The System's connection is named ``<name>-system`` after the ``name`` query
parameter of the AMQP URL (``roger-system <node name>`` without one), so an
operator can tell it apart in ``rabbitmqctl list_connections``. Each time its
subscription is (re)established it sends
:class:`~roger_actors.system_protocol.Resync` to the registry: the partitions'
Consumers fetch their Global's snapshot again, catching up on casts missed
while it was down.

Cluster calls (:class:`ClusterCall`) publish the command and gather one reply
per live member (this node included) until all answered or the timeout
passed; casts (:class:`ClusterCast`) only wait for the broker's confirm.

A node is *active* until ``SetInactive`` (the first step of a graceful
shutdown); an inactive node starts no partition (the registry asks). As in
Roger, a node takes System commands for as long as it runs: the
``System.unsubscribe_all`` facade stops the node's job consumption, not its
commands (see :mod:`roger_actors.node.facades`).

The module functions at the bottom (:func:`call`, :func:`cast`...) are the
client side, used by the ``roger_actors.System`` facade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from thespian.actors import ActorSystem, PoisonMessage, WatchMessage

from supervision import NOREPLY, From, Server, TimerRef
from supervision import call as sv_call
from supervision.protocol import CallReply, WhichChildren

from ..cluster_auth import AuthError, ClusterAuth, DropLog
from ..config import Config
from ..job import bounded_repr
from ..system_protocol import (
    APPLY_COMMANDS,
    PARTITION_COMMANDS,
    ApplyCommand,
    CommandError,
    PartitionCommand,
    Resync,
    SystemCommand,
    SystemReply,
    check_message,
    decode_command,
    decode_reply,
    encode_command,
    encode_reply,
    exchange_name,
    publish_command,
    publish_reply,
    valid_reply_to,
)
from ..transport.amqp import AmqpLink, LinkLost
from ..transport.backoff import Backoff
from ..transport.base import Channel, Message
from ..transport.link_owner import LinkOwner

log = logging.getLogger("roger_actors.system")

#: Seconds between two heartbeats of a node.
HEARTBEAT_INTERVAL = 1.0
#: A node not heard from for this many seconds is dead (not a member).
HEARTBEAT_TIMEOUT = 5.0
#: Default seconds a cluster call waits for the replies.
DEFAULT_CALL_TIMEOUT = 5.0
#: Extra seconds a client waits for the System beyond a cluster call's timeout.
CLIENT_MARGIN = 10.0
#: Seconds between two looks for the registry (or ApplySystem) when it is not running.
REGISTRY_RETRY = 0.5
#: Looks for the registry (or ApplySystem) before the commands for it are dropped.
REGISTRY_ATTEMPTS = 40
#: Most members a node keeps: heartbeats of further new names are dropped.
MAX_MEMBERS = 4096

#: The counters of :class:`Stats`.
STATS_KEYS = (
    "commands",
    "replies",
    "malformed",
    "unknown_command",
    "unknown_reply",
    "unauthenticated",
    "oversized",
    "bad_reply_to",
    "duplicate_reply",
    "too_many_members",
    "errors",
    "dropped",
)


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class IsConnected:
    """Call: True while the node's broker connection is up."""


@dataclass(frozen=True)
class IsActive:
    """Call: True until ``SetInactive``."""


@dataclass(frozen=True)
class SetInactive:
    """Call: mark the node inactive (it is shutting down)."""


@dataclass(frozen=True)
class ClusterCast:
    """Call: publish ``command`` with ``args`` to every node (this one included);
    answered None once the broker confirmed it, ConnectionError when not
    connected."""

    command: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ClusterCall:
    """Call: run ``command`` with ``args`` on every live node; answered with a
    list of ``(node_name, value)`` sorted by node name, one per node that
    replied within ``timeout`` seconds. ``value`` is the node's result, or a
    :class:`~roger_actors.system_protocol.CommandError` when it failed there.
    ConnectionError when not connected; ValueError for a bad timeout."""

    command: str
    args: tuple[Any, ...] = ()
    timeout: float = DEFAULT_CALL_TIMEOUT


@dataclass(frozen=True)
class Members:
    """Call: sorted names of the live nodes (this one while it takes commands)."""


@dataclass(frozen=True)
class Stats:
    """Call: counters of the messages received (``commands``, ``replies``) and
    of those dropped, by reason: ``malformed`` (not a command or reply of the
    right shape), ``unknown_command``, ``unknown_reply`` (no such call
    pending), ``unauthenticated`` (unsigned, or a bad signature, with a secret),
    ``oversized``, ``bad_reply_to`` (a call whose ``reply_to`` is not a
    server-named queue: not run), ``duplicate_reply`` (a second reply from a
    node: the first counts), ``too_many_members`` (heartbeat of a new node
    beyond :data:`MAX_MEMBERS`), ``errors`` (a failure while handling one);
    ``dropped`` is the sum of all but ``duplicate_reply`` and
    ``errors`` (the refusals, logged at most once per 10 s)."""


# ---------------------------------------------------------------- loop events


@dataclass(frozen=True)
class _Subscribed:
    generation: int
    command_queue: str
    reply_queue: str


@dataclass(frozen=True)
class _SubscribeFailed:
    generation: int
    reason: str


@dataclass(frozen=True)
class _Received:
    generation: int
    #: "command" (the queue bound to the exchange) or "reply" (the reply queue).
    kind: str
    body: bytes
    headers: dict[str, Any] | None


@dataclass(frozen=True)
class _Done:
    tag: Any
    error: str | None


@dataclass
class _PendingCall:
    from_: From
    expected: set[str]
    timer: TimerRef
    replies: dict[str, Any] = field(default_factory=dict)


class _SystemChannel:
    """The System's channel and consumers; used on the loop thread only."""

    def __init__(self, link: AmqpLink, post: Callable[[Any], None]) -> None:
        self.link = link
        self.post = post
        self.channel: Channel | None = None
        self.command_queue = ""
        self.command_tag = ""
        self.generation = 0

    async def open(self, generation: int, exchange: str) -> None:
        """Declare the exchange and both queues, consume them; post the outcome."""
        await self.close()
        self.generation = generation
        try:
            connection = self.link.connection
            if connection is None or not self.link.is_open:
                raise ConnectionError("AMQP link is not connected")
            channel = await connection.channel(publisher_confirms=False)
            self.channel = channel

            def on_close(error: BaseException | None) -> None:
                if self.channel is not channel or not self.link.is_open:
                    return
                self.channel = None
                reason = "closed" if error is None else repr(error)
                self.post(_SubscribeFailed(generation, f"system channel lost: {reason}"))

            channel.add_close_callback(on_close)

            def receiver(kind: str) -> Callable[[Message], Any]:
                async def on_message(message: Message) -> None:
                    headers = message.properties.headers
                    self.post(
                        _Received(
                            generation,
                            kind,
                            message.body,
                            dict(headers) if isinstance(headers, Mapping) else None,
                        )
                    )

                return on_message

            await channel.exchange_declare(exchange, exchange_type="fanout", durable=True)
            # Both queues are server-named (amq.gen-...): the only names a
            # reply may be published to.
            replies = await channel.queue_declare("", exclusive=True, auto_delete=True)
            await channel.consume(replies.queue, receiver("reply"), no_ack=True)
            commands = await channel.queue_declare("", exclusive=True, auto_delete=True)
            self.command_queue = commands.queue
            await channel.queue_bind(self.command_queue, exchange)
            self.command_tag = await channel.consume(
                self.command_queue, receiver("command"), no_ack=True
            )
        except Exception as exc:
            self.post(_SubscribeFailed(generation, repr(exc)))
            await self.close()
            return
        self.post(_Subscribed(generation, self.command_queue, replies.queue))

    async def close(self) -> None:
        """Close the channel (its exclusive queues go with the connection)."""
        channel, self.channel = self.channel, None
        self.command_tag = self.command_queue = ""
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()


class SystemServer(Server, LinkOwner):
    """The node's broker connection, active flag and cluster membership;
    see the module docstring."""

    reply_errors = (ValueError, TypeError, ConnectionError)

    def init(self, config: Config) -> None:
        """Start connecting (in the background) and the heartbeat timer."""
        self.config = config
        self.node_name = config.node_name
        self.exchange = exchange_name(config.system_exchange_prefix)
        self.connected = False
        self.active = True
        #: True while the system channel and its queues are up.
        self.subscribed = False
        self.reply_queue = ""
        self.generation = 0
        self.subscribe_backoff = Backoff()
        self.members: dict[str, float] = {}
        self.calls: dict[str, _PendingCall] = {}
        self.casts: dict[str, From] = {}
        #: Messages waiting for a sibling's address: (child id, message).
        self.forwards: list[tuple[str, Any]] = []
        self.lookup_ref = ""
        self.lookup_attempts = 0
        self.stats = dict.fromkeys(STATS_KEYS, 0)
        self.auth = ClusterAuth(config.cluster_secret)
        self.drops = DropLog(log, "system messages")
        self.open_link(
            "roger-system",
            [connection_url(url, config.node_name) for url in config.amqp.urls()],
            config.amqp.connection_timeout_seconds,
        )
        self.channel = _SystemChannel(self.link, self.io.post)
        self._connect()
        self.send_after(HEARTBEAT_INTERVAL, "tick")

    # ------------------------------------------------------------ connection

    def _connect(self) -> None:
        self.connect_link()

    def _subscribe(self) -> None:
        self.generation += 1
        self.subscribed = False
        self.io.submit(self.channel.open(self.generation, self.exchange))

    def _submit(self, coro: Any, tag: Any = None) -> None:
        """Run ``coro`` on the loop; its outcome comes back as ``_Done(tag, error)``."""

        async def run() -> None:
            try:
                await coro
            except Exception as exc:
                self.io.post(_Done(tag, repr(exc)))
            else:
                self.io.post(_Done(tag, None))

        self.io.submit(run())

    # ------------------------------------------------------------ calls

    def handle_call(self, request: Any, from_: From) -> Any:
        """IsConnected, IsActive, SetInactive, ClusterCast, ClusterCall,
        Members, Stats."""
        if isinstance(request, IsConnected):
            return self.connected
        if isinstance(request, IsActive):
            return self.active
        if isinstance(request, SetInactive):
            self.active = False
            return None
        if isinstance(request, ClusterCast):
            return self._cast(request, from_)
        if isinstance(request, ClusterCall):
            return self._call(request, from_)
        if isinstance(request, Members):
            return sorted(self._live())
        if isinstance(request, Stats):
            return {**self.stats, "dropped": self.drops.total}
        return super().handle_call(request, from_)

    def _require_link(self) -> None:
        if not self.connected or not self.subscribed:
            raise ConnectionError("the node's System is not connected to the broker")

    def _cast(self, request: ClusterCast, from_: From) -> Any:
        self._require_link()
        body = encode_command(request.command, request.args, self.node_name)
        ref = uuid.uuid4().hex
        self.casts[ref] = from_
        self._submit(self._publish(body), ("cast", ref))
        return NOREPLY

    def _call(self, request: ClusterCall, from_: From) -> Any:
        timeout = request.timeout
        if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._require_link()
        call_id = uuid.uuid4().hex
        body = encode_command(
            request.command, request.args, self.node_name, call_id, self.reply_queue
        )
        timer = self.send_after(float(timeout), ("call-timeout", call_id))
        self.calls[call_id] = _PendingCall(from_, self._live(), timer)
        self._submit(self._publish(body), ("call", call_id))
        return NOREPLY

    def _publish(self, body: bytes, expiration_ms: int | None = None) -> Any:
        """The coroutine publishing the command ``body``, signed, to the exchange."""
        return publish_command(
            self.link,
            self.exchange,
            body,
            auth=self.auth,
            declare=False,
            expiration_ms=expiration_ms,
        )

    def _reply(self, reply_to: str, body: bytes) -> None:
        """Publish the reply ``body`` (signed) to the caller's ``reply_to``."""
        self._submit(publish_reply(self.link, reply_to, body, auth=self.auth), "reply")

    def _live(self) -> set[str]:
        """Nodes heard from within HEARTBEAT_TIMEOUT, and this one while subscribed."""
        horizon = time.monotonic() - HEARTBEAT_TIMEOUT
        live = {name for name, seen in self.members.items() if seen >= horizon}
        if self.subscribed:
            live.add(self.node_name)
        return live

    # ------------------------------------------------------------ infos

    def handle_info(self, message: Any) -> None:
        """Loop events, heartbeat ticks, call deadlines, registry lookups."""
        if isinstance(message, WatchMessage):
            for event in self.io.drain():
                self._on_event(event)
        elif message == "reconnect":
            self._connect()
        elif message == "tick":
            self._tick()
        elif isinstance(message, tuple) and message and message[0] == "resubscribe":
            if message[1] == self.generation and self.connected and not self.subscribed:
                self._subscribe()
        elif isinstance(message, tuple) and message and message[0] == "call-timeout":
            self._finish_call(message[1])
        elif message == "lookup-registry":
            self._lookup_registry()
        elif isinstance(message, CallReply) and message.ref == self.lookup_ref:
            self._on_registry_lookup(message)
        elif isinstance(message, PoisonMessage) and isinstance(
            message.poisonMessage, ApplyCommand
        ):
            # The ApplySystem died between the lookup and the send.
            self._apply_failed(message.poisonMessage, "the node's apply_system is not running")
        else:
            super().handle_info(message)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, _Received):
            if event.generation == self.generation:
                self._on_message(event)
        elif isinstance(event, _Done):
            self._on_done(event)
        elif isinstance(event, _Subscribed):
            if event.generation == self.generation:
                self.subscribed = True
                self.subscribe_backoff.reset()
                self.reply_queue = event.reply_queue
                self._heartbeat()
                # Casts sent while this node was not subscribed were lost:
                # the Consumers catch up from their Global.
                self._forward("registry", Resync())
        elif isinstance(event, _SubscribeFailed):
            if event.generation == self.generation and self.connected:
                log.warning("system exchange %r not subscribed: %s", self.exchange, event.reason)
                self.subscribed = False
                self.send_after(self.subscribe_backoff.next(), ("resubscribe", event.generation))
        elif isinstance(event, LinkLost) or (isinstance(event, tuple) and event[0] == "failed"):
            if self.connected or isinstance(event, tuple):
                log.warning("broker connection down: %s", event)
            self.connected = False
            self.subscribed = False
            self.generation += 1
            self.reconnect_later()
        elif isinstance(event, tuple) and event[0] == "connected":
            self.connected = True
            self.link_up()
            self._subscribe()

    def _on_done(self, event: _Done) -> None:
        tag = event.tag
        if isinstance(tag, tuple) and tag[0] == "cast":
            from_ = self.casts.pop(tag[1], None)
            if from_ is not None:
                if event.error is None:
                    self.reply(from_, None)
                else:
                    self.reply_error(from_, ConnectionError(f"cast not published: {event.error}"))
        elif isinstance(tag, tuple) and tag[0] == "call":
            pending = self.calls.get(tag[1])
            if event.error is not None and pending is not None:
                del self.calls[tag[1]]
                self.cancel_timer(pending.timer)
                self.reply_error(
                    pending.from_, ConnectionError(f"call not published: {event.error}")
                )
        elif event.error is not None:
            log.debug("system publish %r failed: %s", tag, event.error)

    def _tick(self) -> None:
        self.send_after(HEARTBEAT_INTERVAL, "tick")
        self._heartbeat()
        horizon = time.monotonic() - HEARTBEAT_TIMEOUT
        for name in [n for n, seen in self.members.items() if seen < horizon]:
            log.info("node %s left the cluster (no heartbeat for %s s)", name, HEARTBEAT_TIMEOUT)
            del self.members[name]
        for call_id in list(self.calls):
            self._check_call(call_id)

    def _heartbeat(self) -> None:
        if self.connected and self.subscribed:
            body = encode_command("heartbeat", [self.node_name], self.node_name)
            self._submit(self._publish(body, int(HEARTBEAT_TIMEOUT * 1000)), "heartbeat")

    # ------------------------------------------------------------ messages

    def _drop(self, reason: str) -> None:
        """Count (in Stats and the DropLog, which logs rate-limited) a refused message."""
        self.stats[reason] += 1
        self.drops.drop(reason)

    def _on_message(self, event: _Received) -> None:
        """Check, decode and act on one message; never raises (a failure is
        logged and counted)."""
        try:
            try:
                check_message(self.auth, event.kind, event.body, event.headers)
            except AuthError:
                self._drop("unauthenticated")
                return
            except ValueError:
                self._drop("oversized")
                return
            try:
                message = (
                    decode_command(event.body)
                    if event.kind == "command"
                    else decode_reply(event.body)
                )
            except ValueError as exc:
                self._drop("malformed")
                log.debug("malformed system %s (%d bytes): %s", event.kind, len(event.body), exc)
                return
            if isinstance(message, SystemReply):
                self._on_reply(message)
            else:
                self._on_command(message)
        except Exception:
            self.stats["errors"] += 1
            log.exception("handling a system %s (%d bytes) failed", event.kind, len(event.body))

    def _on_reply(self, reply: SystemReply) -> None:
        self.stats["replies"] += 1
        pending = self.calls.get(reply.call_id)
        if pending is None:
            self._drop("unknown_reply")
            return
        if reply.from_node in pending.replies:
            # A node answers a call once: a second reply under its name is
            # someone else's (the first one counts).
            self.stats["duplicate_reply"] += 1
            return
        pending.replies[reply.from_node] = reply.value if reply.ok else CommandError(reply.value)
        self._check_call(reply.call_id)

    def _check_call(self, call_id: str) -> None:
        pending = self.calls.get(call_id)
        if pending is None:
            return
        if not (pending.expected & self._live()) - set(pending.replies):
            self._finish_call(call_id)

    def _finish_call(self, call_id: str) -> None:
        pending = self.calls.pop(call_id, None)
        if pending is None:
            return
        self.cancel_timer(pending.timer)
        self.reply(pending.from_, sorted(pending.replies.items(), key=lambda item: item[0]))

    def _on_command(self, command: SystemCommand) -> None:
        if command.reply_to is not None and not valid_reply_to(command.reply_to):
            # Not run at all: the reply would write into someone's queue.
            self._drop("bad_reply_to")
            return
        self.stats["commands"] += 1
        ok, value = True, None
        if command.command == "ping":
            value = "pong"
        elif command.command == "heartbeat":
            if command.from_node not in self.members:
                if len(self.members) >= MAX_MEMBERS:
                    self._drop("too_many_members")
                    return
                log.info("node %s joined the cluster", command.from_node)
            self.members[command.from_node] = time.monotonic()
        elif command.command == "leave":
            if self.members.pop(command.from_node, None) is not None:
                log.info("node %s left the cluster", command.from_node)
            for call_id in list(self.calls):
                self._check_call(call_id)
        elif command.command in PARTITION_COMMANDS:
            ok, value = self._partition_command(command)
        elif command.command in APPLY_COMMANDS:
            # Answered by the ApplySystem, over its own connection.
            self._forward(
                "apply_system",
                ApplyCommand(
                    command.command,
                    command.args,
                    command.from_node,
                    command.call_id,
                    command.reply_to,
                ),
            )
            return
        else:
            self._drop("unknown_command")
            name = bounded_repr(command.command, 80)
            ok, value = False, f"unknown system command {name}"
        if command.is_call:
            assert command.call_id is not None and command.reply_to is not None
            self._reply(command.reply_to, encode_reply(command.call_id, self.node_name, ok, value))

    def _partition_command(self, command: SystemCommand) -> tuple[bool, Any]:
        names = PARTITION_COMMANDS[command.command]
        args = command.args
        if len(args) != len(names) or not all(isinstance(a, str) and a for a in args):
            log.warning(
                "bad arguments for %s from %s: %s",
                command.command,
                bounded_repr(command.from_node),
                bounded_repr(args),
            )
            return False, f"{command.command} expects [{', '.join(names)}] (strings)"
        self._forward("registry", PartitionCommand(args[0], command.command, tuple(args[1:])))
        return True, "ok"

    def _forward(self, child_id: str, message: Any) -> None:
        """Send ``message`` to the sibling ``child_id`` once its address is known."""
        self.forwards.append((child_id, message))
        if not self.lookup_ref:
            self.lookup_attempts = 0
            self._lookup_registry()

    def _apply_failed(self, command: ApplyCommand, why: str) -> None:
        """Answer a forwarded apply call with an error (the ApplySystem cannot)."""
        log.error(
            "%s from %s not applied: %s", command.command, bounded_repr(command.from_node), why
        )
        if command.call_id is not None and command.reply_to is not None and self.connected:
            self._reply(command.reply_to, encode_reply(command.call_id, self.node_name, False, why))

    # ------------------------------------------------------------ registry

    def _lookup_registry(self) -> None:
        self.lookup_attempts += 1
        self.lookup_ref = self.call_async(self.parent, WhichChildren())

    def _on_registry_lookup(self, reply: CallReply) -> None:
        """Send the waiting forwards whose sibling (registry, apply_system) runs;
        look again later for the others, and drop them after REGISTRY_ATTEMPTS."""
        siblings = {
            info.id: info.address
            for info in (reply.value if reply.ok else [])
            if info.address not in (None, "restarting")
        }
        forwards, self.forwards = self.forwards, []
        for child_id, message in forwards:
            if child_id in siblings:
                self.send(siblings[child_id], message)
            else:
                self.forwards.append((child_id, message))
        self.lookup_ref = ""
        if not self.forwards:
            return
        if self.lookup_attempts < REGISTRY_ATTEMPTS:
            self.lookup_ref = "waiting"
            self.send_after(REGISTRY_RETRY, "lookup-registry")
            return
        dropped, self.forwards = self.forwards, []
        for child_id, message in dropped:
            if isinstance(message, ApplyCommand):
                self._apply_failed(message, f"the node's {child_id} is not running")
            else:
                log.error("no %s: dropped %s", child_id, bounded_repr(message))

    # ------------------------------------------------------------ stop

    def terminate(self, reason: Any) -> None:
        """Say ``leave`` (best effort), close the connection and the I/O thread."""
        leave = None
        if self.connected and self.subscribed:
            leave = encode_command("leave", [self.node_name], self.node_name)
        channel = self.channel

        async def last_words() -> None:
            if leave is not None:
                try:
                    await asyncio.wait_for(self._publish(leave), 2)
                except Exception:
                    log.debug("publishing leave failed", exc_info=True)
            await channel.close()

        self.close_link("system", last_words(), 7.0)


def connection_url(url: str, node_name: str) -> str:
    """``url`` with the connection name of a node's System: the ``name`` query
    parameter (what ``rabbitmqctl list_connections`` shows as
    ``connection_name``) becomes ``<name>-system``, or ``roger-system
    <node_name>`` when the URL has none."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [value for key, value in query if key == "name"]
    name = f"{names[-1]}-system" if names and names[-1] else f"roger-system {node_name}"
    query = [(key, value) for key, value in query if key != "name"] + [("name", name)]
    return urlunsplit(parts._replace(query=urlencode(query)))


# ---------------------------------------------------------------- client side


def call(
    address: Any,
    system: ActorSystem,
    command: str,
    args: list[Any] | tuple[Any, ...] = (),
    timeout: float = DEFAULT_CALL_TIMEOUT,
) -> list[tuple[str, Any]]:
    """Run ``command`` on every live node through the System at ``address``;
    returns ``[(node_name, value), ...]`` sorted by node name, one per node that
    replied within ``timeout`` seconds (``value`` is a ``CommandError`` when
    the command failed there). Raises ConnectionError when the node is not
    connected, ValueError for a bad timeout."""
    result: list[tuple[str, Any]] = sv_call(
        address, ClusterCall(command, tuple(args), timeout), timeout + CLIENT_MARGIN, system=system
    )
    return result


def cast(
    address: Any, system: ActorSystem, command: str, args: list[Any] | tuple[Any, ...] = ()
) -> None:
    """Send ``command`` to every node (this one included) without waiting for
    them; returns once the broker has it. Raises ConnectionError when not connected."""
    sv_call(address, ClusterCast(command, tuple(args)), CLIENT_MARGIN, system=system)


def is_connected(address: Any, system: ActorSystem) -> bool:
    """True while the node's System has its broker connection."""
    return bool(sv_call(address, IsConnected(), CLIENT_MARGIN, system=system))


def is_active(address: Any, system: ActorSystem) -> bool:
    """True until the node was set inactive (it is shutting down)."""
    return bool(sv_call(address, IsActive(), CLIENT_MARGIN, system=system))


def set_inactive(address: Any, system: ActorSystem) -> None:
    """Mark the node inactive (it can no longer start new partitions)."""
    sv_call(address, SetInactive(), CLIENT_MARGIN, system=system)


def members(address: Any, system: ActorSystem) -> list[str]:
    """Sorted names of the live nodes as the node at ``address`` sees them."""
    result: list[str] = sv_call(address, Members(), CLIENT_MARGIN, system=system)
    return result


def stats(address: Any, system: ActorSystem) -> dict[str, int]:
    """Counters of the System's received and dropped messages (see :class:`Stats`)."""
    result: dict[str, int] = sv_call(address, Stats(), CLIENT_MARGIN, system=system)
    return result
