"""The state Roger's Global keeps for one partition, and the operations on it.

Pure data, no I/O: the Global actor (:mod:`roger_actors.partition.global_server`)
applies requests to a :class:`GlobalState` and persists its snapshot.

- ``cancelled``: job id -> when it was marked cancelled (``cancel_job``),
  in whole seconds since the epoch. A job whose id is here is not run when
  dequeued, and one running is killed. A mark is dropped when a Consumer
  settles its job (``is_cancelled(id, remove=True)``) and expires
  ``ttl`` seconds (the ``cancel_mark_ttl`` config key) after it was made,
  whether or not its job was ever seen, so the set stays bounded by the rate
  of cancels times the TTL. The dict is kept in marking order (a repeated
  ``cancel_job`` renews the mark and moves it to the end), so expiry only
  looks at the oldest marks.
- ``queued``: queue keys of jobs queued or running (``queue_key``; freed when the job has run).
- ``executing``: execution key -> the id of the job holding it (``""`` when
  set through the public ``is_executing(..., add=True)``).
- ``holders``: execution key -> the *token* of the Consumer delivery that
  took it (``take_execution``). A key in ``executing`` without a token is
  *reserved* for its job (handed over to a waiting job, or taken by an older
  Consumer): the first delivery of that job to take it sets the token. A key
  with a token is held by that delivery only: another delivery, even of the
  same job (a redelivered copy while the first copy still runs), gets the
  holder's token back instead and waits, until the holder gives the key up
  (``give_execution``, by job id and token) or a Consumer that found the
  holder gone for good seizes it (``seize_execution``, compare-and-set on
  the dead token). See ``docs/global.md`` (Execution keys).
- ``paused``: queue types paused cluster-wide.

``epoch`` and ``seq`` are the state's version, not part of it: the active
Global bumps ``epoch`` (past every version it saw) when it takes over and
``seq`` on every stored change, so of two snapshots of one partition the one
with the larger ``(epoch, seq)`` is the newer (:meth:`GlobalState.version`).

A snapshot (version 3) is a CBOR map with exactly these keys::

    {"v": 3, "cancelled": bytes, "cancelled_at": bytes,
     "queued": [str], "executing": {str: str}, "holders": {str: str},
     "paused": [str], "epoch": int, "seq": int}

``cancelled`` is the UTF-8 of the marked ids joined by NUL (ids holding a
NUL are refused by ``cancel_job``), ``cancelled_at`` the marking times as
little-endian unsigned 32-bit seconds, one per id, in the same (marking)
order. That keeps a snapshot of 10^6 marks cheap to build and to read (one
join and one array instead of 10^6 CBOR strings), and the encoded marks are
cached between changes of ``cancelled``, so a group commit that changed
only keys does not encode them again. Version 2 snapshots (no ``holders``,
``epoch``, ``seq``: version ``(0, 0)``, every key reserved) and version 1
snapshots (``cancelled`` a list of strings, no times) are still read,
exactly as written by older releases: version 1 marks count as made at load
time.

:meth:`GlobalState.decode` is strict: a snapshot that misses a key, has an
extra one, or holds a value of the wrong type raises ``ValueError``; it never
silently yields an empty state.
"""

from __future__ import annotations

import itertools
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from roger_actors import cbor_strict
from roger_actors.clock import now as clock_now
from roger_actors.job import MAX_KEY_BYTES, bounded_repr

SNAPSHOT_VERSION = 3
#: Seconds a cancel mark lives by default (the ``cancel_mark_ttl`` default).
DEFAULT_TTL = 7 * 24 * 3600.0
_V1_KEYS = frozenset({"v", "cancelled", "queued", "executing", "paused"})
_V2_KEYS = frozenset({"v", "cancelled", "cancelled_at", "queued", "executing", "paused"})
_V3_KEYS = _V2_KEYS | {"holders", "epoch", "seq"}
#: Largest epoch or seq a snapshot may hold (CBOR unsigned 64-bit).
MAX_VERSION_PART = 2**63 - 1
_SEP = "\0"
_VERSION_ENTRY = cbor2.dumps("v") + cbor2.dumps(SNAPSHOT_VERSION)
_CANCELLED_KEY = cbor2.dumps("cancelled")
_AT_KEY = cbor2.dumps("cancelled_at")


def _bytes_head(length: int) -> bytes:
    """The CBOR head of a byte string of ``length`` bytes (major type 2)."""
    if length < 24:
        return bytes((0x40 | length,))
    for code, size in ((0x58, 1), (0x59, 2), (0x5A, 4), (0x5B, 8)):
        if length < 1 << (8 * size):
            return bytes((code,)) + length.to_bytes(size, "big")
    raise ValueError("byte string too long for CBOR")


@dataclass(frozen=True)
class Applied:
    """What applying one request did: the reply ``value``, whether the state
    changed (``dirty``), and system casts to broadcast ``[(command, args)]``."""

    value: Any
    dirty: bool = False
    casts: tuple[tuple[str, list[Any]], ...] = ()


@dataclass
class GlobalState:
    """One partition's global state; see the module docstring.

    ``ttl`` is the life of a cancel mark in seconds; ``clock`` returns the
    time in milliseconds since the epoch (:func:`roger_actors.clock.now`,
    injectable for tests). Neither is part of the state (nor of equality).
    """

    cancelled: dict[str, int] = field(default_factory=dict)
    queued: set[str] = field(default_factory=set)
    executing: dict[str, str] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    holders: dict[str, str] = field(default_factory=dict)
    #: The version (see the module docstring); not part of equality.
    epoch: int = field(default=0, compare=False)
    seq: int = field(default=0, compare=False)
    ttl: float = field(default=DEFAULT_TTL, compare=False, repr=False)
    clock: Callable[[], int] = field(default=clock_now, compare=False, repr=False)
    #: Encoded ``cancelled``/``cancelled_at`` and the change count they match.
    _marks_blob: tuple[int, bytes] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    _marks_version: int = field(default=0, init=False, compare=False, repr=False)

    def version(self) -> tuple[int, int]:
        """``(epoch, seq)``: of two snapshots of a partition, the larger is newer."""
        return (self.epoch, self.seq)

    def _seconds(self) -> int:
        return int(self.clock()) // 1000

    def mark(self, job_id: str, at: int | None = None) -> None:
        """Mark ``job_id`` cancelled at ``at`` (seconds since the epoch, default
        now), renewing an existing mark."""
        self.cancelled.pop(job_id, None)
        self.cancelled[job_id] = self._seconds() if at is None else at
        self._marks_version += 1

    def unmark(self, job_id: str) -> bool:
        """Drop ``job_id``'s mark; True when there was one."""
        if self.cancelled.pop(job_id, None) is None:
            return False
        self._marks_version += 1
        return True

    def expiry_in(self) -> float | None:
        """Seconds until the oldest cancel mark is due to expire (0 when it is
        due now); None when there is no mark."""
        for at in self.cancelled.values():
            return float(max(0, at + self.ttl - self._seconds()))
        return None

    def expire(self) -> int:
        """Drop the marks older than ``ttl``; returns how many were dropped.
        Cost: the number dropped (marks are in marking order)."""
        limit = self._seconds() - self.ttl
        expired = 0
        for at in self.cancelled.values():
            if at > limit:
                break
            expired += 1
        if expired:
            for job_id in list(itertools.islice(self.cancelled, expired)):
                del self.cancelled[job_id]
            self._marks_version += 1
        return expired

    # ------------------------------------------------------------ snapshots

    def _encoded_marks(self) -> bytes:
        """The ``cancelled`` and ``cancelled_at`` entries of the snapshot map,
        encoded (cached until ``cancelled`` changes)."""
        cached = self._marks_blob
        if cached is not None and cached[0] == self._marks_version:
            return cached[1]
        ids = _SEP.join(self.cancelled).encode("utf-8")
        times = array("I", self.cancelled.values())
        if sys.byteorder != "little":
            times.byteswap()
        at = times.tobytes()
        chunk = b"".join(
            (_CANCELLED_KEY, _bytes_head(len(ids)), ids, _AT_KEY, _bytes_head(len(at)), at)
        )
        self._marks_blob = (self._marks_version, chunk)
        return chunk

    def encode(self) -> bytes:
        """The CBOR snapshot of this state (see the module docstring). The marks
        are copied in as they were encoded last when they did not change."""
        rest = cbor2.dumps(
            {
                "queued": sorted(self.queued),
                "executing": dict(sorted(self.executing.items())),
                "holders": dict(sorted(self.holders.items())),
                "paused": sorted(self.paused),
                "epoch": self.epoch,
                "seq": self.seq,
            }
        )
        # One map of nine entries: v, the two mark entries, then the six of `rest`
        # (without its own map header, 0xa6).
        return b"".join((b"\xa9", _VERSION_ENTRY, self._encoded_marks(), rest[1:]))

    @classmethod
    def decode(
        cls,
        data: bytes | None,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], int] = clock_now,
    ) -> GlobalState:
        """The state a snapshot holds; an empty state for None or ``b""`` (nothing
        was ever stored). ``ttl`` and ``clock`` are given to the new state.

        Raises ValueError naming the problem for anything that is not exactly
        a snapshot (see the module docstring): never an empty state for it.
        """
        state = cls(ttl=ttl, clock=clock)
        if not data:
            return state
        try:
            raw = cbor_strict.loads(data, max_depth=4)
        except cbor_strict.CborError as exc:
            raise ValueError(f"global state snapshot is not CBOR: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError("global state snapshot is not a map")
        version = raw.get("v")
        known = {1: _V1_KEYS, 2: _V2_KEYS, 3: _V3_KEYS}
        expected = known.get(version) if type(version) is int else None
        if expected is None:
            raise ValueError("global state snapshot has no supported version field")
        if set(raw) != expected:
            missing = sorted(expected - set(raw))
            extra = len(set(raw) - expected)
            raise ValueError(
                f"global state snapshot v{version}: missing keys {missing}, {extra} unknown key(s)"
            )
        if version == 1:
            ids = _strings(raw["cancelled"], "cancelled")
            at = state._seconds()
            state.cancelled = dict.fromkeys(ids, at)
        else:
            state.cancelled = _decode_marks(raw["cancelled"], raw["cancelled_at"])
        state.queued = set(_strings(raw["queued"], "queued"))
        state.paused = set(_strings(raw["paused"], "paused"))
        executing = raw["executing"]
        if not isinstance(executing, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in executing.items()
        ):
            raise ValueError("global state snapshot: 'executing' must map strings to strings")
        state.executing = dict(executing)
        if version == 3:
            holders = raw["holders"]
            if not isinstance(holders, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in holders.items()
            ):
                raise ValueError(
                    "global state snapshot: 'holders' must map strings to non-empty strings"
                )
            if not holders.keys() <= executing.keys():
                raise ValueError("global state snapshot: 'holders' names a key not executing")
            state.holders = dict(holders)
            for name in ("epoch", "seq"):
                part = raw[name]
                if type(part) is not int or not 0 <= part <= MAX_VERSION_PART:
                    raise ValueError(
                        f"global state snapshot: {name!r} must be an integer in 0..2**63-1"
                    )
            state.epoch, state.seq = raw["epoch"], raw["seq"]
        return state

    # ------------------------------------------------------------ requests

    def apply(self, partition_id: str, op: str, args: list[Any]) -> Applied:
        """Apply request ``op`` with ``args``; raises ValueError (naming the
        operation and the argument) for an unknown operation or bad arguments.
        Expired cancel marks are dropped first (``dirty`` then is True)."""
        handler = _OPERATIONS.get(op)
        if handler is None:
            raise ValueError(f"unknown Global operation {bounded_repr(op)}")
        arity, function = handler
        if not isinstance(args, list) or len(args) != arity:
            given = len(args) if isinstance(args, list) else type(args).__name__
            raise ValueError(f"Global operation {op!r} takes {arity} argument(s), got {given}")
        expired = self.expire()
        applied: Applied = function(self, partition_id, *args)
        if expired and not applied.dirty:
            applied = Applied(applied.value, True, applied.casts)
        return applied

    def _cancel_job(self, pid: str, job_id: Any) -> Applied:
        job_id = _text(job_id, "cancel_job", "job_id")
        if _SEP in job_id:
            raise ValueError("Global operation 'cancel_job': job_id must not contain NUL")
        self.mark(job_id)
        return Applied(None, True, (("cancel", [pid, job_id]),))

    def _is_cancelled(self, pid: str, job_id: Any, remove: Any) -> Applied:
        job_id = _text(job_id, "is_cancelled", "job_id")
        was = job_id in self.cancelled
        if _flag(remove, "is_cancelled", "remove") and was:
            self.unmark(job_id)
            return Applied(True, True)
        return Applied(was)

    def _is_queued(self, pid: str, key: Any, add: Any) -> Applied:
        key = _text(key, "is_queued", "queue_key")
        was = key in self.queued
        if _flag(add, "is_queued", "add") and not was:
            self.queued.add(key)
            return Applied(False, True)
        return Applied(was)

    def _remove_queued(self, pid: str, key: Any) -> Applied:
        key = _text(key, "remove_queued", "queue_key")
        if key in self.queued:
            self.queued.discard(key)
            return Applied(None, True)
        return Applied(None)

    def _is_executing(self, pid: str, key: Any, add: Any) -> Applied:
        key = _text(key, "is_executing", "execution_key")
        was = key in self.executing
        if _flag(add, "is_executing", "add") and not was:
            self.executing[key] = ""
            return Applied(False, True)
        return Applied(was)

    def _remove_executed(self, pid: str, key: Any) -> Applied:
        key = _text(key, "remove_executed", "execution_key")
        self.holders.pop(key, None)
        if self.executing.pop(key, None) is not None:
            return Applied(None, True)
        return Applied(None)

    def _acquire_execution(self, pid: str, key: Any, job_id: Any) -> Applied:
        """Reserve ``key`` for ``job_id`` (no token): True when it was free or
        already reserved for that job. A key a delivery holds (with a token) is
        never granted here, even to the same job: that is :meth:`_take_execution`'s."""
        key = _text(key, "acquire_execution", "execution_key")
        job_id = _text(job_id, "acquire_execution", "job_id")
        holder = self.executing.get(key)
        if holder is None:
            self.executing[key] = job_id
            return Applied(True, True)
        return Applied(holder == job_id and key not in self.holders)

    def _take_execution(self, pid: str, key: Any, job_id: Any, token: Any) -> Applied:
        """The delivery ``token`` of ``job_id`` takes ``key``: True when it now
        holds it (it was free, reserved for that job, or held by this very
        token); else the holder's token (``""`` for a reservation for another
        job), which the caller may check for presence (see :meth:`_seize_execution`)."""
        key = _text(key, "take_execution", "execution_key")
        job_id = _text(job_id, "take_execution", "job_id")
        token = _text(token, "take_execution", "token")
        holder = self.executing.get(key)
        held_by = self.holders.get(key)
        if holder is None or (holder == job_id and held_by is None):
            self.executing[key] = job_id
            self.holders[key] = token
            return Applied(True, True)
        if holder == job_id and held_by == token:
            return Applied(True)
        return Applied(held_by or "")

    def _give_execution(self, pid: str, key: Any, job_id: Any, token: Any, next_id: Any) -> Applied:
        """The delivery ``token`` of ``job_id`` gives ``key`` up: reserved for
        ``next_id`` when given (hand-over), else free. True when it did; a key
        held by another job or another delivery is left alone (False).
        ``token`` ``""``: a delivery that never took the key, which may only
        give up a reservation for its job."""
        key = _text(key, "give_execution", "execution_key")
        job_id = _text(job_id, "give_execution", "job_id")
        if not isinstance(token, str):
            raise ValueError("Global operation 'give_execution': token must be a string")
        if next_id is not None:
            next_id = _text(next_id, "give_execution", "next_id")
        if self.executing.get(key) != job_id or self.holders.get(key, token) != token:
            return Applied(False)
        self._hand(key, next_id)
        return Applied(True, True)

    def _seize_execution(self, pid: str, key: Any, job_id: Any, dead: Any) -> Applied:
        """Take ``key`` from the delivery ``dead`` (whose Consumer is known to be
        gone) and reserve it for ``job_id``: True when ``dead`` still held it
        (compare-and-set: a holder that gave the key up or re-took it meanwhile
        is left alone)."""
        key = _text(key, "seize_execution", "execution_key")
        job_id = _text(job_id, "seize_execution", "job_id")
        dead = _text(dead, "seize_execution", "dead_token")
        if self.holders.get(key) != dead:
            return Applied(False)
        self._hand(key, job_id)
        return Applied(True, True)

    def _execution_holder(self, pid: str, key: Any) -> Applied:
        """``[job_id, token]`` of ``key``'s holder (token ``""`` for a
        reservation), None when the key is free."""
        key = _text(key, "execution_holder", "execution_key")
        if key not in self.executing:
            return Applied(None)
        return Applied([self.executing[key], self.holders.get(key, "")])

    def _hand(self, key: str, next_id: str | None) -> None:
        """Free ``key``, or reserve it for ``next_id``."""
        self.holders.pop(key, None)
        if next_id is None:
            del self.executing[key]
        else:
            self.executing[key] = next_id

    def _release_execution(self, pid: str, key: Any, job_id: Any, next_id: Any) -> Applied:
        """``job_id`` gives ``key`` up: to ``next_id`` when given (hand-over to the
        next waiting job), else the key is free. A key held by another job, or
        held by a delivery (with a token: see :meth:`_give_execution`), is left
        alone."""
        key = _text(key, "release_execution", "execution_key")
        job_id = _text(job_id, "release_execution", "job_id")
        if next_id is not None:
            next_id = _text(next_id, "release_execution", "next_id")
        if self.executing.get(key) != job_id or key in self.holders:
            return Applied(False)
        self._hand(key, next_id)
        return Applied(True, True)

    def _queue_pause(self, pid: str, queue: Any) -> Applied:
        queue = _text(queue, "queue_pause", "queue")
        self.paused.add(queue)
        return Applied(None, True, (("queue_pause", [pid, queue]),))

    def _queue_resume(self, pid: str, queue: Any) -> Applied:
        queue = _text(queue, "queue_resume", "queue")
        self.paused.discard(queue)
        return Applied(None, True, (("queue_resume", [pid, queue]),))

    def _queue_get_paused(self, pid: str) -> Applied:
        return Applied(sorted(self.paused))

    def _snapshot(self, pid: str) -> Applied:
        """What a starting Consumer needs: the cancelled ids (oldest mark first),
        the paused queues, and the execution keys held (whose waiting queues
        it sweeps, so that a job parked by a node that restarted since is
        handed over, and no waiting queue with jobs goes unused long enough to
        expire)."""
        return Applied(
            {
                "cancelled": list(self.cancelled),
                "paused": sorted(self.paused),
                "executing": sorted(self.executing),
            }
        )


def _text(value: Any, op: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"Global operation {op!r}: {name} must be a non-empty string, got {bounded_repr(value)}"
        )
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(
            f"Global operation {op!r}: {name} is not valid Unicode text (a lone surrogate)"
        ) from None
    if size > MAX_KEY_BYTES:
        raise ValueError(f"Global operation {op!r}: {name} is longer than {MAX_KEY_BYTES} bytes")
    return value


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise ValueError(f"global state snapshot: {name!r} must be a list of strings")
    return value


def _decode_marks(ids: Any, times: Any) -> dict[str, int]:
    """The ``cancelled`` dict of a version 2 snapshot's two blobs."""
    if not isinstance(ids, bytes) or not isinstance(times, bytes):
        raise ValueError("global state snapshot: 'cancelled' and 'cancelled_at' must be bytes")
    if len(times) % 4:
        raise ValueError("global state snapshot: 'cancelled_at' is not whole 32-bit times")
    at = array("I")
    at.frombytes(times)
    if sys.byteorder != "little":
        at.byteswap()
    if not ids:
        if at:
            raise ValueError("global state snapshot: 'cancelled_at' has times for no ids")
        return {}
    try:
        names = ids.decode("utf-8").split(_SEP)
    except UnicodeDecodeError:
        raise ValueError("global state snapshot: 'cancelled' is not UTF-8") from None
    if len(names) != len(at):
        raise ValueError(f"global state snapshot: {len(names)} cancelled ids but {len(at)} times")
    if "" in names:
        raise ValueError("global state snapshot: 'cancelled' holds an empty id")
    marks = dict(zip(names, at, strict=True))
    if len(marks) != len(names):
        raise ValueError("global state snapshot: 'cancelled' holds an id twice")
    return marks


def _flag(value: Any, op: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(
            f"Global operation {op!r}: {name} must be a bool, got {bounded_repr(value)}"
        )
    return value


_Handler = Callable[..., Applied]
_OPERATIONS: dict[str, tuple[int, _Handler]] = {
    "cancel_job": (1, GlobalState._cancel_job),
    "is_cancelled": (2, GlobalState._is_cancelled),
    "is_queued": (2, GlobalState._is_queued),
    "remove_queued": (1, GlobalState._remove_queued),
    "is_executing": (2, GlobalState._is_executing),
    "remove_executed": (1, GlobalState._remove_executed),
    "acquire_execution": (2, GlobalState._acquire_execution),
    "release_execution": (3, GlobalState._release_execution),
    "take_execution": (3, GlobalState._take_execution),
    "give_execution": (4, GlobalState._give_execution),
    "seize_execution": (3, GlobalState._seize_execution),
    "execution_holder": (1, GlobalState._execution_holder),
    "queue_pause": (1, GlobalState._queue_pause),
    "queue_resume": (1, GlobalState._queue_resume),
    "queue_get_paused": (0, GlobalState._queue_get_paused),
    "snapshot": (0, GlobalState._snapshot),
}

#: The operations a Global answers.
OPERATIONS = frozenset(_OPERATIONS)

__all__ = ["OPERATIONS", "Applied", "GlobalState"]
