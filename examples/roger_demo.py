"""Job processing on a real roger-actors node, step by step, checked.

Run with ``scripts/demo`` (or ``python examples/roger_demo.py``). It runs on
RabbitMQ when one answers at ``--amqp-url``, else on the embedded broker
(``memory://``, served from this process: nothing to install); ``--broker
amqp`` or ``--broker memory`` chooses.
It starts a node in this process (its actors and workers in processes of
their own) through the public API, with two tenants' partitions, and then:

1. enqueues jobs on both tenants and checks their results;
2. enqueues a unique job (``queue_key``) and checks a duplicate is refused;
3. runs two jobs sharing an ``execution_key`` and checks they did not overlap;
4. cancels a running job and checks it was killed (``on_cancel``, no end);
5. runs a retryable job that always fails until it is buried;
6. pauses a queue cluster-wide, checks a job waits there, resumes it.

A live table shows the steps; a summary table ends the run. Each step is
checked against the journal its jobs and callbacks write
(:mod:`demo_jobs`); a step that does not do what it says ends the demo with
exit status 1 and a message saying what was expected. The partitions'
queues are deleted and the node stopped in every case.

Exit status: 0 every step passed; 1 a step failed; 2 bad arguments; 3 RabbitMQ
(``--broker amqp``) cannot be reached.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

# The job module sits next to this file; the workers, forked from this process, see it too.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_jobs
from demo_jobs import (
    DemoCallbacks,
    Export,
    Flaky,
    Nightly,
    Report,
    Square,
    Transfer,
    read_journal,
)
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

import roger_actors as roger
from roger_actors.testing.queues import (
    delete_partition_queues,
    partition_queue_names,
)

T = TypeVar("T")

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
RETRY_LEVELS = [1, 1]
#: The longest any one wait of the demo may take (seconds).
WAIT = 12.0


class DemoFailure(Exception):
    """A step did not do what it says."""


@dataclass
class Step:
    title: str
    status: str = "waiting"
    detail: str = ""
    seconds: float = 0.0


class Display:
    """The live table of steps (a terminal) or one line per finished step."""

    STYLE = {"waiting": "dim", "running": "yellow", "PASS": "green", "FAIL": "bold red"}

    def __init__(self, console: Console, titles: list[str]) -> None:
        self.console = console
        self.steps = [Step(t) for t in titles]
        self.jobs_done = 0
        self.live: Live | None = None

    def table(self, title: str) -> Table:
        table = Table(title=title, expand=False)
        table.add_column("#", justify="right")
        table.add_column("step")
        table.add_column("result")
        table.add_column("what happened")
        table.add_column("s", justify="right")
        for number, step in enumerate(self.steps, 1):
            table.add_row(
                str(number),
                step.title,
                Text(step.status, style=self.STYLE.get(step.status, "")),
                step.detail,
                f"{step.seconds:.1f}" if step.status in ("PASS", "FAIL") else "",
            )
        return table

    def render(self) -> Group:
        return Group(
            self.table("roger-actors demo"),
            Text(f"jobs settled so far: {self.jobs_done}", style="cyan"),
        )

    @contextmanager
    def running(self) -> Iterator[None]:
        if self.console.is_terminal:
            with Live(self.render(), console=self.console, refresh_per_second=8,
                      transient=True) as live:
                self.live = live
                try:
                    yield
                finally:
                    self.live = None
        else:
            yield

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render())

    def update(self, index: int, status: str, detail: str = "", seconds: float = 0.0) -> None:
        step = self.steps[index]
        step.status, step.detail, step.seconds = status, detail, seconds
        self.refresh()
        if self.live is None and status in ("PASS", "FAIL"):
            self.console.print(f"[{index + 1}/{len(self.steps)}] {step.title}: {status} {detail}")


class Demo:
    """The node, the two tenants and the checks; see the module docstring."""

    def __init__(self, amqp: str, display: Display, journal: str) -> None:
        tag = secrets.token_hex(4)
        self.display = display
        self.journal = journal
        self.acme = f"acme-{tag}"
        self.globex = f"globex-{tag}"
        self.queues = {self.acme: {"default": 4, "reports": 1}, self.globex: {"default": 2}}
        self.execution_keys = ["account-1"]
        self.config: dict[str, Any] = {
            "amqp": amqp,
            "admin_port": free_port(),
            "node_name": f"demo-{tag}",
            "system_exchange_prefix": "roger-demo",  # one exchange, reused by every run
            "callbacks": DemoCallbacks,
            "retry_levels": RETRY_LEVELS,
            "shutdown_timeout": 5,
        }
        self.node: Any = None
        self.deleted = 0

    # ------------------------------------------------------------ journal

    def events(self, event: str, job: roger.Job | None = None) -> list[dict[str, Any]]:
        found = [e for e in read_journal(self.journal) if e["event"] == event]
        if job is not None:
            found = [e for e in found if e["job"] == job.id]
        return found

    def settled(self) -> int:
        return sum(
            1 for e in read_journal(self.journal)
            if e["event"] in ("after_run", "on_buried", "on_cancel")
        )

    def wait(self, condition: Callable[[], T], what: str, timeout: float = WAIT) -> T:
        """Poll ``condition`` (bounded) until truthy; DemoFailure naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            self.display.jobs_done = self.settled()
            self.display.refresh()
            if time.monotonic() > deadline:
                raise DemoFailure(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)

    def wait_event(self, event: str, job: roger.Job, count: int = 1,
                   timeout: float = WAIT) -> list[dict[str, Any]]:
        return self.wait(
            lambda: len(self.events(event, job)) >= count and self.events(event, job),
            f"{count} {event!r} of {type(job).__name__} job {job.id[:8]}",
            timeout,
        )

    # ------------------------------------------------------------ steps

    def start(self) -> str:
        self.node = roger.start(self.config)
        for pid, queues in self.queues.items():
            roger.Partition.start(pid, queues)
        for pid, queues in self.queues.items():
            self.wait(lambda pid=pid, queues=queues: all(
                stats.get("consumer_count") == 1
                for stats in roger.Consumer.get_queues(pid).values()
            ) and set(roger.Consumer.get_queues(pid)) == set(queues), f"{pid} consuming")
        running = roger.Info.running_partitions()
        mine = running.get(self.config["node_name"], {})
        missing = [pid for pid in self.queues if pid not in mine]
        if missing:
            raise DemoFailure(f"Info.running_partitions does not list {missing}: {running!r}")
        return f"node {self.config['node_name']}: tenants {self.acme}, {self.globex}"

    def enqueue_jobs(self) -> str:
        jobs = [(roger.Job.create(Square, [n, 0.2]), self.acme) for n in range(6)]
        jobs += [(roger.Job.create(Square, [n, 0.2]), self.globex) for n in range(10, 14)]
        for job, pid in jobs:
            job.enqueue(pid)
        for job, pid in jobs:
            [done] = self.wait_event("after_run", job)
            if done["result"] != job.args[0] ** 2 or done["partition"] != pid:
                raise DemoFailure(f"job {job.id} gave {done!r}, expected {job.args[0] ** 2} "
                                  f"in {pid}")
        return f"{len(jobs)} jobs on 2 tenants, every result right"

    def unique(self) -> str:
        first = roger.Job.create(Report, [7, 1.0])
        first.enqueue(self.acme)
        duplicate = roger.Job.create(Report, [7, 0.0])
        try:
            duplicate.enqueue(self.acme)
        except roger.DuplicateJobError:
            pass
        else:
            raise DemoFailure("a second job with queue key 'report-7' was accepted")
        self.wait_event("after_run", first)
        again = roger.Job.create(Report, [7, 0.0])
        again.enqueue(self.acme)  # the key is free once the first has run
        self.wait_event("after_run", again)
        if self.events("after_run", duplicate):
            raise DemoFailure("the refused duplicate ran")
        return "duplicate 'report-7' refused; accepted again after the first ran"

    def serialised(self) -> str:
        pair = [roger.Job.create(Transfer, [1, 0.6]) for _ in range(2)]
        for job in pair:
            job.enqueue(self.acme)  # the queue has 4 workers: only the key serialises them
        spans = []
        for job in pair:
            start = self.wait_event("transfer_start", job)[0]["t"]
            end = self.wait_event("transfer_end", job)[0]["t"]
            spans.append((start, end))
        spans.sort()
        (s1, e1), (s2, e2) = spans
        if s2 < e1:
            raise DemoFailure(f"the two 'account-1' transfers overlapped: {spans!r}")
        return f"'account-1': {s1 - s1:.2f}-{e1 - s1:.2f} s then {s2 - s1:.2f}-{e2 - s1:.2f} s"

    def cancel(self) -> str:
        job = roger.Job.create(Export, [20])
        job.enqueue(self.globex)
        started = self.wait_event("export_start", job)[0]["t"]
        self.wait(lambda: any(j.id == job.id for jobs in
                              roger.Info.running_jobs(self.globex).values()
                              if isinstance(jobs, list) for j in jobs if isinstance(j, roger.Job)),
                  "Info.running_jobs to list the export")
        roger.Global.cancel_job(self.globex, job.id)
        cancelled = self.wait_event("on_cancel", job)[0]["t"]
        self.wait(lambda: not any(j.id == job.id for jobs in
                                  roger.Info.running_jobs(self.globex).values()
                                  if isinstance(jobs, list) for j in jobs
                                  if isinstance(j, roger.Job)),
                  "the cancelled export to leave Info.running_jobs")
        if self.events("export_end", job) or self.events("after_run", job):
            raise DemoFailure("the cancelled export ran to its end")
        if len(self.events("on_cancel", job)) != 1:
            raise DemoFailure(f"on_cancel ran {len(self.events('on_cancel', job))} times")
        return f"a 20 s export killed {cancelled - started:.1f} s after it started; on_cancel once"

    def buried(self) -> str:
        job = roger.Job.create(Flaky, ["billing"])
        job.enqueue(self.globex)
        [buried] = self.wait_event("on_buried", job, timeout=WAIT)
        errors = self.events("on_error", job)
        counts = [e["retry_count"] for e in errors]
        if counts != list(range(len(RETRY_LEVELS))) or buried["retry_count"] != len(RETRY_LEVELS):
            raise DemoFailure(f"expected on_error at retry_count {list(range(len(RETRY_LEVELS)))}"
                              f" then on_buried at {len(RETRY_LEVELS)}; got {counts}, "
                              f"{buried['retry_count']}")
        return (f"failed {len(errors) + 1} times (retry levels {RETRY_LEVELS} s), then buried "
                f"in {roger.Queue.buried_name(self.globex, 'default')}")

    def pause_resume(self) -> str:
        roger.Global.queue_pause(self.acme, "reports")
        self.wait(lambda: roger.Consumer.get_queues(self.acme)["reports"]["paused"],
                  "the reports queue paused on this node")
        job = roger.Job.create(Nightly, [])
        job.enqueue(self.acme)
        self.wait(lambda: roger.Consumer.get_queues(self.acme)["reports"]["message_count"] == 1,
                  "the nightly job waiting in the paused queue")
        held_until = time.monotonic() + 1.0
        while time.monotonic() < held_until:
            if self.events("nightly_run", job):
                raise DemoFailure("a job ran on the paused queue")
            time.sleep(0.05)
        if roger.Global.queue_get_paused(self.acme) != {"reports"}:
            raise DemoFailure(f"Global lists {roger.Global.queue_get_paused(self.acme)} paused")
        resumed = time.time()
        roger.Global.queue_resume(self.acme, "reports")
        ran = self.wait_event("nightly_run", job)[0]["t"]
        if roger.Consumer.get_queues(self.acme)["reports"]["paused"]:
            raise DemoFailure("the reports queue is still paused after the resume")
        return f"a job waited 1 s in the paused queue, ran {ran - resumed:.1f} s after the resume"

    # ------------------------------------------------------------ clean-up

    def close(self) -> str:
        """Stop the partitions, delete their queues, stop the node; say what was left."""
        problems = []
        if self.node is None:
            return "nothing started"
        for pid in self.queues:
            try:
                roger.Partition.stop(pid)
            except roger.NotRunningError:
                pass
            except Exception as exc:  # keep cleaning up
                problems.append(f"stop {pid}: {exc!r}")
        try:
            for pid, queues in self.queues.items():
                names = partition_queue_names(pid, queues, RETRY_LEVELS, self.execution_keys)
                self.deleted += delete_partition_queues(names)
        except Exception as exc:
            problems.append(f"deleting queues: {exc!r}")
        roger.stop()
        self.node = None
        left = wait_children_gone(10.0)
        if left:
            problems.append(f"processes left: {left}")
        if problems:
            raise DemoFailure("; ".join(problems))
        return f"the tenants' queues deleted ({self.deleted} names), node stopped, no process left"


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux ``/proc``; [] elsewhere)."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc/self").exists() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def wait_children_gone(timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = children_of(os.getpid())
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def free_port(low: int = 23000, high: int = 23999) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the actor system)."""
    start = low + secrets.randbelow(high - low)
    for offset in range(high - low):
        port = low + (start - low + offset) % (high - low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def broker_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 5672), 3):
            return True
    except OSError:
        return False


class _ExpectedKill(logging.Filter):
    """Drops the supervisor's report of the worker the cancel step kills (expected)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("worker-" in message and message.endswith("exited with killed"))


def quiet_logging() -> None:
    """Warnings and errors on stderr, less the kill the demo causes on purpose
    (set before the node starts: its processes inherit it)."""
    handler = logging.StreamHandler()
    handler.addFilter(_ExpectedKill())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("auto", "amqp", "memory"), default="auto",
                        help="auto (default): RabbitMQ when it is reachable, else the embedded "
                             "broker; amqp: RabbitMQ only; memory: the embedded broker "
                             "(memory://, in this process, nothing to install)")
    parser.add_argument("--amqp-url", default=os.environ.get("ROGER_AMQP_URL", DEFAULT_AMQP),
                        help=f"RabbitMQ URL for --broker auto/amqp (default {DEFAULT_AMQP})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    amqp = "memory://"
    if args.broker != "memory":
        shown = urlsplit(args.amqp_url)
        where = f"{shown.hostname}:{shown.port or 5672}"
        if broker_reachable(args.amqp_url):
            amqp = args.amqp_url
            console.print(f"broker: RabbitMQ at {where}")
        elif args.broker == "amqp":
            console.print(f"[red]RabbitMQ is not reachable at {where}: start it (scripts/test "
                          "starts it when installed), give --amqp-url, or run on the "
                          "embedded broker (--broker memory)[/red]")
            return 3
        else:
            console.print(f"RabbitMQ is not reachable at {where}: ", end="")
    if amqp == "memory://":
        console.print("broker: the embedded broker (memory://, in this process)")
    titles = [
        "start a node, two tenants",
        "enqueue jobs",
        "refuse a duplicate unique job",
        "serialise two jobs (execution key)",
        "cancel a running job",
        "retry a job until it is buried",
        "pause and resume a queue",
        "clean up",
    ]
    quiet_logging()
    display = Display(console, titles)
    began = time.monotonic()
    failed = False
    with tempfile.TemporaryDirectory(prefix="roger-demo-") as scratch:
        journal = str(Path(scratch) / "journal.jsonl")
        os.environ[demo_jobs.JOURNAL_ENV] = journal
        demo = Demo(amqp, display, journal)
        actions = [demo.start, demo.enqueue_jobs, demo.unique, demo.serialised, demo.cancel,
                   demo.buried, demo.pause_resume]
        with display.running():
            for index, action in enumerate(actions):
                step_began = time.monotonic()
                display.update(index, "running")
                try:
                    detail = action()
                except Exception as exc:
                    failed = True
                    detail = str(exc) if isinstance(exc, DemoFailure) else repr(exc)
                    display.update(index, "FAIL", detail, time.monotonic() - step_began)
                    if not isinstance(exc, DemoFailure):
                        console.print(traceback.format_exc(), markup=False, highlight=False)
                    break
                display.update(index, "PASS", detail, time.monotonic() - step_began)
                display.jobs_done = demo.settled()
            index = len(actions)
            step_began = time.monotonic()
            display.update(index, "running")
            try:
                display.update(index, "PASS", demo.close(), time.monotonic() - step_began)
            except Exception as exc:
                failed = True
                display.update(index, "FAIL", str(exc), time.monotonic() - step_began)
        display.jobs_done = len({e["job"] for e in read_journal(journal)
                                 if e["event"] in ("after_run", "on_buried", "on_cancel")})
    console.print(display.table("Summary"))
    verdict = "FAILED" if failed else "all steps passed"
    console.print(f"{verdict}: {display.jobs_done} jobs settled, "
                  f"wall time {time.monotonic() - began:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
