"""The chaos soak: a real node under a stream of faults must lose no job.

Run (the long soak; figures in ``bench/README.md``)::

    .venv/bin/python -m bench.soak --jobs 100000 --partitions 20 --workers 4 \\
        --kill-every 0.5 --drops 2 --broker-restarts 1

and the short version CI runs (``tests/integration/test_soak.py``)::

    .venv/bin/python -m bench.soak --short

What it does:

1. It starts a RabbitMQ node of its own (``tests/rabbit_nodes.py``), so that
   it may drop every connection and restart the broker without touching the
   machine's shared broker. ``--broker cluster`` starts a 3-node RabbitMQ
   cluster instead, gives the node all three addresses, and may SIGKILL a
   broker node (``--broker-node-kills``; it is started again after
   ``--broker-down-seconds``). ``--broker shared`` uses the shared broker,
   with no broker restarts and connection drops scoped to the node's
   connections.
2. A restart loop, as a process manager would (systemd's ``Restart=always``,
   ``RestartSec=1``), runs ``python -m roger_actors node`` with ``--partitions``
   partitions of one queue (``default = --workers``) and starts it again
   each time it exits.
3. Once every partition consumes, it enqueues ``--jobs`` retryable
   :class:`~bench.soak_jobs.SoakJob` jobs spread over the partitions (raw
   confirmed publishes of Roger's payloads, pipelined); ``--fail-share`` of
   them fail their first attempt and go through a retry queue.
4. Faults, while jobs run: every ``--kill-every`` seconds a SIGKILL of a
   random process of the node: with probability ``--node-kill-share`` the
   node process or the actor system's admin, else its logger, an actor or a
   worker; ``--drops`` times every client
   connection is closed from the broker side; ``--broker-restarts`` times a
   broker node is stopped and started again; ``--broker-node-kills`` times a
   broker node of the cluster is SIGKILLed. These broker faults come at points
   of progress spread from 10% to 70% of the jobs done (or, when progress is
   slow, at the same fractions of ``--fault-seconds``). Faults stop when every
   job has run and every broker fault happened, or after ``--fault-seconds``.
5. Then it waits (at most ``--drain-timeout`` s) until every job has run,
   waits (at most a minute) for the copies still queued to run too, then
   stops the node with SIGTERM, and accounts by job id from the journal
   each run writes (:mod:`bench.soak_jobs`): jobs lost (never ran), jobs
   that ran twice or more, and messages left over in any of the soak's
   queues.

It prints a summary (``--json`` prints it as JSON too, last line) and exits
1 when any job is lost, 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiormq

from bench.soak_jobs import JOURNAL_ENV, SoakJob
from roger_actors import Job
from roger_actors.queue import Queue
from supervision.system import admin_process, process_alive

ROOT = Path(__file__).resolve().parent.parent
SHARED_BROKER = "amqp://guest:guest@127.0.0.1:5672/"
#: Seconds the restart loop waits before starting a node that exited.
RESTART_SECONDS = 1.0
#: Publishes in flight at once while enqueueing.
PIPELINE = 500
#: Longest wait, once every job ran, for the copies left in the queues to run.
SETTLE_SECONDS = 60.0


@dataclass
class Settings:
    """What one soak run does (the command-line options)."""

    jobs: int = 100_000
    partitions: int = 20
    workers: int = 4
    kill_every: float = 0.5
    node_kill_share: float = 0.1
    drops: int = 2
    broker_restarts: int = 1
    broker_node_kills: int = 0
    broker_down_seconds: float = 10.0
    fail_share: float = 0.05
    work_ms: int = 1
    fault_seconds: float = 300.0
    drain_timeout: float = 600.0
    start_timeout: float = 120.0
    broker: str = "own"
    seed: int = 0
    keep: bool = False


@dataclass
class Report:
    """What one soak run saw; ``lost`` must be 0."""

    jobs: int = 0
    partitions: int = 0
    workers_per_partition: int = 0
    kills: int = 0
    kills_by_kind: dict[str, int] = field(default_factory=dict)
    connection_drops: int = 0
    broker_restarts: int = 0
    broker_node_kills: int = 0
    node_starts: int = 0
    node_exit_codes: list[int] = field(default_factory=list)
    enqueue_seconds: float = 0.0
    drain_seconds: float = 0.0
    runs: int = 0
    lost: int = 0
    ran_twice: int = 0
    extra_runs: int = 0
    extra_runs_per_kill: float = 0.0
    left_in_queues: int = 0
    left_by_queue: dict[str, int] = field(default_factory=dict)
    lost_examples: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the broker


class Broker:
    """The broker the soak's node uses: a node of the soak's own (``own``), a
    3-node cluster of its own (``cluster``), or the shared one (``shared``)."""

    def __init__(self, kind: str, workdir: Path) -> None:
        """Start the broker nodes of ``kind`` (none for ``shared``)."""
        from tests.rabbit_nodes import BrokerCluster, BrokerNode

        self.kind = kind
        self.nodes: list[Any] = []
        self.cluster: Any = None
        name = f"roger-soak-{secrets.token_hex(3)}"
        if kind == "own":
            node = BrokerNode.create(name, base=workdir / "broker")
            node.start()
            self.nodes = [node]
        elif kind == "cluster":
            self.cluster = BrokerCluster.start_new(name, 3)
            self.nodes = list(self.cluster.nodes)
        elif kind != "shared":
            raise ValueError(f"--broker must be own, cluster or shared, got {kind!r}")
        self.urls = [node.url() for node in self.nodes] or [SHARED_BROKER]
        self.url = self.urls[0]

    def running(self) -> list[Any]:
        """The broker nodes of the soak's own that run now."""
        return [node for node in self.nodes if node.running()]

    def drop_connections(self, name_prefix: str) -> None:
        """Close the node's client connections from the broker side: every
        connection of the soak's own broker nodes, or, on the shared broker,
        those named after the soak's node."""
        if self.nodes:
            for node in self.running():
                node.close_all_connections("soak: connection drop")
            return
        for line in self._ctl("list_connections", "pid", "client_properties").splitlines():
            if name_prefix in line:
                pid = line.split("\t", 1)[0]
                self._ctl("close_connection", pid, "soak: connection drop", check=False)

    def restart(self, rng: random.Random) -> str:
        """Stop one broker node and start it again (same data, same ports);
        return its name."""
        assert self.nodes, "--broker shared cannot be restarted"
        node = rng.choice(self.nodes)
        node.stop()
        node.start()
        return str(node.node_name)

    def kill_node(self, rng: random.Random) -> Any:
        """SIGKILL one running node of the cluster; return it (to start again)."""
        assert self.cluster is not None, "broker node kills need --broker cluster"
        node = rng.choice(self.running())
        node.kill()
        return node

    def queue_counts(self, prefix: str) -> dict[str, int]:
        """Messages in every queue whose name starts with ``prefix``."""
        counts = {}
        for line in self._ctl("list_queues", "name", "messages").splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[0].startswith(prefix) and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
        return counts

    def delete_queues(self, prefix: str) -> None:
        """Delete the soak's queues (shared broker only: own nodes are removed)."""
        for name in self.queue_counts(prefix):
            self._ctl("delete_queue", name, check=False)

    def _ctl(self, *args: str, check: bool = True) -> str:
        if self.nodes:
            return str(self.running()[0].ctl("--no-table-headers", *args, check=check))
        done = subprocess.run(
            ["rabbitmqctl", "-q", "--no-table-headers", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )
        return done.stdout

    def stop(self) -> None:
        """SIGKILL the soak's own broker nodes (their data stays)."""
        for node in self.nodes:
            node.kill()

    def remove(self) -> None:
        """Stop and delete the soak's own broker nodes."""
        if self.cluster is not None:
            self.cluster.remove()
        for node in self.nodes:
            node.remove()


# ---------------------------------------------------------------- the node


class RestartLoop(threading.Thread):
    """Runs ``roger-actors node`` and starts it again whenever it exits."""

    def __init__(self, toml: Path, log: Path, env: dict[str, str]) -> None:
        """Nothing runs before :meth:`start`."""
        super().__init__(name="soak-restart-loop", daemon=True)
        self.toml, self.log, self.env = toml, log, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exit_codes: list[int] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        """Start the node, wait for it to exit, record the code, start it again."""
        while not self.stopping.is_set():
            with self.lock, open(self.log, "ab") as log:
                if self.stopping.is_set():
                    return
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "roger_actors", "node", "--config", str(self.toml)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env=self.env,
                    start_new_session=True,
                )
                self.starts += 1
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            self.exit_codes.append(code)
            log_line(f"node exited with {code}; starting it again in {RESTART_SECONDS} s")
            self.stopping.wait(RESTART_SECONDS)  # RestartSec, as a process manager does

    def pid(self) -> int | None:
        """The running node process, or None between runs."""
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def stop(self, admin_port: int, timeout: float = 60.0) -> None:
        """SIGTERM the node, wait for it, then SIGKILL whatever is left of it."""
        with self.lock:
            self.stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        admin = admin_process(admin_port)
        if admin is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(admin[1], signal.SIGKILL)
        self.join(10)


def node_processes(launcher: int | None, admin_port: int) -> dict[int, str]:
    """Every live process of the node, by kind: the node process (launcher),
    the actor system's admin, and the others (logger, actors, workers)."""
    from tests.node_procs import descendants

    found: dict[int, str] = {}
    roots: list[tuple[int, str]] = []
    if launcher is not None and process_alive(launcher):
        roots.append((launcher, "node"))
    admin = admin_process(admin_port)
    if admin is not None:
        roots.append((admin[0], "admin"))
    for root, kind in roots:
        found.setdefault(root, kind)
        for child in descendants(root):
            found.setdefault(child, "actor")
    return found


def pick_victim(procs: dict[int, str], rng: random.Random, node_share: float) -> int | None:
    """The process to SIGKILL next: with probability ``node_share`` the node
    process or the actor system's admin (a whole-node crash), else one of the
    other processes (an actor, a worker, the logger). None when the chosen
    group is empty (no kill this tick): a node just started has no actors
    yet, and killing its node process again at every tick would test only
    restarts (a soak with a uniform choice had 241 of its 286 kills there)."""
    whole = sorted(pid for pid, kind in procs.items() if kind in ("node", "admin"))
    parts = sorted(pid for pid, kind in procs.items() if kind not in ("node", "admin"))
    group = whole if rng.random() < node_share else parts
    return rng.choice(group) if group else None


def write_node_config(
    path: Path, urls: list[str], prefix: str, admin_port: int, s: Settings
) -> list[str]:
    """Write the node's TOML (every broker address, for failover); return the
    partition ids."""
    partitions = [f"{prefix}-p{i:02d}" for i in range(s.partitions)]
    named = [f"{url}?name={prefix}-node" for url in urls]
    settings: dict[str, Any] = {
        "amqp": named[0] if len(named) == 1 else named,
        "system_exchange_prefix": prefix,
        "node_name": f"{prefix}-node",
        "admin_port": admin_port,
        "allowed_job_modules": ["bench.soak_jobs"],
        "retry_levels": [1, 2, 3],
        "shutdown_timeout": 5,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["", "[partitions]"]
    lines += [f'"{pid}" = {{ default = {s.workers} }}' for pid in partitions]
    path.write_text("\n".join(lines) + "\n")
    return partitions


# ---------------------------------------------------------------- jobs


def make_jobs(partitions: list[str], s: Settings, rng: random.Random) -> list[tuple[str, Job]]:
    """``(partition, job)`` for every job of the run."""
    jobs = []
    for n in range(s.jobs):
        fail_first = rng.random() < s.fail_share
        job = Job.create(SoakJob, [n, s.work_ms, fail_first])
        jobs.append((partitions[n % len(partitions)], job))
    return jobs


async def _wait_consumed(url: str, queues: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = set(queues)
    while waiting:
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions not consuming after {timeout} s: {sorted(waiting)[:5]}")
        try:
            connection = await aiormq.connect(url)
        except Exception:
            await asyncio.sleep(0.5)  # the broker is still starting: ask again
            continue
        try:
            for name in sorted(waiting):
                channel = await connection.channel()
                try:
                    ok = await channel.queue_declare(name, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    continue
                if ok.consumer_count:
                    waiting.discard(name)
                with contextlib.suppress(Exception):
                    await channel.close()
        finally:
            await connection.close()
        if waiting:
            await asyncio.sleep(0.5)  # a bounded poll of the broker's own view


async def _publish_all(url: str, jobs: list[tuple[str, Job]]) -> None:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for start in range(0, len(jobs), PIPELINE):
            sends = []
            for partition, job in jobs[start : start + PIPELINE]:
                message = job.to_amqp(partition, None, 1 << 20)
                sends.append(
                    channel.basic_publish(
                        message.body,
                        routing_key=message.routing_key,
                        properties=aiormq.spec.Basic.Properties(**message.properties),
                        mandatory=True,
                    )
                )
            for confirm in await asyncio.gather(*sends):
                if not isinstance(confirm, aiormq.spec.Basic.Ack):
                    raise RuntimeError(f"the broker did not take a job: {confirm!r}")
    finally:
        await connection.close()


class Journal:
    """The jobs' journal, read as it grows: how many times each job id ran."""

    def __init__(self, path: Path, ids: set[str]) -> None:
        """Nothing is read before :meth:`update`."""
        self.path, self.ids = path, ids
        self.offset = 0
        self.partial = b""
        self.counts: collections.Counter[str] = collections.Counter()
        self.done = 0

    def update(self) -> int:
        """Read what was appended since the last call; return how many of
        ``ids`` ran at least once."""
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as file:
            file.seek(self.offset)
            chunk = file.read()
            self.offset += len(chunk)
            lines = (self.partial + chunk).split(b"\n")
            self.partial = lines.pop()
            for line in lines:
                job_id = line.decode()
                self.counts[job_id] += 1
                if self.counts[job_id] == 1 and job_id in self.ids:
                    self.done += 1
        return self.done


# ---------------------------------------------------------------- the run


def log_line(text: str) -> None:
    """One progress line on stderr, with the time."""
    print(f"{time.strftime('%H:%M:%S')} soak: {text}", file=sys.stderr, flush=True)


def run(s: Settings) -> Report:
    """Run one soak; see the module docstring."""
    rng = random.Random(s.seed or None)
    workdir = Path(tempfile.mkdtemp(prefix="roger-soak-"))
    prefix = f"soak-{secrets.token_hex(3)}"
    journal = workdir / "journal"
    report = Report(jobs=s.jobs, partitions=s.partitions, workers_per_partition=s.workers)
    kinds: collections.Counter[str] = collections.Counter()
    broker = Broker(s.broker, workdir)
    from tests.procs import free_port

    admin_port = free_port(19000, 19999)
    partitions = write_node_config(workdir / "node.toml", broker.urls, prefix, admin_port, s)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROGER_")}
    env.update(PYTHONPATH=str(ROOT), **{JOURNAL_ENV: str(journal)})
    loop = RestartLoop(workdir / "node.toml", workdir / "node.log", env)
    log_line(f"workdir {workdir}, broker {broker.kind}, {s.partitions} partitions")
    try:
        loop.start()
        queues = [Queue.make_name(pid, "default") for pid in partitions]
        asyncio.run(_wait_consumed(broker.url, queues, s.start_timeout))
        jobs = make_jobs(partitions, s, rng)
        ids = {job.id for _, job in jobs}
        began = time.monotonic()
        asyncio.run(_publish_all(broker.url, jobs))
        report.enqueue_seconds = round(time.monotonic() - began, 2)
        log_line(f"enqueued {s.jobs} jobs in {report.enqueue_seconds} s; faults start")

        journal_reader = Journal(journal, ids)
        fault_end = time.monotonic() + s.fault_seconds
        # The broker faults come at points of progress spread over the drain
        # (from 10% to 70% of the jobs done), so that they hit running work.
        # Kills go on until every job ran and every broker fault happened.
        kinds_planned = (
            ["drop"] * s.drops
            + ["restart"] * s.broker_restarts
            + ["node-kill"] * s.broker_node_kills
        )
        revive: list[tuple[float, Any]] = []
        rng.shuffle(kinds_planned)
        count = len(kinds_planned)
        # Each also has a latest time (spread over the first 70% of
        # --fault-seconds), so that it happens even when progress is slow.
        start = time.monotonic()
        planned = [
            (
                int(len(ids) * (0.1 + 0.6 * i / max(count - 1, 1))),
                start + s.fault_seconds * (0.1 + 0.6 * i / max(count - 1, 1)),
                kind,
            )
            for i, kind in enumerate(kinds_planned)
        ]
        next_kill = time.monotonic() + s.kill_every
        done = 0
        while time.monotonic() < fault_end:
            done = journal_reader.update()
            if done == len(ids) and not planned:
                break
            now = time.monotonic()
            if s.kill_every > 0 and now >= next_kill:
                next_kill = now + s.kill_every
                procs = node_processes(loop.pid(), admin_port)
                victim = pick_victim(procs, rng, s.node_kill_share)
                if victim is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                        report.kills += 1
                        kinds[procs[victim]] += 1
            if planned and (done >= planned[0][0] or now >= planned[0][1]):
                fault = planned.pop(0)[2]
                if fault == "drop":
                    broker.drop_connections(prefix)
                    report.connection_drops += 1
                    log_line(f"dropped every connection ({done}/{len(ids)} jobs done)")
                elif fault == "restart":
                    log_line(f"restarting a broker node ({done}/{len(ids)} jobs done)")
                    name = broker.restart(rng)
                    report.broker_restarts += 1
                    log_line(f"broker node {name} up again")
                elif fault == "node-kill":
                    killed = broker.kill_node(rng)
                    report.broker_node_kills += 1
                    log_line(f"SIGKILLed broker node {killed.node_name} ({done}/{len(ids)} done)")
                    revive.append((time.monotonic() + s.broker_down_seconds, killed))
            if revive and time.monotonic() >= revive[0][0]:
                killed = revive.pop(0)[1]
                killed.start()
                log_line(f"broker node {killed.node_name} started again")
            time.sleep(0.05)  # the fault clock's tick
        log_line(f"faults over: {report.kills} kills; {done}/{len(ids)} jobs done; draining")
        deadline = time.monotonic() + s.drain_timeout
        last_progress = (time.monotonic(), done)
        while done < len(ids) and time.monotonic() < deadline:
            time.sleep(0.5)  # polling the journal, which the workers write
            done = journal_reader.update()
            if done != last_progress[1]:
                last_progress = (time.monotonic(), done)
            elif time.monotonic() - last_progress[0] > 60:
                log_line(f"no progress for 60 s at {done}/{len(ids)}")
                last_progress = (time.monotonic(), done)
        report.drain_seconds = round(time.monotonic() - began, 2)
        # Copies of jobs that ran already (redelivered, not yet acked when a
        # fault hit) may still wait in the queues: let them run, so that the
        # duplicates are all counted, before the node stops.
        settle_until = time.monotonic() + SETTLE_SECONDS
        while done == len(ids) and time.monotonic() < settle_until:
            if not any(broker.queue_counts(prefix).values()):
                break
            time.sleep(1.0)  # a bounded poll of the broker's counts
        loop.stop(admin_port)
        journal_reader.update()
        seen = journal_reader.counts
        lost = sorted(ids - seen.keys())
        report.runs = sum(seen.values())
        report.lost = len(lost)
        report.lost_examples = lost[:5]
        report.ran_twice = sum(1 for count in seen.values() if count > 1)
        report.extra_runs = sum(count - 1 for count in seen.values() if count > 1)
        report.extra_runs_per_kill = round(report.extra_runs / max(report.kills, 1), 2)
        report.kills_by_kind = dict(kinds)
        report.node_starts = loop.starts
        report.node_exit_codes = loop.exit_codes
        left = {name: n for name, n in broker.queue_counts(prefix).items() if n}
        report.left_by_queue = left
        report.left_in_queues = sum(left.values())
        return report
    finally:
        if loop.is_alive():
            loop.stop(admin_port)
        if s.broker == "shared":
            broker.delete_queues(prefix)
        if s.keep:
            broker.stop()
            log_line(f"kept {workdir}")
        else:
            broker.remove()
            for path in (journal, workdir / "node.toml"):
                with contextlib.suppress(OSError):
                    path.unlink()


SHORT = Settings(
    jobs=3000,
    partitions=6,
    workers=2,
    # 3000 jobs of 30 ms on 12 workers: at least 7.5 s of work under the
    # faults (with 1 ms jobs the light base drained in 8 s, 2 kills in all)
    work_ms=30,
    kill_every=0.5,
    node_kill_share=0.25,
    drops=1,
    broker_restarts=1,
    fault_seconds=40.0,
    drain_timeout=150.0,
)


def parse(argv: list[str] | None) -> tuple[Settings, bool]:
    """Settings from the command line; the second value is ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = Settings()
    parser.add_argument("--short", action="store_true", help="the CI version (a few thousand jobs)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (last line)")
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", default=None)
        else:
            parser.add_argument(flag, type=type(value), default=None)
    args = parser.parse_args(argv)
    base = SHORT if args.short else defaults
    chosen = {k: getattr(args, k) for k in asdict(defaults) if getattr(args, k) is not None}
    return Settings(**{**asdict(base), **chosen}), args.json


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 1 when a job was lost."""
    settings, as_json = parse(argv)
    report = run(settings)
    for key, value in asdict(report).items():
        print(f"{key:24} {value}")
    if as_json:
        print(json.dumps(asdict(report)))
    return 1 if report.lost else 0


if __name__ == "__main__":
    sys.exit(main())
