"""The reconnection back-off shared by the actors that hold a broker connection."""

from __future__ import annotations


class Backoff:
    """Delays that grow by ``factor`` from ``first`` up to ``cap`` seconds."""

    def __init__(self, first: float = 0.5, factor: float = 2.0, cap: float = 10.0) -> None:
        self.first, self.factor, self.cap = first, factor, cap
        self.delay = first

    def next(self) -> float:
        """The delay before the next attempt; the one after it grows."""
        delay = self.delay
        self.delay = min(self.delay * self.factor, self.cap)
        return delay

    def reset(self) -> None:
        """Start over from ``first`` (after a success)."""
        self.delay = self.first
