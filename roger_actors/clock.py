"""Wall-clock time as Roger represents it: integer milliseconds since the epoch."""

from __future__ import annotations

import time

__all__ = ["now"]


def now() -> int:
    """Return the current wall-clock time as integer milliseconds since the Unix epoch.

    This is Roger's ``Roger.now/0``; ``Job.queued_at`` and ``Job.started_at``
    hold values from it. It follows the system clock, so it may jump; use
    :func:`time.monotonic` for measuring durations.
    """
    return time.time_ns() // 1_000_000
