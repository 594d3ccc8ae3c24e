"""Specification of the job model: roger_actors.Job (Roger's Roger.Job)."""

from __future__ import annotations

import datetime
import enum
import math
import pickle
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import roger_actors as roger
from roger_actors import job as job_module

SENTINEL = "tests.job_import_sentinel"


# ----------------------------------------------------------------- job types


class SquareJob(roger.Job):
    def perform(self, args: Any) -> Any:
        return args[0] * args[0]


class KeyedJob(roger.Job):
    retryable = True
    max_execution_time = 5

    def perform(self, args: Any) -> Any:
        return self.id

    def queue_key(self, args: Any) -> str | None:
        return f"num-{args[0]}"

    def execution_key(self, args: Any) -> str | None:
        return f"exec-{args[0]}"


class Priority(enum.Enum):
    FAST = "fast"
    NUMBERED = 3


class FastJob(roger.Job):
    def perform(self, args: Any) -> Any:
        return None

    def queue_type(self, args: Any) -> Any:
        return Priority.FAST


class ArgsQueueJob(roger.Job):
    def perform(self, args: Any) -> Any:
        return None

    def queue_type(self, args: Any) -> Any:
        return args["queue"]


class SuperQueueJob(roger.Job):
    def perform(self, args: Any) -> Any:
        return None

    def queue_type(self, args: Any) -> Any:
        return super().queue_type(args)


class NoPerformJob(roger.Job):
    pass


class FailingJob(roger.Job):
    def perform(self, args: Any) -> Any:
        raise RuntimeError("boom")


class BadKeyJob(roger.Job):
    def perform(self, args: Any) -> Any:
        return None

    def queue_key(self, args: Any) -> Any:
        return 42


class ZeroTimeJob(roger.Job):
    max_execution_time = 0

    def perform(self, args: Any) -> Any:
        return None


class FractionTimeJob(roger.Job):
    max_execution_time = 0.25

    def perform(self, args: Any) -> Any:
        return None


class InfiniteTimeJob(roger.Job):
    max_execution_time = math.inf

    def perform(self, args: Any) -> Any:
        return None


def payload(**fields: Any) -> bytes:
    """A CBOR payload with a valid version, id, module and args, changed by ``fields``."""
    data: dict[str, Any] = {
        "v": 1,
        "id": "abc",
        "module": roger.Job.create(SquareJob, [1]).module,
        "args": [2],
    }
    for key, value in fields.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return cbor2.dumps(data)


_DROP = object()


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give the test its own copy of the registry and allow-list; forget the sentinel module."""
    monkeypatch.setattr(job_module, "_registry", dict(job_module._registry))
    previous = job_module.set_allowed_modules(())
    sys.modules.pop(SENTINEL, None)
    yield
    job_module.set_allowed_modules(previous)
    sys.modules.pop(SENTINEL, None)
    tests_package = sys.modules.get("tests")
    if tests_package is not None and hasattr(tests_package, "job_import_sentinel"):
        delattr(tests_package, "job_import_sentinel")


@pytest.fixture
def import_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every module the job model asks importlib to import."""
    calls: list[str] = []
    real = job_module.importlib.import_module

    def recording(name: str, package: str | None = None) -> Any:
        calls.append(name)
        return real(name, package)

    monkeypatch.setattr(job_module.importlib, "import_module", recording)
    return calls


# ------------------------------------------------------------------- create


def test_create_assigns_a_random_lowercase_hex_id() -> None:
    first = roger.Job.create(SquareJob, [2])
    second = roger.Job.create(SquareJob, [2])
    assert re.fullmatch(r"[0-9a-f]{32}", first.id)
    assert first.id != second.id


def test_create_uses_the_given_id() -> None:
    assert roger.Job.create(SquareJob, [2], id="my-id").id == "my-id"


@pytest.mark.parametrize("bad_id", ["", 12, b"id"])
def test_create_rejects_an_id_that_is_not_a_non_empty_string(bad_id: Any) -> None:
    with pytest.raises(roger.InvalidJobError, match="Job id must be set"):
        roger.Job.create(SquareJob, [2], id=bad_id)


def test_create_returns_an_instance_of_the_job_class_with_roger_fields() -> None:
    job = roger.Job.create(SquareJob, [2])
    assert isinstance(job, SquareJob)
    assert job.module == f"{__name__}.SquareJob"
    assert job.args == [2]
    assert job.queue_key is None
    assert job.execution_key is None
    assert job.retry_count == 0
    assert job.queued_at == 0
    assert job.started_at == 0
    assert job.max_execution_time is None


def test_create_defaults_args_to_an_empty_list() -> None:
    assert roger.Job.create(SquareJob).args == []


def test_create_computes_queue_and_execution_keys_from_the_args() -> None:
    job = roger.Job.create(KeyedJob, [2])
    assert job.queue_key == "num-2"
    assert job.execution_key == "exec-2"
    assert job_module.queue_key_of(job) == "num-2"
    assert job_module.execution_key_of(job) == "exec-2"


def test_create_accepts_the_registered_name_of_a_job_class() -> None:
    job = roger.Job.create(f"{__name__}.KeyedJob", [3])
    assert type(job) is KeyedJob
    assert job.queue_key == "num-3"


def test_create_rejects_an_unregistered_name() -> None:
    with pytest.raises(roger.InvalidJobError, match=r"Unknown job module: nowhere.Job"):
        roger.Job.create("nowhere.Job", [])


@pytest.mark.parametrize("not_a_job", [int, roger.Job, "", 3])
def test_create_rejects_something_that_is_not_a_job_subclass(not_a_job: Any) -> None:
    with pytest.raises(roger.InvalidJobError, match=r"Job module must be|Invalid job module"):
        roger.Job.create(not_a_job, [])


def test_create_rejects_a_job_class_without_perform() -> None:
    with pytest.raises(roger.InvalidJobError, match=r"Invalid job module: .*perform"):
        roger.Job.create(NoPerformJob, [])


def test_create_normalises_tuples_mappings_and_str_subclasses() -> None:
    class Colour(str, enum.Enum):  # noqa: UP042 - str() of this is not the value
        RED = "red"

    job = roger.Job.create(SquareJob, ((1, 2), {"c": Colour.RED}, bytearray(b"x")))
    assert job.args == [[1, 2], {"c": "red"}, b"x"]
    assert type(job.args[1]["c"]) is str


@pytest.mark.parametrize(
    ("args", "where"),
    [
        ([{1, 2}], r"args\[0\] is a builtins.set"),
        ({"when": datetime.datetime(2024, 1, 1)}, r"args\['when'\] is a datetime.datetime"),
        ([object()], r"args\[0\] is a builtins.object"),
        ({1: "x"}, "map keys must be str"),
        ([1j], "complex"),
    ],
)
def test_create_rejects_args_cbor_cannot_carry_and_names_the_value(args: Any, where: str) -> None:
    with pytest.raises(roger.InvalidJobError, match="Job args are not CBOR-representable") as info:
        roger.Job.create(SquareJob, args)
    assert re.search(where, str(info.value))


def test_create_rejects_args_nested_too_deep() -> None:
    args: Any = []
    for _ in range(job_module.MAX_ARGS_DEPTH + 5):
        args = [args]
    with pytest.raises(roger.InvalidJobError, match="nest deeper"):
        roger.Job.create(SquareJob, args)


def test_create_rejects_a_key_hook_that_returns_a_non_string() -> None:
    with pytest.raises(roger.InvalidJobError, match=r"queue_key\(args\) must return a str or None"):
        roger.Job.create(BadKeyJob, [])


@pytest.mark.parametrize(
    ("job_class", "expected"),
    [(SquareJob, None), (KeyedJob, 5), (ZeroTimeJob, 1), (FractionTimeJob, 1),
     (InfiniteTimeJob, None)],
)
def test_create_resolves_max_execution_time(job_class: type[roger.Job], expected: Any) -> None:
    assert roger.Job.create(job_class, [1]).max_execution_time == expected


def test_calling_a_job_class_directly_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Job.create"):
        SquareJob()


# --------------------------------------------------------- class definition


def test_job_subclasses_register_under_their_qualified_name() -> None:
    registered = job_module.registered_job_classes()
    assert registered[f"{__name__}.SquareJob"] is SquareJob
    assert job_module.job_class_name(SquareJob) == f"{__name__}.SquareJob"


@pytest.mark.parametrize("name", ["encode", "create", "enqueue", "args", "id", "__init__"])
def test_a_job_class_may_not_define_reserved_names(name: str) -> None:
    with pytest.raises(TypeError, match=f"may not define {name}"):
        type("Clash", (roger.Job,), {name: lambda self: None})


def test_retryable_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="retryable must be a bool"):
        type("BadRetry", (roger.Job,), {"retryable": "yes"})


def test_max_execution_time_must_be_a_non_negative_number_or_none() -> None:
    with pytest.raises(ValueError, match="max_execution_time"):
        type("Negative", (roger.Job,), {"max_execution_time": -1})
    with pytest.raises(TypeError, match="max_execution_time"):
        type("Text", (roger.Job,), {"max_execution_time": "10"})


# ------------------------------------------------------------------ execute


def test_execute_runs_perform_with_the_args_and_returns_its_result() -> None:
    assert roger.Job.execute(roger.Job.create(SquareJob, [4])) == 16


def test_perform_runs_with_self_being_the_job() -> None:
    job = roger.Job.create(KeyedJob, [1])
    assert job.execute() == job.id


def test_execute_lets_exceptions_from_perform_propagate() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        roger.Job.execute(roger.Job.create(FailingJob, []))


# ------------------------------------------------- queue type and retryable


def test_queue_type_defaults_to_default() -> None:
    job = roger.Job.create(SquareJob, [1])
    assert roger.Job.queue_type(job) == "default"
    assert job.queue_type_name() == "default"
    assert job.queue_type() == "default"


def test_queue_type_normalises_an_enum_member_to_its_value() -> None:
    job = roger.Job.create(FastJob, [])
    assert roger.Job.queue_type(job) == "fast"
    assert job.queue_type_name() == "fast"


def test_queue_type_hook_receives_the_args() -> None:
    job = roger.Job.create(ArgsQueueJob, {"queue": "other"})
    assert roger.Job.queue_type(job) == "other"


def test_queue_type_hook_may_call_the_default_through_super() -> None:
    assert roger.Job.queue_type(roger.Job.create(SuperQueueJob, [])) == "default"


@pytest.mark.parametrize("bad", [Priority.NUMBERED, 3, "", "a-b", "a.b"])
def test_queue_type_rejects_a_hook_result_that_is_no_queue_type(bad: Any) -> None:
    job = roger.Job.create(ArgsQueueJob, {"queue": "x"})
    job.args = {"queue": bad}
    with pytest.raises(roger.InvalidJobError, match="queue_type"):
        roger.Job.queue_type(job)


def test_is_retryable_reads_the_class_attribute() -> None:
    assert roger.Job.is_retryable(roger.Job.create(KeyedJob, [1])) is True
    assert roger.Job.create(SquareJob, [1]).is_retryable() is False


# ----------------------------------------------------------- encode/decode


def test_encode_produces_a_versioned_cbor_map() -> None:
    job = roger.Job.create(KeyedJob, [2])
    data = cbor2.loads(roger.Job.encode(job))
    assert data == {
        "v": 1,
        "id": job.id,
        "module": f"{__name__}.KeyedJob",
        "args": [2],
        "queue_key": "num-2",
        "execution_key": "exec-2",
        "retry_count": 0,
        "queued_at": 0,
        "started_at": 0,
        "max_execution_time": 5,
    }


def test_decode_returns_an_equal_job() -> None:
    job = roger.Job.create(KeyedJob, [{"a": [1, 2.5, None, True, b"\x00", "t"]}], id="x1")
    job = job.copy_with(retry_count=3, queued_at=10, started_at=20)
    decoded = roger.Job.decode(roger.Job.encode(job))
    assert decoded == job
    assert type(decoded) is KeyedJob
    assert decoded.queue_key == job.queue_key
    assert decoded.max_execution_time == 5


def test_decode_fills_optional_fields_with_defaults_and_absent_keys_from_the_hooks() -> None:
    data = cbor2.dumps({"v": 1, "id": "j", "module": f"{__name__}.KeyedJob", "args": [7]})
    job = roger.Job.decode(data)
    assert (job.queue_key, job.execution_key, job.retry_count) == ("num-7", "exec-7", 0)
    assert (job.queued_at, job.started_at, job.max_execution_time) == (0, 0, 5)


@pytest.mark.parametrize("field", ["started_at", "queued_at"])
def test_times_default_to_zero_as_in_roger(field: str) -> None:
    """Roger's %Roger.Job{} struct has started_at: 0 and queued_at: 0
    (test/roger/info_test.exs asserts a queued job's started_at == 0): a
    created job, a decoded payload without the field or with null (older
    encoders), and the payload written."""
    job = roger.Job.create(SquareJob, [3])
    assert getattr(job, field) == 0
    assert cbor2.loads(roger.Job.encode(job))[field] == 0
    base = {"v": 1, "id": "j0", "module": f"{__name__}.SquareJob", "args": [3]}
    assert getattr(roger.Job.decode(cbor2.dumps(base)), field) == 0
    assert getattr(roger.Job.decode(cbor2.dumps({**base, field: None})), field) == 0
    assert getattr(job.copy_with(**{field: None}), field) == 0
    assert getattr(roger.Job.decode(cbor2.dumps({**base, field: 17})), field) == 17


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = roger.Job.encode(roger.Job.create(SquareJob, [1]))
    assert roger.Job.decode(bytearray(data)) == roger.Job.decode(memoryview(data))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": _DROP}, "Job id must be set"),
        ({"id": None}, "Job id must be set"),
        ({"id": ""}, "Job id must be set"),
        ({"id": 5}, "Job id must be set"),
        ({"module": _DROP}, "Job module must be set"),
        ({"module": None}, "Job module must be set"),
        ({"module": ""}, "Job module must be set"),
        ({"module": 5}, "Job module must be a string"),
        ({"module": ["a"]}, "Job module must be a string"),
        ({"module": "Elixir.NoExisting"}, "Unknown job module: Elixir.NoExisting"),
        ({"module": "os.system"}, "Unknown job module: os.system"),
        ({"module": "../../etc/passwd"}, "Unknown job module"),
        ({"module": f"{__name__}.NoPerformJob"}, "Invalid job module"),
        ({"v": _DROP}, "Unsupported job schema version: none"),
        ({"v": 2}, "Unsupported job schema version: 2"),
        ({"v": "1"}, "Unsupported job schema version: '1'"),
        ({"v": True}, "Unsupported job schema version"),
        ({"extra": 1}, "Job payload has unknown fields: extra"),
        ({"args": _DROP}, "Job args must be set"),
        ({"args": {"k": cbor2.CBORSimpleValue(16)}}, "not CBOR-representable"),
        ({"queue_key": 3}, "Job queue_key must be a string or None"),
        ({"execution_key": b"k"}, "Job execution_key must be a string or None"),
        ({"retry_count": -1}, "Job retry_count must be an integer >= 0"),
        ({"retry_count": 1.5}, "Job retry_count must be an integer >= 0"),
        ({"queued_at": "yesterday"}, "Job queued_at must be None or integer milliseconds"),
        ({"started_at": 1.0}, "Job started_at must be None or integer milliseconds"),
        ({"max_execution_time": -3}, "max_execution_time"),
        ({"max_execution_time": "1"}, "max_execution_time"),
    ],
)
def test_decode_rejects_invalid_fields_with_roger_messages(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(roger.InvalidJobError, match=re.escape(message)):
        roger.Job.decode(payload(**fields))


def test_decode_checks_the_id_before_the_module() -> None:
    data = cbor2.dumps({"v": 1, "module": "os.system", "args": []})
    with pytest.raises(roger.InvalidJobError, match="Job id must be set"):
        roger.Job.decode(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Job decoding error"),
        (b"\xff", "Job decoding error"),
        (b"\x1c", "Job decoding error"),
        (b"\xa1", "Job decoding error"),
        (cbor2.dumps({"v": 1}) + b"\x00", "trailing bytes"),
        (cbor2.dumps([1, 2]), "Job payload must be a CBOR map, got list"),
        (cbor2.dumps(7), "Job payload must be a CBOR map, got int"),
        (cbor2.dumps(None), "Job payload must be a CBOR map, got NoneType"),
    ],
)
def test_decode_rejects_bytes_that_are_no_cbor_map(data: bytes, message: str) -> None:
    with pytest.raises(roger.InvalidJobError, match=re.escape(message)):
        roger.Job.decode(data)


def test_decode_rejects_non_bytes_input() -> None:
    with pytest.raises(roger.InvalidJobError, match="payload must be bytes, got str"):
        roger.Job.decode("{}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args_value",
    [
        datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        {1, 2},
        re.compile("a+"),
        cbor2.CBORTag(4000, "x"),
        __import__("uuid").UUID(int=1),
        __import__("decimal").Decimal("1.5"),
    ],
)
def test_decode_rejects_cbor_tags_in_args(args_value: Any) -> None:
    data = cbor2.dumps(
        {"v": 1, "id": "a", "module": f"{__name__}.SquareJob", "args": [args_value]}
    )
    with pytest.raises(roger.InvalidJobError, match="Job decoding error"):
        roger.Job.decode(data)


def test_decode_rejects_shared_references_that_could_form_cycles() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    data = cbor2.dumps(
        {"v": 1, "id": "a", "module": f"{__name__}.SquareJob", "args": cyclic},
        value_sharing=True,
    )
    with pytest.raises(roger.InvalidJobError, match="Job decoding error"):
        roger.Job.decode(data)


def test_decode_accepts_big_integers() -> None:
    job = roger.Job.create(SquareJob, [2**100, -(2**90)])
    assert roger.Job.decode(job.encode()).args == [2**100, -(2**90)]


@pytest.mark.parametrize(
    "raw",
    [
        bytes.fromhex("a2616101616102"),  # duplicate key "a"
        bytes.fromhex("a1016101"),  # integer map key
    ],
)
def test_decode_rejects_duplicate_and_non_string_map_keys(raw: bytes) -> None:
    with pytest.raises(roger.InvalidJobError, match="Job decoding error"):
        roger.Job.decode(raw)


def test_decode_rejects_args_nested_too_deep() -> None:
    raw = cbor2.dumps({"v": 1, "id": "a", "module": f"{__name__}.SquareJob", "args": []})
    deep = b"\x81" * (job_module.MAX_ARGS_DEPTH + 10) + b"\x00"
    data = raw[:-1] + deep  # the empty list at the end becomes a deep list
    with pytest.raises(roger.InvalidJobError, match=r"Job decoding error|nest deeper"):
        roger.Job.decode(data)


def test_encode_revalidates_args_changed_after_creation() -> None:
    job = roger.Job.create(SquareJob, [1])
    job.args = [{1, 2}]
    with pytest.raises(roger.InvalidJobError, match="not CBOR-representable"):
        roger.Job.encode(job)


class _Arguments:
    """Hypothesis strategy for everything a job payload carries."""

    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text()
        | st.binary()
    )
    values = st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=8), children, max_size=5),
        max_leaves=25,
    )


@settings(max_examples=200, deadline=None)
@given(args=_Arguments.values, retry_count=st.integers(min_value=0, max_value=2**40))
def test_encode_then_decode_round_trips_any_cbor_able_args(args: Any, retry_count: int) -> None:
    job = roger.Job.create(SquareJob, args).copy_with(retry_count=retry_count)
    decoded = roger.Job.decode(roger.Job.encode(job))
    assert decoded == job
    assert decoded.args == args


# ------------------------------------------------ registry and allow-list


@pytest.mark.usefixtures("isolated_registry")
def test_decode_never_imports_a_module_outside_the_allow_list(import_calls: list[str]) -> None:
    data = payload(module=f"{SENTINEL}.SentinelJob")
    with pytest.raises(roger.InvalidJobError, match="Unknown job module"):
        roger.Job.decode(data)
    assert SENTINEL not in sys.modules
    assert import_calls == []


@pytest.mark.usefixtures("isolated_registry")
def test_decode_never_imports_os_for_a_payload_naming_os_system(import_calls: list[str]) -> None:
    with pytest.raises(roger.InvalidJobError, match=r"Unknown job module: os.system"):
        roger.Job.decode(payload(module="os.system"))
    assert import_calls == []


@pytest.mark.usefixtures("isolated_registry")
def test_a_prefix_allows_only_whole_module_path_segments(import_calls: list[str]) -> None:
    roger.Job.allow_modules("tests.job_import")
    with pytest.raises(roger.InvalidJobError, match="Unknown job module"):
        roger.Job.decode(payload(module=f"{SENTINEL}.SentinelJob"))
    assert SENTINEL not in sys.modules
    assert import_calls == []


@pytest.mark.usefixtures("isolated_registry")
def test_decode_imports_an_allow_listed_module_to_find_its_job(import_calls: list[str]) -> None:
    assert roger.Job.allow_modules(SENTINEL) == (SENTINEL,)
    job = roger.Job.decode(payload(module=f"{SENTINEL}.SentinelJob"))
    assert SENTINEL in sys.modules
    assert import_calls == [SENTINEL]
    assert type(job).__name__ == "SentinelJob"
    assert job.execute() == "sentinel ran"


@pytest.mark.usefixtures("isolated_registry")
def test_an_allow_listed_name_that_is_no_job_class_is_an_invalid_job_module() -> None:
    roger.Job.allow_modules("tests", SENTINEL)
    with pytest.raises(roger.InvalidJobError, match=r"Invalid job module: .*NOT_A_JOB"):
        roger.Job.decode(payload(module=f"{SENTINEL}.NOT_A_JOB"))
    with pytest.raises(roger.InvalidJobError, match="Unknown job module"):
        roger.Job.decode(payload(module=f"{SENTINEL}.Missing"))
    with pytest.raises(roger.InvalidJobError, match="Unknown job module"):
        roger.Job.decode(payload(module="tests.no_such_module.Job"))
    with pytest.raises(roger.InvalidJobError, match="Unknown job module"):
        roger.Job.decode(payload(module=f"{SENTINEL}._private"))


@pytest.mark.usefixtures("isolated_registry")
def test_a_listed_package_never_imports_a_module_under_it_on_a_payloads_demand(
    import_calls: list[str],
) -> None:
    roger.Job.allow_modules("tests")
    with pytest.raises(roger.InvalidJobError, match="Unknown job module"):
        roger.Job.decode(payload(module=f"{SENTINEL}.SentinelJob"))
    assert SENTINEL not in sys.modules
    assert SENTINEL not in import_calls


@pytest.mark.usefixtures("isolated_registry")
@pytest.mark.parametrize("prefix", ["", "a..b", "../x", "a-b", 3])
def test_allow_modules_rejects_malformed_prefixes(prefix: Any) -> None:
    with pytest.raises(ValueError, match="module prefix"):
        roger.Job.allow_modules(prefix)
    assert job_module.allowed_modules() == ()


# --------------------------------------------------------- AMQP and enqueue


def test_to_amqp_computes_queue_body_and_persistent_properties() -> None:
    job = roger.Job.create(KeyedJob, [2])
    before = roger.now()
    routing_key, body, properties = job.to_amqp("myapp")
    after = roger.now()
    assert routing_key == "myapp-default"
    assert properties == {
        "content_type": "application/cbor",
        "delivery_mode": 2,
        "message_id": job.id,
        "app_id": "myapp",
    }
    queued = roger.Job.decode(body)
    assert queued.queued_at is not None and before <= queued.queued_at <= after
    assert queued.copy_with(queued_at=0) == job
    assert job.queued_at == 0


def test_to_amqp_uses_the_job_queue_type_or_the_override() -> None:
    job = roger.Job.create(FastJob, [])
    assert roger.Job.to_amqp(job, "myapp").routing_key == "myapp-fast"
    assert job.to_amqp("myapp", queue="other").routing_key == "myapp-other"
    assert job.to_amqp("myapp", queue=Priority.FAST).routing_key == "myapp-fast"


@pytest.mark.parametrize("partition_id", ["", 3, None])
def test_to_amqp_names_a_bad_partition_id(partition_id: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="partition_id"):
        roger.Job.create(SquareJob, []).to_amqp(partition_id)


def test_enqueue_without_a_node_raises_not_started() -> None:
    job = roger.Job.create(SquareJob, [1])
    with pytest.raises(roger.NotStartedError, match="no node started in this process"):
        roger.Job.enqueue(job, "myapp")


def test_enqueue_delegates_to_the_installed_hook() -> None:
    seen: list[tuple[Any, ...]] = []
    previous = job_module.set_enqueue_hook(lambda *call: seen.append(call))
    try:
        job = roger.Job.create(SquareJob, [1])
        job.enqueue("myapp")
        roger.Job.enqueue(job, "myapp", queue=Priority.FAST)
        with pytest.raises(ValueError, match="partition_id"):
            job.enqueue("")
    finally:
        job_module.set_enqueue_hook(previous)
    assert seen == [(job, "myapp", None), (job, "myapp", "fast")]


# ---------------------------------------------------------------- helpers


def test_copy_with_replaces_fields_and_validates_them() -> None:
    job = roger.Job.create(KeyedJob, [1])
    retried = job.copy_with(retry_count=job.retry_count + 1)
    assert retried.retry_count == 1 and job.retry_count == 0
    assert retried.id == job.id and retried.queue_key == job.queue_key
    with pytest.raises(roger.InvalidJobError, match="cannot set: module"):
        job.copy_with(module="x.Y")
    with pytest.raises(roger.InvalidJobError, match="cannot set: colour"):
        job.copy_with(colour="red")
    with pytest.raises(roger.InvalidJobError, match="retry_count"):
        job.copy_with(retry_count=-1)


def test_jobs_compare_by_class_and_fields_and_show_them() -> None:
    job = roger.Job.create(SquareJob, [1], id="same")
    assert job == roger.Job.create(SquareJob, [1], id="same")
    assert job != roger.Job.create(SquareJob, [2], id="same")
    assert job != roger.Job.create(KeyedJob, [1], id="same")
    assert "id='same'" in repr(job) and "SquareJob" in repr(job)


def test_jobs_pickle_for_transfer_between_local_actors() -> None:
    job = roger.Job.create(KeyedJob, [1])
    assert pickle.loads(pickle.dumps(job)) == job


def test_now_is_integer_milliseconds_since_the_epoch() -> None:
    value = roger.now()
    assert isinstance(value, int)
    assert abs(value - time.time() * 1000) < 5_000


def test_the_job_model_imports_no_actor_system_or_broker_client() -> None:
    import subprocess

    code = (
        "import sys, roger_actors\n"
        "bad = [m for m in ('thespian', 'aiormq', 'pamqp') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_started_copies_the_job_with_started_at_and_leaves_the_original_alone() -> None:
    job = roger.Job.create(_StartedProbeJob, [1])
    started = job.started(1234)
    assert started.started_at == 1234
    assert job.started_at == 0
    assert started.id == job.id and started.args == job.args
    with pytest.raises(roger.InvalidJobError):
        job.started("soon")  # type: ignore[arg-type]


class _StartedProbeJob(roger.Job):
    def perform(self, args: Any) -> Any:
        return args
