"""Roger's Partition registry: which partitions run on this node.

The registry is the node's single entry point for partition management. It
starts a partition as a child (id = partition id) of the PartitionSupervisor
and keeps, for each, its queues, its Consumer's address and whether it
*runs*: its Consumer is connected to the broker and has its Global's
snapshot, so deliveries may start. Any other partition is *waiting*: its
Consumer retries the connection with back-off until it runs. As in Roger, a
node that was set inactive (it is shutting down) starts no partition: a
start there lists the partition as waiting, with no tree.

``StartPartition`` answers once the partition runs (``"running"``), or with
``"waiting"`` when the node is inactive, when the Consumer's first
connection attempt failed, or after :data:`START_WAIT` seconds; a start
that fails is an error. On a partition that is already here it
reconfigures it. Predefined partitions from the configuration are started
when the registry starts.

Partitions are *temporary* children of the PartitionSupervisor: a
partition's tree that ends, however (the PartitionSupervisor tells, see
:class:`PartitionExited`), or whose start fails, makes the partition
*waiting*, and the registry starts it again with back-off (from
:data:`RESTART_FIRST` up to :data:`RESTART_CAP` seconds, reset once it runs)
until it runs or is stopped, as Roger's ``Partition`` does with its waiting
partitions. So no fault of a partition, however often it repeats, counts
against the intensity of the supervisors above it: one partition cannot
take the node down. When the PartitionSupervisor itself ends (its process
was killed, say), every partition's tree goes with it: the registry, which
monitors it, finds its successor and starts there, with back-off, every
partition that was here, those started with ``Partition.start`` included.

``SafeStopPartition`` is Roger's ``safe_stop``: it pauses every queue of the
partition (running jobs finish; ``Consumer.resume`` takes jobs again) and
the partition stays. ``DrainPartition`` (the graceful shutdown's) stops
taking jobs and removes the partition once its running jobs are done.

Partition commands the System receives from the cluster (cancel,
queue_pause, queue_resume) are forwarded to the partition's Consumer; for a
partition not running here they are dropped. A
:class:`~roger_actors.system_protocol.Resync` from the System (its
subscription came back, casts may have been missed) goes to every running
Consumer, which fetches its Global's snapshot again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from supervision import NOREPLY, ChildSpec, Down, From, Server
from supervision.errors import AlreadyStarted, NoProc, NotFound
from supervision.protocol import (
    Call,
    CallReply,
    DeleteChild,
    GetChildSpec,
    StartChild,
    TerminateChild,
    WhichChildren,
)
from supervision.reasons import is_normal

from ..config import Config
from ..errors import NotRunningError, RogerError
from ..job import bounded_repr
from ..partition.consumer import PauseAll, Reconfigure, Status, StopConsuming
from ..partition.containing_supervisor import ContainingSupervisor
from ..partition.messages import QueuesOf
from ..queue import normalise_queue_defs, validate_partition_id
from ..system_protocol import PartitionCommand, Resync
from ..transport.backoff import Backoff
from .system import IsActive

log = logging.getLogger("roger_actors.registry")

#: Longest a StartPartition waits for the new partition to run (seconds)
#: before it answers ``"waiting"``.
START_WAIT = 20.0
#: Back-off between attempts to start again a partition whose tree ended or
#: failed to start (seconds): the first delay and the longest.
RESTART_FIRST = 1.0
RESTART_CAP = 30.0
#: Seconds between lookups of a PartitionSupervisor being started again.
PARTITIONS_LOOKUP = 0.1


@dataclass(frozen=True)
class StartPartition:
    """Call: start (or reconfigure, when running) a partition."""

    partition_id: str
    queues: dict[str, int]


@dataclass(frozen=True)
class StopPartition:
    """Call: stop a partition now (running jobs are stopped with the workers)."""

    partition_id: str


@dataclass(frozen=True)
class PartitionExited:
    """Info (from the PartitionSupervisor): a partition's tree ended with ``reason``."""

    partition_id: str
    reason: Any


@dataclass(frozen=True)
class SafeStopPartition:
    """Call: pause every queue of the partition (Roger's ``safe_stop``); it stays."""

    partition_id: str


@dataclass(frozen=True)
class DrainPartition:
    """Call: stop taking jobs; the partition stops when its running jobs are done."""

    partition_id: str


@dataclass(frozen=True)
class ConsumerOf:
    """Call: the address of a running partition's Consumer."""

    partition_id: str


@dataclass(frozen=True)
class Ready:
    """Call: answered once the registry can take requests (after boot)."""


@dataclass(frozen=True)
class Partitions:
    """Call: ``{"running": {pid: queues}, "waiting": {pid: queues}}``."""


@dataclass
class _Partition:
    queues: dict[str, int]
    consumer: Any = None
    #: The Consumer's link is up.
    connected: bool = False
    #: Connected with Global's snapshot in: the partition runs.
    ready: bool = False
    #: A tree was started (False while the node's active flag is checked, or
    #: for good when the node is inactive).
    started: bool = False
    draining: bool = False
    #: The registry is stopping it (its exit is expected).
    stopping: bool = False
    #: A restart attempt is scheduled or under way.
    restarting: bool = False
    #: Delays between restart attempts; reset once it runs.
    backoff: Backoff = field(default_factory=lambda: Backoff(RESTART_FIRST, 2.0, RESTART_CAP))
    #: StartPartition calls answered once the partition runs or waits.
    start_waiters: list[From] = field(default_factory=list)


class Registry(Server):
    """The node's partition registry; see the module docstring."""

    reply_errors = (RogerError, ValueError, TypeError)

    def init(self, config: Config) -> None:
        """Find the PartitionSupervisor (a sibling), then start predefined partitions."""
        self.config = config
        self.partitions: dict[str, _Partition] = {}
        self.partition_sup: Any = None
        self.pending: dict[str, tuple[str, str, From | None]] = {}
        self.system: Any = None
        self.sibling_ref = self.call_async(self.parent, WhichChildren())
        self.ready_waiters: list[From] = []
        #: The monitor of the PartitionSupervisor.
        self.partition_sup_ref: str | None = None
        #: Partitions whose trees went with a lost PartitionSupervisor, until
        #: its successor is found (None: none was lost).
        self.partitions_lost: set[str] | None = None

    # ------------------------------------------------------------ calls

    def handle_call(self, request: Any, from_: From) -> Any:
        """Partition management requests (see the request classes)."""
        if isinstance(request, Ready):
            if self.partition_sup is not None:
                return True
            self.ready_waiters.append(from_)
            return NOREPLY
        if isinstance(request, StartPartition):
            pid = validate_partition_id(request.partition_id)
            queues = normalise_queue_defs(request.queues)
            return self._start_partition(pid, queues, from_)
        if isinstance(request, StopPartition):
            pid = self._require_running(request.partition_id)
            if not self.partitions[pid].started:
                self._reply_start(pid, "waiting")
                del self.partitions[pid]
                return None
            self.partitions[pid].stopping = True
            ref = self.call_async(self.partition_sup, TerminateChild(pid))
            self.pending[ref] = ("stop", pid, from_)
            return NOREPLY
        if isinstance(request, SafeStopPartition):
            pid = self._require_running(request.partition_id)
            consumer = self.partitions[pid].consumer
            if consumer is None:
                return None
            ref = self.call_async(consumer, PauseAll())
            self.pending[ref] = ("pause", pid, from_)
            return NOREPLY
        if isinstance(request, DrainPartition):
            pid = self._require_running(request.partition_id)
            part = self.partitions[pid]
            if not part.started:
                self._reply_start(pid, "waiting")
                del self.partitions[pid]
                return None
            part.draining = True
            if part.consumer is not None:
                ref = self.call_async(part.consumer, StopConsuming())
                self.pending[ref] = ("ignore", pid, None)
            self.send_after(0.2, ("drain", pid))
            return None
        if isinstance(request, ConsumerOf):
            pid = self._require_running(request.partition_id)
            consumer = self.partitions[pid].consumer
            if consumer is None:
                raise NotRunningError(f"partition {pid!r} has no consumer yet")
            return consumer
        if isinstance(request, QueuesOf):
            return dict(self.partitions[self._require_running(request.partition_id)].queues)
        if isinstance(request, Partitions):
            running = {p: dict(v.queues) for p, v in self.partitions.items() if v.ready}
            waiting = {p: dict(v.queues) for p, v in self.partitions.items() if not v.ready}
            return {"running": running, "waiting": waiting}
        return super().handle_call(request, from_)

    def _require_running(self, partition_id: str) -> str:
        pid = validate_partition_id(partition_id)
        if pid not in self.partitions:
            raise NotRunningError(f"partition {pid!r} is not running on this node")
        return pid

    def _start_partition(self, pid: str, queues: dict[str, int], from_: From | None) -> Any:
        part = self.partitions.get(pid)
        if part is not None:
            part.queues = dict(queues)
            if not part.started or part.consumer is None:
                # Its tree is being checked or started, or the node is
                # inactive: the new queues are what it will start with.
                return self._answer_start(part, from_)
            ref = self.call_async(part.consumer, Reconfigure(dict(queues)))
            self.pending[ref] = ("reconfigure", pid, from_)
            return NOREPLY
        if self.partition_sup is None:
            raise NotRunningError("the node is still starting")
        part = self.partitions[pid] = _Partition(dict(queues))
        if from_ is not None:
            part.start_waiters.append(from_)
        if self.system is None:
            self._start_tree(pid)
        else:
            ref = self.call_async(self.system, IsActive())
            self.pending[ref] = ("active?", pid, None)
        return NOREPLY

    def _start_tree(self, pid: str) -> None:
        """Start the partition's tree (the node is active); once the
        PartitionSupervisor is found again when it was lost."""
        part = self.partitions[pid]
        part.started = True
        if self.partition_sup is None:
            assert self.partitions_lost is not None
            self.partitions_lost.add(pid)
            return
        spec = ChildSpec(
            pid,
            (ContainingSupervisor, (pid, dict(part.queues), self.config, self.address)),
            restart="temporary",
            type="supervisor",
            shutdown="infinity",
        )
        ref = self.call_async(self.partition_sup, StartChild(spec))
        self.pending[ref] = ("start", pid, None)
        self.send_after(START_WAIT, ("start-wait", pid))

    def _answer_start(self, part: _Partition, from_: From | None) -> Any:
        """The answer to a StartPartition of an existing, not running partition:
        now when it waits for good (inactive node), else once it runs."""
        if part.started or from_ is None:
            if from_ is not None:
                part.start_waiters.append(from_)
            return NOREPLY if from_ is not None else None
        return "waiting"

    def _reply_start(self, pid: str, answer: str) -> None:
        part = self.partitions.get(pid)
        if part is None:
            return
        waiters, part.start_waiters = part.start_waiters, []
        for waiter in waiters:
            self.reply(waiter, answer)

    # ------------------------------------------------------------ infos

    def handle_info(self, message: Any) -> None:
        """Replies from the supervisors and consumers, consumer status, partition
        commands and Resync from the System, safe-stop polls."""
        if isinstance(message, CallReply):
            self._on_reply(message)
        elif isinstance(message, tuple) and message and message[0] == "consumer":
            _, pid, address, status = message
            part = self.partitions.get(pid)
            if part is not None:
                part.consumer = address
                part.connected = status in ("connected", "ready")
                part.ready = status == "ready"
                if part.ready:
                    part.backoff.reset()
                    self._reply_start(pid, "running")
                elif status == "failed":
                    self._reply_start(pid, "waiting")
        elif isinstance(message, tuple) and message and message[0] == "start-wait":
            self._reply_start(message[1], "waiting")
        elif isinstance(message, PartitionExited):
            self._on_partition_exited(message)
        elif isinstance(message, Down) and message.ref == self.partition_sup_ref:
            self._on_partitions_lost(message.reason)
        elif message == "find-partitions":
            self.sibling_ref = self.call_async(self.parent, WhichChildren())
        elif isinstance(message, tuple) and message and message[0] == "restart":
            self._restart(message[1])
        elif isinstance(message, PartitionCommand):
            part = self.partitions.get(message.partition_id)
            if part is not None and part.consumer is not None:
                self.send(part.consumer, message)
        elif isinstance(message, Resync):
            for part in self.partitions.values():
                if part.consumer is not None:
                    self.send(part.consumer, message)
        elif isinstance(message, tuple) and message and message[0] == "drain":
            self._poll_drain(message[1])
        else:
            super().handle_info(message)

    def _on_reply(self, reply: CallReply) -> None:
        if reply.ref == self.sibling_ref:
            for info in reply.value if reply.ok else []:
                if info.id == "partitions" and info.address not in (None, "restarting"):
                    self.partition_sup = info.address
                elif info.id == "system" and info.address not in (None, "restarting"):
                    self.system = info.address
            if self.partition_sup is None:
                if self.partitions_lost is None:
                    raise RuntimeError("registry cannot find the PartitionSupervisor")
                # Its supervisor is still starting it again: look once more.
                self.send_after(PARTITIONS_LOOKUP, "find-partitions")
                return
            self.partition_sup_ref = self.monitor(self.partition_sup)
            # Partitions may run already: started by this registry's previous
            # incarnation (it was restarted). They are taken back first.
            ref = self.call_async(self.partition_sup, WhichChildren())
            self.pending[ref] = ("adopt-list", "", None)
            return
        kind, pid, from_ = self.pending.pop(reply.ref, ("", "", None))
        if kind == "adopt-list":
            running = [
                info.id
                for info in (reply.value if reply.ok else [])
                if isinstance(info.id, str) and info.address is not None
            ]
            for child in running:
                ref = self.call_async(self.partition_sup, GetChildSpec(child))
                self.pending[ref] = ("adopt-spec", child, None)
            if self.partitions_lost is not None:
                # The PartitionSupervisor was lost with every partition's tree:
                # the partitions that were here start again in its successor.
                lost, self.partitions_lost = self.partitions_lost, None
                for lost_pid in lost:
                    if lost_pid in self.partitions and lost_pid not in running:
                        self._schedule_restart(lost_pid)
            for config_pid, queues in self.config.partitions.items():
                if config_pid not in running and config_pid not in self.partitions:
                    self._start_partition(config_pid, dict(queues), None)
            for waiter in self.ready_waiters:
                self.reply(waiter, True)
            self.ready_waiters.clear()
            return
        if kind == "adopt-spec":
            if not reply.ok:
                return  # gone meanwhile: its exit went to the old registry
            queues = reply.value.start.args[1]
            log.warning("partition %s was started by a previous registry: restarting it", pid)
            self.partitions[pid] = _Partition(dict(queues))
            self.partitions[pid].started = True
            # Its tree reports to the old registry's address: it is replaced
            # by one that reports here (its unacked jobs go back to the queue;
            # terminating a temporary child drops its spec).
            ref = self.call_async(self.partition_sup, TerminateChild(pid))
            self.pending[ref] = ("replace", pid, None)
            return
        if kind == "active?":
            part = self.partitions.get(pid)
            if part is None:
                return
            if reply.ok and reply.value is False:
                log.info("partition %s waits: this node is inactive", pid)
                self._reply_start(pid, "waiting")
            else:
                # No answer from the System: start (its Consumer connects on its own).
                self._start_tree(pid)
            return
        if kind == "start":
            if reply.ok:
                return  # answered once it runs (or waits)
            part = self.partitions.get(pid)
            if part is None or part.stopping:
                return
            if isinstance(reply.value, AlreadyStarted):
                # A tree this registry does not know (started before it took
                # the others back): replaced by one that reports here.
                ref = self.call_async(self.partition_sup, TerminateChild(pid))
                self.pending[ref] = ("replace", pid, None)
                return
            log.error("partition %s failed to start: %s", pid, bounded_repr(reply.value))
            waiters, part.start_waiters = part.start_waiters, []
            error = RogerError(
                f"partition {pid!r} failed to start (it waits and is started again "
                f"with back-off): {bounded_repr(reply.value)}"
            )
            for waiter in waiters:
                self.reply_error(waiter, error)
            self._schedule_restart(pid)
            return
        if kind == "replace":
            part = self.partitions.get(pid)
            if part is not None and not part.stopping:
                self._start_tree(pid)
            return
        if kind == "stop":
            self.partitions.pop(pid, None)
            if reply.ok:
                ref = self.call_async(self.partition_sup, DeleteChild(pid))
                self.pending[ref] = ("delete", pid, from_)
                return
        if kind in ("stop", "delete") and isinstance(reply.value, (NotFound, NoProc)):
            # Not (or no longer) a child: its tree had ended or failed to
            # start (a restart was due), or, temporary, it went with its stop;
            # or the PartitionSupervisor is gone, with every tree.
            reply = CallReply(reply.ref, True, None)
        elif kind == "status" and reply.ok:
            if not reply.value["busy"]:
                if pid in self.partitions:
                    self.partitions[pid].stopping = True
                ref = self.call_async(self.partition_sup, TerminateChild(pid))
                self.pending[ref] = ("stop", pid, None)
            else:
                self.send_after(0.2, ("drain", pid))
            return
        if from_ is not None:
            if not reply.ok:
                self.reply_error(from_, reply.value)
            elif kind == "reconfigure":
                part = self.partitions.get(pid)
                self.reply(from_, "running" if part is not None and part.ready else "waiting")
            else:
                self.reply(from_, None)

    def _on_partition_exited(self, message: PartitionExited) -> None:
        """A partition's tree ended (it is a temporary child: gone): unless the
        registry stopped it, it waits and is started again with back-off."""
        part = self.partitions.get(message.partition_id)
        if part is None or part.stopping:
            return
        part.consumer, part.connected, part.ready = None, False, False
        (log.warning if is_normal(message.reason) else log.error)(
            "partition %s ended (%s); it waits and is started again",
            message.partition_id,
            bounded_repr(message.reason),
        )
        self._schedule_restart(message.partition_id)

    def _on_partitions_lost(self, reason: Any) -> None:
        """The PartitionSupervisor ended, and every partition's tree with it
        (on the light base: the partition host process died). Its supervisor
        starts it again; the registry finds the new one, and the partitions
        that were here wait and start again in it, with back-off."""
        log.error(
            "the PartitionSupervisor ended (%s) with %d partition(s); they wait and "
            "are started again",
            bounded_repr(reason),
            len(self.partitions),
        )
        self.partition_sup = self.partition_sup_ref = None
        for pending_ref, (kind, _, from_) in list(self.pending.items()):
            if kind in ("start", "stop", "delete", "replace", "adopt-spec", "adopt-list"):
                # The calls to the dead supervisor get no answer.
                del self.pending[pending_ref]
                if from_ is not None:
                    self.reply(from_, None)
        for pid, part in list(self.partitions.items()):
            if part.stopping:
                del self.partitions[pid]
                continue
            # A restart already scheduled stays: when it is due before the
            # successor is found, _start_tree defers it to partitions_lost.
            part.consumer, part.connected, part.ready = None, False, False
        self.partitions_lost = {pid for pid, p in self.partitions.items() if p.started}
        self.sibling_ref = self.call_async(self.parent, WhichChildren())

    def _schedule_restart(self, pid: str) -> None:
        part = self.partitions.get(pid)
        if part is not None and not part.restarting and not part.stopping:
            part.restarting = True
            self.send_after(part.backoff.next(), ("restart", pid))

    def _restart(self, pid: str) -> None:
        part = self.partitions.get(pid)
        if part is None or part.stopping:
            return
        part.restarting = False
        self._start_tree(pid)

    def _poll_drain(self, pid: str) -> None:
        part = self.partitions.get(pid)
        if part is None or not part.draining:
            return
        if part.consumer is None:
            self.send_after(0.2, ("drain", pid))
            return
        ref = self.call_async(part.consumer, Status())
        self.pending[ref] = ("status", pid, None)


__all__ = ["Call", "Registry"]
