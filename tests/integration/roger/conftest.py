"""Roger's ``test/support/app_case.ex`` for the port: one node per test module,
one fresh partition per test.

- ``node`` (module scope): a :class:`RogerHarness` started with the module's
  ``NODE_CONFIG`` (a dict of config keys, default none) and the recording
  callbacks of :mod:`tests.integration.roger.jobs`. Roger's suite runs one application
  for all its tests; a module here shares one node among its tests.
- ``app`` (per test): Roger's ``@app``: a partition with the module's
  ``QUEUES`` (default ``{"default": 10}``, AppCase's ``queues:`` option)
  under a fresh id, running when the test starts, stopped afterwards
  (AppCase's ``on_exit``); the node deletes its queues when it stops.
- ``journal`` (per test): the events the jobs and callbacks of this test
  record (Roger's messages to the test process).
- ``roger_node`` (per test): a node of one's own with another configuration
  (other retry levels, boot partitions); such a module requests no ``node``.

Every node gets its own ``system_exchange_prefix``, so ``System`` and
``Info`` see this node only (other nodes may share the broker).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import roger_actors as roger
from tests.integration.roger.jobs import JOURNAL_DIR_ENV, RecordingCallbacks, journal_path
from tests.partition_harness import WAIT, NodeHarness, wait_for
from tests.roger_test_jobs2 import read_events


class Journal:
    """The events recorded during one test (see :func:`tests.integration.roger.jobs.record`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """Events named ``event`` (all when None) whose fields equal ``match``
        (e.g. ``job=job.id``, ``args="job_1"``), in the order written."""
        return [
            e for e in read_events(self.path, event)
            if all(e.get(k) == v for k, v in match.items())
        ]

    def wait(
        self, event: str, count: int = 1, timeout: float = WAIT, **match: Any
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` such events exist; return them (the journal is
        in the failure message)."""
        try:
            return wait_for(
                lambda: len(self.events(event, **match)) >= count
                and self.events(event, **match),
                timeout,
                what=f"{count} {event!r} event(s) matching {match}",
                interval=0.02,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\njournal:\n{self.summary()}") from None

    def summary(self) -> str:
        """One line per event, for failure messages."""
        events = self.events()
        t0 = events[0]["t"] if events else 0.0
        return "\n".join(
            f"  {e['t'] - t0:7.3f} {e['event']} job={e.get('job')} args={e.get('args')!r}"
            f" pid={e['pid']}" + (f" kind={e['kind']}" if "kind" in e else "")
            for e in events
        )


class RogerHarness(NodeHarness):
    """NodeHarness for Roger's suite: recording callbacks, its own System
    exchange prefix, boot partitions, and a journal per test."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.journal_dir = tmp_path / "journal"
        self.journal_dir.mkdir(exist_ok=True)

    def start(self, partitions: dict[str, Any] | None = None, **config: Any) -> roger.Node:
        """Start the node with ``config`` over the harness defaults and boot
        ``partitions`` (ids from :meth:`partition_id`) besides the probe."""
        settings = self.settings(
            **{
                "callbacks": RecordingCallbacks,
                "system_exchange_prefix": f"roger-port-{self.tag}",
                **config,
            }
        )
        # The probe proves boot partitions start; it is stopped once it consumes.
        probe = self.partition_id("ready")
        settings["partitions"] = {probe: {"default": 1}, **(partitions or {})}
        os.environ[JOURNAL_DIR_ENV] = str(self.journal_dir)
        self.new_journal()
        self.node = roger.start(settings)
        self.wait_consuming(probe, {"default": 1})
        roger.Partition.stop(probe)
        return self.node

    def start_partition(self, queues: dict[str, int], name: str = "p") -> str:
        """Start a partition with a fresh id; return once it consumes each of
        its queues (Roger's ``Partition.start`` returns after the Consumer
        has subscribed)."""
        pid = self.partition_id(name)
        roger.Partition.start(pid, queues)
        self.wait_consuming(pid, queues)
        return pid

    def wait_consuming(self, pid: str, queues: dict[str, int]) -> None:
        """Wait until partition ``pid`` runs here and consumes every queue of
        ``queues`` with workers."""
        wanted = {q for q, n in queues.items() if n > 0}

        def consuming() -> bool:
            if pid not in roger.Partition.partitions()["running"]:
                return False
            stats = roger.Consumer.get_queues(pid)
            return all(stats.get(q, {}).get("consumer_count") == 1 for q in wanted)

        wait_for(consuming, what=f"partition {pid} consuming {sorted(wanted)}")

    def partition_id(self, name: str = "p") -> str:
        """A partition id unique to this call (its queues are deleted when the
        node stops): ``t<name><n>-<tag>``."""
        self.sequence = getattr(self, "sequence", 0) + 1
        return super().partition_id(f"{name}{self.sequence}")

    def new_journal(self) -> Journal:
        """A fresh journal, made the one jobs and callbacks write to from now on."""
        path = self.journal_dir / f"events-{uuid.uuid4().hex[:8]}.jsonl"
        path.touch()
        current = self.journal_dir / "current"
        scratch = self.journal_dir / "current.tmp"
        scratch.write_text(str(path))
        os.replace(scratch, current)
        assert journal_path() == path
        return Journal(path)

    def release(self, job: roger.Job) -> None:
        """Let a job that waits for its release file go on (see ReconnectionTest.MyJob)."""
        (self.journal_dir / f"release-{job.id}").touch()

    @property
    def node_name(self) -> str:
        assert self.node is not None
        name: str = self.node.config.node_name
        return name


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[RogerHarness]:
    """The module's node (started with the module's ``NODE_CONFIG``)."""
    harness = RogerHarness(tmp_path_factory.mktemp("roger-node"))
    try:
        harness.start(**getattr(request.module, "NODE_CONFIG", {}))
        yield harness
    finally:
        harness.close()


@pytest.fixture
def journal(node: RogerHarness) -> Journal:
    """This test's journal on the module's node."""
    return node.new_journal()


@pytest.fixture
def app(request: pytest.FixtureRequest, node: RogerHarness, journal: Journal) -> Iterator[str]:
    """Roger's ``@app``: a running partition with the module's ``QUEUES``."""
    queues = getattr(request.module, "QUEUES", {"default": 10})
    pid = node.start_partition(queues, name="app")
    try:
        yield pid
    finally:
        try:
            roger.Partition.stop(pid)
        except roger.NotRunningError:
            pass


@pytest.fixture
def roger_node(tmp_path: Path) -> Iterator[Callable[[], RogerHarness]]:
    """``roger_node()`` gives a node harness of this test's own, not started
    (``h.partition_id()`` first for boot partitions, then ``h.start(...)``);
    one node runs at a time. Each is stopped after the test."""
    made: list[RogerHarness] = []

    def make() -> RogerHarness:
        directory = tmp_path / f"node{len(made)}"
        directory.mkdir()
        harness = RogerHarness(directory)
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            harness.close()
