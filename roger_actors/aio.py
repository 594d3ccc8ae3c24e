"""Enqueueing from asyncio code: :class:`Producer`.

A producer has its own broker connection, on the caller's event loop: its
calls never block the loop, and many may run at once (their confirms are
pipelined on the one connection). Every job is confirmed by the broker
before the call returns, as with ``Job.enqueue``::

    from roger_actors.aio import Producer

    async with Producer({"amqp": "amqp://guest:guest@localhost/"}) as producer:
        await producer.enqueue(MyJob.create([1]), "tenant-42")
        duplicates = await producer.enqueue_many(jobs, "tenant-42")

It needs no node in the process (it is a producer), and it is independent
of ``roger_actors.start_producer``: a process may have both.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from .cluster_auth import ClusterAuth
from .config import Config
from .enqueue import Enqueued, enqueue_jobs
from .errors import NotStartedError
from .job import Job, checked_jobs
from .queue import normalise_queue_type
from .transport.amqp import AmqpLink


class Producer:
    """Enqueue jobs from asyncio code over a connection of its own.

    ``config`` is a :class:`~roger_actors.Config`, a dict of config keys, a
    path to a TOML file, or None (defaults and ``ROGER_*`` environment); the
    producer uses ``amqp`` (several addresses fail over), ``cluster_secret``
    (to sign its Global requests for queue keys), ``max_payload_bytes`` and
    ``delivery_limit``. ``amqp = "memory://name"`` works in the process whose
    node runs that embedded broker. Raises ConfigError for a bad config.

    It connects on :meth:`start` (or entering ``async with``), and again on
    the next call after the connection dropped. Calls made after
    :meth:`close` raise :class:`~roger_actors.errors.NotStartedError`.
    """

    def __init__(self, config: Config | dict[str, Any] | str | None = None) -> None:
        from .node import producer_config

        self.config = producer_config(config)
        self._auth = ClusterAuth(self.config.cluster_secret)
        self._link: AmqpLink | None = None
        self._connecting: asyncio.Lock | None = None
        self._declared: set[str] = set()
        self._closed = False

    async def start(self) -> Producer:
        """Connect (trying the broker addresses in turn); returns self. Raises
        ConnectionError naming every address tried when none answered."""
        await self._ready()
        return self

    async def close(self) -> None:
        """Close the connection (calls under way fail); later calls raise
        NotStartedError. Never raises."""
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            try:
                await link.close()
            except Exception:
                pass

    async def __aenter__(self) -> Producer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def enqueue(
        self, job: Job, partition_id: str, queue: str | enum.Enum | None = None
    ) -> None:
        """Enqueue ``job`` in a partition (``queue`` overrides its queue type)
        and wait for the broker's confirm.

        Raises what ``Job.enqueue`` raises: DuplicateJobError when its queue
        key is already queued or running (nothing published), TypeError,
        ValueError or InvalidJobError for a bad argument or job (nothing
        published), and the job's own error (the broker nacked it, the
        connection dropped, no Global answered for its queue key), after which
        its queue key is free again and the job may be enqueued again."""
        if not isinstance(job, Job):
            raise TypeError(f"job must be a Job, got {type(job).__name__}")
        (await self._enqueue([job], partition_id, queue)).one_or_raise(partition_id)

    async def enqueue_many(
        self, jobs: Iterable[Job], partition_id: str, queue: str | enum.Enum | None = None
    ) -> list[Job]:
        """Enqueue ``jobs`` with pipelined confirms; returns the duplicates
        (published nowhere), in the order given. Jobs without a queue key
        reach their queue in the order given.

        Everything is validated before anything is published (TypeError,
        ValueError, InvalidJobError). Raises
        :class:`~roger_actors.errors.EnqueueError` when some job was not
        confirmed; its ``confirmed``, ``duplicates`` and ``failed`` lists say
        what became of each (the failed ones may be enqueued again)."""
        result = await self._enqueue(checked_jobs(jobs), partition_id, queue)
        return result.duplicates_or_raise(partition_id)

    async def _enqueue(
        self, jobs: list[Job], partition_id: str, queue: str | enum.Enum | None
    ) -> Enqueued:
        override = None if queue is None else normalise_queue_type(queue, argument="queue")
        return await enqueue_jobs(
            await self._ready(),
            jobs,
            partition_id,
            override,
            auth=self._auth,
            max_payload_bytes=self.config.max_payload_bytes,
            delivery_limit=self.config.delivery_limit,
            declared=self._declared,
        )

    async def _ready(self) -> AmqpLink:
        """The open link, connecting first when there is none."""
        if self._closed:
            raise NotStartedError("this Producer is closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._link is None or not self._link.is_open:
                link = AmqpLink(
                    self.config.amqp.urls(),
                    lambda event: None,
                    self.config.amqp.connection_timeout_seconds or 10,
                )
                await link.connect()
                self._declared.clear()
                self._link = link
            return self._link


__all__ = ["Producer"]
