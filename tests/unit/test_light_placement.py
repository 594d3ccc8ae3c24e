"""``ChildSpec(placement="process")`` under a supervisor on ``base="light"``:
the child (a worker or a supervisor subtree) runs in an OS process of its
own, and its parent handles it as any child (see :mod:`supervision.placement`).

The host's root supervisor records every child exit it sees (its
``child_exited`` hook runs in this process). Waits are bounded polls on
conditions (:func:`tests.procs.wait_until`); no timing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervision import (
    Application,
    ChildSpec,
    From,
    InvalidSpec,
    NoProc,
    Server,
    StartError,
    SupervisorSpec,
    call,
    cast,
    forkserver,
    light,
    placement,
    restart_child,
    start_child,
    terminate_child,
    which_children,
)
from supervision.light import LightSystem
from supervision.protocol import Down
from supervision.reasons import Crash
from tests.actors import SlowInit, Sup, Worker, read_journal, record
from tests.procs import (
    free_port,
    is_alive,
    live_children,
    open_files,
    parent_of,
    sigkill,
    wait_until,
)
from tests.unit_actors import Probe

ROOT = Path(__file__).resolve().parents[2]

#: ``(child id, reason)`` of every exit the host's root supervisor saw.
REASONS: list[tuple[Any, Any]] = []


class RecordingSup(Sup):
    """A Sup that records the exits of its children in :data:`REASONS`."""

    def child_exited(self, address: Any, spec: ChildSpec, reason: Any) -> None:
        REASONS.append((spec.id, reason))


#: ``(ref, address, reason)`` of every ``Down`` a :class:`Watcher` got.
DOWNS: list[tuple[str, Any, Any]] = []


class FewGhostsWorker(Worker):
    """A Worker whose process keeps only 2 ghost addresses per relay side."""

    def init(self, name: str, journal: str | None = None) -> Any:  # type: ignore[override]
        placement.GHOSTS = 2  # in the placed process only
        return super().init(name, journal)


class Watcher(Server):
    """A host-side server: call ``("watch", address)`` monitors ``address``
    (returns the ref); each ``Down`` is appended to :data:`DOWNS`."""

    def handle_call(self, request: Any, from_: From) -> Any:
        if isinstance(request, tuple) and request[0] == "watch":
            return self.monitor(request[1])
        return super().handle_call(request, from_)

    def handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            DOWNS.append((message.ref, message.address, message.reason))


class LastWordsWorker(Worker):
    """A Worker whose ``terminate`` leaves last words to say after it: a task
    (:func:`supervision.light.last_words`) that records ``said <name>`` in the
    journal ``delay`` seconds later; ``delay`` None: a task that never ends.
    ``wait`` sets the placed process's ``placement.LAST_WORDS_SECONDS``."""

    def init(  # type: ignore[override]
        self, name: str, journal: str, delay: float | None, wait: float = 3.0
    ) -> Any:
        self.delay = delay
        placement.LAST_WORDS_SECONDS = wait  # in the placed process only
        return super().init(name, journal)

    def terminate(self, reason: Any) -> None:
        super().terminate(reason)

        async def say() -> None:
            if self.delay is None:
                await asyncio.Event().wait()
            await asyncio.sleep(self.delay)
            record(self.journal, f"said {self.name}")

        light.last_words(asyncio.get_running_loop().create_task(say()))


class Unbuildable(Server):
    """A server whose actor object cannot be built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no actor object")


@pytest.fixture(autouse=True)
def _fresh_records() -> Iterator[None]:
    REASONS.clear()
    DOWNS.clear()
    yield
    REASONS.clear()
    DOWNS.clear()


@pytest.fixture
def app() -> Iterator[list[Application]]:
    """Applications to stop at the end of the test."""
    apps: list[Application] = []
    yield apps
    for a in apps:
        a.stop(timeout=30)
    wait_until(lambda: not placed_processes(), "every placed process has exited")


def placed_by_this_process(pid: int) -> bool:
    """``pid`` was forked by the fork server this test process started."""
    server = forkserver.server_pid()
    return server is not None and parent_of(pid) == server and parent_of(server) == os.getpid()


def placed_processes() -> list[int]:
    """The live processes forked by this test process's fork server."""
    server = forkserver.server_pid()
    return live_children(server) if server is not None else []


def start(apps: list[Application], *children: ChildSpec) -> Any:
    """Start a light Application whose root RecordingSup has ``children``."""
    spec = SupervisorSpec(list(children), "one_for_one", max_restarts=50, max_seconds=1)
    a = Application(ChildSpec("root", (RecordingSup, (spec,)), start_timeout=None), base="light")
    apps.append(a)
    return a.start()


def kid(sup: Any, child_id: Any) -> Any:
    """The address of ``sup``'s child ``child_id`` (None, "restarting")."""
    return {info.id: info.address for info in which_children(sup)}[child_id]


def replaced(sup: Any, child_id: Any, old: Any) -> Any:
    """Wait until ``sup`` runs a new process for ``child_id``; its address."""
    return wait_until(
        lambda: (lambda a: a if a not in (None, "restarting", old) else None)(kid(sup, child_id)),
        f"{child_id!r} is restarted",
    )


def placed_worker(journal: Path, **kw: Any) -> ChildSpec:
    return ChildSpec("w", (Worker, ("w", str(journal))), placement="process", **kw)


def test_a_placed_worker_runs_in_another_process_and_answers_calls(
    app: list[Application], tmp_path: Path
) -> None:
    probe = ChildSpec("w", (Probe, ("w", str(tmp_path / "j"))), placement="process")
    root = start(app, probe)
    w = kid(root, "w")

    pid = call(w, "pid")

    assert pid != os.getpid()
    assert placed_by_this_process(pid)
    assert call(w, "ping") == "pong"
    cast(w, "hello")
    assert call(w, "casts") == ["hello"]
    assert read_journal(tmp_path / "j") == [f"start w {pid}"]
    assert [info.type for info in which_children(root)] == ["worker"]


def test_a_placed_process_runs_its_actors_on_uvloop_where_it_is_installed(
    app: list[Application], tmp_path: Path
) -> None:
    pytest.importorskip("uvloop")  # a dependency on Linux
    root = start(app, ChildSpec("w", (Probe, ("w", str(tmp_path / "j"))), placement="process"))
    assert call(kid(root, "w"), "loop").startswith("uvloop")
    assert type(light.host_loop()).__module__.startswith("asyncio")  # this process keeps its own


@pytest.fixture
def no_exit_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host SIGKILLs no placed process within a test's waits, so a
    process that exits is one that ended itself."""
    monkeypatch.setattr(placement, "EXIT_GRACE", 600.0)


@pytest.mark.usefixtures("no_exit_grace")
def test_a_placed_process_exits_once_its_childs_last_words_are_said(
    app: list[Application], tmp_path: Path
) -> None:
    journal = tmp_path / "j"
    spec = ChildSpec("w", (LastWordsWorker, ("w", str(journal), 0.3)), placement="process")
    root = start(app, spec)
    pid = call(kid(root, "w"), "pid")

    terminate_child(root, "w")

    wait_until(lambda: not is_alive(pid), "the placed process has exited")
    assert read_journal(journal) == [f"start w {pid}", "terminate w shutdown", "said w"]


@pytest.mark.usefixtures("no_exit_grace")
def test_last_words_that_never_end_hold_a_placed_process_up_for_a_bounded_time(
    app: list[Application], tmp_path: Path
) -> None:
    journal = tmp_path / "j"
    spec = ChildSpec("w", (LastWordsWorker, ("w", str(journal), None, 0.5)), placement="process")
    root = start(app, spec)
    pid = call(kid(root, "w"), "pid")

    terminate_child(root, "w")

    wait_until(lambda: not is_alive(pid), "the placed process has exited")
    assert read_journal(journal) == [f"start w {pid}", "terminate w shutdown"]


def test_a_placed_worker_that_crashes_is_restarted_in_a_new_process(
    app: list[Application], tmp_path: Path
) -> None:
    root = start(app, placed_worker(tmp_path / "j"))
    first = kid(root, "w")
    old_pid = call(first, "pid")

    with pytest.raises(NoProc):
        call(first, "crash")

    second = replaced(root, "w", first)
    new_pid = call(second, "pid")
    assert new_pid not in (old_pid, os.getpid())
    [(child_id, reason)] = REASONS
    assert child_id == "w" and isinstance(reason, Crash) and "crashed on request" in reason.message
    wait_until(lambda: not is_alive(old_pid), "the crashed child's process is gone")


def test_sigkill_of_a_placed_process_exits_the_child_killed_and_restarts_it(
    app: list[Application], tmp_path: Path
) -> None:
    root = start(app, placed_worker(tmp_path / "j"))
    first = kid(root, "w")
    old_pid = call(first, "pid")

    sigkill(old_pid)

    second = replaced(root, "w", first)
    assert REASONS == [("w", "killed")]
    assert call(second, "pid") not in (old_pid, os.getpid())
    with pytest.raises(NoProc):  # the dead child's address answers at once
        call(first, "ping", timeout=30)


def test_a_monitor_on_a_placed_child_gets_its_real_exit_reason_or_killed(
    app: list[Application], tmp_path: Path
) -> None:
    root = start(app, ChildSpec("watcher", Watcher), placed_worker(tmp_path / "j"))
    watcher, first = kid(root, "watcher"), kid(root, "w")
    ref = call(watcher, ("watch", first))

    with pytest.raises(NoProc):
        call(first, "crash")

    wait_until(lambda: DOWNS, "the monitor reports the crash")
    [(got_ref, address, reason)] = DOWNS
    assert (got_ref, address) == (ref, first) and isinstance(reason, Crash)
    second = replaced(root, "w", first)
    ref = call(watcher, ("watch", second))

    os.kill(call(second, "pid"), signal.SIGKILL)

    wait_until(lambda: len(DOWNS) == 2, "the monitor reports the kill")
    assert DOWNS[1] == (ref, second, "killed")


def test_the_placed_childs_parent_stays_reachable_when_old_ghosts_are_dropped(
    app: list[Application], tmp_path: Path
) -> None:
    spec = ChildSpec("w", (FewGhostsWorker, ("w", str(tmp_path / "j"))), placement="process")
    root = start(app, spec)
    first = kid(root, "w")
    for _ in range(5):  # each call comes from a new endpoint: a new ghost there
        assert call(first, "ping") == "pong"

    with pytest.raises(NoProc):
        call(first, "crash")

    replaced(root, "w", first)
    [(child_id, reason)] = REASONS  # the exit notice reached the parent
    assert child_id == "w" and isinstance(reason, Crash)


def test_a_call_in_flight_when_the_placed_process_dies_raises_noproc(
    app: list[Application], tmp_path: Path
) -> None:
    root = start(app, placed_worker(tmp_path / "j", restart="temporary"))
    w = kid(root, "w")
    pid = call(w, "pid")
    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            call(w, "hang", timeout=30)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=hang)
    caller.start()
    system = app[0].system
    assert isinstance(system, LightSystem)
    proxy = system._actors[w.addressDetails].instance
    wait_until(lambda: proxy._placement.calls, "the call is relayed")

    sigkill(pid)

    caller.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], NoProc), outcome
    assert REASONS == [("w", "killed")]


def test_a_placed_subtree_restarts_its_own_crashed_child_without_the_parent_noticing(
    app: list[Application], tmp_path: Path
) -> None:
    inner = SupervisorSpec([ChildSpec("w", (Worker, ("w", str(tmp_path / "j"))))], max_restarts=50)
    root = start(app, ChildSpec("sub", (Sup, (inner,)), placement="process"))
    sub = kid(root, "sub")
    first = kid(sub, "w")  # an address handed out from inside the process
    pid = call(first, "pid")
    assert pid != os.getpid()

    with pytest.raises(NoProc):
        call(first, "crash")

    second = replaced(sub, "w", first)
    assert call(second, "pid") == pid  # restarted inside the same process
    assert kid(root, "sub") == sub
    assert REASONS == []
    lines = read_journal(tmp_path / "j")
    assert lines[0] == f"start w {pid}" and lines[-1] == f"start w {pid}" and len(lines) == 3


def test_a_placed_supervisor_that_gives_up_exits_shutdown_and_is_restarted_in_a_new_process(
    app: list[Application], tmp_path: Path
) -> None:
    inner = SupervisorSpec([ChildSpec("w", (Worker, ("w", str(tmp_path / "j"))))], max_restarts=0)
    root = start(app, ChildSpec("sub", (Sup, (inner,)), placement="process"))
    sub = kid(root, "sub")
    pid = call(kid(sub, "w"), "pid")

    with pytest.raises(NoProc):
        call(kid(sub, "w"), "crash")  # more restarts than the subtree allows

    again = replaced(root, "sub", sub)
    assert REASONS == [("sub", "shutdown")]
    assert call(kid(again, "w"), "pid") not in (pid, os.getpid())


def test_a_dynamic_child_started_through_a_placed_supervisor_runs_in_its_process(
    app: list[Application], tmp_path: Path
) -> None:
    inner = SupervisorSpec([], max_restarts=50)
    root = start(app, ChildSpec("sub", (Sup, (inner,)), placement="process"))
    sub = kid(root, "sub")

    w = start_child(sub, ChildSpec("w", (Worker, ("w", str(tmp_path / "j")))))

    assert call(w, "ping") == "pong"
    assert placed_by_this_process(call(w, "pid"))
    assert kid(sub, "w") == w


def test_terminate_child_runs_the_placed_childs_terminate_and_its_process_exits(
    app: list[Application], tmp_path: Path
) -> None:
    journal = tmp_path / "j"
    root = start(app, placed_worker(journal))
    pid = call(kid(root, "w"), "pid")

    terminate_child(root, "w")

    assert read_journal(journal)[-1] == "terminate w shutdown"
    assert REASONS == [("w", "shutdown")]
    assert kid(root, "w") is None
    wait_until(lambda: not is_alive(pid), "the placed process exits")
    again = restart_child(root, "w")
    assert call(again, "pid") not in (pid, os.getpid())


def test_a_placed_child_whose_terminate_overruns_its_shutdown_is_killed(
    app: list[Application], tmp_path: Path
) -> None:
    journal = tmp_path / "j"
    spec = ChildSpec(
        "w",
        (Worker, ("w", str(journal)), {"terminate_delay": 3600}),
        placement="process",
        shutdown=0.5,
    )
    root = start(app, spec)
    pid = call(kid(root, "w"), "pid")

    terminate_child(root, "w")

    assert REASONS == [("w", "killed")]
    assert not any(line.startswith("terminate") for line in read_journal(journal))
    wait_until(lambda: not is_alive(pid), "the placed process is gone")


def test_brutal_kill_of_a_placed_child_sigkills_its_process(
    app: list[Application], tmp_path: Path
) -> None:
    journal = tmp_path / "j"
    root = start(app, placed_worker(journal, shutdown="brutal_kill"))
    pid = call(kid(root, "w"), "pid")

    terminate_child(root, "w")

    assert REASONS == [("w", "killed")]
    assert read_journal(journal) == [f"start w {pid}"]  # no terminate ran
    wait_until(lambda: not is_alive(pid), "the placed process is gone")


def test_a_placed_child_whose_init_overruns_its_start_timeout_is_sigkilled(
    app: list[Application], tmp_path: Path
) -> None:
    journal = tmp_path / "j"
    root = start(app, placed_worker(tmp_path / "warm"))  # the fork server has started
    slow = ChildSpec(
        "slow", (SlowInit, ("slow", str(journal), 3600)), placement="process", start_timeout=0.5
    )

    with pytest.raises(StartError, match="start_timeout"):
        start_child(root, slow)

    [line] = read_journal(journal)  # init began and never finished
    pid = int(line.split()[-1])
    assert pid != os.getpid()
    wait_until(lambda: not is_alive(pid), "the hung process is killed")


def test_a_placed_child_whose_class_cannot_be_built_fails_to_start_killed(
    app: list[Application],
) -> None:
    root = start(app)

    with pytest.raises(StartError, match="killed"):
        start_child(root, ChildSpec("u", Unbuildable, placement="process", start_timeout=None))

    assert which_children(root) == []


HOST = textwrap.dedent(
    """
    import sys
    from supervision import Application, ChildSpec, SupervisorSpec, call, which_children
    from tests.actors import Sup, Worker

    inner = SupervisorSpec([ChildSpec("w", (Worker, ("w",)))])
    spec = SupervisorSpec([ChildSpec("sub", (Sup, (inner,)), placement="process")])
    root = Application(ChildSpec("root", (Sup, (spec,))), base="light").start()
    sub = which_children(root)[0].address
    print(call(which_children(sub)[0].address, "pid"), flush=True)
    sys.stdin.read()  # until killed
    """
)


def test_a_placed_process_dies_when_its_host_dies() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    host = subprocess.Popen(
        [sys.executable, "-c", HOST],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        assert host.stdout is not None
        ready, _, _ = select.select([host.stdout], [], [], 60)
        assert ready, "the host printed no pid"
        placed = int(host.stdout.readline())
        server = parent_of(placed)
        assert server is not None and parent_of(server) == host.pid  # its fork server's

        host.kill()
        host.wait(30)

        wait_until(lambda: not is_alive(placed), "the placed process dies with its host")
        wait_until(lambda: not is_alive(server), "the host's fork server exits")
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(30)


def test_a_placed_child_cannot_have_a_name(app: list[Application], tmp_path: Path) -> None:
    root = start(app)

    with pytest.raises(StartError, match="name"):
        start_child(root, placed_worker(tmp_path / "j", name="placed"))


def test_a_bad_placement_value_is_an_invalid_spec() -> None:
    with pytest.raises(InvalidSpec, match="placement"):
        ChildSpec("w", Worker, placement="elsewhere")  # type: ignore[arg-type]


def test_on_multiproc_tcp_base_a_placed_child_has_its_own_actor_process(tmp_path: Path) -> None:
    spec = SupervisorSpec([placed_worker(tmp_path / "j")])
    a = Application(
        ChildSpec("root", (Sup, (spec,))),
        base="multiprocTCPBase",
        admin_port=free_port(24000, 24499),
    )
    root = a.start()
    try:
        pid = call(kid(root, "w"), "pid")
        assert pid != os.getpid()
        assert parent_of(pid) != os.getpid()  # forked by its supervisor's actor process
    finally:
        a.stop(timeout=30)
    wait_until(lambda: not is_alive(pid), "the actor process exits with its application")


def test_on_simple_system_base_a_placed_child_runs_in_the_hosts_process(tmp_path: Path) -> None:
    spec = SupervisorSpec([placed_worker(tmp_path / "j")])
    a = Application(ChildSpec("root", (Sup, (spec,))), base="simpleSystemBase")
    root = a.start()
    try:
        assert call(kid(root, "w"), "pid") == os.getpid()
    finally:
        a.stop(timeout=30)


def test_a_placed_process_inherits_none_of_its_hosts_files(
    app: list[Application], tmp_path: Path
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    held = open(tmp_path / "held", "w")
    try:
        root = start(app, ChildSpec("w", (Probe, ("w",)), placement="process"))

        fds = call(kid(root, "w"), "fds")

        placed = {  # past stdin, stdout, stderr; not the nameless ones ("anon_inode:[eventpoll]")
            target for fd, target in fds.items() if fd > 2 and not target.startswith("anon_inode:")
        }
        assert str(tmp_path / "held") not in placed
        assert f"socket:[{os.fstat(listener.fileno()).st_ino}]" not in placed
        assert not placed & set(open_files().values()), "it has nothing open that this one has"
    finally:
        held.close()
        listener.close()


def test_a_placed_process_takes_the_environment_and_directory_its_host_has_at_placement(
    app: list[Application], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = start(app, ChildSpec("before", (Probe, ("before",)), placement="process"))
    monkeypatch.setenv("PLACEMENT_TEST_VALUE", "set after the fork server started")
    monkeypatch.chdir(tmp_path)

    after = start_child(root, ChildSpec("after", (Probe, ("after",)), placement="process"))

    assert call(after, ("env", "PLACEMENT_TEST_VALUE")) == "set after the fork server started"
    assert call(after, "cwd") == str(tmp_path)
    assert call(kid(root, "before"), ("env", "PLACEMENT_TEST_VALUE")) is None


def test_a_placed_process_has_imported_the_modules_its_host_had_imported_at_placement(
    app: list[Application], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = start(app, ChildSpec("before", (Probe, ("before",)), placement="process"))
    (tmp_path / "imported_after_start.py").write_text("REGISTRY = ['filled at import']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "imported_after_start", raising=False)
    import imported_after_start  # noqa: F401

    after = start_child(root, ChildSpec("after", (Probe, ("after",)), placement="process"))

    assert call(after, ("imported", "imported_after_start")) is True
    assert call(kid(root, "before"), ("imported", "imported_after_start")) is False


def test_sigkill_of_a_placed_supervisor_kills_the_processes_it_placed(
    app: list[Application], tmp_path: Path
) -> None:
    inner = SupervisorSpec(
        [
            ChildSpec("here", (Probe, ("here",))),
            ChildSpec("there", (Probe, ("there",)), placement="process"),
        ],
        max_restarts=50,
    )
    root = start(app, ChildSpec("sub", (Sup, (inner,)), placement="process"))
    sub = kid(root, "sub")
    sub_pid = call(kid(sub, "here"), "pid")
    there_pid = call(kid(sub, "there"), "pid")
    assert placed_by_this_process(sub_pid) and placed_by_this_process(there_pid)

    sigkill(sub_pid)

    wait_until(lambda: not is_alive(there_pid), "the process the supervisor placed is killed")
    replaced(root, "sub", sub)


def test_a_sigkilled_fork_server_takes_its_processes_along_and_a_new_one_places_the_restart(
    app: list[Application], tmp_path: Path
) -> None:
    root = start(app, placed_worker(tmp_path / "j"))
    first = kid(root, "w")
    first_pid = call(first, "pid")
    server = forkserver.server_pid()
    assert server is not None

    sigkill(server)

    wait_until(lambda: not is_alive(first_pid), "the placed process dies with its fork server")
    second = replaced(root, "w", first)
    assert placed_by_this_process(call(second, "pid"))
    assert forkserver.server_pid() not in (None, server)


def test_a_fork_server_with_nothing_alive_exits_and_the_next_placement_starts_a_new_one(
    app: list[Application], tmp_path: Path
) -> None:
    root = start(app, placed_worker(tmp_path / "j"))
    server = forkserver.server_pid()
    assert server is not None
    terminate_child(root, "w")

    wait_until(
        lambda: not is_alive(server),
        "the idle fork server exits",
        timeout=forkserver.IDLE_SECONDS + 10,
    )
    restart_child(root, "w")

    assert placed_by_this_process(call(kid(root, "w"), "pid"))
    assert forkserver.server_pid() not in (None, server)


class NotImportable(Probe):
    """Defined at module level, then hidden: the fork server cannot import it."""


NotImportable.__qualname__ = "NoSuchName"


def test_a_child_class_the_fork_server_cannot_import_fails_to_start_with_the_reason(
    app: list[Application],
) -> None:
    root = start(app)

    with pytest.raises(StartError, match="importable"):
        start_child(root, ChildSpec("u", (NotImportable, ("u",)), placement="process"))

    assert which_children(root) == []


MAIN_SCRIPT = textwrap.dedent(
    """
    from supervision import Application, ChildSpec, Server, SupervisorSpec, call, which_children
    from tests.actors import Sup

    class Here(Server):
        def handle_call(self, request, from_):
            return __name__

    if __name__ == "__main__":
        spec = SupervisorSpec([ChildSpec("w", Here, placement="process")])
        app = Application(ChildSpec("root", (Sup, (spec,))), base="light")
        root = app.start()
        print(call(which_children(root)[0].address, "name?"), flush=True)
        app.stop(timeout=30)
    """
)


def test_a_class_of_the_programs_main_script_can_be_placed(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(MAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "__mp_main__"  # the script ran again, its main block did not
