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
  running). Abstract names have no permissions and are listed in
  ``/proc/net/unix``, so the socket asks the kernel for every sender's
  credentials (``SO_PASSCRED``) and drops any datagram not sent by a
  process of our own uid; delivery tokens come from :class:`Tokens`
  (random, not guessable), so a token is only known to the node.
* The **scoreboard** (worker -> Consumer): a small shared-memory file named
  in ``WorkerReady.scoreboard`` where the worker records, as they happen,
  which batch it runs, which job of it runs now and the outcome of every job
  that ended. When the worker's process is killed, the Consumer reads it to
  learn the outcomes the worker had not reported yet (:class:`Scoreboard`).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import socket
import stat
import struct
import tempfile
import uuid
from collections.abc import Container, Iterator
from dataclasses import dataclass

log = logging.getLogger("roger_actors.control")

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


_UCRED = struct.Struct("=iII")  # struct ucred: pid, uid, gid


class ControlSocket:
    """The worker's end: a datagram socket in the abstract namespace that
    accepts datagrams from processes of this process's uid only.

    Read it from one thread with :meth:`receive`, which waits at most
    ``timeout`` seconds so that the reader notices :meth:`close`.
    ``dropped`` counts the datagrams refused because of their sender.
    """

    def __init__(self, timeout: float = 0.1) -> None:
        """Bind a new socket named ``self.name`` (unique to this process) that
        receives its senders' credentials."""
        self.name = f"\0roger-worker-{os.getpid()}-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.name)
        self.sock.settimeout(timeout)
        self.closed = False
        self.dropped = 0

    def receive(self) -> bytes | None:
        """The next datagram sent by a process of our uid, or None when none
        came within the timeout. A datagram from another uid (or without
        credentials) is dropped, counted in ``dropped`` and logged (the first
        few), and also gives None.

        Raises :class:`OSError` once the socket is closed.
        """
        if self.closed:
            raise OSError("control socket closed")
        try:
            data, ancillary, _, _ = self.sock.recvmsg(256, socket.CMSG_SPACE(_UCRED.size))
        except (TimeoutError, InterruptedError, BlockingIOError):
            return None
        uid = _sender_uid(ancillary)
        if uid != os.getuid():
            self.dropped += 1
            if self.dropped <= 3:
                log.warning("control datagram from uid %s dropped (not ours)", uid)
            return None
        return data

    def close(self) -> None:
        """Release the socket; a reader blocked in :meth:`receive` sees OSError
        within its timeout."""
        self.closed = True
        self.sock.close()


def _sender_uid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            if len(data) >= _UCRED.size:
                return int(_UCRED.unpack_from(data)[1])
    return None


#: Tokens drawn from the operating system's random source at once.
_TOKENS_PER_DRAW = 512
_DRAW = struct.Struct(f"<{_TOKENS_PER_DRAW}Q")


class Tokens(Iterator[int]):
    """Delivery tokens nobody outside the node can guess: random positive
    63-bit integers (they fit the scoreboard's int64 batch id), never one
    that is in ``in_use`` (the tokens still in flight).

    The bits come from ``os.urandom``, :data:`_TOKENS_PER_DRAW` tokens' worth
    at a time (one system call per token cost the partition host about 5% of
    its time in a drain)."""

    def __init__(self, in_use: Container[int]) -> None:
        self._in_use = in_use
        self._drawn: list[int] = []

    def __next__(self) -> int:
        while True:
            if not self._drawn:
                self._drawn = [bits >> 1 for bits in _DRAW.unpack(os.urandom(_DRAW.size))]
            token = self._drawn.pop()
            if token > 0 and token not in self._in_use:
                return token


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

    @classmethod
    def take(cls, path: str) -> Scoreboard | None:
        """:meth:`attach`, then remove the file: the mapping is all the reader
        needs, and a removed file cannot outlive the worker and the reader
        (the worker's own removal then finds nothing, which is fine)."""
        board = cls.attach(path)
        if board is not None:
            cls.unlink(path)
        return board

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


_SCOREBOARD_NAME = re.compile(r"roger-sb-([0-9]{1,10})-[0-9a-f]{32}")


def sweep_scoreboards(directory: str | None = None) -> int:
    """Remove the scoreboard files left by dead workers: files named
    ``roger-sb-<pid>-<hex>`` in ``directory`` (default: where
    :meth:`Scoreboard.create` puts them) that are regular files owned by our
    uid and whose pid no longer exists. Returns how many were removed; never
    raises for a file that vanishes or cannot be examined."""
    where = directory or _scoreboard_dir()
    removed = 0
    try:
        names = os.listdir(where)
    except OSError:
        return 0
    for name in names:
        match = _SCOREBOARD_NAME.fullmatch(name)
        if match is None or _pid_exists(int(match.group(1))):
            continue
        path = os.path.join(where, name)
        try:
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
                os.unlink(path)
                removed += 1
        except OSError:
            continue
    return removed


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid a worker had: leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_index(index: int) -> None:
    if not 0 <= index < MAX_ITEMS:
        raise IndexError(f"batch index {index} outside 0..{MAX_ITEMS - 1}")
