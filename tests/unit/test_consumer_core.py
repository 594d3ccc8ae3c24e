"""The Consumer's decisions without I/O (roger_actors.partition.consumer_core):
what happens to a delivery, to a job's outcome and to a cancel, and how jobs
are batched."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from roger_actors.errors import InvalidJobError
from roger_actors.job import Job
from roger_actors.partition import consumer_core as core
from roger_actors.partition import retry
from roger_actors.queue import Queue

PID = "p1"
LEVELS = (1, 5)


class PlainJob(Job):
    def perform(self, args: Any) -> Any:
        return None


class RetryableJob(Job):
    retryable = True

    def perform(self, args: Any) -> Any:
        return None


class QueueKeyedJob(Job):
    retryable = True

    def perform(self, args: Any) -> Any:
        return None

    def queue_key(self, args: Any) -> str | None:
        return f"q-{args[0]}"


class ExecKeyedJob(Job):
    def perform(self, args: Any) -> Any:
        return None

    def execution_key(self, args: Any) -> str | None:
        return f"e-{args[0]}"


class TimedJob(Job):
    max_execution_time = 3

    def perform(self, args: Any) -> Any:
        return None


def _triage(body: bytes = b"payload", **overrides: Any) -> core.Triage:
    job = Job.create(PlainJob, [1], id="j1")
    kwargs: dict[str, Any] = {
        "failed_deliveries": 0,
        "delivery_limit": 20,
        "runnable": True,
        "max_payload_bytes": 1024,
        "cancelled": set(),
        "decode": lambda data: job,
    }
    kwargs.update(overrides)
    return core.triage(body, **kwargs)


def _settle(job: Job, outcome: str, **overrides: Any) -> tuple[core.Settlement, ...]:
    kwargs: dict[str, Any] = {
        "partition_id": PID,
        "queue": "default",
        "exec_token": "inc.1",
        "cancelling": False,
        "retry_levels": LEVELS,
        "max_buried_queue_size": 100,
    }
    kwargs.update(overrides)
    return core.settle(job, outcome, **kwargs)


# ---------------------------------------------------------------- triage


def test_a_decodable_job_of_a_runnable_queue_is_admitted() -> None:
    decision = _triage()
    assert isinstance(decision, core.Admit) and decision.job.id == "j1"


def test_a_delivery_at_the_delivery_limit_is_set_aside_before_anything_else() -> None:
    decision = _triage(failed_deliveries=20, runnable=False, body=b"x" * 5000)
    assert decision == core.SetAside(
        "Delivered 20 times without an outcome (delivery_limit 20); not run again"
    )
    assert decision.free_queue_key


def test_a_delivery_under_the_delivery_limit_is_not_set_aside_for_it() -> None:
    assert isinstance(_triage(failed_deliveries=19), core.Admit)


def test_a_delivery_of_a_queue_not_runnable_is_given_back_undecoded() -> None:
    def refuse(data: bytes) -> Job:
        raise AssertionError("decoded")

    assert _triage(runnable=False, decode=refuse) == core.GiveBack()


def test_an_oversized_payload_is_set_aside_undecoded_and_frees_no_queue_key() -> None:
    def refuse(data: bytes) -> Job:
        raise AssertionError("decoded")

    decision = _triage(body=b"x" * 1025, decode=refuse)
    assert decision == core.SetAside(
        "Job payload is 1025 bytes, larger than max_payload_bytes (1024 bytes); not decoded",
        free_queue_key=False,
    )


def test_a_payload_of_exactly_max_payload_bytes_is_decoded() -> None:
    assert isinstance(_triage(body=b"x" * 1024), core.Admit)


def test_an_invalid_payload_is_set_aside_with_the_decoders_reason_and_frees_its_key() -> None:
    def invalid(data: bytes) -> Job:
        raise InvalidJobError("no such module")

    assert _triage(decode=invalid) == core.SetAside("no such module", free_queue_key=True)


def test_a_decoder_bug_is_set_aside_naming_the_exception_type_only() -> None:
    def buggy(data: bytes) -> Job:
        raise KeyError("secret detail")

    assert _triage(decode=buggy) == core.SetAside("Job decoding failed: KeyError")


def test_garbage_bytes_are_set_aside_by_the_real_decoder() -> None:
    decision = core.triage(
        b"\xff\x00 not cbor",
        failed_deliveries=0,
        delivery_limit=20,
        runnable=True,
        max_payload_bytes=1024,
        cancelled=(),
    )
    assert isinstance(decision, core.SetAside) and decision.free_queue_key
    assert decision.reason


def test_a_job_marked_cancelled_is_never_admitted_but_cleared_with_global() -> None:
    decision = _triage(cancelled={"j1"})
    assert isinstance(decision, core.ClearCancel) and decision.job.id == "j1"


# ---------------------------------------------------------------- settle


def test_a_returned_job_is_given_back_keeping_its_keys() -> None:
    job = Job.create(QueueKeyedJob, [1], id="j1")
    assert _settle(job, "returned") == (core.GiveBack(),)


def test_a_returned_job_with_an_execution_key_does_not_release_it() -> None:
    job = Job.create(ExecKeyedJob, [1], id="j1")
    assert _settle(job, "returned") == (core.GiveBack(),)


def test_a_cancelled_outcome_not_yet_cleared_asks_global_first() -> None:
    job = Job.create(PlainJob, [1], id="j1")
    assert _settle(job, "cancelled") == (core.ClearCancel(job),)


def test_a_cleared_cancel_is_acked_and_frees_no_queue_key_again() -> None:
    job = Job.create(QueueKeyedJob, [1], id="j1")
    assert _settle(job, "cancelled", cancelling=True) == (core.AckLater(),)


@pytest.mark.parametrize("outcome", ["done", "error"])
def test_a_finished_job_without_a_queue_key_is_acked_with_the_others(outcome: str) -> None:
    job = Job.create(PlainJob, [1], id="j1")
    assert _settle(job, outcome) == (core.AckLater(),)


@pytest.mark.parametrize("outcome", ["done", "error"])
def test_a_finished_job_with_a_queue_key_frees_it_before_the_ack(outcome: str) -> None:
    job = Job.create(QueueKeyedJob, [7], id="j1")
    assert _settle(job, outcome) == (core.RecordThenAck(None, "q-7"),)


def test_any_outcome_but_returned_releases_the_execution_key_first() -> None:
    job = Job.create(ExecKeyedJob, [3], id="j1")
    effects = _settle(job, "done", exec_token="inc.9")
    assert effects == (core.ReleaseExecution("e-3", "j1", "inc.9"), core.AckLater())


def test_a_retry_copies_the_job_to_its_next_levels_queue_with_one_more_retry() -> None:
    job = Job.create(RetryableJob, [1], id="j1")
    (effect,) = _settle(job, "retry", queue="fast")
    assert isinstance(effect, core.RecordThenAck) and effect.free_queue_key is None
    copy = effect.copy
    assert copy is not None
    name, arguments = retry.retry_queue(PID, "fast", LEVELS[0])
    assert copy.queue == name == Queue.retry_name(PID, "fast", 1)
    assert copy.arguments == arguments
    assert Job.decode(copy.body).retry_count == 1


def test_the_second_retry_goes_to_the_second_level() -> None:
    job = Job.create(RetryableJob, [1], id="j1").copy_with(retry_count=1)
    (effect,) = _settle(job, "retry")
    assert isinstance(effect, core.RecordThenAck) and effect.copy is not None
    assert effect.copy.queue == Queue.retry_name(PID, "default", LEVELS[1])
    assert Job.decode(effect.copy.body).retry_count == 2


def test_a_retry_with_no_level_left_is_refused() -> None:
    job = Job.create(RetryableJob, [1], id="j1").copy_with(retry_count=len(LEVELS))
    with pytest.raises(ValueError, match="no retry level left"):
        _settle(job, "retry")


def test_a_buried_job_is_copied_unchanged_to_the_bounded_buried_queue() -> None:
    job = Job.create(QueueKeyedJob, [2], id="j1").copy_with(retry_count=2)
    (effect,) = _settle(job, "buried", max_buried_queue_size=7)
    assert isinstance(effect, core.RecordThenAck)
    assert effect.copy == core.CopyTo(
        Queue.buried_name(PID, "default"), {"x-max-length": 7}, job.encode()
    )
    assert effect.free_queue_key == "q-2"


# ---------------------------------------------------------------- acks


@dataclass(frozen=True)
class _Delivery:
    key: str
    generation: int
    tag: int


def test_acks_are_grouped_per_channel_generation_in_order() -> None:
    deliveries = [
        _Delivery("a", 1, 5),
        _Delivery("b", 1, 2),
        _Delivery("a", 1, 3),
        _Delivery("a", 2, 1),
    ]
    assert core.acks_by_channel(deliveries) == {("a", 1): [5, 3], ("b", 1): [2], ("a", 2): [1]}


def test_no_deliveries_make_no_acks() -> None:
    assert core.acks_by_channel([]) == {}


# ---------------------------------------------------------------- batches


def test_a_queue_with_no_duration_known_hands_one_job_at_a_time() -> None:
    assert core.QueueState("q", 4).batch_limit == 1


def test_the_batch_holds_about_the_target_seconds_of_work() -> None:
    state = core.QueueState("q", 4, avg_seconds=core.BATCH_TARGET_SECONDS / 5)
    assert state.batch_limit == 5


def test_the_batch_is_between_one_and_max_batch() -> None:
    assert core.QueueState("q", 4, avg_seconds=10.0).batch_limit == 1
    assert core.QueueState("q", 4, avg_seconds=0.0).batch_limit == core.MAX_BATCH


def test_the_first_duration_sets_the_average_and_later_ones_move_it_by_the_weight() -> None:
    state = core.QueueState("q", 1)
    state.record_duration(1.0)
    assert state.avg_seconds == 1.0
    state.record_duration(2.0)
    assert state.avg_seconds == pytest.approx(1.0 + core.DURATION_WEIGHT)


def test_an_adaptive_prefetch_has_room_for_every_workers_batch_and_one_more() -> None:
    state = core.QueueState("q", 3, avg_seconds=core.BATCH_TARGET_SECONDS / 4)
    assert state.wanted_prefetch == 3 * (1 + 4)


def test_a_roger_prefetch_is_max_workers() -> None:
    state = core.QueueState("q", 3, avg_seconds=0.0, adaptive=False)
    assert state.wanted_prefetch == 3


def test_the_prefetch_never_exceeds_amqps_16_bits() -> None:
    assert core.QueueState("q", 10**6, avg_seconds=0.0).wanted_prefetch == core.MAX_PREFETCH
    assert core.QueueState("q", 10**6, adaptive=False).wanted_prefetch == core.MAX_PREFETCH


def test_the_prefetch_changes_only_by_a_factor_of_two_or_more() -> None:
    state = core.QueueState("q", 2)
    assert state.prefetch_change() == 4  # none asked yet: 2 * (1 + 1)
    state.avg_seconds = core.BATCH_TARGET_SECONDS / 2  # wants 2 * 3 = 6 < 8
    assert state.prefetch_change() is None and state.prefetch == 4
    state.avg_seconds = core.BATCH_TARGET_SECONDS / 3  # wants 2 * 4 = 8
    assert state.prefetch_change() == 8 and state.prefetch == 8
    state.avg_seconds = 1.0  # wants 4, not above 8 // 2
    assert state.prefetch_change() == 4


def test_a_fixed_prefetch_or_an_unconsumed_queue_never_changes_prefetch() -> None:
    assert core.QueueState("q", 2, adaptive=False).prefetch_change() is None
    assert core.QueueState("q", 0).prefetch_change() is None


def _jobs(n: int, cls: type[Job] = PlainJob) -> dict[int, Job]:
    return {token: Job.create(cls, [token], id=f"j{token}") for token in range(1, n + 1)}


def _lookup(jobs: dict[int, Job]) -> Callable[[int], Job | None]:
    return jobs.get


def test_a_batch_is_the_workers_fair_share_of_the_backlog() -> None:
    jobs = _jobs(10)
    state = core.QueueState("q", 4, avg_seconds=core.UNSPLIT_SECONDS, backlog=deque(jobs))
    items, timed = state.take_batch(_lookup(jobs))
    assert [token for token, _ in items] == [1, 2, 3]  # ceil(10 / 4)
    assert not timed and list(state.backlog) == list(range(4, 11))


def test_jobs_that_take_less_than_the_unsplit_time_together_go_to_one_worker() -> None:
    jobs = _jobs(30)
    state = core.QueueState("q", 10, avg_seconds=core.UNSPLIT_SECONDS / 20, backlog=deque(jobs))
    items, _ = state.take_batch(_lookup(jobs))
    assert [token for token, _ in items] == list(range(1, 21))  # 20 of them take UNSPLIT_SECONDS
    items, _ = state.take_batch(_lookup(jobs))
    assert [token for token, _ in items] == list(range(21, 31))


def test_a_batch_is_at_most_the_batch_limit() -> None:
    jobs = _jobs(10)
    state = core.QueueState("q", 1, avg_seconds=core.BATCH_TARGET_SECONDS / 2)
    state.backlog.extend(jobs)
    items, _ = state.take_batch(_lookup(jobs))
    assert [token for token, _ in items] == [1, 2]


def test_a_timed_job_ends_the_batch_begun_before_it() -> None:
    jobs = _jobs(2)
    jobs[3] = Job.create(TimedJob, [3], id="j3")
    state = core.QueueState("q", 1, avg_seconds=0.0)
    state.backlog.extend([1, 2, 3])
    items, timed = state.take_batch(_lookup(jobs))
    assert [token for token, _ in items] == [1, 2] and not timed
    assert list(state.backlog) == [3]
    items, timed = state.take_batch(_lookup(jobs))
    assert [token for token, _ in items] == [3] and timed
    assert not state.backlog


def test_a_timed_job_travels_alone() -> None:
    jobs = {1: Job.create(TimedJob, [1], id="j1"), **{t: j for t, j in _jobs(3).items() if t > 1}}
    state = core.QueueState("q", 1, avg_seconds=0.0)
    state.backlog.extend([1, 2, 3])
    items, timed = state.take_batch(_lookup(jobs))
    assert [token for token, _ in items] == [1] and timed
    assert list(state.backlog) == [2, 3]


def test_forgotten_deliveries_are_dropped_from_the_backlog() -> None:
    jobs = _jobs(4)
    del jobs[1], jobs[3]
    state = core.QueueState("q", 1, avg_seconds=0.0)
    state.backlog.extend([1, 2, 3, 4])
    items, _ = state.take_batch(_lookup(jobs))
    assert [token for token, _ in items] == [2, 4] and not state.backlog


def test_workers_are_started_for_the_backlog_within_max_workers() -> None:
    state = core.QueueState("q", 3)
    state.backlog.extend(range(5))
    assert state.workers_to_start() == 3
    state.starting = 2
    assert state.workers_to_start() == 1
    state.workers = [object()]
    assert state.workers_to_start() == 0


def test_no_worker_is_started_for_jobs_a_starting_worker_will_take() -> None:
    state = core.QueueState("q", 5, starting=2)
    state.backlog.extend(range(2))
    assert state.workers_to_start() == 0


# ---------------------------------------------------------------- cancellation


def _flight(worker: object = None, **flags: Any) -> core.Flight[str, object]:
    flight: core.Flight[str, object] = core.Flight("delivery", Job.create(PlainJob, [1], id="j1"))
    flight.worker = worker
    for name, value in flags.items():
        setattr(flight, name, value)
    return flight


def test_a_cancel_mark_noted_again_is_renewed_and_moves_to_the_end() -> None:
    marks = core.CancelMarks()
    marks.note("a", 1.0)
    marks.note("b", 2.0)
    marks.note("a", 3.0)
    marks.expire(now=12.0, ttl=10.0)  # drops what was learned at 2.0 or before
    assert "a" in marks and "b" not in marks and len(marks) == 1


def test_cancel_marks_expire_ttl_seconds_after_they_were_learned() -> None:
    marks = core.CancelMarks()
    marks.note("a", 1.0)
    marks.note("b", 5.0)
    marks.expire(now=10.0, ttl=10.0)
    assert marks.ids() == {"a", "b"}
    marks.expire(now=11.0, ttl=10.0)
    assert marks.ids() == {"b"}


def test_a_forgotten_mark_is_gone_and_forgetting_an_unknown_one_is_harmless() -> None:
    marks = core.CancelMarks()
    marks.note("a", 1.0)
    marks.forget("a")
    marks.forget("never")
    assert "a" not in marks and len(marks) == 0


def test_a_cancel_hint_for_a_job_not_handed_out_clears_the_mark_with_global() -> None:
    flight = _flight()
    assert core.cancel_hint(flight) == core.ClearCancel(flight.job)


def test_a_cancel_hint_for_a_gating_job_is_remembered_for_when_its_gate_answers() -> None:
    flight = _flight(gating=True)
    assert core.cancel_hint(flight) is None and flight.cancel_requested


def test_a_cancel_hint_for_a_job_in_a_worker_is_confirmed_with_global_first() -> None:
    flight = _flight(worker="w")
    assert core.cancel_hint(flight) == core.ConfirmCancel("j1")
    assert not flight.cancel_requested  # nothing told to the worker yet


def test_a_cancel_hint_changes_nothing_for_a_job_being_cancelled_or_asked_to() -> None:
    assert core.cancel_hint(_flight(cancelling=True)) is None
    assert core.cancel_hint(_flight(worker="w", cancel_requested=True)) is None


def test_a_confirmed_cancel_tells_the_worker() -> None:
    marks = core.CancelMarks()
    flight = _flight(worker="w")
    effects = core.cancel_confirmed(flight, True, failed=False, marks=marks)
    assert effects == (core.TellWorkerCancel(),) and flight.cancel_requested


def test_a_cancel_global_does_not_confirm_forgets_the_mark_and_the_job_runs_on() -> None:
    marks = core.CancelMarks()
    marks.note("j1", 0.0)
    flight = _flight(worker="w")
    assert core.cancel_confirmed(flight, "yes", failed=False, marks=marks) == ()
    assert "j1" not in marks and not flight.cancel_requested


def test_a_confirmation_global_did_not_answer_is_asked_again_later() -> None:
    marks = core.CancelMarks()
    marks.note("j1", 0.0)
    effects = core.cancel_confirmed(_flight(worker="w"), None, failed=True, marks=marks)
    assert effects == (core.ConfirmLater(),) and "j1" in marks


def test_a_confirmation_for_a_job_no_longer_in_a_worker_or_being_cancelled_does_nothing() -> None:
    marks = core.CancelMarks()
    assert core.cancel_confirmed(_flight(), True, failed=False, marks=marks) == ()
    flight = _flight(worker="w", cancelling=True)
    assert core.cancel_confirmed(flight, True, failed=False, marks=marks) == ()
    assert not flight.cancel_requested


def test_a_cleared_cancel_runs_on_cancel_then_settles_cancelled() -> None:
    marks = core.CancelMarks()
    marks.note("j1", 0.0)
    effects = core.cancel_cleared(
        _flight(), True, failed=False, connected=True, marks=marks, at=1.0
    )
    assert effects == (core.RunCallback("on_cancel"), core.SettleAs("cancelled"))
    assert marks.cleared_here("j1")


def test_a_copy_of_a_job_cancelled_here_is_settled_cancelled_without_a_second_on_cancel() -> None:
    # The first copy's ack was lost with its channel: the broker delivers the
    # job again, and Global, whose mark was cleared, says it is not cancelled.
    marks = core.CancelMarks()
    marks.note("j1", 0.0)
    core.cancel_cleared(_flight(), True, failed=False, connected=True, marks=marks, at=1.0)
    again = _flight(cancelling=True)
    assert "j1" in marks  # triage sends the copy to Global again
    effects = core.cancel_cleared(
        again, False, failed=False, connected=True, marks=marks, at=2.0, redelivered=True
    )
    assert effects == (core.SettleAs("cancelled"),)
    assert again.cancelling  # so the settle acks it, asking Global nothing more


def test_a_job_cancelled_here_and_enqueued_again_with_its_id_runs() -> None:
    marks = core.CancelMarks()
    marks.note("j1", 0.0)
    core.cancel_cleared(_flight(), True, failed=False, connected=True, marks=marks, at=1.0)
    again = _flight(cancelling=True)  # a new message: not redelivered
    effects = core.cancel_cleared(again, False, failed=False, connected=True, marks=marks, at=2.0)
    assert effects == (core.Admit(again.job),)
    assert "j1" not in marks


def test_a_mark_cleared_here_expires_like_any_mark() -> None:
    marks = core.CancelMarks()
    marks.note("j1", 0.0)
    core.cancel_cleared(_flight(), True, failed=False, connected=True, marks=marks, at=5.0)
    marks.expire(now=14.0, ttl=10.0)
    assert marks.cleared_here("j1")  # renewed when it was cleared
    marks.expire(now=15.0, ttl=10.0)
    assert "j1" not in marks and not marks.cleared_here("j1")


def test_a_cancel_global_did_not_answer_gives_the_job_back_still_marked() -> None:
    marks = core.CancelMarks()
    marks.note("j1", 0.0)
    effects = core.cancel_cleared(
        _flight(), False, failed=True, connected=True, marks=marks, at=1.0
    )
    assert effects == (core.GiveBack(),) and "j1" in marks


def test_an_uncleared_cancel_of_a_job_not_handed_out_admits_it_again() -> None:
    marks = core.CancelMarks()
    flight = _flight(cancelling=True, cancel_requested=True)
    effects = core.cancel_cleared(flight, False, failed=False, connected=True, marks=marks, at=1.0)
    assert effects == (core.Admit(flight.job),)
    assert not flight.cancelling and not flight.cancel_requested


def test_an_uncleared_cancel_while_disconnected_leaves_the_job_to_the_broker() -> None:
    flight = _flight(cancelling=True)
    marks = core.CancelMarks()
    assert (
        core.cancel_cleared(flight, False, failed=False, connected=False, marks=marks, at=1.0) == ()
    )


def test_an_uncleared_cancel_of_a_job_its_worker_skipped_returns_it() -> None:
    flight = _flight(worker="w", cancelling=True, skipped=True)
    marks = core.CancelMarks()
    effects = core.cancel_cleared(flight, False, failed=False, connected=True, marks=marks, at=1.0)
    assert effects == (core.SettleAs("returned"),)


def test_an_uncleared_cancel_of_a_job_whose_worker_was_killed_is_a_worker_crash() -> None:
    flight = _flight(worker="w", cancelling=True)
    marks = core.CancelMarks()
    effects = core.cancel_cleared(flight, False, failed=False, connected=True, marks=marks, at=1.0)
    assert effects == (core.Crashed("worker_crash", "cancelled, but Global holds no cancel mark"),)


def test_a_job_whose_worker_died_after_a_confirmed_cancel_is_cancelled() -> None:
    flight = _flight(worker="w", cancel_requested=True, timed_out=True)
    assert core.died_under(flight, "killed") == core.ClearCancel(flight.job)


def test_a_job_whose_worker_was_killed_for_its_time_limit_timed_out() -> None:
    flight = _flight(worker="w", timed_out=True)
    flight.job = Job.create(TimedJob, [1], id="j1")
    assert core.died_under(flight, "killed") == core.Crashed(
        "timeout", "job exceeded max_execution_time of 3 s"
    )


def test_a_job_whose_worker_died_otherwise_is_a_worker_crash_with_the_reason() -> None:
    assert core.died_under(_flight(worker="w"), "exit 137") == core.Crashed(
        "worker_crash", "exit 137"
    )


def test_a_failed_job_is_an_error_unless_retryable_then_retried_until_buried() -> None:
    assert core.error_outcome(Job.create(PlainJob, [1]), LEVELS) == "error"
    job = Job.create(RetryableJob, [1])
    assert core.error_outcome(job, LEVELS) == "retry"
    assert core.error_outcome(job.copy_with(retry_count=1), LEVELS) == "retry"
    assert core.error_outcome(job.copy_with(retry_count=2), LEVELS) == "buried"


def test_a_crash_that_buries_runs_on_buried_and_any_other_on_error() -> None:
    assert core.crash_callback("buried") == "on_buried"
    assert core.crash_callback("retry") == "on_error"
    assert core.crash_callback("error") == "on_error"


# ---------------------------------------------------------------- keys


def _keyed_flight(**flags: Any) -> core.Flight[str, object]:
    flight: core.Flight[str, object] = core.Flight("d", Job.create(ExecKeyedJob, [4], id="j1"))
    for name, value in flags.items():
        setattr(flight, name, value)
    return flight


def _no_token() -> str:
    raise AssertionError("no execution token wanted")


def test_a_job_admitted_to_a_queue_not_runnable_is_given_back() -> None:
    flight = _keyed_flight()
    assert core.admit(flight, runnable=False, new_exec_token=_no_token) == core.GiveBack()
    assert not flight.gating


def test_a_job_with_an_execution_key_is_gated_with_a_new_token() -> None:
    flight = _keyed_flight()
    effect = core.admit(flight, runnable=True, new_exec_token=lambda: "inc.7")
    assert effect == core.TakeExecution("inc.7")
    assert flight.gating and flight.exec_token == "inc.7" and not flight.gated


def test_a_job_without_an_execution_key_goes_to_the_backlog() -> None:
    flight: core.Flight[str, object] = core.Flight("d", Job.create(PlainJob, [1]))
    assert core.admit(flight, runnable=True, new_exec_token=_no_token) == core.Backlog()
    assert flight.gated


def test_a_job_already_gated_is_not_gated_again() -> None:
    flight = _keyed_flight(gated=True, exec_token="inc.1")
    assert core.admit(flight, runnable=True, new_exec_token=_no_token) == core.Backlog()
    assert flight.exec_token == "inc.1"


def test_a_gate_global_did_not_answer_gives_the_job_back_later_unchanged() -> None:
    flight = _keyed_flight(gating=True)
    assert core.gate_answered(flight, "failed", cancelled=(), runnable=True) == core.RequeueLater()
    assert flight.gating and not flight.gated


def test_a_parked_job_is_forgotten_for_its_keys_waiting_queue() -> None:
    flight = _keyed_flight(gating=True)
    assert core.gate_answered(flight, "parked", cancelled=(), runnable=True) == core.Parked("e-4")
    assert flight.gated and not flight.gating


def test_a_job_that_took_its_key_goes_to_the_backlog() -> None:
    flight = _keyed_flight(gating=True)
    assert core.gate_answered(flight, "go", cancelled=(), runnable=True) == core.Backlog()


def test_a_job_cancelled_while_it_gated_is_cleared_with_global_not_run() -> None:
    flight = _keyed_flight(gating=True, cancel_requested=True)
    effect = core.gate_answered(flight, "go", cancelled=(), runnable=True)
    assert effect == core.ClearCancel(flight.job)
    marked = _keyed_flight(gating=True)
    effect = core.gate_answered(marked, "go", cancelled={"j1"}, runnable=True)
    assert effect == core.ClearCancel(marked.job)


def test_a_job_whose_queue_paused_while_it_gated_is_given_back() -> None:
    flight = _keyed_flight(gating=True)
    assert core.gate_answered(flight, "go", cancelled=(), runnable=False) == core.GiveBack()


def test_waiting_keys_are_swept_once_at_a_time_until_found_empty() -> None:
    keys = core.WaitingKeys()
    keys.parked("a", "default")
    keys.held("b")
    assert keys.start_sweeps() == ["a", "b"]
    assert keys.start_sweeps() == []  # both under way
    keys.swept("a", "busy")
    keys.swept("b", "empty")
    assert keys.keys() == ["a"] and "b" not in keys
    assert keys.start_sweeps() == ["a"]


def test_a_failed_sweep_keeps_the_key_for_the_next_one() -> None:
    keys = core.WaitingKeys()
    keys.parked("a", "default")
    keys.start_sweeps()
    keys.swept("a", None)
    assert keys.start_sweeps() == ["a"]


def test_a_key_global_holds_keeps_the_queue_type_a_park_gave_it() -> None:
    keys = core.WaitingKeys()
    keys.parked("a", "fast")
    keys.held("a")
    keys.held("c")
    assert keys.keys() == ["a", "c"]


# ---------------------------------------------------------------- workers


@dataclass(frozen=True)
class _Record:
    batch_id: int
    current: int
    outcomes: tuple[str | None, ...]


def test_a_worker_is_idle_once_ready_and_holding_no_job() -> None:
    worker = core.WorkerRef("q")
    assert not worker.idle
    worker.ready = True
    assert worker.idle
    worker.hand([4, 5])
    assert not worker.idle and worker.tokens == [4, 5] and worker.batch == [4, 5]


def test_a_worker_becomes_idle_when_its_last_job_finishes() -> None:
    worker = core.WorkerRef("q", ready=True)
    worker.hand([4, 5])
    assert not worker.finished(5, at=10.0)
    assert not worker.finished(99, at=11.0)  # not its job
    assert worker.finished(4, at=12.0)
    assert worker.idle and worker.idle_since == 12.0 and worker.batch == [4, 5]


def test_the_running_job_is_the_one_the_scoreboard_names() -> None:
    worker = core.WorkerRef("q", ready=True)
    worker.hand([4, 5, 6])
    assert worker.running_token(_Record(4, 1, (None,) * 3)) == 5


def test_without_a_scoreboard_the_first_unfinished_job_counts_as_running() -> None:
    worker = core.WorkerRef("q", ready=True)
    worker.hand([4, 5])
    worker.finished(4, at=0.0)
    assert worker.running_token(None) == 5


def test_no_job_runs_per_a_scoreboard_of_another_batch_or_between_jobs() -> None:
    worker = core.WorkerRef("q", ready=True)
    worker.hand([4, 5])
    assert worker.running_token(_Record(1, 0, (None,) * 2)) is None
    assert worker.running_token(_Record(4, -1, (None,) * 2)) is None
    assert core.WorkerRef("q").running_token(_Record(4, 0, ())) is None


def test_a_dead_worker_gives_its_recorded_outcomes_and_unstarted_jobs_back() -> None:
    worker = core.WorkerRef("q", ready=True)
    worker.hand([4, 5, 6, 7])
    worker.finished(4, at=0.0)  # reported before it died
    running, others = worker.died(_Record(4, 2, ("done", "error", None, None)))
    assert running == 6
    assert others == [(5, "error"), (7, None)]
    assert worker.tokens == []


def test_a_dead_worker_without_a_record_of_its_batch_died_under_its_first_job() -> None:
    worker = core.WorkerRef("q", ready=True)
    worker.hand([4, 5])
    assert worker.died(_Record(9, 0, ("done", None))) == (4, [(5, None)])


def test_a_dead_worker_between_two_jobs_died_under_none() -> None:
    worker = core.WorkerRef("q", ready=True)
    worker.hand([4, 5])
    assert worker.died(_Record(4, -1, ("done", None))) == (None, [(4, "done"), (5, None)])


def test_a_dead_idle_worker_holds_nothing() -> None:
    assert core.WorkerRef("q", ready=True).died(None) == (None, [])


def test_only_workers_idle_since_before_the_limit_are_stopped_and_none_with_a_backlog() -> None:
    old = core.WorkerRef("q", ready=True, idle_since=1.0)
    recent = core.WorkerRef("q", ready=True, idle_since=9.0)
    busy = core.WorkerRef("q", ready=True, idle_since=0.0, tokens=[3])
    state = core.QueueState("q", 3, workers=[old, recent, busy])
    state.backlog.append(3)
    assert state.stop_idle(before=5.0) == []
    state.backlog.clear()
    assert state.stop_idle(before=5.0) == [old]
    assert state.workers == [recent, busy]


def test_an_idle_worker_is_found_for_a_batch() -> None:
    starting = core.WorkerRef("q")
    idle = core.WorkerRef("q", ready=True)
    state = core.QueueState("q", 2, workers=[starting, idle])
    assert state.idle_worker() is idle
    idle.hand([1])
    assert state.idle_worker() is None


def test_the_core_imports_no_broker_client_actor_system_or_event_loop() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, roger_actors.partition.consumer_core\n"
        "heavy = ('aiormq', 'pamqp', 'thespian', 'asyncio', 'supervision')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- pauses


def test_one_pause_bit_per_queue_is_set_locally_or_by_a_cast_and_cleared_by_either() -> None:
    bits = core.PauseBits()
    bits.set("a", True)
    bits.cast("a", False)  # a cluster-wide resume clears a local pause
    assert "a" not in bits
    bits.cast("b", True)
    bits.set("b", False)  # a local resume clears a cluster-wide pause
    assert "b" not in bits


def test_a_snapshot_pauses_what_global_lists_and_keeps_local_pauses() -> None:
    bits = core.PauseBits()
    bits.set("local", True)
    bits.apply_snapshot(["g"])
    assert "g" in bits and "local" in bits


def test_a_snapshot_resumes_a_queue_global_stopped_listing() -> None:
    bits = core.PauseBits()
    bits.apply_snapshot(["a", "b"])
    bits.apply_snapshot(["b"])
    assert "a" not in bits and "b" in bits


def test_a_snapshot_does_not_resume_a_local_pause_global_never_listed() -> None:
    bits = core.PauseBits()
    bits.apply_snapshot(["a"])
    bits.set("c", True)
    bits.apply_snapshot([])
    assert "a" not in bits and "c" in bits


def test_the_casts_missed_are_what_changed_in_globals_set_sorted() -> None:
    bits = core.PauseBits()
    bits.cast("b", True)
    bits.cast("c", True)
    assert bits.missed_casts(["a", "c"]) == [("a", True), ("b", False)]
    assert bits.missed_casts(["b", "c"]) == []
