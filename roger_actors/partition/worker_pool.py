"""A Consumer's worker processes: started, handed batches, stopped, killed,
and read after they die.

:class:`WorkerPool` keeps, for each queue type (its
:class:`~roger_actors.partition.consumer_core.QueueState`), the workers the
partition's WorkerSupervisor started for it: at most ``max_workers``, each
one job at a time. A worker is started when jobs wait in the queue's
backlog and none is idle, and stopped after it stayed idle a while
(:meth:`~WorkerPool.stop_idle`). Batches are cut by
:meth:`QueueState.take_batch`; a job with a ``max_execution_time`` travels
alone, and its timer (``("timeout", token)`` to the Consumer) starts when
it is handed.

A worker is addressed where it reported itself (:class:`WorkerReady`), not
where the WorkerSupervisor said it started: an address relayed by the
supervisor may not be routable before the worker has been heard from
(messages sent to it were seen to be lost). A worker's *scoreboard*
(:mod:`~roger_actors.partition.control`) says which job of its batch runs
and which ended; the pool reads it to tell the running jobs and, after the
worker died, what became of its batch.

Every worker holds a slot of the node's shared pool
(:mod:`~roger_actors.partition.worker_slots`) from its start to its stop or
end: a worker is started only with a slot, and a queue type over its fair
share of the pool stops an idle worker (or the next one whose batch ends)
instead of handing it more work, so that another partition's waiting jobs
get a worker.

The pool talks through ``port``, the Consumer actor: ``send``,
``call_async`` (replies come back to the Consumer, which hands those of
:meth:`~WorkerPool.starts` to :meth:`~WorkerPool.started`) and
``send_after``. It never blocks and never raises for a worker that is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, Protocol

from roger_actors.clock import now
from roger_actors.config import Config
from roger_actors.job import Job
from supervision import ChildSpec
from supervision.protocol import Call, StartChild, TerminateChild

from . import control
from .consumer_core import Flight, QueueState, WorkerRef
from .messages import RunJobs, WorkerReady
from .worker_slots import SlotClient, WorkerSlots

log = logging.getLogger("roger_actors.consumer")

#: Most early :class:`WorkerReady` reports kept for workers not known yet.
EARLY_READY_KEPT = 64

#: Seconds an idle worker of a queue type with no waiting job must have been
#: idle before it gives its slot up to another queue type, within the
#: quantum (``worker_slots``): a batch's next jobs may be on their way.
UNUSED_SECONDS = 0.05


class Port(Protocol):
    """What the pool needs of its actor."""

    address: Any

    def send(self, target: Any, message: Any) -> None:
        """Send ``message`` to ``target``."""

    def call_async(self, address: Any, request: Any) -> str:
        """Call ``address``; the reply comes back to the actor with this ref."""

    def send_after(self, seconds: float, message: Any) -> Any:
        """Send ``message`` to the actor itself after ``seconds``."""


class WorkerPool:
    """The worker processes of one Consumer; see the module docstring.

    ``inflight`` is the Consumer's map of delivery tokens to flights (the
    pool sets a flight's ``worker``, ``handed_at`` and ``timer`` when it is
    handed); ``worker_class`` the actor class a worker runs (with the
    keyword arguments ``owner``, ``partition_id``, ``queue`` and
    ``config``); ``slots`` the Consumer's client of the node's shared pool
    (default: a pool of its own, as large as ``config.worker_pool_size``);
    ``clock`` monotonic seconds, injectable for tests."""

    def __init__(
        self,
        port: Port,
        partition_id: str,
        config: Config,
        inflight: MutableMapping[int, Flight[Any, WorkerRef]],
        worker_class: type,
        clock: Callable[[], float] = time.monotonic,
        slots: SlotClient | None = None,
    ) -> None:
        self.port = port
        self.slots = slots or WorkerSlots(config.worker_pool_size).client(partition_id, _nothing)
        self.partition_id = partition_id
        self.config = config
        self.inflight = inflight
        self.worker_class = worker_class
        self.clock = clock
        #: The partition's WorkerSupervisor, once found (:meth:`found`).
        self.supervisor: Any = None
        #: Refs of the StartChild calls under way -> the worker being started.
        #: (the queue type's state that asked: a state removed and added back
        #: meanwhile is another object).
        self.starts: dict[str, tuple[WorkerRef, QueueState]] = {}
        #: Ready reports of workers whose start reply has not come yet.
        self._early: list[WorkerReady] = []
        #: Busy workers of queue types removed by a reconfigure: each stops
        #: when its batch ends (:meth:`retired`), or is read when it dies.
        self.retiring: list[WorkerRef] = []

    # ------------------------------------------------------------ the supervisor

    def found(self, children: Iterable[Any]) -> bool:
        """Take the WorkerSupervisor (child id ``"workers"``) from the
        Consumer's parent's children; False when it is not among them."""
        for info in children:
            if info.id == "workers":
                self.supervisor = info.address
        return self.supervisor is not None

    # ------------------------------------------------------------ starting

    def dispatch(self, state: QueueState) -> None:
        """Hand batches of ``state``'s backlog to its idle workers, then start
        the workers the rest needs (within ``max_workers`` and the queue
        type's share of the node's pool). An idle worker of a queue type with
        a surplus of slots is stopped instead. Nothing before the
        WorkerSupervisor is found."""
        if self.supervisor is None:
            return
        self._give_back_surplus(state)
        while state.backlog:
            idle = state.idle_worker()
            if idle is None:
                break
            self._hand(state, idle)
        self._give_back_surplus(state)  # the backlog may be empty now
        wanted = self._tell_demand(state)
        for _ in range(wanted):
            if not self.slots.acquire(state.name):
                break
            self._start(state)
        if (
            self.slots.contended
            and not state.backlog
            and state.idle_worker() is not None
            and self.slots.surplus(state.name, unused=True)
        ):  # look again once it has been idle for UNUSED_SECONDS
            self.port.send_after(UNUSED_SECONDS, "slots")

    def _tell_demand(self, state: QueueState) -> int:
        """Tell the pool how many workers ``state`` could use now (those it
        has, those starting and those to start); returns those to start."""
        wanted = state.workers_to_start()
        demand = len(state.workers) + state.starting + wanted
        self.slots.demand(state.name, demand, state.max_workers)
        return wanted

    def _give_back_surplus(self, state: QueueState) -> None:
        """Stop idle workers of ``state`` while it holds more than its share of
        the pool and another queue type waits (:meth:`SlotClient.surplus`)."""
        while self.slots.contended:
            idle = state.idle_worker()
            if idle is None:
                return
            unused = not state.backlog and self.clock() - idle.idle_since >= UNUSED_SECONDS
            if not self.slots.surplus(state.name, unused):
                return
            state.workers.remove(idle)
            self.stop(idle)

    def _hand(self, state: QueueState, worker: WorkerRef) -> None:
        """Give ``worker`` its share of the backlog (one job if it has a time limit)."""

        def job_of(token: int) -> Job | None:
            flight = self.inflight.get(token)
            return None if flight is None else flight.job

        items, timed = state.take_batch(job_of)
        if timed:  # a timed job travels alone: its timer starts now
            token, job = items[0]
            assert job.max_execution_time is not None
            self.inflight[token].timer = self.port.send_after(
                float(job.max_execution_time), ("timeout", token)
            )
        handed_at = now()
        for token, _ in items:
            self.inflight[token].worker = worker
            self.inflight[token].handed_at = handed_at
        worker.hand([token for token, _ in items])
        if items:
            self.port.send(worker.address, RunJobs(items))

    def _start(self, state: QueueState) -> None:
        spec = ChildSpec(
            f"worker-{state.name}",
            (
                self.worker_class,
                (),
                {
                    "owner": self.port.address,
                    "partition_id": self.partition_id,
                    "queue": state.name,
                    "config": self.config,
                },
            ),
            restart="temporary",
            shutdown=2.0,
            placement="process",
        )
        ref = self.port.call_async(self.supervisor, StartChild(spec))
        self.starts[ref] = (WorkerRef(state.name), state)
        state.starting += 1

    def started(self, ref: str, ok: bool, value: Any, queues: Mapping[str, QueueState]) -> None:
        """The WorkerSupervisor answered the start ``ref`` (one of
        :attr:`starts`): ``ok`` and the worker's ``value`` address, or the
        error. The worker joins its queue type (and is given work), or is
        stopped at once when that queue type is gone meanwhile."""
        worker, asked = self.starts.pop(ref)
        asked.starting -= 1
        owner = queues.get(worker.queue)
        if owner is not asked:  # removed meanwhile (and maybe added back anew)
            owner = None
        if not ok or value is None:
            log.error("%s: cannot start a worker: %s", self.partition_id, value)
            self.slots.release(worker.queue)
            return
        worker.address = value
        worker.idle_since = self.clock()
        for ready in self._early:
            if ready.address == worker.address:
                self._early.remove(ready)
                _mark_ready(worker, ready)
                break
        if owner is None:
            self.stop(worker)
            return
        owner.workers.append(worker)
        self.dispatch(owner)

    def ready(self, ready: WorkerReady, queues: Mapping[str, QueueState]) -> None:
        """A worker reported itself ready: it may take batches. A report that
        overtook its start reply is kept (the last :data:`EARLY_READY_KEPT`)."""
        for state in queues.values():
            for worker in state.workers:
                if not worker.ready and worker.address == ready.address:
                    _mark_ready(worker, ready)
                    self.dispatch(state)
                    return
        self._early.append(ready)
        del self._early[:-EARLY_READY_KEPT]

    # ------------------------------------------------------------ stopping

    def stop(self, worker: WorkerRef) -> None:
        """Ask the WorkerSupervisor to stop ``worker`` (it is taken off its
        queue type by the caller); its scoreboard is let go and its slot of
        the pool given back (the process may take up to its shutdown time to
        end meanwhile)."""
        self.slots.release(worker.queue)
        if worker.board is not None:
            worker.board.close()
            worker.board = None
        if worker.address is not None and self.supervisor is not None:
            self.port.send(self.supervisor, Call("stop-worker", TerminateChild(worker.address)))

    def retire(self, state: QueueState) -> None:
        """Queue type ``state`` was removed: its idle workers stop now, its busy
        ones when their batch ends (:meth:`retired`); it wants no slot more."""
        for worker in state.workers:
            if worker.tokens:
                self.retiring.append(worker)
            else:
                self.stop(worker)
        state.workers = []
        self.slots.demand(state.name, 0, state.max_workers)

    def retired(self, worker: WorkerRef) -> bool:
        """If ``worker`` (whose batch just ended) belongs to a removed queue
        type, stop it and return True; else False."""
        for index, candidate in enumerate(self.retiring):
            if candidate is worker:
                del self.retiring[index]
                self.stop(worker)
                return True
        return False

    def stop_idle(self, queues: Iterable[QueueState], idle_seconds: float) -> None:
        """Stop the workers idle for ``idle_seconds`` or more (none of a queue
        type whose backlog is not empty), and idle workers of a queue type
        whose slots another one waits for."""
        limit = self.clock() - idle_seconds
        for state in queues:
            for worker in state.stop_idle(limit):
                self.stop(worker)
            self._give_back_surplus(state)
            self._tell_demand(state)

    def kill(self, worker: WorkerRef) -> None:
        """End ``worker`` now: SIGKILL (its WorkerSupervisor reports the exit),
        or a stop when its pid is not known yet."""
        if worker.pid is None:
            self.stop(worker)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)

    def return_unstarted(self, state: QueueState) -> None:
        """Ask every worker of ``state`` that holds a batch to report its jobs
        not started yet as ``returned`` instead of running them."""
        for worker in state.workers:
            if len(worker.tokens) > 1 and worker.control:
                control.tell(worker.control, control.RETURN_UNSTARTED)

    def exited(
        self, address: Any, queues: Mapping[str, QueueState]
    ) -> tuple[WorkerRef, control.BatchRecord | None] | None:
        """The worker at ``address`` ended (one of a removed queue type's
        too): it is taken off its queue type, its slot is given back, and
        its scoreboard's last record is read (its file removed). Returns the
        worker and the record (None when it had no scoreboard), or None for a
        worker this pool does not know."""
        for workers in (*(state.workers for state in queues.values()), self.retiring):
            for candidate in workers:
                if candidate.address == address:
                    workers.remove(candidate)
                    self.slots.release(candidate.queue)
                    return candidate, _last_record(candidate)
        return None

    # ------------------------------------------------------------ queries

    def running(self, queues: Iterable[QueueState]) -> list[Flight[Any, WorkerRef]]:
        """The flights whose job's ``perform`` runs now, as the workers'
        scoreboards say (jobs handed in a batch but not started yet are not
        running)."""
        running = []
        for state in queues:
            for worker in state.workers:
                if not worker.tokens:
                    continue
                record = worker.board.read() if worker.board is not None and worker.batch else None
                token = worker.running_token(record)
                if token is None:
                    continue
                flight = self.inflight.get(token)
                if flight is not None:
                    running.append(flight)
        return running


def _nothing() -> None:
    """The wake of a pool's own slots (no other client shares them)."""


def _mark_ready(worker: WorkerRef, ready: WorkerReady) -> None:
    worker.address, worker.pid, worker.ready = ready.address, ready.pid, True
    worker.control = ready.control
    worker.scoreboard = ready.scoreboard
    worker.board = control.Scoreboard.take(ready.scoreboard) if ready.scoreboard else None


def _last_record(worker: WorkerRef) -> control.BatchRecord | None:
    """A dead worker's last scoreboard record; its scoreboard file is removed."""
    if not worker.scoreboard:
        return None
    board = worker.board or control.Scoreboard.attach(worker.scoreboard)
    worker.board = None
    control.Scoreboard.unlink(worker.scoreboard)
    if board is None:
        return None
    try:
        return board.read()
    finally:
        board.close()


__all__ = ["EARLY_READY_KEPT", "UNUSED_SECONDS", "Port", "WorkerPool"]
