"""Run job systems side by side on the local RabbitMQ and print one comparison table.

Example (the brief's command; about two minutes on two cores)::

    python -m bench.run --jobs 20000 --runners aiormq,dramatiq,celery --concurrency 10

Each runner is measured ``--repeat`` times (default 2), interleaved
(aiormq, dramatiq, celery, aiormq, ...) so that drift in the machine's load
hits every runner alike. Every trial uses a fresh queue. Ratios are against the
mean of the ``--reference`` runner's trials (default: ``roger`` when it runs,
else the first runner listed). ``--json FILE`` writes every figure, the
settings and the environment.

A runner is named by a short name from :data:`RUNNERS` or as
``module:Factory`` where ``Factory(config: BenchConfig)`` returns a
:class:`bench.common.Runner`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_URL,
    AsyncBridge,
    BenchConfig,
    BenchError,
    BrokerProbe,
    Runner,
    RunnerFactory,
    check_loopback_url,
    percentile,
)

RUNNERS: dict[str, str] = {
    "aiormq": "bench.peer_aiormq:AiormqRunner",
    "dramatiq": "bench.peer_dramatiq:DramatiqRunner",
    # Dramatiq on quorum queues, the type of roger-actors' work queues.
    "dramatiq_quorum": "bench.peer_dramatiq:DramatiqQuorumRunner",
    "celery": "bench.peer_celery:CeleryRunner",
    # Added by the lead: roger-actors' own node as one more runner.
    "roger": "bench.roger_runner:RogerRunner",
    "roger_many": "bench.roger_runner:RogerManyRunner",
}

# Names PeerRunner trials give their queues and exchanges (see unique_queue_name),
# with the suffixes runners add (Dramatiq's .DQ/.XQ, Roger's -default, .invalid, ...).
LEFTOVER = re.compile(r"^bench_[a-z0-9_]+_[0-9a-f]{12}([.-][A-Za-z0-9._-]*)?$")

VERSIONED = ("aiormq", "pamqp", "dramatiq", "pika", "celery", "kombu", "amqp", "billiard")


@dataclass
class Trial:
    """The figures of one runner in one repetition."""

    runner: str
    trial: int
    jobs: int
    enqueue_s: float | None = None
    drain_s: float | None = None
    latencies_s: list[float] = field(default_factory=list)
    error: str | None = None
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def enqueue_rate(self) -> float | None:
        """Jobs per second accepted by the broker."""
        return self.jobs / self.enqueue_s if self.enqueue_s else None

    @property
    def drain_rate(self) -> float | None:
        """Jobs per second run and acked by the worker."""
        return self.jobs / self.drain_s if self.drain_s else None

    @property
    def p50_ms(self) -> float | None:
        """Median enqueue-to-start latency in milliseconds."""
        return percentile(self.latencies_s, 50) * 1e3 if self.latencies_s else None

    @property
    def p99_ms(self) -> float | None:
        """99th-percentile enqueue-to-start latency in milliseconds."""
        return percentile(self.latencies_s, 99) * 1e3 if self.latencies_s else None

    def drain_cpu(self) -> dict[str, float | None]:
        """Worker and broker CPU per job during the drain, and other load in cores.

        From the runner's ``drain_cpu_s`` note (see :func:`bench.common.cpu_between`);
        all ``None`` when the runner did not record it.
        """
        cpu = self.notes.get("drain_cpu_s")
        if not isinstance(cpu, dict) or not cpu.get("wall"):
            return {"worker_us_per_job": None, "broker_us_per_job": None, "others_cores": None}
        return {
            "worker_us_per_job": cpu["worker"] / self.jobs * 1e6,
            "broker_us_per_job": cpu["broker"] / self.jobs * 1e6,
            "others_cores": cpu["others"] / cpu["wall"],
        }

    def metrics(self) -> dict[str, float | None]:
        """The four compared figures."""
        return {
            "enqueue_per_s": self.enqueue_rate,
            "drain_per_s": self.drain_rate,
            "latency_p50_ms": self.p50_ms,
            "latency_p99_ms": self.p99_ms,
        }


def load_factory(spec: str) -> RunnerFactory:
    """Resolve a runner name or ``module:Factory`` to its factory."""
    target = RUNNERS.get(spec, spec)
    module_name, sep, attr = target.partition(":")
    if not sep:
        known = ", ".join(RUNNERS)
        raise BenchError(f"unknown runner {spec!r}: use one of {known} or module:Factory")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise BenchError(f"runner {spec!r}: module {module_name} does not exist yet") from exc
        raise
    factory: RunnerFactory = getattr(module, attr)
    return factory


def run_trial(
    label: str,
    factory: RunnerFactory,
    config: BenchConfig,
    index: int,
    jobs: int,
    latency_jobs: int,
) -> Trial:
    """Run one runner through setup, enqueue, drain, latency and teardown."""
    trial = Trial(runner=label, trial=index, jobs=jobs)
    load_before = os.getloadavg()[0]
    runner: Runner | None = None
    try:
        runner = factory(config)
        runner.setup()
        trial.enqueue_s = runner.enqueue(jobs)
        trial.drain_s = runner.drain(jobs)
        if latency_jobs > 0:
            trial.latencies_s = runner.latency(latency_jobs)
    except Exception as exc:  # report and go on with the other runners
        trial.error = f"{type(exc).__name__}: {exc}"
    finally:
        if runner is not None:
            try:
                runner.teardown()
            except Exception as exc:
                trial.error = trial.error or f"teardown: {type(exc).__name__}: {exc}"
            trial.notes = dict(runner.notes)
    trial.notes["loadavg_1m_before"] = round(load_before, 2)
    left = trial.notes.get("left_in_queue")
    if trial.error is None and isinstance(left, int) and left != 0:
        trial.error = f"{left} messages were still unacked when the worker stopped"
    counted = trial.notes.get("jobs_counted")
    if trial.error is None and isinstance(counted, int) and counted != jobs:
        trial.error = f"{counted} throughput jobs ran, expected {jobs}"
    return trial


def _mean(values: list[float | None]) -> float | None:
    """Mean of the values that are present, or ``None`` if none is."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarise(trials: list[Trial], labels: list[str]) -> dict[str, dict[str, float | None]]:
    """Per runner, the mean of each figure over its successful trials."""
    summary: dict[str, dict[str, float | None]] = {}
    for label in labels:
        good = [t for t in trials if t.runner == label and t.error is None]
        summary[label] = {
            key: _mean([t.metrics()[key] for t in good])
            for key in ("enqueue_per_s", "drain_per_s", "latency_p50_ms", "latency_p99_ms")
        }
    return summary


def ratios(
    metrics: dict[str, float | None], reference: dict[str, float | None]
) -> dict[str, float | None]:
    """Each figure divided by the reference runner's mean of the same figure."""
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        ref = reference.get(key)
        out[key] = value / ref if value is not None and ref else None
    return out


def _fmt(value: float | None, spec: str) -> str:
    """Format a figure, or a dash when it is missing."""
    return "-" if value is None else format(value, spec)


def render_table(
    trials: list[Trial],
    summary: dict[str, dict[str, float | None]],
    reference: str,
    repeat: int,
) -> str:
    """The comparison table: one row per trial, plus a mean row per runner if repeated."""
    header = (
        "runner", "trial", "enqueue/s", "drain/s", "p50 ms", "p99 ms",
        "enq x", "drain x", "p50 x", "p99 x", "wkr us/job", "brk us/job", "others",
    )
    rows: list[tuple[str, ...]] = []
    ref = summary.get(reference, {})
    for label in summary:
        for t in (t for t in trials if t.runner == label):
            if t.error is not None:
                rows.append((label, str(t.trial), "failed", *[""] * (len(header) - 3)))
                continue
            m = t.metrics()
            rows.append(_row(label, str(t.trial), m, ratios(m, ref), t.drain_cpu()))
        if repeat > 1:
            cpu = [t.drain_cpu() for t in trials if t.runner == label and t.error is None]
            mean_cpu = {
                key: _mean([c[key] for c in cpu])
                for key in ("worker_us_per_job", "broker_us_per_job", "others_cores")
            }
            rows.append(
                _row(label, "mean", summary[label], ratios(summary[label], ref), mean_cpu)
            )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in enumerate(
        zip(header, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(
            c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(
                zip(row, widths, strict=True))))
    lines.append(
        f"x = figure / {reference}'s mean (throughput: >1 is faster; latency: >1 is slower)\n"
        "wkr/brk us/job = CPU microseconds per job of the worker processes / of RabbitMQ during"
        " the drain;\nothers = cores used by processes outside the benchmark during the drain"
    )
    return "\n".join(lines)


def _row(
    label: str,
    trial: str,
    m: dict[str, float | None],
    r: dict[str, float | None],
    cpu: dict[str, float | None],
) -> tuple[str, ...]:
    """One table row from figures, ratios and drain CPU figures."""
    return (
        label,
        trial,
        _fmt(m["enqueue_per_s"], ",.0f"),
        _fmt(m["drain_per_s"], ",.0f"),
        _fmt(m["latency_p50_ms"], ".2f"),
        _fmt(m["latency_p99_ms"], ".2f"),
        _fmt(r["enqueue_per_s"], ".2f"),
        _fmt(r["drain_per_s"], ".2f"),
        _fmt(r["latency_p50_ms"], ".2f"),
        _fmt(r["latency_p99_ms"], ".2f"),
        _fmt(cpu["worker_us_per_job"], ".0f"),
        _fmt(cpu["broker_us_per_job"], ".0f"),
        _fmt(cpu["others_cores"], ".2f"),
    )


def environment() -> dict[str, Any]:
    """What the figures depend on: machine, Python, library versions."""
    versions: dict[str, str] = {}
    for dist in VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_at_start": os.getloadavg(),
    }


def _rabbitmqctl_names(*args: str) -> list[list[str]]:
    """Rows of a ``rabbitmqctl list_*`` command (tab-separated, no headers)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise BenchError("rabbitmqctl is not installed: cannot list leftovers")
    out = subprocess.run(
        [ctl, "-q", *args], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def cleanup(url: str) -> int:
    """Delete benchmark queues and exchanges that a killed run left behind.

    Only names of the form ``bench_<runner>_<12 hex digits>`` (plus a suffix
    such as Dramatiq's ``.DQ`` or Roger's ``-default``) are touched, and only
    queues nobody consumes.
    """
    queues = [
        row[0] for row in _rabbitmqctl_names("list_queues", "name", "consumers")
        if len(row) == 2 and LEFTOVER.match(row[0]) and row[1] == "0"
    ]
    exchanges = [
        row[0] for row in _rabbitmqctl_names("list_exchanges", "name")
        if row and LEFTOVER.match(row[0])
    ]
    bridge = AsyncBridge()
    probe = BrokerProbe(bridge, url)
    try:
        probe.connect()
        for queue in queues:
            probe.delete_queue(queue)
            print(f"deleted queue {queue}", file=sys.stderr)
        for exchange in exchanges:
            probe.delete_exchange(exchange)
            print(f"deleted exchange {exchange}", file=sys.stderr)
    finally:
        probe.close()
        bridge.close()
    print(f"{len(queues)} queue(s), {len(exchanges)} exchange(s) removed", file=sys.stderr)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark job runners side by side on the local RabbitMQ.",
    )
    parser.add_argument("--jobs", type=int, default=20000, help="no-op jobs per drain (20000)")
    parser.add_argument(
        "--runners", default="aiormq,dramatiq,celery",
        help=f"comma-separated: {', '.join(RUNNERS)} or module:Factory",
    )
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per worker (10)")
    parser.add_argument("--repeat", type=int, default=2, help="trials per runner, interleaved (2)")
    parser.add_argument("--reference", default=None, help="runner the ratios are relative to")
    parser.add_argument("--latency-jobs", type=int, default=200, help="latency samples (200)")
    parser.add_argument("--latency-rate", type=float, default=50.0, help="latency jobs/s (50)")
    parser.add_argument("--url", default=DEFAULT_URL, help="AMQP URL, loopback only")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds (60)")
    parser.add_argument(
        "--phase-timeout", type=float, default=120.0,
        help="bound on each enqueue/drain/latency phase, seconds (120)",
    )
    parser.add_argument(
        "--opt", action="append", default=[], metavar="KEY=VALUE",
        help="runner option, e.g. celery_pool=threads or dramatiq_processes=2",
    )
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    parser.add_argument("--keep-logs", action="store_true", help="keep worker logs and files")
    parser.add_argument(
        "--cleanup", action="store_true",
        help="only delete bench_* queues/exchanges a killed run left behind, then exit",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.concurrency < 1 or args.repeat < 1 or args.latency_jobs < 0:
        parser.error("--jobs, --concurrency and --repeat must be >= 1, --latency-jobs >= 0")
    if args.latency_rate <= 0:
        parser.error("--latency-rate must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every trial, print the table, optionally write JSON; 1 if any trial failed."""
    args = parse_args(argv)
    if args.cleanup:
        try:
            return cleanup(check_loopback_url(args.url))
        except (BenchError, subprocess.SubprocessError) as exc:
            print(exc, file=sys.stderr)
            return 2
    labels = [name.strip() for name in args.runners.split(",") if name.strip()]
    if len(set(labels)) != len(labels):
        print("each runner may be listed once (use --repeat for more trials)", file=sys.stderr)
        return 2
    reference = args.reference or ("roger" if "roger" in labels else labels[0])
    if reference not in labels:
        print(f"--reference {reference!r} is not among --runners", file=sys.stderr)
        return 2
    options: dict[str, str] = {}
    for item in args.opt:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"--opt wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        options[key.strip()] = value.strip()
    try:
        config = BenchConfig(
            url=check_loopback_url(args.url),
            concurrency=args.concurrency,
            latency_rate=args.latency_rate,
            startup_timeout=args.startup_timeout,
            phase_timeout=args.phase_timeout,
            keep_logs=args.keep_logs,
            options=options,
        )
        factories = {label: load_factory(label) for label in labels}
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 2

    started = time.time()
    trials: list[Trial] = []
    for index in range(1, args.repeat + 1):
        for label in labels:
            print(f"[{time.time() - started:6.1f}s] {label} trial {index}...", file=sys.stderr)
            trial = run_trial(label, factories[label], config, index, args.jobs, args.latency_jobs)
            trials.append(trial)
            if trial.error:
                print(f"    failed: {trial.error}", file=sys.stderr)
            else:
                m = trial.metrics()
                others = trial.drain_cpu()["others_cores"]
                print(
                    f"    enqueue {_fmt(m['enqueue_per_s'], ',.0f')}/s"
                    f"  drain {_fmt(m['drain_per_s'], ',.0f')}/s"
                    f"  p50 {_fmt(m['latency_p50_ms'], '.2f')} ms"
                    f"  p99 {_fmt(m['latency_p99_ms'], '.2f')} ms"
                    f"  others {_fmt(others, '.2f')} cores",
                    file=sys.stderr,
                )
    elapsed = time.time() - started

    summary = summarise(trials, labels)
    print()
    print(
        f"{args.jobs} no-op jobs, concurrency {args.concurrency}, "
        f"{args.latency_jobs} latency jobs at {args.latency_rate:g}/s, "
        f"{args.repeat} trial(s) per runner, {os.cpu_count()} CPUs, {elapsed:.0f} s"
    )
    print(render_table(trials, summary, reference, args.repeat))

    if args.json is not None:
        report = {
            "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
            "settings": {
                "jobs": args.jobs,
                "concurrency": args.concurrency,
                "repeat": args.repeat,
                "latency_jobs": args.latency_jobs,
                "latency_rate": args.latency_rate,
                "reference": reference,
                "options": options,
            },
            "environment": environment(),
            "elapsed_s": round(elapsed, 1),
            "summary": summary,
            "ratios": {label: ratios(summary[label], summary[reference]) for label in labels},
            "trials": [
                {**asdict(t), "metrics": t.metrics(), "drain_cpu": t.drain_cpu(),
                 "latencies_s": [round(v, 6) for v in t.latencies_s]}
                for t in trials
            ],
        }
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if any(t.error for t in trials) else 0


if __name__ == "__main__":
    sys.exit(main())
