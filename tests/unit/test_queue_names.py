"""Specification of queue naming (Roger's Roger.Queue.make_name and friends)."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import roger_actors as roger
from roger_actors.queue import (
    MAX_PARTITION_ID_BYTES,
    MAX_QUEUE_TYPE_BYTES,
    MAX_WORKERS,
    QUEUE_NAME_CHARACTERS,
    normalise_queue_defs,
    normalise_queue_type,
    validate_partition_id,
)


class QueueType(enum.Enum):
    DEFAULT = "default"
    OTHER = "other"
    NUMBER = 1


def test_make_name_joins_partition_and_queue_type_with_a_dash() -> None:
    assert roger.Queue.make_name("myapp", "default") == "myapp-default"


def test_make_name_appends_the_postfix() -> None:
    assert roger.Queue.make_name("myapp", "default", ".buried") == "myapp-default.buried"
    assert roger.Queue.make_name("myapp", "other", postfix=".retry.10") == "myapp-other.retry.10"


def test_make_name_accepts_an_enum_member_with_a_str_value() -> None:
    assert roger.Queue.make_name("myapp", QueueType.OTHER) == "myapp-other"


def test_retry_buried_and_invalid_queues_follow_roger_names() -> None:
    assert roger.Queue.retry_name("myapp", "default", 10) == "myapp-default.retry.10"
    assert roger.Queue.buried_name("myapp", "default") == "myapp-default.buried"
    assert roger.Queue.invalid_name("myapp", QueueType.DEFAULT) == "myapp-default.invalid"


@pytest.mark.parametrize("delay", [0, -1, 1.5, True])
def test_retry_name_needs_a_positive_int_delay(delay: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="delay_seconds"):
        roger.Queue.retry_name("myapp", "default", delay)


@pytest.mark.parametrize(
    ("partition_id", "error"),
    [
        (None, TypeError),
        (3, TypeError),
        (b"myapp", TypeError),
        ("", ValueError),
        ("my\napp", ValueError),
        ("amq.myapp", ValueError),
    ],
)
def test_make_name_names_a_bad_partition_id(partition_id: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="partition_id"):
        roger.Queue.make_name(partition_id, "default")


@pytest.mark.parametrize(
    ("queue_type", "error"),
    [
        (None, TypeError),
        (3, TypeError),
        (QueueType.NUMBER, TypeError),
        ("", ValueError),
        ("a b", ValueError),
        ("a-b", ValueError),
        ("a.b", ValueError),
        ("tab\t", ValueError),
    ],
)
def test_make_name_names_a_bad_queue_type(queue_type: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="queue_type"):
        roger.Queue.make_name("myapp", queue_type)


def test_make_name_names_a_bad_postfix() -> None:
    with pytest.raises(TypeError, match="postfix"):
        roger.Queue.make_name("myapp", "default", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="postfix"):
        roger.Queue.make_name("myapp", "default", "\x00")


def test_make_name_refuses_names_longer_than_rabbitmq_allows() -> None:
    pid, qtype = "p" * MAX_PARTITION_ID_BYTES, "q" * MAX_QUEUE_TYPE_BYTES
    assert len(roger.Queue.make_name(pid, qtype, ".retry." + "9" * 12)) == 255
    with pytest.raises(ValueError, match="at most 255"):
        roger.Queue.make_name(pid, qtype, ".retry." + "9" * 13)


def test_ids_and_types_are_refused_when_a_derived_name_could_pass_255_bytes() -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_PARTITION_ID_BYTES}"):
        validate_partition_id("p" * (MAX_PARTITION_ID_BYTES + 1))
    with pytest.raises(ValueError, match=f"at most {MAX_QUEUE_TYPE_BYTES}"):
        normalise_queue_type("q" * (MAX_QUEUE_TYPE_BYTES + 1))
    assert MAX_PARTITION_ID_BYTES + len("-execution-waiting-#") + 64 == 255


def test_partition_ids_may_contain_dashes_and_dots() -> None:
    assert roger.Queue.make_name("my-app.eu", "default") == "my-app.eu-default"
    assert validate_partition_id("a_b:c@d#e,f/g+h i") == "a_b:c@d#e,f/g+h i"


@pytest.mark.parametrize("bad", ["tenant-ü", "мой", "a=b", "a!b", "a?b", "a;b"])
def test_partition_ids_and_queue_types_with_characters_amqp_queue_names_refuse_are_refused(
    bad: str,
) -> None:
    with pytest.raises(ValueError, match="may contain only ASCII letters") as info:
        validate_partition_id(bad)
    assert "partition_id" in str(info.value)
    with pytest.raises(ValueError, match="may contain only ASCII letters"):
        normalise_queue_type(bad.replace("-", "_"))


def test_queue_name_characters_are_the_ones_pamqp_accepts() -> None:
    from pamqp.constants import DOMAIN_REGEX

    for code in range(0x20, 0x250):
        ch = chr(code)
        assert bool(QUEUE_NAME_CHARACTERS.match(ch)) == bool(
            DOMAIN_REGEX["queue-name"].match(ch)
        ), ch


def test_an_error_about_a_huge_partition_id_is_short() -> None:
    with pytest.raises(ValueError) as info:
        validate_partition_id("é" * 10_000_000)
    assert len(str(info.value)) < 400


def test_max_workers_is_bounded_so_the_prefetch_fits_amqps_16_bits() -> None:
    from roger_actors.partition.consumer_core import MAX_BATCH

    assert normalise_queue_defs({"default": MAX_WORKERS}) == {"default": MAX_WORKERS}
    assert MAX_WORKERS * (1 + MAX_BATCH) <= 65535
    with pytest.raises(ValueError, match=f"<= {MAX_WORKERS}"):
        normalise_queue_defs({"default": MAX_WORKERS + 1})
    with pytest.raises(ValueError, match=r"queues\.default: max_workers"):
        normalise_queue_defs({"default": 10**9})


def test_normalise_queue_type_returns_plain_str() -> None:
    class Sub(str):
        pass

    value = normalise_queue_type(Sub("fast"))
    assert value == "fast" and type(value) is str
    assert normalise_queue_type(QueueType.DEFAULT) == "default"


def test_queue_definitions_accept_a_mapping_or_pairs() -> None:
    assert normalise_queue_defs({"default": 10, QueueType.OTHER: 0}) == {"default": 10, "other": 0}
    assert normalise_queue_defs([("default", 10), ["other", 5]]) == {"default": 10, "other": 5}
    assert normalise_queue_defs([]) == {}


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"default": -1}, "queues.default: max_workers must be an int >= 0"),
        ({"default": 1.5}, "queues.default: max_workers must be an int >= 0"),
        ({"default": True}, "queues.default: max_workers must be an int >= 0"),
        ([("default", 1), ("default", 2)], "queues.default is defined more than once"),
        ([("default",)], "queues[0] must be a (queue_type, max_workers) pair"),
        (["default"], "queues[0] must be a (queue_type, max_workers) pair"),
        ("default", "queues must be a mapping"),
        ({"a-b": 1}, "queues queue type 'a-b'"),
    ],
)
def test_queue_definitions_name_the_bad_entry(queues: Any, message: str) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        normalise_queue_defs(queues)
    assert message in str(info.value)


@settings(max_examples=300, deadline=None)
@given(
    pid=st.text(alphabet="abcXYZ019-_.:@#,/+ ", min_size=1, max_size=MAX_PARTITION_ID_BYTES),
    keys=st.lists(st.text(max_size=300), min_size=2, max_size=2, unique=True),
)
def test_waiting_queue_names_are_always_legal_and_distinct_per_key(
    pid: str, keys: list[str]
) -> None:
    from pamqp.constants import DOMAIN_REGEX

    from roger_actors.partition.execution_keys import waiting_queue_name

    names = [waiting_queue_name(pid, key) for key in keys]
    for name in names:
        assert DOMAIN_REGEX["queue-name"].match(name) and len(name.encode()) <= 255
    assert names[0] != names[1]
    assert waiting_queue_name(pid, "plain-key") == f"{pid}-execution-waiting-plain-key"


@pytest.mark.parametrize(
    ("partitions", "message"),
    [
        ({"мой": {"default": 1}}, "may contain only ASCII letters"),
        ({"a=b": {"default": 1}}, "may contain only ASCII letters"),
        ({"ok": {"défaut": 1}}, "may contain only ASCII letters"),
        ({"ok": {"default": 10**9}}, "<= 1000"),
    ],
)
def test_config_refuses_partitions_the_broker_cannot_hold(
    partitions: dict[str, Any], message: str
) -> None:
    from roger_actors.config import Config
    from roger_actors.errors import ConfigError

    with pytest.raises(ConfigError, match="partitions") as info:
        Config(partitions=partitions)
    assert message in str(info.value)


def test_queue_define_gives_a_checked_type_and_max_workers_pair() -> None:
    q = roger.Queue.define("default", 10)
    assert (q.type, q.max_workers) == ("default", 10)
    assert tuple(q) == ("default", 10)
    assert normalise_queue_defs([q, roger.Queue.define("other", 0)]) == {"default": 10, "other": 0}
    with pytest.raises(ValueError, match=r"Queue\.define.*max_workers"):
        roger.Queue.define("default", -1)
    with pytest.raises(ValueError, match=r"Queue\.define"):
        roger.Queue.define("bad.type", 1)
