"""Roger's Partition registry: which partitions run on this node.

The registry is the node's single entry point for partition management. It
starts a partition as a child (id = partition id) of the PartitionSupervisor
and keeps, for each, its queues, its Consumer's address and whether that
Consumer is connected to the broker. A partition whose Consumer is not
connected is *waiting*: its Consumer retries the connection with back-off
until it starts. Predefined partitions from the configuration are started
when the registry starts. Partition commands the System receives from the
cluster (cancel, queue_pause, queue_resume) are forwarded to the partition's
Consumer; for a partition not running here they are dropped. A
:class:`~roger_actors.system_protocol.Resync` from the System (its
subscription came back, casts may have been missed) goes to every running
Consumer, which fetches its Global's snapshot again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from supervision import NOREPLY, ChildSpec, From, Server
from supervision.protocol import (
    Call,
    CallReply,
    DeleteChild,
    StartChild,
    TerminateChild,
    WhichChildren,
)

from .config import Config
from .errors import NotRunningError, RogerError
from .partition.consumer import Reconfigure, Status, StopConsuming
from .partition.containing_supervisor import ContainingSupervisor
from .partition.messages import QueuesOf
from .queue import normalise_queue_defs, validate_partition_id
from .system_protocol import PartitionCommand, Resync

log = logging.getLogger("roger_actors.registry")


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
class SafeStopPartition:
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
    connected: bool = False
    safe_stopping: bool = False
    waiting_calls: list[From] = field(default_factory=list)


class Registry(Server):
    """The node's partition registry; see the module docstring."""

    reply_errors = (RogerError, ValueError, TypeError)

    def init(self, config: Config) -> None:
        """Find the PartitionSupervisor (a sibling), then start predefined partitions."""
        self.config = config
        self.partitions: dict[str, _Partition] = {}
        self.partition_sup: Any = None
        self.pending: dict[str, tuple[str, str, From | None]] = {}
        self.sibling_ref = self.call_async(self.parent, WhichChildren())
        self.ready_waiters: list[From] = []

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
            ref = self.call_async(self.partition_sup, TerminateChild(pid))
            self.pending[ref] = ("stop", pid, from_)
            return NOREPLY
        if isinstance(request, SafeStopPartition):
            pid = self._require_running(request.partition_id)
            part = self.partitions[pid]
            part.safe_stopping = True
            if part.consumer is not None:
                ref = self.call_async(part.consumer, StopConsuming())
                self.pending[ref] = ("ignore", pid, None)
            self.send_after(0.2, ("safe-stop", pid))
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
            running = {p: dict(v.queues) for p, v in self.partitions.items() if v.connected}
            waiting = {p: dict(v.queues) for p, v in self.partitions.items() if not v.connected}
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
            if part.consumer is None:
                return None
            ref = self.call_async(part.consumer, Reconfigure(dict(queues)))
            self.pending[ref] = ("reconfigure", pid, from_)
            return NOREPLY
        if self.partition_sup is None:
            raise NotRunningError("the node is still starting")
        self.partitions[pid] = _Partition(dict(queues))
        spec = ChildSpec(
            pid,
            (ContainingSupervisor, (pid, dict(queues), self.config, self.address)),
        )
        ref = self.call_async(self.partition_sup, StartChild(spec))
        self.pending[ref] = ("start", pid, from_)
        return NOREPLY

    # ------------------------------------------------------------ infos

    def handle_info(self, message: Any) -> None:
        """Replies from the supervisors and consumers, consumer status, partition
        commands and Resync from the System, safe-stop polls."""
        if isinstance(message, CallReply):
            self._on_reply(message)
        elif isinstance(message, tuple) and message and message[0] == "consumer":
            _, pid, address, connected = message
            part = self.partitions.get(pid)
            if part is not None:
                part.consumer, part.connected = address, connected
        elif isinstance(message, PartitionCommand):
            part = self.partitions.get(message.partition_id)
            if part is not None and part.consumer is not None:
                self.send(part.consumer, message)
        elif isinstance(message, Resync):
            for part in self.partitions.values():
                if part.consumer is not None:
                    self.send(part.consumer, message)
        elif isinstance(message, tuple) and message and message[0] == "safe-stop":
            self._poll_safe_stop(message[1])
        else:
            super().handle_info(message)

    def _on_reply(self, reply: CallReply) -> None:
        if reply.ref == self.sibling_ref:
            for info in reply.value if reply.ok else []:
                if info.id == "partitions":
                    self.partition_sup = info.address
            if self.partition_sup is None:
                raise RuntimeError("registry cannot find the PartitionSupervisor")
            for pid, queues in self.config.partitions.items():
                self._start_partition(pid, dict(queues), None)
            for waiter in self.ready_waiters:
                self.reply(waiter, True)
            self.ready_waiters.clear()
            return
        kind, pid, from_ = self.pending.pop(reply.ref, ("", "", None))
        if kind == "start" and not reply.ok:
            self.partitions.pop(pid, None)
            log.error("partition %s failed to start: %s", pid, reply.value)
        elif kind == "stop":
            self.partitions.pop(pid, None)
            if reply.ok:
                ref = self.call_async(self.partition_sup, DeleteChild(pid))
                self.pending[ref] = ("delete", pid, from_)
                return
        elif kind == "status" and reply.ok:
            if not reply.value["busy"]:
                ref = self.call_async(self.partition_sup, TerminateChild(pid))
                self.pending[ref] = ("stop", pid, None)
            else:
                self.send_after(0.2, ("safe-stop", pid))
            return
        if from_ is not None:
            if reply.ok:
                self.reply(from_, None)
            else:
                self.reply_error(from_, reply.value)

    def _poll_safe_stop(self, pid: str) -> None:
        part = self.partitions.get(pid)
        if part is None or not part.safe_stopping:
            return
        if part.consumer is None:
            self.send_after(0.2, ("safe-stop", pid))
            return
        ref = self.call_async(part.consumer, Status())
        self.pending[ref] = ("status", pid, None)


__all__ = ["Call", "Registry"]
