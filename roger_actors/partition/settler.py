"""What a Consumer writes on the broker and in Global when a delivery ends.

:class:`Settler` carries out, on the Consumer's loop thread, the effects of
:mod:`~roger_actors.partition.consumer_core` that end a delivery:

- :meth:`~Settler.record`: a job's outcome (``RecordThenAck``): its next copy
  published with confirm to a retry or buried queue, its queue key freed in
  Global, then the ack (or its lease's end);
- :meth:`~Settler.set_aside`: a delivery that is no job, moved body unchanged
  to ``<partition>-<queue>.invalid`` with the reason in
  :data:`INVALID_HEADER`, the queue key its payload declares freed, then
  acked;
- :meth:`~Settler.clear_cancel`: a cancelled job's mark cleared in Global,
  and its queue key freed when this call cleared it;
- :meth:`~Settler.give_back`: a delivery not run returned to its queue as a
  fresh copy (:mod:`~roger_actors.partition.lease`).

Nothing is acked before what it records is in place: the queue key is
freed *before* the ack, so a Consumer that dies in between leaves the job to
be redelivered, whose copy frees the key at its own outcome. An outcome whose
delivery's channel is gone records nothing more (:meth:`~Settler.delivery_open`):
the broker requeued the job, and its copy gets an outcome of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from roger_actors.job import Job, bounded_repr, declared_queue_key, queue_key_of
from roger_actors.queue import Queue
from roger_actors.transport.amqp import AmqpLink, Delivery, properties

from . import retry
from .consumer_core import CopyTo, RecordThenAck
from .headers import kept_headers
from .lease import LeaseKeeper

log = logging.getLogger("roger_actors.consumer")

INVALID_HEADER = "x-roger-invalid"
#: Longest reason put in the ``x-roger-invalid`` header, in characters.
INVALID_REASON_CHARS = 256
#: First wait before a failed retry or burial publish is tried again (seconds).
SETTLE_RETRY_FIRST_SECONDS = 0.1
#: Longest wait between two tries of a retry or burial publish (seconds).
SETTLE_RETRY_MAX_SECONDS = 5.0
#: Seconds between two tries of freeing a queue key while Global does not answer.
FREE_RETRY_SECONDS = 1.0
#: At most this many "invalid job payload" log lines per :data:`INVALID_LOG_WINDOW`.
INVALID_LOG_LINES = 10
INVALID_LOG_WINDOW = 10.0

#: ``ask(op, args)``: a Global request of the partition.
Ask = Callable[[str, list[Any]], Awaitable[Any]]


class Settler:
    """One Consumer's settling on the broker; see the module docstring.

    ``keeper`` holds the Consumer's leases; ``ask(op, args)`` is its Global
    request (raises ValueError when Global refuses, another error when it
    does not answer); ``budget()`` the bytes of a delivery's headers that may
    be republished; ``clock`` monotonic seconds (injectable for tests)."""

    def __init__(
        self,
        link: AmqpLink,
        keeper: LeaseKeeper,
        partition_id: str,
        ask: Ask,
        budget: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.keeper = keeper
        self.partition_id = partition_id
        self.ask = ask
        self.budget = budget
        self.clock = clock
        #: Expiring queues (retry queues) -> when this Consumer last touched them.
        self._touched: dict[str, float] = {}
        #: Rate limit of the "invalid job payload" log lines (note_invalid).
        self._log_since = float("-inf")
        self._log_lines = 0
        self._log_skipped = 0

    def delivery_open(self, delivery: Delivery) -> bool:
        """True while ``delivery`` can still be acked: a lease holds it, or its
        consumer channel is the one it came on and is open. Loop thread."""
        if self.keeper.holds(delivery):
            return True  # a lease holds it: it is ours whatever its channel
        consumer = self.link.consumers.get(delivery.key)
        return (
            self.link.is_open
            and consumer is not None
            and consumer.generation == delivery.generation
            and not consumer.channel.is_closed
        )

    async def free_queue_key(self, key: str, delivery: Delivery) -> None:
        """The job of ``delivery`` left the queue for good: free its queue key in
        Global. Never raises. Frees nothing when the delivery's channel is gone
        (the broker requeued the job: the copy it delivers again holds the key
        and frees it at its own outcome). While Global does not answer (no
        Global, a timeout) it tries again every :data:`FREE_RETRY_SECONDS`, as
        long as the delivery is open; a request Global refuses is logged and
        given up."""
        failures = 0
        while self.delivery_open(delivery):
            try:
                await self.ask("remove_queued", [key])
                return
            except ValueError as exc:
                log.error(
                    "%s: Global refused to free queue key %s: %s",
                    self.partition_id,
                    bounded_repr(key),
                    exc,
                )
                return
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    log.warning(
                        "%s: freeing queue key %s (attempt %d): %r; trying again",
                        self.partition_id,
                        bounded_repr(key),
                        failures,
                        exc,
                    )
                await asyncio.sleep(FREE_RETRY_SECONDS)

    async def clear_cancel(self, job: Job, delivery: Delivery) -> bool:
        """Clear the job's cancel mark in Global; True when this call cleared it
        (then its queue key is freed too, before the ack: it left the queue).
        Raises when Global does not answer (nothing was freed)."""
        cleared = bool(await self.ask("is_cancelled", [job.id, True]))
        queue_key = queue_key_of(job)
        if cleared and queue_key is not None:
            await self.free_queue_key(queue_key, delivery)
        return cleared

    async def record(
        self, delivery: Delivery, job: Job, outcome: str, effect: RecordThenAck
    ) -> None:
        """Carry out ``effect`` for ``delivery``: the job's next copy published
        (:meth:`publish_copy`), its queue key freed (:meth:`free_queue_key`),
        then the ack or its lease's end. Stops early, acking nothing, when
        the delivery's channel is gone before the copy is in place. Raises
        only what the final ack raises."""
        self.keeper.claim(delivery)  # a lease it has is settled below
        if effect.copy is not None:
            props = properties(message_id=job.id, app_id=self.partition_id)
            if not await self.publish_copy(delivery, effect.copy, props, outcome):
                return  # its channel is gone: the broker delivers the job again
        if effect.free_queue_key is not None:
            await self.free_queue_key(effect.free_queue_key, delivery)
        await self.keeper.settle(delivery)  # the ack, or the lease's end

    async def publish_copy(
        self, delivery: Delivery, copy: CopyTo, props: Any, outcome: str
    ) -> bool:
        """Declare the retry or buried queue of ``copy`` and publish the job's
        next copy into it, with confirm. Never raises. A publish that fails
        (the queue expired between declare and publish and the copy reached no
        queue, a nack, a channel error) is tried again, the queue declared
        anew, with a back-off from :data:`SETTLE_RETRY_FIRST_SECONDS` up to
        :data:`SETTLE_RETRY_MAX_SECONDS`, as long as the delivery can still be
        acked. Returns True once published, False when the delivery's channel
        is gone first (the broker requeued it, and its copy gets an outcome of
        its own), so that nothing is acked without its copy in place."""
        name, arguments, body = copy.queue, dict(copy.arguments), copy.body
        delay, failures = SETTLE_RETRY_FIRST_SECONDS, 0
        while self.delivery_open(delivery):
            try:
                await self.link.declare_replicated(name, arguments)
                if "x-expires" in arguments:
                    await self._touch(name)
                await self.link.publish(name, body, props)
                return True
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning(
                        "%s: publishing a job's %s copy to %s (attempt %d): %r; trying again",
                        self.partition_id,
                        outcome,
                        name,
                        failures,
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, SETTLE_RETRY_MAX_SECONDS)
        return False

    async def _touch(self, name: str) -> None:
        """Use the expiring queue ``name`` (:meth:`AmqpLink.touch`) unless this
        Consumer did in the last :data:`retry.TOUCH_SECONDS`, so that it never
        expires while jobs go through it. Raises what the touch raises."""
        moment = self.clock()
        last = self._touched.get(name)
        if last is not None and moment - last < retry.TOUCH_SECONDS:
            return
        await self.link.touch(name)
        self._touched[name] = moment

    def set_aside(self, delivery: Delivery, reason: str, free_key: bool = True) -> Awaitable[None]:
        """Log the reason (rate-limited: :meth:`note_invalid`) and return the
        coroutine that moves ``delivery`` to its queue's ``.invalid``: body
        unchanged, the headers bounded (:func:`~.headers.kept_headers`), the
        reason cut to :data:`INVALID_REASON_CHARS` in :data:`INVALID_HEADER`;
        then, when ``free_key``, it frees the queue key the payload declares
        (never decoding more than that), and acks the delivery. The coroutine
        raises what the publish or the ack raise (the delivery is then
        redelivered, and set aside again)."""
        reason = reason[:INVALID_REASON_CHARS]
        self.note_invalid(reason)
        name = Queue.invalid_name(self.partition_id, delivery.key)
        headers = kept_headers(delivery.headers, self.budget())
        headers[INVALID_HEADER] = reason
        key = declared_queue_key(delivery.body) if free_key else None

        async def move() -> None:
            await self.link.publish(
                name, delivery.body, properties(message_id=delivery.message_id, headers=headers)
            )
            if key is not None:  # it left the queue for good: its queue key is free
                await self.free_queue_key(key, delivery)
            await self.link.ack(delivery.key, delivery.generation, delivery.tag)

        return move()

    def give_back(self, delivery: Delivery) -> Awaitable[Any]:
        """The coroutine that returns ``delivery``, not run, to its work queue
        without it counting as a failed delivery: a fresh copy, then the ack
        (or its lease's end); see :meth:`LeaseKeeper.give_back`."""
        return self.keeper.give_back(delivery, self.delivery_open)

    def note_invalid(self, reason: str) -> None:
        """Log a set-aside payload: at most :data:`INVALID_LOG_LINES` lines per
        :data:`INVALID_LOG_WINDOW` seconds, then how many more there were."""
        moment = self.clock()
        if moment - self._log_since > INVALID_LOG_WINDOW:
            if self._log_skipped:
                log.warning(
                    "%s: %d more invalid job payloads set aside",
                    self.partition_id,
                    self._log_skipped,
                )
            self._log_since, self._log_lines, self._log_skipped = moment, 0, 0
        if self._log_lines < INVALID_LOG_LINES:
            self._log_lines += 1
            log.warning("%s: invalid job payload set aside: %s", self.partition_id, reason)
        else:
            self._log_skipped += 1


__all__ = [
    "INVALID_HEADER",
    "INVALID_REASON_CHARS",
    "SETTLE_RETRY_FIRST_SECONDS",
    "SETTLE_RETRY_MAX_SECONDS",
    "Settler",
]
