"""A persister that keeps each partition's Global state in RabbitMQ itself.

Every node of a cluster already reaches the broker, so the snapshot needs no
shared disk: it is the one message of the durable queue
``roger-state.<partition>`` (``x-max-length`` 1, the oldest dropped), so a
store replaces the previous snapshot. ``store`` returns once the broker has
confirmed the persistent message; ``load`` peeks at it with ``basic.get``
and puts it back (nack with requeue), leaving the queue as it was.

A snapshot message is marked: AMQP ``type`` :data:`MESSAGE_TYPE` and
``app_id`` :data:`APP_ID`. ``load`` raises ``ValueError`` for a message
without both marks (anyone who can publish to the queue can evict the
snapshot, and the Global must not read their message as its state; with a
``cluster_secret`` the Global also checks the snapshot's seal). A snapshot
stored by a release before the marks is refused the same way.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from roger_actors.persisters.base import StatePersister
from roger_actors.queue import validate_partition_id

QUEUE_PREFIX = "roger-state."
#: AMQP ``type`` and ``app_id`` of a snapshot message.
MESSAGE_TYPE = "roger-global-state"
APP_ID = "roger-actors"
ARGUMENTS: dict[str, Any] = {"x-max-length": 1, "x-overflow": "drop-head"}


class RabbitMQ(StatePersister):
    """Keeps the state snapshot in a one-message queue per partition.

    ``url`` is the AMQP URL (default: the local broker as guest), or several
    (a list, or a string separated by commas: the nodes of one RabbitMQ
    cluster, tried in turn).
    ``timeout`` bounds each broker operation, in seconds.
    """

    def __init__(
        self,
        url: str | Sequence[str] = "amqp://guest:guest@localhost:5672/",
        timeout: float = 10.0,
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
                self._publisher.run("declare_replicated", name, ARGUMENTS)
                self._declared.add(name)

    def load(self, partition_id: str) -> bytes | None:
        """The last snapshot stored, or None; the queue is left as it was.
        Raises ValueError when the queue holds a message that is not marked
        as a snapshot (see the module docstring)."""
        self.init(partition_id)
        name = self.queue_name(partition_id)
        found: tuple[bytes, Any, Any] | None = self._publisher.run_on_link(_peek, name)
        if found is None:
            return None
        body, message_type, app_id = found
        if message_type != MESSAGE_TYPE or app_id != APP_ID:
            raise ValueError(
                f"the message in {name!r} is not a Global snapshot (no type "
                f"{MESSAGE_TYPE!r} from {APP_ID!r}): written by someone else"
            )
        return body

    def store(self, partition_id: str, data: bytes) -> None:
        """Replace the snapshot with ``data`` (confirmed by the broker)."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        self.init(partition_id)
        from roger_actors.transport.amqp import PERSISTENT
        from roger_actors.transport.base import Properties

        props = Properties(delivery_mode=PERSISTENT, type=MESSAGE_TYPE, app_id=APP_ID)
        self._publisher.run("publish", self.queue_name(partition_id), bytes(data), props)

    def close(self) -> None:
        """Close the broker connection."""
        self._publisher.close()


async def _peek(link: Any, queue: str) -> tuple[bytes, Any, Any] | None:
    """``(body, type, app_id)`` of the queue's message, put back; None when empty."""
    message = await link.get(queue)
    if message is None:
        return None
    props = message.properties
    with contextlib.suppress(Exception):
        await message.nack(requeue=True)
    return message.body, props.type, props.app_id
