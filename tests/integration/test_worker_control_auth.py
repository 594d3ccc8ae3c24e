"""Who may talk to a worker, and what a worker leaves in /dev/shm.

The control socket takes datagrams from processes of the node's own uid
only, delivery tokens cannot be guessed, and scoreboard files do not outlive
their worker: the Consumer removes a file as soon as it has mapped it, and a
WorkerSupervisor sweeps the files of dead workers when it starts.
Workers run on a real ``multiprocTCPBase`` system (the :class:`Rig` of
``test_worker_scoreboard``); "another local user" is a forked child running
as ``nobody``.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from roger_actors.partition import control
from roger_actors.partition.control import (
    RETURN_UNSTARTED,
    ControlSocket,
    Scoreboard,
    Tokens,
    cancel_datagram,
    sweep_scoreboards,
)
from tests.integration.test_worker_scoreboard import Rig, outcomes
from tests.node_procs import NOBODY
from tests.partition_harness import NodeHarness, wait_for
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    try:
        yield made
    finally:
        made.close()


def as_nobody(action: Callable[[], int]) -> int:
    """Run ``action`` in a forked child as uid/gid nobody; its return value
    (0-255) is the child's exit status, returned here."""
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 255
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = action()
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.WIFEXITED(status), status
    return os.WEXITSTATUS(status)


def _attack(worker_pid: int, datagrams: list[bytes]) -> int:
    """What a local user can do: find the worker's socket in /proc/net/unix
    and send ``datagrams`` to it. Returns how many sockets it found."""
    names = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if len(cols) == 8 and cols[7].startswith(f"@roger-worker-{worker_pid}-"):
            names.append("\0" + cols[7][1:])
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for name in names:
            for datagram in datagrams:
                try:
                    sock.sendto(datagram, name)
                except OSError:  # the worker is gone (a cancel killed it)
                    break
    return len(names)


# ---------------------------------------------------------------- units


def test_the_control_socket_drops_datagrams_of_another_uid_and_keeps_ours() -> None:
    receiver = ControlSocket(timeout=2.0)
    try:
        name = receiver.name

        def send_cancel() -> int:
            return 0 if control.tell(name, cancel_datagram(7)) else 1

        assert as_nobody(send_cancel) == 0, "nobody can reach the abstract socket"
        assert receiver.receive() is None
        assert receiver.dropped == 1
        assert control.tell(name, RETURN_UNSTARTED)
        assert receiver.receive() == RETURN_UNSTARTED
        assert receiver.dropped == 1
    finally:
        receiver.close()


def test_tokens_are_random_positive_int64s_never_one_in_use() -> None:
    in_use = {1, 2, 3}
    tokens = Tokens(in_use)
    drawn = [next(tokens) for _ in range(2000)]
    assert len(set(drawn)) == len(drawn)
    assert all(0 < t < 2**63 and t not in in_use for t in drawn)
    assert sum(1 for a, b in itertools.pairwise(drawn) if b == a + 1) == 0, "not sequential"
    assert sum(1 for t in drawn if t < 2**40) < 5, "drawn over the whole 63-bit range"


def test_take_maps_the_scoreboard_then_removes_its_file() -> None:
    writer = Scoreboard.create()
    try:
        reader = Scoreboard.take(writer.path)
        assert reader is not None
        assert not os.path.exists(writer.path), "the file is gone once the reader has it"
        writer.begin_batch(9)
        writer.start(0)
        assert (reader.read().batch_id, reader.read().current) == (9, 0)
        reader.close()
        assert Scoreboard.take(writer.path) is None
    finally:
        writer.close()  # the file is gone already: no error


def _dead_pid() -> int:
    child = os.fork()
    if child == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(child, 0)
    return child


def test_the_sweep_removes_only_our_files_of_dead_pids(tmp_path: Path) -> None:
    dead = _dead_pid()

    def name(pid: int) -> Path:
        return tmp_path / f"roger-sb-{pid}-{uuid.uuid4().hex}"

    ours_dead, ours_alive, theirs_dead = name(dead), name(os.getpid()), name(dead)
    other_name = tmp_path / f"roger-sbx-{dead}-{uuid.uuid4().hex}"
    for path in (ours_dead, ours_alive, theirs_dead, other_name):
        path.write_bytes(bytes(control.SCOREBOARD_SIZE))
    os.chown(theirs_dead, NOBODY, NOBODY)
    target = tmp_path / "target"
    target.write_text("keep")
    link = name(dead)
    link.symlink_to(target)

    assert sweep_scoreboards(str(tmp_path)) == 1
    assert not ours_dead.exists()
    assert ours_alive.exists() and theirs_dead.exists() and other_name.exists()
    assert link.is_symlink() and target.read_text() == "keep"
    assert sweep_scoreboards(str(tmp_path / "missing")) == 0


# ---------------------------------------------------------------- workers


def test_another_user_cannot_cancel_or_return_the_jobs_of_a_worker(rig: Rig) -> None:
    worker = rig.start_worker()
    t_running, t_next, t_signal = 1, 2, 3
    rig.run(
        worker,
        [
            (t_running, rig.signalled("running", t_signal)),
            (t_next, rig.quick("next")),
            (t_signal, rig.quick("signal")),
        ],
    )
    wait_for(lambda: rig.marker("running", "started"), what="the first job to start")
    hostile = [cancel_datagram(t) for t in range(1, 200)] + [RETURN_UNSTARTED]

    found = as_nobody(lambda: _attack(worker.pid, hostile))

    assert found == 1, "the attacker found the worker's socket in /proc/net/unix"
    # Our own cancel, sent after the attack: once the worker took it in, it
    # had handled every hostile datagram before it.
    assert control.tell(worker.ready.control, cancel_datagram(t_signal)), "the worker is gone"
    assert outcomes(rig.wait_results([t_running, t_next, t_signal])) == [
        (t_running, "done"),
        (t_next, "done"),
        (t_signal, "cancelled"),
    ]
    assert rig.marker("running", "done") and rig.marker("next", "done")


def test_a_worker_supervisor_sweeps_dead_workers_scoreboards_when_it_starts(
    tmp_path: Path,
) -> None:
    directory = control._scoreboard_dir()
    leftover = Path(directory, f"roger-sb-{_dead_pid()}-{uuid.uuid4().hex}")
    leftover.write_bytes(bytes(control.SCOREBOARD_SIZE))
    made = Rig(tmp_path)  # starts a WorkerSupervisor
    try:
        wait_for(lambda: not leftover.exists(), what="the leftover scoreboard to be swept")
    finally:
        made.close()
        leftover.unlink(missing_ok=True)


def test_a_running_workers_scoreboard_is_no_longer_a_file_in_dev_shm(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    h.enqueue(TimedJob, pid, "running", 1.0)
    [start] = h.wait_events("start", 1)
    directory = control._scoreboard_dir()
    files = [n for n in os.listdir(directory) if n.startswith(f"roger-sb-{start['pid']}-")]
    assert files == [], "the Consumer removed the file once it had mapped it"
    h.wait_tags("after_run", {"running"})
