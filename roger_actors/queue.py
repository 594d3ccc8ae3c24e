"""Queue naming and validation (Roger's ``Roger.Queue``, the pure part).

Roger names a partition's RabbitMQ queue ``"<partition_id>-<queue_type>"`` and
derives the names of the queues that belong to it by appending a postfix:

* ``"<partition_id>-<queue_type>.retry.<seconds>"``: one retry (TTL) queue per
  retry level (:meth:`Queue.retry_name`);
* ``"<partition_id>-<queue_type>.buried"``: jobs that failed their whole retry
  sequence (:meth:`Queue.buried_name`);
* ``"<partition_id>-<queue_type>.invalid"``: payloads that could not be decoded
  or validated, kept unchanged for inspection (:meth:`Queue.invalid_name`; this
  queue is new in the port).

To keep those names unambiguous the port is stricter than Roger about queue
types: a queue type may not contain ``"-"`` or ``"."`` (see
:func:`normalise_queue_type`). Broker operations on queues (``Queue.purge``)
need a running node and live elsewhere.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MAX_QUEUE_NAME_BYTES",
    "Queue",
    "normalise_queue_defs",
    "normalise_queue_type",
    "validate_partition_id",
]

#: RabbitMQ's limit on the length of a queue name, in UTF-8 bytes.
MAX_QUEUE_NAME_BYTES = 255

_FORBIDDEN_IN_QUEUE_TYPE = frozenset("-.")


def _has_control_character(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def validate_partition_id(partition_id: object, *, argument: str = "partition_id") -> str:
    """Check a partition id and return it.

    A partition id is a non-empty ``str`` without control characters that does
    not start with ``"amq."`` (RabbitMQ reserves that prefix). ``argument`` is
    the name used in error messages. Raises :class:`TypeError` when
    ``partition_id`` is not a ``str`` and :class:`ValueError` when it is
    malformed.
    """
    if not isinstance(partition_id, str):
        raise TypeError(f"{argument} must be a str, got {type(partition_id).__name__}")
    if not partition_id:
        raise ValueError(f"{argument} must be a non-empty str")
    if _has_control_character(partition_id):
        raise ValueError(f"{argument} must not contain control characters: {partition_id!r}")
    if partition_id.startswith("amq."):
        raise ValueError(
            f"{argument} must not start with 'amq.' (reserved by RabbitMQ): {partition_id!r}"
        )
    return str.__str__(partition_id)


def normalise_queue_type(queue_type: object, *, argument: str = "queue_type") -> str:
    """Return the queue type name for ``queue_type``.

    Accepts a ``str`` or an :class:`enum.Enum` member whose value is a ``str``
    (normalised to that value), the Python spelling of Roger's queue type atoms.
    The name must be non-empty and contain no whitespace, no control characters,
    no ``"-"`` and no ``"."``, so that ``"<partition>-<type><postfix>"`` names
    never collide. ``argument`` is the name used in error messages. Raises
    :class:`TypeError` for other types and :class:`ValueError` for bad names.
    """
    value: object = queue_type
    if isinstance(queue_type, enum.Enum):
        value = queue_type.value
        if not isinstance(value, str):
            raise TypeError(
                f"{argument} must be a str or an Enum member with a str value, "
                f"got {queue_type!r} with a {type(value).__name__} value"
            )
    if not isinstance(value, str):
        raise TypeError(
            f"{argument} must be a str or an Enum member with a str value, "
            f"got {type(value).__name__}"
        )
    name = str.__str__(value)
    if not name:
        raise ValueError(f"{argument} must be a non-empty str")
    if _has_control_character(name) or any(ch.isspace() for ch in name):
        raise ValueError(f"{argument} must not contain whitespace or control characters: {name!r}")
    bad = sorted(_FORBIDDEN_IN_QUEUE_TYPE.intersection(name))
    if bad:
        raise ValueError(f"{argument} must not contain {' or '.join(map(repr, bad))}: {name!r}")
    return name


def normalise_queue_defs(queues: object, *, argument: str = "queues") -> dict[str, int]:
    """Normalise a partition's queue definitions to ``{queue_type: max_workers}``.

    Accepts a mapping ``{"default": 10, "other": 5}`` or an iterable of
    ``(queue_type, max_workers)`` pairs (Roger's keyword list). Queue types go
    through :func:`normalise_queue_type`; ``max_workers`` must be an ``int``
    ``>= 0`` (not a ``bool``). A queue type given twice is an error. Errors
    are :class:`TypeError`/:class:`ValueError` whose message starts with
    ``argument`` and names the bad entry (e.g. ``"queues.default"``).
    """
    pairs: list[tuple[Any, Any]]
    if isinstance(queues, Mapping):
        pairs = list(queues.items())
    elif isinstance(queues, str | bytes) or not isinstance(queues, Iterable):
        raise TypeError(
            f"{argument} must be a mapping of queue type to max_workers or a list of "
            f"(queue_type, max_workers) pairs, got {type(queues).__name__}"
        )
    else:
        pairs = []
        for index, item in enumerate(queues):
            if isinstance(item, str | bytes) or not isinstance(item, Iterable):
                raise TypeError(
                    f"{argument}[{index}] must be a (queue_type, max_workers) pair, "
                    f"got {type(item).__name__}"
                )
            pair = tuple(item)
            if len(pair) != 2:
                raise ValueError(
                    f"{argument}[{index}] must be a (queue_type, max_workers) pair, "
                    f"got {len(pair)} items"
                )
            pairs.append((pair[0], pair[1]))
    result: dict[str, int] = {}
    for raw_type, max_workers in pairs:
        queue_type = normalise_queue_type(raw_type, argument=f"{argument} queue type {raw_type!r}")
        where = f"{argument}.{queue_type}"
        if queue_type in result:
            raise ValueError(f"{where} is defined more than once")
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(
                f"{where}: max_workers must be an int >= 0, got {type(max_workers).__name__}"
            )
        if max_workers < 0:
            raise ValueError(f"{where}: max_workers must be an int >= 0, got {max_workers}")
        result[queue_type] = int(max_workers)
    return result


class Queue:
    """Namespace for Roger's queue functions (``roger.Queue.make_name(...)``).

    Only pure naming functions live here so far; the broker operations
    (``purge``) are added by the node layer.
    """

    RETRY_POSTFIX = ".retry."
    BURIED_POSTFIX = ".buried"
    INVALID_POSTFIX = ".invalid"

    @staticmethod
    def make_name(partition_id: str, queue_type: str | enum.Enum, postfix: str = "") -> str:
        """Return the RabbitMQ queue name ``f"{partition_id}-{queue_type}{postfix}"``.

        ``Queue.make_name("myapp", "default")`` is ``"myapp-default"``. The
        partition id is checked by :func:`validate_partition_id`, the queue type
        normalised by :func:`normalise_queue_type` (an ``Enum`` member becomes its
        value); ``postfix`` must be a ``str`` without control characters. Raises
        :class:`TypeError`/:class:`ValueError` naming the bad argument, also when
        the name is longer than RabbitMQ's 255 UTF-8 bytes.
        """
        pid = validate_partition_id(partition_id)
        qtype = normalise_queue_type(queue_type)
        if not isinstance(postfix, str):
            raise TypeError(f"postfix must be a str, got {type(postfix).__name__}")
        if _has_control_character(postfix):
            raise ValueError(f"postfix must not contain control characters: {postfix!r}")
        name = f"{pid}-{qtype}{postfix}"
        size = len(name.encode("utf-8"))
        if size > MAX_QUEUE_NAME_BYTES:
            raise ValueError(
                f"queue name for partition_id {pid!r} and queue_type {qtype!r} is {size} "
                f"bytes long; RabbitMQ allows at most {MAX_QUEUE_NAME_BYTES}"
            )
        return name

    @staticmethod
    def retry_name(partition_id: str, queue_type: str | enum.Enum, delay_seconds: int) -> str:
        """Return the name of the retry queue for one retry level.

        ``Queue.retry_name("myapp", "default", 10)`` is
        ``"myapp-default.retry.10"``, as in Roger. ``delay_seconds`` must be an
        ``int`` ``> 0`` (a retry level from the configuration).
        """
        if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, int):
            raise TypeError(f"delay_seconds must be an int > 0, got {type(delay_seconds).__name__}")
        if delay_seconds <= 0:
            raise ValueError(f"delay_seconds must be an int > 0, got {delay_seconds}")
        return Queue.make_name(partition_id, queue_type, f"{Queue.RETRY_POSTFIX}{delay_seconds}")

    @staticmethod
    def buried_name(partition_id: str, queue_type: str | enum.Enum) -> str:
        """Return the name of the buried queue, e.g. ``"myapp-default.buried"``.

        Jobs that failed their last retry level end up there, as in Roger.
        """
        return Queue.make_name(partition_id, queue_type, Queue.BURIED_POSTFIX)

    @staticmethod
    def invalid_name(partition_id: str, queue_type: str | enum.Enum) -> str:
        """Return the name of the invalid-payload queue, e.g. ``"myapp-default.invalid"``.

        A payload that cannot be decoded or validated is moved there unchanged
        from the work queue it arrived on (a queue that is new in the port).
        """
        return Queue.make_name(partition_id, queue_type, Queue.INVALID_POSTFIX)

    @staticmethod
    def purge(partition_id: str, queue_type: str | enum.Enum) -> int:
        """Remove every message of a partition's queue; returns how many.

        Acts through the partition's Consumer on the node running in this
        process (:class:`~roger_actors.errors.NotStartedError` without one,
        :class:`~roger_actors.errors.NotRunningError` when the partition does
        not run on it).
        """
        from roger_actors.node import purge

        return purge(validate_partition_id(partition_id), normalise_queue_type(queue_type))
