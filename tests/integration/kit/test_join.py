"""``roger_actors.testing.join`` and the pytest fixtures, on a node on RabbitMQ."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import roger_actors as roger
from roger_actors.testing import JobError, JoinTimeout, Ledger, RemoteTraceback, join
from tests.integration.kit.kit_jobs import (
    AlwaysFails,
    Explode,
    FailOnce,
    RaisesUnpicklable,
    Serial,
    Spawner,
    TooSlow,
    Touch,
)

Join = Callable[..., None]
StartPartition = Callable[..., str]


def test_join_returns_once_every_job_of_the_queue_has_run(
    roger_partition: StartPartition, roger_join: Join, tmp_path: Path
) -> None:
    pid = roger_partition({"default": 2})
    files = [tmp_path / f"job{n}" for n in range(6)]
    for path in files:
        roger.Job.create(Touch, [str(path), 0.3]).enqueue(pid)
    roger_join(pid, "default", timeout=20)
    assert all(path.exists() for path in files)


def test_join_waits_for_a_job_in_a_retry_queue(
    roger_partition: StartPartition, roger_join: Join, roger_ledger: Ledger, tmp_path: Path
) -> None:
    pid = roger_partition()
    marker = tmp_path / "attempted"
    job = roger.Job.create(FailOnce, [str(marker)])
    job.enqueue(pid)
    roger_join(pid, timeout=20)  # a retried attempt is not an error
    assert Path(str(marker) + ".done").exists()
    events = [r.event for r in roger_ledger.records() if r.job_id == job.id]
    assert events == ["enqueued", "retry", "done"]


def test_join_waits_for_jobs_that_jobs_enqueue(
    roger_partition: StartPartition, roger_join: Join, roger_ledger: Ledger, tmp_path: Path
) -> None:
    pid = roger_partition()
    child_file = tmp_path / "child"
    parent = roger.Job.create(Spawner, [pid, str(child_file), 1.0])
    parent.enqueue(pid)
    roger_join(pid, timeout=20)
    assert child_file.exists()
    [child] = [r for r in roger_ledger.records()
               if r.event == "enqueued" and r.partition_id == pid and r.job_id != parent.id]
    assert child.module.endswith("Touch") and child.pid != os.getpid()  # a worker wrote it


def test_join_waits_for_a_job_parked_behind_an_execution_key(
    roger_partition: StartPartition, roger_join: Join, roger_ledger: Ledger, tmp_path: Path
) -> None:
    pid = roger_partition({"default": 3})
    prefix = str(tmp_path / "span-")
    jobs = [roger.Job.create(Serial, [1, prefix, 0.5]) for _ in range(3)]
    for job in jobs:
        job.enqueue(pid)
    roger_join(pid, timeout=20)
    spans = sorted(
        tuple(map(float, Path(prefix + job.id).read_text().split())) for job in jobs
    )
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
    assert roger_ledger.execution_keys(pid) == ["account-1"]


def test_join_reraises_a_jobs_exception_with_its_type_and_the_workers_traceback(
    roger_partition: StartPartition, roger_join: Join
) -> None:
    pid = roger_partition()
    job = roger.Job.create(Explode, ["tuesday"])
    job.enqueue(pid)
    with pytest.raises(ValueError, match="exploded on tuesday") as raised:
        roger_join(pid, timeout=20)
    cause = raised.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in perform" in str(cause) and "kit_jobs.py" in str(cause)
    assert any(job.id in note for note in raised.value.__notes__)
    roger_join(pid, timeout=20)  # each error is raised once


def test_join_raises_the_error_of_a_buried_job_after_its_retries(
    roger_partition: StartPartition, roger_join: Join, roger_ledger: Ledger
) -> None:
    pid = roger_partition()
    job = roger.Job.create(AlwaysFails, ["gone"])
    job.enqueue(pid)
    with pytest.raises(KeyError, match="gone"):
        roger_join(pid, timeout=20)
    events = [r.event for r in roger_ledger.records() if r.job_id == job.id]
    assert events == ["enqueued", "retry", "retry", "buried"]


def test_a_timeout_is_raised_as_a_job_error_of_kind_timeout(
    roger_partition: StartPartition, roger_join: Join
) -> None:
    pid = roger_partition()
    roger.Job.create(TooSlow, []).enqueue(pid)
    with pytest.raises(JobError) as raised:
        roger_join(pid, timeout=20)
    assert raised.value.kind == "timeout"


def test_an_exception_that_does_not_pickle_is_raised_as_a_job_error_with_its_text(
    roger_partition: StartPartition, roger_join: Join
) -> None:
    pid = roger_partition()
    roger.Job.create(RaisesUnpicklable, []).enqueue(pid)
    with pytest.raises(JobError, match="cannot travel") as raised:
        roger_join(pid, timeout=20)
    assert raised.value.kind == "error"


def test_join_times_out_on_a_paused_queue_and_says_what_is_left(
    roger_partition: StartPartition, roger_join: Join, tmp_path: Path
) -> None:
    pid = roger_partition()
    roger.Consumer.pause(pid, "default")
    job = roger.Job.create(Touch, [str(tmp_path / "never"), 0])
    job.enqueue(pid)
    began = time.monotonic()
    with pytest.raises(JoinTimeout, match=job.id):
        roger_join(pid, timeout=1.5)
    assert 1.5 <= time.monotonic() - began < 10  # the timeout, plus one look at the cluster
    roger.Consumer.resume(pid, "default")
    roger_join(pid, timeout=20)
    assert (tmp_path / "never").exists()


def test_join_of_one_queue_does_not_wait_for_another(
    roger_partition: StartPartition, roger_join: Join, tmp_path: Path
) -> None:
    pid = roger_partition({"default": 1, "slow": 1})
    roger.Job.create(Touch, [str(tmp_path / "slow"), 3]).enqueue(pid, queue="slow")
    roger.Job.create(Touch, [str(tmp_path / "quick"), 0]).enqueue(pid)
    roger_join(pid, "default", timeout=20)
    assert (tmp_path / "quick").exists() and not (tmp_path / "slow").exists()
    roger_join(pid, "slow", timeout=20)
    assert (tmp_path / "slow").exists()


def test_join_without_a_ledger_needs_fail_fast_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROGER_TESTING_LEDGER", raising=False)
    with pytest.raises(RuntimeError, match="fail_fast=False"):
        join("myapp", "default")


def test_join_names_its_bad_arguments(roger_ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="timeout"):
        join("myapp", "default", timeout=0, ledger=roger_ledger)
    with pytest.raises(ValueError, match="queue"):
        join("myapp", "no-dashes", ledger=roger_ledger)
