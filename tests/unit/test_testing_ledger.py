"""The testing kit's ledger and queue names, without a node."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest

import roger_actors as roger
from roger_actors.testing import (
    LEDGER_ENV,
    JobError,
    Ledger,
    RecordingCallbacks,
    RemoteTraceback,
    partition_queue_names,
)


class Plain(roger.Job):
    def perform(self, args: Any) -> None:
        pass


class Retried(roger.Job):
    retryable = True

    def perform(self, args: Any) -> None:
        pass


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("no")


def failure(exc: BaseException) -> tuple[tuple[str, BaseException], Any]:
    try:
        raise exc
    except BaseException as raised:
        return ("error", raised), traceback.extract_tb(raised.__traceback__)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    made = Ledger.create(tmp_path / "ledger")
    assert (tmp_path / "ledger").stat().st_mode & 0o777 == 0o700
    return made


def test_recording_callbacks_write_outcomes_that_say_whether_the_job_runs_again(
    ledger: Ledger
) -> None:
    callbacks = RecordingCallbacks()
    plain, retried = roger.Job.create(Plain, []), roger.Job.create(Retried, [])
    ledger.record("enqueued", plain, "p", "default")
    ledger.record("enqueued", retried, "p", "default")
    error, stack = failure(ValueError("bad"))
    callbacks.on_error("p", retried, error, stack, None)
    assert ledger.pending("p", "default") == [plain.id, retried.id]
    callbacks.after_run("p", plain, None, None)
    assert ledger.pending("p", "default") == [retried.id]
    assert ledger.take_failure("p") is None  # a retried attempt is not an error
    callbacks.on_buried("p", retried, error, stack, None)
    assert ledger.pending("p", "default") == []
    assert [r.event for r in ledger.records()] == [
        "enqueued", "enqueued", "retry", "done", "buried"]


def test_a_failure_is_taken_once_and_raised_as_the_jobs_exception_with_its_traceback(
    ledger: Ledger
) -> None:
    job = roger.Job.create(Plain, [])
    error, stack = failure(ValueError("bad value"))
    RecordingCallbacks().on_error("p", job, error, stack, None)
    record = ledger.take_failure("p")
    assert record is not None and ledger.take_failure("p") is None
    assert ledger.take_failure("other") is None
    raised = record.exception_to_raise()
    assert isinstance(raised, ValueError) and str(raised) == "bad value"
    assert isinstance(raised.__cause__, RemoteTraceback)
    assert "in failure" in str(raised.__cause__)
    assert any(job.id in note for note in raised.__notes__)


def test_an_exception_that_does_not_pickle_comes_back_as_a_job_error_with_its_text(
    ledger: Ledger
) -> None:
    job = roger.Job.create(Plain, [])
    error, stack = failure(Unpicklable("strange"))
    RecordingCallbacks().on_error("p", job, error, stack, None)
    RecordingCallbacks().on_error("p", job, ("timeout", "ran out"), None, None)
    first, second = (r.exception_to_raise() for r in ledger.failures("p"))
    assert isinstance(first, JobError) and first.kind == "error" and "strange" in str(first)
    assert isinstance(second, JobError) and second.kind == "timeout" and second.job_id == job.id


def test_without_the_environment_variable_the_callbacks_record_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    callbacks = RecordingCallbacks()
    assert callbacks.ledger is None
    callbacks.after_run("p", roger.Job.create(Plain, []), None, None)  # no error, no file


def test_partition_queue_names_lists_every_durable_queue_of_a_partition() -> None:
    names = partition_queue_names("shop", ["default", "mail"], [1, 3], ["order-1"])
    assert names == [
        "shop-default", "shop-default.retry.1", "shop-default.retry.3",
        "shop-default.buried", "shop-default.invalid",
        "shop-mail", "shop-mail.retry.1", "shop-mail.retry.3",
        "shop-mail.buried", "shop-mail.invalid",
        "shop-execution-waiting-order-1",
        "roger-global.shop", "roger-replica.shop", "roger-state.shop",
    ]
    with pytest.raises(ValueError, match="retry_levels"):
        partition_queue_names("shop", ["default"], [0])
    with pytest.raises(ValueError):
        partition_queue_names("shop", ["a-b"], [1])
