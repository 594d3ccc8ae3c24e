"""Specification: a node whose application tree died, or whose actor
system's admin died, exits non-zero (as a permanent OTP application's node
does, so that its process manager starts a new one) and leaves no process
behind.

Each test runs a real ``roger-actors node`` process against the RabbitMQ on
127.0.0.1:5672 and SIGKILLs one of its processes. Run one with
``scripts/test tests/integration/test_node_exits.py::<name>``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import roger_actors as roger
from supervision.system import admin_process
from tests.cluster_harness import ROOT, Cluster, listening_pid
from tests.node_procs import (
    NodeProcess,
    kill_node,
    node_processes,
    root_supervisor_pid,
    start_node_process,
)
from tests.partition_harness import BROKER, NodeHarness, _free_admin_port, read_events, wait_for
from tests.procs import is_alive, sigkill

pytestmark = pytest.mark.timeout(120)

#: Seconds a failed node may take to notice, log and exit (it checks every
#: 0.5 s; what is left of the actor system then goes down).
EXIT_WITHIN = 15.0


@pytest.fixture
def cli_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """A started ``roger-actors node`` process with one partition, on
    multiprocTCPBase (these tests kill its Thespian admin, application master
    and root supervisor, each a process there); whatever is left of it is
    killed afterwards, and the test's queues deleted."""
    c = Cluster(tmp_path)
    node = start_node_process(
        tmp_path,
        c.prefix,
        c.harness.tag,
        {c.harness.partition_id(): {"default": 1}},
        actor_system_base="multiprocTCPBase",
    )
    try:
        wait_for(
            lambda: node.proc.poll() is None and "started (partitions" in node.log_text(),
            60,
            what="the node started",
            interval=0.2,
        )
        yield node
    finally:
        if node.proc.poll() is None or listening_pid(node.admin_port) is not None:
            kill_node(node)
        # A process of the node's session can outlive it (reparented to init,
        # so not found below the node or the admin): never leave one behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)
        c.close()


def _exits_non_zero_and_leaves_nothing(node: NodeProcess, killed_at: float) -> None:
    code = node.proc.wait(timeout=EXIT_WITHIN + 30)
    took = time.monotonic() - killed_at
    assert code == 1, node.log_text()
    assert took < EXIT_WITHIN, f"the node took {took:.1f} s to exit"
    assert "cannot go on" in node.log_text()
    wait_for(
        lambda: (
            not node_processes(node.admin_port, node.proc.pid)
            and listening_pid(node.admin_port) is None
        ),
        20,
        what="no process of the node left",
    )


def test_the_node_exits_non_zero_when_its_application_root_dies(cli_node: NodeProcess) -> None:
    admin = admin_process(cli_node.admin_port)
    assert admin is not None
    sigkill(root_supervisor_pid(admin[0]))
    _exits_non_zero_and_leaves_nothing(cli_node, time.monotonic())
    assert "application root 'roger' exited" in cli_node.log_text()


def test_the_node_exits_non_zero_when_its_actor_system_admin_dies(cli_node: NodeProcess) -> None:
    admin = admin_process(cli_node.admin_port)
    assert admin is not None
    sigkill(admin[0])
    _exits_non_zero_and_leaves_nothing(cli_node, time.monotonic())
    assert "admin" in cli_node.log_text()


def test_the_node_exits_non_zero_naming_its_application_master_when_that_dies(
    cli_node: NodeProcess,
) -> None:
    admin = admin_process(cli_node.admin_port)
    assert admin is not None
    root = root_supervisor_pid(admin[0])
    master = int(Path(f"/proc/{root}/stat").read_text().rsplit(")", 1)[1].split()[1])
    sigkill(master)
    _exits_non_zero_and_leaves_nothing(cli_node, time.monotonic())
    log = cli_node.log_text()
    assert "application master of 'roger' exited" in log, log


def test_an_embedding_process_learns_from_wait_that_its_nodes_root_died(
    h: NodeHarness,
) -> None:
    node = h.start()
    assert node.failure() is None
    admin = admin_process(node.config.admin_port)
    assert admin is not None
    sigkill(root_supervisor_pid(admin[0]))
    why = node.wait(interval=0.1)
    assert "application root 'roger' exited" in why
    roger.stop()  # still cleans up
    assert listening_pid(node.config.admin_port) is None


EMBEDDED = """
import sys, time
import roger_actors as roger
from tests.roger_test_jobs2 import JsonCallbacks, TimedJob
journal, pid, port, prefix, amqp = sys.argv[1:6]
roger.start({"amqp": amqp, "admin_port": int(port), "callbacks": JsonCallbacks,
             "system_exchange_prefix": prefix, "shutdown_timeout": 10,
             "partitions": {pid: {"default": 1}}})
roger.stop_on_signals()
roger.Job.enqueue(roger.Job.create(TimedJob, [journal, "slow", 1.5]), pid)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def test_an_embedding_process_that_opted_in_drains_its_node_on_sigterm(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    h = c.harness
    pid = h.partition_id("embedded")
    port = _free_admin_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROGER_")}
    env["PYTHONPATH"] = str(ROOT)
    amqp = f"{BROKER}?name=roger-test-embedded-{h.tag}"
    log = tmp_path / "embedded.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", EMBEDDED, h.journal, pid, str(port), c.prefix, amqp],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: read_events(h.journal, "start"), 60, what="the job started")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == -signal.SIGTERM, log.read_text(errors="replace")
        # The running job finished before the node stopped, then SIGTERM ended the process.
        assert [e["tag"] for e in read_events(h.journal, "end")] == ["slow"]
        wait_for(lambda: listening_pid(port) is None, what="the node's actor system gone")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        admin = admin_process(port)
        if admin is not None:  # a failed run's actor system
            os.killpg(admin[1], signal.SIGKILL)
        c.close()


def test_a_sigkilled_node_process_takes_its_actor_system_along(
    cli_node: NodeProcess, tmp_path: Path
) -> None:
    """The node process dies without stopping its actor system: the actor
    system (which daemonized into a session of its own) ends too, within
    seconds, so no orphan keeps the admin port and the partitions' work, and
    the node the process manager starts next starts."""
    before = node_processes(cli_node.admin_port, cli_node.proc.pid)
    assert len(before) > 3
    sigkill(cli_node.proc.pid)
    wait_for(
        lambda: (
            not node_processes(cli_node.admin_port, cli_node.proc.pid)
            and listening_pid(cli_node.admin_port) is None
        ),
        EXIT_WITHIN,
        what="no process of the killed node left",
    )
    log = tmp_path / "next.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROGER_")}
    env["PYTHONPATH"] = str(ROOT)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "roger_actors", "node", "--config", str(cli_node.toml)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
    following = NodeProcess(proc, cli_node.toml, cli_node.name, cli_node.admin_port, log)
    try:
        wait_for(
            lambda: proc.poll() is None and "started (partitions" in following.log_text(),
            60,
            what=f"the next node started: {following.log_text()[-500:]}",
            interval=0.2,
        )
    finally:
        kill_node(following)


ABANDONED = """
import sys, time
import roger_actors as roger
port, prefix, amqp, base = sys.argv[1:5]
roger.start(
    {
        "amqp": amqp,
        "admin_port": int(port),
        "system_exchange_prefix": prefix,
        "actor_system_base": base,
    }
)
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("base", ["multiprocTCPBase", "light"])
def test_an_embedding_process_ended_by_a_signal_leaves_no_process_of_its_node(
    tmp_path: Path, base: str
) -> None:
    """An embedding process that did not opt in to signal handling dies of
    SIGTERM with its node running: every process of its node ends with it
    (multiprocTCPBase: its actor system; light: the fork server, the
    partition host, the workers)."""
    c = Cluster(tmp_path)
    port = _free_admin_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROGER_")}
    env["PYTHONPATH"] = str(ROOT)
    amqp = f"{BROKER}?name=roger-test-abandoned-{c.harness.tag}"
    proc = subprocess.Popen(
        [sys.executable, "-c", ABANDONED, str(port), c.prefix, amqp, base],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        assert (admin_process(port) is not None) == (base == "multiprocTCPBase")
        before = node_processes(port, proc.pid)
        assert before, "the node runs processes of its own"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
        wait_for(
            lambda: admin_process(port) is None and not any(is_alive(p) for p in before),
            EXIT_WITHIN,
            what="every process of its node gone",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        admin = admin_process(port)
        if admin is not None:
            os.killpg(admin[1], signal.SIGKILL)
        c.close()
