"""The persister that persists nothing (Roger's default)."""

from __future__ import annotations

from roger_actors.persisters.base import StatePersister

__all__ = ["Stub"]


class Stub(StatePersister):
    """Keeps no state: :meth:`store` discards the data and :meth:`load` returns ``None``.

    A partition's Global then starts empty after every restart or failover.
    """

    def load(self, partition_id: str) -> bytes | None:
        """Return ``None``: nothing is ever stored."""
        return None

    def store(self, partition_id: str, data: bytes) -> None:
        """Discard ``data``."""
