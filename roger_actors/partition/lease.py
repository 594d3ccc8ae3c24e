"""Deliveries that outlive the broker's ``consumer_timeout``, and returns that
do not count as failed deliveries.

RabbitMQ closes a consumer channel whose oldest unacked delivery is older
than its ``consumer_timeout`` (30 min by default; on 3.10 a broker-wide
setting): every unacked delivery of that channel goes back to the queue, and
a long job would run again while it still runs. So a delivery the Consumer
has held for half of ``consumer_timeout`` (config key, seconds, the broker's
value) is *handed over to a lease*, wherever the job is (running, in a
worker's batch, in the backlog):

1. a copy of the message is published, with confirm, into a holding queue of
   its own, ``<partition>-<queue>.lease.<12 hex>``, with a per-message TTL
   (:func:`lease_ttl`) after which the broker dead-letters it back to the
   work queue;
2. then the original delivery is acked. If its channel is gone meanwhile (the
   broker requeued it), the holding queue is deleted again and nothing
   changed;
3. every quarter of the TTL the copy is renewed: the old copy is taken with
   ``basic.get`` (unacked: it cannot expire while held), a fresh one is
   published with confirm, then the old one is acked;
4. the job's outcome is recorded as usual (retry or burial publish, its queue
   key freed, which counts as possible while the lease is held), and then the
   holding queue is deleted instead of the ack (tried again, every second,
   until it works or the copy would have expired anyway);
5. a job given back on purpose (a paused queue, a worker that returned it)
   goes back as a fresh copy on its work queue, then the holding queue is
   deleted.

A node that dies, or a Consumer that stops renewing, leaves the copy: it
expires back into the work queue and the job runs again (at-least-once, as
for a delivery whose channel closed). The holding queue's ``x-expires`` is
twice the TTL plus :data:`~roger_actors.partition.retry.EXPIRY_MARGIN_MS` and
each renewal uses the queue, so it never expires while it still holds the
copy (RabbitMQ would delete the copy with it), even when the broker has to
try the copy's dead-lettering again.

Returns on purpose: on a quorum queue every requeue (``basic.nack``) counts
toward the ``x-delivery-limit``, and RabbitMQ 4.x drops a message past its
default limit of 20 when no dead-letter target is set. So the Consumer never
requeues a delivery it gives back on purpose: it publishes a fresh copy (with
confirm) and acks the original. The copy carries the failed deliveries of
the message so far in :data:`DELIVERIES_HEADER`, so a poison message still
reaches the limit (:func:`failed_deliveries`). The copy goes to the tail of
the queue: a job given back loses its place.

Every coroutine here runs on the Consumer's loop thread; :class:`LeaseKeeper`
serialises the operations on one delivery (hand-over, renewal, settle, give
back), so a delivery is never acked twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from roger_actors.partition.retry import AT_LEAST_ONCE_DEAD_LETTERING, EXPIRY_MARGIN_MS
from roger_actors.transport.amqp import AmqpLink, Delivery
from roger_actors.transport.base import Properties

log = logging.getLogger("roger_actors.lease")

#: Header of a copy the Consumer republished: failed deliveries of the
#: message before this copy (``x-delivery-count`` counts this copy's own).
DELIVERIES_HEADER = "x-roger-deliveries"
#: The broker's count of this copy's returns (quorum queues).
DELIVERY_COUNT_HEADER = "x-delivery-count"
#: A delivery is handed over once held this share of ``consumer_timeout``.
HANDOVER_FRACTION = 0.5
#: Longest lease TTL (seconds): how late, at most, the job of a dead node
#: comes back to its work queue.
MAX_TTL_SECONDS = 120.0
#: A copy is renewed once it is this share of the TTL old.
RENEW_FRACTION = 0.25
#: Suffix of holding queues: ``<partition>-<queue>.lease.<hex>``.
LEASE_POSTFIX = ".lease."
#: Hex digits of a holding queue's random part (fits where ``.retry.<level>`` does).
LEASE_ID_HEX = 12


def lease_ttl(consumer_timeout: float) -> float:
    """Seconds a lease copy lives: ``consumer_timeout``, at most
    :data:`MAX_TTL_SECONDS`, at least 1 s."""
    return max(1.0, min(float(consumer_timeout), MAX_TTL_SECONDS))


def holding_queue_arguments(work_queue: str, ttl: float) -> dict[str, Any]:
    """Declare arguments of a holding queue: dead-letter to ``work_queue``, and
    expire only well after its copy would have (twice the TTL and
    :data:`~roger_actors.partition.retry.EXPIRY_MARGIN_MS`)."""
    return {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": work_queue,
        "x-expires": int(ttl * 1000) * 2 + EXPIRY_MARGIN_MS,
        **AT_LEAST_ONCE_DEAD_LETTERING,
    }


def _count(value: Any) -> int:
    """A header value as a count: a non-negative int, else 0 (headers are
    untrusted input)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(0, min(value, 1 << 31))


def failed_deliveries(headers: dict[str, Any]) -> int:
    """How many deliveries of this message ended without an outcome, as its
    headers say: the broker's ``x-delivery-count`` (this copy's returns) plus
    :data:`DELIVERIES_HEADER` (those of the copies before it). 0 for anything
    malformed. Never raises."""
    return _count(headers.get(DELIVERY_COUNT_HEADER)) + _count(headers.get(DELIVERIES_HEADER))


def copy_headers(headers: dict[str, Any], extra_failures: int = 0) -> dict[str, Any]:
    """Headers of a republished copy: the delivery's own (``headers``, already
    bounded by the caller) without the broker's count, with
    :data:`DELIVERIES_HEADER` set to the failed deliveries so far plus
    ``extra_failures``."""
    out = {k: v for k, v in headers.items() if k != DELIVERY_COUNT_HEADER}
    out[DELIVERIES_HEADER] = failed_deliveries(headers) + extra_failures
    return out


def copy_properties(
    original: Properties | None, headers: dict[str, Any], expiration_ms: int | None = None
) -> Properties:
    """Properties for a copy of a delivered message: the original's (or
    none), persistent, with ``headers``, and ``expiration_ms`` when given
    (else the original's expiration)."""
    base = original if original is not None else Properties()
    expiration = base.expiration if expiration_ms is None else str(expiration_ms)
    # user_id is dropped: the broker checks it against the publisher's login.
    return base.evolve(headers=headers, delivery_mode=2, expiration=expiration, user_id=None)


def delivery_id(delivery: Delivery) -> tuple[str, int, int]:
    """The identity of a delivery: (consumer key, channel generation, tag)."""
    return delivery.key, delivery.generation, delivery.tag


@dataclass
class Lease:
    """A delivery handed over: its copy waits in ``queue``."""

    queue: str
    ttl: float
    #: When the current copy was published (monotonic).
    published: float
    #: Renewals that found the old copy gone (it had expired back).
    lapses: int = 0

    @property
    def expires(self) -> float:
        """When the current copy expires (monotonic)."""
        return self.published + self.ttl

    def renew_due(self, moment: float) -> bool:
        """True once the current copy is :data:`RENEW_FRACTION` of its TTL old."""
        return moment - self.published >= self.ttl * RENEW_FRACTION


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    lease: Lease | None = None
    #: A settle or a give back took the delivery (set before it waits for the
    #: lock): no hand-over, renewal or reconciliation touches it any more.
    claimed: bool = False


class LeaseKeeper:
    """The leases of one Consumer, on its loop thread; see the module docstring.

    ``headers_budget`` bounds the delivery's own headers kept on a copy
    (the Consumer's ``kept_headers``); ``work_queue`` names a delivery's work
    queue from its consumer key."""

    def __init__(
        self,
        link: AmqpLink,
        partition_id: str,
        ttl: float,
        work_queue: Any,
        bounded_headers: Any,
    ) -> None:
        self.link = link
        self.partition_id = partition_id
        self.ttl = ttl
        self.work_queue = work_queue
        self.bounded_headers = bounded_headers
        self.slots: dict[tuple[str, int, int], _Slot] = {}

    # ------------------------------------------------------------ queries

    def holds(self, delivery: Delivery) -> bool:
        """True while ``delivery``'s job is held by a lease of ours (it can be
        settled although its channel may be gone)."""
        slot = self.slots.get(delivery_id(delivery))
        return slot is not None and slot.lease is not None

    def leases(self) -> list[Lease]:
        """The leases held now (also those being settled)."""
        return [s.lease for s in self.slots.values() if s.lease is not None]

    # ------------------------------------------------------------ operations

    def _slot(self, delivery: Delivery) -> _Slot:
        return self.slots.setdefault(delivery_id(delivery), _Slot())

    async def hand_over(self, delivery: Delivery, still_open: Any) -> bool:
        """Hand ``delivery`` over to a lease (see the module docstring); True
        when it is. Nothing is done when it is settled, leased already, or
        ``still_open(delivery)`` is False (its channel is gone). Raises when
        the broker refuses (the holding queue is then removed when it can be,
        and the delivery stays as it was)."""
        slot = self._slot(delivery)
        async with slot.lock:
            if slot.claimed or slot.lease is not None or not still_open(delivery):
                if slot.lease is None and not slot.claimed:
                    self.slots.pop(delivery_id(delivery), None)
                return False
            work_queue = self.work_queue(delivery.key)
            name = work_queue + LEASE_POSTFIX + secrets.token_hex(LEASE_ID_HEX // 2)
            try:
                await self.link.declare_replicated(
                    name, holding_queue_arguments(work_queue, self.ttl)
                )
                await self._publish_copy(name, delivery)
                published = time.monotonic()
                acked = await self.link.ack(delivery.key, delivery.generation, delivery.tag)
            except BaseException:
                self.slots.pop(delivery_id(delivery), None)
                await _quietly(self.link.delete_queue(name))
                raise
            if not acked:  # the broker took it back meanwhile: no lease
                self.slots.pop(delivery_id(delivery), None)
                await _quietly(self.link.delete_queue(name))
                return False
            slot.lease = Lease(name, self.ttl, published)
            return True

    async def _publish_copy(self, name: str, delivery: Delivery) -> None:
        headers = copy_headers(self.bounded_headers(delivery.headers), extra_failures=1)
        props = copy_properties(delivery.properties, headers, int(self.ttl * 1000))
        await self.link.publish(name, delivery.body, props)

    async def renew_due(self, live: set[tuple[str, int, int]]) -> None:
        """Renew every lease whose copy is due (:meth:`Lease.renew_due`), and
        give back the job of every lease whose delivery is not in ``live``
        (the Consumer forgot it: its channel was lost while it waited in the
        backlog). A failure is logged and tried again at the next call.
        Never raises."""
        moment = time.monotonic()
        for key, slot in list(self.slots.items()):
            lease = slot.lease
            if lease is None or slot.lock.locked():
                continue
            if key not in live and not slot.claimed:
                try:
                    await self._give_back_orphan(key, slot)
                except Exception as exc:
                    log.warning(
                        "%s: giving back the job leased in %s failed: %r",
                        self.partition_id,
                        lease.queue,
                        exc,
                    )
                continue
            if not lease.renew_due(moment):
                continue
            async with slot.lock:
                if self.slots.get(key) is not slot or slot.lease is not lease:
                    continue  # settled meanwhile
                try:
                    await self._renew(key, lease)
                except Exception as exc:
                    log.warning(
                        "%s: renewing the lease in %s failed: %r",
                        self.partition_id,
                        lease.queue,
                        exc,
                    )

    async def _give_back_orphan(self, key: tuple[str, int, int], slot: _Slot) -> None:
        """Move the copy of a lease nobody settles back to its work queue."""
        lease = slot.lease
        assert lease is not None
        async with slot.lock:
            if slot.claimed:
                return
            slot.claimed = True
            self.slots.pop(key, None)
            work_queue = self.work_queue(key[0])
            waiting = await self.link.declare_replicated(
                lease.queue, holding_queue_arguments(work_queue, lease.ttl)
            )
            old = await self.link.get(lease.queue) if waiting else None
            if old is not None:
                props = old.properties
                headers = dict(props.headers or {})
                headers[DELIVERIES_HEADER] = max(0, _count(headers.get(DELIVERIES_HEADER)) - 1)
                await self.link.publish(work_queue, old.body, copy_properties(props, headers, None))
                await old.ack()
            await self.link.delete_queue(lease.queue)

    async def _renew(self, key: tuple[str, int, int], lease: Lease) -> None:
        # Declared again first: a use of the queue (its x-expires starts
        # again), and a basic.get on a missing queue would close the channel.
        work_queue = self.work_queue(key[0])
        waiting = await self.link.declare_replicated(
            lease.queue, holding_queue_arguments(work_queue, lease.ttl)
        )
        old = await self.link.get(lease.queue) if waiting else None
        if old is None:
            lease.lapses += 1
            lease.published = time.monotonic()  # try again a renewal period later
            log.warning(
                "%s: the lease copy in %s expired before its renewal: the job will run again",
                self.partition_id,
                lease.queue,
            )
            return  # nothing to copy from; the job runs on here, a copy runs elsewhere
        body = old.body
        props = old.properties
        new_props = copy_properties(props, dict(props.headers or {}), int(self.ttl * 1000))
        try:
            await self.link.publish(lease.queue, body, new_props)
        except BaseException:
            await _quietly(old.nack(requeue=True))
            raise
        lease.published = time.monotonic()
        await old.ack()

    def claim(self, delivery: Delivery) -> None:
        """A settle of ``delivery`` is under way (its outcome being recorded):
        it is no longer given back as forgotten, and a lease it has is still
        renewed until :meth:`settle`. Runs on the loop thread; never raises."""
        slot = self.slots.get(delivery_id(delivery))
        if slot is not None:
            slot.claimed = True

    async def settle(self, delivery: Delivery) -> bool:
        """The job's outcome is recorded: ack ``delivery``, or, when it is held
        by a lease, delete the holding queue (tried again every second while
        the link is down, until the copy would have expired). Returns what
        the ack returned (False: its channel is gone), True for a lease."""
        slot = self.slots.get(delivery_id(delivery))
        if slot is None:
            return await self.link.ack(delivery.key, delivery.generation, delivery.tag)
        slot.claimed = True
        async with slot.lock:
            self.slots.pop(delivery_id(delivery), None)
            if slot.lease is None:
                return await self.link.ack(delivery.key, delivery.generation, delivery.tag)
            await self._release(slot.lease)
            return True

    async def _release(self, lease: Lease) -> None:
        while True:
            try:
                await self.link.delete_queue(lease.queue)
                return
            except Exception as exc:
                if time.monotonic() > lease.expires:
                    log.warning(
                        "%s: cannot delete %s (%r): its copy will run the job again",
                        self.partition_id,
                        lease.queue,
                        exc,
                    )
                    return
                await asyncio.sleep(1.0)

    async def give_back(self, delivery: Delivery, still_open: Any) -> None:
        """Return ``delivery``'s job to its work queue without counting a
        failed delivery: a fresh copy (confirmed), then the ack of the original
        or the deletion of its holding queue. Nothing when its channel is gone
        and no lease holds it (the broker has it back already). Raises when
        the copy cannot be published: the original then stays unacked (the
        broker returns it when its channel closes), or a leased job's copy
        expires back to the work queue."""
        slot = self._slot(delivery)
        slot.claimed = True
        async with slot.lock:
            self.slots.pop(delivery_id(delivery), None)
            lease = slot.lease
            if lease is None and not still_open(delivery):
                return
            headers = copy_headers(self.bounded_headers(delivery.headers))
            props = copy_properties(delivery.properties, headers)
            await self.link.publish(self.work_queue(delivery.key), delivery.body, props)
            if lease is None:
                await self.link.ack(delivery.key, delivery.generation, delivery.tag)
            else:
                await self._release(lease)



async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception:
        log.debug("ignored", exc_info=True)
