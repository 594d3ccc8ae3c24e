"""The RabbitMQ persister keeps the last snapshot per partition, on the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from roger_actors.persisters import RabbitMQ
from tests.partition_harness import counts, delete_queues, publish_raw

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def partition() -> Iterator[str]:
    pid = f"state-{uuid.uuid4().hex[:10]}"
    try:
        yield pid
    finally:
        delete_queues([RabbitMQ.queue_name(pid)])


def test_nothing_stored_loads_none(partition: str) -> None:
    persister = RabbitMQ()
    try:
        persister.init(partition)
        assert persister.load(partition) is None
    finally:
        persister.close()


def test_load_returns_the_last_snapshot_and_leaves_it_in_place(partition: str) -> None:
    persister = RabbitMQ()
    try:
        persister.store(partition, b"first")
        persister.store(partition, b"second")

        assert persister.load(partition) == b"second"
        assert persister.load(partition) == b"second", "a load does not consume it"
        assert counts(RabbitMQ.queue_name(partition)) == (1, 0)
    finally:
        persister.close()


def test_a_snapshot_survives_the_persister_and_is_seen_by_another_one(partition: str) -> None:
    writer = RabbitMQ()
    writer.store(partition, b"\x00state\xff")
    writer.close()
    reader = RabbitMQ()
    try:
        assert reader.load(partition) == b"\x00state\xff"
    finally:
        reader.close()


def test_storing_something_else_than_bytes_is_refused(partition: str) -> None:
    persister = RabbitMQ()
    try:
        with pytest.raises(TypeError, match="data must be bytes"):
            persister.store(partition, "text")  # type: ignore[arg-type]
    finally:
        persister.close()


def test_a_message_not_marked_as_a_snapshot_is_refused_on_load(partition: str) -> None:
    persister = RabbitMQ()
    try:
        persister.init(partition)
        publish_raw(RabbitMQ.queue_name(partition), b"\xa1av\x01")  # anyone may publish there
        with pytest.raises(ValueError, match="is not a Global snapshot"):
            persister.load(partition)
        persister.store(partition, b"mine")
        assert persister.load(partition) == b"mine"
    finally:
        persister.close()
