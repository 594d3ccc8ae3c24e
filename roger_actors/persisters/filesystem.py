"""A persister that keeps each partition's Global state in a file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from roger_actors.persisters.base import StatePersister

__all__ = ["Filesystem", "state_file_name"]

_KEPT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_STEM = 200
_SUFFIX = ".state"


def state_file_name(partition_id: str) -> str:
    """Return the file name that holds ``partition_id``'s state, e.g. ``"myapp.state"``.

    Lowercase ASCII letters, digits, ``_`` and ``-`` are kept; every other
    character (including upper case, ``.``, ``/`` and ``%``) is written as
    ``%XX`` per UTF-8 byte, so distinct ids give distinct names even on
    case-insensitive file systems and no id can name a path outside the
    directory. A stem longer than 200 characters is cut and completed with
    ``~`` and the SHA-256 of the id. Raises :class:`TypeError` or
    :class:`ValueError` for an id that is not a non-empty ``str``.
    """
    if not isinstance(partition_id, str):
        raise TypeError(f"partition_id must be a str, got {type(partition_id).__name__}")
    if not partition_id:
        raise ValueError("partition_id must be a non-empty str")
    stem = "".join(
        ch if ch in _KEPT else "".join(f"%{byte:02X}" for byte in ch.encode("utf-8"))
        for ch in partition_id
    )
    if len(stem) > _MAX_STEM:
        digest = hashlib.sha256(partition_id.encode("utf-8")).hexdigest()
        stem = f"{stem[: _MAX_STEM - 1 - len(digest)]}~{digest}"
    return stem + _SUFFIX


class Filesystem(StatePersister):
    """Stores each partition's state in ``<path>/<state_file_name(partition_id)>``.

    Writes are atomic: the data goes to a temporary file in the same directory,
    is flushed to disk and then renamed over the old file (:func:`os.replace`),
    so a reader or a crash sees either the old or the new state, never a mix.
    The directory is created on demand. In a cluster this only makes sense
    when all nodes share the directory (as in Roger).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Use the directory ``path`` (created when needed)."""
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
        self.path = Path(path)

    def __repr__(self) -> str:
        """Show the directory."""
        return f"Filesystem(path={str(self.path)!r})"

    def file_for(self, partition_id: str) -> Path:
        """Return the path of the file that holds ``partition_id``'s state."""
        return self.path / state_file_name(partition_id)

    def init(self, partition_id: str) -> None:
        """Create the directory if it does not exist yet."""
        state_file_name(partition_id)  # validates the id
        self.path.mkdir(parents=True, exist_ok=True)

    def load(self, partition_id: str) -> bytes | None:
        """Return the stored bytes, or ``None`` when no state was stored for ``partition_id``."""
        try:
            return self.file_for(partition_id).read_bytes()
        except FileNotFoundError:
            return None

    def store(self, partition_id: str, data: bytes) -> None:
        """Atomically replace ``partition_id``'s file with ``data`` (bytes-like)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        target = self.file_for(partition_id)
        self.path.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._sync_directory()

    def _sync_directory(self) -> None:
        """Flush the rename to disk where the platform allows opening directories."""
        flags = getattr(os, "O_DIRECTORY", None)
        if flags is None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | flags)
        except OSError:
            return
        try:
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)
