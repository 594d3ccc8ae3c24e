"""A Roger node in this process: the application tree and the module-level facades.

``roger.start(config)`` boots an actor system and the application
supervisor (``one_for_one``) with, in start order:

- ``partitions``: the PartitionSupervisor, whose children are the
  partitions' ContainingSupervisors (id = partition id);
- ``registry``: the Partition registry (start, stop, reconfigure; waiting
  partitions; predefined partitions from the configuration).

The node becomes *the current node* of this process: ``roger.Partition``,
``roger.Consumer``, ``roger.Queue.purge`` and ``Job.enqueue`` act on it.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from supervision import (
    Application,
    ChildSpec,
    NoProc,
    Supervisor,
    SupervisorSpec,
    which_children,
)
from supervision import call as sv_call

from .config import Config, load_config
from .errors import NotStartedError
from .job import Job, set_allowed_modules, set_enqueue_hook
from .partition.consumer import (
    GetQueues,
    Pause,
    PauseAll,
    Purge,
    Resume,
    StopConsuming,
)
from .queue import normalise_queue_defs, normalise_queue_type, validate_partition_id
from .registry import (
    ConsumerOf,
    Partitions,
    Ready,
    Registry,
    SafeStopPartition,
    StartPartition,
    StopPartition,
)
from .shutdown_handler import GracefulStop, ShutdownHandler
from .system import IsConnected, System
from .transport.publisher import Publisher

log = logging.getLogger("roger_actors.node")

#: Seconds a facade call waits for the node to answer.
CALL_TIMEOUT = 30.0


class PartitionSupervisor(Supervisor):
    """Supervises the partitions of this node (children added at run time)."""

    def init(self) -> SupervisorSpec:
        """No children at start; one_for_one, 10 restarts in 10 s."""
        return SupervisorSpec([], "one_for_one", max_restarts=10, max_seconds=10)


class RogerSupervisor(Supervisor):
    """The application supervisor of a node."""

    def init(self, config: Config) -> SupervisorSpec:
        """System, PartitionSupervisor, the registry, ShutdownHandler; one_for_one."""
        return SupervisorSpec(
            [
                ChildSpec("system", (System, (config,))),
                ChildSpec("partitions", PartitionSupervisor),
                ChildSpec("registry", (Registry, (config,))),
                ChildSpec("shutdown", ShutdownHandler),
            ],
            "one_for_one",
        )


class Node:
    """A running node; use :func:`start` to get one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.app = Application(
            ChildSpec("roger", (RogerSupervisor, (config,))),
            base=config.actor_system_base,
            admin_port=config.admin_port,
        )
        self.registry: Any = None
        self.publisher = Publisher(config.amqp.url(), config.amqp.connection_timeout_seconds or 10)

    def start(self) -> Node:
        """Start the tree; returns self."""
        set_allowed_modules(self.config.allowed_job_modules)
        self.app.start()
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

    def _child_address(self, child_id: str) -> Any:
        """The address of a running child of the root supervisor, or None."""
        for info in which_children(self.app.root, system=self.app.system):
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
        handler = self._child_address("shutdown")
        if handler is None:
            return
        timeout = self.config.shutdown_timeout
        try:
            left = sv_call(handler, GracefulStop(timeout), timeout + 10, system=self.app.system)
        except Exception:
            log.exception("graceful stop failed; stopping anyway")
            return
        if left:
            log.warning("stopping with partitions still running jobs: %s", left)

    def is_connected(self) -> bool:
        """True while the node's System has its broker connection."""
        return bool(self._sibling_call("system", IsConnected()))

    def _sibling_call(self, child_id: str, request: Any) -> Any:
        address = self._child_address(child_id)
        if address is None:
            raise NotStartedError(f"{child_id} is not running")
        return sv_call(address, request, CALL_TIMEOUT, system=self.app.system)

    def enqueue(self, job: Job, partition_id: str, queue: str | None) -> None:
        """Publish ``job`` (confirmed) to its queue in ``partition_id``."""
        message = job.to_amqp(partition_id, queue)
        self.publisher.publish(message.routing_key, message.body, message.properties)

    def stop(self, graceful: bool = True) -> None:
        """Stop the node: first (if ``graceful``) the ShutdownHandler sequence —
        stop taking jobs, wait up to ``shutdown_timeout`` for running ones —
        then the ordered shutdown of the tree and the actor system."""
        try:
            if graceful:
                self._graceful()
            self.app.stop()
        finally:
            self.publisher.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop()


_current: Node | None = None
_lock = threading.Lock()


def start(config: Config | dict[str, Any] | str | None = None) -> Node:
    """Start a node in this process and make it the current node.

    ``config`` is a :class:`Config`, a dict of config keys, a path to a TOML
    file, or None (defaults and environment). Raises ``ConfigError`` for a bad
    configuration and ``RuntimeError`` when a node already runs here.
    """
    global _current
    cfg = load_config(config if config is not None else {})
    with _lock:
        if _current is not None or _producer is not None:
            raise RuntimeError("a node is already started in this process; call stop() first")
        node = Node(cfg).start()
        _current = node
    set_enqueue_hook(node.enqueue)
    return node


def stop() -> None:
    """Stop the current node, or the producer connection (no-op when neither runs)."""
    global _current, _producer
    with _lock:
        node, _current = _current, None
        producer, _producer = _producer, None
    if node is not None or producer is not None:
        set_enqueue_hook(None)
    if node is not None:
        node.stop()
    if producer is not None:
        producer.close()


_producer: Publisher | None = None


def _producer_publisher() -> Publisher:
    """The producer's publisher (for tools such as the benchmark)."""
    if _producer is None:
        raise NotStartedError("no producer started in this process")
    return _producer


def start_producer(config: Config | dict[str, Any] | str | None = None) -> None:
    """Make this process able to enqueue jobs without running a node.

    ``Job.enqueue`` then publishes (with confirms) over one connection of
    this process. Use :func:`stop` to close it. Raises ``RuntimeError`` when
    a node or a producer already runs here.
    """
    global _producer
    cfg = load_config(config if config is not None else {})
    with _lock:
        if _current is not None or _producer is not None:
            raise RuntimeError("a node or producer is already started in this process")
        publisher = Publisher(cfg.amqp.url(), cfg.amqp.connection_timeout_seconds or 10)
        _producer = publisher

    def enqueue(job: Job, partition_id: str, queue: str | None) -> None:
        message = job.to_amqp(partition_id, queue)
        publisher.publish(message.routing_key, message.body, message.properties)

    set_enqueue_hook(enqueue)


def current() -> Node:
    """The current node; raises NotStartedError when none runs."""
    if _current is None:
        raise NotStartedError("no node started in this process: call roger_actors.start()")
    return _current


class Partition:
    """Roger's ``Roger.Partition`` functions on the current node."""

    @staticmethod
    def start(partition_id: str, queues: Any) -> None:
        """Start a partition with ``{queue: max_workers}`` (or pairs); if it runs,
        reconfigure it to exactly these queues."""
        current().call(
            StartPartition(validate_partition_id(partition_id), normalise_queue_defs(queues))
        )

    @staticmethod
    def reconfigure(partition_id: str, queues: Any) -> None:
        """Set the complete list of queues; ``max_workers`` 0 stops consuming a queue.
        Raises NotRunningError when the partition does not run here."""
        node = current()
        node.call(ConsumerOf(partition_id))
        node.call(StartPartition(validate_partition_id(partition_id), normalise_queue_defs(queues)))

    @staticmethod
    def stop(partition_id: str) -> None:
        """Stop the partition on this node. Raises NotRunningError."""
        current().call(StopPartition(partition_id))

    @staticmethod
    def safe_stop(partition_id: str) -> None:
        """Stop taking jobs; the partition stops once its running jobs are done."""
        current().call(SafeStopPartition(partition_id))

    @staticmethod
    def partitions() -> dict[str, dict[str, dict[str, int]]]:
        """``{"running": {pid: queues}, "waiting": {pid: queues}}`` on this node."""
        result: dict[str, dict[str, dict[str, int]]] = current().call(Partitions())
        return result


class Consumer:
    """Roger's ``Roger.Partition.Consumer`` functions on the current node."""

    @staticmethod
    def is_alive(partition_id: str) -> bool:
        """True when the partition's Consumer runs on this node."""
        try:
            current().call(ConsumerOf(partition_id))
        except Exception:
            return False
        return True

    @staticmethod
    def get_queues(partition_id: str) -> dict[str, dict[str, Any]]:
        """``{queue: {max_workers, paused, message_count, consumer_count}}``."""
        result: dict[str, dict[str, Any]] = current().consumer_call(partition_id, GetQueues())
        return result

    @staticmethod
    def pause(partition_id: str, queue: str) -> None:
        """Stop consuming ``queue`` on this node; deliveries not yet running are requeued."""
        current().consumer_call(partition_id, Pause(normalise_queue_type(queue)))

    @staticmethod
    def resume(partition_id: str, queue: str) -> None:
        """Consume ``queue`` again on this node."""
        current().consumer_call(partition_id, Resume(normalise_queue_type(queue)))

    @staticmethod
    def force_shutdown(partition_id: str) -> None:
        """Stop taking jobs of every queue of the partition on this node at once:
        deliveries not yet started go back to the broker; running jobs finish.
        (The partition itself keeps running; ``Partition.stop`` ends it.)"""
        current().consumer_call(partition_id, StopConsuming())

    @staticmethod
    def pause_all(partition_id: str) -> None:
        """Pause every queue of the partition on this node."""
        current().consumer_call(partition_id, PauseAll())


def purge(partition_id: str, queue: str) -> int:
    """Purge a partition's queue; returns the number of messages removed."""
    name = normalise_queue_type(queue)
    return int(current().consumer_call(partition_id, Purge(name)))
