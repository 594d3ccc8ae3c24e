"""Finding every process of a node and the TCP sockets they listen on (/proc).

A node's processes are the descendants of the process that started it plus
Thespian's admin, which daemonizes into a session of its own, and the
admin's descendants (the actors, forked from it and from each other).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from supervision.system import Listener, listeners
from tests.cluster_harness import listening_pid
from tests.procs import all_pids, stat_fields


def descendants(root: int) -> set[int]:
    """Live processes below ``root`` (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        fields = stat_fields(pid)
        if fields is not None and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def node_processes(admin_port: int, launcher: int | None = None) -> set[int]:
    """The processes of the node whose actor system has ``admin_port``: the
    launcher's (default: this process) descendants, the admin and its
    descendants."""
    pids = descendants(launcher if launcher is not None else os.getpid())
    admin = listening_pid(admin_port)
    if admin is not None:
        pids |= {admin} | descendants(admin)
    return pids


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` holds open (empty when it is gone)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def listening_sockets(pids: set[int]) -> list[tuple[int, Listener]]:
    """``(pid, listener)`` for every TCP/TCP6 socket in state LISTEN that one
    of ``pids`` holds."""
    by_inode = {listener.inode: listener for listener in listeners(None, "tcp")}
    return [
        (pid, by_inode[inode])
        for pid in sorted(pids)
        for inode in sorted(socket_inodes(pid))
        if inode in by_inode
    ]


def uid_of(pid: int) -> int | None:
    """The real uid of ``pid``, or None when it is gone."""
    with contextlib.suppress(OSError):
        for line in open(f"/proc/{pid}/status").read().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


NOBODY = 65534


@contextlib.contextmanager
def squatter(port: int, host: str = "127.0.0.1", uid: int = NOBODY) -> Iterator[int]:
    """A forked process running as ``uid`` (default: nobody) that listens on
    ``host:port`` (IPv6 when ``host`` contains ':') until the block ends;
    yields its pid once it listens."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(ready_r)
            os.close(hold_w)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, port))
                sock.listen(8)
                os.write(ready_w, b"r")
                os.read(hold_r, 1)  # EOF when the test ends the block
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"r":
            raise RuntimeError(f"the squatter could not listen on {host}:{port}")
        yield child
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(child, 0)
