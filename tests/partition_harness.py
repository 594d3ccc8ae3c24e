"""Test harness for partitions on a real node (multiprocTCPBase + RabbitMQ).

- :class:`NodeHarness`: one Roger node per test on its own admin port
  (22000-22999) with its own AMQP connection name, partition ids with a uuid
  suffix, and a teardown that stops the node and deletes every queue of the
  test's partitions.
- Bounded polling (:func:`wait_for`, :func:`holds_for`): never a bare sleep.
- Direct broker access with aiormq (publish raw bytes, drain a queue, counts)
  and broker-side connection closing with ``rabbitmqctl``.
- Process inspection through ``/proc`` (children of a pid, liveness).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiormq
from pamqp import commands as spec

import roger_actors as roger
from roger_actors import node as roger_node
from tests.procs import free_port, is_alive, live_children, parent_of  # noqa: F401 (re-exported)
from tests.roger_test_jobs2 import JsonCallbacks, read_events

T = TypeVar("T")

def _embedded_test_broker() -> Any:
    """The embedded broker the tests use with ``ROGER_TEST_BROKER=memory``
    (served from the test process, started on first use)."""
    from roger_actors.transport import embedded

    return embedded.serve("roger-tests")


def _test_broker() -> str:
    """The broker the Roger-level tests use: the machine's RabbitMQ, or with
    ``ROGER_TEST_BROKER=memory`` the embedded broker served from the test
    process (every node process the tests start connects to it)."""
    kind = os.environ.get("ROGER_TEST_BROKER", "rabbitmq")
    if kind == "memory":
        return _embedded_test_broker().url
    if kind != "rabbitmq":
        raise RuntimeError(f"ROGER_TEST_BROKER must be rabbitmq or memory, got {kind!r}")
    return "amqp://guest:guest@127.0.0.1:5672/"


BROKER = _test_broker()
BROKER_PORT = urlsplit(BROKER).port or 5672
#: True when the tests run on the embedded broker (no rabbitmqctl, no cluster).
ON_MEMORY = os.environ.get("ROGER_TEST_BROKER") == "memory"
#: Bound of every wait for something asynchronous.
WAIT = 20.0

# ---------------------------------------------------------------- waiting


def wait_for(
    condition: Callable[[], T],
    timeout: float = WAIT,
    what: str = "condition",
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` until it returns a truthy value (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def holds_for(
    condition: Callable[[], bool], seconds: float, what: str = "condition", interval: float = 0.1
) -> None:
    """Check ``condition`` repeatedly for ``seconds``; fail as soon as it is false."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), f"{what} stopped holding"
        time.sleep(interval)
    assert condition(), f"{what} stopped holding"


# ---------------------------------------------------------------- processes



def amqp_socket_count(pid: int) -> int:
    """How many TCP connections to the broker's port (:data:`BROKER`) the process ``pid`` holds."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return 0
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            remote_port = int(cols[2].rsplit(":", 1)[1], 16)
            if remote_port == BROKER_PORT and cols[3] == "01" and cols[9] in inodes:
                count += 1
    return count


# ---------------------------------------------------------------- broker


async def _with_channel(action: Callable[[Any], Any]) -> Any:
    connection = await aiormq.connect(BROKER + "?name=roger-test-helper")
    try:
        channel = await connection.channel()
        return await action(channel)
    finally:
        await connection.close()


def publish_raw(queue: str, body: bytes, headers: dict[str, Any] | None = None,
                message_id: str | None = None) -> None:
    """Publish ``body`` as is to ``queue`` (default exchange), persistent."""

    async def action(channel: Any) -> None:
        await channel.basic_publish(
            body,
            routing_key=queue,
            properties=spec.Basic.Properties(
                headers=headers, message_id=message_id, delivery_mode=2
            ),
        )

    asyncio.run(_with_channel(action))


def drain(queue: str) -> list[tuple[bytes, dict[str, Any], str | None]]:
    """Take every message off ``queue``: ``[(body, headers, message_id), ...]``."""

    async def action(channel: Any) -> list[tuple[bytes, dict[str, Any], str | None]]:
        got = []
        while True:
            message = await channel.basic_get(queue, no_ack=True)
            if isinstance(message.delivery, spec.Basic.GetEmpty):
                return got
            props = message.header.properties
            got.append((bytes(message.body), dict(props.headers or {}), props.message_id))

    result: list[tuple[bytes, dict[str, Any], str | None]] = asyncio.run(_with_channel(action))
    return result


def counts(queue: str) -> tuple[int, int] | None:
    """``(message_count, consumer_count)`` of ``queue``, or None when it does not exist."""

    async def action(channel: Any) -> tuple[int, int] | None:
        try:
            ok = await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        return int(ok.message_count or 0), int(ok.consumer_count or 0)

    result: tuple[int, int] | None = asyncio.run(_with_channel(action))
    return result


def delete_queues(names: list[str]) -> None:
    """Delete the queues ``names`` (missing ones are fine)."""

    async def action(channel: Any) -> None:
        for name in names:
            await channel.queue_delete(name)

    if names:
        asyncio.run(_with_channel(action))


def queues_with_prefixes(prefixes: list[str]) -> list[str]:
    """Names of the broker's queues that start with one of ``prefixes``."""
    if ON_MEMORY:
        names = _embedded_test_broker().queue_names()
        return [n for n in names if any(n.startswith(p) for p in prefixes)]
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "--no-table-headers", "name"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    names = [line.strip() for line in out.splitlines()]
    return [n for n in names if any(n.startswith(p) for p in prefixes)]


def close_connections_named(name: str, reason: str = "test") -> int:
    """Close, from the broker side, every connection whose client named itself ``name``.

    Scoped ``rabbitmqctl close_connection`` rather than ``close_all_connections``
    so that other users of the shared broker are not disturbed. Returns how many.
    """
    if ON_MEMORY:
        return int(_embedded_test_broker().drop_connections(reason, name=name))
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    closed = 0
    for line in out.splitlines():
        if f'{{"connection_name","{name}"}}' in line:
            pid = line.split("\t", 1)[0]
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, reason],
                capture_output=True, text=True, timeout=30, check=True,
            )
            closed += 1
    return closed


# ---------------------------------------------------------------- node


def _free_admin_port() -> int:
    """A port in 22000-22999 that nothing listens on now."""
    return free_port(22000, 22999)


class NodeHarness:
    """One Roger node for one test; see the module docstring."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.tag = uuid.uuid4().hex[:10]
        self.connection_name = f"roger-test-{self.tag}"
        self.partition_ids: list[str] = []
        self.node: roger.Node | None = None
        self.journal = str(tmp_path / "events.jsonl")
        Path(self.journal).touch()

    # ------------------------------------------------------------ lifecycle

    def settings(self, **config: Any) -> dict[str, Any]:
        """The node's configuration: the harness defaults (a free admin port,
        the broker under this test's connection name, JsonCallbacks, retry
        levels [1, 2], shutdown_timeout 5), then ``config``."""
        settings: dict[str, Any] = {
            "admin_port": _free_admin_port(),
            "amqp": f"{BROKER}?name={self.connection_name}",
            "callbacks": JsonCallbacks,
            "retry_levels": [1, 2],
            "shutdown_timeout": 5,
        }
        settings.update(config)
        return settings

    def start(self, **config: Any) -> roger.Node:
        """Start the node (:meth:`settings` with ``config``)."""
        settings = self.settings(**config)
        # A predefined partition (max_workers 0) proves the configuration's
        # partitions start at boot; it is stopped before the test runs.
        probe = self.partition_id("ready")
        settings["partitions"] = {probe: {"default": 0}}
        self.node = roger.start(settings)
        wait_for(
            lambda: any(probe in v for v in roger.Partition.partitions().values()),
            what="the node's registry ready (probe partition listed)",
        )
        roger.Partition.stop(probe)
        return self.node

    def close(self) -> None:
        """Stop the node, then delete the test's queues."""
        try:
            roger.stop()
        finally:
            if self.partition_ids:
                prefixes = [f"{pid}-" for pid in self.partition_ids]
                prefixes += [f"roger-global.{pid}" for pid in self.partition_ids]
                prefixes += [f"roger-state.{pid}" for pid in self.partition_ids]
                prefixes += [f"roger-replica.{pid}" for pid in self.partition_ids]
                try:
                    names = queues_with_prefixes(prefixes)
                except Exception:
                    names = []
                delete_queues(names)

    # ------------------------------------------------------------ partitions

    def partition_id(self, name: str = "p") -> str:
        """A partition id unique to this test (its queues are deleted in teardown)."""
        pid = f"t{name}-{self.tag}"
        self.partition_ids.append(pid)
        return pid

    def start_partition(self, queues: dict[str, int], name: str = "p") -> str:
        """Start a partition with a fresh id; it runs when the start returns."""
        pid = self.partition_id(name)
        assert roger.Partition.start(pid, queues) == "running"
        return pid

    # ------------------------------------------------------------ actors

    def partition_child(self, pid: str, *path: str) -> Any:
        """The address of an actor in partition ``pid``'s tree, by child ids:
        ``("global",)``, ``("jobs", "consumer")``; None when not running."""
        from supervision import which_children

        node = roger_node.current()
        address = node._child_address("partitions")
        for child_id in (pid, *path):
            if address is None:
                return None
            found = [
                info.address
                for info in which_children(address, 5.0, system=node.app.system)
                if info.id == child_id and info.address not in (None, "restarting")
            ]
            address = found[0] if found else None
        return address

    def global_status(self, pid: str) -> dict[str, Any]:
        """The GlobalStatus of the partition's Global on this node."""
        from roger_actors.partition.global_server import GlobalStatus
        from supervision import call

        address = wait_for(
            lambda: self.partition_child(pid, "global"), what=f"the Global of {pid}"
        )
        system = roger_node.current().app.system
        status: dict[str, Any] = call(address, GlobalStatus(), 10, system=system)
        return status

    # ------------------------------------------------------------ journal

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """Events the jobs and callbacks wrote so far."""
        return read_events(self.journal, event)

    def tags(self, event: str) -> set[str]:
        """Distinct job tags that wrote ``event``."""
        return {e["tag"] for e in self.events(event)}

    def wait_events(self, event: str, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events named ``event`` exist; return them."""
        try:
            return wait_for(
                lambda: len(self.events(event)) >= count and self.events(event),
                timeout,
                what=f"{count} {event!r} events",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\njournal:\n{self.summary()}") from None

    def wait_tags(self, event: str, tags: set[str], timeout: float = WAIT) -> None:
        """Wait until every tag in ``tags`` wrote ``event``; the journal goes in the failure."""
        try:
            wait_for(lambda: self.tags(event) >= tags, timeout, f"{event!r} of {sorted(tags)}", 0.1)
        except AssertionError as exc:
            missing = sorted(tags - self.tags(event))
            raise AssertionError(f"{exc}\nmissing: {missing}\njournal:\n{self.summary()}") from None

    def wait_progress(
        self, event: str, count: int, stall: float = 5.0, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait for ``count`` events named ``event``; fail early when none is added
        for ``stall`` seconds (a partition that stopped taking jobs)."""
        deadline = time.monotonic() + timeout
        seen, changed = -1, time.monotonic()
        while True:
            events = self.events(event)
            if len(events) >= count:
                return events
            now = time.monotonic()
            if len(events) != seen:
                seen, changed = len(events), now
            if now - changed > stall or now > deadline:
                raise AssertionError(
                    f"{len(events)} of {count} {event!r} events, none new for "
                    f"{now - changed:.1f} s"
                )
            time.sleep(0.1)

    def summary(self) -> str:
        """The journal, one short line per event (for failure messages)."""
        events = self.events()
        t0 = events[0]["t"] if events else 0.0
        return "\n".join(
            f"  {e['t'] - t0:7.3f} {e['event']} {e.get('tag')} pid={e['pid']}"
            + (f" kind={e['kind']}" if "kind" in e else "")
            for e in events
        )

    def enqueue(self, job_class: type[roger.Job], pid: str, *args: Any,
                queue: str | None = None) -> roger.Job:
        """Create a job with args ``[journal, *args]`` and enqueue it."""
        job = roger.Job.create(job_class, [self.journal, *args])
        roger.Job.enqueue(job, pid, queue=queue)
        return job
