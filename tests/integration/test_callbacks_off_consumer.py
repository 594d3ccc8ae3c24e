"""The callbacks a Consumer runs never hold up its partition (issue 10, item 6).

``on_error``/``on_buried`` for a job whose worker timed out or died, and
``on_cancel`` for a cancelled job, are run by the Consumer (the worker is
gone). In Roger each job's own Worker process runs them, so a slow callback
(an HTTP call to an error tracker) delays that job only. Here they run on the
Consumer's :class:`~roger_actors.partition.callback_runner.CallbackRunner`
threads: while such a callback blocks, the partition's other jobs are
dispatched, run and acked, and the job whose callback blocks is settled too.

Real node (``multiprocTCPBase``), real broker. The blocking callback waits for
a file the test creates (bounded), and the test always creates it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import roger_actors as roger
from roger_actors import Job, Queue
from tests.partition_harness import NodeHarness, wait_for
from tests.roger_test_jobs2 import JsonCallbacks, LimitedJob, TimedJob, record

pytestmark = pytest.mark.timeout(90)

#: Longest a gated callback waits for its release file.
GATE_BOUND = 40.0
#: How long the other jobs of the partition may take while a callback blocks.
PROGRESS_BOUND = 15.0


def _release_path(journal: str, tag: str) -> Path:
    return Path(f"{journal}.release-{tag}")


class _JournalLogHandler(logging.Handler):
    """Writes the roger_actors error log lines of a process to the journal."""

    def __init__(self, journal: str) -> None:
        super().__init__(logging.ERROR)
        self.journal = journal

    def emit(self, record_: logging.LogRecord) -> None:
        try:
            record(self.journal, "log", logger=record_.name, message=record_.getMessage())
        except Exception:
            pass


_handlers: dict[str, _JournalLogHandler] = {}


def _journal_errors(journal: str) -> None:
    """In the calling process, send roger_actors error log lines to ``journal`` (once).

    An actor process is forked from the test process, and Thespian gives it
    a new logging manager: the module-level loggers of roger_actors, made at
    import before the fork, hang under the old one. The handler goes on the
    ``roger_actors`` logger of both."""
    if journal in _handlers:
        return
    from roger_actors.partition import consumer

    handler = _handlers[journal] = _JournalLogHandler(journal)
    managers = {id(m): m for m in (logging.Logger.manager, consumer.log.manager)}
    for manager in managers.values():
        manager.getLogger("roger_actors").addHandler(handler)


class GatedCallbacks(JsonCallbacks):
    """JsonCallbacks; for a job whose tag starts with ``gate``, ``on_error``
    and ``on_cancel`` record ``<name>_entered`` (with the thread's name), wait
    (at most GATE_BOUND s) for its release file, then record ``<name>_left``.
    A tag starting with ``raise`` makes them record ``<name>_raising``, then
    raise."""

    def _gate(self, name: str, job: Job) -> None:
        journal, tag = job.args[0], job.args[1]
        _journal_errors(journal)
        if tag.startswith("raise"):
            record(journal, f"{name}_raising", tag=tag, thread=threading.current_thread().name)
            raise RuntimeError(f"{name} of {tag} is broken")
        if not tag.startswith("gate"):
            return
        record(journal, f"{name}_entered", tag=tag, thread=threading.current_thread().name)
        deadline = time.monotonic() + GATE_BOUND
        release = _release_path(journal, tag)
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        record(journal, f"{name}_left", tag=tag, released=release.exists())

    def on_error(
        self, partition_id: str, job: Job, error: Any, stacktrace: Any, state: Any
    ) -> None:
        super().on_error(partition_id, job, error, stacktrace, state)
        self._gate("on_error", job)

    def on_cancel(self, partition_id: str, job: Job) -> None:
        super().on_cancel(partition_id, job)
        self._gate("on_cancel", job)


class CrashingJob(Job):
    """args: [path, tag]: "start", then ends its worker process."""

    def perform(self, args: Any) -> Any:
        record(args[0], "start", tag=args[1])
        os._exit(3)


def _messages(queue: str) -> int | None:
    """Ready plus unacked messages of ``queue`` (None when it does not exist)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "--no-table-headers", "name", "messages"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    for line in out.splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return None


def _start_failing_job(h: NodeHarness, pid: str, how: str, tag: str) -> Job:
    """Enqueue a job whose callback the Consumer runs: ``timeout`` and ``crash``
    fire ``on_error``, ``cancel`` fires ``on_cancel`` (it is cancelled while running)."""
    if how == "timeout":
        return h.enqueue(LimitedJob, pid, tag, 30)
    if how == "crash":
        return h.enqueue(CrashingJob, pid, tag)
    job = h.enqueue(TimedJob, pid, tag, 30)
    h.wait_tags("start", {tag})
    roger.Global.cancel_job(pid, job.id)
    return job


CALLBACK_OF = {"timeout": "on_error", "crash": "on_error", "cancel": "on_cancel"}


@pytest.mark.parametrize("how", ["timeout", "crash", "cancel"])
def test_a_blocked_callback_does_not_stop_the_partition_running_and_acking_jobs(
    h: NodeHarness, how: str
) -> None:
    h.start(callbacks=GatedCallbacks)
    pid = h.start_partition({"default": 2})
    work = Queue.make_name(pid, "default")
    callback = CALLBACK_OF[how]
    try:
        blocked = _start_failing_job(h, pid, how, "gate")
        [entered] = h.wait_events(f"{callback}_entered", 1)
        assert entered["thread"].startswith("roger-callbacks-"), "not off the actor's thread"

        # The callback blocks. The partition goes on: new jobs run and are acked,
        # and so was the job whose callback blocks (its settle did not wait).
        others = {f"next{i}" for i in range(4)}
        for tag in sorted(others):
            h.enqueue(TimedJob, pid, tag, 0)
        h.wait_tags("after_run", others, timeout=PROGRESS_BOUND)
        wait_for(lambda: _messages(work) == 0, PROGRESS_BOUND, "every job acked", 0.3)
        assert not h.events(f"{callback}_left"), "the callback was released too early"
        assert [e["id"] for e in h.events(callback)] == [blocked.id]
    finally:
        _release_path(h.journal, "gate").touch()

    [left] = h.wait_events(f"{callback}_left", 1)
    assert left["released"] is True
    # still one callback for the job, and the partition is still well
    h.enqueue(TimedJob, pid, "last", 0)
    h.wait_tags("after_run", {"last"})
    assert len(h.events(callback)) == 1


def test_a_raising_callback_is_logged_and_the_partition_goes_on(h: NodeHarness) -> None:
    h.start(callbacks=GatedCallbacks)
    pid = h.start_partition({"default": 2})
    work = Queue.make_name(pid, "default")

    first = h.enqueue(LimitedJob, pid, "raise1", 30)
    h.wait_tags("on_error_raising", {"raise1"})
    h.enqueue(TimedJob, pid, "after1", 0)
    h.wait_tags("after_run", {"after1"})
    # the same Consumer runs the next callback (its pool survived the raise)
    second = h.enqueue(CrashingJob, pid, "raise2")
    h.wait_tags("on_error_raising", {"raise2"})
    h.enqueue(TimedJob, pid, "after2", 0)
    h.wait_tags("after_run", {"after2"})
    wait_for(lambda: _messages(work) == 0, what="every job acked", interval=0.3)

    def logged() -> list[str]:
        return [
            json.dumps(e)
            for e in h.events("log")
            if "callback on_error" in e["message"] and "raised" in e["message"]
        ]

    lines = wait_for(lambda: len(logged()) == 2 and logged(), what="both raises logged")
    assert first.id in lines[0] and second.id in lines[1]
    assert {e["kind"] for e in h.events("on_error")} == {"timeout", "worker_crash"}
    raising = h.events("on_error_raising")
    assert all(e["thread"].startswith("roger-callbacks-") for e in raising), raising


def test_on_light_a_partition_whose_callback_blocks_as_it_stops_holds_up_no_other_partition(
    h: NodeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the light base every partition's Consumer shares the partition
    host's loop. A Consumer that stops waits up to ``CLOSE_SECONDS`` for its
    callbacks, off the loop: ``Partition.stop`` answers, and another
    partition's job runs, before that wait gives up and logs so. (Waiting on
    the loop, the stop answered, and the job ran, only after.)"""
    from roger_actors.partition import consumer

    monkeypatch.setattr(consumer, "CLOSE_SECONDS", 10.0)  # the host is forked with it
    h.start(callbacks=GatedCallbacks, actor_system_base="light")
    stopping = h.start_partition({"default": 1}, name="stopping")
    other = h.start_partition({"default": 1}, name="other")

    def gave_up() -> list[dict[str, Any]]:
        return [e for e in h.events("log") if "still running" in e["message"]]

    try:
        h.enqueue(CrashingJob, stopping, "gate")
        h.wait_events("on_error_entered", 1)
        roger.Partition.stop(stopping)
        h.enqueue(TimedJob, other, "meanwhile", 0)
        h.wait_tags("after_run", {"meanwhile"}, timeout=PROGRESS_BOUND)
        wait_for(gave_up, PROGRESS_BOUND, "the stopped Consumer gave its callback up")
        events = h.events()
        ran = next(i for i, e in enumerate(events) if e.get("tag") == "meanwhile"
                   and e["event"] == "after_run")
        given_up = next(i for i, e in enumerate(events) if e["event"] == "log"
                        and "still running" in e["message"])
        assert ran < given_up, "the other partition waited for the stopped one's callback"
    finally:
        _release_path(h.journal, "gate").touch()
