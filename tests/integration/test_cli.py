"""The ``roger-actors`` command line, run as a real subprocess
(``python -m roger_actors``) against nodes on the real broker.

Every test has its own System exchange prefix (a :class:`Cluster`), handed to
the CLI through ``ROGER_SYSTEM_EXCHANGE_PREFIX`` (or the TOML file for
``node``), so the CLI sees only the test's nodes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import roger_actors as roger
from tests.cluster_harness import ROOT, Cluster, listening_pid
from tests.node_procs import kill_node, start_node_process
from tests.partition_harness import BROKER, counts, read_events, wait_for
from tests.roger_test_jobs2 import TimedJob

#: The cluster fixture gives every node a cluster secret (signed traffic).
SIGNED_CLUSTER = True
TIMED = "tests.roger_test_jobs2.TimedJob"
KEYED = "tests.roger_test_jobs2:KeyedJob"


def cli_env(
    prefix: str | None = None, secret: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a CLI process: no ROGER_* from outside, the test broker,
    the cluster's exchange prefix and secret when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROGER_")}
    env.update(PYTHONPATH=str(ROOT), ROGER_AMQP_URL=f"{BROKER}?name=roger-test-cli")
    if prefix is not None:
        env["ROGER_SYSTEM_EXCHANGE_PREFIX"] = prefix
    if secret is not None:
        env["ROGER_CLUSTER_SECRET"] = secret
    env.update(extra)
    return env


def run_cli(
    *args: str, prefix: str | None = None, secret: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m roger_actors *args``; never raises for a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "roger_actors", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=cli_env(prefix, secret),
    )


def cluster_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` against ``cluster`` (its exchange prefix and secret)."""
    return run_cli(*args, prefix=cluster.prefix, secret=cluster.secret)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """stdout of a run that must have succeeded (the failure shows stderr)."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    """stderr of a run that must have failed with ``code``, without a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


@pytest.fixture
def cluster(cluster: Cluster) -> Cluster:
    """The cluster of conftest, with its in-process node started."""
    cluster.start()
    return cluster


# ---------------------------------------------------------------- ping


def test_ping_lists_every_node(cluster: Cluster) -> None:
    other = f"n2-{cluster.harness.tag}"
    cluster.start_other(other)
    lines = ok(cluster_cli(cluster, "ping")).splitlines()
    assert [line.split() for line in lines] == sorted(
        [[cluster.node_name, "pong"], [other, "pong"]]
    )
    document = json.loads(ok(cluster_cli(cluster, "ping", "--json")))
    assert document == sorted(
        [{"node": cluster.node_name, "reply": "pong"}, {"node": other, "reply": "pong"}],
        key=lambda item: item["node"],
    )
    # Global options are accepted after the command too.
    assert json.loads(ok(cluster_cli(cluster, "--json", "ping", "--timeout", "3")))


# ---------------------------------------------------------------- jobs


def test_enqueue_runs_the_job(cluster: Cluster) -> None:
    h = cluster.harness
    pid = h.start_partition({"default": 2})
    out = ok(cluster_cli(cluster, "enqueue", pid, TIMED, json.dumps([h.journal, "cli-1", 0])))
    job_id = out.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id), out
    h.wait_tags("after_run", {"cli-1"})
    [after] = [e for e in h.events("after_run") if e["tag"] == "cli-1"]
    assert after["id"] == job_id and after["partition"] == pid

    document = json.loads(
        ok(cluster_cli(cluster, "--json", "enqueue", pid, "tests.roger_test_jobs2:TimedJob",
                   json.dumps([h.journal, "cli-2", 0]), "--queue", "default"))
    )
    assert document["partition"] == pid and document["queue"] == "default"
    assert document["type"] == TIMED
    h.wait_tags("after_run", {"cli-2"})


def test_enqueue_duplicate_queue_key_fails_with_its_message(cluster: Cluster) -> None:
    h = cluster.harness
    pid = h.start_partition({"default": 1})
    roger.Consumer.pause(pid, "default")  # the first job stays queued
    args = json.dumps([h.journal, "dup", 0, "the-key", None])
    ok(cluster_cli(cluster, "enqueue", pid, KEYED, args))
    err = failed(cluster_cli(cluster, "enqueue", pid, KEYED, args), 1)
    assert "the-key" in err and "already queued" in err


def test_cancel_kills_the_running_job(cluster: Cluster) -> None:
    h = cluster.harness
    pid = h.start_partition({"default": 1})
    job = h.enqueue(TimedJob, pid, "long", 30)
    h.wait_tags("start", {"long"})
    out = ok(cluster_cli(cluster, "cancel", pid, job.id))
    assert job.id in out
    h.wait_tags("on_cancel", {"long"})
    assert "long" not in h.tags("end")


def test_pause_and_resume_reach_the_node(cluster: Cluster) -> None:
    pid = cluster.harness.start_partition({"default": 1, "other": 1})
    ok(cluster_cli(cluster, "pause", pid, "default"))
    wait_for(lambda: roger.Consumer.get_queues(pid)["default"]["paused"], what="default paused")
    assert not roger.Consumer.get_queues(pid)["other"]["paused"]
    document = json.loads(ok(cluster_cli(cluster, "resume", pid, "default", "--json")))
    assert document == {"partition": pid, "queue": "default", "paused": False}
    wait_for(
        lambda: not roger.Consumer.get_queues(pid)["default"]["paused"], what="default resumed"
    )


def test_purge_prints_the_count(cluster: Cluster) -> None:
    h = cluster.harness
    pid = h.start_partition({"default": 1})
    roger.Consumer.pause(pid, "default")
    for tag in ("a", "b", "c"):
        h.enqueue(TimedJob, pid, tag, 0)
    name = roger.Queue.make_name(pid, "default")
    wait_for(lambda: (counts(name) or (0, 0))[0] == 3, what="3 jobs queued")
    assert ok(cluster_cli(cluster, "purge", pid, "default")).strip() == "3"
    assert (counts(name) or (None,))[0] == 0
    # A queue that does not exist: exit 4, the queue named.
    err = failed(cluster_cli(cluster, "purge", pid, "nosuchqueue"), 4)
    assert roger.Queue.make_name(pid, "nosuchqueue") in err


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["enqueue", "p1", TIMED, "[1,"], "JSON_ARGS"),
        (["enqueue", "p1", "roger_actors.queue.Queue", "[]"], "JOB_TYPE"),
        (["enqueue", "p1", "tests.no_such_module.Job", "[]"], "JOB_TYPE"),
        (["enqueue", "p1", "NoDots", "[]"], "JOB_TYPE"),
        (["enqueue", "amq.p1", TIMED, "[]"], "PID"),
        (["enqueue", "p1", TIMED, "[]", "--queue", ""], "--queue"),
        (["pause", "p1", ""], "QUEUE"),
        (["partition", "start", "p1", '{"default": -1}'], "QUEUES_JSON"),
        (["partition", "start", "p1", "{"], "QUEUES_JSON"),
        (["jobs", "queued", "p1", "default", "--count", "0"], "--count"),
        (["ping", "--timeout", "soon"], "--timeout"),
        (["cancel", "p1"], "JOB_ID"),
        (["frobnicate"], "COMMAND"),
        (["--config", "/nonexistent/roger.toml", "ping"], "/nonexistent/roger.toml"),
        (["--amqp", "ftp://example.org/", "ping"], "--amqp"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(args: list[str], named: str) -> None:
    err = failed(run_cli(*args), 2)
    assert named in err


def test_no_command_is_a_usage_error() -> None:
    assert "COMMAND" in failed(run_cli(), 2)


def test_unreachable_broker_exits_3_quickly() -> None:
    started = time.monotonic()
    for command in (["ping"], ["cancel", "p1", "abc"], ["purge", "p1", "default"]):
        result = run_cli("--amqp", "amqp://guest:guest@127.0.0.1:1/", *command, timeout=30)
        err = failed(result, 3)
        assert "cannot reach the broker" in err and "127.0.0.1:1" in err
        assert "guest:guest" not in err  # the password is not printed
    assert time.monotonic() - started < 20


def test_cancel_in_unknown_partition_exits_4(tmp_path: Path) -> None:
    pid = f"tnowhere-{tmp_path.name[-8:]}-{os.getpid()}"
    err = failed(run_cli("cancel", pid, "abc"), 4)
    assert pid in err


# ---------------------------------------------------------------- info, jobs, partition


def test_info_lists_partitions_and_queues(cluster: Cluster) -> None:
    pytest.importorskip("roger_actors.node.info")
    pid = cluster.harness.start_partition({"default": 2, "reports": 1})
    document = json.loads(ok(cluster_cli(cluster, "info", "--json")))
    queues = document["running"][cluster.node_name][pid]
    assert queues["default"]["max_workers"] == 2 and queues["reports"]["max_workers"] == 1
    assert queues["default"]["paused"] is False
    table = ok(cluster_cli(cluster, "info")).splitlines()
    assert table[0].split()[:4] == ["NODE", "PARTITION", "QUEUE", "STATE"]
    rows = [line.split() for line in table[1:]]
    assert [cluster.node_name, pid, "default", "running", "2", "no"] in [r[:6] for r in rows]


def test_jobs_running_and_queued(cluster: Cluster) -> None:
    pytest.importorskip("roger_actors.node.info")
    h = cluster.harness
    pid = h.start_partition({"default": 1, "later": 1})
    running = h.enqueue(TimedJob, pid, "busy", 30)
    h.wait_tags("start", {"busy"})
    document = json.loads(
        ok(cluster_cli(cluster, "jobs", "running", "--partition", pid, "--json"))
    )
    assert [(e["node"], e["partition"], e["id"]) for e in document] == [
        (cluster.node_name, pid, running.id)
    ]
    assert document[0]["type"] == TIMED
    table = ok(cluster_cli(cluster, "jobs", "running"))
    assert running.id in table

    roger.Consumer.pause(pid, "later")
    queued = [h.enqueue(TimedJob, pid, f"q{i}", 0, queue="later") for i in range(3)]
    name = roger.Queue.make_name(pid, "later")
    wait_for(lambda: (counts(name) or (0, 0))[0] == 3, what="3 jobs queued")
    document = json.loads(ok(cluster_cli(cluster, "jobs", "queued", pid, "later", "--json")))
    assert [e["id"] for e in document] == [job.id for job in reversed(queued)]  # newest first
    assert {e["type"] for e in document} == {TIMED}
    limited = json.loads(
        ok(cluster_cli(cluster, "jobs", "queued", pid, "later", "--count", "2", "--json"))
    )
    assert len(limited) == 2
    table = ok(cluster_cli(cluster, "jobs", "queued", pid, "later")).splitlines()
    assert table[0].split()[0] == "JOB_ID" and len(table) == 4
    roger.Global.cancel_job(pid, running.id)
    h.wait_tags("on_cancel", {"busy"})


def test_partition_start_reconfigure_stop(cluster: Cluster) -> None:
    pytest.importorskip("roger_actors.node.info")
    h = cluster.harness
    pid = h.partition_id("cli")
    me = cluster.node_name
    out = ok(cluster_cli(cluster, "partition", "start", pid, '{"default": 2}', "--node", me))
    assert out.split() == [me, "ok"]
    wait_for(lambda: pid in roger.Partition.partitions()["running"], what=f"{pid} running")

    document = json.loads(
        ok(
            cluster_cli(
                cluster, "partition", "reconfigure", pid, '{"default": 1, "extra": 3}', "--json"
            )
        )
    )
    assert document == [{"node": me, "result": "ok"}]
    wait_for(
        lambda: {q: s["max_workers"] for q, s in roger.Consumer.get_queues(pid).items()}
        == {"default": 1, "extra": 3},
        what="reconfigured queues",
    )

    # Another node's name: this node skips it, and that node did not answer.
    failed(cluster_cli(cluster, "partition", "stop", pid, "--node", "no-such-node"), 4)
    assert pid in roger.Partition.partitions()["running"]

    assert ok(cluster_cli(cluster, "partition", "stop", pid)).split() == [me, "ok"]
    wait_for(lambda: pid not in roger.Partition.partitions()["running"], what=f"{pid} stopped")
    # Stopping it again: it runs nowhere.
    failed(cluster_cli(cluster, "partition", "stop", pid), 4)


# ---------------------------------------------------------------- node


def test_node_command_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    c = Cluster(tmp_path)  # for its prefix and the teardown of the queues
    h = c.harness
    pid = h.partition_id("node")
    shutdown_timeout = 8
    node = start_node_process(
        tmp_path, c.prefix, h.tag, {pid: {"default": 2}}, c.secret,
        shutdown_timeout=shutdown_timeout,
    )
    proc, toml = node.proc, node.toml
    try:
        def pinged() -> bool:
            assert proc.poll() is None, node.log_text()
            result = run_cli("--config", str(toml), "ping", "--json")
            return result.returncode == 0 and [e["node"] for e in json.loads(result.stdout)] == [
                node.name
            ]

        wait_for(pinged, 60, what="ping sees the node", interval=0.2)
        job_id = ok(
            run_cli("--config", str(toml), "enqueue", pid, TIMED,
                    json.dumps([h.journal, "slow", 1.5]))
        ).strip()
        wait_for(lambda: read_events(h.journal, "start"), what="the job started")
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=shutdown_timeout + 15) == 0, node.log_text()
        assert time.monotonic() - stopped_at < shutdown_timeout + 15
        # The running job finished (it was not killed) before the node stopped.
        assert [e["tag"] for e in read_events(h.journal, "end")] == ["slow"]
        assert [e["id"] for e in read_events(h.journal, "after_run")] == [job_id]
        log_text = node.log_text()
        assert "SIGTERM received" in log_text and "Traceback" not in log_text
        wait_for(
            lambda: listening_pid(node.admin_port) is None, what="the node's actor system gone"
        )
    finally:
        if proc.poll() is None or listening_pid(node.admin_port) is not None:
            kill_node(node)
        c.close()
