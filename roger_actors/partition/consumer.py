"""Roger's Consumer: takes a partition's jobs off RabbitMQ and hands them to workers.

One Consumer per partition per node. It owns the partition's AMQP link (on
an I/O thread, see :mod:`roger_actors.transport.loop`) with one channel per
queue. At most ``max_workers`` worker processes run jobs of a queue, one job
each at a time: that is the hard bound on jobs of that queue running on this
node. Each worker gets a batch of jobs per message, as many as fit in about
:data:`~roger_actors.partition.consumer_core.BATCH_TARGET_SECONDS` of work
judging by the queue's recent job durations (one job at a time for slow
jobs, up to :data:`~roger_actors.partition.consumer_core.MAX_BATCH` for
very short ones). The Consumer's decisions (what to do with a delivery and
with an outcome, how jobs are batched) are made without I/O by
:mod:`~roger_actors.partition.consumer_core`; this actor carries them out
through one module per concern: the queues' consumer channels
(:mod:`~.consumer_channels`), the worker processes (:mod:`~.worker_pool`),
execution keys (:mod:`~.execution_keys`), the end of a delivery on the
broker and in Global (:mod:`~.settler`) and leases (:mod:`~.lease`); see
``docs/tree.md``, "Inside the Consumer".
The channel's prefetch bounds the deliveries (and so the messages) this
actor has in flight; the ``prefetch`` config key chooses it: ``"roger"``,
``max_workers`` (Roger's: batches then hold what the channel has, mostly
one job), or ``"adaptive"``, ``max_workers * (1 + batch)``, from
``2 * max_workers``, following the batch size.

Work queues are durable quorum queues where the broker supports them, with
``x-delivery-limit`` (config ``delivery_limit``, 20 by default) and
``<partition>-<queue>.invalid`` as their dead-letter target (at-least-once
dead-lettering): a message returned more often than that lands there with
the broker's ``x-death`` (reason ``delivery_limit``). A work queue that
already exists with other arguments is used as it is (see
:meth:`~roger_actors.transport.amqp.AmqpLink.declare_work_queue`). On any
queue, the Consumer itself sets aside, before running it, a job whose
headers say it was delivered ``delivery_limit`` times without an outcome
(:func:`~roger_actors.partition.lease.failed_deliveries`): on RabbitMQ 4.x,
whose quorum queues drop a message past their default limit of 20 when they
have no dead-letter target, it does so before the broker would drop it.
Returns the Consumer makes on purpose (a paused queue's deliveries, jobs a
worker returned unstarted, Global unreachable) are republished as fresh
copies, then acked: they never count toward the limit (and go to the tail
of the queue). A delivery held for half the broker's ``consumer_timeout``
(config key) is handed over to a lease (:mod:`~roger_actors.partition.lease`),
so that long jobs outlive the timeout.

For each delivery:

- a payload larger than ``max_payload_bytes`` (not decoded at all), or that
  does not decode or validate (any exception of the decoder counts), is
  published with its body unchanged to ``<partition>-<queue>.invalid`` with
  the reason (at most :data:`~.settler.INVALID_REASON_CHARS` characters) in the
  ``x-roger-invalid`` header, then acked (never redelivered, never dropped).
  Its original headers are kept only up to :data:`~.headers.KEPT_HEADERS_BYTES`
  encoded bytes (bigger ones are replaced by ``x-roger-headers-dropped``,
  their size), so the republished message always fits the connection's
  ``frame_max``;
- a delivery delivered ``delivery_limit`` times without an outcome is set
  aside in ``.invalid`` the same way (reason ``Delivered N times without an
  outcome``), its queue key freed;
- a delivery for a paused queue is given back (a fresh copy), not run;
- otherwise the job goes to an idle worker of that queue; a worker process is
  started (through the partition's WorkerSupervisor) when none is idle,
  fewer than ``max_workers`` exist and the queue type holds less than its
  fair share of the node's worker slots (``worker_pool_size``,
  :mod:`~roger_actors.partition.worker_slots`); idle workers are stopped
  after :data:`WORKER_IDLE_SECONDS`, or at once while another partition's
  queue waits for the slot, so an idle partition holds no worker process.

Global (see ``docs/global.md``): the Consumer consumes nothing until the
partition's Global gave it the cancelled job ids and the cluster-wide
paused queues; casts from the cluster (through the node's System and
registry) keep both up to date. A ``cancel`` cast is only a hint: before
a job is settled as cancelled (or its worker told to cancel it) Global
must confirm the mark. A dequeued job whose id is cancelled is never run; a
cancelled job in the backlog or a worker's batch is dropped, a running one
has its worker killed; ``on_cancel`` runs on the node that clears the mark.
A job whose mark Global does not confirm runs normally. Local marks are
forgotten ``cancel_mark_ttl`` seconds after they were learned. A job with
an execution key takes it first, with its delivery's token (so a
redelivered copy of a job still running elsewhere waits), or is parked in
the key's waiting queue, and hands it to the next parked job when it ends;
a key whose holder's Consumer is gone for good is taken over
(:mod:`~roger_actors.partition.execution_fence`).

A job with a queue key holds it until the job has left the queue for good,
as in Roger: the key is freed in Global when the job's outcome is settled
(done, error, retried, buried, timed out, worker crash; then the delivery
is acked), when it is cancelled (with the mark), or when its payload is set
aside as invalid. It stays held while the job waits in its work queue, in
the Consumer, in a worker's batch, in an execution-waiting queue, or while
it runs; a job that goes back to its queue (paused, returned, requeued by
the broker) keeps it. The key is freed *before* the ack, so a Consumer that
dies in between leaves the job to be redelivered, and the redelivered copy
frees the key at its own outcome; an outcome whose delivery's channel is
gone frees nothing (the broker requeued the job, whose copy holds the key).
While Global does not answer, the free is tried again every second and the
ack waits for it.

The delivery is acked only once its outcome is recorded: done or
non-retryable error → ack; retryable error → published (with confirm) to
the retry queue of its level, then acked; last level failed → published to
the buried queue, then acked. A job that runs past ``max_execution_time``
has its worker killed and is handled as ``("timeout", ...)``; a worker that
dies under a job, as ``("worker_crash", reason)``. The callbacks for those
two and ``on_cancel`` run on the Consumer's
:class:`~roger_actors.partition.callback_runner.CallbackRunner` threads (the
worker is gone), never on the actor's thread: the settle does not wait for
them, and a slow or hung callback stalls neither dispatch nor acks.

When the broker connection is lost the Consumer reconnects with back-off;
unacked deliveries were requeued by the broker, and outcomes of jobs that
finish meanwhile are not acked (the job runs again elsewhere: at-least-once).
So that only the jobs running at that moment run twice, the workers are told
at once to give back the jobs of their batches not started yet (reported
``returned``, not run); the same when the broker closes one consumer channel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from thespian.actors import WatchMessage

from roger_actors.cluster_auth import ClusterAuth
from roger_actors.config import Config
from roger_actors.errors import RogerError
from roger_actors.job import (
    Job,
    bounded_repr,
    execution_key_of,
    set_allowed_modules,
)
from roger_actors.queue import Queue
from roger_actors.system_protocol import PartitionCommand, Resync
from roger_actors.transport.amqp import ChannelLost, Delivery, LinkLost
from roger_actors.transport.link_owner import LinkOwner
from roger_actors.transport.loop import InlineLoop, TaskFuture
from supervision import NOREPLY, From, Server
from supervision.protocol import CallReply, WhichChildren

from . import consumer_core, control, execution_fence
from .callback_runner import CLOSE_SECONDS, CallbackRunner
from .consumer_channels import ConsumerChannels
from .consumer_core import UNRUN_OUTCOMES, QueueState
from .execution_keys import ExecutionKeys
from .global_client import request as global_request
from .headers import headers_budget, kept_headers
from .lease import HANDOVER_FRACTION, LeaseKeeper, delivery_id, failed_deliveries, lease_ttl
from .messages import (
    JobFinished,
    JobsFinished,
    QueuesOf,
    WorkerExited,
    WorkerReady,
)
from .settler import Settler
from .worker import WorkerServer
from .worker_pool import WorkerPool
from .worker_slots import shared as shared_slots

log = logging.getLogger("roger_actors.consumer")

#: Seconds a worker may stay idle before it is stopped.
WORKER_IDLE_SECONDS = 5.0
#: Seconds a Global request from the Consumer may take.
GLOBAL_TIMEOUT = 10.0


@dataclass(frozen=True)
class _Io:
    """Result of an I/O operation run on the loop thread."""

    kind: str
    value: Any = None
    error: BaseException | None = None


#: The Consumer's record of one worker process.
_WorkerRef = consumer_core.WorkerRef

#: A delivery held by this Consumer (see :class:`~.consumer_core.Flight`).
_InFlight = consumer_core.Flight[Delivery, _WorkerRef]


# ---------------------------------------------------------------- public requests


@dataclass(frozen=True)
class GetQueues:
    """Call: ``{queue: {max_workers, paused, message_count, consumer_count}}``."""


@dataclass(frozen=True)
class Pause:
    """Call: pause consuming ``queue`` on this node."""

    queue: str


@dataclass(frozen=True)
class Resume:
    """Call: resume consuming ``queue`` on this node."""

    queue: str


@dataclass(frozen=True)
class PauseAll:
    """Call: pause every queue of the partition on this node."""


@dataclass(frozen=True)
class Reconfigure:
    """Call: the complete new list of queues ``{queue: max_workers}``."""

    queues: dict[str, int]


@dataclass(frozen=True)
class Status:
    """Call: ``{"connected": bool, "running_jobs": [Job, ...], "busy": bool,
    "pid": int, "worker_pids": [int, ...], "swept_keys": [str, ...]}``.

    ``running_jobs``: the jobs whose ``perform`` runs now, ``started_at`` set
    to when they were handed to their worker; ``worker_pids``: the OS pids
    (sorted) of their workers; ``busy``: some job was handed to a worker and
    has no outcome yet (running, or waiting in a worker's batch), or its
    outcome is still being recorded (a retry publish, its queue key freed);
    ``swept_keys``: the execution keys whose waiting queues this Consumer
    sweeps (keys it parked jobs for, and the keys held in Global's snapshot)."""


@dataclass(frozen=True)
class StopConsuming:
    """Call: stop taking jobs (all queues), keep running ones (safe stop)."""


@dataclass(frozen=True)
class Purge:
    """Call: purge one queue; replies the number of messages removed."""

    queue: str


class ConsumerServer(Server, LinkOwner):
    """The partition's job consumer; see the module docstring.

    Pausing: as in Roger, each queue type has **one** pause bit in the
    Consumer, shared by the local and the cluster-wide pause. ``Pause``
    (``roger.Consumer.pause``) and a ``queue_pause`` cast (Global's
    ``queue_pause``) set it; ``Resume`` and a ``queue_resume`` cast clear it,
    whichever set it (so ``Global.queue_resume`` also resumes a queue paused
    locally, and ``Consumer.resume`` one paused cluster-wide, on this node
    only: Global still lists it). The bit is kept per queue type, also for a
    type not configured: a reconfiguration that removes a queue and adds it
    back, or changes its ``max_workers`` (through 0 or not), keeps it, and a
    queue added later starts paused if a cast paused it meanwhile. Global's
    paused set is applied when the Consumer gets Global's snapshot (when it
    starts, after every reconnect, on a Resync); a queue listed there is
    paused, one Global stopped listing is resumed, other bits stay. A
    Consumer that restarts (crash, partition restart, node restart) starts
    with only Global's paused set: a local pause is lost then, as Roger's
    Consumer, whose paused set is in its state, loses it.
    """

    reply_errors = (ValueError, TypeError)

    def init(
        self,
        partition_id: str,
        queues: dict[str, int],
        config: Config,
        registry: Any = None,
    ) -> None:
        """Start the I/O thread and the connection; find the WorkerSupervisor."""
        self.partition_id = partition_id
        self.config = config
        self.global_auth = ClusterAuth(config.cluster_secret)
        self.registry = registry
        set_allowed_modules(config.allowed_job_modules)
        callbacks_class = config.callbacks_class()
        self.callbacks = callbacks_class() if callbacks_class is not None else None
        #: Runs the callbacks above off this actor's thread (they may be called
        #: from several threads at once).
        self.callback_runner = CallbackRunner(self.callbacks, partition_id)
        self.adaptive_prefetch = config.prefetch == "adaptive"
        self.queues: dict[str, QueueState] = {
            name: QueueState(name, limit, adaptive=self.adaptive_prefetch)
            for name, limit in queues.items()
        }
        self.inflight: dict[int, _InFlight] = {}
        self.tokens = control.Tokens(self.inflight)
        #: Queue types given jobs while handling the current message (in order).
        self.admitted: dict[str, None] = {}
        #: This Consumer's share of the node's worker slots (worker_slots): it
        #: is woken (a "slots" message) when a slot is free or its share fell.
        self.slots = shared_slots(config.worker_pool_size).client(
            partition_id, lambda: self.send(self.address, "slots")
        )
        for name, limit in queues.items():
            if limit > config.worker_pool_size:
                log.warning(
                    "%s: queue %s has max_workers %d, but the node runs at most "
                    "worker_pool_size = %d workers at once",
                    partition_id,
                    name,
                    limit,
                    config.worker_pool_size,
                )
        #: The worker processes of this partition (worker_pool).
        self.pool = WorkerPool(
            self, partition_id, config, self.inflight, WorkerServer, slots=self.slots
        )
        self.connected = False
        self.consuming = True
        self.open_link(
            f"roger-consumer-{partition_id}",
            config.amqp.urls(),
            config.amqp.connection_timeout_seconds,
        )
        #: Leases of deliveries held past half the broker's consumer_timeout,
        #: and the returns that do not count as failed deliveries (lease.py).
        self.keeper = LeaseKeeper(
            self.link,
            partition_id,
            lease_ttl(config.consumer_timeout),
            lambda key: Queue.make_name(partition_id, key),
            lambda headers: kept_headers(headers, self._headers_budget()),
        )
        #: Deliveries whose hand-over to a lease was asked for (see _lease_tick),
        #: and the hand-overs under way by a private key.
        self.handed_over: set[tuple[str, int, int]] = set()
        self.handing: dict[int, tuple[str, int, int]] = {}
        self.sup_ref = self.call_async(self.parent, WhichChildren())
        self.pending_calls: dict[str, Any] = {}
        #: Refs of the reconfigurations under way on the broker (see _reconcile_consuming).
        self.reconfiguring: set[str] = set()
        self.acks: list[Delivery] = []
        #: Outcomes being recorded on the broker (a republish, a queue key
        #: being freed) before their ack: the Consumer is still busy.
        self.settling = 0
        self.pending_io: list[concurrent.futures.Future[None]] = []
        self.pending_limit = PENDING_SWEEP
        #: Snapshot fetches under way (cancelled by terminate).
        self.fetches: list[concurrent.futures.Future[None]] = []
        #: Local copy of the partition's cancelled job ids (from Global, then
        #: casts), learned at monotonic times; a hint only.
        self.cancelled = consumer_core.CancelMarks()
        #: The one pause bit per queue type (see the class docstring), and
        #: Global's paused set as last heard (what a Resync compares with).
        self.pauses = consumer_core.PauseBits()
        #: Global's snapshot is in: deliveries may start.
        self.snapshot_ready = False
        #: Since the snapshot came, the queues to consume are consumed.
        self.resumed = False
        #: A Resync came while the first snapshot was still being fetched.
        self.resync_wanted = False
        #: Cancels waiting for Global's answer, by a private key.
        self.cancelling: dict[int, _InFlight] = {}
        #: Execution keys whose waiting queues are swept each tick (WaitingKeys).
        self.waiting = consumer_core.WaitingKeys()
        #: The queues' consumer channels (consumer_channels), execution keys
        #: (take, park, release, sweep; execution_keys) and the end of
        #: deliveries on the broker and in Global (settler).
        self.channels = ConsumerChannels(self.link, partition_id, config.delivery_limit)
        self.keys = ExecutionKeys(self.link, partition_id, self._global, self._headers_budget)
        self.settler = Settler(
            self.link, self.keeper, partition_id, self._global, self._headers_budget
        )
        #: Since when this Consumer is disconnected (execution_fence.HOLD_SECONDS).
        self.lost_since: float | None = None
        self._tell_registry()
        self.queues_ref = ""
        if registry is not None:
            # A restarted Consumer takes the partition's current queues (a
            # reconfigure may have changed them since the partition started).
            self.queues_ref = self.call_async(registry, QueuesOf(partition_id))
        else:
            self._connect()
        #: A "tick" is armed (see :meth:`_arm_tick`).
        self.ticking = False
        self._arm_tick()

    # ------------------------------------------------------------ I/O plumbing

    def _submit(self, kind: str, coro: Any) -> concurrent.futures.Future[None]:
        async def run() -> None:
            try:
                value = await coro
            except BaseException as exc:
                self.io.post(_Io(kind, error=exc))
            else:
                self.io.post(_Io(kind, value))

        future = self.io.submit(run())
        self.pending_io.append(future)
        if len(self.pending_io) > self.pending_limit:
            # Amortised: the list is swept again only once it doubled (with
            # many still pending, a sweep per submit made bursts quadratic).
            self.pending_io = [f for f in self.pending_io if not f.done()]
            self.pending_limit = max(PENDING_SWEEP, 2 * len(self.pending_io))
        return future

    def _fetch_snapshot_in_background(self, kind: str) -> None:
        """Fetch Global's snapshot (retried until a Global answers); terminate
        cancels the fetch, so a Consumer stopped before its Global answered
        does not wait for it."""
        self.fetches = [f for f in self.fetches if not f.done()]
        self.fetches.append(self._submit(kind, self._fetch_snapshot()))

    def _connect(self) -> None:
        for q in self.queues.values():
            q.prefetch = q.wanted_prefetch
        plan = [(name, q.max_workers, q.prefetch) for name, q in self.queues.items()]
        # Deliveries start once Global's snapshot is in (_on_snapshot).
        self._submit("connected", self.channels.open(plan))

    async def _global(self, op: str, args: list[Any]) -> Any:
        return await global_request(
            self.link, self.partition_id, op, args, GLOBAL_TIMEOUT, self.global_auth
        )

    async def _fetch_snapshot(self) -> Any:
        """Global's cancelled ids and paused queues; waits for a Global to answer
        (the one on this node may still be starting)."""
        attempt = 0
        while True:
            try:
                return consumer_core.parse_snapshot(await self._global("snapshot", []))
            except (RogerError, ValueError) as exc:
                attempt += 1
                if attempt % 20 == 0:
                    log.warning("%s: no answer from Global yet: %s", self.partition_id, exc)
                await asyncio.sleep(min(0.05 * attempt, 1.0))

    def _on_snapshot(self, snapshot: consumer_core.Snapshot) -> None:
        for job_id in snapshot.cancelled:
            self._note_cancelled(job_id)
        for key in snapshot.executing:
            # Swept at the next ticks: jobs parked for it are handed over once
            # it is free, also those a node parked before it restarted.
            self.waiting.held(key)
        # Global's set is applied; a queue Global no longer lists (a resume
        # cast this Consumer missed) is resumed; local pauses stay.
        self.pauses.apply_snapshot(snapshot.paused)
        for name, state in self.queues.items():
            state.paused = name in self.pauses
        self.snapshot_ready = True
        start, _ = consumer_core.consuming_plan(self.queues, self.consuming)
        # "ready" is told once the queues to consume are consumed (the
        # "resume" outcome): Partition.start answers when the partition
        # takes jobs, so the broker counts its consumers by then.
        self._submit("resume", self.channels.resume(start))

    def _resync(self) -> None:
        """The node's System subscribed again and may have missed casts: fetch
        Global's snapshot again (after the first one, if that is still on its
        way; not connected, the fetch on connecting does it)."""
        self.resync_wanted = False
        if not self.connected:
            return
        if not self.snapshot_ready:
            self.resync_wanted = True
            return
        self._fetch_snapshot_in_background("resync")

    def _on_resync(self, snapshot: consumer_core.Snapshot) -> None:
        """Apply what changed in Global's snapshot as the casts would have
        (each new cancel mark is a hint, confirmed with Global as a cast's)."""
        for key in snapshot.executing:
            self.waiting.held(key)
        for job_id in sorted(set(snapshot.cancelled) - self.cancelled.ids()):
            self._on_cancel_command(job_id)
        for name, pause in self.pauses.missed_casts(snapshot.paused):
            command = "queue_pause" if pause else "queue_resume"
            self._on_command(PartitionCommand(self.partition_id, command, (name,)))

    # ------------------------------------------------------------ messages

    def handle_info(self, message: Any) -> None:
        """I/O events, worker reports, timers and call replies."""
        try:
            self._handle_info(message)
        finally:
            self._dispatch_admitted()
            self._flush_acks()
            self._arm_tick()

    def _dispatch_admitted(self) -> None:
        """Hand out the jobs admitted while handling one message, once per
        queue type: the deliveries of one turn (up to :data:`EVENTS_PER_TURN`)
        are cut into batches together instead of going out one by one."""
        if self.admitted:
            names, self.admitted = self.admitted, {}
            for name in names:
                state = self.queues.get(name)
                if state is not None:
                    self.pool.dispatch(state)

    def _ack_later(self, delivery: Delivery) -> None:
        """Ack ``delivery`` with the others of this message (one I/O hop for all);
        one handed over to a lease is settled through its lease."""
        if delivery_id(delivery) in self.handed_over:
            self.handed_over.discard(delivery_id(delivery))
            self._submit("ack", self.keeper.settle(delivery))
            return
        self.acks.append(delivery)

    def _flush_acks(self) -> None:
        if not self.acks:
            return
        acks, self.acks = self.acks, []
        link = self.link
        by_channel = consumer_core.acks_by_channel(acks)

        async def ack_all() -> None:
            for (key, generation), tags in by_channel.items():
                await link.ack_many(key, generation, tags)

        self._submit("ack", ack_all())

    def _handle_info(self, message: Any) -> None:
        if isinstance(message, WatchMessage):
            for event in self.io.drain(EVENTS_PER_TURN):
                self._on_event(event)
        elif isinstance(message, JobsFinished):
            self._on_finished(message.results)
        elif isinstance(message, WorkerReady):
            self.pool.ready(message, self.queues)
        elif isinstance(message, WorkerExited):
            self._on_worker_exited(message.address, message.reason)
        elif isinstance(message, CallReply):
            self._on_call_reply(message)
        elif message == "tick":
            self.ticking = False
            self._tick()
        elif message == "slots":
            for state in self.queues.values():
                self.pool.dispatch(state)
        elif isinstance(message, PartitionCommand):
            self._on_command(message)
        elif isinstance(message, Resync):
            self._resync()
        elif isinstance(message, tuple) and message and message[0] == "timeout":
            self._on_timeout(message[1])
        elif isinstance(message, tuple) and message and message[0] == "confirm-cancel":
            flight = self.inflight.get(message[1])
            if flight is not None and not flight.cancel_requested:
                request = self._global("is_cancelled", [flight.job.id, False])
                self._submit(f"confirm:{message[1]}", request)
        elif isinstance(message, tuple) and message and message[0] == "release":
            if self.connected:
                self._submit("release", self.keys.release(*message[1:]))
            else:
                self.send_after(1.0, message)
        elif isinstance(message, tuple) and message and message[0] == "give-back":
            self._give_back(message[1])  # a no-op once its channel is gone
        elif isinstance(message, tuple) and message and message[0] == "requeue":
            flight = self.inflight.pop(message[1], None)
            if flight is not None:
                self._give_back(flight.delivery)
        elif message == "reconnect":
            self._connect()
        else:
            super().handle_info(message)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, Delivery):
            self._on_delivery(event)
        elif isinstance(event, LinkLost):
            self._on_link_lost(event.reason)
        elif isinstance(event, ChannelLost):
            self._on_channel_lost(event.key)
        elif isinstance(event, _Io):
            self._on_io(event)

    def _on_io(self, event: _Io) -> None:
        if event.kind == "connected":
            if event.error is not None:
                log.warning("%s: cannot connect: %r", self.partition_id, event.error)
                self._tell_registry(failed=True)
                self._schedule_reconnect()
            else:
                self.connected = True
                self.link_up()
                log.info("%s: connected", self.partition_id)
                self._tell_registry()
                self._fetch_snapshot_in_background("snapshot")
        elif event.kind == "snapshot":
            if event.error is None:
                self._on_snapshot(event.value)
                if self.resync_wanted:
                    self._resync()
            else:
                log.warning("%s: no snapshot from Global: %r", self.partition_id, event.error)
        elif event.kind == "resume":
            if event.error is not None:
                log.warning("%s: resume failed: %r", self.partition_id, event.error)
            self.resumed = event.error is None
            self._tell_registry()
        elif event.kind == "resync":
            if event.error is None:
                self._on_resync(event.value)
            else:
                log.warning("%s: no snapshot from Global: %r", self.partition_id, event.error)
        elif event.kind == "release" and event.value is not None:
            self.send_after(1.0, ("release", *event.value))
        elif event.kind == "give-back" and event.value is not None:
            self.send_after(1.0, ("give-back", event.value))
        elif event.kind == "gate":
            self._on_gate(*event.value)
        elif event.kind == "reassert" and event.value:
            for flight in list(self.inflight.values()):
                if flight.exec_token in event.value and flight.worker and not flight.fenced:
                    self._fence_kill(flight, "its execution key went to another delivery")
        elif event.kind.startswith("cancel:"):
            self._on_cancel_cleared(int(event.kind[7:]), event.value, event.error)
        elif event.kind.startswith("confirm:"):
            self._confirm_cancel(int(event.kind[8:]), event.value, event.error)
        elif event.kind.startswith("lease:"):
            ident = self.handing.pop(int(event.kind[6:]), None)
            if event.error is not None or event.value is False:
                if event.error is not None:
                    log.warning(
                        "%s: handing a delivery over to a lease: %r", self.partition_id, event.error
                    )
                if ident is not None:  # not leased: the next tick tries again
                    self.handed_over.discard(ident)
        elif event.kind.startswith("sweep:"):
            key = event.kind[6:]
            self.waiting.swept(key, event.value)
        elif event.kind.startswith("settle:"):
            self.settling -= 1
            if event.error is not None:
                log.warning(
                    "%s: settling a job (%s) failed: %r",
                    self.partition_id,
                    event.kind[7:],
                    event.error,
                )
        elif event.kind.startswith("call:"):
            ref = event.kind[5:]
            from_ = self.pending_calls.pop(ref, None)
            if ref in self.reconfiguring:
                self.reconfiguring.discard(ref)
                self._reconcile_consuming()
            if from_ is not None:
                if event.error is not None:
                    self.reply_error(from_, _picklable(event.error))
                else:
                    self.reply(from_, event.value)
        elif event.error is not None:
            log.warning("%s: %s failed: %r", self.partition_id, event.kind, event.error)

    def _tell_registry(self, failed: bool = False) -> None:
        """Report this Consumer's state to the registry: ``"starting"``,
        ``"failed"`` (a connection attempt failed), ``"connected"``, or
        ``"ready"`` (connected with Global's snapshot in and its queues
        consumed: the partition runs)."""
        if self.registry is not None:
            if self.connected:
                status = "ready" if self.snapshot_ready and self.resumed else "connected"
            else:
                status = "failed" if failed else "starting"
            self.send(self.registry, ("consumer", self.partition_id, self.address, status))

    def _on_channel_lost(self, key: str) -> None:
        """The broker closed one consumer channel: its unacked deliveries are back
        in the queue; forget the ones not started, have the workers give back
        the jobs of their batches not started yet (their copies are back in
        the queue: running them here would run them twice), and consume
        again."""
        log.error("%s: consumer channel of queue %r closed by the broker", self.partition_id, key)
        state = self.queues.get(key)
        if state is None:
            return
        self.pool.return_unstarted(state)
        for token in state.backlog:
            self.inflight.pop(token, None)
        state.backlog.clear()
        self._forget_gating(key)
        if state.max_workers > 0 and self.connected:
            start = self.consuming and not state.paused
            self._submit("reconsume", self.channels.consume(key, state.wanted_prefetch, start))

    def _on_link_lost(self, reason: str) -> None:
        log.warning("%s: broker connection lost: %s", self.partition_id, reason)
        self.connected = False
        self.snapshot_ready = False
        self.resumed = False
        for state in self.queues.values():
            self.pool.return_unstarted(state)
            for token in state.backlog:
                self.inflight.pop(token, None)
            state.backlog.clear()
        self._forget_gating(None)
        self._tell_registry()
        self._schedule_reconnect()

    def _forget_gating(self, key: str | None) -> None:
        """Deliveries waiting for Global whose channel is gone (the broker requeued them)."""
        for token, flight in list(self.inflight.items()):
            if flight.gating and key in (None, flight.delivery.key):
                del self.inflight[token]

    def _schedule_reconnect(self) -> None:
        self.reconnect_later()

    def _on_call_reply(self, reply: CallReply) -> None:
        if reply.ref == self.queues_ref:
            if reply.ok and isinstance(reply.value, dict):
                self.queues = {
                    name: QueueState(
                        name, limit, paused=name in self.pauses, adaptive=self.adaptive_prefetch
                    )
                    for name, limit in reply.value.items()
                }
            self._connect()
            return
        if reply.ref == self.sup_ref:
            if not (reply.ok and self.pool.found(reply.value)):
                raise RuntimeError("consumer cannot find its WorkerSupervisor")
            for state in self.queues.values():
                self.pool.dispatch(state)
            return
        if reply.ref in self.pool.starts:
            self.pool.started(reply.ref, reply.ok, reply.value, self.queues)

    # ------------------------------------------------------------ deliveries

    def _on_delivery(self, delivery: Delivery) -> None:
        decision = consumer_core.triage(
            delivery.body,
            failed_deliveries=failed_deliveries(delivery.headers),
            delivery_limit=self.config.delivery_limit,
            runnable=self._runnable(delivery.key),
            max_payload_bytes=self.config.max_payload_bytes,
            cancelled=self.cancelled,
        )
        if isinstance(decision, consumer_core.SetAside):
            self._set_aside(delivery, decision.reason, free_key=decision.free_queue_key)
        elif isinstance(decision, consumer_core.GiveBack):
            self._give_back(delivery)
        elif isinstance(decision, consumer_core.ClearCancel):
            self._cancel_flight(_InFlight(delivery, decision.job))
        else:
            self._admit(_InFlight(delivery, decision.job))

    def _runnable(self, queue: str) -> bool:
        """A delivery of queue type ``queue`` may run now: the queue is known
        and not paused, and the Consumer consumes."""
        state = self.queues.get(queue)
        return state is not None and not state.paused and self.consuming

    def _admit(self, flight: _InFlight) -> None:
        """Take a job that is not (or no longer) cancelled: gate its keys, or
        put it in its queue's backlog."""
        delivery, job = flight.delivery, flight.job
        effect = consumer_core.admit(
            flight, runnable=self._runnable(delivery.key), new_exec_token=self.keys.new_token
        )
        if isinstance(effect, consumer_core.GiveBack):
            self._give_back(delivery)
            return
        token = next(self.tokens)
        self.inflight[token] = flight
        if isinstance(effect, consumer_core.TakeExecution):
            self._gate(token, job, delivery, effect.exec_token)
            return
        state = self.queues[delivery.key]
        state.backlog.append(token)
        self.admitted[state.name] = None  # dispatched at the end of the message

    # ------------------------------------------------------------ keys and Global

    def _gate(self, token: int, job: Job, delivery: Delivery, exec_token: str) -> None:
        """Take the job's execution key, or park it (:meth:`ExecutionKeys.gate`);
        the verdict comes back as a ``gate`` event."""

        async def gate() -> tuple[int, str]:
            return token, await self.keys.gate(job, delivery, exec_token)

        self._submit("gate", gate())

    def _on_gate(self, token: int, verdict: str) -> None:
        flight = self.inflight.get(token)
        if flight is None:
            return  # its channel was lost: the broker requeued it
        delivery = flight.delivery
        effect = consumer_core.gate_answered(
            flight, verdict, cancelled=self.cancelled, runnable=self._runnable(delivery.key)
        )
        if isinstance(effect, consumer_core.RequeueLater):
            self.send_after(1.0, ("requeue", token))
        elif isinstance(effect, consumer_core.Backlog):
            state = self.queues[delivery.key]
            state.backlog.append(token)
            self.pool.dispatch(state)
        else:
            del self.inflight[token]
            if isinstance(effect, consumer_core.Parked):
                self.waiting.parked(effect.key, delivery.key)
            elif isinstance(effect, consumer_core.ClearCancel):
                self._cancel_flight(flight)
            else:
                self._give_back(delivery)

    def _cancel_flight(self, flight: _InFlight) -> None:
        """Never run ``flight``'s job: clear its cancel mark with Global (the
        node that clears it runs ``on_cancel``: once in the cluster), give its
        execution key up, then ack it."""
        if flight.cancelling:
            return
        flight.cancelling = True
        key = next(self.tokens)
        self.cancelling[key] = flight
        self._submit(f"cancel:{key}", self.settler.clear_cancel(flight.job, flight.delivery))

    def _on_cancel_cleared(self, key: int, cleared: Any, error: BaseException | None) -> None:
        """Global answered whether ``flight``'s job is cancelled (clearing the
        mark). Yes: ``on_cancel``, settled as cancelled. No (a forged or stale
        cast, a stale local mark, an expired mark): never settled as
        cancelled: a job not handed to a worker is taken normally, one its
        worker skipped goes back to the queue, one whose worker was killed
        is a worker crash."""
        flight = self.cancelling.pop(key, None)
        if flight is None:
            return
        job = flight.job
        if error is not None:
            # Try again later: the job comes back and is still marked here.
            log.warning("%s: cancelling job %s: %r", self.partition_id, job.id, error)
        elif cleared:
            log.info("%s: job %s cancelled", self.partition_id, job.id)
        else:
            log.warning(
                "%s: job %s is not cancelled in Global (a cancel cast or mark it did not confirm)",
                self.partition_id,
                job.id,
            )
        effects = consumer_core.cancel_cleared(
            flight,
            bool(cleared),
            failed=error is not None,
            connected=self.connected,
            marks=self.cancelled,
            at=_monotonic(),
            redelivered=flight.delivery.redelivered,
        )
        for effect in effects:
            if isinstance(effect, consumer_core.GiveBack):
                self._give_back(flight.delivery)
            elif isinstance(effect, consumer_core.Admit):
                self._admit(flight)
            elif isinstance(effect, consumer_core.RunCallback):
                self.callback_runner.submit(effect.name, self.partition_id, job)
            elif isinstance(effect, consumer_core.SettleAs):
                self._settle(flight, effect.outcome)
            else:
                self._crashed(flight, (effect.kind, effect.reason))

    def _on_command(self, command: PartitionCommand) -> None:
        """A cast from the cluster: cancel a job, pause or resume a queue."""
        if not command.args or not isinstance(command.args[0], str):
            log.warning(
                "%s: malformed partition command %s", self.partition_id, bounded_repr(command)
            )
            return
        arg = command.args[0]
        if command.command == "cancel":
            self._on_cancel_command(arg)
        elif command.command in ("queue_pause", "queue_resume"):
            pause = command.command == "queue_pause"
            # One bit per queue type, also for a queue not configured.
            self.pauses.cast(arg, pause)
            if arg in self.queues and self.queues[arg].paused != pause:
                self._submit(command.command, self._change_paused([arg], pause))
        else:
            log.warning(
                "%s: unknown partition command %s", self.partition_id, bounded_repr(command)
            )

    def _note_cancelled(self, job_id: str) -> None:
        """Remember ``job_id`` as cancelled (a hint, renewed if known)."""
        self.cancelled.note(job_id, _monotonic())

    def _expire_cancelled(self) -> None:
        """Forget local marks older than ``cancel_mark_ttl``."""
        self.cancelled.expire(_monotonic(), self.config.cancel_mark_ttl)

    def _on_cancel_command(self, job_id: str) -> None:
        """A ``cancel`` cast (a hint): a job not handed to a worker yet is
        checked with Global on the spot (:meth:`_cancel_flight`); for a job in
        a worker, Global must confirm the mark before the worker is told
        (:meth:`_confirm_cancel`), so a forged cast never kills a job."""
        self._note_cancelled(job_id)
        for token, flight in list(self.inflight.items()):
            if flight.job.id != job_id:
                continue
            effect = consumer_core.cancel_hint(flight)
            if isinstance(effect, consumer_core.ClearCancel):
                state = self.queues.get(flight.delivery.key)
                if state is not None and token in state.backlog:
                    state.backlog.remove(token)
                del self.inflight[token]
                self._cancel_flight(flight)
            elif isinstance(effect, consumer_core.ConfirmCancel):
                request = self._global("is_cancelled", [effect.job_id, False])
                self._submit(f"confirm:{token}", request)

    def _confirm_cancel(self, token: int, confirmed: Any, error: BaseException | None) -> None:
        """Global answered whether the job of ``token`` (in a worker) is cancelled."""
        flight = self.inflight.get(token)
        if flight is None:
            return
        in_worker = flight.worker is not None and not flight.cancelling
        effects = consumer_core.cancel_confirmed(
            flight, confirmed, failed=error is not None, marks=self.cancelled
        )
        if in_worker and error is not None:
            log.warning("%s: confirming a cancel: %r", self.partition_id, error)
        elif in_worker and confirmed is not True:
            log.warning(
                "%s: cancel cast for job %s not confirmed by Global; it runs on",
                self.partition_id,
                flight.job.id,
            )
        for effect in effects:
            if isinstance(effect, consumer_core.ConfirmLater):
                self.send_after(1.0, ("confirm-cancel", token))
            elif flight.worker is not None and flight.worker.control:
                # The worker skips it if not started yet (also when this
                # datagram overtakes the batch), or dies under it.
                control.tell(flight.worker.control, control.cancel_datagram(token))

    def _headers_budget(self) -> int:
        """Bytes of a delivery's own headers that may be republished on the
        current connection (:func:`~.headers.headers_budget`)."""
        connection = self.link.connection
        return headers_budget(connection.frame_max if connection is not None else 0)

    def _set_aside(self, delivery: Delivery, reason: str, free_key: bool = True) -> None:
        """Move a delivery that is no job to ``.invalid`` (:meth:`Settler.set_aside`)."""
        self._submit("invalid", self.settler.set_aside(delivery, reason, free_key))

    # ------------------------------------------------------------ outcomes

    def _on_finished(self, results: list[JobFinished]) -> None:
        freed: list[_WorkerRef] = []
        timed: set[str] = set()
        for result in results:
            flight = self.inflight.pop(result.token, None)
            if flight is None:
                continue
            if flight.timer is not None:
                self.cancel_timer(flight.timer)
            worker = flight.worker
            if worker is not None and result.outcome not in UNRUN_OUTCOMES:
                self._record_duration(worker.queue, result.seconds)
                timed.add(worker.queue)
            if result.outcome == "cancelled":
                flight.skipped = True  # a worker reports only jobs it did not start
            if worker is not None and worker.finished(result.token, _monotonic()):
                freed.append(worker)
            self._settle(flight, result.outcome)
        for name in timed:
            self._adjust_prefetch(name)
        for worker in freed:
            if self.pool.retired(worker):
                continue  # its queue type was removed while it ran: it stopped
            state = self.queues.get(worker.queue)
            if state is not None:
                self.pool.dispatch(state)

    def _record_duration(self, queue: str, seconds: float) -> None:
        state = self.queues.get(queue)
        if state is not None:
            state.record_duration(seconds)

    def _adjust_prefetch(self, queue: str) -> None:
        """Follow the batch size with the channel's prefetch (changes of 2x or
        more), when the prefetch is adaptive."""
        state = self.queues.get(queue)
        if state is None or not self.connected:
            return
        wanted = state.prefetch_change()
        if wanted is not None:
            self._submit("prefetch", self.channels.set_prefetch(queue, wanted))

    def _settle(self, flight: _InFlight, outcome: str) -> None:
        """Record the outcome of a job, then ack its delivery.

        ``returned`` (never started) goes back to the queue, keeping any
        execution key and queue key it holds; ``cancelled`` clears the cancel
        mark first (:meth:`_cancel_flight`, which frees the queue key). Every
        other outcome gives the job's execution key up (to the next waiting
        job), and frees its queue key (the job has run: Roger's ``job_done``)
        after the retry or burial publish and before the ack."""
        delivery, job = flight.delivery, flight.job
        effects = consumer_core.settle(
            job,
            outcome,
            partition_id=self.partition_id,
            queue=delivery.key,
            exec_token=flight.exec_token,
            cancelling=flight.cancelling,
            retry_levels=self.config.retry_levels,
            max_buried_queue_size=self.config.max_buried_queue_size,
        )
        for effect in effects:
            if isinstance(effect, consumer_core.GiveBack):
                self._give_back(delivery)
            elif isinstance(effect, consumer_core.ClearCancel):
                self._cancel_flight(flight)
            elif isinstance(effect, consumer_core.ReleaseExecution):
                release = self.keys.release(effect.key, effect.job_id, effect.exec_token)
                self._submit("release", release)
            elif isinstance(effect, consumer_core.AckLater):
                self._ack_later(delivery)
            else:
                self._record_then_ack(delivery, job, outcome, effect)

    def _record_then_ack(
        self, delivery: Delivery, job: Job, outcome: str, record: consumer_core.RecordThenAck
    ) -> None:
        """Carry out ``record`` for ``delivery`` on the loop thread
        (:meth:`Settler.record`); the Consumer counts as busy (``settling``)
        meanwhile."""
        self.handed_over.discard(delivery_id(delivery))
        self.settling += 1
        self._submit(f"settle:{outcome}", self.settler.record(delivery, job, outcome, record))

    def _on_timeout(self, token: int) -> None:
        flight = self.inflight.get(token)
        if flight is None or flight.worker is None:
            return
        flight.timed_out = True
        self.pool.kill(flight.worker)

    def _on_worker_exited(self, address: Any, reason: Any) -> None:
        exited = self.pool.exited(address, self.queues)
        if exited is None or not exited[0].tokens:
            return
        worker, record = exited
        # The scoreboard says which jobs ended (outcomes not reported yet)
        # and which one the worker died under.
        running, others = worker.died(record)
        for token, outcome in others:
            flight = self.inflight.pop(token, None)
            if flight is None:
                continue
            if outcome is not None:
                self._settle(flight, outcome)
            else:  # never started: back to the queue
                self._give_back(flight.delivery)
        owner = self.queues.get(worker.queue)
        if running is not None:
            self._on_died_under(running, reason)
        if owner is not None:
            self.pool.dispatch(owner)

    def _on_died_under(self, token: int, reason: Any) -> None:
        """The worker process ended while running this job."""
        flight = self.inflight.pop(token, None)
        if flight is None:
            return
        effect = consumer_core.died_under(flight, str(reason))
        if isinstance(effect, consumer_core.ClearCancel):
            self._cancel_flight(flight)
        else:
            self._crashed(flight, (effect.kind, effect.reason))

    def _crashed(self, flight: _InFlight, error: tuple[str, str]) -> None:
        """The job's worker died under it: ``on_buried`` if that buries the job,
        else ``on_error`` (exactly one, as Roger's ``handle_error``), then
        retried or buried as its class says."""
        job = flight.job
        log.warning("%s: job %s ended with %s", self.partition_id, job.id, error)
        outcome = consumer_core.error_outcome(job, self.config.retry_levels)
        callback = consumer_core.crash_callback(outcome)
        self.callback_runner.submit(callback, self.partition_id, job, error, None, None)
        self._settle(flight, outcome)

    def _give_back(self, delivery: Delivery) -> None:
        """Return a delivery not run (paused queue, returned by its worker,
        Global unreachable) to its work queue without it counting as a failed
        delivery: a fresh copy, then the ack (or its lease's end); see
        :mod:`~roger_actors.partition.lease`. A ``basic.nack`` would count
        toward the quorum queue's delivery limit."""
        self.handed_over.discard(delivery_id(delivery))

        async def give_back() -> Delivery | None:
            # A copy that cannot be published leaves the original unacked on a
            # channel that may well stay open: try again (while it is open),
            # else the job is held here, never run, until the connection ends.
            try:
                await self.settler.give_back(delivery)
            except Exception as exc:
                log.warning("%s: giving a delivery back: %r; trying again", self.partition_id, exc)
                return delivery
            return None

        self._submit("give-back", give_back())

    def _lease_tick(self) -> None:
        """Hand over to a lease each delivery held for half the broker's
        ``consumer_timeout``; renew the leases due, and give back the leased
        jobs this Consumer forgot (lease.py)."""
        if not self.connected:
            return
        live = {delivery_id(f.delivery) for f in self.inflight.values()}
        live |= {delivery_id(f.delivery) for f in self.cancelling.values()}
        oldest = _monotonic() - self.config.consumer_timeout * HANDOVER_FRACTION
        for flight in self.inflight.values():
            ident = delivery_id(flight.delivery)
            if (
                flight.delivery.received <= oldest
                and not flight.gating
                and not flight.cancelling
                and ident not in self.handed_over
            ):
                self.handed_over.add(ident)
                key = next(self.tokens)
                self.handing[key] = ident
                coro = self.keeper.hand_over(flight.delivery, self.settler.delivery_open)
                self._submit(f"lease:{key}", coro)
        # Forgotten deliveries (their channel was lost) need no hand-over.
        self.handed_over &= live | set(self.handing.values())
        if self.keeper.slots:
            self._submit("lease-renew", self.keeper.renew_due(live))

    def _needs_tick(self) -> bool:
        """Something :meth:`_tick` looks after: disconnected, deliveries held
        (leases, fencing, cancels), local cancel marks to expire, waiting
        queues to sweep, or workers to stop when idle. An idle Consumer has
        none, and so no timer: idle CPU does not grow with the partitions."""
        return bool(
            not self.connected
            or self.inflight
            or self.cancelling
            or self.handing
            or len(self.cancelled)
            or self.keeper.slots
            or len(self.waiting)
            or any(state.workers for state in self.queues.values())
        )

    def _arm_tick(self) -> None:
        """Arm the next tick (in a second) unless one is armed or nothing needs it;
        after every message."""
        if not self.ticking and self._needs_tick():
            self.ticking = True
            self.send_after(1.0, "tick")

    def _tick(self) -> None:
        self._lease_tick()
        self._expire_cancelled()
        self._fence_tick()
        if self.connected:
            for key in self.waiting.start_sweeps():
                self._submit("sweep:" + key, self.keys.sweep(key))
        self.pool.stop_idle(self.queues.values(), WORKER_IDLE_SECONDS)

    def _fence_tick(self) -> None:
        """Execution-key fencing (execution_fence), every tick: connected, hold
        the presence queue again after a reconnect while keyed jobs run, and
        take their keys again (a copy whose key went to another delivery is
        killed); disconnected for :data:`execution_fence.HOLD_SECONDS`, kill
        the workers running keyed jobs."""
        keyed = [
            f
            for f in self.inflight.values()
            if f.worker is not None and f.exec_token and not f.fenced
        ]
        if not self.connected:
            if self.lost_since is None:
                self.lost_since = _monotonic()
            elif _monotonic() - self.lost_since >= execution_fence.HOLD_SECONDS:
                for flight in keyed:
                    self._fence_kill(flight, "disconnected from the broker too long")
            return
        self.lost_since = None
        if keyed and not self.keys.present:
            holds = [(execution_key_of(f.job), f.job.id, f.exec_token) for f in keyed]
            self._submit("reassert", self.keys.reassert(holds))

    def _fence_kill(self, flight: _InFlight, why: str) -> None:
        """Kill the worker running ``flight``'s keyed job (handled as a crash)."""
        log.warning(
            "%s: killing job %s, which holds an execution key: %s",
            self.partition_id,
            flight.job.id,
            why,
        )
        flight.fenced = True
        worker = flight.worker
        if worker is not None and worker.pid is not None:
            self.pool.kill(worker)

    # ------------------------------------------------------------ requests

    def handle_call(self, request: Any, from_: From) -> Any:
        """GetQueues, Pause, Resume, PauseAll, Reconfigure, Status, StopConsuming, Purge."""
        try:
            return self._handle_call(request, from_)
        finally:
            self._dispatch_admitted()
            self._arm_tick()

    def _handle_call(self, request: Any, from_: From) -> Any:
        if isinstance(request, Status):
            running = self.pool.running(self.queues.values())
            return {
                "connected": self.connected,
                "running_jobs": [f.job.started(f.handed_at) for f in running],
                "busy": self.settling > 0
                or any(f.worker is not None for f in self.inflight.values()),
                "pid": os.getpid(),
                "worker_pids": sorted(
                    {f.worker.pid for f in running if f.worker and f.worker.pid is not None}
                ),
                "swept_keys": self.waiting.keys(),
            }
        if isinstance(request, GetQueues):
            snapshot = {name: (q.max_workers, q.paused) for name, q in self.queues.items()}
            return self._io_call(from_, self.channels.stats(snapshot))
        if isinstance(request, (Pause, Resume)):
            self._check_queue(request.queue)
            return self._set_paused([request.queue], isinstance(request, Pause), from_)
        if isinstance(request, PauseAll):
            return self._set_paused(list(self.queues), True, from_)
        if isinstance(request, StopConsuming):
            self.consuming = False
            for state in self.queues.values():
                self._requeue_backlog(state)
            return self._io_call(from_, self.channels.pause(list(self.queues)))
        if isinstance(request, Reconfigure):
            return self._reconfigure(request.queues, from_)
        if isinstance(request, Purge):
            self._check_queue(request.queue)
            return self._io_call(from_, self.channels.purge(request.queue))
        return super().handle_call(request, from_)

    def _check_queue(self, name: str) -> None:
        if name not in self.queues:
            raise ValueError(f"queue {name!r} is not a queue of partition {self.partition_id!r}")

    def _io_call(self, from_: From, coro: Any) -> Any:
        self.pending_calls[from_.ref] = from_
        self._submit("call:" + from_.ref, coro)
        return NOREPLY

    def _set_paused(self, names: list[str], paused: bool, from_: From) -> Any:
        return self._io_call(from_, self._change_paused(names, paused))

    def _change_paused(self, names: list[str], paused: bool) -> Any:
        """Mark ``names`` paused or not; returns the broker-side coroutine."""
        resume = []
        for name in names:
            state = self.queues[name]
            state.paused = paused
            self.pauses.set(name, paused)
            if not paused and self.consuming and self.snapshot_ready and state.max_workers > 0:
                resume.append(name)
            if paused:
                self._requeue_backlog(state)
        if paused:
            return self.channels.pause(names)
        return self.channels.resume(resume)

    def _requeue_backlog(self, state: QueueState) -> None:
        """Deliveries not yet running go back to the broker (also those handed to
        a worker in a batch and not started: the worker returns them)."""
        self.pool.return_unstarted(state)
        while state.backlog:
            flight = self.inflight.pop(state.backlog.popleft(), None)
            if flight is not None:
                self._give_back(flight.delivery)

    def _reconfigure(self, queues: dict[str, int], from_: From) -> Any:
        """Make ``queues`` the partition's queues (:func:`consumer_core.reconfigure`):
        removed queues return their backlog and stop their idle workers (busy
        ones stop once idle); the broker side runs in turn with the other
        consumer changes, then :meth:`_reconcile_consuming`."""
        removed, plan = consumer_core.reconfigure(
            self.queues, queues, self.pauses, self.adaptive_prefetch
        )
        for state in removed:
            self._requeue_backlog(state)
            self.pool.retire(state)
        consuming = self.consuming and self.snapshot_ready
        self.reconfiguring.add(from_.ref)
        return self._io_call(from_, self.channels.apply(plan, consuming))

    def _reconcile_consuming(self) -> None:
        """A reconfiguration has reached the broker: consume exactly the queues
        that should be consumed now. A pause, a resume or the Global snapshot
        handled while it was under way may have reached the link before a new
        queue's consumer existed (where it does nothing), which would leave
        that queue never consumed, or consumed while paused."""
        run, stop = consumer_core.consuming_plan(
            self.queues, self.consuming and self.snapshot_ready
        )
        self._submit("reconcile", self.channels.reconcile(run, stop))

    def terminate(self, reason: Any) -> None:
        """Finish the acks and publishes under way (a few seconds at most), then
        close the AMQP link: unacked deliveries go back to their queues.

        Callbacks still queued or running get up to
        :data:`~roger_actors.partition.callback_runner.CLOSE_SECONDS` of those
        seconds, while the acks go on; past that, those not started never run
        and those running are abandoned (see :meth:`CallbackRunner.close`)."""
        self._flush_acks()
        slots = getattr(self, "slots", None)
        if slots is not None:
            slots.close()  # the WorkerSupervisor stops the workers next
        for fetch in getattr(self, "fetches", []):
            fetch.cancel()  # Global's snapshot is of no use any more
        runner = getattr(self, "callback_runner", None)
        if isinstance(self.io, InlineLoop):
            # Waited for on the loop, before the link closes: the loop is the
            # other partitions' too, so the callbacks are waited for in a
            # thread of the loop's executor, not by blocking the loop.
            tasks = [f.task for f in self.pending_io if isinstance(f, TaskFuture) and not f.done()]
            self.close_link("Consumer", _ended(tasks, runner), TERMINATE_SECONDS)
            return
        deadline = _monotonic() + TERMINATE_SECONDS
        if runner is not None:
            runner.close(CLOSE_SECONDS)
        remaining = max(0.0, deadline - _monotonic())
        concurrent.futures.wait(self.pending_io, timeout=remaining)
        self.close_link("Consumer")


async def _ended(tasks: list[asyncio.Task[Any]], runner: CallbackRunner | None = None) -> None:
    """Wait until every task in ``tasks`` ended (none when it is empty) and,
    meanwhile, ``runner`` closed (:meth:`CallbackRunner.close`, in a thread)."""
    waits: list[Any] = list(tasks)
    if runner is not None:
        if runner.busy:
            loop = asyncio.get_running_loop()
            waits.append(loop.run_in_executor(None, runner.close, CLOSE_SECONDS))
        else:
            runner.close(0)  # nothing to wait for: new callbacks are refused
    if waits:
        await asyncio.wait(waits)


#: ``pending_io`` is swept of its finished futures past this many (at least).
PENDING_SWEEP = 256

#: Most I/O events (deliveries, I/O outcomes) one wake-up handles: the rest
#: wait for the next turn, after the other actors of the process had theirs
#: (on the light base every partition's Consumer shares one loop, and a
#: partition with a deep backlog must not hold the others' deliveries back).
EVENTS_PER_TURN = 64

#: Seconds ``terminate`` gives the acks, publishes and callbacks under way.
TERMINATE_SECONDS = 5.0


def _monotonic() -> float:
    return time.monotonic()


def _picklable(error: BaseException) -> Exception:
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(repr(error))
    return error if isinstance(error, Exception) else RuntimeError(repr(error))


__all__ = ["ConsumerServer"]
