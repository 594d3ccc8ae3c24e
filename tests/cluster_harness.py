"""Clusters for tests: an in-process node plus node processes on one machine.

Each :class:`Cluster` has its own ``system_exchange_prefix``, so tests (and
other users of the shared broker) never see each other's nodes. A cluster
made with a ``secret`` gives it (``cluster_secret``) to every node it starts:
the signed System path. Another
node is a ``python -c`` process that starts a node from a JSON config and
stops when its stdin closes; :meth:`OtherNode.kill` SIGKILLs all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiormq

import roger_actors as roger
from roger_actors.config import load_config
from roger_actors.node import system as system_mod
from roger_actors.system_protocol import exchange_name
from tests.partition_harness import BROKER, NodeHarness, _free_admin_port, wait_for
from tests.procs import all_pids, stat_fields

ROOT = Path(__file__).resolve().parent.parent


def delete_exchange(exchange: str) -> None:
    """Delete ``exchange`` (missing is fine)."""

    async def run() -> None:
        connection = await aiormq.connect(BROKER + "?name=roger-test-system-raw")
        try:
            channel = await connection.channel()
            await channel.exchange_delete(exchange)
        finally:
            await connection.close()

    asyncio.run(run())



class Cluster:
    """A test's System exchange prefix, its in-process node, and extra node processes."""

    def __init__(self, tmp_path: Path, secret: str | None = None) -> None:
        self.tmp_path = tmp_path
        self.secret = secret
        self.prefix = f"t{uuid.uuid4().hex[:12]}."
        self.exchange = exchange_name(self.prefix)
        self.harness = NodeHarness(tmp_path)
        self.node_name = f"n1-{self.harness.tag}"
        self.others: list[OtherNode] = []

    def start(self, **settings: Any) -> roger.Node:
        """Start the in-process node (``settings``: more config keys) and wait
        until it lists itself as a member."""
        if self.secret is not None:
            settings.setdefault("cluster_secret", self.secret)
        node = self.harness.start(
            system_exchange_prefix=self.prefix, node_name=self.node_name, **settings
        )
        wait_for(roger.System.is_connected, what="System connected")
        wait_for(lambda: self.members() == [self.node_name], what="own node listed as member")
        return node

    @property
    def node(self) -> roger.Node:
        assert self.harness.node is not None
        return self.harness.node

    def system_address(self) -> Any:
        return self.node._child_address("system")

    def members(self) -> list[str]:
        return system_mod.members(self.system_address(), self.node.app.system)

    def stats(self) -> dict[str, int]:
        return system_mod.stats(self.system_address(), self.node.app.system)

    def start_other(self, name: str, **settings: Any) -> OtherNode:
        """Start a node named ``name`` in another process (``settings`` are more
        config keys, e.g. ``partitions``); it stops when its stdin closes.
        Returns once this node sees it as a member."""
        port = _free_admin_port()
        config = {
            "amqp": f"{BROKER}?name=roger-test-{self.harness.tag}-{name}",
            "admin_port": port,
            "node_name": name,
            "system_exchange_prefix": self.prefix,
            "shutdown_timeout": 2,
            **({"cluster_secret": self.secret} if self.secret is not None else {}),
            **settings,
        }
        script = (
            "import json, sys\n"
            "import roger_actors as roger\n"
            "roger.start(json.loads(sys.argv[1]))\n"
            "print('READY', flush=True)\n"
            "sys.stdin.read()\n"
            "roger.stop()\n"
        )
        log = open(self.tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
        log.close()
        other = OtherNode(proc)
        self.others.append(other)
        wait_for(
            lambda: name in self.members() or proc.poll() is not None,
            60,
            what=f"node {name} joining",
        )
        assert proc.poll() is None, (self.tmp_path / f"{name}.log").read_text()
        if load_config(config).actor_system_base == "light":
            return other  # no admin: its actors and partition host are in its own group
        # Thespian's admin daemonizes into a process group of its own, and the
        # node's actors are forked from it: that is the group to kill.
        admin = wait_for(lambda: listening_pid(port), what=f"admin of {name} on port {port}")
        fields = stat_fields(admin)
        assert fields is not None
        other.actor_group = int(fields[2])
        return other

    def close(self) -> None:
        for other in self.others:
            other.kill()
        try:
            self.harness.close()
        finally:
            delete_exchange(self.exchange)


class OtherNode:
    """A node in another process: the launcher, and the process group of its actors."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.actor_group: int | None = None

    def kill(self) -> None:
        """SIGKILL the node's actor process group and its launcher; wait until all are gone."""
        groups = [self.proc.pid] + ([self.actor_group] if self.actor_group else [])
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        wait_for(
            lambda: not any(group_members(pgid) for pgid in groups), 10, what="node processes gone"
        )


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` (IPv4 or IPv6), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for pid in all_pids():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return pid
    return None


def group_members(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid``."""
    found = []
    for pid in all_pids():
        fields = stat_fields(pid)
        if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(pid)
    return found

