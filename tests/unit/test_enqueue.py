"""Specification: publishing jobs with pipelined confirms
(``roger_actors.enqueue.enqueue_jobs``), on the in-memory broker.

Run with ``scripts/test tests/unit/test_enqueue.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import pytest

from roger_actors.cluster_auth import ClusterAuth
from roger_actors.enqueue import Enqueued, enqueue_jobs
from roger_actors.errors import EnqueueError, InvalidJobError, NotStartedError
from roger_actors.job import Job
from roger_actors.queue import Queue
from roger_actors.transport.amqp import AmqpLink
from roger_actors.transport.base import Outgoing
from tests.memory_rig import Rig

PARTITION = "enq"
T = TypeVar("T")


class Plain(Job):
    def perform(self, args: Any) -> Any:
        return None


class Keyed(Job):
    def perform(self, args: Any) -> Any:
        return None

    def queue_key(self, args: Any) -> str | None:
        return "k"


class CountingLink(AmqpLink):
    """A link that records how many publishes wait for their confirm at once
    (one by one, or in pipelined batches)."""

    in_flight = 0
    most = 0

    async def _counted(self, count: int, publishing: Awaitable[T]) -> T:
        self.in_flight += count
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.001)  # a confirm takes a round trip
            return await publishing
        finally:
            self.in_flight -= count

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        await self._counted(1, super().publish(*args, **kwargs))

    async def publish_many(self, messages: Sequence[Outgoing], *args: Any) -> Any:
        return await self._counted(len(messages), super().publish_many(messages, *args))


def _enqueue(rig: Rig, link: AmqpLink, jobs: list[Job], **options: Any) -> Enqueued:
    return rig.run(enqueue_jobs(link, jobs, PARTITION, auth=ClusterAuth(None), **options))


def _link(rig: Rig) -> CountingLink:
    link = CountingLink(rig.url, lambda event: None, timeout=2.0)
    rig.run(link.connect())
    return link


def test_jobs_are_confirmed_in_order_with_at_most_a_window_in_flight(rig: Rig) -> None:
    link = _link(rig)
    jobs = [Job.create(Plain, [i]) for i in range(11)]
    result = _enqueue(rig, link, jobs, window=4)
    assert result.confirmed == jobs and not result.failed and not result.duplicates
    assert link.most == 4  # pipelined, and bounded
    queued = rig.get_all(Queue.make_name(PARTITION, "default"))
    assert [m.properties.message_id for m in queued] == [job.id for job in jobs]


@pytest.mark.parametrize("window", [1, 3])
def test_an_odd_or_unit_window_still_bounds_the_jobs_in_flight(rig: Rig, window: int) -> None:
    link = _link(rig)
    jobs = [Job.create(Plain, [i]) for i in range(7)]
    assert _enqueue(rig, link, jobs, window=window).confirmed == jobs
    assert link.most == window


def test_keyed_jobs_are_registered_and_published_one_by_one_beside_the_batches(
    rig: Rig,
) -> None:
    link = _link(rig)
    keyed = [Job.create(Keyed, [i]) for i in range(3)]
    plain = [Job.create(Plain, [i]) for i in range(5)]
    result = _enqueue(rig, link, [*plain[:2], *keyed, *plain[2:]], window=4)
    assert result.confirmed == plain  # no Global answers for the keyed ones
    assert [job for job, _ in result.failed] == keyed
    queued = rig.get_all(Queue.make_name(PARTITION, "default"))
    assert [m.properties.message_id for m in queued] == [job.id for job in plain]


def test_a_bad_job_or_argument_raises_before_anything_is_published(rig: Rig) -> None:
    link = _link(rig)
    jobs = [Job.create(Plain, ["x" * 100]), Job.create(Plain, ["x" * 5000])]
    with pytest.raises(InvalidJobError, match="max_payload_bytes"):
        _enqueue(rig, link, jobs, max_payload_bytes=1000)
    with pytest.raises(ValueError, match="window"):
        _enqueue(rig, link, jobs, window=0)
    assert link.most == 0


def test_a_keyed_job_without_a_global_fails_and_the_others_are_confirmed(rig: Rig) -> None:
    link = _link(rig)
    plain, keyed = Job.create(Plain, [1]), Job.create(Keyed, [2])
    result = _enqueue(rig, link, [keyed, plain])
    assert result.confirmed == [plain]
    [(job, error)] = result.failed
    assert job is keyed and isinstance(error, NotStartedError)
    with pytest.raises(EnqueueError, match="1 of 2 jobs were not enqueued") as raised:
        result.duplicates_or_raise(PARTITION)
    assert raised.value.__cause__ is error
    with pytest.raises(NotStartedError):
        result.one_or_raise(PARTITION)


def test_each_work_queue_is_declared_once_per_declared_set(rig: Rig) -> None:
    link = _link(rig)
    declared: set[str] = set()
    _enqueue(rig, link, [Job.create(Plain, [1])], declared=declared)
    assert declared == {Queue.make_name(PARTITION, "default")}
    rig.run(link.delete_queue(Queue.make_name(PARTITION, "default")))
    result = _enqueue(rig, link, [Job.create(Plain, [2])], declared=declared)
    [(_, error)] = result.failed  # not declared again: the queue is gone
    assert "NO_ROUTE" in str(error) or "no queue" in str(error).lower()
