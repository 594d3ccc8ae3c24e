"""Cluster calls from a process that runs no node (the CLI, producers).

A :class:`ClusterClient` speaks the System protocol
(:mod:`roger_actors.system_protocol`) over an AMQP connection of its own,
without joining the cluster:

- it declares two exclusive, server-named queues: one bound to the System
  fanout exchange (so it hears the nodes' ``heartbeat`` casts and learns the
  members from them; a ``leave`` drops the node at once; every other command,
  its own included, is ignored: a client never answers a command), and one
  where the nodes' replies to its calls arrive;
- it never sends heartbeats, so nodes do not count it as a member.

With a ``cluster_secret`` in its config (or ``ROGER_CLUSTER_SECRET``) it
signs its commands and checks every message it takes: an unsigned or badly
signed heartbeat, ``leave`` or reply, or one too big or malformed, is dropped
and counted (:attr:`ClusterClient.dropped`; logged at most once per 10 s), and
changes nothing. Its reply queue is server-named, the only kind nodes reply to.

Calls are gathered as a node's System gathers them: the call expects the
members live when it is published (heard within
:data:`~roger_actors.node.system.HEARTBEAT_TIMEOUT`) and completes as soon as each
of them that is still live has replied, or at the timeout with the replies
received so far.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .cluster_auth import AuthError, ClusterAuth, DropLog
from .config import Config, load_config
from .node.system import DEFAULT_CALL_TIMEOUT, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT
from .system_protocol import (
    CommandError,
    SystemCommand,
    check_message,
    decode_command,
    decode_reply,
    encode_command,
    exchange_name,
    publish_command,
)
from .transport.amqp import AmqpLink, BrokerAddresses, LinkLost
from .transport.base import Channel, Message
from .transport.loop import LoopThread

#: Seconds a fresh client listens for heartbeats before its first call or
#: ``members()``: every node heartbeats once per HEARTBEAT_INTERVAL.
LISTEN_SECONDS = HEARTBEAT_INTERVAL * 1.5

#: Seconds between two re-checks of a pending call's expected members.
_RECHECK = 0.25

log = logging.getLogger("roger_actors.cluster_client")


class ClusterClient:
    """A blocking, thread-safe client of the cluster's System exchange; see
    the module docstring.

    ``config`` is a :class:`Config` (or anything :func:`load_config` takes):
    its ``amqp`` settings and ``system_exchange_prefix`` are used. The
    connection is opened on first use and opened again on the next use after
    it was lost. A fresh client knows no members: its first :meth:`call` or
    :meth:`members` first listens :data:`LISTEN_SECONDS` (1.5 s) for the
    nodes' heartbeats, on top of the call's own timeout.
    """

    def __init__(self, config: Config | dict[str, Any] | str) -> None:
        cfg = load_config(config) if not isinstance(config, Config) else config
        self.config = cfg
        self.exchange = exchange_name(cfg.system_exchange_prefix)
        self.name = f"client-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.timeout = float(cfg.amqp.connection_timeout_seconds or 10.0)
        #: The broker addresses, shared by the successive links (a reconnect
        #: starts with the address after the one last used).
        self._addresses = BrokerAddresses(cfg.amqp.urls())
        self._auth = ClusterAuth(cfg.cluster_secret)
        self._drops = DropLog(log, "cluster messages")
        self._cond = threading.Condition()
        self._conn_lock = threading.Lock()
        self._io: LoopThread | None = None
        self._link: AmqpLink | None = None
        self._channel: Channel | None = None
        self._reply_queue = ""
        #: Monotonic time the command queue started to listen (0: not listening).
        self._listening_since = 0.0
        #: The connection this state belongs to (bumped on each connect).
        self._generation = 0
        self._members: dict[str, float] = {}
        self._calls: dict[str, dict[str, Any]] = {}
        self._closed = False

    # ------------------------------------------------------------ connection

    def _on_link_event(self, event: Any) -> None:
        # Called on the loop thread by the AmqpLink.
        if isinstance(event, LinkLost):
            with self._cond:
                self._listening_since = 0.0
                self._members.clear()
                self._cond.notify_all()

    def _ensure(self) -> tuple[LoopThread, AmqpLink, int]:
        """Connect and subscribe unless already done; ConnectionError (or OSError,
        TimeoutError) when the broker cannot be reached."""
        with self._conn_lock:
            if self._closed:
                raise RuntimeError("the ClusterClient is closed")
            if self._io is None:
                self._io = LoopThread("roger-cluster-client")
            link = self._link
            if (
                link is not None
                and link.is_open
                and self._channel is not None
                and not self._channel.is_closed
            ):
                return self._io, link, self._generation
            if link is not None:
                with contextlib.suppress(Exception):
                    self._io.submit(link.close()).result(self.timeout)
            self._link = self._channel = None
            link = AmqpLink(self._addresses, self._on_link_event, self.timeout)
            future = self._io.submit(link.connect())
            try:
                future.result(self.timeout * len(self._addresses) + 1)
            except BaseException:
                future.cancel()
                with contextlib.suppress(Exception):
                    self._io.submit(link.close()).result(self.timeout)
                raise
            with self._cond:
                self._generation += 1
                generation = self._generation
                self._members.clear()
            try:
                channel, reply_queue = self._io.submit(self._subscribe(link, generation)).result(
                    self.timeout + 1
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    self._io.submit(link.close()).result(self.timeout)
                raise
            with self._cond:
                self._reply_queue = reply_queue
                self._listening_since = time.monotonic()
            self._link, self._channel = link, channel
            return self._io, link, generation

    async def _subscribe(self, link: AmqpLink, generation: int) -> tuple[Channel, str]:
        """Declare the exchange, the reply and the command queue, consume both."""
        connection = link.connection
        if connection is None or not link.is_open:
            raise ConnectionError("AMQP link is not connected")
        channel = await connection.channel(publisher_confirms=False)

        def receiver(kind: str) -> Any:
            async def on_message(message: Message) -> None:
                headers = message.properties.headers
                self._on_message(
                    generation,
                    kind,
                    message.body,
                    dict(headers) if isinstance(headers, Mapping) else None,
                )

            return on_message

        await channel.exchange_declare(self.exchange, exchange_type="fanout", durable=True)
        # Server-named (amq.gen-...): the only kind of queue nodes reply to.
        replies = await channel.queue_declare("", exclusive=True, auto_delete=True)
        await channel.consume(replies.queue, receiver("reply"), no_ack=True)
        commands = await channel.queue_declare("", exclusive=True, auto_delete=True)
        await channel.queue_bind(commands.queue, self.exchange)
        await channel.consume(commands.queue, receiver("command"), no_ack=True)
        return channel, replies.queue

    # ------------------------------------------------------------ messages

    @property
    def dropped(self) -> int:
        """How many messages this client refused so far (unsigned or badly
        signed with a secret, oversized, malformed)."""
        return self._drops.total

    def _on_message(
        self, generation: int, kind: str, body: bytes, headers: dict[str, Any] | None
    ) -> None:
        # Loop thread. Refused messages are dropped: they come from the network.
        try:
            check_message(self._auth, kind, body, headers)
        except AuthError:
            self._drops.drop("unauthenticated")
            return
        except ValueError:
            self._drops.drop("oversized")
            return
        try:
            message = decode_command(body) if kind == "command" else decode_reply(body)
        except ValueError:
            self._drops.drop("malformed")
            return
        with self._cond:
            if generation != self._generation:
                return
            if isinstance(message, SystemCommand):
                if message.command == "heartbeat":
                    self._members[message.from_node] = time.monotonic()
                elif message.command == "leave":
                    self._members.pop(message.from_node, None)
                else:
                    return
            else:
                pending = self._calls.get(message.call_id)
                if pending is None or message.from_node in pending["replies"]:
                    return
                value = message.value if message.ok else CommandError(message.value)
                pending["replies"][message.from_node] = value
            self._cond.notify_all()

    def _publish(self, link: AmqpLink, body: bytes) -> Any:
        """The coroutine publishing the command ``body``, signed, to the exchange."""
        return publish_command(link, self.exchange, body, auth=self._auth, declare=False)

    def _live(self) -> set[str]:
        """Members heard within HEARTBEAT_TIMEOUT (hold ``_cond``)."""
        horizon = time.monotonic() - HEARTBEAT_TIMEOUT
        return {name for name, seen in self._members.items() if seen >= horizon}

    def _wait_listening(self, generation: int) -> None:
        """Block until the command queue has listened LISTEN_SECONDS (hold ``_cond``)."""
        while True:
            if generation != self._generation or not self._listening_since:
                raise ConnectionError("the broker connection was lost")
            left = self._listening_since + LISTEN_SECONDS - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    # ------------------------------------------------------------ API

    def members(self) -> list[str]:
        """Sorted names of the live nodes (heard within HEARTBEAT_TIMEOUT).

        Blocks up to :data:`LISTEN_SECONDS` on a fresh connection. Raises
        ConnectionError (or OSError/TimeoutError) when the broker cannot be reached.
        """
        _, _, generation = self._ensure()
        with self._cond:
            self._wait_listening(generation)
            return sorted(self._live())

    def cast(self, command: str, args: list[Any] | tuple[Any, ...] = ()) -> None:
        """Send ``command`` with ``args`` to every node; returns once the broker
        confirmed it, without waiting for the nodes. Raises ValueError/TypeError
        for a command that cannot be encoded, ConnectionError (or OSError,
        TimeoutError) when the broker cannot be reached."""
        body = encode_command(command, args, self.name)
        io, link, _ = self._ensure()
        io.submit(self._publish(link, body)).result(
            self.timeout + 1
        )

    def call(
        self,
        command: str,
        args: list[Any] | tuple[Any, ...] = (),
        timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> list[tuple[str, Any]]:
        """Run ``command`` with ``args`` on every live node and gather the replies.

        Returns ``[(node_name, value), ...]`` sorted by node name, one per node
        that replied; ``value`` is a
        :class:`~roger_actors.system_protocol.CommandError` when the command
        failed on that node. The call completes when every node that was a
        member when it was sent (and still is) has replied, else after
        ``timeout`` seconds with the replies received so far. A fresh
        connection first listens up to :data:`LISTEN_SECONDS` for heartbeats
        (not counted in ``timeout``). Raises ValueError for a bad timeout or
        command, ConnectionError (or OSError, TimeoutError) when the broker
        cannot be reached or the connection is lost during the call.
        """
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        io, link, generation = self._ensure()
        call_id = uuid.uuid4().hex
        with self._cond:
            self._wait_listening(generation)
            body = encode_command(command, args, self.name, call_id, self._reply_queue)
            expected = self._live()
            pending: dict[str, Any] = {"replies": {}}
            self._calls[call_id] = pending
        try:
            io.submit(self._publish(link, body)).result(
                self.timeout + 1
            )
            deadline = time.monotonic() + float(timeout)
            with self._cond:
                while True:
                    if generation != self._generation or not self._listening_since:
                        raise ConnectionError("the broker connection was lost during the call")
                    if not (expected & self._live()) - set(pending["replies"]):
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(min(left, _RECHECK))
                replies: dict[str, Any] = dict(pending["replies"])
        finally:
            with self._cond:
                self._calls.pop(call_id, None)
        return sorted(replies.items(), key=lambda item: item[0])

    def close(self) -> None:
        """Close the connection (its queues go with it) and the I/O thread; idempotent."""
        with self._conn_lock:
            self._closed = True
            io, link = self._io, self._link
            self._io = self._link = self._channel = None
            with self._cond:
                self._generation += 1
                self._listening_since = 0.0
                self._cond.notify_all()
            if io is not None:
                if link is not None:
                    with contextlib.suppress(Exception):
                        io.submit(link.close()).result(self.timeout)
                io.stop()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["LISTEN_SECONDS", "ClusterClient"]
