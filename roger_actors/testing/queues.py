"""The broker queues a partition leaves behind, and deleting them (test and demo clean-up).

A partition's work queues and its side queues are durable: they outlive the
node, which is what production wants and what a test run does not. Here are
their names (as :class:`~roger_actors.Queue` and the Global derive them) and
a function that deletes them through the connection of this process's node
or producer.
"""

from __future__ import annotations

from collections.abc import Iterable

from roger_actors.queue import Queue, normalise_queue_type, validate_partition_id

__all__ = ["delete_partition_queues", "partition_queue_names"]

#: Prefixes of the per-partition queues of the Global, its replica and the
#: RabbitMQ persister (``<prefix><partition_id>``).
_PARTITION_PREFIXES = ("roger-global.", "roger-replica.", "roger-state.")


def partition_queue_names(
    partition_id: str,
    queue_types: Iterable[str],
    retry_levels: Iterable[int],
    execution_keys: Iterable[str] = (),
) -> list[str]:
    """Every durable queue partition ``partition_id`` may have declared.

    For each queue type: the work queue, one retry queue per level, the buried
    and the invalid queue; for each execution key given, its execution-waiting
    queue; and the partition's Global, replica and state queues. Raises
    TypeError/ValueError (naming the argument) for a bad partition id, queue
    type or retry level. Pure: touches no broker.
    """
    pid = validate_partition_id(partition_id)
    names: list[str] = []
    for raw in queue_types:
        queue = normalise_queue_type(raw, argument="queue_types")
        names.append(Queue.make_name(pid, queue))
        for level in retry_levels:
            if isinstance(level, bool) or not isinstance(level, int) or level <= 0:
                raise ValueError(f"retry_levels must hold ints > 0, got {level!r}")
            names.append(Queue.retry_name(pid, queue, level))
        names.append(Queue.buried_name(pid, queue))
        names.append(Queue.invalid_name(pid, queue))
    if execution_keys:
        from roger_actors.partition.execution_keys import waiting_queue_name

        names.extend(waiting_queue_name(pid, key) for key in execution_keys)
    names.extend(prefix + pid for prefix in _PARTITION_PREFIXES)
    return names


def delete_partition_queues(names: Iterable[str], timeout: float = 30.0) -> int:
    """Delete the queues ``names`` with their messages (a missing one is fine),
    over the connection of this process's node or producer; return how many
    names were deleted.

    Stop the partition first (``roger.Partition.stop``): a queue deleted under
    its consumer cancels that consumer. Raises NotStartedError when no node or
    producer runs in this process, and what the broker raises (the connection
    lost, ``timeout`` seconds passed) otherwise; queues not reached by then
    are left.
    """
    from roger_actors.node import process_publisher

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return 0

    async def delete_all(link: object) -> int:
        for name in wanted:
            await link.delete_queue(name)  # type: ignore[attr-defined]
        return len(wanted)

    deleted: int = process_publisher().run_on_link(delete_all, timeout=timeout)
    return deleted
