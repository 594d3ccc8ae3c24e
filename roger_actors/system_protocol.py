"""The wire format of Roger's System exchange, shared by every publisher.

Every node consumes a private queue bound to one durable fanout exchange
(:func:`exchange_name`). What travels on it:

- a *command*: the CBOR map ``{"v": 1, "command": str, "args": list,
  "from": node_name, "call_id": str | None, "reply_to": str | None}``. A
  command with a ``call_id`` and a ``reply_to`` is part of a call: each node
  answers it; without them it is a cast.
- a *reply* to a call, published through the default exchange to the
  caller's ``reply_to`` queue: ``{"v": 1, "call_id": str, "from": node_name,
  "ok": bool, "value": any}``.

Bodies come from the network: decoding refuses anything that is not exactly
one CBOR map of the right shape (no CBOR tags, bounded nesting, a valid node
name in ``from``) with a :class:`ValueError` that names the problem.

Authentication: with a ``cluster_secret`` every message on the exchange is
signed with :data:`~roger_actors.cluster_auth.PURPOSE_SYSTEM` and every reply
with :data:`~roger_actors.cluster_auth.PURPOSE_SYSTEM_REPLY`, in the AMQP
headers (:func:`publish_command` and :func:`publish_reply` take the
:class:`~roger_actors.cluster_auth.ClusterAuth` that signs); receivers check
them (:func:`check_message`). Replies only ever go to a server-named queue
or direct reply-to (:func:`valid_reply_to`): a ``reply_to`` naming any other
queue would let a caller write into it (a work queue, a Global snapshot).

The partition commands a node receives (``cancel``, ``queue_pause``,
``queue_resume``) reach its registry as :class:`PartitionCommand`; the
commands of :data:`APPLY_COMMANDS` reach its ApplySystem
(:mod:`roger_actors.node.apply_system`) as :class:`ApplyCommand`, and the
ApplySystem, not the System, replies to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from . import cbor_strict
from .cluster_auth import PURPOSE_SYSTEM, PURPOSE_SYSTEM_REPLY, ClusterAuth
from .job import bounded_repr
from .transport.amqp import AmqpLink, properties

#: Version of the command and reply maps.
VERSION = 1

#: Deepest nesting a decoded body may have (maps and lists).
MAX_DEPTH = 32

#: Largest command body taken from the exchange (commands are small: ids,
#: queue maps); a larger one is dropped unread.
MAX_COMMAND_BYTES = 64 * 1024
#: Largest reply body taken (``node_info running_jobs`` of a busy node is big).
MAX_REPLY_BYTES = 64 * 1024 * 1024
#: Longest node name (``from``) accepted, in characters.
MAX_NODE_NAME = 255
#: Longest ``call_id`` accepted, in characters (the project's are 32).
MAX_CALL_ID = 128
#: The ``reply_to`` values a reply may be published to: queues the broker
#: named (``queue_declare("")``) and direct reply-to. No client can declare a
#: queue whose name starts with ``amq.``, so neither names a queue of the
#: application (a work queue, ``roger-state.*``, ``roger-global.*``).
REPLY_TO_PREFIXES = ("amq.gen-", "amq.rabbitmq.reply-to")
#: Longest ``reply_to`` accepted (an AMQP short string).
MAX_REPLY_TO = 255

#: The commands forwarded to the registry, with the names of their arguments
#: (the first one is always the partition id).
PARTITION_COMMANDS: dict[str, tuple[str, ...]] = {
    "cancel": ("partition_id", "job_id"),
    "queue_pause": ("partition_id", "queue"),
    "queue_resume": ("partition_id", "queue"),
}


#: The commands the System hands to the node's ApplySystem, which answers them
#: (the System does not reply): cluster information and partition management.
APPLY_COMMANDS: frozenset[str] = frozenset(
    {"node_info", "partition_start", "partition_stop", "partition_reconfigure"}
)


@dataclass(frozen=True)
class SystemCommand:
    """A decoded command: ``call_id`` and ``reply_to`` are both set for a call,
    both None for a cast."""

    command: str
    args: tuple[Any, ...]
    from_node: str
    call_id: str | None = None
    reply_to: str | None = None

    @property
    def is_call(self) -> bool:
        """True when the sender waits for a reply."""
        return self.call_id is not None and self.reply_to is not None


@dataclass(frozen=True)
class SystemReply:
    """A decoded reply of node ``from_node`` to the call ``call_id``: ``value``
    is the result when ``ok``, an error description (str) otherwise."""

    call_id: str
    from_node: str
    ok: bool
    value: Any


@dataclass(frozen=True)
class PartitionCommand:
    """Sent (a plain message) by the System to the node's registry for a
    partition command received on the System exchange.

    ``command`` is ``"cancel"``, ``"queue_pause"`` or ``"queue_resume"``;
    ``args`` are the command's arguments after the partition id: ``(job_id,)``
    for ``cancel``, ``(queue,)`` for the other two.
    """

    partition_id: str
    command: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class ApplyCommand:
    """Sent (a plain message) by the System to the node's ApplySystem for a
    command of :data:`APPLY_COMMANDS`: the command as received. For a call
    (``call_id`` and ``reply_to`` set) the ApplySystem publishes the reply to
    ``reply_to`` with :func:`publish_reply`; for a cast it replies nothing."""

    command: str
    args: tuple[Any, ...]
    from_node: str
    call_id: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class Resync:
    """Sent (a plain message) by the System to the node's registry whenever its
    subscription to the System exchange is (re)established, and by the
    registry to every running Consumer: casts may have been missed while the
    System was not subscribed, so the Consumer fetches its Global's snapshot
    (cancelled jobs, paused queues) again and applies what changed."""


@dataclass(frozen=True)
class CommandError:
    """In the result of a cluster call: the node answered ok=False with ``message``."""

    message: str


def valid_reply_to(reply_to: object) -> bool:
    """True when ``reply_to`` may receive a reply: a server-named queue
    (``amq.gen-...``) or direct reply-to (``amq.rabbitmq.reply-to...``) of
    at most :data:`MAX_REPLY_TO` printable ASCII characters."""
    return (
        isinstance(reply_to, str)
        and 0 < len(reply_to) <= MAX_REPLY_TO
        and reply_to.isascii()
        and reply_to.isprintable()
        and reply_to.startswith(REPLY_TO_PREFIXES)
    )


def valid_node_name(name: object) -> bool:
    """True for a node name a message may carry in ``from``: a non-empty str
    of at most :data:`MAX_NODE_NAME` characters without control characters."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NODE_NAME
        and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
    )


def check_message(
    auth: ClusterAuth,
    kind: str,
    body: bytes | bytearray | memoryview,
    headers: Mapping[str, Any] | None,
) -> None:
    """Check a message received on a System queue before it is decoded:
    ``kind`` is ``"command"`` (the queue bound to the exchange: purpose
    :data:`~roger_actors.cluster_auth.PURPOSE_SYSTEM`, at most
    :data:`MAX_COMMAND_BYTES`) or ``"reply"`` (a reply queue:
    :data:`~roger_actors.cluster_auth.PURPOSE_SYSTEM_REPLY`, at most
    :data:`MAX_REPLY_BYTES`). Raises :class:`~roger_actors.cluster_auth.AuthError`
    for a missing or bad signature (only with a secret) and ValueError for an
    oversized body; the messages never quote the input."""
    limit = MAX_COMMAND_BYTES if kind == "command" else MAX_REPLY_BYTES
    if len(body) > limit:
        raise ValueError(f"system {kind} of {len(body)} bytes is over the {limit} bytes limit")
    auth.check(PURPOSE_SYSTEM if kind == "command" else PURPOSE_SYSTEM_REPLY, body, headers)


def exchange_name(prefix: str | None) -> str:
    """The System exchange: ``"system"``, or ``"<prefix>-system"`` when a prefix
    is set (Roger's ``system_exchange_name``)."""
    return f"{prefix}-system" if prefix else "system"


# ---------------------------------------------------------------- encoding


def encode_command(
    command: str,
    args: list[Any] | tuple[Any, ...],
    from_node: str,
    call_id: str | None = None,
    reply_to: str | None = None,
) -> bytes:
    """The CBOR body of a command (a cast unless ``call_id`` and ``reply_to`` are given).

    Raises ValueError for a malformed command (empty name, only one of
    ``call_id``/``reply_to``) and TypeError when ``args`` cannot be CBOR-encoded.
    """
    if not isinstance(command, str) or not command:
        raise ValueError(f"command must be a non-empty string, got {command!r}")
    if not isinstance(from_node, str) or not from_node:
        raise ValueError(f"from_node must be a non-empty string, got {from_node!r}")
    if (call_id is None) != (reply_to is None):
        raise ValueError("call_id and reply_to must be given together (a call) or not at all")
    document = {
        "v": VERSION,
        "command": command,
        "args": list(args),
        "from": from_node,
        "call_id": call_id,
        "reply_to": reply_to,
    }
    return _dumps(document)


def encode_reply(call_id: str, from_node: str, ok: bool, value: Any) -> bytes:
    """The CBOR body of a reply. A ``value`` that CBOR cannot encode is replaced by
    an ok=False reply describing the problem (the caller still gets an answer)."""
    document = {"v": VERSION, "call_id": call_id, "from": from_node, "ok": ok, "value": value}
    try:
        return _dumps(document)
    except TypeError as exc:
        document.update(ok=False, value=f"reply value cannot be encoded: {exc}")
        return _dumps(document)


def _dumps(document: dict[str, Any]) -> bytes:
    try:
        return cbor2.dumps(document)
    except cbor2.CBOREncodeError as exc:
        raise TypeError(f"not CBOR-encodable: {exc}") from None


# ---------------------------------------------------------------- decoding


def _load_map(body: bytes | bytearray | memoryview) -> dict[Any, Any]:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ValueError(f"system message body must be bytes, got {type(body).__name__}")
    data = bytes(body)
    if not data:
        raise ValueError("system message is empty")
    try:
        document = cbor_strict.loads(data, max_depth=MAX_DEPTH, big_integers=True)
    except cbor_strict.CborError as exc:
        if "trailing bytes" in str(exc):
            raise ValueError(f"system message has {exc}") from None
        raise ValueError(f"system message is not valid CBOR: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"system message must be a CBOR map, got {type(document).__name__}")
    if "v" not in document:
        raise ValueError("system message has no version ('v')")
    version = document["v"]
    if type(version) is not int or version != VERSION:
        raise ValueError(
            f"unknown system message version {bounded_repr(version)} (expected {VERSION})"
        )
    return document


def _field(document: dict[Any, Any], key: str, kind: type, optional: bool = False) -> Any:
    if key not in document:
        raise ValueError(f"system message has no {key!r}")
    value = document[key]
    if value is None and optional:
        return None
    if type(value) is not kind:
        expected = kind.__name__ + (" or null" if optional else "")
        raise ValueError(f"system message {key!r} must be {expected}, got {type(value).__name__}")
    if kind is str and not value:
        raise ValueError(f"system message {key!r} must not be empty")
    return value


def _from_field(document: dict[Any, Any]) -> str:
    from_node: str = _field(document, "from", str)
    if not valid_node_name(from_node):
        raise ValueError(
            f"system message 'from' is not a node name ({len(from_node)} characters; "
            f"at most {MAX_NODE_NAME}, no control characters)"
        )
    return from_node


def _call_id_field(document: dict[Any, Any], optional: bool) -> str | None:
    call_id: str | None = _field(document, "call_id", str, optional=optional)
    if call_id is not None and len(call_id) > MAX_CALL_ID:
        raise ValueError(f"system message 'call_id' is longer than {MAX_CALL_ID} characters")
    return call_id


def _command_from(document: dict[Any, Any]) -> SystemCommand:
    command = _field(document, "command", str)
    args = _field(document, "args", list)
    from_node = _from_field(document)
    call_id = _call_id_field(document, optional=True)
    reply_to = _field(document, "reply_to", str, optional=True)
    if (call_id is None) != (reply_to is None):
        raise ValueError("system message has only one of 'call_id' and 'reply_to'")
    return SystemCommand(command, tuple(args), from_node, call_id, reply_to)


def _reply_from(document: dict[Any, Any]) -> SystemReply:
    call_id = _call_id_field(document, optional=False)
    assert call_id is not None
    from_node = _from_field(document)
    ok = _field(document, "ok", bool)
    if "value" not in document:
        raise ValueError("system message has no 'value'")
    value = document["value"]
    if not ok and not isinstance(value, str):
        raise ValueError(f"an ok=False reply's 'value' must be str, got {type(value).__name__}")
    return SystemReply(call_id, from_node, ok, value)


def decode_command(body: bytes | bytearray | memoryview) -> SystemCommand:
    """Decode a command body; ValueError naming the problem for anything else
    (not bytes, not CBOR, not a map, unknown version, missing or mistyped field)."""
    document = _load_map(body)
    if "command" not in document and "ok" in document:
        raise ValueError("system message is a reply, not a command (no 'command')")
    return _command_from(document)


def decode_reply(body: bytes | bytearray | memoryview) -> SystemReply:
    """Decode a reply body; ValueError naming the problem for anything else."""
    document = _load_map(body)
    if "ok" not in document and "command" in document:
        raise ValueError("system message is a command, not a reply (no 'ok')")
    return _reply_from(document)


def decode_message(body: bytes | bytearray | memoryview) -> SystemCommand | SystemReply:
    """Decode either kind: a map with ``"command"`` is a command, one with ``"ok"``
    a reply. ValueError naming the problem for anything else."""
    document = _load_map(body)
    if "command" in document:
        return _command_from(document)
    if "ok" in document:
        return _reply_from(document)
    raise ValueError("system message is neither a command ('command') nor a reply ('ok')")


# ---------------------------------------------------------------- publishing


async def declare_exchange(link: AmqpLink, exchange: str) -> None:
    """Declare the durable fanout ``exchange`` on the link's control channel
    (idempotent). Run on the link's loop; ConnectionError when not connected."""
    channel = await link.control_channel()
    await channel.exchange_declare(exchange, exchange_type="fanout", durable=True)


async def publish_command(
    link: AmqpLink,
    exchange: str,
    body: bytes,
    *,
    auth: ClusterAuth,
    declare: bool = True,
    expiration_ms: int | None = None,
) -> None:
    """Publish an encoded command to the fanout ``exchange`` (not mandatory, not
    persistent) through the link's confirmed control channel, signed by
    ``auth`` (:data:`~roger_actors.cluster_auth.PURPOSE_SYSTEM`; unsigned
    when it has no secret); returns once the broker confirmed it. Run on the
    link's loop.

    With ``declare`` (the default) the exchange is declared first, so that
    publishing never hits a missing exchange (which would close the control
    channel); pass False when it is known to exist. ``expiration_ms`` sets a
    per-message TTL. Raises ConnectionError when the link is down or the broker
    did not confirm.
    """
    if declare:
        await declare_exchange(link, exchange)
    await link.publish(
        "",
        body,
        properties(
            persistent=False,
            expiration_ms=expiration_ms,
            content_type="application/cbor",
            headers=auth.headers(PURPOSE_SYSTEM, body) or None,
        ),
        exchange=exchange,
        mandatory=False,
    )


async def publish_reply(link: AmqpLink, reply_to: str, body: bytes, *, auth: ClusterAuth) -> None:
    """Publish an encoded reply to the caller's queue ``reply_to`` through the
    default exchange (not mandatory: a caller that is gone loses it), signed
    by ``auth`` (:data:`~roger_actors.cluster_auth.PURPOSE_SYSTEM_REPLY`).
    Raises ValueError, publishing nothing, when ``reply_to`` is not a
    server-named queue or direct reply-to (:func:`valid_reply_to`)."""
    if not valid_reply_to(reply_to):
        raise ValueError(
            f"refused to reply to {bounded_repr(reply_to, 80)}: not a server-named queue"
        )
    await link.publish(
        reply_to,
        body,
        properties(
            persistent=False,
            content_type="application/cbor",
            headers=auth.headers(PURPOSE_SYSTEM_REPLY, body) or None,
        ),
        exchange="",
        mandatory=False,
    )
