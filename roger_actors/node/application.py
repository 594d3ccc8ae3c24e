"""The application: a Roger node in this process, and the process's runtime.

``roger.start(config)`` boots an actor system and the application
supervisor, RogerSupervisor (``one_for_one``), with, in start order:

- ``system``: the SystemServer (:mod:`roger_actors.node.system`), the node's
  membership of the cluster and its System commands;
- ``partitions``: the PartitionSupervisor
  (:mod:`roger_actors.node.partition_supervisor`), whose children are the
  partitions' ContainingSupervisors (id = partition id);
- ``registry``: the Partition registry (:mod:`roger_actors.node.registry`:
  start, stop, reconfigure; waiting partitions; predefined partitions from
  the configuration);
- ``apply_system``: ApplySystem (:mod:`roger_actors.node.apply_system`), which
  runs the System commands;
- ``shutdown``: the ShutdownHandler (:mod:`roger_actors.node.shutdown_handler`).

The node becomes *the current node* of this process (in the process runtime,
:mod:`roger_actors.runtime`, which also holds a producer's or a worker's
connection): the facades (:mod:`roger_actors.node.facades`),
``roger.Queue.purge`` and ``Job.enqueue`` act on it. :func:`child_spec` runs
the same tree in a user's application.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import attrs

from supervision import (
    Application,
    CallTimeout,
    ChildSpec,
    NoProc,
    Supervisor,
    SupervisorSpec,
    forkserver,
    light,
    which_children,
)
from supervision import call as sv_call
from supervision.spec import Placement
from supervision.system import AdminPortInUse

from ..cluster_auth import ClusterAuth
from ..cluster_client import ClusterClient
from ..config import Config, load_config
from ..enqueue import JobPublisher
from ..errors import ConfigError, NotStartedError
from ..job import Job, bounded_repr, set_allowed_modules, set_enqueue_hook
from ..partition.consumer import Purge
from ..queue import normalise_queue_type, set_purge_hook
from ..runtime import _runtime
from ..transport import embedded as embedded_broker
from ..transport.publisher import Publisher
from .apply_system import ApplySystem
from .partition_supervisor import PartitionSupervisor
from .registry import ConsumerOf, Ready, Registry
from .shutdown_handler import GracefulStop, ShutdownHandler
from .system import IsConnected, SystemServer

log = logging.getLogger("roger_actors.node")

#: Seconds a facade call waits for the node to answer.
CALL_TIMEOUT = 30.0

#: Seconds the ordered shutdown of the tree may take past ``shutdown_timeout``.
STOP_MARGIN = 60.0

#: Seconds a light node's stop waits for its I/O actors' last words (each is
#: bounded itself: the System's leave 7 s, then its link's close 5 s).
LAST_WORDS_SECONDS = 15.0

#: Seconds a ``which_children`` of one of the node's supervisors may take
#: (the supervisor helpers wait forever by default, as OTP's).
TREE_CALL_TIMEOUT = 5.0


def _partition_host(config: Config) -> Placement:
    """Where the partition trees run: on the light base, in one host process
    of their own (a crash there is the PartitionSupervisor's crash; the node
    goes on); elsewhere where Thespian puts every actor."""
    return "process" if config.actor_system_base == "light" else "local"


class RogerSupervisor(Supervisor):
    """The application supervisor of a node."""

    def init(self, config: Config) -> SupervisorSpec:
        """System, PartitionSupervisor, the registry, ShutdownHandler; one_for_one."""
        return SupervisorSpec(
            [
                ChildSpec("system", (SystemServer, (config,))),
                ChildSpec("partitions", PartitionSupervisor, placement=_partition_host(config)),
                ChildSpec("registry", (Registry, (config,))),
                ChildSpec("apply_system", (ApplySystem, (config,))),
                ChildSpec("shutdown", ShutdownHandler),
            ],
            "one_for_one",
        )


class Node:
    """A running node; use :func:`start` to get one."""

    def __init__(self, config: Config) -> None:
        #: The embedded broker this node started (``amqp = "memory://"``), if any.
        self.embedded: str | None = None
        name = config.amqp.embedded
        if name is not None and not embedded_broker.is_running(name):
            self.embedded = name
        config = _serve_embedded(config)
        if self.embedded is not None:
            log.info(
                "memory://%s: the embedded broker serves this node on 127.0.0.1:%d "
                "(loopback only; what it holds lives in this process)",
                self.embedded,
                config.amqp.port,
            )
        self.config = config
        self.app = Application(
            ChildSpec("roger", (RogerSupervisor, (config,))),
            base=config.actor_system_base,
            admin_port=config.admin_port,
        )
        self.registry: Any = None
        self.publisher = Publisher(
            config.amqp.urls(),
            config.amqp.connection_timeout_seconds or 10,
            config.max_payload_bytes,
            delivery_limit=config.delivery_limit,
        )
        #: ``Job.enqueue`` and ``Job.enqueue_many`` of this process while it runs.
        self.enqueuer = JobPublisher(self.publisher, ClusterAuth(config.cluster_secret))

    def start(self) -> Node:
        """Start the actor system and the tree; returns self.

        Raises ConfigError naming ``admin_port`` when that port is already
        taken (a node never joins an actor system it did not start)."""
        set_allowed_modules(self.config.allowed_job_modules)
        if self.config.actor_system_base == "light":
            forkserver.prepare()  # imports for the partition host while the tree starts
        try:
            self.app.start()
        except AdminPortInUse as exc:
            self._close_connections()
            raise ConfigError(f"config key 'admin_port': {exc}") from None
        except BaseException:
            self._close_connections()
            raise
        self._find_registry()
        self.call(Ready())
        return self

    def call(self, request: Any, timeout: float = CALL_TIMEOUT) -> Any:
        """Call the registry (looked up again if it was restarted)."""
        try:
            return sv_call(self.registry, request, timeout, system=self.app.system)
        except NoProc:
            self._find_registry()
            return sv_call(self.registry, request, timeout, system=self.app.system)

    def _root(self) -> Any:
        """The address of Roger's application supervisor."""
        return self.app.root

    def _child_address(self, child_id: str) -> Any:
        """The address of a running child of the root supervisor, or None."""
        for info in which_children(self._root(), TREE_CALL_TIMEOUT, system=self.app.system):
            if info.id == child_id and info.address not in (None, "restarting"):
                return info.address
        return None

    def _find_registry(self) -> None:
        self.registry = self._child_address("registry") or self.registry

    def consumer_call(self, partition_id: str, request: Any, timeout: float = CALL_TIMEOUT) -> Any:
        """Call the Consumer of a running partition."""
        consumer = self.call(ConsumerOf(partition_id))
        return sv_call(consumer, request, timeout, system=self.app.system)

    def _graceful(self) -> None:
        """The ShutdownHandler sequence; any failure (the tree is dead, a call
        timed out) is logged and the stop goes on."""
        timeout = self.config.shutdown_timeout
        try:
            handler = self._child_address("shutdown")
            if handler is None:
                return
            left = sv_call(handler, GracefulStop(timeout), timeout + 10, system=self.app.system)
        except Exception:
            log.exception("graceful stop failed; stopping anyway")
            return
        if left:
            log.warning("stopping with partitions still running jobs: %s", left)

    def failure(self, timeout: float = 2.0) -> str | None:
        """Why this node can no longer run, or None while it runs: its
        application root ``roger`` exited (with the reason), its application
        master exited, or the actor system's admin process is gone or does not
        answer within ``timeout`` seconds. A node that failed is stopped with
        :func:`stop` as usual."""
        port = self.config.admin_port
        if not self.app.admin_alive():
            assert self.app.admin is not None
            return f"the actor system's admin (pid {self.app.admin[0]}, port {port}) is gone"
        try:
            running, reason = self.app.poll(timeout)
        except CallTimeout:
            return f"the actor system's admin (port {port}) does not answer within {timeout:g} s"
        except NoProc as exc:
            # The application master (the actor that owns the root) is gone.
            return f"the application master of 'roger' exited with {bounded_repr(exc.reason)}"
        except Exception as exc:
            return f"the actor system cannot be asked: {exc!r}"
        if not running:
            return f"application root 'roger' exited with {bounded_repr(reason)}"
        return None

    def wait(self, interval: float = 0.5) -> str:
        """Block until the node fails (see :meth:`failure`) and return why; a
        permanent OTP application's node stops when its root dies, so a
        process embedding a node can do the same. Checks every ``interval``
        seconds; returns at once for a node already stopped."""
        while True:
            why = self.failure()
            if why is not None:
                return why
            time.sleep(interval)

    def is_connected(self) -> bool:
        """True while the node's System has its broker connection."""
        return bool(self._sibling_call("system", IsConnected()))

    def _sibling_call(self, child_id: str, request: Any) -> Any:
        address = self._child_address(child_id)
        if address is None:
            raise NotStartedError(f"{child_id} is not running")
        return sv_call(address, request, CALL_TIMEOUT, system=self.app.system)

    def enqueue(self, job: Job, partition_id: str, queue: str | None) -> None:
        """Publish ``job`` (confirmed) to its queue in ``partition_id``; see
        :meth:`JobPublisher.__call__ <roger_actors.enqueue.JobPublisher.__call__>`."""
        self.enqueuer(job, partition_id, queue)

    def stop(self, graceful: bool = True) -> None:
        """Stop the node: first (if ``graceful``) the ShutdownHandler sequence —
        stop taking jobs, wait up to ``shutdown_timeout`` for running ones —
        then the ordered shutdown of the tree and the actor system.

        The actor system is always shut down, also when the tree has died or a
        step fails: the ordered shutdown is bounded (``shutdown_timeout`` +
        :data:`STOP_MARGIN` s), and its error (CallTimeout) is raised only
        after the system and the publisher are gone."""
        failed = self.failure(timeout=1.0)
        try:
            if graceful and failed is None:
                self._graceful()
        finally:
            try:
                if self.app.admin_alive():
                    self.app.stop(timeout=self.config.shutdown_timeout + STOP_MARGIN)
                else:
                    # Nothing of it answers any more: end what is left.
                    self.app.kill_actor_system()
            finally:
                # a light node's System leave and links' closes run detached
                # on the loop (InlineLoop.detach): they go out before stop
                # returns (none elsewhere)
                light.wait_last_words(LAST_WORDS_SECONDS)
                self._close_connections()

    def _close_connections(self) -> None:
        """Close the node's publisher, then the embedded broker it started
        (what that held is gone)."""
        try:
            self.publisher.close()
        finally:
            if self.embedded is not None:
                embedded_broker.shutdown(self.embedded)

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop()


class EmbeddedNode(Node):
    """A Roger tree running in a user's application (see :func:`child_spec`):
    the same calls as a :class:`Node`; :meth:`stop` drains it and leaves the
    tree and the actor system to the application."""

    def __init__(self, config: Config, app: Application, root: Any) -> None:
        super().__init__(config)
        #: The user's application (never started or stopped from here).
        self.app = app
        self.root = root

    def attach(self) -> EmbeddedNode:
        """Find the registry and wait until it is ready; returns self."""
        self._find_registry()
        self.call(Ready())
        return self

    def _root(self) -> Any:
        return self.root

    def failure(self, timeout: float = 2.0) -> str | None:
        """Why Roger's tree can no longer run, or None: the user's application
        stopped, or the tree is gone and not restarted."""
        try:
            running, reason = self.app.poll(timeout)
        except Exception as exc:
            return f"the user's application cannot be asked: {exc!r}"
        if not running:
            return f"the user's application exited with {bounded_repr(reason)}"
        try:
            self._child_address("registry")
        except NoProc:
            return "Roger's tree is gone from the user's application"
        return None

    def _child_address(self, child_id: str) -> Any:
        try:
            return super()._child_address(child_id)
        except NoProc:
            # The user's supervisor restarted Roger's tree: find it again.
            found = _find_embedded()
            if found is None:
                raise
            self.root = found[1]
            return super()._child_address(child_id)

    def stop(self, graceful: bool = True) -> None:
        """Drain the partitions (if ``graceful``) and close the publisher; the
        tree keeps running until the user's application stops it."""
        try:
            if graceful:
                self._graceful()
        finally:
            self.publisher.close()


def _serve_embedded(config: Config) -> Config:
    """``config``; for ``amqp = "memory://name"`` the same with the address of
    the embedded broker ``name``, which is started in this process on first
    use (:func:`roger_actors.transport.embedded.serve`): everything the node
    starts connects there. OSError/TimeoutError when it cannot start."""
    name = config.amqp.embedded
    if name is None:
        return config
    broker = embedded_broker.serve(name)
    amqp = attrs.evolve(
        config.amqp,
        host="127.0.0.1",
        port=broker.port,
        username=broker.username,
        password=broker.password,
        embedded=None,
    )
    return attrs.evolve(config, amqp=amqp)


def _final_config(config: Config | dict[str, Any] | str | None) -> Config:
    """A :class:`Config` is used as it is; anything else goes through
    :func:`load_config` (which applies the ``ROGER_*`` environment)."""
    if isinstance(config, Config):
        return config
    return load_config(config if config is not None else {})


def start(config: Config | dict[str, Any] | str | None = None) -> Node:
    """Start a node in this process and make it the current node.

    ``config`` is a :class:`Config`, a dict of config keys, a path to a TOML
    file, or None (defaults and environment). Raises ``ConfigError`` for a bad
    configuration and ``RuntimeError`` when a node already runs here.
    """
    cfg = _final_config(config)
    with _runtime.lock:
        if _runtime.node is not None or _runtime.producer is not None:
            raise RuntimeError("a node is already started in this process; call stop() first")
        node = Node(cfg).start()
        _runtime.node = node
        _runtime.global_auth = ClusterAuth(cfg.cluster_secret)
    set_enqueue_hook(node.enqueuer)
    set_purge_hook(purge)
    return node


def stop() -> None:
    """Stop the current node, or the producer connection and the producer's
    cluster client (no-op when neither runs)."""
    with _runtime.lock:
        node, _runtime.node = _runtime.node, None
        producer, _runtime.producer = _runtime.producer, None
        client, _runtime.cluster_client = _runtime.cluster_client, None
        _runtime.producer_config = None
    if node is not None or producer is not None:
        # An embedded tree is found again on first use, by Job.enqueue too.
        set_enqueue_hook(_EmbeddedEnqueuer() if _embedded else None)
    if node is not None:
        node.stop()
    if client is not None:
        client.close()
    if producer is not None:
        producer.close()


def stop_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Opt in: when this process gets one of ``signals``, stop the current
    node gracefully (stop taking jobs, wait up to ``shutdown_timeout`` for the
    running ones, then the ordered shutdown), then let the signal do what it
    did before (restore the previous handler and deliver the signal again:
    the default SIGTERM ends the process, SIGINT raises KeyboardInterrupt).

    The stop runs in a thread of its own, so the handler returns at once; a
    second signal while it runs is ignored. Call it from the main thread
    (Python's rule for signal handlers), after :func:`start` (starting an
    actor system may set handlers of its own). ``roger-actors node`` has its
    own handling and does not need this."""
    previous = {signum: signal.getsignal(signum) for signum in signals}
    stopping, stopped = threading.Event(), threading.Event()

    def finish(signum: int) -> None:
        try:
            stop()
        except Exception:
            log.exception("graceful stop on %s failed", signal.Signals(signum).name)
        finally:
            stopped.set()
            os.kill(os.getpid(), signum)  # handled again, by on_signal, in the main thread

    def on_signal(signum: int, frame: Any) -> None:
        if stopped.is_set():
            # The node is stopped: let the signal do what it did before.
            for number, handler in previous.items():
                signal.signal(number, handler)
            before = previous.get(signum)
            if callable(before):
                before(signum, frame)
            elif before != signal.SIG_IGN:
                os.kill(os.getpid(), signum)
            return
        if stopping.is_set():
            return
        stopping.set()
        log.info("%s received: stopping the node gracefully", signal.Signals(signum).name)
        threading.Thread(target=finish, args=(signum,), name="roger-stop", daemon=True).start()

    for signum in signals:
        signal.signal(signum, on_signal)


def _producer_publisher() -> Publisher:
    """The producer's publisher (for tools such as the benchmark)."""
    if _runtime.producer is None:
        raise NotStartedError("no producer started in this process")
    return _runtime.producer


def producer_config(config: Config | dict[str, Any] | str | None = None) -> Config:
    """The configuration a producer of this process connects with: ``config``
    (see :func:`start`), with ``amqp = "memory://name"`` turned into the
    address of that embedded broker. Raises ConfigError for a bad
    configuration, and for an embedded broker no node runs in this process."""
    cfg = _final_config(config)
    name = cfg.amqp.embedded
    if name is not None:
        if not embedded_broker.is_running(name):
            raise ConfigError(
                f"config key 'amqp': memory://{name} is the embedded broker of a node, "
                "and none runs in this process: start the node here (roger_actors.start), "
                "or give the producer a real broker's URL"
            )
        cfg = _serve_embedded(cfg)
    return cfg


def start_producer(config: Config | dict[str, Any] | str | None = None) -> None:
    """Make this process able to enqueue jobs without running a node.

    ``Job.enqueue`` then publishes (with confirms) over one connection of
    this process. Use :func:`stop` to close it. Raises ``RuntimeError`` when
    a node or a producer already runs here.
    """
    cfg = producer_config(config)
    with _runtime.lock:
        if _runtime.node is not None or _runtime.producer is not None:
            raise RuntimeError("a node or producer is already started in this process")
        publisher = Publisher(
            cfg.amqp.urls(),
            cfg.amqp.connection_timeout_seconds or 10,
            cfg.max_payload_bytes,
            delivery_limit=cfg.delivery_limit,
        )
        _runtime.producer = publisher
        _runtime.producer_config = cfg
        _runtime.global_auth = ClusterAuth(cfg.cluster_secret)

    set_enqueue_hook(JobPublisher(publisher, _runtime.global_auth))


def producer_cluster_client() -> ClusterClient | None:
    """The producer's cluster client (created on first use), or None when no
    producer runs in this process."""
    with _runtime.lock:
        if _runtime.producer_config is None:
            return None
        if _runtime.cluster_client is None:
            _runtime.cluster_client = ClusterClient(_runtime.producer_config)
        return _runtime.cluster_client


def purge(partition_id: str, queue: str) -> int:
    """Purge a partition's queue on the current node; returns the number of
    messages removed. ``Queue.purge`` delegates to it: :func:`start` and
    :func:`child_spec` install it (:func:`~roger_actors.queue.set_purge_hook`).
    Raises NotStartedError when no node runs here (see :func:`current`)."""
    name = normalise_queue_type(queue)
    return int(current().consumer_call(partition_id, Purge(name)))


def current() -> Node:
    """The current node: the one :func:`start` started, or else a tree of
    :func:`child_spec` running in an application of this process (attached on
    first use). Raises NotStartedError when there is neither."""
    node = _runtime.node
    if node is None and _embedded:
        node = _attach_embedded()
    if node is None:
        raise NotStartedError("no node started in this process: call roger_actors.start()")
    return node


# ---------------------------------------------------------------- embedding

#: Configurations given to child_spec, by child id.
_embedded: dict[Any, Config] = {}

#: How deep in a user's tree :func:`current` looks for Roger's supervisor.
EMBED_SEARCH_DEPTH = 8


def child_spec(
    config: Config | dict[str, Any] | str | None = None, *, id: str = "roger"
) -> ChildSpec:
    """Roger's tree as a child of your own ``supervision`` supervisor (Roger's
    ``child_spec/1``): put the returned spec in a ``SupervisorSpec``, last, so
    that it starts after what its jobs need and stops before it.

    ``config`` is as for :func:`start`; ``admin_port`` and
    ``actor_system_base`` are not used (your Application's actor system runs
    the tree). Call it before your application starts: the allowed job
    modules are set here, so that the forked actors inherit them. Once the
    application runs, the facades (``Partition``, ``Job.enqueue``,
    ``Global``...) of this process find the tree on first use.

    On a crash the tree is restarted by your supervisor (the facades find it
    again). To stop it gracefully, call :func:`stop` first: it drains the
    partitions (stop taking jobs, wait up to ``shutdown_timeout`` for running
    ones, remove them) and leaves the tree to your application, whose
    shutdown then stops it. Without that, stopping your application kills
    the jobs still running and their deliveries come back to their queues.
    Raises ``ConfigError`` for a bad configuration."""
    cfg = _serve_embedded(_final_config(config))
    set_allowed_modules(cfg.allowed_job_modules)
    with _runtime.lock:
        _embedded[id] = cfg
        # A node, producer or worker client of this process keeps its own hook.
        runtime = _runtime
        if runtime.node is None and runtime.producer is None and runtime.worker_publisher is None:
            set_enqueue_hook(_EmbeddedEnqueuer())
    set_purge_hook(purge)
    return ChildSpec(id, (RogerSupervisor, (cfg,)), type="supervisor", shutdown="infinity")


class _EmbeddedEnqueuer:
    """The enqueue hook :func:`child_spec` installs: ``Job.enqueue`` (or
    ``enqueue_many``) as a process's first call finds the embedded tree, which
    then installs its node's own hook. Raises NotStartedError while no tree
    of :func:`child_spec` runs."""

    def __call__(self, job: Job, partition_id: str, queue: str | None) -> None:
        current().enqueuer(job, partition_id, queue)

    def many(self, jobs: Sequence[Job], partition_id: str, queue: str | None) -> list[Job]:
        return current().enqueuer.many(jobs, partition_id, queue)


def _find_embedded() -> tuple[Application, Any, Config] | None:
    """The first running application with a Roger tree of :func:`child_spec`:
    ``(application, address of its RogerSupervisor, config)``."""
    from supervision import running_applications

    for app in running_applications():
        if app.system is None or app.root is None:
            continue
        level = [app.root]
        for _ in range(EMBED_SEARCH_DEPTH):
            below = []
            for address in level:
                try:
                    children = which_children(address, TREE_CALL_TIMEOUT, system=app.system)
                except Exception:
                    continue
                for info in children:
                    if info.address in (None, "restarting") or info.type != "supervisor":
                        continue
                    if info.id in _embedded and RogerSupervisor in info.modules:
                        return app, info.address, _embedded[info.id]
                    below.append(info.address)
            level = below
    return None


def _attach_embedded() -> Node | None:
    """Make the embedded tree (if one runs) this process's current node."""
    with _runtime.lock:
        if _runtime.node is not None:
            return _runtime.node
        found = _find_embedded()
        if found is None:
            return None
        app, address, cfg = found
        node = EmbeddedNode(cfg, app, address).attach()
        _runtime.node = node
        _runtime.global_auth = ClusterAuth(cfg.cluster_secret)
    set_enqueue_hook(node.enqueuer)
    return node

