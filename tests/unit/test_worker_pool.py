"""Specification: a Consumer's worker processes (``roger_actors.partition.worker_pool``):
started within ``max_workers`` when jobs wait, handed their share of the
backlog, stopped when idle or when their queue type is gone, killed, and
read after they die. With a stand-in for the Consumer actor: no process.

Run with ``scripts/test tests/unit/test_worker_pool.py``.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from roger_actors.config import Config
from roger_actors.job import Job
from roger_actors.partition.consumer_core import Flight, QueueState, WorkerRef
from roger_actors.partition.messages import RunJobs, WorkerReady
from roger_actors.partition.worker import WorkerServer
from roger_actors.partition.worker_pool import UNUSED_SECONDS, WorkerPool
from roger_actors.partition.worker_slots import WorkerSlots
from supervision.protocol import Call, StartChild, TerminateChild
from tests.memory_rig import Clock

PID = "p1"


class Quick(Job):
    def perform(self, args: Any) -> Any:
        return None


class Timed(Job):
    max_execution_time = 7

    def perform(self, args: Any) -> Any:
        return None


@dataclass
class Child:
    id: str
    address: Any


class Port:
    """The Consumer actor, recorded."""

    address = "consumer"

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any]] = []
        self.calls: list[tuple[str, Any, Any]] = []
        self.timers: list[tuple[float, Any]] = []
        self._refs = itertools.count(1)

    def send(self, target: Any, message: Any) -> None:
        self.sent.append((target, message))

    def call_async(self, address: Any, request: Any) -> str:
        ref = f"ref-{next(self._refs)}"
        self.calls.append((ref, address, request))
        return ref

    def send_after(self, seconds: float, message: Any) -> Any:
        self.timers.append((seconds, message))
        return len(self.timers)


class Rig:
    def __init__(self, max_workers: int = 2, slots: WorkerSlots | None = None) -> None:
        self.port = Port()
        self.clock = Clock()
        self.inflight: dict[int, Flight[Any, WorkerRef]] = {}
        self.woken = 0
        client = None if slots is None else slots.client(PID, self._wake)
        self.pool = WorkerPool(
            self.port, PID, Config(), self.inflight, WorkerServer, self.clock, slots=client
        )
        self.state = QueueState("q", max_workers, adaptive=False)
        self.queues = {"q": self.state}
        self._tokens = itertools.count(1)

    def _wake(self) -> None:
        self.woken += 1

    def starts(self) -> list[str]:
        return [ref for ref, _, request in self.port.calls if isinstance(request, StartChild)]

    def backlog(self, jobs: Iterable[Job]) -> list[int]:
        tokens = []
        for job in jobs:
            token = next(self._tokens)
            self.inflight[token] = Flight(f"delivery-{token}", job)
            self.state.backlog.append(token)
            tokens.append(token)
        return tokens

    def start_worker(self, ref: str, address: str, pid: int | None = None) -> WorkerRef:
        self.pool.started(ref, True, address, self.queues)
        self.pool.ready(WorkerReady(pid or 0, address), self.queues)
        [worker] = [w for w in self.state.workers if w.address == address]
        if pid is None:
            worker.pid = None
        return worker

    def run_jobs(self) -> list[tuple[Any, list[str]]]:
        return [
            (t, [job.id for _, job in m.items]) for t, m in self.port.sent if isinstance(m, RunJobs)
        ]


def _sharing_partition(size: int, max_workers: int, jobs: int) -> tuple[WorkerSlots, Rig]:
    """A partition's pool on a node pool of ``size``, ``jobs`` jobs dispatched."""
    slots = WorkerSlots(size)
    rig = Rig(max_workers, slots=slots)
    rig.pool.found([Child("workers", "sup")])
    rig.backlog(_jobs(jobs))
    rig.pool.dispatch(rig.state)
    return slots, rig


def _two_partitions(size: int, max_workers: int) -> tuple[WorkerSlots, Rig, Rig]:
    """Two partitions' pools (one queue each) sharing a node pool of ``size``."""
    slots = WorkerSlots(size)
    a, b = Rig(max_workers, slots=slots), Rig(max_workers, slots=slots)
    for rig in (a, b):
        rig.pool.found([Child("workers", "sup")])
    return slots, a, b


def _jobs(n: int, job_class: type[Job] = Quick) -> list[Job]:
    return [Job.create(job_class, [], id=f"j{i}") for i in range(1, n + 1)]


def test_nothing_starts_before_the_worker_supervisor_is_found() -> None:
    rig = Rig()
    rig.backlog(_jobs(3))
    rig.pool.dispatch(rig.state)
    assert rig.port.calls == []
    assert not rig.pool.found([Child("owner", "o")])
    assert rig.pool.found([Child("owner", "o"), Child("workers", "sup")])


def test_workers_start_for_waiting_jobs_within_max_workers() -> None:
    rig = Rig(max_workers=2)
    rig.pool.found([Child("workers", "sup")])
    rig.backlog(_jobs(5))
    rig.pool.dispatch(rig.state)
    rig.pool.dispatch(rig.state)  # starting ones count: no more
    assert [(address, type(request)) for _, address, request in rig.port.calls] == [
        ("sup", StartChild),
        ("sup", StartChild),
    ]
    spec = rig.port.calls[0][2].spec
    assert spec.restart == "temporary" and spec.start.kwargs["owner"] == "consumer"
    assert rig.state.starting == 2 and set(rig.pool.starts) == {"ref-1", "ref-2"}


def test_a_ready_worker_gets_its_share_of_the_backlog_at_the_address_it_reported() -> None:
    rig = Rig(max_workers=2)
    rig.pool.found([Child("workers", "sup")])
    tokens = rig.backlog(_jobs(4))
    rig.state.avg_seconds = 0.001  # short jobs: batches of up to the fair share
    rig.pool.dispatch(rig.state)
    rig.pool.started("ref-1", True, "relayed-address", rig.queues)
    assert rig.run_jobs() == []  # not ready yet: not heard from
    rig.pool.ready(WorkerReady(41, "relayed-address"), rig.queues)
    assert rig.run_jobs() == [("relayed-address", ["j1", "j2"])]  # half: two workers share
    assert all(rig.inflight[t].worker is rig.state.workers[0] for t in tokens[:2])
    assert rig.inflight[tokens[0]].handed_at > 0 and rig.inflight[tokens[2]].worker is None


def test_a_ready_report_that_overtook_the_start_reply_is_not_lost() -> None:
    rig = Rig(max_workers=1)
    rig.pool.found([Child("workers", "sup")])
    rig.backlog(_jobs(1))
    rig.pool.dispatch(rig.state)
    rig.pool.ready(WorkerReady(41, "w1"), rig.queues)  # before the supervisor's reply
    rig.pool.started("ref-1", True, "w1", rig.queues)
    assert rig.run_jobs() == [("w1", ["j1"])]
    assert rig.state.workers[0].pid == 41


def test_a_timed_job_travels_alone_and_its_timer_starts_when_it_is_handed() -> None:
    rig = Rig(max_workers=1)
    rig.pool.found([Child("workers", "sup")])
    rig.state.avg_seconds = 0.001
    quick, timed = _jobs(1), [Job.create(Timed, [], id="t1")]
    tokens = rig.backlog(quick + timed + _jobs(1))
    rig.pool.dispatch(rig.state)
    worker = rig.start_worker("ref-1", "w1", pid=41)
    assert rig.run_jobs() == [("w1", ["j1"])]  # the timed job ends the batch before it
    assert rig.port.timers == []
    worker.finished(tokens[0], rig.clock())
    rig.pool.dispatch(rig.state)
    assert rig.run_jobs()[-1] == ("w1", ["t1"])
    assert rig.port.timers == [(7.0, ("timeout", tokens[1]))]
    assert rig.inflight[tokens[1]].timer == 1


def test_a_worker_whose_queue_type_went_away_while_it_started_is_stopped() -> None:
    rig = Rig()
    rig.pool.found([Child("workers", "sup")])
    rig.backlog(_jobs(1))
    rig.pool.dispatch(rig.state)
    rig.pool.started("ref-1", True, "w1", {})
    assert rig.port.sent == [("sup", Call("stop-worker", TerminateChild("w1")))]


def test_a_start_reply_for_a_queue_type_removed_and_added_back_stops_the_worker() -> None:
    rig = Rig(max_workers=1)
    rig.pool.found([Child("workers", "sup")])
    rig.backlog(_jobs(1))
    rig.pool.dispatch(rig.state)
    rig.state = QueueState("q", 1, adaptive=False)  # a reconfigure removed it, then added it
    rig.queues["q"] = rig.state
    rig.pool.started("ref-1", True, "w1", rig.queues)
    assert rig.state.starting == 0 and rig.state.workers == []  # the new one's count untouched
    assert rig.port.sent == [("sup", Call("stop-worker", TerminateChild("w1")))]


def test_a_failed_start_leaves_room_for_another(caplog: Any) -> None:
    rig = Rig(max_workers=1)
    rig.pool.found([Child("workers", "sup")])
    rig.backlog(_jobs(1))
    rig.pool.dispatch(rig.state)
    rig.pool.started("ref-1", False, RuntimeError("no room"), rig.queues)
    assert rig.state.starting == 0 and rig.state.workers == []
    assert "cannot start a worker" in caplog.text
    rig.pool.dispatch(rig.state)
    assert len(rig.port.calls) == 2


def test_partitions_sharing_the_node_pool_start_workers_within_its_size_and_their_shares() -> None:
    slots, a, b = _two_partitions(size=3, max_workers=3)
    a.backlog(_jobs(10))
    a.pool.dispatch(a.state)
    assert len(a.starts()) == 3  # alone: the whole pool
    b.backlog(_jobs(10))
    b.pool.dispatch(b.state)
    assert b.starts() == [] and slots.held == 3  # no slot free
    assert a.woken == 1  # a holds more than its share (1.5): told to look again


def test_a_worker_over_its_queues_share_is_stopped_at_its_batch_end_for_another_partition() -> (
    None
):
    slots, a, b = _two_partitions(size=2, max_workers=2)
    a.backlog(_jobs(10))
    a.pool.dispatch(a.state)
    first = a.start_worker("ref-1", "w1", pid=41)
    a.start_worker("ref-2", "w2", pid=42)
    b.backlog(_jobs(1))
    b.pool.dispatch(b.state)
    assert b.starts() == []
    first.finished(first.tokens[0], a.clock())  # its batch ends
    a.pool.dispatch(a.state)
    assert a.port.sent[-1] == ("sup", Call("stop-worker", TerminateChild("w1")))
    assert [w.address for w in a.state.workers] == ["w2"]
    assert b.woken == 1
    b.pool.dispatch(b.state)  # b's turn: its worker starts
    assert len(b.starts()) == 1 and slots.held == 2
    a.pool.dispatch(a.state)
    assert len(a.starts()) == 2  # no new worker for a: its share is 1 now


def test_an_idle_worker_with_no_job_left_gives_its_slot_up_after_the_unused_time() -> None:
    slots, a, b = _two_partitions(size=1, max_workers=1)
    a.backlog(_jobs(1))
    a.pool.dispatch(a.state)
    worker = a.start_worker("ref-1", "w1", pid=41)
    b.backlog(_jobs(1))
    b.pool.dispatch(b.state)
    worker.finished(worker.tokens[0], a.clock())  # a's last job is done
    a.pool.dispatch(a.state)
    assert a.state.workers == [worker]  # idle for 0 s: kept
    assert a.port.timers == [(UNUSED_SECONDS, "slots")]  # and a look again armed
    a.clock.now += 2 * UNUSED_SECONDS
    woken = b.woken
    a.pool.dispatch(a.state)
    assert a.state.workers == [] and slots.free == 1
    assert b.woken > woken  # b is told the slot is free


def test_a_stopped_exited_or_failed_worker_gives_its_slot_back() -> None:
    slots, rig = _sharing_partition(size=2, max_workers=2, jobs=2)
    assert slots.held == 2
    rig.pool.started("ref-1", False, RuntimeError("no room"), rig.queues)
    assert slots.held == 1
    worker = rig.start_worker("ref-2", "w2", pid=42)  # and a worker for the other job
    assert slots.held == 2 and rig.state.starting == 1
    rig.pool.exited("w2", rig.queues)
    assert slots.held == 1 and worker not in rig.state.workers
    rig.state.backlog.clear()  # nothing more to start a worker for
    rig.pool.started("ref-3", True, "w3", rig.queues)
    [w3] = rig.state.workers
    rig.state.workers.remove(w3)
    rig.pool.stop(w3)
    assert slots.held == 0


def test_a_busy_worker_of_a_removed_queue_type_stops_at_its_batch_end_even_if_it_came_back() -> (
    None
):
    slots, rig = _sharing_partition(size=4, max_workers=2, jobs=2)
    busy = rig.start_worker("ref-1", "w1", pid=41)
    idle = rig.start_worker("ref-2", "w2", pid=42)
    idle.finished(idle.tokens[0], rig.clock())
    rig.pool.retire(rig.state)  # a reconfigure removed the queue type
    assert rig.port.sent[-1] == ("sup", Call("stop-worker", TerminateChild("w2")))
    assert slots.held == 1 and rig.pool.retiring == [busy]
    rig.state = QueueState("q", 2, adaptive=False)  # and added it back
    rig.queues["q"] = rig.state
    busy.finished(busy.tokens[0], rig.clock())
    assert rig.pool.retired(busy)
    assert rig.port.sent[-1] == ("sup", Call("stop-worker", TerminateChild("w1")))
    assert slots.held == 0 and rig.state.workers == []


def test_a_worker_of_a_removed_queue_type_that_dies_is_read_and_gives_its_slot_back() -> None:
    slots, rig = _sharing_partition(size=4, max_workers=1, jobs=1)
    worker = rig.start_worker("ref-1", "w1", pid=41)
    rig.pool.retire(rig.state)
    del rig.queues["q"]
    assert rig.pool.exited("w1", rig.queues) == (worker, None)  # its jobs get settled
    assert slots.held == 0 and rig.pool.retiring == []


def test_idle_workers_are_stopped_after_the_idle_time_and_never_while_jobs_wait() -> None:
    rig = Rig(max_workers=1)
    rig.pool.found([Child("workers", "sup")])
    rig.backlog(_jobs(1))
    rig.pool.dispatch(rig.state)
    worker = rig.start_worker("ref-1", "w1", pid=41)
    worker.finished(worker.tokens[0], rig.clock())
    rig.pool.stop_idle(rig.queues.values(), idle_seconds=5.0)
    assert rig.state.workers == [worker]  # idle for 0 s
    rig.clock.now += 6.0
    rig.state.backlog.append(999)  # a job waits: the worker stays
    rig.pool.stop_idle(rig.queues.values(), idle_seconds=5.0)
    assert rig.state.workers == [worker]
    rig.state.backlog.clear()
    rig.pool.stop_idle(rig.queues.values(), idle_seconds=5.0)
    assert rig.state.workers == []
    assert rig.port.sent[-1] == ("sup", Call("stop-worker", TerminateChild("w1")))


def test_an_exited_worker_leaves_its_queue_type_and_an_unknown_one_is_ignored() -> None:
    rig = Rig(max_workers=1)
    rig.pool.found([Child("workers", "sup")])
    rig.backlog(_jobs(2))
    rig.pool.dispatch(rig.state)
    worker = rig.start_worker("ref-1", "w1", pid=41)
    assert rig.pool.exited("nobody", rig.queues) is None
    assert rig.pool.exited("w1", rig.queues) == (worker, None)  # no scoreboard
    assert rig.state.workers == [] and worker.tokens


def test_kill_sigkills_the_worker_or_stops_one_whose_pid_is_not_known() -> None:
    rig = Rig(max_workers=1)
    rig.pool.found([Child("workers", "sup")])
    process = subprocess.Popen(["sleep", "30"])
    try:
        rig.pool.kill(WorkerRef("q", address="w1", pid=process.pid))
        assert process.wait(timeout=5) == -9
    finally:
        process.kill()
    rig.pool.kill(WorkerRef("q", address="w2"))
    assert rig.port.sent == [("sup", Call("stop-worker", TerminateChild("w2")))]
    rig.pool.kill(WorkerRef("q", address="w3", pid=process.pid))  # gone: no error
