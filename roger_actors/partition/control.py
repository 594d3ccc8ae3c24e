"""A side channel from the Consumer to a busy worker.

A worker runs a batch of jobs inside one actor message, so it cannot read
its Thespian mailbox until the batch is done. To take back jobs it has not
started yet (pause, safe stop, a queue removed by reconfigure), the
Consumer sends a datagram to the worker's control socket, a Linux
abstract-namespace UNIX datagram socket named in ``WorkerReady``; the
worker reads it, without blocking, before each job of a batch.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid

#: Datagram: return every job of the batch not yet started.
RETURN_UNSTARTED = b"return-unstarted"


class ControlSocket:
    """The worker's end: a non-blocking datagram socket in the abstract namespace."""

    def __init__(self) -> None:
        self.name = f"\0roger-worker-{os.getpid()}-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.name)
        self.sock.setblocking(False)

    def pending(self) -> set[bytes]:
        """Every datagram received since the last call."""
        got: set[bytes] = set()
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                got.add(self.sock.recv(256))
        return got

    def close(self) -> None:
        """Release the socket."""
        self.sock.close()


def tell(name: str, datagram: bytes) -> bool:
    """Send ``datagram`` to the control socket ``name``; False if it is gone."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(datagram, name)
        except OSError:
            return False
    return True
