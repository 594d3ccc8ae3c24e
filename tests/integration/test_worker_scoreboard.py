"""Specification of the worker's scoreboard and control thread.

Unit tests of :class:`roger_actors.partition.control.Scoreboard` and the
control datagrams, then workers on a real ``multiprocTCPBase`` actor system
(each test on its own admin port, 23000-23499): a root supervisor with an
:class:`~tests.roger_test_jobs_worker.Owner` (standing in for the Consumer)
and a :class:`~roger_actors.partition.worker_supervisor.WorkerSupervisor`;
the test starts a Worker, hands it batches through the Owner, and signals
it through its control socket. Jobs report through marker files; every wait
is a bounded poll.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from roger_actors import Job
from roger_actors.config import load_config
from roger_actors.partition import control
from roger_actors.partition.control import (
    MAX_ITEMS,
    OUTCOME_CODES,
    RETURN_UNSTARTED,
    BatchRecord,
    Scoreboard,
    cancel_datagram,
    parse_cancel,
)
from roger_actors.partition.messages import JobFinished, WorkerReady
from roger_actors.partition.worker import EARLY_CANCELS, WorkerServer, _BatchControl
from roger_actors.partition.worker_supervisor import WorkerSupervisor
from supervision import Application, ChildSpec, SupervisorSpec, start_child, terminate_child
from supervision import call as sv_call
from supervision import which_children as sv_which_children
from tests.actors import Sup
from tests.partition_harness import holds_for, wait_for
from tests.procs import free_port, is_alive, sigkill
from tests.roger_test_jobs_worker import GateJob, Owner, QuickJob, SignalledJob, SleepJob

pytestmark = pytest.mark.timeout(90)

# ---------------------------------------------------------------- scoreboard units


@pytest.fixture
def board() -> Iterator[Scoreboard]:
    created = Scoreboard.create()
    try:
        yield created
    finally:
        created.close()


def test_a_new_scoreboard_has_no_batch_and_lives_under_dev_shm(board: Scoreboard) -> None:
    name = os.path.basename(board.path)
    assert name.startswith(f"roger-sb-{os.getpid()}-")
    if os.path.isdir("/dev/shm"):
        assert os.path.dirname(board.path) == "/dev/shm"
    assert os.path.getsize(board.path) == 12 + MAX_ITEMS
    assert board.read() == BatchRecord(0, -1, (None,) * MAX_ITEMS)


def test_writer_and_reader_see_the_same_record(board: Scoreboard) -> None:
    reader = Scoreboard.attach(board.path)
    assert reader is not None
    try:
        board.begin_batch(41)
        assert reader.read() == BatchRecord(41, -1, (None,) * MAX_ITEMS)
        board.start(0)
        assert reader.read().current == 0
        board.finish(0, "done")
        board.start(1)
        record = reader.read()
        assert (record.batch_id, record.current) == (41, 1)
        assert record.outcomes[:3] == ("done", None, None)
        board.finish(1, "retry")
        for index, outcome in enumerate(("error", "buried", "cancelled", "returned"), start=2):
            board.finish(index, outcome)
        board.start(MAX_ITEMS - 1)
        board.finish(MAX_ITEMS - 1, "done")
        record = reader.read()
        assert record.current == -1
        assert record.outcomes[:6] == ("done", "retry", "error", "buried", "cancelled", "returned")
        assert record.outcomes[6:-1] == (None,) * (MAX_ITEMS - 7)
        assert record.outcomes[-1] == "done"
        assert reader.read() == board.read()
    finally:
        reader.close()
    assert os.path.exists(board.path), "closing a reader leaves the file"


def test_a_new_batch_clears_the_previous_one(board: Scoreboard) -> None:
    board.begin_batch(1)
    board.start(0)
    board.finish(0, "done")
    board.start(1)
    board.begin_batch(7)
    assert board.read() == BatchRecord(7, -1, (None,) * MAX_ITEMS)


def test_the_file_layout_is_little_endian_int64_int32_then_outcome_bytes(
    board: Scoreboard,
) -> None:
    board.begin_batch(0x0102030405)
    board.start(3)
    board.finish(2, "cancelled")
    board.start(3)
    raw = Path(board.path).read_bytes()
    assert raw[:8] == (0x0102030405).to_bytes(8, "little", signed=True)
    assert raw[8:12] == (3).to_bytes(4, "little", signed=True)
    assert raw[12 + 2] == OUTCOME_CODES["cancelled"]
    assert set(OUTCOME_CODES) == {"done", "error", "retry", "buried", "cancelled", "returned"}
    assert 0 not in OUTCOME_CODES.values()
    assert len(set(OUTCOME_CODES.values())) == len(OUTCOME_CODES)


def test_bad_writes_are_refused(board: Scoreboard) -> None:
    with pytest.raises(ValueError):
        board.begin_batch(0)
    with pytest.raises(IndexError):
        board.start(MAX_ITEMS)
    with pytest.raises(IndexError):
        board.finish(-1, "done")
    with pytest.raises(ValueError):
        board.finish(0, "finished")
    reader = Scoreboard.attach(board.path)
    assert reader is not None
    with pytest.raises(TypeError):  # a reader's mapping is read-only
        reader.start(0)
    reader.close()


def test_attach_to_a_missing_or_short_file_gives_none(tmp_path: Path) -> None:
    assert Scoreboard.attach(str(tmp_path / "nothing")) is None
    assert Scoreboard.attach("") is None
    short = tmp_path / "short"
    short.write_bytes(b"\0" * 5)
    assert Scoreboard.attach(str(short)) is None


def test_the_record_survives_its_writer_until_unlinked() -> None:
    writer = Scoreboard.create()
    path = writer.path
    writer.begin_batch(5)
    writer.start(0)
    writer.finish(0, "done")
    writer.start(1)
    # The writer goes away without close(), as a killed worker does.
    del writer
    reader = Scoreboard.attach(path)
    assert reader is not None
    try:
        expected = BatchRecord(5, 1, ("done",) + (None,) * (MAX_ITEMS - 1))
        assert reader.read() == expected
        Scoreboard.unlink(path)
        assert not os.path.exists(path)
        assert reader.read() == expected, "an attached reader still reads an unlinked file"
        assert Scoreboard.attach(path) is None
        Scoreboard.unlink(path)  # gone already: no error
    finally:
        reader.close()


def test_close_of_the_owner_removes_the_file() -> None:
    writer = Scoreboard.create()
    assert os.path.exists(writer.path)
    writer.close()
    assert not os.path.exists(writer.path)
    assert Scoreboard.attach(writer.path) is None


def test_cancel_datagrams_round_trip() -> None:
    assert cancel_datagram(12) == b"cancel:12"
    assert parse_cancel(cancel_datagram(12)) == 12
    assert parse_cancel(cancel_datagram(2**62)) == 2**62
    for other in (RETURN_UNSTARTED, b"cancel:", b"cancel:-1", b"cancel:1x", b"cancel 1", b""):
        assert parse_cancel(other) is None
    with pytest.raises(TypeError):
        cancel_datagram("12")  # type: ignore[arg-type]


# ---------------------------------------------------------------- control state (in process)


def _items(*tokens: int) -> list[tuple[int, Job]]:
    return [(t, Job.create(QuickJob, ["/nonexistent", str(t)])) for t in tokens]


def test_a_return_signal_between_batches_is_dropped_but_an_early_cancel_applies(
    board: Scoreboard,
) -> None:
    shared = _BatchControl(board)
    shared.on_datagram(RETURN_UNSTARTED)
    shared.on_datagram(cancel_datagram(2))  # overtook the RunJobs holding token 2
    shared.begin(_items(1, 2, 3))
    assert shared.claim(0, 1) is None
    shared.record(0, "done")
    assert shared.claim(1, 2) == "cancelled"
    assert shared.claim(2, 3) is None
    shared.record(2, "error")
    shared.end()
    assert board.read().outcomes[:4] == ("done", "cancelled", "error", None)


def test_early_cancels_are_bounded(board: Scoreboard) -> None:
    shared = _BatchControl(board)
    for token in range(1, EARLY_CANCELS + 10):
        shared.on_datagram(cancel_datagram(token))
    assert len(shared.early) == EARLY_CANCELS
    assert 1 not in shared.early and EARLY_CANCELS + 9 in shared.early


def test_control_state_cancels_and_returns_jobs_not_started(board: Scoreboard) -> None:
    shared = _BatchControl(board)
    shared.begin(_items(5, 6, 7, 8))
    assert board.read().batch_id == 5
    assert shared.claim(0, 5) is None
    assert board.read().current == 0
    shared.on_datagram(cancel_datagram(7))
    shared.on_datagram(cancel_datagram(99))  # not in the batch: ignored
    shared.on_datagram(b"nonsense")  # logged, ignored
    shared.record(0, "done")
    assert shared.claim(1, 6) is None
    shared.on_datagram(cancel_datagram(5))  # finished already: no effect
    shared.record(1, "done")
    assert shared.claim(2, 7) == "cancelled"
    shared.on_datagram(RETURN_UNSTARTED)
    assert shared.claim(3, 8) == "returned"
    shared.end()
    assert board.read() == BatchRecord(
        5, -1, ("done", "done", "cancelled", "returned") + (None,) * (MAX_ITEMS - 4)
    )
    assert 99 not in shared.cancelled


def test_cancelling_the_running_job_records_it_then_kills_the_process(
    board: Scoreboard,
) -> None:
    child = os.fork()
    if child == 0:  # pragma: no cover - the child is killed
        try:
            shared = _BatchControl(board)
            shared.begin(_items(3, 4))
            shared.claim(0, 3)
            shared.on_datagram(cancel_datagram(3))
        finally:
            os._exit(1)  # only reached when the cancel did not kill
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert board.read() == BatchRecord(3, -1, ("cancelled",) + (None,) * (MAX_ITEMS - 1))


# ---------------------------------------------------------------- workers

def free_admin_port() -> int:
    """A free TCP port in 23000-23499 not used before in this test session."""
    return free_port(23000, 23499)


@dataclass
class Started:
    """A running worker: its WorkerReady and an attached scoreboard."""

    ready: WorkerReady
    address: Any
    board: Scoreboard

    @property
    def pid(self) -> int:
        return self.ready.pid


class Rig:
    """An actor system with an Owner and a WorkerSupervisor; starts workers."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = str(tmp_path)
        root = ChildSpec(
            "root",
            (
                Sup,
                (
                    SupervisorSpec(
                        [ChildSpec("owner", Owner), ChildSpec("workers", WorkerSupervisor)]
                    ),
                ),
            ),
        )
        self.app = Application(root, base="multiprocTCPBase", admin_port=free_admin_port())
        self.config = load_config({}, env={})
        self.workers: list[Started] = []
        self.app.start()
        children = {info.id: info.address for info in sv_which_children(self.app.root)}
        self.owner, self.worker_sup = children["owner"], children["workers"]

    def call(self, request: Any) -> Any:
        return sv_call(self.owner, request, 10)

    def start_worker(self) -> Started:
        spec = ChildSpec(
            "worker",
            (
                WorkerServer,
                (),
                {
                    "owner": self.owner,
                    "partition_id": "p",
                    "queue": "default",
                    "config": self.config,
                },
            ),
            restart="temporary",
            shutdown=2.0,
        )
        known = {r.pid for r in self.call("ready")}
        address = start_child(self.worker_sup, spec)
        [ready] = wait_for(
            lambda: [r for r in self.call("ready") if r.pid not in known], what="WorkerReady"
        )
        assert ready.control and ready.scoreboard
        board = Scoreboard.attach(ready.scoreboard)
        assert board is not None
        started = Started(ready, address, board)
        self.workers.append(started)
        return started

    def run(self, worker: Started, items: list[tuple[int, Job]]) -> None:
        assert self.call(("run", worker.pid, items))

    def results(self, tokens: list[int]) -> list[JobFinished]:
        """The results reported for ``tokens`` so far, in the order reported."""
        return [r for r in self.call("finished") if r.token in tokens]

    def wait_results(self, tokens: list[int]) -> list[JobFinished]:
        """Wait until every token has a result; return them in the order reported."""
        return wait_for(
            lambda: (found := self.results(tokens)) and len(found) == len(tokens) and found,
            what=f"results of {tokens}",
        )

    def marker(self, tag: str, what: str) -> bool:
        return os.path.exists(os.path.join(self.dir, f"{tag}.{what}"))

    def open_gate(self, tag: str) -> None:
        Path(self.dir, f"{tag}.gate").touch()

    def quick(self, tag: str) -> Job:
        return Job.create(QuickJob, [self.dir, tag])

    def sleep(self, tag: str, seconds: float) -> Job:
        return Job.create(SleepJob, [self.dir, tag, seconds])

    def signalled(self, tag: str, what: int | str) -> Job:
        return Job.create(SignalledJob, [self.dir, tag, what])

    def gate(self, tag: str) -> Job:
        return Job.create(GateJob, [self.dir, tag])

    def close(self) -> None:
        for name in os.listdir(self.dir):  # let no GateJob wait for its full bound
            if name.endswith(".started"):
                Path(self.dir, name[: -len(".started")] + ".gate").touch()
        try:
            self.app.stop(timeout=30)
        finally:
            for worker in self.workers:
                worker.board.close()
            try:
                wait_for(
                    lambda: not [w for w in self.workers if is_alive(w.pid)],
                    what="every worker process has exited",
                    timeout=10,
                )
            finally:
                for worker in self.workers:
                    if is_alive(worker.pid):
                        sigkill(worker.pid)
                    Scoreboard.unlink(worker.ready.scoreboard)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    try:
        yield made
    finally:
        made.close()


def outcomes(results: list[JobFinished]) -> list[tuple[int, str]]:
    return [(r.token, r.outcome) for r in results]


def test_a_worker_reports_its_scoreboard_and_records_every_outcome(rig: Rig) -> None:
    worker = rig.start_worker()
    assert worker.board.read() == BatchRecord(0, -1, (None,) * MAX_ITEMS)
    rig.run(worker, [(11, rig.quick("a")), (12, rig.quick("b"))])
    assert outcomes(rig.wait_results([11, 12])) == [(11, "done"), (12, "done")]
    record = worker.board.read()
    assert (record.batch_id, record.current) == (11, -1)
    assert record.outcomes[:3] == ("done", "done", None)


def test_a_job_cancelled_before_it_starts_is_reported_cancelled_and_not_run(rig: Rig) -> None:
    worker = rig.start_worker()
    first = rig.signalled("first", 22)  # ends once the worker took the cancel in
    rig.run(worker, [(21, first), (22, rig.quick("second")), (23, rig.quick("third"))])
    wait_for(lambda: rig.marker("first", "started"), what="the first job to start")
    assert worker.board.read().current == 0
    assert control.tell(worker.ready.control, cancel_datagram(22))

    assert outcomes(rig.wait_results([21, 22, 23])) == [
        (21, "done"),
        (22, "cancelled"),
        (23, "done"),
    ]
    assert not rig.marker("second", "started"), "a cancelled job does not run"
    assert rig.marker("third", "done")
    record = worker.board.read()
    assert (record.batch_id, record.current) == (21, -1)
    assert record.outcomes[:4] == ("done", "cancelled", "done", None)
    assert is_alive(worker.pid)


def test_cancelling_the_running_job_kills_the_worker_and_the_scoreboard_tells(
    rig: Rig,
) -> None:
    worker = rig.start_worker()
    rig.run(worker, [(31, rig.quick("before")), (32, rig.gate("long")), (33, rig.quick("after"))])
    wait_for(lambda: rig.marker("long", "started"), what="the long job to start")
    wait_for(lambda: worker.board.read().current == 1, what="the scoreboard to show job 1 running")

    assert control.tell(worker.ready.control, cancel_datagram(32))
    wait_for(lambda: not is_alive(worker.pid), what="the worker process to die")

    record = worker.board.read()
    assert (record.batch_id, record.current) == (31, -1)
    assert record.outcomes[:4] == ("done", "cancelled", None, None)
    assert not rig.marker("long", "done")
    assert not rig.marker("after", "started"), "no job runs after the cancelled one"
    [exited] = wait_for(lambda: rig.call("exited"), what="WorkerExited")
    assert exited.address == worker.address or exited.address == worker.ready.address
    # The killed worker reported nothing about the cancelled or later jobs.
    assert [r for r in rig.call("finished") if r.token in (32, 33)] == []
    # Its scoreboard file outlives it until the reader removes it.
    assert os.path.exists(worker.ready.scoreboard)
    Scoreboard.unlink(worker.ready.scoreboard)
    assert Scoreboard.attach(worker.ready.scoreboard) is None


def test_a_job_that_already_finished_is_never_cancelled(rig: Rig) -> None:
    worker = rig.start_worker()
    # Finished in the current batch: the cancel is ignored.
    rig.run(worker, [(41, rig.quick("one")), (42, rig.signalled("two", 41))])
    wait_for(lambda: rig.marker("two", "started"), what="the second job to start")
    assert worker.board.read().outcomes[0] == "done"
    assert control.tell(worker.ready.control, cancel_datagram(41))
    assert outcomes(rig.wait_results([41, 42])) == [(41, "done"), (42, "done")]

    # Finished and reported: a late cancel is ignored too.
    rig.run(worker, [(43, rig.quick("three"))])
    assert outcomes(rig.wait_results([43])) == [(43, "done")]
    assert control.tell(worker.ready.control, cancel_datagram(43))
    assert control.tell(worker.ready.control, b"no such datagram")
    holds_for(lambda: is_alive(worker.pid), 0.5, "the worker is alive")

    # The worker still works, and every outcome was recorded as done.
    rig.run(worker, [(44, rig.quick("four"))])
    assert outcomes(rig.wait_results([44])) == [(44, "done")]
    assert is_alive(worker.pid)
    reported = rig.call("finished")
    assert all(r.outcome == "done" for r in reported), reported


def _race_once(rig: Rig, first: int, victim_index: int, seconds: float) -> bool:
    """One batch of 12 short jobs; cancel the job at ``victim_index`` once it
    started. Checks the outcomes agree; True when the worker was killed."""
    worker = rig.start_worker()
    tokens = list(range(first, first + 12))
    rig.run(worker, [(t, rig.sleep(f"r{t}", seconds)) for t in tokens])
    victim = tokens[victim_index]
    wait_for(lambda: rig.marker(f"r{victim}", "started"), what="the victim to start")
    assert control.tell(worker.ready.control, cancel_datagram(victim))
    wait_for(
        lambda: not is_alive(worker.pid) or len(rig.results(tokens)) == len(tokens),
        what="the batch to end or the worker to die",
    )
    if is_alive(worker.pid):
        assert dict(outcomes(rig.results(tokens))) == {t: "done" for t in tokens}
        record = worker.board.read()
        assert record.outcomes[: len(tokens)] == ("done",) * len(tokens)
        return False
    record = worker.board.read()
    assert record.current == -1
    assert record.outcomes[victim_index] == "cancelled"
    assert record.outcomes[:victim_index] == ("done",) * victim_index
    assert record.outcomes[victim_index + 1 :] == (None,) * (MAX_ITEMS - victim_index - 1)
    reported = dict(outcomes(rig.results(tokens)))
    assert victim not in reported, "a job recorded as cancelled was also reported"
    assert set(reported.values()) <= {"done"}
    # (perform may have completed just before the cancel took the lock: its
    # "done" marker may exist; what counts is the recorded outcome.)
    return True


def test_a_cancel_racing_the_end_of_a_job_gives_done_or_cancelled_never_both(
    rig: Rig,
) -> None:
    """Cancels of jobs that are about to end: either the job was recorded done
    (the worker lives on) or the worker was killed with the job recorded
    cancelled and not reported; never a mix."""
    killed = []
    for round_, seconds in enumerate((0.0, 0.0, 0.002, 0.005, 0.01, 1.0)):
        killed.append(_race_once(rig, 100 + 20 * round_, round_ % 4 + 1, seconds))
    assert killed[-1], "a 1 s job is cancelled while it runs"


def test_return_unstarted_returns_the_jobs_not_started(rig: Rig) -> None:
    worker = rig.start_worker()
    rig.run(
        worker, [(51, rig.signalled("g", "return")), (52, rig.quick("x")), (53, rig.quick("y"))]
    )
    wait_for(lambda: rig.marker("g", "started"), what="the first job to start")
    assert control.tell(worker.ready.control, RETURN_UNSTARTED)
    assert outcomes(rig.wait_results([51, 52, 53])) == [
        (51, "done"),
        (52, "returned"),
        (53, "returned"),
    ]
    assert not rig.marker("x", "started") and not rig.marker("y", "started")
    assert worker.board.read().outcomes[:3] == ("done", "returned", "returned")

    # Between batches, the worker still works.
    rig.run(worker, [(54, rig.quick("z1")), (55, rig.quick("z2"))])
    assert outcomes(rig.wait_results([54, 55])) == [(54, "done"), (55, "done")]
    record = worker.board.read()
    assert (record.batch_id, record.outcomes[:3]) == (54, ("done", "done", None))


def test_a_stopped_worker_removes_its_scoreboard(rig: Rig) -> None:
    worker = rig.start_worker()
    assert os.path.exists(worker.ready.scoreboard)
    terminate_child(rig.worker_sup, worker.address)
    wait_for(lambda: not os.path.exists(worker.ready.scoreboard), what="the scoreboard file to go")
    wait_for(lambda: not is_alive(worker.pid), what="the worker process to exit")
    assert not control.tell(worker.ready.control, cancel_datagram(1))
