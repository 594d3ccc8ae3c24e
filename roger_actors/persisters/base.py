"""The persister interface for a partition's Global state."""

from __future__ import annotations

import abc

__all__ = ["StatePersister"]


class StatePersister(abc.ABC):
    """Stores the opaque snapshot of a partition's Global state between restarts.

    Roger's ``Roger.Partition.Global.StatePersister`` behaviour. The Global of
    a partition calls :meth:`init` when it starts, :meth:`load` to restore the
    state and :meth:`store` whenever the state changed. ``partition_id`` is
    any valid partition id (arbitrary text); ``data`` is bytes that the
    persister stores and returns unchanged without interpreting them. Methods
    are called from one thread at a time per instance; exceptions propagate to
    the Global, which treats them as failures.
    """

    def init(self, partition_id: str) -> None:  # noqa: B027 - optional hook, no-op by default
        """Prepare storage for ``partition_id`` (called when its Global starts). Default: no-op."""

    @abc.abstractmethod
    def load(self, partition_id: str) -> bytes | None:
        """Return the last data stored for ``partition_id``, or ``None`` when nothing is stored."""

    @abc.abstractmethod
    def store(self, partition_id: str, data: bytes) -> None:
        """Store ``data`` for ``partition_id``, replacing what was stored before."""
