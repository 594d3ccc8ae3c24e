"""Authentication of cluster messages with the cluster secret.

Every message that nodes exchange through the broker about the cluster
(System commands, replies and heartbeats; Global requests, replies and
casts; Global snapshots at rest) is signed with HMAC-SHA256 under the
``cluster_secret`` config key. The signature covers a *purpose* label (so a
signed reply can't be replayed as a command), a timestamp and the body:

    mac = HMAC(secret, b"roger-cluster-v1\\0" + purpose + b"\\0" + ts + b"\\0" + body)

Two carriers:

- AMQP messages carry it in headers (:meth:`ClusterAuth.headers`,
  :meth:`ClusterAuth.check`): ``x-roger-ts`` (milliseconds since the epoch,
  as a decimal string) and ``x-roger-sig`` (the hex MAC). A message older
  than ``max_age`` seconds, or dated more than ``max_age`` in the future, is
  refused too, which bounds replays.
- Stored blobs (snapshots) are sealed: :meth:`ClusterAuth.seal` returns
  ``MAGIC + mac + body`` and :meth:`ClusterAuth.unseal` checks it. No age
  applies to a stored blob.

With no secret (``ClusterAuth(None)``) nothing is signed and every message is
accepted: the single trusted virtual host mode that ``docs/security.md``
describes. A node with a secret refuses unsigned messages.

:class:`DropLog` counts refused messages and logs them at most once per
interval, so a flood of forgeries cannot flood the log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_MAX_AGE",
    "PURPOSE_GLOBAL_REPLY",
    "PURPOSE_SYSTEM",
    "PURPOSE_SYSTEM_REPLY",
    "SEAL_MAGIC",
    "AuthError",
    "ClusterAuth",
    "DropLog",
    "purpose_global_request",
    "purpose_snapshot",
]

#: The purposes every signer and checker agrees on (the label under the MAC).
#: System exchange traffic: commands, casts, heartbeats, leave (any publisher,
#: Global's cancel/pause casts included).
PURPOSE_SYSTEM = "system"
#: Replies to System calls (published to the caller's reply queue).
PURPOSE_SYSTEM_REPLY = "system-reply"
#: Replies of a Global to a request.
PURPOSE_GLOBAL_REPLY = "global-reply"


def purpose_global_request(partition_id: str) -> str:
    """The purpose of a request to partition ``partition_id``'s Global (bound to
    the partition, so a request signed for one can't be replayed to another)."""
    return f"global-request:{partition_id}"


def purpose_snapshot(partition_id: str) -> str:
    """The purpose of partition ``partition_id``'s stored Global snapshot."""
    return f"snapshot:{partition_id}"


#: Header names on AMQP messages.
TS_HEADER = "x-roger-ts"
SIG_HEADER = "x-roger-sig"

#: Seconds a signed message stays acceptable (either side of the receiver's clock).
DEFAULT_MAX_AGE = 300.0

#: First bytes of a sealed blob.
SEAL_MAGIC = b"RGS1"

_DOMAIN = b"roger-cluster-v1\0"
_MAC_BYTES = hashlib.sha256().digest_size
#: Longest timestamp header accepted (digits of a millisecond time, with room).
_MAX_TS_CHARS = 16


class AuthError(ValueError):
    """A message or blob failed its authentication check. The message names
    the problem without quoting the untrusted input."""


class ClusterAuth:
    """Signs and checks cluster messages under one secret.

    ``secret`` is the ``cluster_secret`` config value (``str`` or ``bytes``),
    or ``None`` for no authentication. Instances are immutable, cheap, and
    safe to share between threads. ``repr`` never shows the secret.
    """

    __slots__ = ("_key",)

    def __init__(self, secret: str | bytes | None) -> None:
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if secret is not None and not isinstance(secret, bytes):
            raise TypeError(f"secret must be str, bytes or None, got {type(secret).__name__}")
        self._key = secret or None

    def __repr__(self) -> str:
        return f"ClusterAuth({'enabled' if self._key else 'disabled'})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Actors receive it through their start arguments (same host, same trust).
        return (ClusterAuth, (self._key,))

    @property
    def enabled(self) -> bool:
        """True when a secret is set (messages are signed and checked)."""
        return self._key is not None

    # ------------------------------------------------------------ messages

    def _mac(self, purpose: str, timestamp: bytes, body: bytes) -> bytes:
        assert self._key is not None
        data = b"".join((_DOMAIN, purpose.encode("utf-8"), b"\0", timestamp, b"\0", body))
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def headers(self, purpose: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
        """The headers that sign ``body`` for ``purpose``: ``{}`` without a
        secret. ``now`` (seconds since the epoch) is for tests."""
        if self._key is None:
            return {}
        timestamp = str(int((time.time() if now is None else now) * 1000)).encode("ascii")
        mac = self._mac(purpose, timestamp, bytes(body))
        return {TS_HEADER: timestamp.decode("ascii"), SIG_HEADER: mac.hex()}

    def check(
        self,
        purpose: str,
        body: bytes | bytearray | memoryview,
        headers: Mapping[str, Any] | None,
        *,
        max_age: float | None = DEFAULT_MAX_AGE,
        now: float | None = None,
    ) -> None:
        """Return if ``body`` with ``headers`` is signed for ``purpose``;
        raise :class:`AuthError` otherwise. Without a secret every message
        passes. ``max_age`` (seconds, None = any age) bounds how far the
        signed timestamp may be from now; ``headers`` may be None or hold
        values of any type (they come from the network)."""
        if self._key is None:
            return
        raw_ts = headers.get(TS_HEADER) if headers else None
        raw_sig = headers.get(SIG_HEADER) if headers else None
        if raw_ts is None or raw_sig is None:
            raise AuthError("message is not signed")
        if isinstance(raw_ts, bytes):
            raw_ts = raw_ts.decode("ascii", "replace")
        if isinstance(raw_sig, bytes):
            raw_sig = raw_sig.decode("ascii", "replace")
        if not isinstance(raw_ts, str) or not isinstance(raw_sig, str):
            raise AuthError("signature headers have the wrong type")
        if not (0 < len(raw_ts) <= _MAX_TS_CHARS and raw_ts.isascii() and raw_ts.isdigit()):
            raise AuthError("signature timestamp is malformed")
        if len(raw_sig) != 2 * _MAC_BYTES:
            raise AuthError("signature is malformed")
        try:
            given = bytes.fromhex(raw_sig)
        except ValueError:
            raise AuthError("signature is malformed") from None
        expected = self._mac(purpose, raw_ts.encode("ascii"), bytes(body))
        if not hmac.compare_digest(given, expected):
            raise AuthError("bad signature")
        if max_age is not None:
            age = (time.time() if now is None else now) - int(raw_ts) / 1000
            if abs(age) > max_age:
                raise AuthError(f"signed message is {age:.0f} s old (limit {max_age:.0f} s)")

    # ------------------------------------------------------------ blobs

    def seal(self, purpose: str, body: bytes) -> bytes:
        """``body`` sealed for storage: ``SEAL_MAGIC + mac + body``, or ``body``
        unchanged without a secret."""
        if self._key is None:
            return bytes(body)
        return SEAL_MAGIC + self._mac(purpose, b"", bytes(body)) + bytes(body)

    def unseal(self, purpose: str, blob: bytes) -> bytes:
        """The body of a blob made by :meth:`seal`; :class:`AuthError` when the
        blob is not sealed for ``purpose`` under this secret. Without a secret
        a sealed blob is unwrapped unchecked and anything else is returned as
        it is."""
        data = bytes(blob)
        sealed = data.startswith(SEAL_MAGIC) and len(data) >= len(SEAL_MAGIC) + _MAC_BYTES
        if self._key is None:
            return data[len(SEAL_MAGIC) + _MAC_BYTES :] if sealed else data
        if not sealed:
            raise AuthError("stored data is not sealed with the cluster secret")
        mac = data[len(SEAL_MAGIC) : len(SEAL_MAGIC) + _MAC_BYTES]
        body = data[len(SEAL_MAGIC) + _MAC_BYTES :]
        if not hmac.compare_digest(mac, self._mac(purpose, b"", body)):
            raise AuthError("stored data has a bad seal (another secret, or altered)")
        return body


class DropLog:
    """Counts refused messages by reason and logs them, at most once per
    ``interval`` seconds per logger, with the counts since the last line.

    Thread-safe. :attr:`total` is the count since creation (for tests and
    status replies).
    """

    def __init__(self, logger: logging.Logger, what: str, interval: float = 10.0) -> None:
        self._logger = logger
        self._what = what
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._last = float("-inf")
        self.total = 0

    def drop(self, reason: str) -> None:
        """Count one refused message for ``reason`` (a short fixed text, never
        untrusted input) and log if the interval has passed."""
        with self._lock:
            self.total += 1
            self._pending[reason] = self._pending.get(reason, 0) + 1
            now = time.monotonic()
            if now - self._last < self._interval:
                return
            self._last = now
            pending, self._pending = self._pending, {}
        summary = ", ".join(f"{count} x {why}" for why, count in sorted(pending.items()))
        self._logger.warning("dropped %s: %s", self._what, summary)
