"""Specification of Job.decode against hostile payloads, and of the limits a
payload cannot lift (the security review's H4, M3, M8)."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import roger_actors as roger
from roger_actors import job as job_module
from roger_actors.job import MAX_KEY_BYTES, bounded_repr, check_payload_size
from tests import hostile_payloads
from tests.roger_test_jobs2 import KeyedJob, TimedJob


class LimitedKeyed(roger.Job):
    max_execution_time = 5

    def perform(self, args: Any) -> Any:
        return None

    def queue_key(self, args: Any) -> Any:
        return f"q-{args[0]}"

    def execution_key(self, args: Any) -> Any:
        return f"e-{args[0]}"


class RaisingHook(roger.Job):
    def perform(self, args: Any) -> Any:
        return None

    def execution_key(self, args: Any) -> Any:
        return "k-" + args["name"]


MODULE = f"{__name__}.LimitedKeyed"


def payload(**changes: Any) -> bytes:
    fields: dict[Any, Any] = {"v": 1, "id": "j1", "module": MODULE, "args": [1]}
    fields.update(changes)
    return cbor2.dumps(fields)


# ------------------------------------------------------------ H4: only InvalidJobError


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"v": 1 << 20000}, "Unsupported job schema version: <int of 20001 bits>"),
        ({"id": 1 << 20000}, "Job id must be set"),
        ({"retry_count": -(1 << 20000)}, "Job retry_count must be an integer >= 0"),
        ({"retry_count": 1 << 64}, "Job retry_count must be an integer >= 0"),
        ({"max_execution_time": -(1 << 20000)}, "Job max_execution_time is out of range"),
        ({"max_execution_time": 1 << 20000}, "Job max_execution_time is out of range"),
        ({"queued_at": 1 << 20000}, "Job queued_at is out of range"),
        ({"started_at": -(1 << 64)}, "Job started_at is out of range"),
        ({b"k" * 1_000_000: 1}, "Job payload has unknown fields: b'kkkk"),
        ({"k" * 1_000_000: 1}, "Job payload has unknown fields: 'kkkk"),
        ({"module": "x" * 5_000_000}, "Job module name is too long"),
    ],
)
def test_decode_refuses_huge_integers_and_strings_with_invalid_job_error(
    fields: dict[Any, Any], message: str
) -> None:
    with pytest.raises(roger.InvalidJobError) as info:
        roger.Job.decode(cbor2.dumps({"v": 1, "id": "j", "module": MODULE, "args": [1], **fields}))
    assert message in str(info.value)
    assert len(str(info.value)) < 500


def test_repr_of_a_job_with_huge_values_in_its_args_is_short_and_never_raises() -> None:
    job = roger.Job.decode(payload(args=[1, 1 << 20000, "s" * 1_000_000, [[[[[1]]]]]]))
    shown = repr(job)
    assert "<int of 20001 bits>" in shown
    assert len(shown) < 1000
    assert bounded_repr(b"\x00" * 10_000).endswith("<10000 bytes>")


def test_an_error_about_a_long_key_in_the_args_is_short() -> None:
    data = payload(args={"k" * 1_000_000: {"k" * 1_000_000: [cbor2.CBORSimpleValue(16)]}})
    with pytest.raises(roger.InvalidJobError, match="not CBOR-representable") as info:
        roger.Job.decode(data)
    assert len(str(info.value)) < 500


@settings(
    max_examples=1500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=hostile_payloads.payloads())
def test_decode_of_any_hostile_bytes_raises_only_invalid_job_error(data: bytes) -> None:
    try:
        job = roger.Job.decode(data)
    except roger.InvalidJobError as exc:
        assert len(str(exc)) < 2000
        return
    # Some mutations stay valid: the job must then be a proper job.
    assert isinstance(job, roger.Job)
    repr(job)
    assert roger.Job.decode(roger.Job.encode(job)) == job


# ------------------------------------------------------------ M3: sizes


def test_ids_and_keys_longer_than_255_bytes_are_refused_at_create_and_decode() -> None:
    with pytest.raises(roger.InvalidJobError, match="Job id is too long"):
        roger.Job.create(TimedJob, ["/x", "t", 0], id="i" * (MAX_KEY_BYTES + 1))
    with pytest.raises(roger.InvalidJobError, match="Job id is too long"):
        roger.Job.create(TimedJob, ["/x", "t", 0], id="é" * 128)  # 256 bytes
    assert roger.Job.create(TimedJob, ["/x", "t", 0], id="i" * MAX_KEY_BYTES).id
    with pytest.raises(roger.InvalidJobError, match=r"execution_key .* is too long"):
        roger.Job.create(KeyedJob, ["/x", "t", 0, None, "k" * 256])
    with pytest.raises(roger.InvalidJobError, match=r"queue_key .* is too long"):
        roger.Job.create(KeyedJob, ["/x", "t", 0, "k" * 10_000_000, None])
    with pytest.raises(roger.InvalidJobError, match="Job id is too long") as info:
        roger.Job.decode(payload(id="i" * 10_000_000))
    assert len(str(info.value)) < 500


def test_a_payload_over_the_limit_is_refused_naming_its_size_and_the_limit() -> None:
    job = roger.Job.create(TimedJob, ["/x", "t" * 5000, 0])
    size = r"is \d+ bytes, larger than max_payload_bytes \(4096 bytes\)"
    with pytest.raises(roger.InvalidJobError, match=size):
        job.to_amqp("p", max_payload_bytes=4096)
    assert job.to_amqp("p", max_payload_bytes=8192).body
    check_payload_size(b"x" * 10, 10)
    with pytest.raises(roger.InvalidJobError, match="11 bytes"):
        check_payload_size(b"x" * 11, 10)


# ------------------------------------------------------------ M8: limits a payload cannot lift


@pytest.mark.parametrize(
    ("claimed", "expected"),
    [(None, 5), (10**9, 5), (1e308, 5), (float("inf"), 5), (2, 2), (0, 1)],
)
def test_max_execution_time_comes_from_the_class_and_a_payload_may_only_lower_it(
    claimed: Any, expected: Any
) -> None:
    assert roger.Job.decode(payload(max_execution_time=claimed)).max_execution_time == expected


def test_absent_keys_come_from_the_hooks() -> None:
    job = roger.Job.decode(payload())
    assert (job.queue_key, job.execution_key) == ("q-1", "e-1")


@pytest.mark.parametrize(
    "fields",
    [
        {"queue_key": "q-2"},
        {"queue_key": None},
        {"execution_key": "someone-else"},
        {"execution_key": None},
    ],
)
def test_a_payload_whose_keys_differ_from_the_hooks_is_invalid(fields: dict[str, Any]) -> None:
    with pytest.raises(roger.InvalidJobError, match="does not match LimitedKeyed"):
        roger.Job.decode(payload(**fields))


def test_matching_keys_decode() -> None:
    job = roger.Job.decode(payload(queue_key="q-1", execution_key="e-1"))
    assert (job.queue_key, job.execution_key) == ("q-1", "e-1")


def test_a_hook_that_raises_on_hostile_args_makes_the_payload_invalid() -> None:
    data = cbor2.dumps({"v": 1, "id": "j", "module": f"{__name__}.RaisingHook", "args": [1]})
    with pytest.raises(roger.InvalidJobError, match=r"execution_key\(args\) raised TypeError"):
        roger.Job.decode(data)


@given(st.integers(min_value=0, max_value=2**40))
def test_round_trip_of_created_jobs_still_holds(retry_count: int) -> None:
    job = roger.Job.create(LimitedKeyed, [retry_count]).copy_with(retry_count=retry_count)
    assert roger.Job.decode(roger.Job.encode(job)) == job


def test_module_constants_are_exported() -> None:
    assert {"MAX_KEY_BYTES", "MAX_FIELD_INT", "bounded_repr", "check_payload_size"} <= set(
        job_module.__all__
    )


def test_a_batch_message_shows_its_job_ids_not_their_args() -> None:
    # Thespian formats every message it sends; a batch of 32 jobs with large
    # args must stay a short line.
    from roger_actors.partition.messages import RunJobs

    jobs = [(i, roger.Job.create(TimedJob, ["x" * 10_000, i, 0])) for i in range(32)]
    text = repr(RunJobs(jobs))
    assert text.startswith("RunJobs(32 jobs: ") and text.endswith("+29)")
    assert jobs[0][1].id in text and "xxxx" not in text
