"""The state Roger's Global keeps for one partition, and the operations on it.

Pure data, no I/O: the Global actor (:mod:`roger_actors.partition.global_server`)
applies requests to a :class:`GlobalState` and persists its snapshot.

- ``cancelled``: job ids marked cancelled (``cancel_job``); a job whose id is
  here is not run when dequeued, and one running is killed.
- ``queued``: queue keys of jobs waiting in a queue (``queue_key``).
- ``executing``: execution key -> the id of the job holding it (``""`` when
  set through the public ``is_executing(..., add=True)``).
- ``paused``: queue types paused cluster-wide.

A snapshot is CBOR: ``{"v": 1, "cancelled": [...], "queued": [...],
"executing": {key: holder}, "paused": [...]}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from roger_actors import cbor_strict

SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class Applied:
    """What applying one request did: the reply ``value``, whether the state
    changed (``dirty``), and system casts to broadcast ``[(command, args)]``."""

    value: Any
    dirty: bool = False
    casts: tuple[tuple[str, list[Any]], ...] = ()


@dataclass
class GlobalState:
    """One partition's global state; see the module docstring."""

    cancelled: set[str] = field(default_factory=set)
    queued: set[str] = field(default_factory=set)
    executing: dict[str, str] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)

    # ------------------------------------------------------------ snapshots

    def encode(self) -> bytes:
        """The CBOR snapshot of this state."""
        return bytes(
            cbor2.dumps(
                {
                    "v": SNAPSHOT_VERSION,
                    "cancelled": sorted(self.cancelled),
                    "queued": sorted(self.queued),
                    "executing": dict(sorted(self.executing.items())),
                    "paused": sorted(self.paused),
                }
            )
        )

    @classmethod
    def decode(cls, data: bytes | None) -> GlobalState:
        """The state a snapshot holds; an empty state for None or ``b""``.

        Raises ValueError naming the problem for a snapshot that is not one.
        """
        if not data:
            return cls()
        try:
            raw = cbor_strict.loads(data, max_depth=4)
        except cbor_strict.CborError as exc:
            raise ValueError(f"global state snapshot is not CBOR: {exc}") from None
        if not isinstance(raw, dict) or raw.get("v") != SNAPSHOT_VERSION:
            raise ValueError("global state snapshot has no supported version field")
        state = cls()
        for name in ("cancelled", "queued", "paused"):
            items = raw.get(name, [])
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError(f"global state snapshot: {name!r} must be a list of strings")
            setattr(state, name, set(items))
        executing = raw.get("executing", {})
        if not isinstance(executing, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in executing.items()
        ):
            raise ValueError("global state snapshot: 'executing' must map strings to strings")
        state.executing = dict(executing)
        return state

    # ------------------------------------------------------------ requests

    def apply(self, partition_id: str, op: str, args: list[Any]) -> Applied:
        """Apply request ``op`` with ``args``; raises ValueError (naming the
        operation and the argument) for an unknown operation or bad arguments."""
        handler = _OPERATIONS.get(op)
        if handler is None:
            raise ValueError(f"unknown Global operation {op!r}")
        arity, function = handler
        if not isinstance(args, list) or len(args) != arity:
            raise ValueError(f"Global operation {op!r} takes {arity} argument(s), got {args!r}")
        return function(self, partition_id, *args)

    def _cancel_job(self, pid: str, job_id: Any) -> Applied:
        job_id = _text(job_id, "cancel_job", "job_id")
        self.cancelled.add(job_id)
        return Applied(None, True, (("cancel", [pid, job_id]),))

    def _is_cancelled(self, pid: str, job_id: Any, remove: Any) -> Applied:
        job_id = _text(job_id, "is_cancelled", "job_id")
        was = job_id in self.cancelled
        if _flag(remove, "is_cancelled", "remove") and was:
            self.cancelled.discard(job_id)
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
        if self.executing.pop(key, None) is not None:
            return Applied(None, True)
        return Applied(None)

    def _acquire_execution(self, pid: str, key: Any, job_id: Any) -> Applied:
        """True when ``job_id`` now holds ``key`` (it was free, or it held it
        already: a redelivered job keeps its key)."""
        key = _text(key, "acquire_execution", "execution_key")
        job_id = _text(job_id, "acquire_execution", "job_id")
        holder = self.executing.get(key)
        if holder is None:
            self.executing[key] = job_id
            return Applied(True, True)
        return Applied(holder == job_id)

    def _release_execution(self, pid: str, key: Any, job_id: Any, next_id: Any) -> Applied:
        """``job_id`` gives ``key`` up: to ``next_id`` when given (hand-over to the
        next waiting job), else the key is free. A key held by another job is
        left alone."""
        key = _text(key, "release_execution", "execution_key")
        job_id = _text(job_id, "release_execution", "job_id")
        if next_id is not None:
            next_id = _text(next_id, "release_execution", "next_id")
        if self.executing.get(key) != job_id:
            return Applied(False)
        if next_id is None:
            del self.executing[key]
        else:
            self.executing[key] = next_id
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
        """What a starting Consumer needs: the cancelled ids and paused queues."""
        return Applied({"cancelled": sorted(self.cancelled), "paused": sorted(self.paused)})


def _text(value: Any, op: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"Global operation {op!r}: {name} must be a non-empty string, got {value!r}"
        )
    return value


def _flag(value: Any, op: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"Global operation {op!r}: {name} must be a bool, got {value!r}")
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
    "queue_pause": (1, GlobalState._queue_pause),
    "queue_resume": (1, GlobalState._queue_resume),
    "queue_get_paused": (0, GlobalState._queue_get_paused),
    "snapshot": (0, GlobalState._snapshot),
}

#: The operations a Global answers.
OPERATIONS = frozenset(_OPERATIONS)

__all__ = ["OPERATIONS", "Applied", "GlobalState"]
