"""The ``transport`` fixture: one :class:`Kit` per implementation of the
transport interface ("amqp": the machine's RabbitMQ; "memory": a fresh
in-memory broker of its own), so that every test of the suite runs on both."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from roger_actors.transport import embedded, memory
from roger_actors.transport.base import Connection, ConnectionLost, connect

AMQP_URL = os.environ.get("ROGER_CONFORMANCE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
#: The longest any test waits for one condition.
WAIT = 5.0

T = TypeVar("T")


class Kit:
    """What a test needs from one transport: ``connect``, unique ``name``\\ s
    (deleted from RabbitMQ afterwards) and ``drop`` (the broker closes a
    connection, as ``rabbitmqctl close_connection`` does)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tag = secrets.token_hex(4)
        self.url = AMQP_URL if kind == "amqp" else f"memory://conformance-{self.tag}"
        #: "wire": aiormq through the embedded broker's AMQP front end to a memory broker.
        self.embedded: embedded.EmbeddedBroker | None = None
        if kind == "wire":
            self.embedded = embedded.serve(f"conformance-{self.tag}")
            self.url = self.embedded.url
        self.queues: list[str] = []
        self.exchanges: list[str] = []
        self._connections = 0

    def name(self, what: str) -> str:
        """A queue name unique to this test (deleted at the end)."""
        name = f"conformance-{self.tag}-{what}"
        self.queues.append(name)
        return name

    def exchange(self, what: str) -> str:
        """An exchange name unique to this test (deleted at the end)."""
        name = f"conformance-{self.tag}-{what}"
        self.exchanges.append(name)
        return name

    async def connect(self) -> Connection:
        """A new connection, named (on RabbitMQ) so that :meth:`drop` finds it."""
        self._connections += 1
        if self.kind in ("amqp", "wire"):
            label = f"conformance-{self.tag}-{self._connections}"
            connection = await connect(f"{self.url}?name={label}")
            connection.label = label  # type: ignore[attr-defined]
            return connection
        return await connect(self.url)

    async def drop(self, connection: Connection) -> None:
        """Have the broker close ``connection`` (not the client)."""
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.drop_connections, "closed by the test")
            return
        if self.kind == "memory":
            memory.broker(self.url).close_all_connections("closed by the test")
            return
        label = connection.label  # type: ignore[attr-defined]
        listing = await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "list_connections", "pid", "client_properties", "--quiet"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        pids = [
            line.split("\t", 1)[0]
            for line in listing.stdout.splitlines()
            if re.search(r'connection_name.{0,20}"' + re.escape(label) + '"', line)
            or f'<<"{label}">>' in line
        ]
        assert len(pids) == 1, f"connection {label} not found once in {listing.stdout!r}"
        await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "close_connection", pids[0], "closed by the test"],
            capture_output=True,
            timeout=30,
            check=True,
        )

    async def cleanup(self) -> None:
        """Delete what the test declared (RabbitMQ); forget the memory broker."""
        if self.kind == "memory":
            memory.forget_broker(self.url)
            return
        if self.embedded is not None:
            embedded.shutdown(self.embedded.name)
            return
        connection = await connect(self.url)
        try:
            for queue in self.queues:
                channel = await connection.channel()
                await channel.queue_delete(queue)
                await channel.close()
            for exchange in self.exchanges:
                channel = await connection.channel()
                await channel.exchange_delete(exchange)
                await channel.close()
        finally:
            await connection.close()


def run(coro: Awaitable[T]) -> T:
    """Run one test body on a fresh event loop, for at most 25 s."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, 25)

    return asyncio.run(bounded())


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT
) -> None:
    """Wait (at most ``timeout`` s, polling every 20 ms) until ``check()`` is True."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def next_item(queue: asyncio.Queue[Any], timeout: float = WAIT) -> Any:
    """The next item of ``queue``, waiting at most ``timeout`` s."""
    return await asyncio.wait_for(queue.get(), timeout)


@pytest.fixture(params=[pytest.param("amqp", marks=pytest.mark.rabbitmq_only), "memory", "wire"])
def transport(request: pytest.FixtureRequest) -> Iterator[Kit]:
    """A :class:`Kit` for each implementation; RabbitMQ tests are skipped
    (not failed) when no broker answers at ``ROGER_CONFORMANCE_AMQP_URL``."""
    kit = Kit(request.param)
    if kit.kind == "amqp":

        async def probe() -> None:
            connection = await connect(kit.url, timeout=3)
            await connection.close()

        try:
            run(probe())
        except ConnectionLost as exc:
            pytest.skip(f"no RabbitMQ: {exc}")
    try:
        yield kit
    finally:
        run(kit.cleanup())
