"""The clock supervisors measure restart intensity with.

``monotonic()`` is ``time.monotonic`` unless a test installs another source
with :func:`set_source` (the property tests drive intensity with a fake
clock on simpleSystemBase, where supervisors run in the test's process).
"""

from __future__ import annotations

import time
from collections.abc import Callable

_source: Callable[[], float] = time.monotonic


def monotonic() -> float:
    """Seconds from an arbitrary origin; never goes backwards."""
    return _source()


def set_source(source: Callable[[], float] | None) -> None:
    """Use ``source`` as the clock in this process (``None`` restores the real one)."""
    global _source
    _source = source if source is not None else time.monotonic
