"""Enqueueing: from a producer-only process, before any node started the partition."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import cbor2
import pytest

import roger_actors as roger
from roger_actors.queue import Queue
from tests.partition_harness import BROKER, counts, delete_queues, drain
from tests.roger_jobs import RecordJob

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def partition() -> Iterator[str]:
    pid = f"enq-{uuid.uuid4().hex[:10]}"
    try:
        yield pid
    finally:
        roger.stop()
        names = [Queue.make_name(pid, "default"), Queue.make_name(pid, "other")]
        delete_queues(names + [f"{name}.invalid" for name in names])


def test_enqueue_without_a_node_raises_not_started() -> None:
    job = roger.Job.create(RecordJob, ["/dev/null", 1])
    with pytest.raises(roger.NotStartedError):
        job.enqueue("nobody")


def test_a_producer_enqueues_before_any_node_started_the_partition(partition: str) -> None:
    roger.start_producer({"amqp": BROKER})
    job = roger.Job.create(RecordJob, ["/dev/null", "x"])

    job.enqueue(partition)

    assert counts(Queue.make_name(partition, "default")) == (1, 0)
    [(body, _headers, message_id)] = drain(Queue.make_name(partition, "default"))
    payload = cbor2.loads(body)
    assert message_id == job.id
    assert payload["id"] == job.id
    assert isinstance(payload["queued_at"], int), "queued_at is set when enqueued"


def test_enqueue_with_a_queue_override_goes_to_that_queue(partition: str) -> None:
    roger.start_producer({"amqp": BROKER})
    roger.Job.create(RecordJob, ["/dev/null", "y"]).enqueue(partition, "other")
    assert counts(Queue.make_name(partition, "other")) == (1, 0)
    assert counts(Queue.make_name(partition, "default")) is None, "default queue untouched"
