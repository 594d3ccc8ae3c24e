"""RabbitMQ nodes of a test's own: one node, or a cluster of several, on this host.

The machine's broker (``rabbit@localhost`` on 5672) is shared by every test.
A test that restarts or kills a broker, or needs a setting the shared one
does not have (a short ``consumer_timeout``), starts nodes of its own here.
Each node has its own name (``<name>@localhost``), AMQP and distribution
ports, data and log directories under one base directory, and an empty
plugin list; all nodes of a :class:`BrokerCluster` share one Erlang cookie
(the ``.erlang.cookie`` in the base directory, which is ``HOME`` for the
node and for ``rabbitmqctl``). Everything listens on 127.0.0.1 only.

Start one node::

    node = BrokerNode.create("roger-t1", extra_conf={"consumer_timeout": "5000"})
    node.start()          # returns once the node accepts AMQP connections
    node.url()            # amqp://guest:guest@127.0.0.1:<port>/
    node.stop()           # or node.kill() for a SIGKILL of the Erlang VM

Start a cluster (the second and later nodes ``join_cluster`` the first)::

    with BrokerCluster.start_new("roger-c", size=3) as cluster:
        cluster.urls()

By hand, from a shell, the same with ``python -m tests.rabbit_nodes
--cluster 3`` (prints the URLs, stops and removes the nodes on Ctrl-C or
SIGTERM).

A Roger node on the cluster gets every address, and fails over among them
(``docs/operations.md``)::

    roger.start({"amqp": cluster.urls(), ...})     # or ROGER_AMQP_URL=",".join(urls)
    cluster.nodes[0].kill()   # SIGKILL of a broker node: the node moves to another
    cluster.nodes[0].start()  # it starts again (same data) and rejoins the cluster

A test module shares one cluster through a module-scoped fixture and starts a
killed node again before the next test (``tests/integration/test_broker_cluster.py``).

Starting a node takes a few seconds; a cluster of three about half a minute
on this machine. The base directory is removed by :meth:`BrokerNode.remove`
(:class:`BrokerCluster` does it on exit).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.procs import free_port, is_alive

#: rabbitmq-server and rabbitmqctl themselves, not the wrappers in /usr/sbin
#: (those switch to the rabbitmq user and its HOME, and so its cookie).
BIN = Path("/usr/lib/rabbitmq/bin")
#: Seconds a node may take to start before :meth:`BrokerNode.start` fails.
START_SECONDS = 90.0


def available() -> bool:
    """True when this host can start RabbitMQ nodes of its own."""
    return (BIN / "rabbitmq-server").exists() and (BIN / "rabbitmqctl").exists()


@dataclass
class BrokerNode:
    """One RabbitMQ node: its name, ports and directories, and how to drive it."""

    name: str
    port: int
    dist_port: int
    base: Path
    home: Path
    extra_conf: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(
        cls,
        name: str,
        *,
        base: Path | None = None,
        home: Path | None = None,
        cookie: str | None = None,
        extra_conf: dict[str, str] | None = None,
    ) -> BrokerNode:
        """A node named ``name@localhost`` with free ports, not started yet.

        ``home`` holds the Erlang cookie (written from ``cookie``, random by
        default, unless the file is there); ``base`` the node's data and logs
        (a new temporary directory by default). ``extra_conf`` lines are added
        to its ``rabbitmq.conf`` (``{"consumer_timeout": "5000"}``).
        """
        base = base or Path(tempfile.mkdtemp(prefix=f"{name}-"))
        home = home or base
        home.mkdir(parents=True, exist_ok=True)
        cookie_file = home / ".erlang.cookie"
        if not cookie_file.exists():
            cookie_file.write_text(cookie or secrets.token_hex(16))
            cookie_file.chmod(0o400)
        port = free_port(5700, 5999)
        dist_port = free_port(26000, 26999)
        node = cls(name, port, dist_port, base / name, home, dict(extra_conf or {}))
        node._write_files()
        return node

    @property
    def node_name(self) -> str:
        """The Erlang node name, ``<name>@localhost``."""
        return f"{self.name}@localhost"

    def url(self, user: str = "guest", password: str = "guest") -> str:
        """The node's AMQP URL."""
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/"

    def _write_files(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        conf = {
            "listeners.tcp.1": f"127.0.0.1:{self.port}",
            "loopback_users": "none",
            "log.console": "false",
            "log.file.level": "warning",
            **self.extra_conf,
        }
        (self.base / "rabbitmq.conf").write_text("".join(f"{k} = {v}\n" for k, v in conf.items()))
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")

    def env(self) -> dict[str, str]:
        """The environment for this node's ``rabbitmq-server`` and ``rabbitmqctl``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_BASE=str(self.base),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            RABBITMQ_PID_FILE=str(self.base / "pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def ctl(self, *args: str, timeout: float = 60.0, check: bool = True) -> str:
        """Run ``rabbitmqctl -n <node> args`` and return its output.

        Raises ``subprocess.CalledProcessError`` when it fails and ``check``.
        """
        done = subprocess.run(
            [str(BIN / "rabbitmqctl"), "-q", "-n", self.node_name, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, done.args, done.stdout, done.stderr
            )
        return done.stdout

    def start(self, timeout: float = START_SECONDS) -> None:
        """Start the node and return once it runs its AMQP listener.

        Raises ``RuntimeError`` (with the node's log tail) when it does not
        start within ``timeout`` seconds or its VM exits.
        """
        log = open(self.base / "server.out", "ab")
        self.process = subprocess.Popen(
            [str(BIN / "rabbitmq-server")],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.base,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.node_name} exited at start:\n{self.log_tail()}")
            try:
                self.ctl("await_startup", "--timeout", "5", timeout=15)
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                time.sleep(0.5)  # the VM is not up yet; ask again
        raise RuntimeError(f"{self.node_name} did not start in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of what the node printed."""
        path = self.base / "server.out"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def vm_pid(self) -> int | None:
        """The pid of the node's Erlang VM, or None when it is not running."""
        if self.process is not None and self.process.poll() is None:
            return self.process.pid
        return None

    def running(self) -> bool:
        """True while the node's VM runs."""
        pid = self.vm_pid()
        return pid is not None and is_alive(pid)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node cleanly (``rabbitmqctl stop``); SIGKILL it if that fails."""
        if not self.running():
            return
        try:
            self.ctl("stop", timeout=timeout)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        self._reap(timeout)

    def kill(self) -> None:
        """SIGKILL the node's whole process group (VM, epmd children, port programs)."""
        pid = self.vm_pid()
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap(10.0)

    def _reap(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop_app(self) -> None:
        """Stop the RabbitMQ application (the VM stays up): every client connection drops."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        """Start the RabbitMQ application again after :meth:`stop_app`."""
        self.ctl("start_app")
        self.ctl("await_startup")

    def close_all_connections(self, reason: str = "test") -> None:
        """Close every client connection from the broker side."""
        self.ctl("close_all_connections", reason)

    def remove(self) -> None:
        """Kill the node if it runs and delete its directories."""
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class BrokerCluster:
    """Several :class:`BrokerNode` joined into one RabbitMQ cluster, sharing a cookie."""

    nodes: list[BrokerNode]
    base: Path

    @classmethod
    def start_new(
        cls, prefix: str = "roger-c", size: int = 3, extra_conf: dict[str, str] | None = None
    ) -> BrokerCluster:
        """Start ``size`` nodes (``<prefix>1@localhost`` ...) and join them into one cluster.

        The first node starts alone; each other node starts, stops its
        application, ``join_cluster``s the first one and starts again. Raises
        ``RuntimeError`` (and removes what it started) when a node fails.
        """
        base = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        home = base / "home"
        cookie = secrets.token_hex(16)
        cluster = cls([], base)
        try:
            for index in range(1, size + 1):
                node = BrokerNode.create(
                    f"{prefix}{index}", base=base, home=home, cookie=cookie, extra_conf=extra_conf
                )
                cluster.nodes.append(node)
                node.start()
                if index > 1:
                    node.ctl("stop_app")
                    node.ctl("join_cluster", cluster.nodes[0].node_name)
                    node.ctl("start_app")
                    node.ctl("await_startup")
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def urls(self) -> list[str]:
        """The AMQP URLs of every node, in order."""
        return [node.url() for node in self.nodes]

    def running_nodes(self, via: BrokerNode | None = None) -> list[str]:
        """The Erlang names of the nodes the cluster says are running."""
        asker = via or next(node for node in self.nodes if node.running())
        text = asker.ctl("eval", "rabbit_nodes:all_running().")
        return sorted(part.strip(" []'\n") for part in text.split(",") if "@" in part)

    def remove(self) -> None:
        """Kill every node and delete the cluster's directories."""
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> BrokerCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def main() -> None:
    """Start a node or a cluster from the shell, print its URLs, stop on Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cluster", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument("--prefix", default="roger-c")
    parser.add_argument("--conf", action="append", default=[], help="key=value for rabbitmq.conf")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.conf)
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM too (and SIGINT even when started in the background, where a
    # shell ignores it): the nodes and their directories must not outlive us.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cluster = BrokerCluster.start_new(args.prefix, args.cluster, extra)
    print("\n".join(cluster.urls()), flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.remove()


if __name__ == "__main__":
    main()
