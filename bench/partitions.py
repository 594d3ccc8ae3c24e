"""Partition scaling: what idle partitions cost a node.

Run::

    python -m bench.partitions --partitions 0,10,50,100
    python -m bench.partitions --partitions 1000 --queues 1 --max-workers 2 --json out.json
    python -m bench.partitions --partitions 0,100,1000 --own-broker
    python -m bench.partitions --partitions 1000 --parallel 16 --warm --own-broker
    ROGER_ACTOR_SYSTEM_BASE=multiprocTCPBase python -m bench.partitions --partitions 0,10,50

For each count N (one run each, in order) a node runs in a process of its
own session (``python -m bench.partitions node``), starts N partitions of
``--queues`` queues with ``--max-workers`` each through the public API
(``roger.Partition.start``), and reports:

- **start**: seconds from the first ``Partition.start`` until every one of
  the N partitions is running and consumes each of its queues (every
  ``Partition.start`` returned, and the broker counts a consumer on every
  work queue: passive declares on a connection of the node process's own).
  ``--parallel K`` keeps K calls under way at once, from K threads (as a
  node's config ``partitions`` list is started: all at once); 1 (the
  default) makes one call after the other, each waiting until its partition
  runs. The partitions' queues are new (declared by the start) unless
  ``--warm``: then a first node starts the same partitions and stops before
  the measured node starts, as in a restart;
- **processes**: the processes of the node's session while idle;
- **AMQP connections**: the broker's connections whose client-given name is
  this run's (``rabbitmqctl list_connections``);
- **PSS**: the sum of the proportional set sizes of those processes (MB);
- **idle CPU**: the CPU those processes used over ``--idle-seconds`` of
  idleness, in % of one core.

Node runtime v2's targets for 1,000 idle partitions (one queue each): start
<= 20 s, <= 1 GB PSS, <= 8 AMQP connections, <= 12 processes, <= 5% of a
core. This is a benchmark, never a timed test: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
READY = "ready"


# ---------------------------------------------------------------- the node process


def run_node(
    count: int, queues: int, max_workers: int, url: str, tag: str, parallel: int = 1
) -> None:
    """The node: start ``count`` partitions, ``parallel`` ``Partition.start``
    calls at a time, print their start time, idle until killed."""
    from concurrent.futures import ThreadPoolExecutor

    from roger_actors import Queue
    from roger_actors.node import Partition, start

    node = start({"amqp": f"{url}?name=bench-partitions-{tag}", "admin_port": _free_port()})
    admin = node.app.admin
    names = {f"q{i}": max_workers for i in range(queues)}
    pids = [f"bp{tag}-{i}" for i in range(count)]
    began = time.monotonic()
    if parallel <= 1:
        for pid in pids:
            Partition.start(pid, names)
    else:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda pid: Partition.start(pid, names), pids))
    wait_consumed(url, [Queue.make_name(pid, q) for pid in pids for q in names])
    ready = time.monotonic() - began
    print(json.dumps({READY: ready, "group": admin[1] if admin else None}), flush=True)
    signal.pause()


def wait_consumed(url: str, queues: list[str], timeout: float = 600.0) -> None:
    """Return once the broker counts a consumer on each of ``queues`` (asked
    with passive declares on a connection of this bench's own, eight at a
    time, the queues still without one again every 50 ms). Raises
    TimeoutError after ``timeout`` seconds."""
    import asyncio

    import aiormq

    connection: Any = None

    async def consumed(channel: Any, name: str) -> bool:
        try:
            ok = await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return bool(ok.consumer_count)

    async def unconsumed(names: list[str]) -> list[str]:
        channel = await connection.channel()
        left = []
        for name in names:
            if channel.is_closed:  # a missing queue closes the channel
                channel = await connection.channel()
            if not await consumed(channel, name):
                left.append(name)
        await channel.close()
        return left

    async def wait() -> None:
        nonlocal connection
        connection = await aiormq.connect(url)
        try:
            deadline = time.monotonic() + timeout
            pending = list(queues)
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} queues have no consumer")
                chunks = await asyncio.gather(*(unconsumed(pending[i::8]) for i in range(8)))
                pending = [name for chunk in chunks for name in chunk]
                if pending:
                    await asyncio.sleep(0.05)
        finally:
            await connection.close()

    asyncio.run(wait())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---------------------------------------------------------------- measuring


def node_pids(sid: int, group: int | None) -> list[int]:
    """The live processes of session ``sid`` (the node's process and what it
    forked) and of process group ``group`` (its actor system, when it has one
    of its own)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            try:
                if os.getsid(pid) == sid or (group is not None and os.getpgid(pid) == group):
                    found.append(pid)
            except OSError:
                continue
    return found


def end_node_session(node: subprocess.Popen[Any]) -> None:
    """Stop a node started in a session of its own: SIGTERM to its session's
    group, SIGKILL after 60 s, then SIGKILL whatever of the session is left
    (processes that were in it when the stop began)."""
    left = node_pids(node.pid, None)
    os.killpg(node.pid, signal.SIGTERM)
    try:
        node.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()
    for pid in set(left) | set(node_pids(node.pid, None)):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def pss_mb(pids: list[int]) -> float:
    """Summed PSS of ``pids`` in MB (processes gone meanwhile count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


def cpu_seconds(pids: list[int]) -> float:
    """Summed user + system CPU seconds of ``pids`` so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


#: The broker node this run started (``--own-broker``), else None: the machine's.
_own_broker: Any = None


def rabbitmqctl(*args: str, timeout: float = 120) -> str:
    """``rabbitmqctl -q args`` on the run's broker; its output."""
    if _own_broker is not None:
        return str(_own_broker.ctl(*args, timeout=timeout))
    return subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout, check=True
    ).stdout


def connections(tag: str) -> int:
    """The broker's connections named ``bench-partitions-<tag>``."""
    return rabbitmqctl("list_connections", "client_properties", timeout=60).count(
        f"bench-partitions-{tag}"
    )


def delete_queues(url: str, marker: str) -> int:
    """Delete every queue whose name holds ``marker`` (a run's partitions:
    work, dead-letter, buried and Global queues); how many went."""
    import asyncio

    import aiormq

    names = [
        line.strip()
        for line in rabbitmqctl("list_queues", "name").splitlines()
        if marker in line
    ]

    async def delete() -> None:
        connection = await aiormq.connect(url)
        try:
            channel = await connection.channel()
            for name in names:
                await channel.queue_delete(name)
        finally:
            await connection.close()

    asyncio.run(delete())
    return len(names)


def start_node(
    count: int, args: argparse.Namespace, tag: str
) -> tuple[subprocess.Popen[Any], float, int | None]:
    """A node process of its own session with ``count`` idle partitions named
    after ``tag``, once they run: ``(process, start seconds, actor system group)``."""
    argv = [
        sys.executable,
        "-m",
        "bench.partitions",
        "node",
        str(count),
        str(args.queues),
        str(args.max_workers),
        args.url,
        tag,
        str(args.parallel),
    ]
    node = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert node.stdout is not None
        line = node.stdout.readline()
        if not line:
            raise RuntimeError(f"the node for {count} partitions exited with {node.wait()}")
        report = json.loads(line)
    except BaseException:
        end_node_session(node)
        raise
    return node, float(report[READY]), report["group"]


def measure(count: int, args: argparse.Namespace) -> dict[str, Any]:
    """One node with ``count`` idle partitions; its figures. With ``--warm``
    a first node starts (and declares the queues of) the same partitions and
    stops before the measured one starts: a node's restart."""
    tag = uuid.uuid4().hex[:8]
    try:
        if args.warm:
            first, _, _ = start_node(count, args, tag)
            end_node_session(first)
        node, start, group = start_node(count, args, tag)
        try:
            time.sleep(args.settle_seconds)  # workers of the start stop when idle
            pids = node_pids(node.pid, group)
            before, began = cpu_seconds(pids), time.monotonic()
            time.sleep(args.idle_seconds)
            pids = node_pids(node.pid, group)
            used = cpu_seconds(pids) - before
            figures = {
                "partitions": count,
                "start_s": round(start, 2),
                "processes": len(pids),
                "amqp_connections": connections(tag),
                "pss_mb": round(pss_mb(pids), 1),
                "idle_cpu_percent": round(100 * used / (time.monotonic() - began), 2),
            }
        finally:
            end_node_session(node)
    finally:
        delete_queues(args.url, f"bp{tag}-")
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``node`` first, be its node); print a table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "node":
        count, queues, max_workers, url, tag, parallel = argv[1:7]
        run_node(int(count), int(queues), int(max_workers), url, tag, int(parallel))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.partitions", description=__doc__)
    parser.add_argument("--partitions", default="0,10,50,100", help="comma-separated counts")
    parser.add_argument("--queues", type=int, default=1, help="queues per partition")
    parser.add_argument("--max-workers", type=int, default=2, help="max_workers of each queue")
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="Partition.start calls under way at once, from as many threads (1: one after "
        "the other, each waiting until its partition runs)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="measure a restart: the partitions' queues exist (a first node declared them)",
    )
    parser.add_argument("--url", default=os.environ.get("ROGER_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--settle-seconds", type=float, default=7.0)
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument(
        "--own-broker",
        action="store_true",
        help="start a RabbitMQ node of the run's own (on a free port, with this shell's "
        "open-file limit: the machine's broker has 1,024, too few past about 100 "
        "partitions), removed at the end",
    )
    args = parser.parse_args(argv)
    global _own_broker
    if args.own_broker:
        from tests.rabbit_nodes import BrokerNode

        _own_broker = BrokerNode.create(f"roger-bench-{uuid.uuid4().hex[:6]}")
        _own_broker.start()
        args.url = _own_broker.url()
    try:
        rows = [measure(int(n), args) for n in args.partitions.split(",")]
    finally:
        if _own_broker is not None:
            _own_broker.remove()
    print(
        "| idle partitions | start (s) | processes | AMQP connections | PSS (MB) | idle CPU (%) |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['partitions']:,} | {row['start_s']} | {row['processes']} | "
            f"{row['amqp_connections']} | {row['pss_mb']:,.0f} | {row['idle_cpu_percent']} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
