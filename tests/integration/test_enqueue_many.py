"""Specification: enqueueing many jobs with pipelined publisher confirms
(``Job.enqueue_many``) and from asyncio code (``roger_actors.aio.Producer``),
on a node of this module.

Run with ``scripts/test tests/integration/test_enqueue_many.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

import roger_actors as roger
from roger_actors.aio import Producer
from roger_actors.queue import Queue
from tests.integration.roger.conftest import Journal, RogerHarness, app, journal, node
from tests.integration.roger.jobs import UniqueQueueTest
from tests.partition_harness import BROKER, counts, delete_queues, drain
from tests.roger_jobs import RecordJob

pytestmark = pytest.mark.timeout(90)

__all__ = ["app", "journal", "node"]  # the fixtures of Roger's port, used here


@pytest.fixture
def idle_partition(node: RogerHarness) -> Iterator[str]:
    """A partition id no node runs: its jobs stay in their queue."""
    pid = f"many-{uuid.uuid4().hex[:10]}"
    try:
        yield pid
    finally:
        names = [Queue.make_name(pid, "default"), Queue.make_name(pid, "other")]
        delete_queues(names + [f"{name}.invalid" for name in names])


def _plain(n: int, tag: str = "x") -> list[roger.Job]:
    return [roger.Job.create(RecordJob, ["/dev/null", f"{tag}{i}"]) for i in range(n)]


def _keyed(*messages: str) -> list[roger.Job]:
    return [roger.Job.create(UniqueQueueTest.MyJob, [m]) for m in messages]


def test_every_job_is_confirmed_on_its_queue_in_the_order_given(idle_partition: str) -> None:
    jobs = _plain(700)  # more than one pipeline window

    assert roger.Job.enqueue_many(jobs, idle_partition) == []

    queued = drain(Queue.make_name(idle_partition, "default"))
    assert [message_id for _, _, message_id in queued] == [job.id for job in jobs]


def test_a_queue_override_sends_every_job_there(idle_partition: str) -> None:
    roger.Job.enqueue_many(_plain(3), idle_partition, queue="other")
    assert counts(Queue.make_name(idle_partition, "other")) == (3, 0)
    assert counts(Queue.make_name(idle_partition, "default")) is None


def test_every_job_is_validated_before_any_is_published(idle_partition: str) -> None:
    jobs = _plain(2)
    with pytest.raises(TypeError, match=r"jobs\[1\] must be a Job"):
        roger.Job.enqueue_many([jobs[0], "not a job", jobs[1]], idle_partition)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="partition"):
        roger.Job.enqueue_many(jobs, "")
    assert counts(Queue.make_name(idle_partition, "default")) is None
    assert roger.Job.enqueue_many([], idle_partition) == []


def test_duplicates_are_returned_published_nowhere_and_the_others_run(
    app: str, journal: Journal
) -> None:
    first, again, other = _keyed("m1", "m1", "m2")

    assert roger.Job.enqueue_many([first, again, other], app) == [again]

    journal.wait("msg", 2)
    assert sorted(e["msg"] for e in journal.events("msg")) == ["m1", "m2"]


def test_a_keyed_job_no_global_answers_for_fails_and_the_others_are_confirmed(
    idle_partition: str,
) -> None:
    plain = _plain(2)
    [keyed] = _keyed("nobody")
    with pytest.raises(roger.EnqueueError) as raised:
        roger.Job.enqueue_many([plain[0], keyed, plain[1]], idle_partition)
    error = raised.value
    assert error.confirmed == plain and error.duplicates == []
    [(failed, cause)] = error.failed
    assert failed is keyed and isinstance(cause, roger.NotStartedError)
    assert "1 of 3 jobs were not enqueued" in str(error)
    assert counts(Queue.make_name(idle_partition, "default")) == (2, 0)


def test_the_asyncio_producer_enqueues_confirmed_and_refuses_a_duplicate(
    app: str, journal: Journal, idle_partition: str
) -> None:
    async def produce() -> list[roger.Job]:
        async with Producer({"amqp": BROKER}) as producer:
            [job] = _keyed("async-1")
            await producer.enqueue(job, app)
            with pytest.raises(roger.DuplicateJobError):
                await producer.enqueue(job, app)
            # Calls run at once on the one connection.
            await asyncio.gather(*(producer.enqueue(j, idle_partition) for j in _plain(20)))
            return await producer.enqueue_many(_plain(30, "m") + _keyed("async-1"), app)

    duplicates = asyncio.run(produce())

    assert [job.args for job in duplicates] == [["async-1"]]
    assert counts(Queue.make_name(idle_partition, "default")) == (20, 0)
    journal.wait("msg", 1, msg="async-1")


def test_a_closed_asyncio_producer_refuses_to_enqueue(idle_partition: str) -> None:
    async def produce() -> None:
        producer = await Producer({"amqp": BROKER}).start()
        await producer.close()
        with pytest.raises(roger.NotStartedError, match="closed"):
            await producer.enqueue(_plain(1)[0], idle_partition)

    asyncio.run(produce())
