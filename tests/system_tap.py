"""What anyone with broker credentials can do to a System exchange, for tests.

- :class:`Tap`: a server-named queue bound to the exchange, so the test sees
  every command (heartbeats, the ``call_id`` and ``reply_to`` of each call),
  as an eavesdropper would.
- :func:`publish`: put a body, with any headers, on the exchange or into a
  queue (the default exchange).
- :func:`signed` / :func:`forged_headers`: headers signed with a secret, or
  with the wrong one, or stale.
- :func:`server_named_queue`: a queue named by the broker (``amq.gen-...``),
  the only kind a node replies to; it outlives the connection that made it
  and is deleted with :func:`delete_queue`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pamqp import commands as spec

from roger_actors.cluster_auth import PURPOSE_SYSTEM, ClusterAuth
from roger_actors.system_protocol import SystemCommand, decode_command, decode_reply
from tests.partition_harness import _with_channel, drain, wait_for

#: A secret no node of the tests has.
WRONG_SECRET = "not-the-cluster-secret-0123456789"


def publish(
    body: bytes,
    *,
    exchange: str = "",
    routing_key: str = "",
    headers: dict[str, Any] | None = None,
) -> None:
    """Publish ``body`` (with ``headers``) to ``exchange`` (the default one:
    to the queue ``routing_key``), confirmed by the broker."""

    async def action(channel: Any) -> None:
        await channel.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=spec.Basic.Properties(headers=headers),
        )

    asyncio.run(_with_channel(action))


def signed(secret: str | None, body: bytes, purpose: str = PURPOSE_SYSTEM) -> dict[str, Any]:
    """Headers that sign ``body`` for ``purpose`` with ``secret`` (none without one)."""
    return ClusterAuth(secret).headers(purpose, body)


def forged_headers(body: bytes, purpose: str = PURPOSE_SYSTEM) -> list[dict[str, Any] | None]:
    """Three ways to fail the check of a node with a secret: no signature, a
    signature under another secret, a garbled signature."""
    wrong = ClusterAuth(WRONG_SECRET).headers(purpose, body)
    return [None, wrong, {**wrong, "x-roger-sig": "00" * 32}]


def stale_headers(secret: str, body: bytes, purpose: str = PURPOSE_SYSTEM) -> dict[str, Any]:
    """``body`` rightly signed an hour ago (a replay)."""
    return ClusterAuth(secret).headers(purpose, body, now=time.time() - 3600)


def server_named_queue() -> str:
    """Declare a broker-named, non-exclusive queue (it survives this connection)."""

    async def action(channel: Any) -> str:
        ok = await channel.queue_declare("", exclusive=False, auto_delete=False)
        return str(ok.queue)

    result: str = asyncio.run(_with_channel(action))
    return result


def declare_queue(name: str) -> None:
    """Declare a durable queue ``name`` (an application queue of some kind)."""

    async def action(channel: Any) -> None:
        await channel.queue_declare(name, durable=True)

    asyncio.run(_with_channel(action))


def delete_queue(name: str) -> None:
    """Delete queue ``name`` (missing is fine)."""

    async def action(channel: Any) -> None:
        await channel.queue_delete(name)

    asyncio.run(_with_channel(action))


def replies_in(queue: str) -> list[Any]:
    """Take the messages of ``queue``, decoded as System replies."""
    return [decode_reply(body) for body, _, _ in drain(queue)]


class Tap:
    """A server-named queue bound to the System ``exchange``; see the module docstring."""

    def __init__(self, exchange: str) -> None:
        self.queue = server_named_queue()
        self.seen: list[SystemCommand] = []

        async def action(channel: Any) -> None:
            await channel.queue_bind(self.queue, exchange)

        asyncio.run(_with_channel(action))

    def wait_command(self, match: Callable[[SystemCommand], bool], what: str) -> SystemCommand:
        """The first command seen for which ``match`` is true (waits for it)."""

        def found() -> SystemCommand | None:
            self.seen += [decode_command(body) for body, _, _ in drain(self.queue)]
            return next((c for c in self.seen if match(c)), None)

        command: SystemCommand = wait_for(found, what=what)
        return command

    def close(self) -> None:
        delete_queue(self.queue)
