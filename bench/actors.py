"""Lightweight-actor targets, measured for one placement of the supervision runtime.

Run::

    python -m bench.actors --placement simple   # Thespian simpleSystemBase, driven from here
    python -m bench.actors --placement light    # supervision.light: asyncio, in this process
    python -m bench.actors --placement multiproc --count 200   # multiprocTCPBase

What it measures (the targets of the lightweight-actors issue in brackets):

1. **memory and start** [<= 50 MB, <= 2 s for 10,000]: ``--count`` idle
   supervised ``Server`` s under ``--dynsups`` DynamicSupervisors, all started
   with ``start_child`` requests sent by one actor (in flight at once);
   memory is the RSS and PSS growth of this process (plus, on multi-process
   bases, the PSS of every descendant process) after a ``gc.collect()``.
2. **call round trips/s** [>= 50,000 in-process]: sequential calls from one
   actor to another (``call_async`` + ``CallReply``), and from this process's
   ordinary code (``supervision.call``), each for about ``--seconds``.
3. **restart latency** [<= 1 ms]: a ``Crasher`` under a one_for_one
   Supervisor raises in a call; latency is from the moment it raises to the
   moment its replacement's ``init`` runs (both stamped with the system-wide
   monotonic clock), over ``--restarts`` crashes.
4. **timer lateness** [p99 <= 5 ms under load]: ``--tickers`` servers re-arm
   ``send_after(10 ms)``; each records how late every tick came. Two phases:
   *idle* (this process only sleeps, so nobody calls ``ask``/``listen``) and
   *load* (``--busy`` actors each burn 0.5 ms of CPU per message, re-sending
   to themselves, while this process sleeps, or on simpleSystemBase pumps
   ``listen(1 ms)``, since there nothing runs otherwise).

The 10,000 idle actors stay up during 2-4, so every figure is taken with a
populated runtime. ``--json FILE`` writes every figure. This is a benchmark,
never a timed test.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from thespian.actors import ActorExitRequest

from bench.actor_kinds import (
    BenchDynSup,
    BenchSup,
    Busy,
    Crasher,
    Echo,
    Idle,
    Loader,
    Pinger,
    RawPing,
    RawPong,
    Ticker,
)
from supervision import (
    Application,
    ChildSpec,
    DynamicSupervisorSpec,
    NoProc,
    SupervisorSpec,
    call,
    cast,
    current_system,
    start_child,
    terminate_child,
    which_children,
)

PLACEMENTS = {
    "simple": "simpleSystemBase",
    "light": "light",
    "multiproc": "multiprocTCPBase",
}

TICK = 0.010


# ---------------------------------------------------------------- memory


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def memory() -> dict[str, int]:
    """RSS and PSS (kB) of this process, and PSS plus count of its descendants."""
    gc.collect()
    me = os.getpid()
    others = _descendants(me)
    return {
        "rss_kb": _rss_kb(me),
        "pss_kb": _pss_kb(me),
        "descendants": len(others),
        "descendants_pss_kb": sum(_pss_kb(pid) for pid in others),
    }


# ---------------------------------------------------------------- helpers


class GcPauses:
    """Durations of this process's cyclic garbage collections (all threads)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)

    def take(self) -> dict[str, Any]:
        """Count and longest pause (ms) since the last take."""
        pauses, self.pauses = self.pauses, []
        return {"gc_runs": len(pauses), "gc_max_ms": round(max(pauses, default=0.0) * 1000, 3)}


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def pump(placement: str, seconds: float) -> None:
    """Let ``seconds`` pass. On simpleSystemBase nothing runs unless someone
    listens, so there this process calls ``listen(1 ms)`` in a loop."""
    end = time.monotonic() + seconds
    if placement == "simple":
        system = current_system()
        while time.monotonic() < end:
            system.listen(0.001)
    else:
        time.sleep(max(0.0, end - time.monotonic()))


def children_of(sup: Any) -> dict[Any, Any]:
    """``id -> address`` of a supervisor's children."""
    return {info.id: info.address for info in which_children(sup, timeout=60)}


# ---------------------------------------------------------------- phases


def phase_start(
    root: Any, dynsups: list[Any], count: int, start_timeout: float | None
) -> dict[str, Any]:
    """Start ``count`` Idle servers spread over ``dynsups`` (each start with
    ``start_timeout``: a supervisor arms a timer per start when it is set)."""
    loader = children_of(root)["loader"]
    per = count // len(dynsups)
    before = memory()
    started = time.perf_counter()
    seconds, failures = call(
        loader,
        ("fill", dynsups, per, ChildSpec("idle", Idle, start_timeout=start_timeout)),
        timeout=max(120.0, count * 0.05),
    )
    wall = time.perf_counter() - started
    after = memory()
    total = per * len(dynsups)
    delta_pss = after["pss_kb"] - before["pss_kb"]
    delta_desc = after["descendants_pss_kb"] - before["descendants_pss_kb"]
    return {
        "actors": total,
        "failures": failures,
        "start_s": round(wall, 3),
        "start_s_inside": round(seconds, 3),
        "rss_delta_mb": round((after["rss_kb"] - before["rss_kb"]) / 1024, 1),
        "pss_delta_mb": round((delta_pss + delta_desc) / 1024, 1),
        "bytes_per_actor": round((delta_pss + delta_desc) * 1024 / max(1, total)),
        "processes_after": 1 + after["descendants"],
        "host_rss_mb_after": round(after["rss_kb"] / 1024, 1),
    }


def phase_calls(root: Any, seconds: float) -> dict[str, Any]:
    """Sequential round trips: actor to actor, then host code to actor."""
    kids = children_of(root)
    echo, pinger = kids["echo"], kids["pinger"]
    n = 1000
    took = call(pinger, ("ping", echo, n), timeout=120)
    while took < seconds / 4 and n < 5_000_000:  # size the run to about ``seconds``
        n = int(n * min(10.0, max(2.0, seconds / max(took, 1e-6))))
        took = call(pinger, ("ping", echo, n), timeout=600)
    actor_rate = n / took
    count, end = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < end:
        call(echo, "ping", timeout=30)
        count += 1
    host_rate = count / (time.perf_counter() - started)
    system = current_system()
    ping, pong = system.createActor(RawPing), system.createActor(RawPong)
    raw_n = max(1000, n)
    raw = system.ask(ping, (pong, raw_n), 600)
    for address in (ping, pong):
        system.tell(address, ActorExitRequest())
    return {
        "raw_thespian_actor_to_actor_per_s": round(raw_n / raw) if raw else None,
        "actor_to_actor_per_s": round(actor_rate),
        "actor_to_actor_calls": n,
        "host_call_per_s": round(host_rate),
    }


def phase_restart(root: Any, restarts: int, journal: Path) -> dict[str, Any]:
    """Crash the Crasher ``restarts`` times; latency raise -> new init."""
    sup = children_of(root)["crash_sup"]
    for _ in range(restarts):
        before = children_of(sup)["crasher"]
        try:
            call(before, "crash", timeout=30)
        except NoProc:
            pass
        deadline = time.monotonic() + 30
        while children_of(sup)["crasher"] in (before, None, "restarting"):
            if time.monotonic() > deadline:
                raise RuntimeError("crasher was not restarted within 30 s")
            time.sleep(0.0005)
    latencies = []
    crash_at = None
    for line in journal.read_text().splitlines():
        kind, stamp = line.split()
        if kind == "crash":
            crash_at = float(stamp)
        elif crash_at is not None:
            latencies.append(float(stamp) - crash_at)
            crash_at = None
    ms = [x * 1000 for x in latencies]
    return {
        "restarts": len(ms),
        "p50_ms": round(pct(ms, 0.5), 3),
        "p99_ms": round(pct(ms, 0.99), 3),
        "max_ms": round(max(ms), 3) if ms else None,
    }


def phase_timers(
    placement: str, root: Any, tickers: int, busy: int, seconds: float, gcs: GcPauses
) -> dict[str, Any]:
    """Timer lateness with this process idle, then with busy actors."""
    tsup = children_of(root)["timers"]
    addresses = [start_child(tsup, ChildSpec("t", (Ticker, (TICK,)))) for _ in range(tickers)]

    def collect() -> list[float]:
        late: list[float] = []
        for address in addresses:
            late.extend(call(address, "late", timeout=60))
        return [x * 1000 for x in late]

    def cpu() -> float:
        times = os.times()
        return times.user + times.system

    def summary(late: list[float], span: float) -> dict[str, Any]:
        expected = tickers * span / TICK
        return {
            "ticks": len(late),
            "ticks_expected_about": round(expected),
            "p50_ms": round(pct(late, 0.5), 3),
            "p99_ms": round(pct(late, 0.99), 3),
            "max_ms": round(max(late), 3) if late else None,
        }

    collect()  # drop the ticks of the start
    gcs.take()
    cpu0 = cpu()
    time.sleep(seconds)  # idle: nobody calls ask/listen
    idle = {**summary(collect(), seconds), **gcs.take(), "cpu_s": round(cpu() - cpu0, 3)}

    busy_addresses = [start_child(tsup, ChildSpec("b", Busy)) for _ in range(busy)]
    collect()
    until = time.monotonic() + seconds
    started = time.monotonic()
    cpu0 = cpu()
    for address in busy_addresses:
        cast(address, ("spin", 0.0005, until))
    pump(placement, max(0.0, until - time.monotonic()))
    span = time.monotonic() - started
    loaded = {**summary(collect(), span), **gcs.take(), "cpu_s": round(cpu() - cpu0, 3)}
    loaded["busy_messages"] = sum(call(a, "count", timeout=60) for a in busy_addresses)
    for address in [*busy_addresses, *addresses]:
        terminate_child(tsup, address, timeout=60)
    return {"idle_host": idle, "under_load": loaded, "floor": floor_lateness(tickers, seconds)}


def floor_lateness(tickers: int, seconds: float) -> dict[str, Any]:
    """The machine's own floor: ``tickers`` bare asyncio ``call_later`` chains
    (no actors) on a fresh loop in this thread, same period, for ``seconds``."""
    import asyncio

    late: list[float] = []
    loop = asyncio.new_event_loop()

    def tick(due: float) -> None:
        now = time.monotonic()
        late.append((now - due) * 1000)
        loop.call_later(TICK, tick, now + TICK)

    for _ in range(tickers):
        loop.call_later(TICK, tick, time.monotonic() + TICK)
    loop.run_until_complete(asyncio.sleep(seconds))
    loop.close()
    return {
        "ticks": len(late),
        "p50_ms": round(pct(late, 0.5), 3),
        "p99_ms": round(pct(late, 0.99), 3),
    }


# ---------------------------------------------------------------- main


def tree(dynsups: int, journal: Path) -> ChildSpec:
    """The benchmark's tree: DynamicSupervisors for the idle actors, a loader,
    an echo and a pinger, a crash supervisor and a timers supervisor."""
    dyn = [
        ChildSpec(f"ds{i}", (BenchDynSup, (DynamicSupervisorSpec(),)), start_timeout=None)
        for i in range(dynsups)
    ]
    crash = SupervisorSpec(
        [ChildSpec("crasher", (Crasher, (str(journal),)))],
        "one_for_one",
        max_restarts=1_000_000,
        max_seconds=1,
    )
    children = [
        *dyn,
        ChildSpec("loader", Loader),
        ChildSpec("echo", Echo),
        ChildSpec("pinger", Pinger),
        ChildSpec("crash_sup", (BenchSup, (crash,))),
        ChildSpec("timers", (BenchDynSup, (DynamicSupervisorSpec(),))),
    ]
    spec = SupervisorSpec(children, max_restarts=10, max_seconds=1)
    return ChildSpec("root", (BenchSup, (spec,)), start_timeout=None)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every phase for ``args.placement``; returns the figures."""
    base = PLACEMENTS[args.placement]
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "crasher.journal"
        baseline = memory()
        gcs = GcPauses()
        app = Application(
            tree(args.dynsups, journal), base=base, admin_port=args.admin_port, start_timeout=300
        )
        started = time.perf_counter()
        root = app.start()
        figures: dict[str, Any] = {
            "placement": args.placement,
            "base": base,
            "idle_start_timeout": None if args.no_start_timeout else 30.0,
            "python": sys.version.split()[0],
            "load_average_before": os.getloadavg()[0],
            "tree_start_s": round(time.perf_counter() - started, 3),
            "host_rss_mb_before": round(baseline["rss_kb"] / 1024, 1),
        }
        try:
            dynsups = [children_of(root)[f"ds{i}"] for i in range(args.dynsups)]
            figures["idle_actors"] = phase_start(
                root, dynsups, args.count, None if args.no_start_timeout else 30.0
            )
            print(json.dumps(figures["idle_actors"]), flush=True)
            figures["calls"] = phase_calls(root, args.seconds)
            print(json.dumps(figures["calls"]), flush=True)
            figures["restart"] = phase_restart(root, args.restarts, journal)
            print(json.dumps(figures["restart"]), flush=True)
            figures["timers"] = phase_timers(
                args.placement, root, args.tickers, args.busy, args.seconds, gcs
            )
            print(json.dumps(figures["timers"]), flush=True)
            started = time.perf_counter()
        finally:
            app.stop(timeout=600)
        figures["stop_s"] = round(time.perf_counter() - started, 3)
        figures["load_average_after"] = os.getloadavg()[0]
    return figures


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run, print the figures (and write ``--json``)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.actors", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--placement", choices=sorted(PLACEMENTS), required=True)
    parser.add_argument("--count", type=int, default=10_000, help="idle actors (default 10000)")
    parser.add_argument("--dynsups", type=int, default=100, help="DynamicSupervisors (default 100)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of timed phases")
    parser.add_argument("--restarts", type=int, default=300)
    parser.add_argument("--tickers", type=int, default=100)
    parser.add_argument("--busy", type=int, default=4)
    parser.add_argument("--admin-port", type=int, default=19470)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--no-start-timeout",
        action="store_true",
        help="start the idle actors with start_timeout=None (no timer per start)",
    )
    parser.add_argument(
        "--log", action="store_true", help="keep supervision's crash logs (off: they cost I/O)"
    )
    args = parser.parse_args(argv)
    if not args.log:
        logging.getLogger("supervision").setLevel(logging.CRITICAL)
    figures = run(args)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
