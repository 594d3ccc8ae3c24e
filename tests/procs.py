"""Looking at processes through /proc (Linux), for tests that watch real processes."""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and has not exited (a zombie has exited)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid``, or None when it is gone."""
    fields = stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def ancestors(pid: int) -> list[int]:
    """The pids from ``pid``'s parent up to pid 1, nearest first."""
    found: list[int] = []
    parent = parent_of(pid)
    while parent is not None and parent > 0:
        found.append(parent)
        parent = parent_of(parent) if parent != 1 else None
    return found


def sigkill(pid: int) -> None:
    """SIGKILL the process ``pid``, a process a test found by walking /proc.

    A pid worked out from parent links can be wrong while a tree is dying:
    its processes are reparented to pid 1, whose parent reads as 0, and
    ``os.kill(0, ...)`` would kill this test's own process group. So this
    refuses (AssertionError) pid 0 and 1, this process and its ancestors.
    A pid that is gone raises ProcessLookupError, as ``os.kill`` does."""
    if pid <= 1 or pid == os.getpid() or pid in ancestors(os.getpid()):
        raise AssertionError(f"refusing to SIGKILL pid {pid}: not a process under test")
    os.kill(pid, signal.SIGKILL)


def all_pids() -> list[int]:
    """Every process id on the machine."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def live_children(pid: int) -> list[int]:
    """Pids of the live (non-zombie) children of ``pid``."""
    found = []
    for other in all_pids():
        fields = stat_fields(other)
        if fields is not None and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(other)
    return sorted(found)


def process_name(pid: int) -> str | None:
    """The name of ``pid`` as ``ps -o comm`` shows it (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def open_files(pid: int | None = None) -> dict[int, str]:
    """What process ``pid`` (None: this one) has open: fd -> what it names
    (a path, ``socket:[inode]``, ``pipe:[inode]``...)."""
    where = f"/proc/{pid if pid is not None else 'self'}/fd"
    found = {}
    for name in os.listdir(where):
        try:
            found[int(name)] = os.readlink(f"{where}/{name}")
        except OSError:
            pass  # closed meanwhile (the listing's own fd, say)
    return found


_used_ports: set[int] = set()


def free_port(low: int, high: int) -> int:
    """A TCP port in ``low``..``high`` that nothing listens on now (on 127.0.0.1
    nor on every interface) and that no test of this session was given before
    (a port just released may still be in TIME_WAIT)."""
    candidates = [p for p in range(low, high + 1) if p not in _used_ports]
    random.shuffle(candidates)
    for port in candidates:
        if all(_can_bind(host, port) for host in ("127.0.0.1", "0.0.0.0")):
            _used_ports.add(port)
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(
    condition: Callable[[], T | None], what: str, timeout: float = 15.0, interval: float = 0.02
) -> T:
    """Poll ``condition`` until it returns a truthy value, which is returned;
    fail (AssertionError naming ``what``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(interval)  # the bounded poll's pace
