"""Fencing of execution keys: delivery tokens and Consumer presence.

A job with an execution key holds it in Global as ``(job id, token)``
(:mod:`roger_actors.partition.global_state`). The token names the delivery
that took it: ``<incarnation>.<n>``, where ``incarnation`` is a random id of
the Consumer actor (new at every start) and ``n`` counts the takes of that
Consumer. So a redelivered copy of a job (its first copy still running on
a Consumer whose connection dropped, or on another node) has another token
and waits until the holder gives the key up.

*Presence*: each Consumer incarnation holds the exclusive queue
:func:`presence_queue_name` on its connection; the broker deletes it when
that connection ends (process killed, node gone, connection dropped) and
the Consumer declares it again when it reconnects. A Consumer that finds a
key held by a token whose presence queue has been missing for
:data:`GRACE_SECONDS` takes it over (``seize_execution``, compare-and-set on
that token). A Consumer that stays disconnected for :data:`HOLD_SECONDS`
kills the workers running its keyed jobs, so that by the time its holds can
be seized (``GRACE_SECONDS`` after the broker dropped its connection) none
of its copies still runs. That assumes the broker and the Consumer see a
dead connection within ``GRACE_SECONDS - HOLD_SECONDS`` of each other: true
for a connection closed or a process killed (the socket closes), and for a
network fault when the AMQP heartbeat is at most about that long.
"""

from __future__ import annotations

from typing import Any

from roger_actors.queue import validate_partition_id
from roger_actors.transport.base import NotFound, ResourceLocked

#: A Consumer disconnected this long kills the workers of its keyed jobs.
HOLD_SECONDS = 5.0
#: A holder whose presence queue is missing this long is known dead.
GRACE_SECONDS = 15.0


def presence_queue_name(partition_id: str, incarnation: str) -> str:
    """The exclusive queue that shows Consumer ``incarnation`` of a partition alive."""
    return f"{validate_partition_id(partition_id)}-presence-{incarnation}"


def incarnation_of(token: str) -> str:
    """The Consumer incarnation of a delivery token (``<incarnation>.<n>``)."""
    return token.split(".", 1)[0]


async def declare_presence(link: Any, name: str) -> None:
    """Declare the presence queue ``name`` exclusive to ``link``'s connection
    (deleted by the broker with it) and owned by the link (deleted when the
    link closes, on a shared connection too). Raises when the link is down."""
    channel = await link.control_channel()
    await channel.queue_declare(name, exclusive=True, arguments={"x-max-length": 0})
    link.own_queue(name)


async def is_present(link: Any, name: str) -> bool:
    """True while the presence queue ``name`` exists (held by some
    connection); False when the broker says it does not. Other failures
    raise (the caller assumes nothing then)."""
    try:
        await link.counts(name)
    except NotFound:
        return False
    except ResourceLocked:
        return True
    return True


__all__ = [
    "GRACE_SECONDS",
    "HOLD_SECONDS",
    "declare_presence",
    "incarnation_of",
    "is_present",
    "presence_queue_name",
]
