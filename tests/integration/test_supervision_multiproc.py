"""Integration specification of the supervision runtime on ``multiprocTCPBase``.

Every actor is its own OS process here: crashes, SIGKILLs, shutdown timeouts
and the parent-death link are real. Actors report through journal files
(``tests.actors.Worker``: ``start <name> <pid>`` / ``terminate <name> <reason>``);
process liveness is read from ``/proc``. Everything is asynchronous, so every
expectation about a restart or an exit is awaited with a bounded poll.

Each test starts its actor systems on its own admin port (20000-20999) through
the ``start_app`` fixture, which stops them in teardown even when the test
failed, then checks that every process of each actor system is gone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from supervision import (
    Application,
    CallTimeout,
    ChildSpec,
    Crash,
    NoProc,
    StartError,
    SupervisorSpec,
    call,
    start_child,
    terminate_child,
    which_children,
)
from tests import procs
from tests.actors import SlowInit, Sup, Worker, read_journal
from tests.procs import free_port, is_alive, sigkill

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")

#: Bound of every wait for something asynchronous (a restart, an exit).
WAIT = 15.0

# ---------------------------------------------------------------- processes


def alive(pid: int) -> bool:
    """True while ``pid`` is a process that has not exited (a zombie has exited)."""
    return is_alive(pid)


def parent_of(pid: int) -> int:
    """The parent process id of a live process."""
    parent = procs.parent_of(pid)
    assert parent is not None, f"process {pid} does not exist"
    return parent


def descendants(pid: int) -> set[int]:
    """``pid`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for other in procs.all_pids():
        fields = procs.stat_fields(other)
        if fields is not None and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(other)
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, []))
    return {p for p in found if alive(p)}


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` (the actor system's admin), if any."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid in procs.all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    return None


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    """:func:`tests.procs.wait_until` with this module's bound."""
    return procs.wait_until(condition, what, timeout, interval=0.05)


def wait_gone(pids: Iterator[int] | list[int] | set[int], timeout: float = WAIT) -> None:
    """Wait until none of ``pids`` is a live process."""
    pids = sorted(set(pids))
    wait_until(
        lambda: not [p for p in pids if alive(p)],
        f"processes {[p for p in pids if alive(p)]} (of {pids}) are gone",
        timeout,
    )


# ---------------------------------------------------------------- journal


def journal_pids(journal: Path) -> list[int]:
    """Pids of every worker process that ever started, per the journal."""
    return [int(line.split()[2]) for line in read_journal(journal) if line.startswith("start ")]


def lines_after(journal: Path, count: int) -> list[str]:
    """Journal lines past the first ``count``, pids removed from start lines."""
    return [_no_pid(line) for line in read_journal(journal)[count:]]


def _no_pid(line: str) -> str:
    return " ".join(line.split()[:2]) if line.startswith("start ") else line


# ---------------------------------------------------------------- fixtures

def free_admin_port() -> int:
    """A free TCP port in 20000-20999 not used before in this test session."""
    return free_port(20000, 20999)


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def control(tmp_path: Path) -> Path:
    path = tmp_path / "control"
    path.mkdir()
    return path


def _ours(pid: int) -> bool:
    """True when ``pid`` runs this test process's command line (a forked actor)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == Path("/proc/self/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[[ChildSpec], Application]]:
    """``start_app(root_spec) -> Application`` started on its own admin port.

    Teardown stops every application (even after a failure), then checks that
    every process of its actor system, and every worker named in a journal
    (``tmp_path/journal*``), has exited; stragglers are killed and reported
    as a failure.
    """
    apps: list[Application] = []

    def start(root: ChildSpec) -> Application:
        app = Application(root, base="multiprocTCPBase", admin_port=free_admin_port())
        apps.append(app)
        app.start()
        return app

    yield start

    watched: set[int] = set()
    for app in apps:
        admin = listener_pid(app.admin_port)
        watched |= descendants(admin) if admin is not None else set()
        try:
            app.stop(timeout=30)
        except Exception as exc:  # the system is shut down by stop() even then
            print(f"app.stop() on port {app.admin_port} raised {exc!r}")
    for path in tmp_path.glob("journal*"):
        watched |= set(journal_pids(path))
    try:
        wait_gone(watched, timeout=10)
    except AssertionError:
        stragglers = {p for p in watched if alive(p) and _ours(p)}
        for pid in stragglers:
            try:
                sigkill(pid)
            except ProcessLookupError:
                pass
        assert not stragglers, f"processes left behind after app.stop(): {sorted(stragglers)}"


# ---------------------------------------------------------------- helpers


def worker(name: str, journal: Path, **spec: Any) -> ChildSpec:
    terminate_delay = spec.pop("terminate_delay", 0.0)
    control = spec.pop("control", None)
    args = (name, str(journal), str(control) if control else None, terminate_delay)
    return ChildSpec(name, (Worker, args), **spec)


def supervisor(child_id: str, children: list[ChildSpec], **flags: Any) -> ChildSpec:
    return ChildSpec(child_id, (Sup, (SupervisorSpec(children, **flags),)))


def addresses(sup: Any) -> dict[Any, Any]:
    """Child id -> address (None / "restarting" when not running)."""
    return {info.id: info.address for info in which_children(sup)}


def running(address: Any) -> bool:
    return address is not None and address != "restarting"


def restarted(sup: Any, before: dict[Any, Any], ids: list[str]) -> dict[Any, Any] | None:
    """The children's addresses once every child in ``ids`` runs at a new address."""
    now = addresses(sup)
    if all(running(now[i]) and now[i] != before[i] for i in ids):
        return now
    return None


def pids_of(now: dict[Any, Any], ids: list[str]) -> dict[str, int]:
    return {i: call(now[i], "pid") for i in ids}


# ---------------------------------------------------------------- 1. SIGKILL


def test_sigkilled_child_is_a_crash_and_is_restarted_in_a_new_process(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    # transient: restarted only after an abnormal exit, so a restart proves
    # the supervisor took the SIGKILL for a crash ("killed"), not a normal exit
    app = start_app(supervisor("root", [worker("a", journal, restart="transient")]))
    root = app.root
    before = addresses(root)
    old_pid = call(before["a"], "pid")

    sigkill(old_pid)

    now = wait_until(lambda: restarted(root, before, ["a"]), "a runs at a new address")
    new_pid = call(now["a"], "pid")
    assert new_pid != old_pid
    assert call(now["a"], "ping") == "pong"
    assert not alive(old_pid)
    # a SIGKILLed process runs no terminate
    assert lines_after(journal, 0) == ["start a", "start a"]


# ---------------------------------------------------------------- 2. one_for_all


def test_one_for_all_restarts_every_child_in_new_processes_after_one_is_sigkilled(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    ids = ["a", "b", "c"]
    app = start_app(supervisor("root", [worker(i, journal) for i in ids], strategy="one_for_all"))
    before = addresses(app.root)
    old = pids_of(before, ids)
    seen = len(read_journal(journal))

    sigkill(old["b"])

    now = wait_until(lambda: restarted(app.root, before, ids), "a, b and c run at new addresses")
    new = pids_of(now, ids)
    assert all(new[i] != old[i] for i in ids)
    assert not [p for p in old.values() if alive(p)]
    # siblings stopped in reverse start order (b was dead already), then all started in order
    assert lines_after(journal, seen) == [
        "terminate c shutdown",
        "terminate a shutdown",
        "start a",
        "start b",
        "start c",
    ]


# ---------------------------------------------------------------- 3. rest_for_one


def test_rest_for_one_restarts_the_crashed_child_and_those_after_it_only(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    ids = ["a", "b", "c"]
    app = start_app(supervisor("root", [worker(i, journal) for i in ids], strategy="rest_for_one"))
    before = addresses(app.root)
    old = pids_of(before, ids)
    seen = len(read_journal(journal))

    with pytest.raises(NoProc):
        call(before["b"], "crash")

    now = wait_until(lambda: restarted(app.root, before, ["b", "c"]), "b and c run again")
    new = pids_of(now, ids)
    assert now["a"] == before["a"]
    assert new["a"] == old["a"]
    assert new["b"] != old["b"] and new["c"] != old["c"]
    wait_gone([old["b"], old["c"]])
    assert lines_after(journal, seen) == [
        "terminate b builtins.RuntimeError: b crashed on request",
        "terminate c shutdown",
        "start b",
        "start c",
    ]


# ---------------------------------------------------------------- 4. escalation


def crash_until_gives_up(inner: Any, journal: Path) -> set[int]:
    """Crash worker w of supervisor ``inner`` (max_restarts=1) twice: the first
    crash is restarted, the second is over the intensity, so ``inner`` stops
    its other child and exits. Returns the pids of inner and of the workers."""
    before = addresses(inner)
    w_pid = call(before["w"], "pid")
    pids = {w_pid, call(before["bystander"], "pid"), parent_of(w_pid)}
    with pytest.raises(NoProc):
        call(before["w"], "crash")
    now = wait_until(lambda: restarted(inner, before, ["w"]), "inner restarts w")
    pids.add(call(now["w"], "pid"))
    seen = len(read_journal(journal))
    with pytest.raises(NoProc):
        call(now["w"], "crash")
    wait_until(
        lambda: "terminate bystander shutdown" in lines_after(journal, seen),
        "inner stops bystander as it gives up",
    )
    return pids


def test_exceeding_restart_intensity_escalates_to_the_application_and_leaves_no_process(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    inner = supervisor(
        "inner",
        [worker("w", journal), worker("bystander", journal)],
        max_restarts=1,
        max_seconds=60,
    )
    app = start_app(supervisor("root", [inner], max_restarts=1, max_seconds=60))
    root = app.root
    first = addresses(root)
    root_pid = parent_of(parent_of(call(addresses(first["inner"])["w"], "pid")))

    pids = crash_until_gives_up(first["inner"], journal)

    # inner exited "shutdown"; the root restarts it (its 1 restart allowed) with new children
    second = wait_until(lambda: restarted(root, first, ["inner"]), "root restarts inner")
    wait_gone(pids)
    assert app.is_running
    restarted_w = call(addresses(second["inner"])["w"], "pid")
    assert restarted_w not in pids
    assert parent_of(parent_of(restarted_w)) == root_pid

    pids |= crash_until_gives_up(second["inner"], journal)

    # inner's second exit is over the root's intensity: the root exits, the application ends
    assert app.wait(WAIT) == "shutdown"
    assert app.is_running is False
    wait_gone(pids | set(journal_pids(journal)) | {root_pid})


# ---------------------------------------------------------------- 5. shutdown timeouts


def test_child_that_overruns_its_shutdown_timeout_is_killed_when_it_runs_out(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    slow = worker("slow", journal, shutdown=0.5, terminate_delay=30)
    app = start_app(supervisor("root", [slow]))
    pid = call(addresses(app.root)["slow"], "pid")

    started = time.monotonic()
    terminate_child(app.root, "slow", timeout=10)
    elapsed = time.monotonic() - started

    assert 0.4 <= elapsed < 4, f"terminate_child took {elapsed:.2f} s"
    wait_gone([pid])
    assert addresses(app.root) == {"slow": None}
    # killed while still in terminate: it never got to write its line
    assert lines_after(journal, 0) == ["start slow"]


def test_brutal_kill_ends_the_child_process_without_running_terminate(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    app = start_app(supervisor("root", [worker("brute", journal, shutdown="brutal_kill")]))
    pid = call(addresses(app.root)["brute"], "pid")

    started = time.monotonic()
    terminate_child(app.root, "brute", timeout=10)

    assert time.monotonic() - started < 3
    wait_gone([pid])
    assert addresses(app.root) == {"brute": None}
    assert lines_after(journal, 0) == ["start brute"]


def test_child_that_stops_within_its_shutdown_timeout_runs_terminate_with_shutdown(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    polite = worker("polite", journal, shutdown=10, terminate_delay=0.3)
    app = start_app(supervisor("root", [polite]))
    pid = call(addresses(app.root)["polite"], "pid")

    terminate_child(app.root, "polite", timeout=15)

    wait_gone([pid])
    assert lines_after(journal, 0) == ["start polite", "terminate polite shutdown"]


# ---------------------------------------------------------------- 6. ordered shutdown


def test_application_stop_terminates_children_depth_first_in_reverse_start_order(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    nested = supervisor("nested", [worker("n1", journal), worker("n2", journal)])
    app = start_app(supervisor("root", [worker("first", journal), nested, worker("last", journal)]))
    assert lines_after(journal, 0) == ["start first", "start n1", "start n2", "start last"]
    pids = journal_pids(journal)
    nested_pid = parent_of(call(addresses(addresses(app.root)["nested"])["n1"], "pid"))

    assert app.stop(timeout=30) == "shutdown"

    assert lines_after(journal, 4) == [
        "terminate last shutdown",
        "terminate n2 shutdown",
        "terminate n1 shutdown",
        "terminate first shutdown",
    ]
    wait_gone([*pids, nested_pid])


# ---------------------------------------------------------------- 7. start failures


def test_start_child_raises_start_error_when_the_child_init_fails(
    start_app: Callable[[ChildSpec], Application], journal: Path, control: Path
) -> None:
    app = start_app(supervisor("root", []))
    (control / "bad.fail").touch()

    with pytest.raises(StartError) as failed:
        start_child(app.root, worker("bad", journal, control=control), timeout=10)

    assert failed.value.child_id == "bad"
    assert isinstance(failed.value.reason, Crash)
    assert failed.value.reason.message == "bad told to fail"
    assert addresses(app.root) == {}
    assert read_journal(journal) == []


def test_supervisor_whose_second_child_fails_to_start_stops_the_first_and_fails(
    start_app: Callable[[ChildSpec], Application], journal: Path, control: Path
) -> None:
    app = start_app(supervisor("root", []))
    (control / "b.fail").touch()
    children = [worker(i, journal, control=control) for i in ("a", "b", "c")]

    with pytest.raises(StartError) as failed:
        start_child(app.root, supervisor("sub", children), timeout=10)

    assert failed.value.child_id == "sub"
    shutdown, (what, child_id, reason) = failed.value.reason
    assert (shutdown, what, child_id) == ("shutdown", "failed_to_start_child", "b")
    assert isinstance(reason, Crash) and reason.message == "b told to fail"
    assert lines_after(journal, 0) == ["start a", "terminate a shutdown"]
    wait_gone(journal_pids(journal))
    assert addresses(app.root) == {}


def test_application_start_raises_start_error_when_the_root_fails_to_start(
    start_app: Callable[[ChildSpec], Application], journal: Path, control: Path
) -> None:
    (control / "b.fail").touch()
    children = [worker(i, journal, control=control) for i in ("a", "b", "c")]

    with pytest.raises(StartError) as failed:
        start_app(supervisor("root", children))

    assert failed.value.child_id == "root"
    assert failed.value.reason[0] == "shutdown"
    assert failed.value.reason[1][:2] == ("failed_to_start_child", "b")
    assert lines_after(journal, 0) == ["start a", "terminate a shutdown"]
    wait_gone(journal_pids(journal))


# ---------------------------------------------------------------- 8. parent-death link


def test_sigkilled_supervisor_is_restarted_and_its_orphaned_children_die(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    sub = supervisor("sub", [worker("s1", journal), worker("s2", journal)])
    app = start_app(supervisor("root", [sub, worker("sibling", journal)]))
    before = addresses(app.root)
    sibling_pid = call(before["sibling"], "pid")
    old_children = pids_of(addresses(before["sub"]), ["s1", "s2"])
    sub_pid = parent_of(old_children["s1"])
    assert parent_of(old_children["s2"]) == sub_pid
    seen = len(read_journal(journal))

    sigkill(sub_pid)

    # the orphans die with their supervisor (PR_SET_PDEATHSIG), without terminate
    wait_gone([sub_pid, *old_children.values()])
    now = wait_until(lambda: restarted(app.root, before, ["sub"]), "root restarts sub")
    new_children = pids_of(addresses(now["sub"]), ["s1", "s2"])
    assert not set(new_children.values()) & set(old_children.values())
    assert call(now["sibling"], "pid") == sibling_pid
    assert lines_after(journal, seen) == ["start s1", "start s2"]


def test_an_actor_whose_creator_dies_before_its_init_child_dies_too(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    """The parent-death link is armed when the actor process starts, not only
    at ``InitChild``: a child forked just before its creator was killed gets
    no ``InitChild`` and must not live on as an orphan."""
    app = start_app(supervisor("root", [worker("creator", journal)]))
    creator = addresses(app.root)["creator"]
    creator_pid = call(creator, "pid")
    assert call(creator, "spawn-raw") == "spawned"
    [raw] = wait_until(
        lambda: [p for p in descendants(creator_pid) if p != creator_pid] or None,
        "the raw child's process exists",
    )

    sigkill(creator_pid)

    wait_gone([creator_pid, raw])


def test_an_actor_process_whose_creator_dies_while_it_starts_up_dies_too(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    """The parent-death link is armed as Thespian's child process starts, before
    the actor object exists: a creator killed while its child is still in
    Thespian's start-up leaves no orphan (the child would take 15 s to get to
    its own ``__init__``)."""
    app = start_app(supervisor("root", [worker("creator", journal)]))
    creator = addresses(app.root)["creator"]
    creator_pid = call(creator, "pid")
    assert call(creator, "spawn-slow-raw") == "spawned"
    [slow] = wait_until(
        lambda: [p for p in descendants(creator_pid) if p != creator_pid] or None,
        "the slow child's process exists",
    )

    sigkill(creator_pid)

    wait_gone([creator_pid, slow], timeout=5)


# ---------------------------------------------------------------- 9. timers, hung calls


def test_server_timer_fires_on_the_multiprocess_base(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    app = start_app(supervisor("root", [worker("ticker", journal)]))
    ticker = addresses(app.root)["ticker"]

    asked = time.monotonic()
    assert call(ticker, ("timer", 0.2, "x")) == "set"

    assert wait_until(lambda: call(ticker, "ticks"), "the timer fires") == ["x"]
    # the tick came from the timer, not at once: the timer was set after `asked`
    assert time.monotonic() - asked >= 0.2


def test_call_to_a_hung_worker_times_out_and_its_supervisor_still_kills_it(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    app = start_app(supervisor("root", [worker("stuck", journal, shutdown=1)]))
    stuck = addresses(app.root)["stuck"]
    pid = call(stuck, "pid")

    started = time.monotonic()
    with pytest.raises(CallTimeout):
        call(stuck, "hang", timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 2

    started = time.monotonic()
    terminate_child(app.root, "stuck", timeout=10)
    elapsed = time.monotonic() - started

    # it waited the shutdown timeout (1 s) for the worker, in vain, then killed it
    assert 0.9 <= elapsed < 4, f"terminate_child took {elapsed:.2f} s"
    wait_gone([pid])
    assert lines_after(journal, 0) == ["start stuck"]


def test_child_hung_in_init_is_killed_at_its_start_timeout(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    """OTP row 26: a start that overruns ``start_timeout`` kills the child's
    process (known before its ``init`` ran), fails the start with
    ``start_timeout`` at once (not ``start_timeout`` + the kill wait), and the
    supervisor goes on serving requests."""
    app = start_app(supervisor("root", [worker("a", journal)]))
    hung = ChildSpec("hung", (SlowInit, ("hung", str(journal), 3600)), start_timeout=1)

    # Bounded well below the old 1 s + 5 s (KILL_WAIT) the supervisor blocked for.
    with pytest.raises(StartError) as failed:
        start_child(app.root, hung, timeout=4)

    assert failed.value.reason == "start_timeout"
    [pid] = [int(line.split()[2]) for line in read_journal(journal) if line.startswith("init ")]
    wait_gone([pid], timeout=2)
    assert set(addresses(app.root)) == {"a"}
    assert call(addresses(app.root)["a"], "ping") == "pong"


def test_start_child_waits_past_five_seconds_for_a_slow_init_by_default(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    """OTP row 50: the supervisor helpers wait with no timeout by default (the
    old 5 s default raised CallTimeout here although the child was started)."""
    app = start_app(supervisor("root", []))
    slow = ChildSpec("slow", (SlowInit, ("slow", str(journal), 5.5)))

    address = start_child(app.root, slow)

    assert address == addresses(app.root)["slow"]
    assert [line.split()[:2] for line in read_journal(journal)] == [
        ["init", "slow"],
        ["start", "slow"],
    ]


# ---------------------------------------------------------------- 10. two systems


def test_two_applications_on_distinct_admin_ports_run_independently(
    start_app: Callable[[ChildSpec], Application], tmp_path: Path
) -> None:
    journal_1, journal_2 = tmp_path / "journal-1", tmp_path / "journal-2"
    app_1 = start_app(supervisor("root", [worker("one", journal_1)]))
    app_2 = start_app(supervisor("root", [worker("two", journal_2)]))
    assert app_1.admin_port != app_2.admin_port
    one = addresses_in(app_1)["one"]
    two = addresses_in(app_2)["two"]
    assert app_1.call(one, "name") == "one"
    assert app_2.call(two, "name") == "two"

    app_1.stop(timeout=30)

    wait_gone(journal_pids(journal_1))
    assert app_1.is_running is False
    assert app_2.is_running
    assert app_2.call(two, "ping") == "pong"
    assert read_journal(journal_2) == [f"start two {app_2.call(two, 'pid')}"]


def addresses_in(app: Application) -> dict[Any, Any]:
    return {info.id: info.address for info in which_children(app.root, system=app.system)}
