"""A test rig for the Consumer's I/O parts on the in-memory broker: one event
loop run by the test itself, an AmqpLink on a fresh ``memory://`` broker
consuming one work queue, and a partition's Global as its pure state core
(``GlobalState``) answering the ``ask(op, args)`` requests.

No actor, no process, no network: the unit tests use it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

from roger_actors.job import Job
from roger_actors.partition.global_state import GlobalState
from roger_actors.queue import Queue
from roger_actors.transport.amqp import AmqpLink, Delivery, properties
from roger_actors.transport.memory import forget_broker

PID = "p1"
QUEUE = "default"
T = TypeVar("T")
_brokers = itertools.count(1)


class Clock:
    """A monotonic clock the test moves by hand (``clock.now += 5``)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A link on its own memory broker, a Global state, and the deliveries."""

    def __init__(self) -> None:
        self.url = f"memory://unit-rig-{next(_brokers)}"
        self.loop = asyncio.new_event_loop()
        self.events: list[Any] = []
        self.link = AmqpLink(self.url, self.events.append, timeout=2.0)
        self.state = GlobalState()
        #: ``(op, args)`` of every Global request, in order.
        self.asked: list[tuple[str, list[Any]]] = []
        #: While set, every Global request raises it (Global unreachable).
        self.global_error: BaseException | None = None
        self.work_queue = Queue.make_name(PID, QUEUE)
        self.run(self._start())

    async def _start(self, consume: bool = True) -> None:
        await self.link.connect()
        await self.link.declare(self.work_queue)
        await self.link.declare(Queue.invalid_name(PID, QUEUE))
        if consume:
            await self.link.consume(QUEUE, self.work_queue, prefetch=100)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the rig's loop to its end."""
        return self.loop.run_until_complete(coro)

    async def ask(self, op: str, args: list[Any]) -> Any:
        """A Global request, answered by :attr:`state` (or :attr:`global_error`)."""
        self.asked.append((op, list(args)))
        if self.global_error is not None:
            raise self.global_error
        return self.state.apply(PID, op, args).value

    def deliver(self, job: Job) -> Delivery:
        """Publish ``job`` to the work queue and return its delivery."""

        self.run(
            self.link.publish(
                self.work_queue, job.encode(), properties(message_id=job.id, app_id=PID)
            )
        )
        return self.delivered(job.id)

    def delivered(self, message_id: str) -> Delivery:
        """The next delivery of message ``message_id`` (waits up to 2 s)."""

        async def go() -> Delivery:
            for _ in range(400):
                for event in self.events:
                    if isinstance(event, Delivery) and event.message_id == message_id:
                        self.events.remove(event)
                        return event
                await asyncio.sleep(0.005)
            raise AssertionError(f"message {message_id} was not delivered")

        return self.run(go())

    def messages(self, name: str) -> int:
        """Messages ready in queue ``name``."""
        return self.run(self.link.counts(name))[0]

    def get_all(self, name: str) -> list[Any]:
        """Take (and ack) every message ready in queue ``name``."""

        async def go() -> list[Any]:
            got = []
            while (message := await self.link.get(name)) is not None:
                await message.ack()
                got.append(message)
            return got

        return self.run(go())

    def reconnect(self, consume: bool = False) -> None:
        """Close the link (its unacked deliveries go back to their queues) and
        open it again, consuming the work queue again only when ``consume``
        (so that :meth:`messages` counts what went back)."""

        async def go() -> None:
            await self.link.close()
            await self._start(consume)

        self.run(go())

    def close(self) -> None:
        """Close the link, the loop and the broker."""
        try:
            self.run(self.link.close())
        finally:
            self.loop.close()
            forget_broker(self.url)
