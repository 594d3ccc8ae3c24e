"""Side channels between the Consumer and a busy worker.

A worker runs a batch of jobs inside one actor message, so it cannot read
its Thespian mailbox until the batch is done, and it reports outcomes only
now and then (:data:`roger_actors.partition.worker.FLUSH_SECONDS`). Two
channels outside Thespian cover that:

* The **control socket** (Consumer -> worker): a Linux abstract-namespace
  UNIX datagram socket named in ``WorkerReady.control``, read by a thread
  of the worker. Datagrams: :data:`RETURN_UNSTARTED` (give back every job
  of the batch not yet started: pause, safe stop, a queue removed by
  reconfigure) and :func:`cancel_datagram` (cancel one job, waiting or
  running).
* The **scoreboard** (worker -> Consumer): a small shared-memory file named
  in ``WorkerReady.scoreboard`` where the worker records, as they happen,
  which batch it runs, which job of it runs now and the outcome of every job
  that ended. When the worker's process is killed, the Consumer reads it to
  learn the outcomes the worker had not reported yet (:class:`Scoreboard`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import socket
import struct
import tempfile
import uuid
from dataclasses import dataclass

#: Datagram: return every job of the batch not yet started.
RETURN_UNSTARTED = b"return-unstarted"

_CANCEL_PREFIX = b"cancel:"

#: Most jobs a batch may hold: the scoreboard has one outcome byte per job.
MAX_ITEMS = 64

#: Outcome codes of the scoreboard: the byte written for each outcome name
#: (0 means "not finished").
OUTCOME_CODES: dict[str, int] = {
    "done": 1,
    "error": 2,
    "retry": 3,
    "buried": 4,
    "cancelled": 5,
    "returned": 6,
}
_OUTCOME_NAMES: dict[int, str] = {code: name for name, code in OUTCOME_CODES.items()}

#: ``batch_id: int64``, ``current: int32``, little endian, no padding.
_HEADER = struct.Struct("<qi")
_BATCH_AT = 0
_CURRENT_AT = 8
_OUTCOMES_AT = _HEADER.size
#: Size in bytes of a scoreboard file.
SCOREBOARD_SIZE = _HEADER.size + MAX_ITEMS
_INT64 = struct.Struct("<q")
_INT32 = struct.Struct("<i")


# ---------------------------------------------------------------- control socket


class ControlSocket:
    """The worker's end: a datagram socket in the abstract namespace.

    Read it from one thread with :meth:`receive`, which waits at most
    ``timeout`` seconds so that the reader notices :meth:`close`.
    """

    def __init__(self, timeout: float = 0.1) -> None:
        """Bind a new socket named ``self.name`` (unique to this process)."""
        self.name = f"\0roger-worker-{os.getpid()}-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.name)
        self.sock.settimeout(timeout)
        self.closed = False

    def receive(self) -> bytes | None:
        """The next datagram, or None when none came within the timeout.

        Raises :class:`OSError` once the socket is closed.
        """
        if self.closed:
            raise OSError("control socket closed")
        try:
            return self.sock.recv(256)
        except (TimeoutError, InterruptedError, BlockingIOError):
            return None

    def close(self) -> None:
        """Release the socket; a reader blocked in :meth:`receive` sees OSError
        within its timeout."""
        self.closed = True
        self.sock.close()


def tell(name: str, datagram: bytes) -> bool:
    """Send ``datagram`` to the control socket ``name``; False if it is gone."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(datagram, name)
        except OSError:
            return False
    return True


def cancel_datagram(token: int) -> bytes:
    """The datagram that cancels the job with delivery ``token`` (``b"cancel:<token>"``).

    The worker cancels the job if it is in its current batch: not started
    yet, it is reported with outcome ``"cancelled"``; running, the worker
    records ``"cancelled"`` in its scoreboard and kills its own process. A
    job that already finished, or a token not in the current batch, is left
    alone.
    """
    if isinstance(token, bool) or not isinstance(token, int):
        raise TypeError(f"token must be an int, got {token!r}")
    return _CANCEL_PREFIX + str(token).encode("ascii")


def parse_cancel(datagram: bytes) -> int | None:
    """The token of a :func:`cancel_datagram`, or None for any other datagram."""
    if not datagram.startswith(_CANCEL_PREFIX):
        return None
    digits = datagram[len(_CANCEL_PREFIX) :]
    if not digits.isdigit():  # also refuses b"" and signs
        return None
    return int(digits)


# ---------------------------------------------------------------- scoreboard


@dataclass(frozen=True)
class BatchRecord:
    """What a scoreboard says.

    ``batch_id``: the token of the first job of the current batch (0: none).
    ``current``: index in the batch of the job running now (-1: none).
    ``outcomes``: :data:`MAX_ITEMS` entries, the outcome of the job at that
    index of the batch (a key of :data:`OUTCOME_CODES`) or None when it did
    not finish (not started, or running).
    """

    batch_id: int
    current: int
    outcomes: tuple[str | None, ...]


def _scoreboard_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class Scoreboard:
    """A worker's record of its current batch, in a file shared through mmap.

    The worker makes one with :meth:`create` (it owns the file: :meth:`close`
    removes it); the Consumer opens it by path with :meth:`attach` (read
    only) and reads it with :meth:`read`. The file outlives a worker whose
    process was killed; whoever reads it then removes it with :meth:`unlink`.

    Layout (little endian): ``batch_id`` int64, ``current`` int32, then
    :data:`MAX_ITEMS` outcome bytes (0: not finished, else a value of
    :data:`OUTCOME_CODES`).

    Writes are ordered so that a reader after the writer's death sees a
    consistent record: :meth:`begin_batch` clears the record under batch id
    0 and writes the new batch id last; :meth:`start` sets ``current``;
    :meth:`finish` writes the outcome byte, then sets ``current`` to -1. A
    record read while the writer lives may be between two of these steps.
    One writer thread at a time (the worker serialises its two threads).
    """

    def __init__(self, path: str, memory: mmap.mmap, owner: bool) -> None:
        """Use :meth:`create` or :meth:`attach`."""
        self.path = path
        self._memory = memory
        self._owner = owner

    @classmethod
    def create(cls) -> Scoreboard:
        """A new scoreboard (no batch) in a new file ``roger-sb-<pid>-<uuid hex>``
        under /dev/shm (else the temporary directory); the caller owns it."""
        path = os.path.join(_scoreboard_dir(), f"roger-sb-{os.getpid()}-{uuid.uuid4().hex}")
        initial = _HEADER.pack(0, -1) + bytes(MAX_ITEMS)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, initial)
            memory = mmap.mmap(fd, SCOREBOARD_SIZE, access=mmap.ACCESS_WRITE)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        os.close(fd)
        return cls(path, memory, owner=True)

    @classmethod
    def attach(cls, path: str) -> Scoreboard | None:
        """A read-only view of the scoreboard file ``path``; None when it is
        gone (or not a complete scoreboard)."""
        if not path:
            return None
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < SCOREBOARD_SIZE:
                return None
            memory = mmap.mmap(fd, SCOREBOARD_SIZE, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        return cls(path, memory, owner=False)

    @staticmethod
    def unlink(path: str) -> None:
        """Remove the scoreboard file ``path`` (a dead worker's); no error if gone."""
        if path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def begin_batch(self, batch_id: int) -> None:
        """Start recording the batch whose first job has token ``batch_id`` (> 0):
        no job running, no outcome."""
        if batch_id <= 0:
            raise ValueError(f"batch_id must be > 0, got {batch_id}")
        memory = self._memory
        _INT64.pack_into(memory, _BATCH_AT, 0)
        _INT32.pack_into(memory, _CURRENT_AT, -1)
        memory[_OUTCOMES_AT:SCOREBOARD_SIZE] = bytes(MAX_ITEMS)
        _INT64.pack_into(memory, _BATCH_AT, batch_id)

    def start(self, index: int) -> None:
        """The job at ``index`` of the batch runs now."""
        _check_index(index)
        _INT32.pack_into(self._memory, _CURRENT_AT, index)

    def finish(self, index: int, outcome: str) -> None:
        """The job at ``index`` ended with ``outcome`` (a key of
        :data:`OUTCOME_CODES`): write its outcome byte, then ``current = -1``."""
        _check_index(index)
        code = OUTCOME_CODES.get(outcome)
        if code is None:
            raise ValueError(f"unknown outcome {outcome!r}")
        self._memory[_OUTCOMES_AT + index] = code
        _INT32.pack_into(self._memory, _CURRENT_AT, -1)

    def read(self) -> BatchRecord:
        """The record as it is now (a byte that is no known code reads as None)."""
        batch_id, current = _HEADER.unpack_from(self._memory, 0)
        raw = self._memory[_OUTCOMES_AT:SCOREBOARD_SIZE]
        return BatchRecord(batch_id, current, tuple(_OUTCOME_NAMES.get(code) for code in raw))

    def close(self) -> None:
        """Release the mapping; the owner (the :meth:`create` side) also removes the file."""
        with contextlib.suppress(BufferError, ValueError):
            self._memory.close()
        if self._owner:
            self.unlink(self.path)


def _check_index(index: int) -> None:
    if not 0 <= index < MAX_ITEMS:
        raise IndexError(f"batch index {index} outside 0..{MAX_ITEMS - 1}")
