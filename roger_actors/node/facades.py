"""The facades: Roger's module-level functions on the current node.

``roger.Partition``, ``roger.Consumer``, ``roger.Worker``, ``roger.Global``
and ``roger.System`` (Roger's ``Roger.Partition``, ``Roger.Partition.Consumer``,
``Roger.Partition.Worker``, ``Roger.Partition.Global`` and ``Roger.System``).
Each call finds this process's node (:mod:`roger_actors.node.application`),
producer or worker client (:mod:`roger_actors.runtime`) and asks the actor
that does the work (the registry, a partition's ConsumerServer, its
GlobalServer, the node's SystemServer).
"""

from __future__ import annotations

from typing import Any

from ..cluster_client import ClusterClient
from ..errors import NotRunningError, NotStartedError
from ..job import Job
from ..partition.consumer import GetQueues, Pause, PauseAll, Resume, StopConsuming
from ..partition.worker import execute_job, run_callback
from ..queue import normalise_queue_defs, normalise_queue_type, validate_partition_id
from ..runtime import _runtime, process_publisher
from ..transport.publisher import Publisher
from . import system as system_mod
from .application import current, producer_cluster_client
from .registry import ConsumerOf, Partitions, SafeStopPartition, StartPartition, StopPartition

__all__ = ["Consumer", "Global", "Partition", "System", "Worker"]


class Partition:
    """Roger's ``Roger.Partition`` functions on the current node."""

    @staticmethod
    def start(partition_id: str, queues: Any) -> str:
        """Start a partition with ``{queue: max_workers}`` (or pairs); if it is
        already here, reconfigure it to exactly these queues.

        Returns ``"running"`` once the partition runs (its Consumer is connected
        and has Global's snapshot: ``NodeInfo.running_partitions()`` lists it),
        or ``"waiting"`` when it cannot run yet: the node is inactive (it is
        shutting down; the partition is listed as waiting and never starts),
        the broker cannot be reached (it starts when it can), or it did not run
        within 20 s. Raises ValueError for a bad id or queue list, and
        RogerError when its tree fails to start (the partition then waits and
        is started again with back-off until it runs or is stopped)."""
        answer = current().call(
            StartPartition(validate_partition_id(partition_id), normalise_queue_defs(queues))
        )
        return "running" if answer is None else str(answer)

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
        """Roger's ``safe_stop``: pause every queue of the partition on this node
        (``Consumer.pause_all``). Jobs not started go back to their queues,
        running ones finish; the partition stays (listed, ``Consumer.resume``
        takes jobs again, ``Partition.stop`` removes it). Raises
        NotRunningError when the partition is not here."""
        current().call(SafeStopPartition(partition_id))

    @staticmethod
    def partitions() -> dict[str, dict[str, dict[str, int]]]:
        """``{"running": {pid: queues}, "waiting": {pid: queues}}`` on this node."""
        result: dict[str, dict[str, dict[str, int]]] = current().call(Partitions())
        return result


class Worker:
    """Run a job payload the way a partition's worker does (Roger starts a
    ``Worker`` by hand with ``WorkerSupervisor.start_child(pid, channel,
    payload, nil)``)."""

    @staticmethod
    def run(partition_id: str, payload: bytes) -> str:
        """Decode ``payload`` (an encoded job, as ``Job.encode`` makes it) and
        run it in this process with the node's callbacks, as a worker runs a
        delivery: a job whose cancel mark is set in Global is not run
        (``on_cancel``, ``"cancelled"``); otherwise ``before_run``,
        ``perform``, then ``after_run`` (``"done"``) or, for a failure,
        exactly one of ``on_error``/``on_buried`` (``"error"``, ``"retry"`` or
        ``"buried"``, as the retry levels say). Returns the outcome.

        There is no broker message: nothing is acked, retried, buried or
        parked, and the job's keys are not taken. A failure of ``perform`` is
        the outcome, never raised; a callback that raises is logged. Raises
        NotRunningError when the partition does not run on this node,
        InvalidJobError for a payload that does not decode, NotStartedError
        or GlobalTimeoutError when its Global cannot answer."""
        node = current()
        pid = validate_partition_id(partition_id)
        node.call(ConsumerOf(pid))
        if not isinstance(payload, bytes | bytearray):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        job = Job.decode(bytes(payload))
        callbacks_class = node.config.callbacks_class()
        callbacks = callbacks_class() if callbacks_class is not None else None
        if Global.is_cancelled(pid, job.id, remove=True):
            run_callback(callbacks, "on_cancel", pid, job)
            return "cancelled"
        return execute_job(pid, job, callbacks, node.config.retry_levels).outcome


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
    def reconfigure(partition_id: str, queues: Any) -> None:
        """Roger's ``Consumer.reconfigure/2``: set the partition's complete list
        of queues, as ``Partition.reconfigure`` does, but do nothing when its
        Consumer does not run on this node (no error, as in Roger). Raises
        ValueError/TypeError for a bad queue list."""
        defs = normalise_queue_defs(queues)
        node = current()
        try:
            node.call(ConsumerOf(partition_id))
        except NotRunningError:
            return
        node.call(StartPartition(validate_partition_id(partition_id), defs))

    @staticmethod
    def get_queues(partition_id: str) -> dict[str, dict[str, Any]]:
        """``{queue: {max_workers, paused, message_count, consumer_count}}``,
        the counts read from the broker. ConnectionError while the partition's
        Consumer is not connected (it reconnects by itself: ask again)."""
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


class Global:
    """Roger's ``Roger.Partition.Global`` functions: the partition's cluster-wide
    state, kept by its one active Global (see
    :mod:`roger_actors.partition.global_server`).

    Usable from any process with a node, a producer, or a job's worker. Each
    raises NotStartedError when the partition is started nowhere in the
    cluster, ValueError for a bad argument, and GlobalTimeoutError when the
    active Global does not answer within ``timeout`` seconds (a request made
    during a failover is answered by the Global that takes over).
    """

    @staticmethod
    def cancel_job(partition_id: str, job_id: str, timeout: float = 10.0) -> None:
        """Mark ``job_id`` cancelled: if queued it is not run when dequeued; if
        running, it is killed wherever it runs; ``on_cancel`` runs once."""
        _ask_global(partition_id, "cancel_job", [job_id], timeout)

    @staticmethod
    def is_cancelled(
        partition_id: str, job_id: str, remove: bool = False, timeout: float = 10.0
    ) -> bool:
        """Whether ``job_id`` is marked cancelled; with ``remove`` the mark is cleared."""
        args = [job_id, bool(remove)]
        return bool(_ask_global(partition_id, "is_cancelled", args, timeout))

    @staticmethod
    def is_queued(
        partition_id: str, queue_key: str, add: bool = False, timeout: float = 10.0
    ) -> bool:
        """Whether ``queue_key`` is marked queued (before this call); with ``add`` it is marked."""
        args = [queue_key, bool(add)]
        return bool(_ask_global(partition_id, "is_queued", args, timeout))

    @staticmethod
    def remove_queued(partition_id: str, queue_key: str, timeout: float = 10.0) -> None:
        """Clear the queued mark of ``queue_key``."""
        _ask_global(partition_id, "remove_queued", [queue_key], timeout)

    @staticmethod
    def is_executing(
        partition_id: str, execution_key: str, add: bool = False, timeout: float = 10.0
    ) -> bool:
        """Whether ``execution_key`` is held (before this call); with ``add`` it is taken."""
        args = [execution_key, bool(add)]
        return bool(_ask_global(partition_id, "is_executing", args, timeout))

    @staticmethod
    def remove_executed(partition_id: str, execution_key: str, timeout: float = 10.0) -> None:
        """Free ``execution_key``, whoever holds it."""
        _ask_global(partition_id, "remove_executed", [execution_key], timeout)

    @staticmethod
    def queue_pause(partition_id: str, queue: str, timeout: float = 10.0) -> None:
        """Pause ``queue`` on every node running the partition, now and later."""
        name = normalise_queue_type(queue)
        _ask_global(partition_id, "queue_pause", [name], timeout)

    @staticmethod
    def queue_resume(partition_id: str, queue: str, timeout: float = 10.0) -> None:
        """Resume ``queue`` on every node running the partition."""
        name = normalise_queue_type(queue)
        _ask_global(partition_id, "queue_resume", [name], timeout)

    @staticmethod
    def queue_get_paused(partition_id: str, timeout: float = 10.0) -> set[str]:
        """The queues of the partition paused cluster-wide."""
        return set(_ask_global(partition_id, "queue_get_paused", [], timeout))


def _global_request(
    publisher: Publisher, partition_id: str, op: str, args: list[Any], timeout: float = 10.0
) -> Any:
    from ..partition.global_client import request

    pid = validate_partition_id(partition_id)
    auth = _runtime.global_auth
    return publisher.run_on_link(
        lambda link: request(link, pid, op, args, timeout, auth), timeout=timeout + 5
    )


def _ask_global(partition_id: str, op: str, args: list[Any], timeout: float) -> Any:
    return _global_request(process_publisher(), partition_id, op, args, timeout)



class System:
    """Roger's ``Roger.System`` functions: commands run on every node of the
    cluster (the nodes on the same broker and ``system_exchange_prefix``), and
    this node's connection and active flag.

    ``call`` and ``cast`` go through the current node's System; in a process
    that runs no node but a producer (:func:`start_producer`) they go through
    a :class:`~roger_actors.cluster_client.ClusterClient` on a connection of
    the producer's own (its first call listens 1.5 s for heartbeats). The other
    functions need a node. Each raises NotStartedError when neither runs."""

    @staticmethod
    def _target() -> tuple[Any, Any]:
        node = current()
        address = node._child_address("system")
        if address is None:
            raise NotStartedError("system is not running")
        return address, node.app.system

    @staticmethod
    def _client() -> ClusterClient | None:
        """The producer's cluster client when no node runs here; NotStartedError
        when neither a node nor a producer runs."""
        if _runtime.node is not None:
            return None
        client = producer_cluster_client()
        if client is None:
            raise NotStartedError(
                "no node or producer started in this process: call roger_actors.start() "
                "or roger_actors.start_producer()"
            )
        return client

    @staticmethod
    def call(
        command: str, *args: Any, timeout: float = system_mod.DEFAULT_CALL_TIMEOUT
    ) -> list[tuple[str, Any]]:
        """Run ``command`` with ``args`` on every live node and wait for them:
        ``[(node_name, value), ...]`` sorted by node name, one per node that
        answered within ``timeout`` seconds (``value`` is a ``CommandError``
        when the command failed on that node). Raises ConnectionError when the
        node (or the producer's client) is not connected to the broker."""
        client = System._client()
        if client is not None:
            return client.call(command, args, timeout)
        return system_mod.call(*System._target(), command, args, timeout)

    @staticmethod
    def cast(command: str, *args: Any) -> None:
        """Send ``command`` with ``args`` to every node (this one included);
        returns once the broker has it, without waiting for the nodes."""
        client = System._client()
        if client is not None:
            client.cast(command, args)
            return
        system_mod.cast(*System._target(), command, args)

    @staticmethod
    def is_connected() -> bool:
        """True while this node is connected to the broker."""
        return system_mod.is_connected(*System._target())

    @staticmethod
    def is_active() -> bool:
        """True until the node is set inactive (it is shutting down)."""
        return system_mod.is_active(*System._target())

    @staticmethod
    def set_inactive() -> None:
        """Mark this node inactive (the first step of its shutdown): from now on
        ``Partition.start`` starts no partition here, it lists it as waiting.
        Partitions already running go on. There is no way back (as in Roger)."""
        system_mod.set_inactive(*System._target())

    @staticmethod
    def unsubscribe_all() -> None:
        """On an inactive node, make every running partition stop taking jobs
        (``Partition.safe_stop`` of each: its queues are paused, running jobs
        finish); on an active node, do nothing. As in Roger, the node goes on
        taking System commands (cancels, pauses) while it runs. Raises
        NotStartedError when no node runs in this process."""
        if System.is_active():
            return
        running = current().call(Partitions())["running"]
        for partition_id in sorted(running):
            try:
                Partition.safe_stop(partition_id)
            except NotRunningError:
                pass  # it stopped meanwhile
