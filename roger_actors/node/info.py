"""Roger's ``Roger.Info`` and ``Roger.NodeInfo``: what runs where.

:class:`NodeInfo` asks this process's node (``roger.start``) through its
ApplySystem actor (:mod:`roger_actors.node.apply_system`); :class:`Info` asks
every live node of the cluster with ``roger.System.call("node_info", ...)``
and answers ``{node_name: value}``, where a node on which the command
failed has a :class:`~roger_actors.system_protocol.CommandError` as value
(the other nodes' answers are still given). :meth:`Info.queued_jobs` reads
a queue straight from the broker.

Jobs come back as :class:`~roger_actors.Job` objects, decoded from their
payload maps with ``Job.decode``. A job whose type this process cannot
resolve (its class is not imported here and its module is not in
``allowed_job_modules``) stays the payload map, a ``dict`` with the keys of
:meth:`Job.encode <roger_actors.Job.encode>` (``"id"``, ``"module"``,
``"args"``...): reading a queue never imports code a payload names.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import cbor2

from supervision import call as sv_call

from ..errors import InvalidJobError, NotStartedError
from ..job import Job, _decode_cbor
from ..queue import Queue, normalise_queue_type, validate_partition_id
from ..runtime import process_publisher
from ..transport.amqp import AmqpLink
from ..transport.base import NotFound
from . import system as system_mod
from .application import CALL_TIMEOUT, current
from .apply_system import Apply
from .facades import System

#: A job, or its payload map when its type cannot be resolved in this process.
JobOrMap = Job | dict[str, Any]

#: Seconds :meth:`Info.queued_jobs` may take.
QUEUED_JOBS_TIMEOUT = 30.0
#: Messages :meth:`Info.queued_jobs` may take beyond ``count`` to keep the order
#: of a quorum queue (see :func:`_peek`).
PEEK_EXTRA = 10_000

log = logging.getLogger("roger_actors.info")


def to_job(payload: Any) -> JobOrMap:
    """The job of a payload map (as in ``node_info`` replies), or the map itself
    when it does not decode here (unknown job type, invalid fields)."""
    if not isinstance(payload, dict):
        return {"invalid": f"job payload must be a map, got {type(payload).__name__}"}
    try:
        return Job.decode(cbor2.dumps(payload))
    except (InvalidJobError, cbor2.CBOREncodeError, TypeError, ValueError):
        return payload


def _jobs(payloads: Any) -> list[JobOrMap]:
    return [to_job(p) for p in payloads] if isinstance(payloads, list) else payloads


def _body_to_job(body: bytes) -> JobOrMap:
    """A queued message's job; its payload map when the type is not resolvable
    here; ``{"invalid": reason, "body": body}`` when it is not a job payload."""
    try:
        return Job.decode(body)
    except InvalidJobError as exc:
        try:
            payload = _decode_cbor(body)
        except InvalidJobError:
            payload = None
        if isinstance(payload, dict):
            return payload
        return {"invalid": str(exc), "body": body}


# ---------------------------------------------------------------- this node


def _apply(command: str, *args: Any) -> Any:
    """Run an apply command on this process's node; NotStartedError without one."""
    node = current()
    address = node._child_address("apply_system")
    if address is None:
        raise NotStartedError("the node's apply_system is not running")
    return sv_call(address, Apply(command, args), CALL_TIMEOUT, system=node.app.system)


class NodeInfo:
    """Roger's ``Roger.NodeInfo``: partitions and jobs of the node running in this
    process. Each raises NotStartedError when no node runs here."""

    @staticmethod
    def partitions() -> dict[str, dict[str, dict[str, int]]]:
        """``{"running": {pid: {queue: max_workers}}, "waiting": {...}}``: the
        partitions started on this node; *waiting* ones are not connected to
        the broker yet (their Consumer retries)."""
        result: dict[str, dict[str, dict[str, int]]] = _apply("node_info", "partitions")
        return result

    @staticmethod
    def running_partitions() -> dict[str, dict[str, dict[str, Any]]]:
        """``{pid: {queue: {"max_workers", "paused", "message_count",
        "consumer_count"}}}`` for the running partitions."""
        result: dict[str, dict[str, dict[str, Any]]] = _apply("node_info", "running_partitions")
        return result

    @staticmethod
    def waiting_partitions() -> dict[str, dict[str, int]]:
        """``{pid: {queue: max_workers}}`` for the partitions waiting to connect."""
        result: dict[str, dict[str, int]] = _apply("node_info", "waiting_partitions")
        return result

    @staticmethod
    def running_partition_ids() -> list[str]:
        """The ids of the running partitions, sorted."""
        result: list[str] = _apply("node_info", "running_partition_ids")
        return result

    @staticmethod
    def running_jobs(partition_id: str | None = None) -> Any:
        """The jobs running on this node: ``{pid: [Job, ...]}`` for every partition
        of the node, or ``[Job, ...]`` for ``partition_id`` (empty when it does
        not run here). Raises TypeError/ValueError for a bad partition id."""
        if partition_id is None:
            found = _apply("node_info", "running_jobs")
            return {pid: _jobs(jobs) for pid, jobs in found.items()}
        validate_partition_id(partition_id)
        return _jobs(_apply("node_info", "running_jobs", partition_id))

    @staticmethod
    def running_worker_pids() -> list[int]:
        """OS pids (sorted) of the worker processes running a job on this node."""
        result: list[int] = _apply("node_info", "running_worker_pids")
        return result


# ---------------------------------------------------------------- the cluster


def _cluster(what: str, *params: Any, timeout: float) -> dict[str, Any]:
    replies = System.call("node_info", what, *params, timeout=timeout)
    return dict(replies)


class Info:
    """Roger's ``Roger.Info``: the same information as :class:`NodeInfo`, from
    every live node of the cluster, as ``{node_name: value}`` (``value`` a
    ``CommandError`` for a node where it failed). Works wherever
    ``roger.System.call`` does. ``timeout``: seconds to wait for the nodes
    (a node that does not answer in time is left out)."""

    @staticmethod
    def partitions(
        timeout: float = system_mod.DEFAULT_CALL_TIMEOUT,
    ) -> dict[str, Any]:
        """``{node: {"running": {pid: {queue: max_workers}}, "waiting": {...}}}``."""
        return _cluster("partitions", timeout=timeout)

    @staticmethod
    def running_partitions(
        timeout: float = system_mod.DEFAULT_CALL_TIMEOUT,
    ) -> dict[str, Any]:
        """``{node: {pid: {queue: stats}}}``, stats as ``Consumer.get_queues``."""
        return _cluster("running_partitions", timeout=timeout)

    @staticmethod
    def waiting_partitions(
        timeout: float = system_mod.DEFAULT_CALL_TIMEOUT,
    ) -> dict[str, Any]:
        """``{node: {pid: {queue: max_workers}}}`` for partitions waiting to connect."""
        return _cluster("waiting_partitions", timeout=timeout)

    @staticmethod
    def running_jobs(
        partition_id: str | None = None,
        timeout: float = system_mod.DEFAULT_CALL_TIMEOUT,
    ) -> dict[str, Any]:
        """``{node: {pid: [Job, ...]}}``, or ``{node: [Job, ...]}`` for one
        ``partition_id`` (nodes not running it answer ``[]``)."""
        if partition_id is None:
            found = _cluster("running_jobs", timeout=timeout)
            return {
                node: (
                    {pid: _jobs(jobs) for pid, jobs in value.items()}
                    if isinstance(value, dict)
                    else value
                )
                for node, value in found.items()
            }
        validate_partition_id(partition_id)
        found = _cluster("running_jobs", partition_id, timeout=timeout)
        return {node: _jobs(value) for node, value in found.items()}

    @staticmethod
    def queued_jobs(partition_id: str, queue_type: str, count: int = 100) -> list[JobOrMap]:
        """The first ``count`` jobs waiting in the partition's queue, newest
        first (Roger's order), read from the broker; the queue is left as it
        was, order included. A queue that does not exist has no jobs (``[]``).
        Jobs held by a Consumer (prefetched or running) are not in the queue.

        How: ``basic.get`` without ack on a channel of its own, then that
        channel is closed, which gives every message back. Classic queues put
        them back where they were. Quorum queues (checked on RabbitMQ 3.10)
        put them in a "returns" list served before the rest of the queue,
        appended in order: so the look takes, beyond ``count``, every
        redelivered message at the head (the earlier returns), up to
        :data:`PEEK_EXTRA` more, and then the order is kept. Nacking with
        requeue or ``basic.recover`` would not keep it: quorum queues append
        such messages at their tail. The broker counts the look as a
        delivery: each message looked at gets the redelivered flag and, on a
        quorum queue, its ``x-delivery-count`` incremented (a queue with a
        ``delivery-limit`` policy would dead-letter a message looked at that
        many times). A payload that is not a job is listed as ``{"invalid":
        reason, "body": bytes}``.

        Works in any process with a node, a producer or a worker connection;
        NotStartedError otherwise. TypeError/ValueError for bad arguments.
        """
        pid = validate_partition_id(partition_id)
        queue = Queue.make_name(pid, normalise_queue_type(queue_type))
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        if count == 0:
            return []
        bodies: list[bytes] = process_publisher().run_on_link(
            lambda link: _peek(link, queue, count), timeout=QUEUED_JOBS_TIMEOUT
        )
        return [_body_to_job(body) for body in reversed(bodies)]


async def _peek(link: AmqpLink, queue: str, count: int) -> list[bytes]:
    """Bodies of the first ``count`` messages of ``queue``, oldest first, all
    returned to the queue (by closing the channel) before this returns.

    The channel's close-ok can come before a quorum queue has counted the
    returned messages as ready again: a ``message_count`` read at once after
    this may be short for a moment (seen in CI); a consumer still gets them.

    Quorum queues (RabbitMQ 3.10, checked on the broker) keep messages that
    came back from a closed channel in a "returns" list served before the
    other messages, and append to its end. Taking fewer messages than that
    list holds would rotate it, so the look goes on past ``count`` while the
    messages taken are redelivered (they are the returns list), up to
    :data:`PEEK_EXTRA` more.
    """
    connection = link.connection
    if connection is None or not link.is_open:
        raise ConnectionError("AMQP link is not connected")
    channel = await connection.channel(publisher_confirms=False)
    bodies: list[bytes] = []
    taken, redelivered = 0, False
    try:
        try:
            await channel.queue_declare(queue, passive=True)
        except NotFound:
            return []
        while len(bodies) < count or redelivered:
            if taken >= count + PEEK_EXTRA:
                log.warning(
                    "queued_jobs %s: more than %d redelivered messages at the head; "
                    "the look may change their order",
                    queue,
                    PEEK_EXTRA,
                )
                break
            message = await channel.get(queue)
            if message is None:
                break
            taken += 1
            redelivered = message.redelivered
            if len(bodies) < count:
                bodies.append(message.body)
        return bodies
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
