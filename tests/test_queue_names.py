"""Specification of queue naming (Roger's Roger.Queue.make_name and friends)."""

from __future__ import annotations

import enum
from typing import Any

import pytest

import roger_actors as roger
from roger_actors.queue import (
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
    assert len(roger.Queue.make_name("p" * 247, "default")) == 255
    with pytest.raises(ValueError, match="at most 255"):
        roger.Queue.make_name("p" * 248, "default")
    with pytest.raises(ValueError, match="at most 255"):
        roger.Queue.make_name("é" * 124, "default")  # 248 bytes of UTF-8


def test_partition_ids_may_contain_dashes_dots_and_unicode() -> None:
    assert roger.Queue.make_name("my-app.eu", "default") == "my-app.eu-default"
    assert validate_partition_id("tenant-ü") == "tenant-ü"


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
