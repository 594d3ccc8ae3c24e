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
:func:`normalise_queue_type`). Partition ids and queue types are limited to
the characters the AMQP client accepts in a queue name
(:data:`QUEUE_NAME_CHARACTERS`) and to lengths that keep every name the port
derives from them within RabbitMQ's 255 bytes (:data:`MAX_PARTITION_ID_BYTES`,
:data:`MAX_QUEUE_TYPE_BYTES`). Broker operations on queues (``Queue.purge``)
need a running node and live elsewhere: the node installs them here
(:func:`set_purge_hook`), so that this module imports nothing of the node.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from roger_actors.errors import NotStartedError

__all__ = [
    "MAX_PARTITION_ID_BYTES",
    "MAX_QUEUE_NAME_BYTES",
    "MAX_QUEUE_TYPE_BYTES",
    "MAX_WORKERS",
    "QUEUE_NAME_CHARACTERS",
    "PurgeHook",
    "Queue",
    "QueueDef",
    "normalise_queue_defs",
    "normalise_queue_type",
    "set_purge_hook",
    "validate_partition_id",
]

#: Signature of the function that :meth:`Queue.purge` delegates to: it gets
#: the validated partition id and the normalised queue type, and returns how
#: many messages it removed.
PurgeHook = Callable[[str, str], int]

_purge_hook: PurgeHook | None = None

#: RabbitMQ's limit on the length of a queue name, in UTF-8 bytes.
MAX_QUEUE_NAME_BYTES = 255
#: The characters pamqp (the AMQP client) accepts in a queue name
#: (``pamqp.constants.DOMAIN_REGEX["queue-name"]``); any other makes every
#: declare of the queue fail.
QUEUE_NAME_CHARACTERS = re.compile(r"^[a-zA-Z0-9\-_.:@#,/+ ]*$")
#: Longest partition id, in bytes: the longest name derived from it, an
#: execution-waiting queue ``<pid>-execution-waiting-#<64 hex digits>``, must
#: fit in :data:`MAX_QUEUE_NAME_BYTES`.
MAX_PARTITION_ID_BYTES = MAX_QUEUE_NAME_BYTES - len("-execution-waiting-#") - 64
#: Longest queue type, in bytes: ``<pid>-<type>.retry.<seconds>`` fits in 255
#: bytes for the longest partition id and a retry level of up to 12 digits.
MAX_QUEUE_TYPE_BYTES = MAX_QUEUE_NAME_BYTES - MAX_PARTITION_ID_BYTES - len("-.retry.") - 12
#: Most workers a queue may have on one node. Each worker is an OS process, and
#: the channel's prefetch is ``max_workers * (1 + batch)`` with a batch of up
#: to 32 jobs (``consumer_core.MAX_BATCH``): 1000 keeps that (33,000) under AMQP's
#: 16-bit prefetch limit of 65,535.
MAX_WORKERS = 1000

_FORBIDDEN_IN_QUEUE_TYPE = frozenset("-.")


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def _has_control_character(text: str) -> bool:
    return _CONTROL_CHARACTER.search(text) is not None


def _shown(text: str) -> str:
    """``repr`` of ``text`` cut to 60 characters (the value may be hostile)."""
    if len(text) <= 60:
        return repr(text)
    return f"{text[:60]!r}...<{len(text)} chars>"


def _check_name_part(text: str, argument: str, limit: int) -> None:
    """Refuse characters pamqp rejects in queue names and a text over ``limit`` bytes."""
    if _has_control_character(text):
        raise ValueError(f"{argument} must not contain control characters: {_shown(text)}")
    if not QUEUE_NAME_CHARACTERS.match(text):
        bad = sorted({ch for ch in text[:10_000] if not QUEUE_NAME_CHARACTERS.match(ch)})
        raise ValueError(
            f"{argument} may contain only ASCII letters, digits, spaces and '-_.:@#,/+' "
            f"(what AMQP queue names allow), got {_shown(text)} with "
            f"{', '.join(map(repr, bad[:5]))}{' ...' if len(bad) > 5 else ''}"
        )
    if len(text) > limit:  # ASCII only by now: one byte per character
        raise ValueError(
            f"{argument} is {len(text)} bytes long; at most {limit} (so that every queue "
            f"name derived from it fits in RabbitMQ's {MAX_QUEUE_NAME_BYTES}): {_shown(text)}"
        )


def validate_partition_id(partition_id: object, *, argument: str = "partition_id") -> str:
    """Check a partition id and return it.

    A partition id is a non-empty ``str`` of at most
    :data:`MAX_PARTITION_ID_BYTES` characters from
    :data:`QUEUE_NAME_CHARACTERS` (ASCII letters, digits, space and
    ``-_.:@#,/+``) that does not start with ``"amq."`` (RabbitMQ reserves that
    prefix). ``argument`` is the name used in error messages. Raises
    :class:`TypeError` when ``partition_id`` is not a ``str`` and
    :class:`ValueError` (naming the problem, the value cut short) when it is
    malformed.
    """
    if not isinstance(partition_id, str):
        raise TypeError(f"{argument} must be a str, got {type(partition_id).__name__}")
    if not partition_id:
        raise ValueError(f"{argument} must be a non-empty str")
    _check_name_part(partition_id, argument, MAX_PARTITION_ID_BYTES)
    if partition_id.startswith("amq."):
        raise ValueError(
            f"{argument} must not start with 'amq.' (reserved by RabbitMQ): "
            f"{_shown(partition_id)}"
        )
    return str.__str__(partition_id)


def normalise_queue_type(queue_type: object, *, argument: str = "queue_type") -> str:
    """Return the queue type name for ``queue_type``.

    Accepts a ``str`` or an :class:`enum.Enum` member whose value is a ``str``
    (normalised to that value), the Python spelling of Roger's queue type atoms.
    The name must be non-empty and contain no whitespace, no control characters,
    no ``"-"`` and no ``"."``, so that ``"<partition>-<type><postfix>"`` names
    never collide; its other characters come from :data:`QUEUE_NAME_CHARACTERS`
    and it is at most :data:`MAX_QUEUE_TYPE_BYTES` long. ``argument`` is the
    name used in error messages. Raises :class:`TypeError` for other types and
    :class:`ValueError` for bad names.
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
        raise ValueError(
            f"{argument} must not contain whitespace or control characters: {_shown(name)}"
        )
    bad = sorted(_FORBIDDEN_IN_QUEUE_TYPE.intersection(name))
    if bad:
        raise ValueError(
            f"{argument} must not contain {' or '.join(map(repr, bad))}: {_shown(name)}"
        )
    _check_name_part(name, argument, MAX_QUEUE_TYPE_BYTES)
    return name


def normalise_queue_defs(queues: object, *, argument: str = "queues") -> dict[str, int]:
    """Normalise a partition's queue definitions to ``{queue_type: max_workers}``.

    Accepts a mapping ``{"default": 10, "other": 5}`` or an iterable of
    ``(queue_type, max_workers)`` pairs (Roger's keyword list). Queue types go
    through :func:`normalise_queue_type`; ``max_workers`` must be an ``int``
    from 0 to :data:`MAX_WORKERS` (not a ``bool``; the bound keeps the
    worker processes and the AMQP prefetch in range, see there). This is the
    one check behind the config, ``Partition.start``/``reconfigure`` and a
    remote ``partition_start``. A queue type given twice is an error. Errors
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
        shown = _shown(raw_type) if isinstance(raw_type, str) else type(raw_type).__name__
        queue_type = normalise_queue_type(raw_type, argument=f"{argument} queue type {shown}")
        where = f"{argument}.{queue_type}"
        if queue_type in result:
            raise ValueError(f"{where} is defined more than once")
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(
                f"{where}: max_workers must be an int >= 0, got {type(max_workers).__name__}"
            )
        if not 0 <= max_workers <= MAX_WORKERS:
            shown_workers = max_workers if abs(max_workers) < 10**20 else "a huge int"
            raise ValueError(
                f"{where}: max_workers must be an int >= 0 and <= {MAX_WORKERS}, "
                f"got {shown_workers}"
            )
        result[queue_type] = int(max_workers)
    return result


class QueueDef(NamedTuple):
    """One queue of a partition: its type and its concurrency on this node
    (Roger's ``%Roger.Queue{}`` as it is defined, made by :meth:`Queue.define`).
    It is a ``(queue_type, max_workers)`` pair, so a list of them is a queue
    list ``Partition.start`` accepts."""

    type: str
    max_workers: int


class Queue:
    """Namespace for Roger's queue functions (``roger.Queue.make_name(...)``).

    Only pure naming functions live here so far; the broker operations
    (``purge``) are added by the node layer.
    """

    RETRY_POSTFIX = ".retry."
    BURIED_POSTFIX = ".buried"
    INVALID_POSTFIX = ".invalid"

    @staticmethod
    def define(queue_type: str | enum.Enum, max_workers: int) -> QueueDef:
        """Roger's ``Queue.define/2``: the queue ``queue_type`` with at most
        ``max_workers`` jobs running at once on a node, e.g.
        ``Partition.start("myapp", [Queue.define("default", 10)])``. Checked as
        :func:`normalise_queue_defs` checks a queue list: raises
        :class:`TypeError`/:class:`ValueError` naming the bad argument."""
        [(qtype, limit)] = normalise_queue_defs(
            [(queue_type, max_workers)], argument="Queue.define"
        ).items()
        return QueueDef(qtype, limit)

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
        pid, name = validate_partition_id(partition_id), normalise_queue_type(queue_type)
        hook = _purge_hook
        if hook is None:
            raise NotStartedError("no node started in this process: call roger_actors.start()")
        return hook(pid, name)


def set_purge_hook(hook: PurgeHook | None) -> PurgeHook | None:
    """Install the function that :meth:`Queue.purge` delegates to; return the previous one.

    The node level installs it (:func:`roger_actors.node.application.purge`)
    when a node is started or embedded in this process; it purges through the
    current node and raises :class:`~roger_actors.errors.NotStartedError`
    itself when none runs. Without a hook, :meth:`Queue.purge` raises
    NotStartedError.
    """
    global _purge_hook
    previous, _purge_hook = _purge_hook, hook
    return previous
