"""Port of Roger's ``test/roger/worker/callbacks_test.exs``.

Roger's tests each set another callbacks module (``:callbacks`` is read at
each callback); the port's callbacks are fixed when the node starts, so one
module records every callback (:class:`tests.integration.roger.jobs.RecordingCallbacks`)
and each test reads the one it is about. Roger's ``before_run`` returns a
ref that ``after_run`` gets as state; the recording ``before_run`` returns a
fresh token and records it.

Workers are started as in ``test_worker.py``: ``roger.Worker.run``.
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger import jobs
from tests.integration.roger.conftest import Journal
from tests.integration.roger.jobs import CallbacksTest

pytestmark = pytest.mark.timeout(60)


def payload(job_class: type[roger.Job]) -> bytes:
    """Roger's ``term_to_binary(%Job{id: "asdf", module: ..., args: []})``."""
    return roger.Job.encode(roger.Job.create(job_class, [], id="asdf"))


def test_test_before_run_worker_callback(app: str, journal: Journal) -> None:
    """test/roger/worker/callbacks_test.exs: "test before-run worker callback"."""
    roger.Worker.run(app, payload=payload(CallbacksTest.TestJob))

    journal.wait("before_run", job="asdf", timeout=1.0)


def test_test_after_run_worker_callback(app: str, journal: Journal) -> None:
    """test/roger/worker/callbacks_test.exs: "test after-run worker callback"."""
    roger.Worker.run(app, payload=payload(CallbacksTest.TestJob))

    journal.wait("after_run", job="asdf", timeout=1.0)


def test_test_before_and_after_run_worker_callbacks_with_state_passing_through(
    app: str, journal: Journal
) -> None:
    """test/roger/worker/callbacks_test.exs: "test before-and-after-run worker
    callbacks with state passing through"."""
    roger.Worker.run(app, payload=payload(CallbacksTest.TestJob))

    [after] = journal.wait("after_run", job="asdf", timeout=1.0)
    [before] = journal.events("before_run", job="asdf")
    assert after["result"] is None
    assert after["state"] == before["state"]


def test_test_on_error_worker_callback(app: str, journal: Journal) -> None:
    """test/roger/worker/callbacks_test.exs: "test on_error worker callback"."""
    roger.Worker.run(app, payload=payload(CallbacksTest.ErrorJob))

    [error] = journal.wait("on_error", job="asdf", timeout=1.0)
    assert error["stacktrace_is_list"] is True
    # Roger's stacktrace starts with ErrorJob.perform/1, the innermost call;
    # Python's (traceback.extract_tb) ends with it.
    assert error["stacktrace"][-1] == [jobs.__file__, "perform"]
    assert error["kind"] == "error" and error["error_type"] == "RuntimeError"
