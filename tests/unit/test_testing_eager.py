"""``roger_actors.testing.eager``: enqueue runs the job at once, with Roger's semantics.

No node, no broker: these run in milliseconds.
"""

from __future__ import annotations

from typing import Any

import pytest

import roger_actors as roger
from roger_actors.testing import eager

ATTEMPTS: dict[str, int] = {}
LOG: list[tuple[str, Any]] = []


class Double(roger.Job):
    def perform(self, args: Any) -> Any:
        LOG.append(("perform", args))
        return args[0] * 2


class Broken(roger.Job):
    def perform(self, args: Any) -> Any:
        raise ValueError(f"broken {args[0]}")


class Flaky(roger.Job):
    """Fails its first ``args[1]`` attempts (counted per ``args[0]``)."""

    retryable = True

    def perform(self, args: Any) -> Any:
        ATTEMPTS[args[0]] = ATTEMPTS.get(args[0], 0) + 1
        if ATTEMPTS[args[0]] <= args[1]:
            raise RuntimeError(f"attempt {ATTEMPTS[args[0]]}")
        return "ok"


class Unique(roger.Job):
    """Enqueues its own duplicate while it runs when ``args[1]`` is true."""

    def queue_key(self, args: Any) -> str:
        return f"unique-{args[0]}"

    def perform(self, args: Any) -> Any:
        if args[1]:
            try:
                roger.Job.create(Unique, [args[0], False]).enqueue("p")
            except roger.DuplicateJobError:
                LOG.append(("duplicate refused", args[0]))
                return "refused"
        return "ran"


class Serial(roger.Job):
    """Holds ``account-<args[0]>``; the first one enqueues a second one while it runs."""

    def execution_key(self, args: Any) -> str:
        return f"account-{args[0]}"

    def perform(self, args: Any) -> Any:
        LOG.append(("start", args[1]))
        if args[1] == "first":
            roger.Job.create(Serial, [args[0], "second"]).enqueue("p")
            LOG.append(("enqueued second", args[1]))
        LOG.append(("end", args[1]))


class Parent(roger.Job):
    def perform(self, args: Any) -> Any:
        roger.Job.create(Broken, ["child"]).enqueue("p")
        LOG.append(("parent after enqueue", None))
        return "parent done"


class Recorder(roger.WorkerCallback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def before_run(self, partition_id: str, job: roger.Job) -> Any:
        self.calls.append(("before_run", job.id, job.retry_count))
        return "state"

    def after_run(self, partition_id: str, job: roger.Job, result: Any, state: Any) -> None:
        assert state == "state"
        self.calls.append(("after_run", job.id, job.retry_count))

    def on_error(self, partition_id: str, job: roger.Job, error: Any, stacktrace: Any,
                 state: Any) -> None:
        assert error[0] == "error" and isinstance(error[1], Exception) and stacktrace
        self.calls.append(("on_error", job.id, job.retry_count))

    def on_buried(self, partition_id: str, job: roger.Job, error: Any, stacktrace: Any,
                  state: Any) -> None:
        self.calls.append(("on_buried", job.id, job.retry_count))

    def on_cancel(self, partition_id: str, job: roger.Job) -> None:
        self.calls.append(("on_cancel", job.id, job.retry_count))


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ATTEMPTS.clear()
    LOG.clear()


def test_an_enqueued_job_runs_at_once_with_its_callbacks_and_its_result_is_recorded() -> None:
    callbacks = Recorder()
    with eager(callbacks) as run:
        job = roger.Job.create(Double, [21])
        job.enqueue("myapp")
        assert LOG == [("perform", [21])]
    [outcome] = run.outcomes
    assert (outcome.outcome, outcome.result, outcome.partition_id, outcome.queue) == (
        "done", 42, "myapp", "default")
    assert callbacks.calls == [("before_run", job.id, 0), ("after_run", job.id, 0)]
    assert outcome.job.queued_at > 0 and outcome.job.started_at >= outcome.job.queued_at


def test_the_job_runs_as_a_worker_decodes_it_and_a_queue_override_is_kept() -> None:
    with eager() as run:
        roger.Job.create(Double, (4,)).enqueue("myapp", queue="fast")
    [outcome] = run.outcomes
    assert outcome.job.args == [4] and outcome.queue == "fast"


def test_args_that_do_not_encode_are_refused_as_by_a_real_enqueue() -> None:
    with eager() as run, pytest.raises(roger.InvalidJobError):
        roger.Job.create(Double, [object()]).enqueue("myapp")
    assert run.outcomes == []


def test_a_failed_job_that_is_not_retryable_raises_its_error_at_the_enqueue_after_on_error(
) -> None:
    callbacks = Recorder()
    with eager(callbacks) as run:
        job = roger.Job.create(Broken, ["x"])
        with pytest.raises(ValueError, match="broken x"):
            job.enqueue("myapp")
    assert [o.outcome for o in run.outcomes] == ["error"]
    assert isinstance(run.errors[0].error, ValueError)
    assert callbacks.calls == [("before_run", job.id, 0), ("on_error", job.id, 0)]


def test_with_raise_errors_false_failures_are_recorded_and_not_raised() -> None:
    with eager(raise_errors=False) as run:
        roger.Job.create(Broken, ["quiet"]).enqueue("myapp")
    assert [str(o.error) for o in run.errors] == ["broken quiet"]


def test_a_retryable_job_is_retried_at_once_at_each_level_then_buried() -> None:
    callbacks = Recorder()
    with eager(callbacks, retry_levels=[1, 5]) as run:
        job = roger.Job.create(Flaky, ["always", 99])
        with pytest.raises(RuntimeError, match="attempt 3"):
            job.enqueue("myapp")
    assert [(o.outcome, o.job.retry_count) for o in run.outcomes_of(job)] == [
        ("retry", 0), ("retry", 1), ("buried", 2)]
    assert [c[0] for c in callbacks.calls] == [
        "before_run", "on_error", "before_run", "on_error", "before_run", "on_buried"]


def test_a_retryable_job_that_succeeds_on_a_retry_is_done_and_nothing_is_raised() -> None:
    with eager(retry_levels=[1, 1, 1]) as run:
        job = roger.Job.create(Flaky, ["twice", 2])
        job.enqueue("myapp")
    assert [o.outcome for o in run.outcomes_of(job)] == ["retry", "retry", "done"]
    assert run.errors == []


def test_a_queue_key_is_held_while_its_job_runs_and_free_after() -> None:
    with eager() as run:
        first = roger.Job.create(Unique, [7, True])
        first.enqueue("p")
        assert LOG == [("duplicate refused", 7)]
        assert run.outcomes_of(first)[0].result == "refused"
        roger.Job.create(Unique, [7, False]).enqueue("p")  # the key is free again
    assert [o.result for o in run.outcomes] == ["refused", "ran"]


def test_a_job_whose_execution_key_is_held_waits_until_the_holder_ends() -> None:
    with eager() as run:
        roger.Job.create(Serial, [1, "first"]).enqueue("p")
    assert LOG == [
        ("start", "first"), ("enqueued second", "first"), ("end", "first"),
        ("start", "second"), ("end", "second"),
    ]
    assert [o.outcome for o in run.outcomes] == ["done", "done"]


def test_a_nested_jobs_error_is_raised_by_the_outermost_enqueue_not_into_its_parent() -> None:
    with eager() as run:
        with pytest.raises(ValueError, match="broken child"):
            roger.Job.create(Parent, []).enqueue("p")
    assert ("parent after enqueue", None) in LOG
    assert sorted(o.outcome for o in run.outcomes) == ["done", "error"]


def test_a_cancelled_job_is_dropped_with_on_cancel_when_it_would_run() -> None:
    callbacks = Recorder()
    with eager(callbacks) as run:
        job = roger.Job.create(Double, [1])
        run.cancel(job.id)
        job.enqueue("p")
    assert LOG == []
    assert [o.outcome for o in run.outcomes] == ["cancelled"]
    assert callbacks.calls == [("on_cancel", job.id, 0)]


def test_the_previous_enqueue_hook_is_back_after_the_block_even_when_it_raises() -> None:
    from roger_actors import job as job_module

    before = job_module._enqueue_hook
    with pytest.raises(KeyError), eager() as run:
        assert job_module._enqueue_hook == run.enqueue
        raise KeyError("boom")
    assert job_module._enqueue_hook is before


def test_a_second_eager_block_at_the_same_time_is_refused() -> None:
    with eager(), pytest.raises(RuntimeError, match="already active"), eager():
        pass


def test_callbacks_may_be_given_as_a_class_or_module_name_and_bad_arguments_are_named() -> None:
    with eager(Recorder) as run:
        assert isinstance(run.callbacks, Recorder)
    with eager(f"{__name__}:Recorder") as run:
        assert isinstance(run.callbacks, Recorder)
    with pytest.raises(TypeError, match="callbacks"), eager(42):  # type: ignore[arg-type]
        pass
    with pytest.raises(ValueError, match="retry_levels"), eager(retry_levels=[0]):
        pass
    with pytest.raises(TypeError, match="raise_errors"), eager(raise_errors=1):  # type: ignore[arg-type]
        pass


def test_enqueue_many_runs_each_job_at_once_in_the_order_given() -> None:
    with eager() as run:
        jobs = [roger.Job.create(Double, [n]) for n in (1, 2, 3)]
        assert roger.Job.enqueue_many(jobs, "myapp") == []
    assert [o.result for o in run.outcomes] == [2, 4, 6]


def test_enqueue_many_stops_at_a_failed_job_and_says_what_ran() -> None:
    with eager() as run:
        first, broken, last = (
            roger.Job.create(Double, [1]),
            roger.Job.create(Broken, ["y"]),
            roger.Job.create(Double, [3]),
        )
        with pytest.raises(roger.EnqueueError) as raised:
            roger.Job.enqueue_many([first, broken, last], "myapp")
    error = raised.value
    assert error.confirmed == [first]
    assert [job for job, _ in error.failed] == [broken, last]
    assert isinstance(error.__cause__, ValueError)
    assert [o.result for o in run.outcomes if o.outcome == "done"] == [2]
