"""Unit tests of the Consumer's callback runner (no broker, no actors).

Every wait is bounded: callbacks block on events the test sets, and the
runner's state is polled with :func:`tests.partition_harness.wait_for`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from roger_actors import Job, WorkerCallback
from roger_actors.partition.callback_runner import CallbackRunner
from tests.partition_harness import wait_for

pytestmark = pytest.mark.timeout(30)

#: Bound of every wait on an event in these tests.
BOUND = 10.0


class _Noop(Job):
    def perform(self, args: Any) -> None:
        return None


def _job(tag: str) -> Job:
    return Job.create(_Noop, [tag])


class Recorder(WorkerCallback):
    """Records ``(name, tag, thread)``; ``on_cancel`` of a tag in ``gates``
    waits (bounded) for that tag's event; ``on_error`` of tag ``"raise"``
    raises, of tag ``"exit"`` raises SystemExit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, int]] = []
        self.gates: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}

    def gate(self, tag: str) -> tuple[threading.Event, threading.Event]:
        """(entered, release) events of a blocking ``on_cancel`` for ``tag``."""
        self.gates[tag] = threading.Event()
        self.entered[tag] = threading.Event()
        return self.entered[tag], self.gates[tag]

    def _note(self, name: str, job: Job) -> None:
        with self.lock:
            self.calls.append((name, job.args[0], threading.get_ident()))

    def tags(self, name: str) -> list[str]:
        with self.lock:
            return [tag for n, tag, _ in self.calls if n == name]

    def on_cancel(self, partition_id: str, job: Job) -> None:
        tag = job.args[0]
        if tag in self.gates:
            self.entered[tag].set()
            self.gates[tag].wait(BOUND)
        self._note("on_cancel", job)

    def on_error(
        self, partition_id: str, job: Job, error: Any, stacktrace: Any, state: Any
    ) -> None:
        if job.args[0] == "raise":
            raise RuntimeError("callback boom")
        if job.args[0] == "exit":
            raise SystemExit(3)
        self._note("on_error", job)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def _runner(rec: Recorder, **options: Any) -> CallbackRunner:
    return CallbackRunner(rec, "tp", **options)


def test_submit_returns_at_once_while_the_callback_blocks(rec: Recorder) -> None:
    runner = _runner(rec)
    entered, release = rec.gate("slow")
    began = time.monotonic()
    assert runner.submit("on_cancel", "tp", _job("slow")) is True
    assert time.monotonic() - began < 0.5
    assert entered.wait(BOUND), "the callback never started"
    assert rec.tags("on_cancel") == []
    release.set()
    wait_for(lambda: rec.tags("on_cancel") == ["slow"], BOUND, "the callback to end")
    assert runner.close(BOUND) == 0


def test_a_hung_callback_holds_one_thread_and_the_others_run(rec: Recorder) -> None:
    runner = _runner(rec, max_threads=2)
    entered, release = rec.gate("hung")
    runner.submit("on_cancel", "tp", _job("hung"))
    assert entered.wait(BOUND)
    for i in range(5):
        assert runner.submit("on_error", "tp", _job(f"e{i}"), ("timeout", "x"), None, None)
    wait_for(lambda: len(rec.tags("on_error")) == 5, BOUND, "the 5 other callbacks")
    assert runner.stats()["running"] == 1  # the hung one, still
    release.set()
    assert runner.close(BOUND) == 0
    assert rec.tags("on_cancel") == ["hung"]


def test_threads_are_bounded_and_callbacks_run_at_once_on_several(rec: Recorder) -> None:
    runner = _runner(rec, max_threads=3)
    gates = [rec.gate(f"g{i}") for i in range(5)]
    for i in range(5):
        runner.submit("on_cancel", "tp", _job(f"g{i}"))
    # three run at once (the callbacks object is called from several threads)
    for entered, _ in gates[:3]:
        assert entered.wait(BOUND)
    stats = runner.stats()
    assert (stats["threads"], stats["running"], stats["pending"]) == (3, 3, 2)
    for _, release in gates:
        release.set()
    wait_for(lambda: len(rec.tags("on_cancel")) == 5, BOUND, "every callback")
    assert len({thread for _, _, thread in rec.calls}) == 3
    assert runner.close(BOUND) == 0


def test_a_raising_callback_is_logged_and_its_thread_goes_on(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    runner = _runner(rec, max_threads=1)
    bad, leaving, good = _job("raise"), _job("exit"), _job("after")
    with caplog.at_level(logging.ERROR, logger="roger_actors.callback_runner"):
        assert runner.submit("on_error", "tp", bad, ("worker_crash", "x"), None, None)
        assert runner.submit("on_error", "tp", leaving, ("worker_crash", "x"), None, None)
        assert runner.submit("on_error", "tp", good, ("worker_crash", "x"), None, None)
        wait_for(lambda: rec.tags("on_error") == ["after"], BOUND, "the callback after them")
    raised = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(raised) == 2
    assert bad.id in raised[0].getMessage() and "on_error" in raised[0].getMessage()
    assert raised[0].exc_info is not None and "callback boom" in str(raised[0].exc_info[1])
    assert leaving.id in raised[1].getMessage()
    assert runner.stats()["threads"] == 1
    assert runner.close(BOUND) == 0


def test_a_full_queue_drops_new_callbacks_with_one_error_line_per_interval(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    runner = _runner(rec, max_threads=1, max_pending=2, log_interval=3600)
    entered, release = rec.gate("hung")
    runner.submit("on_cancel", "tp", _job("hung"))
    assert entered.wait(BOUND)
    assert runner.submit("on_error", "tp", _job("q1"), ("timeout", "x"), None, None)
    assert runner.submit("on_error", "tp", _job("q2"), ("timeout", "x"), None, None)
    first = _job("d0")
    with caplog.at_level(logging.ERROR, logger="roger_actors.callback_runner"):
        began = time.monotonic()
        assert runner.submit("on_error", "tp", first, ("timeout", "x"), None, None) is False
        for i in range(1, 50):
            assert runner.submit("on_error", "tp", _job(f"d{i}"), ("timeout", "x"), None, None) \
                is False
        assert time.monotonic() - began < 1.0, "a full queue blocked submit"
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "1 callbacks dropped" in lines[0] and first.id in lines[0]
    assert "queue is full" in lines[0] and "1 running" in lines[0]
    assert runner.stats()["dropped"] == 50
    caplog.clear()
    release.set()
    with caplog.at_level(logging.ERROR, logger="roger_actors.callback_runner"):
        assert runner.close(BOUND) == 0
    # the 49 dropped after the first line are counted at close
    assert any("49 callbacks dropped" in r.getMessage() for r in caplog.records)
    assert rec.tags("on_error") == ["q1", "q2"]


def test_drops_are_logged_again_once_the_interval_has_passed(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    runner = _runner(rec, max_threads=1, max_pending=0, log_interval=0.0)
    entered, release = rec.gate("hung")
    runner.submit("on_cancel", "tp", _job("hung"))  # max_pending 0: nothing may wait
    with caplog.at_level(logging.ERROR, logger="roger_actors.callback_runner"):
        assert entered.wait(BOUND)
        assert not runner.submit("on_cancel", "tp", _job("a"))
        assert not runner.submit("on_cancel", "tp", _job("b"))
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) == 2
    release.set()
    runner.close(BOUND)


def test_close_waits_for_queued_callbacks(rec: Recorder) -> None:
    runner = _runner(rec, max_threads=1)
    entered, release = rec.gate("first")
    runner.submit("on_cancel", "tp", _job("first"))
    for i in range(3):
        runner.submit("on_cancel", "tp", _job(f"n{i}"))
    assert entered.wait(BOUND)
    threading.Timer(0.2, release.set).start()
    assert runner.close(BOUND) == 0
    assert rec.tags("on_cancel") == ["first", "n0", "n1", "n2"]
    wait_for(lambda: runner.stats()["threads"] == 0, BOUND, "the thread to end after close")


def test_close_is_bounded_drops_the_queued_and_abandons_the_running(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    runner = _runner(rec, max_threads=1)
    entered, release = rec.gate("hung")
    runner.submit("on_cancel", "tp", _job("hung"))
    runner.submit("on_cancel", "tp", _job("never"))
    assert entered.wait(BOUND)
    with caplog.at_level(logging.ERROR, logger="roger_actors.callback_runner"):
        began = time.monotonic()
        assert runner.close(0.3) == 2
        assert time.monotonic() - began < 2.0
    [line] = [r.getMessage() for r in caplog.records if "at shutdown" in r.getMessage()]
    assert "1 callbacks never ran (on_cancel)" in line and "1 were still running" in line
    # after close: refused, logged
    with caplog.at_level(logging.ERROR, logger="roger_actors.callback_runner"):
        assert runner.submit("on_cancel", "tp", _job("late")) is False
    assert any("runner is closed" in r.getMessage() for r in caplog.records)
    release.set()
    wait_for(lambda: runner.stats()["threads"] == 0, BOUND, "the abandoned thread to end")
    assert rec.tags("on_cancel") == ["hung"]  # the queued one never ran


def test_idle_threads_end(rec: Recorder) -> None:
    runner = _runner(rec, max_threads=2, idle_seconds=0.1)
    runner.submit("on_cancel", "tp", _job("x"))
    wait_for(lambda: rec.tags("on_cancel") == ["x"], BOUND, "the callback")
    wait_for(lambda: runner.stats()["threads"] == 0, BOUND, "the idle thread to end")
    runner.submit("on_cancel", "tp", _job("y"))  # a new thread is started
    wait_for(lambda: rec.tags("on_cancel") == ["x", "y"], BOUND, "the next callback")
    assert runner.close(BOUND) == 0


def test_no_callbacks_means_nothing_runs_and_no_thread() -> None:
    runner = CallbackRunner(None, "tp")
    assert runner.submit("on_cancel", "tp", _job("x")) is True
    assert runner.stats()["threads"] == 0
    assert runner.close(0.1) == 0


def test_a_callback_name_the_object_lacks_is_logged_not_raised(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    runner = _runner(rec, max_threads=1)
    with caplog.at_level(logging.ERROR, logger="roger_actors.callback_runner"):
        assert runner.submit("no_such_callback", "tp", _job("x"))
        runner.submit("on_cancel", "tp", _job("y"))
        wait_for(lambda: rec.tags("on_cancel") == ["y"], BOUND, "the next callback")
    assert any("no_such_callback" in r.getMessage() for r in caplog.records)
    assert runner.close(BOUND) == 0


def test_bad_limits_are_refused(rec: Recorder) -> None:
    with pytest.raises(ValueError):
        CallbackRunner(rec, "tp", max_threads=0)
    with pytest.raises(ValueError):
        CallbackRunner(rec, "tp", max_pending=-1)
