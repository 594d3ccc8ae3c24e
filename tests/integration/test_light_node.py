"""Specification: a node on the light base (``actor_system_base = "light"``),
on RabbitMQ with real processes and signals.

The node-level actors run in the node's process; every partition's tree
runs in one partition host process of its own. The host and the workers are
forked by the node's fork server (a child of the node, see
:mod:`supervision.forkserver`), not by the node or the host. A SIGKILL of the host is a crash of
the PartitionSupervisor: its supervisor starts a new host, the registry
starts every partition there again, and the job that was running comes
back from the broker and runs.

Run with ``scripts/test tests/integration/test_light_node.py``.
"""

from __future__ import annotations

import ipaddress
import os

import pytest

import roger_actors as roger
from tests.node_procs import descendants, listening_sockets, partition_host
from tests.partition_harness import NodeHarness, is_alive, live_children, parent_of, wait_for
from tests.procs import process_name, sigkill
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(90)


def _light_node_with_two_partitions(h: NodeHarness, max_workers: int) -> tuple[str, str]:
    """Start the node on the light base and partitions ``a`` and ``b``."""
    h.start(actor_system_base="light")
    return (
        h.start_partition({"default": max_workers}, name="a"),
        h.start_partition({"default": max_workers}, name="b"),
    )


def test_every_partition_runs_in_one_host_process_and_the_workers_come_from_the_fork_server(
    h: NodeHarness,
) -> None:
    first, second = _light_node_with_two_partitions(h, 2)
    tags = [f"j{i}" for i in range(6)]
    for index, tag in enumerate(tags):
        h.enqueue(TimedJob, (first, second)[index % 2], tag, 0)

    h.wait_tags("after_run", set(tags))
    host = partition_host()
    servers = {e["ppid"] for e in h.events("start")}
    assert servers == {parent_of(host)}, "the host and the workers have one parent"
    assert parent_of(host) in live_children(os.getpid()), "a child of the node's process"
    workers = {e["pid"] for e in h.events("start")}
    assert host not in workers
    assert {process_name(p) for p in workers if is_alive(p)} <= {"WorkerServer"}


def test_a_sigkilled_partition_host_comes_back_with_its_partitions_and_the_running_job_runs(
    h: NodeHarness,
) -> None:
    first, second = _light_node_with_two_partitions(h, 1)
    h.enqueue(TimedJob, first, "long", 2)
    [start] = h.wait_events("start", 1)
    host = partition_host()

    sigkill(host)
    wait_for(lambda: not is_alive(host), what="the partition host gone")
    h.enqueue(TimedJob, second, "after", 0)

    h.wait_tags("after_run", {"long", "after"}, timeout=60)
    wait_for(
        lambda: {first, second} <= set(roger.Partition.partitions()["running"]),
        what="both partitions running again",
    )
    longs = [e for e in h.events("start") if e["tag"] == "long"]
    assert len(longs) == 2, "the job killed with the host ran again, once"
    assert longs[1]["pid"] != start["pid"] and partition_host() != host, "in a new host"


def test_neither_the_partition_host_nor_a_worker_listens_on_any_port(h: NodeHarness) -> None:
    """On light there is no Thespian admin and no actor port: the node's own
    process listens on nothing beyond loopback, and the host and the
    workers on nothing at all (they talk over socket pairs)."""
    first, _ = _light_node_with_two_partitions(h, 1)
    h.enqueue(TimedJob, first, "probe", 0)
    [start] = h.wait_events("start", 1)
    host, worker = partition_host(), start["pid"]
    node_side = {os.getpid()} | descendants(os.getpid())
    assert {host, worker} <= node_side

    sockets = listening_sockets(node_side)
    exposed = [
        (pid, f"{s.address}:{s.port}")
        for pid, s in sockets
        if not ipaddress.ip_address(s.address).is_loopback
    ]
    assert exposed == [], f"listening on a non-loopback address: {exposed}"
    assert [s for pid, s in sockets if pid in (host, worker)] == []
