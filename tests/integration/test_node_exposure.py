"""What a running node exposes: its sockets, its admin port, what stop() leaves.

Real nodes (multiprocTCPBase + RabbitMQ) through :class:`NodeHarness`; the
node's processes and their sockets are read from /proc
(:mod:`tests.node_procs`).
"""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path

import pytest

import roger_actors as roger
from roger_actors.runtime import _runtime
from tests.cluster_harness import listening_pid
from tests.node_procs import (
    NOBODY,
    descendants,
    listening_sockets,
    node_processes,
    root_supervisor_pid,
    squatter,
    uid_of,
)
from tests.partition_harness import NodeHarness, _free_admin_port, is_alive, wait_for
from tests.procs import sigkill
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(90)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def test_no_process_of_a_node_listens_on_a_non_loopback_address(h: NodeHarness) -> None:
    node = h.start()
    pid = h.start_partition({"default": 1})
    h.enqueue(TimedJob, pid, "probe", 0.0)
    h.wait_tags("after_run", {"probe"})
    [worker_pid] = {e["pid"] for e in h.events("start")}

    # The node's process itself (its handle on the actor system listens too),
    # its descendants, the daemonized admin and the admin's descendants.
    processes = node_processes(node.config.admin_port) | {os.getpid()}
    assert worker_pid in processes, "the worker that ran the job is one of the node's processes"
    sockets = listening_sockets(processes)

    exposed = [
        (pid, _comm(pid), f"{s.address}:{s.port}")
        for pid, s in sockets
        if not ipaddress.ip_address(s.address).is_loopback
    ]
    listening_pids = {pid for pid, _ in sockets}
    print(
        f"checked {len(sockets)} listening sockets ({len({s.inode for _, s in sockets})} "
        f"distinct) of {len(listening_pids)} of the node's {len(processes)} processes "
        f"(worker {worker_pid} included: {worker_pid in listening_pids})"
    )
    assert len(sockets) > 0
    assert worker_pid in listening_pids, "the worker's own actor port was checked"
    assert os.getpid() in listening_pids, "the node process's own socket was checked"
    assert node.config.admin_port in {s.port for _, s in sockets}, "the admin port was checked"
    assert exposed == [], f"listening on a non-loopback address: {exposed}"


def test_a_node_refuses_an_admin_port_another_user_listens_on(h: NodeHarness) -> None:
    port = _free_admin_port()
    before = descendants(os.getpid())
    with squatter(port, "127.0.0.1", NOBODY) as squatter_pid:
        with pytest.raises(roger.ConfigError) as raised:
            h.start(admin_port=port)
        started = descendants(os.getpid()) - before - {squatter_pid}
        as_nobody = [pid for pid in started | descendants(squatter_pid) if uid_of(pid) == NOBODY]
    message = str(raised.value)
    assert "admin_port" in message and str(port) in message, message
    assert as_nobody == [], "no process of the node runs as the squatter's user"
    assert _runtime.node is None, "no node is left half-started"


def test_a_node_refuses_an_admin_port_taken_on_another_address_or_ipv6(h: NodeHarness) -> None:
    for host in ("0.0.0.0", "::1"):
        port = _free_admin_port()
        with squatter(port, host, NOBODY), pytest.raises(roger.ConfigError, match=str(port)):
            h.start(admin_port=port)


def test_stop_after_the_tree_died_still_ends_every_process_of_the_node(h: NodeHarness) -> None:
    node = h.start()
    port = node.config.admin_port
    admin = listening_pid(port)
    assert admin is not None
    processes = node_processes(port) - {os.getpid()}
    assert len(processes) > 3

    sigkill(root_supervisor_pid(admin))
    wait_for(lambda: not node.app.is_running, what="the application root to be reported dead")

    started = time.monotonic()
    try:
        try:
            roger.stop()
        except roger.RogerError:  # a clear error is allowed; leaving processes is not
            pass
        wait_for(
            lambda: not [p for p in processes if is_alive(p)],
            timeout=30,
            what="every process of the node to end",
        )
        assert time.monotonic() - started < 60
        assert listening_pid(port) is None, "nothing listens on the admin port any more"
    finally:
        for pid in processes:  # never leave a failed run's orphans behind
            if is_alive(pid):
                sigkill(pid)
