"""A Consumer's execution keys, on the broker and in Global.

A job with an execution key runs only while it holds the key in Global
(:mod:`~roger_actors.partition.global_state`), as ``(job id, token)`` where
the token names its delivery (:mod:`~roger_actors.partition.execution_fence`).
:class:`ExecutionKeys` does the I/O for one Consumer incarnation:

- :meth:`~ExecutionKeys.gate`: take the key, or park the job in the key's
  waiting queue (:func:`waiting_queue_name`), confirmed, then ack it;
- :meth:`~ExecutionKeys.release`: the job is done with the key: hand it to
  the first job waiting for it (which goes back to its work queue holding
  the key), else free it;
- :meth:`~ExecutionKeys.sweep`: a parked job may have missed its hand-over
  (the key was freed while it was being parked): move the first waiting job
  when the key is free, or when its holder's Consumer is gone for good;
- :meth:`~ExecutionKeys.reassert`: after a reconnect, hold the presence
  queue again and take each running job's key again with its token.

Gates, releases and sweeps of one key run one at a time, in the order they
began (a FIFO lock per key): without it a sweep holding the first waiting
job (got, not yet requeued) let a release hand the key to the second one,
and concurrent gates could park their jobs out of order.

Every coroutine runs on the Consumer's loop thread. ``ask(op, args)`` is the
Consumer's Global request (it raises on a timeout or when Global refuses);
``budget()`` is how many bytes of a delivery's headers may be republished
(:func:`~roger_actors.partition.headers.headers_budget`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from roger_actors.job import Job, bounded_repr, execution_key_of
from roger_actors.queue import QUEUE_NAME_CHARACTERS, Queue
from roger_actors.transport.amqp import AmqpLink, Delivery, properties
from roger_actors.transport.base import Message

from . import execution_fence
from .headers import kept_headers

log = logging.getLogger("roger_actors.consumer")

#: Header of a job parked in an execution-waiting queue: its work queue type.
ORIGIN_HEADER = "x-roger-queue"
#: An execution-waiting queue is deleted after this long unused (milliseconds).
WAITING_QUEUE_ARGS: dict[str, Any] = {"x-expires": 24 * 3600 * 1000}

#: ``ask(op, args)``: a Global request of the partition.
Ask = Callable[[str, list[Any]], Awaitable[Any]]


def waiting_queue_name(partition_id: str, execution_key: str) -> str:
    """The queue where jobs wait for ``execution_key`` to be free:
    ``<partition>-execution-waiting-<key>``.

    A key that could not be part of a queue name as it is (characters AMQP
    queue names refuse, such as ``"clé-42"`` or ``"a=b"``, a name past 255
    bytes) or that starts with ``"#"`` is replaced by ``"#"`` and its SHA-256
    in hex. So two keys never share a waiting queue (an unhashed key never
    starts with ``"#"``), and with a valid partition id
    (:data:`~roger_actors.queue.MAX_PARTITION_ID_BYTES`) the name is always
    legal. Never raises for a ``str`` key."""
    name = f"{partition_id}-execution-waiting-{execution_key}"
    if execution_key.startswith("#") or len(name) > 255 or not QUEUE_NAME_CHARACTERS.match(name):
        digest = hashlib.sha256(execution_key.encode("utf-8", "surrogatepass")).hexdigest()
        name = f"{partition_id}-execution-waiting-#{digest}"
    return name


class ExecutionKeys:
    """One Consumer incarnation's execution keys; see the module docstring.

    ``clock`` (monotonic seconds) times how long a holder's presence queue
    has been missing; injectable for tests."""

    def __init__(
        self,
        link: AmqpLink,
        partition_id: str,
        ask: Ask,
        budget: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.partition_id = partition_id
        self.ask = ask
        self.budget = budget
        self.clock = clock
        #: This incarnation, its take counter, the connection its presence
        #: queue is on, and holders seen absent -> since when.
        self.incarnation = uuid.uuid4().hex
        self.presence = execution_fence.presence_queue_name(partition_id, self.incarnation)
        self._takes = itertools.count(1)
        self._presence_on: Any = None
        self._presence_lock: asyncio.Lock | None = None
        self._absent: dict[str, float] = {}
        #: One lock per key and how many use or wait for it (see _turn).
        self._turns: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def new_token(self) -> str:
        """A token no other delivery takes an execution key with."""
        return f"{self.incarnation}.{next(self._takes)}"

    @property
    def present(self) -> bool:
        """The presence queue is held on the link's current connection."""
        return self._presence_on is not None and self._presence_on is self.link.connection

    async def hold_presence(self) -> None:
        """Hold this incarnation's presence queue on the current connection.
        One declare per connection; callers pass in turn (FIFO lock), so the
        takes of the gates that wait for it keep their order. Raises when the
        link is down."""
        if self._presence_lock is None:
            self._presence_lock = asyncio.Lock()
        async with self._presence_lock:
            connection = self.link.connection
            if self._presence_on is not connection:
                await execution_fence.declare_presence(self.link, self.presence)
                self._presence_on = connection

    async def gate(self, job: Job, delivery: Delivery, exec_token: str) -> str:
        """Before ``job`` runs: ``"go"`` once it holds its execution key (or
        has none), taken with ``exec_token``; ``"parked"`` once the delivery
        was moved to the key's waiting queue (confirmed) and acked, the key
        being held by another job or by another copy of this one; ``"failed"``
        when Global or the broker did not answer (the delivery is untouched).
        Never raises."""
        try:
            execution_key = execution_key_of(job)
            if execution_key is None:
                return "go"
            await self.hold_presence()
            async with self._turn(execution_key):
                taken = await self.ask("take_execution", [execution_key, job.id, exec_token])
                if taken is not True:
                    await self._park(execution_key, job, delivery)
                    return "parked"
        except Exception as exc:
            log.warning("%s: job %s waits for Global: %r", self.partition_id, job.id, exc)
            return "failed"
        return "go"

    async def _park(self, key: str, job: Job, delivery: Delivery) -> None:
        """Move the delivery to the key's waiting queue (confirmed), then ack it."""
        name = waiting_queue_name(self.partition_id, key)
        headers = kept_headers(delivery.headers, self.budget())
        headers[ORIGIN_HEADER] = delivery.key
        await self.link.declare(name, WAITING_QUEUE_ARGS)
        await self.link.publish(
            name,
            delivery.body,
            properties(message_id=job.id, app_id=self.partition_id, headers=headers),
        )
        await self.link.ack(delivery.key, delivery.generation, delivery.tag)

    async def _move_waiting(self, message: Message) -> None:
        """Put a parked job back on its work queue (confirmed), then ack it; a
        publish that fails puts the message back at the head of its waiting
        queue, then raises."""
        props = message.properties
        headers = dict(props.headers or {})
        origin = str(headers.pop(ORIGIN_HEADER, "default"))
        try:
            await self.link.publish(
                Queue.make_name(self.partition_id, origin),
                message.body,
                properties(message_id=props.message_id, app_id=self.partition_id, headers=headers),
            )
        except BaseException:
            await _put_back(message)
            raise
        await message.ack()

    async def release(
        self, key: str, job_id: str, exec_token: str = ""
    ) -> tuple[str, str, str] | None:
        """``job_id`` (its delivery ``exec_token``) is done with ``key``: hand it
        to the first job waiting for it (which goes back to its work queue
        holding the key), else free it. A key held by another delivery is
        left alone (the waiting job goes back to its waiting queue).

        When the waiting queue cannot be read, the key is still freed in
        Global (jobs parked there are moved later by a :meth:`sweep`, which
        takes the key for them). Never raises: returns ``(key, job_id,
        exec_token)`` when Global could not be told (to be tried again),
        else None."""
        async with self._turn(key):
            message = None
            try:
                name = waiting_queue_name(self.partition_id, key)
                await self.link.declare(name, WAITING_QUEUE_ARGS)
                message = await self.link.get(name)
            except Exception as exc:
                log.warning(
                    "%s: reading the waiting queue of execution key %s: %r; freeing the key",
                    self.partition_id,
                    bounded_repr(key),
                    exc,
                )
            try:
                next_id = None
                if message is not None:
                    next_id = message.properties.message_id or ""
                try:
                    handed = await self.ask(
                        "give_execution", [key, job_id, exec_token, next_id or None]
                    )
                except BaseException:
                    if message is not None:  # not held until the connection ends
                        await _put_back(message)
                    raise
                if message is not None:
                    if handed:
                        await self._move_waiting(message)
                    else:
                        await message.nack(requeue=True)
            except Exception as exc:
                log.warning(
                    "%s: releasing execution key %s: %r", self.partition_id, bounded_repr(key), exc
                )
                return key, job_id, exec_token
        return None

    async def sweep(self, key: str) -> str:
        """Move the first job waiting for ``key`` to its work queue when the key
        is free (or its holder's Consumer is gone for good: :meth:`_seize_from_dead`),
        reserving the key for it: ``"moved"``; ``"busy"`` when the key is held
        (the job stays first in line); ``"empty"`` when nothing waits. Raises
        what the broker or Global raise (the next sweep tries again)."""
        async with self._turn(key):
            name = waiting_queue_name(self.partition_id, key)
            await self.link.declare(name, WAITING_QUEUE_ARGS)
            message = await self.link.get(name)
            if message is None:
                return "empty"
            next_id = message.properties.message_id or ""
            try:
                free = bool(next_id) and bool(
                    await self.ask("acquire_execution", [key, next_id])
                    or await self._seize_from_dead(key, next_id)
                )
            except BaseException:
                await _put_back(message)  # not held until the connection ends
                raise
            if free:
                await self._move_waiting(message)
                return "moved"
            await message.nack(requeue=True)
            return "busy"

    async def _seize_from_dead(self, key: str, next_id: str) -> bool:
        """Reserve ``key`` for ``next_id`` when its holder's Consumer has been
        gone (no presence queue) for :data:`execution_fence.GRACE_SECONDS`."""
        holder = await self.ask("execution_holder", [key])
        dead = holder[1] if isinstance(holder, list) and len(holder) == 2 else ""
        if not isinstance(dead, str) or not dead:
            return False  # free meanwhile, or a reservation: no presence to check
        incarnation = execution_fence.incarnation_of(dead)
        if incarnation == self.incarnation:
            return False  # ours: alive while this Consumer is
        name = execution_fence.presence_queue_name(self.partition_id, incarnation)
        if await execution_fence.is_present(self.link, name):
            self._absent.pop(dead, None)
            return False
        since = self._absent.setdefault(dead, self.clock())
        if self.clock() - since < execution_fence.GRACE_SECONDS:
            return False
        log.warning(
            "%s: execution key %s: its holder's Consumer is gone; the key goes to job %s",
            self.partition_id,
            bounded_repr(key),
            next_id,
        )
        self._absent.pop(dead, None)
        return bool(await self.ask("seize_execution", [key, next_id, dead]))

    async def reassert(self, holds: list[tuple[str | None, str, str]]) -> list[str]:
        """Hold the presence queue again, then take each ``(key, job_id,
        exec_token)`` again; returns the tokens that lost their key (another
        delivery took it). Raises when the link or Global fail."""
        await self.hold_presence()
        lost = []
        for key, job_id, exec_token in holds:
            if key is not None and (
                await self.ask("take_execution", [key, job_id, exec_token]) is not True
            ):
                lost.append(exec_token)
        return lost

    @contextlib.asynccontextmanager
    async def _turn(self, key: str) -> AsyncIterator[None]:
        """Run the gates, releases and sweeps of ``key`` one at a time, in the
        order they began. The lock is dropped when nobody uses or waits for it
        (keys are unbounded)."""
        entry = self._turns.get(key)
        if entry is None:
            entry = self._turns[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                self._turns.pop(key, None)


async def _put_back(message: Message) -> None:
    """Return a message got with ``basic.get`` to the head of its queue, at
    once; a failure is ignored (the channel is gone: the broker returns it)."""
    with contextlib.suppress(Exception):
        await message.nack(requeue=True)


__all__ = ["ORIGIN_HEADER", "WAITING_QUEUE_ARGS", "ExecutionKeys", "waiting_queue_name"]
