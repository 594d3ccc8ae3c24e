"""What every benchmark runner shares: the Runner protocol, the broker probe, waits, workers.

A *runner* is one job system measured on the local RabbitMQ. The harness
(``bench/run.py``) drives each runner through the same five steps:

1. ``setup()``: declare and purge the runner's own, uniquely named queue.
2. ``enqueue(n)``: publish ``n`` no-op jobs with no consumer attached; return
   the seconds from the first publish until the broker holds all ``n``.
3. ``drain(n)``: start the worker; return the seconds from the moment it
   starts consuming (a consumer appears on the queue, or the queue shrinks)
   until the ``n`` jobs have run (the cross-process counter of
   :mod:`bench.jobsink` reaches ``n``).
4. ``latency(n)``: with the worker running, publish ``n`` jobs one at a time at
   a light, fixed rate, each carrying its enqueue time; return each job's
   enqueue-to-start delay in seconds.
5. ``teardown()``: stop the worker, check that nothing is left unacked, delete
   the runner's queues and files.

:class:`PeerRunner` implements those steps for runners whose worker is a
separate OS process started from a command line; a subclass supplies the
client-side publish and the worker command. A runner that does not fit that
shape (roger-actors' own node, say) may implement :class:`Runner` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

import aiormq
import aiormq.abc

from bench import jobsink

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_HOSTS = frozenset({"localhost", "::1"})

# Poll interval while timing: short enough to add at most a few milliseconds
# to a measurement, long enough not to steal a core from the workers.
POLL_S = 0.002

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

T = TypeVar("T")


class BenchError(RuntimeError):
    """A benchmark step could not be carried out (timeout, lost jobs, bad setup)."""


def check_loopback_url(url: str) -> str:
    """Return ``url`` if it names a broker on this machine; raise ``BenchError`` otherwise.

    Benchmarks send heavy traffic, so they only ever talk to 127.0.0.0/8,
    ``localhost`` or ``::1``.
    """
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return url
    raise BenchError(f"refusing to benchmark a broker that is not on loopback: {host!r}")


@dataclass
class BenchConfig:
    """Settings every runner receives.

    ``options`` holds runner-specific choices from the command line (for
    example ``celery_pool`` or ``dramatiq_processes``); each runner reads the
    keys it knows and records what it used in its ``notes``.
    """

    url: str = DEFAULT_URL
    concurrency: int = 10
    latency_rate: float = 50.0
    startup_timeout: float = 60.0
    phase_timeout: float = 120.0
    keep_logs: bool = False
    options: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Runner(Protocol):
    """One job system under test. See the module docstring for the order of calls.

    ``notes`` collects facts the runner wants in the report (settings it
    chose, worker start-up time, checks); it may stay empty.
    """

    name: str
    notes: dict[str, object]

    def setup(self) -> None:
        """Declare and purge this runner's queue(s) and open its client."""
        ...

    def enqueue(self, n: int) -> float:
        """Publish ``n`` no-op jobs (no consumer yet); seconds until the broker holds all."""
        ...

    def drain(self, n: int) -> float:
        """Start consuming the ``n`` queued jobs; seconds from first consume to all done."""
        ...

    def latency(self, n: int) -> list[float]:
        """Publish ``n`` timestamped jobs at a light rate; each one's enqueue-to-start seconds."""
        ...

    def teardown(self) -> None:
        """Stop workers, verify nothing is left unacked, delete queues and files."""
        ...


RunnerFactory = Callable[[BenchConfig], Runner]


def unique_queue_name(runner_name: str) -> str:
    """Return a fresh queue name for one trial of ``runner_name``."""
    return f"bench_{runner_name}_{uuid.uuid4().hex[:12]}"


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = POLL_S,
) -> float:
    """Poll ``predicate`` until it is true; return ``time.perf_counter()`` at that moment.

    Raises ``BenchError`` once ``timeout`` seconds have passed without success:
    every wait in the benchmark is bounded.
    """
    deadline = time.perf_counter() + timeout
    while True:
        if predicate():
            return time.perf_counter()
        now = time.perf_counter()
        if now >= deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(min(interval, deadline - now))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("percentile of an empty list")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


class AsyncBridge:
    """A private asyncio loop that synchronous harness code drives one call at a time."""

    def __init__(self) -> None:
        """Create the loop (it runs only inside :meth:`run`)."""
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` to completion on the private loop, bounded by ``timeout`` seconds."""
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def close(self) -> None:
        """Close the loop."""
        if not self.loop.is_closed():
            self.loop.close()


class QueueDepth(NamedTuple):
    """What a passive ``queue.declare`` reports: ready messages and consumers."""

    ready: int
    consumers: int


class BrokerProbe:
    """The harness's own AMQP connection, used to declare, inspect, purge and delete queues.

    It never consumes; it observes the runners' queues with passive declares so
    the same measurement applies to every runner.
    """

    def __init__(self, bridge: AsyncBridge, url: str) -> None:
        """Remember where to connect; :meth:`connect` opens the connection."""
        self.bridge = bridge
        self.url = check_loopback_url(url)
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None

    def connect(self) -> None:
        """Open the connection and a channel."""
        self._connection = self.bridge.run(aiormq.connect(self.url))
        self._channel = self.bridge.run(self._connection.channel(publisher_confirms=False))

    @property
    def is_connected(self) -> bool:
        """Whether the connection is open (as last seen by the private loop)."""
        return self._connection is not None and not self._connection.is_closed

    def reconnect(self) -> None:
        """Open a fresh connection if the current one is gone (after a broker restart)."""
        if not self.is_connected:
            self.close()
            self.connect()

    def check(self, queue: str) -> QueueDepth:
        """:meth:`depth`, with a lost connection turned into a ``BenchError``.

        Called periodically while a phase is timed so that a broker restarted or
        connections closed by someone else mid-trial fail the trial at once
        instead of skewing it or waiting for the phase timeout.
        """
        try:
            return self.depth(queue)
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError) as exc:
            raise BenchError(
                f"lost the broker during the trial ({type(exc).__name__}: {exc}); "
                "was it restarted, or its connections closed, by someone else?"
            ) from exc

    @property
    def server_version(self) -> str:
        """The broker's version string, as announced at connection."""
        if self._connection is None:
            return "unknown"
        props = self._connection.server_properties or {}
        return str(props.get("version", "unknown"))

    def _chan(self) -> aiormq.abc.AbstractChannel:
        """The probe's channel, reopened if the broker closed it after an error."""
        if self._connection is None:
            raise BenchError("probe is not connected")
        if self._channel is None or self._channel.is_closed:
            self._channel = self.bridge.run(self._connection.channel(publisher_confirms=False))
        return self._channel

    def declare(self, queue: str, arguments: dict[str, Any] | None = None) -> None:
        """Declare a durable queue (no-op if it exists with the same arguments)."""
        self.bridge.run(self._chan().queue_declare(queue, durable=True, arguments=arguments))

    def depth(self, queue: str) -> QueueDepth:
        """Ready messages and consumers of ``queue``, by passive declare."""
        ok = self.bridge.run(self._chan().queue_declare(queue, passive=True))
        return QueueDepth(int(ok.message_count or 0), int(ok.consumer_count or 0))

    def purge(self, queue: str) -> None:
        """Drop the ready messages of ``queue``."""
        self.bridge.run(self._chan().queue_purge(queue))

    def delete_queue(self, queue: str) -> None:
        """Delete ``queue``; a missing queue is not an error."""
        with contextlib.suppress(aiormq.exceptions.AMQPError):
            self.bridge.run(self._chan().queue_delete(queue))

    def delete_exchange(self, exchange: str) -> None:
        """Delete ``exchange``; a missing exchange is not an error."""
        with contextlib.suppress(aiormq.exceptions.AMQPError):
            self.bridge.run(self._chan().exchange_delete(exchange))

    def close(self) -> None:
        """Close the connection (errors while closing are ignored)."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self.bridge.run(self._connection.close(), timeout=5.0)
        self._connection = None
        self._channel = None


def _die_with_parent() -> None:
    """In the forked child: ask Linux to SIGTERM it if the harness dies (best effort).

    A worker left behind by a killed harness would otherwise keep its
    connection to the broker open for ever.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
BROKER_PROCESS_NAMES = frozenset({"beam.smp"})


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far, read from ``/proc`` (Linux), and the wall clock.

    ``machine_busy`` counts every core's user, nice, system, irq and softirq
    time; ``irq`` is the irq and softirq part of it (mostly loopback
    networking, which serves the benchmark but belongs to no process);
    ``steal`` is time the hypervisor gave this machine's cores to someone else.
    """

    wall: float
    machine_busy: float
    irq: float
    steal: float
    harness: float
    worker: float
    broker: float


def _machine_cpu_s() -> tuple[float, float, float]:
    """Busy, irq+softirq and steal CPU seconds of all cores since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    # guest time is already included in user/nice.
    busy = user + nice + system + irq + softirq
    return busy / _CLK_TCK, (irq + softirq) / _CLK_TCK, steal / _CLK_TCK


@dataclass(frozen=True)
class WorkerMatch:
    """How to recognise a worker's processes in ``/proc``.

    A process is the worker's if it is in the process group ``pgid`` (what
    the worker was started in) or if its command line contains ``marker``:
    that catches processes that left the group, such as a daemonised
    Thespian admin and its actors. The marker should be unique to the trial
    (the queue name, when it is on the worker's command line).
    """

    pgid: int | None = None
    marker: bytes | None = None


def _process_cpu(match: WorkerMatch) -> tuple[float, float]:
    """CPU seconds of the worker's processes and of the broker's processes."""
    worker = broker = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        fields = raw[raw.rfind(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK
        if comm in BROKER_PROCESS_NAMES:
            broker += cpu
        elif match.pgid is not None and int(fields[2]) == match.pgid:
            worker += cpu
        elif match.marker is not None and _cmdline_has(entry.name, match.marker):
            worker += cpu
    return worker, broker


def _cmdline_has(pid: str, marker: bytes) -> bool:
    """Whether process ``pid``'s command line contains ``marker``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker in f.read().replace(b"\0", b" ")
    except OSError:
        return False


def cpu_snapshot(match: WorkerMatch) -> CpuSnapshot | None:
    """Take a :class:`CpuSnapshot`, or ``None`` where ``/proc`` is not readable."""
    try:
        busy, irq, steal = _machine_cpu_s()
        worker, broker = _process_cpu(match)
    except (OSError, ValueError, IndexError):
        return None
    times = os.times()
    return CpuSnapshot(
        time.perf_counter(), busy, irq, steal, times.user + times.system, worker, broker
    )


def cpu_between(a: CpuSnapshot | None, b: CpuSnapshot | None) -> dict[str, float] | None:
    """CPU seconds used between two snapshots, by whom; ``others`` is everything else.

    ``others`` is the machine's busy time not accounted for by the harness, the
    worker, the broker or interrupts: other people's processes. A trial where
    it (or ``steal``) is a sizeable fraction of ``wall`` ran on a contended
    machine.
    """
    if a is None or b is None:
        return None
    d = {
        "wall": b.wall - a.wall,
        "machine_busy": b.machine_busy - a.machine_busy,
        "irq": b.irq - a.irq,
        "steal": b.steal - a.steal,
        "harness": b.harness - a.harness,
        "worker": b.worker - a.worker,
        "broker": b.broker - a.broker,
    }
    ours = d["irq"] + d["harness"] + d["worker"] + d["broker"]
    d["others"] = max(0.0, d["machine_busy"] - ours)
    return {k: round(v, 3) for k, v in d.items()}


class WorkerProcess:
    """A worker started from a command line in its own session (process group).

    Stopping sends SIGTERM to the leader only (so a framework's own graceful
    shutdown runs), waits a bounded time, then SIGKILLs whatever is left in
    the group it created. It never signals any process it did not start.
    """

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        """Start ``argv`` with ``env``; stdout and stderr go to ``log_path``."""
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=str(REPO_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pgid = self.proc.pid

    def alive(self) -> bool:
        """Whether the leader process is still running."""
        return self.proc.poll() is None

    def _group_alive(self) -> bool:
        """Whether any process of the worker's group is still around."""
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop gracefully within ``timeout`` seconds, else kill; return the exit code."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            try:
                wait_until(lambda: not self._group_alive(), 5.0, "worker group exit", 0.05)
            except BenchError:
                pass
            if self._group_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGKILL)
            try:
                return self.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                return None
        finally:
            self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the worker's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class PeerRunner(ABC):
    """A runner whose worker is a separate process and whose jobs are no-ops.

    Subclasses set ``name`` and implement the client side (``_open_client``,
    ``_declare``, ``_publish``, ``_close_client``) and the worker command
    (``_worker_argv``). Everything timed is done here, identically for all.
    """

    name: str = "peer"

    def __init__(self, config: BenchConfig) -> None:
        """Prepare a runner for one trial on a fresh queue; nothing is opened yet."""
        self.config = config
        self.queue = unique_queue_name(self.name)
        self.notes: dict[str, object] = {"queue": self.queue}
        self._bridge: AsyncBridge | None = None
        self._probe: BrokerProbe | None = None
        self._workdir: Path | None = None
        self._worker: WorkerProcess | None = None
        self._last_broker_check = 0.0
        self.counter_path = Path()
        self.latency_path = Path()

    # ---- what subclasses provide -------------------------------------------------

    @abstractmethod
    def _open_client(self) -> None:
        """Open the peer's own client (the one applications enqueue with)."""

    @abstractmethod
    def _declare(self) -> None:
        """Declare ``self.queue`` the way the peer itself would."""

    @abstractmethod
    def _publish(self, enqueued_at: float | None) -> None:
        """Enqueue one no-op job through the peer's client."""

    @abstractmethod
    def _close_client(self) -> None:
        """Close the peer's client."""

    @abstractmethod
    def _worker_argv(self) -> list[str]:
        """The command line that starts the peer's worker on ``self.queue``."""

    def _publish_throughput_jobs(self, n: int) -> None:
        """Enqueue ``n`` untimestamped jobs; override when a batch is the natural client call."""
        publish = self._publish
        for _ in range(n):
            publish(None)

    def _worker_match(self) -> WorkerMatch:
        """How to find the worker's processes for CPU accounting.

        Its process group, plus any process whose command line holds this
        trial's queue name if the worker's command line does, else the
        worker's whole command line (less precise: another run of the same
        command would be counted too).
        """
        if self._worker is None:
            return WorkerMatch()
        argv = self._worker.argv
        token = self.queue if any(self.queue in arg for arg in argv) else " ".join(argv)
        return WorkerMatch(self._worker.pgid, token.encode())

    def _owned_queues(self) -> list[str]:
        """Every queue this runner made (deleted at teardown)."""
        return [self.queue]

    def _owned_exchanges(self) -> list[str]:
        """Every exchange this runner made (deleted at teardown)."""
        return []

    # ---- shared machinery --------------------------------------------------------

    @property
    def probe(self) -> BrokerProbe:
        """The harness's broker probe (after :meth:`setup`)."""
        if self._probe is None:
            raise BenchError(f"{self.name}: setup() was not called")
        return self._probe

    @property
    def bridge(self) -> AsyncBridge:
        """The harness's private event loop (after :meth:`setup`)."""
        if self._bridge is None:
            raise BenchError(f"{self.name}: setup() was not called")
        return self._bridge

    @property
    def workdir(self) -> Path:
        """This trial's scratch directory: counter, latency file, worker log."""
        if self._workdir is None:
            raise BenchError(f"{self.name}: setup() was not called")
        return self._workdir

    def worker_env(self) -> dict[str, str]:
        """The environment of the worker: ours, plus the sink files and the queue name."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env[jobsink.COUNTER_ENV] = str(self.counter_path)
        env[jobsink.LATENCY_ENV] = str(self.latency_path)
        env["BENCH_QUEUE"] = self.queue
        env["BENCH_URL"] = self.config.url
        return env

    def setup(self) -> None:
        """Create the scratch files, connect the probe and the client, declare and purge."""
        self._workdir = Path(tempfile.mkdtemp(prefix=f"roger-bench-{self.name}-"))
        self.counter_path = self._workdir / "counter"
        self.latency_path = self._workdir / "latency"
        self.counter_path.touch()
        self.latency_path.touch()
        self._bridge = AsyncBridge()
        self._probe = BrokerProbe(self._bridge, self.config.url)
        self._probe.connect()
        self.notes["rabbitmq"] = self._probe.server_version
        self._open_client()
        self._declare()
        self.probe.purge(self.queue)

    def jobs_run(self) -> int:
        """How many throughput jobs have run so far (the counter file's size)."""
        return os.stat(self.counter_path).st_size

    def latencies_recorded(self) -> int:
        """How many latency jobs have run so far."""
        with open(self.latency_path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(65536), b""))

    def enqueue(self, n: int) -> float:
        """Publish ``n`` jobs; seconds from the first publish until the broker holds them."""
        if self._worker is not None:
            raise BenchError("enqueue() is measured with no worker running")
        probe = self.probe
        t0 = time.perf_counter()
        self._publish_throughput_jobs(n)
        t_client = time.perf_counter()
        t_end = wait_until(
            lambda: probe.check(self.queue).ready >= n,
            self.config.phase_timeout,
            f"{n} jobs to reach {self.queue}",
            interval=0.001,
        )
        self.notes["enqueue_client_s"] = round(t_client - t0, 4)
        return t_end - t0

    def _start_worker(self) -> WorkerProcess:
        """Start the worker process (once)."""
        if self._worker is None:
            argv = self._worker_argv()
            self.notes["worker_argv"] = " ".join(argv[1:]) if argv[0] == sys.executable else argv
            self._worker = WorkerProcess(argv, self.worker_env(), self.workdir / "worker.log")
        return self._worker

    def _check_worker(self) -> None:
        """Raise with the worker's log if it has died."""
        if self._worker is not None and not self._worker.alive():
            raise BenchError(
                f"{self.name} worker exited with {self._worker.proc.returncode}:\n"
                + self._worker.log_tail()
            )

    def _check_broker(self, every: float = 0.25) -> None:
        """At most every ``every`` seconds, check the broker still answers (see ``check``)."""
        now = time.perf_counter()
        if now - self._last_broker_check >= every:
            self._last_broker_check = now
            self.probe.check(self.queue)

    def _wait_consuming(self, queued: int) -> float:
        """Wait until the worker consumes (a consumer, or fewer than ``queued`` ready)."""
        probe = self.probe

        def consuming() -> bool:
            self._check_worker()
            depth = probe.check(self.queue)
            return depth.consumers > 0 or depth.ready < queued

        return wait_until(consuming, self.config.startup_timeout, f"{self.name} worker to consume")

    def drain(self, n: int) -> float:
        """Start the worker; seconds from its first consume until ``n`` jobs have run."""
        before = self.jobs_run()
        t_spawn = time.perf_counter()
        self._start_worker()
        t_start = self._wait_consuming(n)
        self.notes["worker_startup_s"] = round(t_start - t_spawn, 3)

        def done() -> bool:
            if self.jobs_run() - before >= n:
                return True
            self._check_worker()
            self._check_broker()
            return False

        match = self._worker_match()
        cpu_start = cpu_snapshot(match)
        t_end = wait_until(done, self.config.phase_timeout, f"{n} jobs to run on {self.name}")
        self.notes["drain_cpu_s"] = cpu_between(cpu_start, cpu_snapshot(match))
        self.notes["ready_after_drain"] = self.probe.depth(self.queue).ready
        return t_end - t_start

    def latency(self, n: int) -> list[float]:
        """Publish ``n`` timestamped jobs at ``latency_rate``/s; each job's start delay."""
        if self._worker is None:
            self._start_worker()
            self._wait_consuming(0)
        before = self.latencies_recorded()
        period = 1.0 / self.config.latency_rate
        t0 = time.perf_counter()
        for i in range(n):
            # Pacing, not waiting for a condition: publish job i at t0 + i * period.
            ahead = t0 + i * period - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
            self._publish(time.time())
        def latency_done() -> bool:
            if self.latencies_recorded() - before >= n:
                return True
            self._check_worker()
            self._check_broker()
            return False

        wait_until(
            latency_done,
            self.config.phase_timeout,
            f"{n} latency jobs on {self.name}",
            interval=0.01,
        )
        lines = self.latency_path.read_text().splitlines()[before:]
        return [float(line) for line in lines]

    def teardown(self) -> None:
        """Stop the worker, check nothing was left unacked, delete queues and files."""
        try:
            if self._worker is not None:
                self.notes["worker_exit"] = self._worker.stop()
                if self._probe is not None:
                    probe = self._probe
                    # Unacked messages return to "ready" once the worker's channel is gone.
                    with contextlib.suppress(Exception):
                        probe.reconnect()
                    with contextlib.suppress(Exception):
                        wait_until(
                            lambda: probe.depth(self.queue).consumers == 0,
                            10.0,
                            "worker's consumer to go",
                            interval=0.05,
                        )
                        self.notes["left_in_queue"] = probe.depth(self.queue).ready
                self.notes["jobs_counted"] = self.jobs_run()
        finally:
            with contextlib.suppress(Exception):
                self._close_client()
            if self._probe is not None:
                with contextlib.suppress(Exception):
                    self._probe.reconnect()
                    for queue in self._owned_queues():
                        self._probe.delete_queue(queue)
                    for exchange in self._owned_exchanges():
                        self._probe.delete_exchange(exchange)
                self._probe.close()
            if self._bridge is not None:
                self._bridge.close()
            if self._workdir is not None and not self.config.keep_logs:
                shutil.rmtree(self._workdir, ignore_errors=True)
            elif self._workdir is not None:
                self.notes["workdir"] = str(self._workdir)
