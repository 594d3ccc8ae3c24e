"""A persister that keeps each partition's Global state in RabbitMQ itself.

Every node of a cluster already reaches the broker, so the snapshot needs no
shared disk: it is the one message of the durable queue
``roger-state.<partition>`` (``x-max-length`` 1, the oldest dropped), so a
store replaces the previous snapshot. ``store`` returns once the broker has
confirmed the persistent message; ``load`` peeks at it with ``basic.get``
and puts it back (nack with requeue), leaving the queue as it was.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from roger_actors.persisters.base import StatePersister
from roger_actors.queue import validate_partition_id

QUEUE_PREFIX = "roger-state."
ARGUMENTS: dict[str, Any] = {"x-max-length": 1, "x-overflow": "drop-head"}


class RabbitMQ(StatePersister):
    """Keeps the state snapshot in a one-message queue per partition.

    ``url`` is the AMQP URL (default: the local broker as guest).
    ``timeout`` bounds each broker operation, in seconds.
    """

    def __init__(
        self, url: str = "amqp://guest:guest@localhost:5672/", timeout: float = 10.0
    ) -> None:
        from roger_actors.transport.publisher import Publisher

        self._publisher = Publisher(url, timeout)
        self._declared: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def queue_name(partition_id: str) -> str:
        """The state queue of a partition."""
        return QUEUE_PREFIX + validate_partition_id(partition_id)

    def init(self, partition_id: str) -> None:
        """Declare the partition's state queue."""
        name = self.queue_name(partition_id)
        with self._lock:
            if name not in self._declared:
                self._publisher.run("declare", name, ARGUMENTS)
                self._declared.add(name)

    def load(self, partition_id: str) -> bytes | None:
        """The last snapshot stored, or None; the queue is left as it was."""
        self.init(partition_id)
        snapshot: bytes | None = self._publisher.run_on_link(_peek, self.queue_name(partition_id))
        return snapshot

    def store(self, partition_id: str, data: bytes) -> None:
        """Replace the snapshot with ``data`` (confirmed by the broker)."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        self.init(partition_id)
        from roger_actors.transport.amqp import properties

        self._publisher.run("publish", self.queue_name(partition_id), bytes(data), properties())

    def close(self) -> None:
        """Close the broker connection."""
        self._publisher.close()


async def _peek(link: Any, queue: str) -> bytes | None:
    message = await link.get(queue)
    if message is None:
        return None
    body = bytes(message.body)
    with contextlib.suppress(Exception):
        await message.channel.basic_nack(message.delivery.delivery_tag, requeue=True)
    return body
