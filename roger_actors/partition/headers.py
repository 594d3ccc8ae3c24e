"""The headers of a delivery the Consumer publishes again.

A delivery set aside in ``.invalid``, parked in an execution-waiting queue
or handed over to a lease is republished with its body unchanged and its own
headers plus a few of ours. Without a bound a producer's headers just under
``frame_max`` plus ours overflow the frame: the broker closes the whole
connection, and the delivery comes back, again and again. So the headers are
kept only up to :data:`KEPT_HEADERS_BYTES` encoded bytes (less on a
connection with a small ``frame_max``: :func:`headers_budget`); bigger ones
are replaced by :data:`DROPPED_HEADERS_HEADER`, their size.

Pure code: no I/O.
"""

from __future__ import annotations

from typing import Any

from roger_actors.transport.tables import encoded_size

#: Most encoded bytes of a delivery's own headers kept when it is republished.
KEPT_HEADERS_BYTES = 4096
#: Header that replaces headers too large to keep: their encoded size (or -1).
DROPPED_HEADERS_HEADER = "x-roger-headers-dropped"
#: Bytes of a frame kept free for our own properties and headers.
PROPERTIES_ROOM = 2048


def kept_headers(headers: dict[str, Any], budget: int = KEPT_HEADERS_BYTES) -> dict[str, Any]:
    """A copy of a delivery's ``headers`` to republish it with: the headers
    themselves when their AMQP encoding takes at most ``budget`` bytes, else
    only ``{x-roger-headers-dropped: <their encoded size>}`` (``-1`` when they
    cannot be encoded again). Never raises."""
    if not headers:
        return {}
    try:
        size = encoded_size(headers)
    except Exception:
        return {DROPPED_HEADERS_HEADER: -1}
    if size <= budget:
        return dict(headers)
    return {DROPPED_HEADERS_HEADER: size}


def headers_budget(frame_max: int) -> int:
    """Bytes of a delivery's own headers that may be republished on a
    connection that negotiated ``frame_max`` (0: unknown or unlimited):
    :data:`KEPT_HEADERS_BYTES`, less when the frame is small (room is kept for
    our properties), never below 0."""
    if frame_max <= 0:
        return KEPT_HEADERS_BYTES
    return max(0, min(KEPT_HEADERS_BYTES, frame_max - PROPERTIES_ROOM))


__all__ = [
    "DROPPED_HEADERS_HEADER",
    "KEPT_HEADERS_BYTES",
    "headers_budget",
    "kept_headers",
]
