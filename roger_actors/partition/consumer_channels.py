"""A partition's work queues on the broker, as one Consumer consumes them.

:class:`ConsumerChannels` declares a queue type's queues (the work queue and
its ``.invalid`` dead-letter target) and runs one consumer
channel per queue type on the Consumer's :class:`~roger_actors.transport.amqp.AmqpLink`:
started, paused (``basic.cancel``), resumed, its prefetch changed, applied
a reconfiguration, reconciled with what should run.

Every change of the consumers runs *in turn*: after the ones begun before it
have finished. Without that a pause could run while a resume's
``basic.consume`` is under way (it then finds no consumer to cancel, and the
queue is consumed while paused), or two resumes could both start a
consumer. Every coroutine runs on the Consumer's loop thread and raises what
the broker raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, TypeVar

from roger_actors.queue import Queue
from roger_actors.transport.amqp import AmqpLink

from .consumer_core import QueuesPlan

T = TypeVar("T")


class ConsumerChannels:
    """The consumer channels of partition ``partition_id``; see the module
    docstring. ``delivery_limit`` is the config key new work queues are
    declared with."""

    def __init__(
        self,
        link: AmqpLink,
        partition_id: str,
        delivery_limit: int,
    ) -> None:
        self.link = link
        self.partition_id = partition_id
        self.delivery_limit = delivery_limit
        self._turns: asyncio.Lock | None = None

    def work_queue(self, queue_type: str) -> str:
        """The name of ``queue_type``'s work queue."""
        return Queue.make_name(self.partition_id, queue_type)

    async def in_turn(self, change: Awaitable[T]) -> T:
        """Await ``change`` after the changes begun before it; its result."""
        if self._turns is None:
            self._turns = asyncio.Lock()  # made on the loop thread
        async with self._turns:
            return await change

    async def declare(self, queue_type: str) -> None:
        """Declare ``queue_type``'s work queue (a quorum queue with the
        delivery limit, where the broker has them) and its ``.invalid`` queue
        (its dead-letter target). The buried queue is declared by the first
        burial, as in Roger (``Retry.setup_retry_queue``): an idle
        partition's start declares two queues per queue type."""
        await self.link.declare_work_queue(self.work_queue(queue_type), self.delivery_limit)

    async def open(self, plan: Iterable[tuple[str, int, int]]) -> None:
        """Connect the link, then, for each ``(queue_type, max_workers,
        prefetch)``, declare its queues and make its consumer (not started:
        deliveries start with :meth:`resume`) unless ``max_workers`` is 0."""

        async def go() -> None:
            await self.link.connect()
            for name, limit, prefetch in plan:
                await self.declare(name)
                if limit > 0:
                    await self.link.consume(name, self.work_queue(name), prefetch, start=False)

        await self.in_turn(go())

    async def consume(self, queue_type: str, prefetch: int, start: bool) -> None:
        """Make ``queue_type``'s consumer again (a new channel), started when ``start``."""
        await self.in_turn(
            self.link.consume(queue_type, self.work_queue(queue_type), prefetch, start)
        )

    async def set_prefetch(self, queue_type: str, prefetch: int) -> None:
        """Change the prefetch of ``queue_type``'s channel."""
        await self.in_turn(self.link.set_prefetch(queue_type, prefetch))

    async def pause(self, names: Iterable[str]) -> None:
        """Stop the consumers of ``names`` (deliveries held stay held)."""
        await self.in_turn(self._pause(list(names)))

    async def resume(self, names: Iterable[str]) -> None:
        """Start the consumers of ``names`` again."""
        await self.in_turn(self._resume(list(names)))

    async def reconcile(self, run: Iterable[str], stop: Iterable[str]) -> None:
        """Stop the consumers of ``stop``, then start those of ``run``, in one turn."""

        async def go() -> None:
            await self._pause(list(stop))
            await self._resume(list(run))

        await self.in_turn(go())

    async def apply(self, plan: QueuesPlan, consuming: bool) -> None:
        """Apply a reconfiguration: the consumers of removed queues stop, added
        queues are declared and consumed (started when ``consuming`` and not
        paused), changed ones take their prefetch (a prefetch of 0 stops the
        consumer, one from ``max_workers`` 0 makes it)."""

        async def go() -> None:
            for name in plan.removed:
                await self.link.pause(name)
            for name, (prefetch, paused) in plan.added.items():
                await self.declare(name)
                if prefetch > 0:
                    start = consuming and not paused
                    await self.link.consume(name, self.work_queue(name), prefetch, start=start)
            for name, (previous, prefetch, paused) in plan.changed.items():
                if prefetch == 0:
                    await self.link.pause(name)
                elif previous == 0:
                    start = consuming and not paused
                    await self.link.consume(name, self.work_queue(name), prefetch, start=start)
                else:
                    await self.link.set_prefetch(name, prefetch)

        await self.in_turn(go())

    async def counts(self, queue_type: str) -> tuple[int, int]:
        """The broker's ``(messages, consumers)`` of ``queue_type``'s work queue.
        ConnectionError naming the partition while the link is down or drops
        under the look (the client library's own error for a closed
        connection is not the caller's to parse); the queue's own error (say,
        it was deleted) as it is."""
        if not self.link.is_open:
            raise ConnectionError(f"partition {self.partition_id!r}: not connected to the broker")
        try:
            return await self.link.counts(self.work_queue(queue_type))
        except Exception as exc:
            if self.link.is_open:
                raise
            raise ConnectionError(
                f"partition {self.partition_id!r}: the broker connection dropped: {exc}"
            ) from None

    async def stats(self, queues: Mapping[str, tuple[int, bool]]) -> dict[str, dict[str, Any]]:
        """``{queue: {max_workers, paused, message_count, consumer_count}}`` of
        ``queues`` (``{queue: (max_workers, paused)}``), the counts from the
        broker (:meth:`counts`)."""
        stats: dict[str, dict[str, Any]] = {}
        for name, (max_workers, paused) in queues.items():
            messages, consumers = await self.counts(name)
            stats[name] = {
                "max_workers": max_workers,
                "paused": paused,
                "message_count": messages,
                "consumer_count": consumers,
            }
        return stats

    async def purge(self, queue_type: str) -> int:
        """Purge ``queue_type``'s work queue; the number of messages removed."""
        return await self.link.purge(self.work_queue(queue_type))

    async def _pause(self, names: list[str]) -> None:
        for name in names:
            await self.link.pause(name)

    async def _resume(self, names: list[str]) -> None:
        for name in names:
            await self.link.resume(name)


__all__ = ["ConsumerChannels"]
