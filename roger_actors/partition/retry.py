"""Roger's Retry: back-off through TTL queues, and the buried queue.

For every retry level (seconds) a queue ``<partition>-<queue>.retry.<level>``
holds jobs for that long (per-queue message TTL) and then dead-letters them
back to the work queue through the default exchange. A retry queue expires
when unused for a while (``x-expires``: twice its delay and ten minutes).
That never drops a job, although RabbitMQ deletes an expired queue with its
messages: the Consumer *uses* a retry queue (:meth:`AmqpLink.touch
<roger_actors.transport.amqp.AmqpLink.touch>`, a ``basic.get``) before it
publishes into it, at least every :data:`TOUCH_SECONDS`, and a message leaves
it after the delay, well before the queue can expire. A declare or a publish
is not a use for a quorum queue (RabbitMQ 3.10): without the touch, a retry
queue in constant use expired ten minutes after its creation with the jobs
it held (a chaos soak lost 13 jobs so). The ten minutes cover RabbitMQ's
dead-letter worker: a quorum queue whose message could not be dead-lettered
(its target was not there yet, as right after a broker restart) keeps it and
tries again only every two minutes.

A job past the last level goes to ``<partition>-<queue>.buried``, bounded by
``max_buried_queue_size`` (``x-max-length``; the oldest are dropped first).

Levels are seconds, as in Roger since 2018 (commit b933145 converted them to
milliseconds for RabbitMQ; before it the level went through unconverted, as
milliseconds). Roger sets each message's ``expiration``; here the retry
queue's ``x-message-ttl`` does the same for every message in it.
"""

from __future__ import annotations

from typing import Any

from roger_actors.queue import Queue

#: Dead-lettering that the broker confirms, as for a publish (quorum queues,
#: RabbitMQ 3.10+; the queue then refuses publishes when full instead of
#: dropping its head). Classic queues dead-letter at most once: a message whose
#: TTL ran out while its target was not available (a broker restarting) is
#: gone. Measured: 200 jobs in a classic retry queue across a broker restart,
#: 0 came back; in a quorum one, 200 (``tests/integration/test_retry_restart.py``).
AT_LEAST_ONCE_DEAD_LETTERING: dict[str, Any] = {
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
#: A retry queue is deleted after this many times its delay without use.
EXPIRY_FACTOR = 2
#: Extra lifetime of a retry queue (and of a lease holding queue) beyond its
#: delay, in milliseconds: well past RabbitMQ's two-minute retry of a
#: dead-lettering that failed.
EXPIRY_MARGIN_MS = 10 * 60_000


#: A Consumer touches a retry queue it publishes into at least this often
#: (seconds): far within the shortest ``x-expires`` (ten minutes).
TOUCH_SECONDS = 60.0


def retry_queue(partition_id: str, queue: str, level: int) -> tuple[str, dict[str, Any]]:
    """Name and declare arguments of the retry queue for ``level`` seconds."""
    ttl = level * 1000
    return Queue.retry_name(partition_id, queue, level), {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": Queue.make_name(partition_id, queue),
        "x-message-ttl": ttl,
        "x-expires": ttl * EXPIRY_FACTOR + EXPIRY_MARGIN_MS,
        **AT_LEAST_ONCE_DEAD_LETTERING,
    }


def buried_queue(partition_id: str, queue: str, max_length: int) -> tuple[str, dict[str, Any]]:
    """Name and declare arguments of the buried queue."""
    return Queue.buried_name(partition_id, queue), {"x-max-length": max_length}


def level_for(retry_count: int, levels: tuple[int, ...]) -> int | None:
    """The delay before retry number ``retry_count + 1``, or None when exhausted."""
    return levels[retry_count] if retry_count < len(levels) else None
