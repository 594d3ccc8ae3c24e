"""Enqueueing jobs: one, or many with pipelined publisher confirms.

Every job is published with a publisher confirm: a job the caller was told
is enqueued is on the broker, never silently lost. :func:`enqueue_jobs`
publishes many jobs at once, keeping up to :data:`PIPELINE_WINDOW` of them
in flight (published, their confirm not back yet), so a batch goes at about
the broker's speed instead of one round trip per job. Jobs without a queue
key go out in batches of half a window, each sent in one write
(:meth:`~roger_actors.transport.base.Channel.publish_many`), and reach their
queue in the order given; a job with a queue key is first
registered with its partition's Global (``is_queued(key, add=True)``), as in
Roger: a key already queued makes the job a *duplicate*, published nowhere,
and a job whose publish then fails gives its key back.

The same coroutine serves the blocking API (:class:`JobPublisher`, the hook
behind ``Job.enqueue`` and ``Job.enqueue_many``, on a
:class:`~roger_actors.transport.publisher.Publisher`'s I/O thread) and the
asyncio producer (:mod:`roger_actors.aio`, on the caller's event loop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .cluster_auth import ClusterAuth
from .errors import DuplicateJobError, EnqueueError
from .job import AmqpMessage, Job, queue_key_of
from .partition.global_client import request
from .queue import validate_partition_id
from .transport.amqp import DEFAULT_DELIVERY_LIMIT, AmqpLink, properties
from .transport.base import Nacked, Outgoing, Properties
from .transport.publisher import Publisher

log = logging.getLogger("roger_actors.enqueue")

#: Most jobs of one call published and waiting for their confirm at a time.
PIPELINE_WINDOW = 512
#: Seconds a Global request (a queue key's registration) may take.
GLOBAL_TIMEOUT = 10.0


@dataclass
class Enqueued:
    """What became of the jobs of one :func:`enqueue_jobs` call, each list in
    the order the jobs were given: ``confirmed`` (on the broker),
    ``duplicates`` (a job with the same queue key is queued or running:
    published nowhere), ``failed`` (not confirmed, with the error; a queue key
    it registered was given back)."""

    confirmed: list[Job] = field(default_factory=list)
    duplicates: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, BaseException]] = field(default_factory=list)

    def duplicates_or_raise(self, partition_id: str) -> list[Job]:
        """The duplicates, when every other job was confirmed; else raises
        :class:`EnqueueError` (from the first job's error) with the lists."""
        if self.failed:
            raise EnqueueError.of_batch(
                partition_id, self.confirmed, self.duplicates, self.failed
            ) from self.failed[0][1]
        return self.duplicates

    def one_or_raise(self, partition_id: str) -> None:
        """For a call of one job: returns when it was confirmed; raises
        DuplicateJobError for a duplicate, else the job's own error."""
        if self.duplicates:
            raise duplicate_error(self.duplicates[0], partition_id)
        if self.failed:
            raise self.failed[0][1]


async def enqueue_jobs(
    link: AmqpLink,
    jobs: Sequence[Job],
    partition_id: str,
    queue: str | None = None,
    *,
    auth: ClusterAuth,
    max_payload_bytes: int | None = None,
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
    declared: set[str] | None = None,
    window: int = PIPELINE_WINDOW,
) -> Enqueued:
    """Publish ``jobs`` into partition ``partition_id`` (their queue types, or
    ``queue`` for all), each with a confirm, up to ``window`` in flight.

    Every job is turned into its message first (:meth:`Job.to_amqp`): a bad
    partition id or queue, an invalid job or a payload over
    ``max_payload_bytes`` raises (TypeError, ValueError, InvalidJobError)
    before anything is published. Each work queue is declared once (with
    ``delivery_limit``; those in ``declared`` are skipped, and the ones
    declared are added to it) so jobs enqueued before any node started the
    partition wait in their queue. Then each job is registered (a queue key)
    and published; what became of each is in the result: nothing else
    raises, except a declare that fails (nothing was published then) and
    cancellation (jobs under way may be on the broker or not). Runs on the
    link's loop."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window!r}")
    pid = validate_partition_id(partition_id)
    messages = [job.to_amqp(pid, queue, max_payload_bytes) for job in jobs]
    for routing_key in dict.fromkeys(m.routing_key for m in messages):
        if declared is None or routing_key not in declared:
            await link.declare_work_queue(routing_key, delivery_limit)
            if declared is not None:
                declared.add(routing_key)
    outcomes: list[tuple[str, BaseException | None]] = [("", None)] * len(jobs)
    keys = [queue_key_of(job) for job in jobs]
    keyed = [(i, key) for i, key in enumerate(keys) if key is not None]
    plain = [i for i, key in enumerate(keys) if key is None]
    size = max(1, window // 2)
    batches = iter([plain[start : start + size] for start in range(0, len(plain), size)])
    work = iter(keyed)

    async def batch_publisher() -> None:
        # Each takes the next batch and sends it before yielding, so batches
        # go out in the order given; two of them (``window`` jobs at most)
        # wait for their confirms at once.
        for indexes in batches:
            for index, error in zip(
                indexes, await _publish_batch(link, [messages[i] for i in indexes]), strict=True
            ):
                outcomes[index] = ("confirmed", None) if error is None else ("failed", error)

    async def publisher() -> None:
        # A job with a queue key is registered with Global first: up to
        # ``window`` of them are under way at once.
        for index, key in work:
            outcomes[index] = await _enqueue_keyed(link, key, messages[index], pid, auth)

    runners = [
        *(batch_publisher() for _ in range(min(window // size, -(-len(plain) // size)))),
        *(publisher() for _ in range(min(window, len(keyed)))),
    ]
    if len(runners) == 1:  # one job, or one batch: no task of its own (a loop round less)
        await runners[0]
    else:
        await asyncio.gather(*runners)
    result = Enqueued()
    for job, (status, error) in zip(jobs, outcomes, strict=True):
        if status == "confirmed":
            result.confirmed.append(job)
        elif status == "duplicate":
            result.duplicates.append(job)
        else:
            assert error is not None
            result.failed.append((job, error))
    return result


async def _publish_batch(link: AmqpLink, messages: list[AmqpMessage]) -> list[BaseException | None]:
    """Publish ``messages`` (jobs without a queue key) pipelined; each one's
    error, or None once confirmed."""
    try:
        outgoing = [Outgoing(m.routing_key, m.body, _props(m)) for m in messages]
        outcomes = await link.publish_many(outgoing)
    except Exception as exc:  # the link is down, the control channel cannot reopen...
        return [exc] * len(messages)
    return list(outcomes)


def _props(message: AmqpMessage) -> Properties:
    """The AMQP properties of a job's message."""
    props = message.properties
    return properties(
        message_id=props.get("message_id"),
        app_id=props.get("app_id"),
        content_type=props.get("content_type"),
        persistent=props.get("delivery_mode", 2) == 2,
    )


async def _enqueue_keyed(
    link: AmqpLink, key: str, message: AmqpMessage, partition_id: str, auth: ClusterAuth
) -> tuple[str, BaseException | None]:
    """``("confirmed" | "duplicate" | "failed", error)`` of one job whose
    queue key is ``key``: registered with Global, then published (the key
    given back if the publish fails)."""
    try:
        queued = await request(link, partition_id, "is_queued", [key, True], GLOBAL_TIMEOUT, auth)
    except Exception as exc:
        return "failed", exc
    if queued:
        return "duplicate", None
    try:
        await link.publish(message.routing_key, message.body, _props(message))
    except Exception as exc:
        try:
            await request(link, partition_id, "remove_queued", [key], GLOBAL_TIMEOUT, auth)
        except Exception:
            log.exception("could not give queue key %r back after a failed publish", key)
        return "failed", exc
    return "confirmed", None


def duplicate_error(job: Job, partition_id: str) -> DuplicateJobError:
    """The error of a job refused as a duplicate."""
    key = queue_key_of(job)
    return DuplicateJobError(
        f"a job with queue key {key!r} is already queued or running in partition {partition_id!r}",
        key,
    )


class JobPublisher:
    """The enqueue hook of a process (see :func:`~roger_actors.job.set_enqueue_hook`):
    ``Job.enqueue`` calls it, ``Job.enqueue_many`` calls :meth:`many`. Both
    block the calling thread; they run on ``publisher``'s connection and I/O
    thread, one call at a time. ``auth`` signs the Global requests."""

    def __init__(self, publisher: Publisher, auth: ClusterAuth) -> None:
        self.publisher = publisher
        self.auth = auth

    def __call__(self, job: Job, partition_id: str, queue: str | None) -> None:
        """Enqueue one job and wait for its confirm. Raises DuplicateJobError
        (nothing published), what :func:`enqueue_jobs` raises, or the job's own
        error (Nacked, ConnectionError, NotStartedError for a queue key with
        no Global, GlobalTimeoutError...), after which its queue key is free
        again; ``TimeoutError`` when the publisher's timeout passed first
        (the job may be on the broker or not)."""
        self._run([job], partition_id, queue).one_or_raise(partition_id)

    def many(self, jobs: Sequence[Job], partition_id: str, queue: str | None) -> list[Job]:
        """Enqueue ``jobs`` with pipelined confirms; returns the duplicates
        (published nowhere), in the order given. Raises :class:`EnqueueError`
        (naming how many failed, with ``confirmed``, ``duplicates`` and
        ``failed`` lists) when some job was not confirmed: the confirmed ones
        are on the broker, the failed ones may be enqueued again. Raises what
        :func:`enqueue_jobs` raises before publishing, and ``TimeoutError``
        when the publisher's timeout (once per :data:`PIPELINE_WINDOW` jobs)
        passed first (jobs may be on the broker or not)."""
        return self._run(list(jobs), partition_id, queue).duplicates_or_raise(partition_id)

    def _run(self, jobs: list[Job], partition_id: str, queue: str | None) -> Enqueued:
        publisher = self.publisher

        def run(link: AmqpLink) -> Any:
            return enqueue_jobs(
                link,
                jobs,
                partition_id,
                queue,
                auth=self.auth,
                max_payload_bytes=publisher.max_payload_bytes,
                delivery_limit=publisher.delivery_limit,
                declared=publisher.declared,
            )

        rounds = 1 + len(jobs) // PIPELINE_WINDOW
        result: Enqueued = publisher.run_on_link(run, timeout=publisher.timeout * rounds)
        if any(isinstance(error, (Nacked, ConnectionError)) for _, error in result.failed):
            # Right after a broker node of a cluster died, a channel may go on
            # getting nacks for a quorum queue whose leader moved: the next
            # call gets a new connection (the next address first).
            publisher.drop_link()
        return result


__all__ = ["PIPELINE_WINDOW", "Enqueued", "JobPublisher", "enqueue_jobs"]
