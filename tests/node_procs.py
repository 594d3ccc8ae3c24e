"""Finding every process of a node and the TCP sockets they listen on (/proc).

A node's processes are the descendants of the process that started it plus
Thespian's admin, which daemonizes into a session of its own, and the
admin's descendants (the actors, forked from it and from each other).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervision.system import Listener, listeners
from tests.cluster_harness import ROOT, group_members, listening_pid
from tests.partition_harness import wait_for
from tests.procs import all_pids, live_children, process_name, stat_fields


def partition_host() -> int:
    """The pid of this process's light node's partition host: the child of
    its fork server named after the PartitionSupervisor (the workers are
    named ``Worker``)."""
    [server] = [p for p in live_children(os.getpid()) if process_name(p) == "forkserver"]
    [host] = [p for p in live_children(server) if process_name(p) == "PartitionSuperv"]
    return host


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


def root_supervisor_pid(admin: int) -> int:
    """The application root's process: the one child of the admin's child
    that has children (the ApplicationMaster's only child)."""
    roots = [
        grandchild
        for child in live_children(admin)
        for grandchild in live_children(child)
        if live_children(grandchild)
    ]
    assert len(roots) == 1, f"expected one root under admin {admin}, got {roots}"
    return roots[0]


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


@dataclass
class NodeProcess:
    """A ``roger-actors node`` process started by :func:`start_node_process`."""

    proc: subprocess.Popen[bytes]
    toml: Path
    name: str
    admin_port: int
    log: Path

    def log_text(self) -> str:
        """What the node printed so far."""
        return self.log.read_text(errors="replace")


def start_node_process(
    tmp_path: Path,
    prefix: str,
    tag: str,
    partitions: dict[str, dict[str, int]],
    secret: str | None = None,
    **config: Any,
) -> NodeProcess:
    """Start ``python -m roger_actors node`` (in a session of its own) with a
    TOML config: the test broker, ``prefix``, a free admin port, JsonCallbacks,
    job modules under ``tests`` and ``partitions``; ``config`` adds keys."""
    from tests.partition_harness import BROKER, _free_admin_port

    name = f"cli-node-{tag}"
    port = _free_admin_port()
    settings: dict[str, Any] = {
        "amqp": f"{BROKER}?name=roger-test-cli-node-{tag}",
        "system_exchange_prefix": prefix,
        "node_name": name,
        "admin_port": port,
        "callbacks": "tests.roger_test_jobs2:JsonCallbacks",
        "allowed_job_modules": ["tests"],
        **config,
    }
    if secret is not None:
        settings["cluster_secret"] = secret
    toml = tmp_path / "node.toml"
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["", "[partitions]"]
    for pid, queues in partitions.items():
        body = ", ".join(f"{q} = {n}" for q, n in queues.items())
        lines.append(f'"{pid}" = {{ {body} }}')
    toml.write_text("\n".join(lines) + "\n")
    log_path = tmp_path / "node.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROGER_")}
    env["PYTHONPATH"] = str(ROOT)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "roger_actors", "node", "--config", str(toml)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
    return NodeProcess(proc, toml, name, port, log_path)


def kill_node(node: NodeProcess) -> None:
    """SIGKILL what is left of a node process and its actor system (teardown)."""
    groups = [node.proc.pid]
    admin = listening_pid(node.admin_port)
    fields = stat_fields(admin) if admin else None
    if fields is not None:
        groups.append(int(fields[2]))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        node.proc.wait(timeout=10)
    wait_for(lambda: not any(group_members(g) for g in groups), 10, what="node processes gone")
