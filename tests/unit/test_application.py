"""Specification of ``supervision.Application`` on simpleSystemBase."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervision import (
    Application,
    CallTimeout,
    ChildSpec,
    Crash,
    NoProc,
    SupervisionError,
    call,
    running_applications,
    which_children,
)
from tests.actors import Sup
from tests.procs import free_port
from tests.unit_actors import Tree, sup_spec


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    with Tree(tmp_path) as t:
        yield t


def test_context_manager_starts_the_tree_and_stops_it_on_exit(tree: Tree) -> None:
    app = tree.app(sup_spec("root", [tree.worker("a"), tree.worker("b")]))

    with app as entered:
        assert entered is app
        assert app.is_running
        [_, a] = which_children(app.root)  # newest first
        assert call(a.address, "ping") == "pong"
        assert tree.lines() == ["start a", "start b"]

    assert not app.is_running
    assert app.exit_reason == "shutdown"
    assert tree.lines()[2:] == ["terminate b shutdown", "terminate a shutdown"]


def test_start_returns_the_address_of_the_running_root(tree: Tree) -> None:
    app = tree.app(sup_spec("root", [tree.worker("a")]))

    root = app.start()

    assert root == app.root
    assert [info.id for info in which_children(root)] == ["a"]


def test_is_running_is_false_before_start_and_after_stop(tree: Tree) -> None:
    app = tree.app(sup_spec("root", []))
    assert not app.is_running

    app.start()
    assert app.is_running

    app.stop()
    assert not app.is_running


def test_running_applications_lists_started_ones_until_they_stop(tree: Tree) -> None:
    app = tree.app(sup_spec("root", []))
    assert app not in running_applications()

    app.start()
    assert app in running_applications()

    app.stop()
    assert app not in running_applications()


def test_poll_reports_a_running_root_and_the_exit_reason_after_stop(tree: Tree) -> None:
    app = tree.app(sup_spec("root", []))
    assert app.poll() == (False, None)
    app.start()
    assert app.poll(timeout=5) == (True, None)
    app.stop()
    assert app.poll() == (False, "shutdown")


def test_stop_stops_the_tree_and_returns_shutdown(tree: Tree) -> None:
    app = tree.app(sup_spec("root", [tree.worker("a")]))
    app.start()

    assert app.stop() == "shutdown"

    assert tree.lines() == ["start a", "terminate a shutdown"]
    assert app.stop() == "shutdown"  # stopping again changes nothing


def test_wait_returns_the_exit_reason_when_the_root_exits(tree: Tree) -> None:
    app = tree.app(tree.worker("root-worker"))
    root = app.start()

    call(root, ("stop", "finished"))

    assert app.wait() == "finished"
    assert app.exit_reason == "finished"
    assert not app.is_running


def test_wait_returns_the_crash_of_a_root_that_crashed(tree: Tree) -> None:
    app = tree.app(tree.worker("root-worker"))
    root = app.start()

    with pytest.raises(NoProc):
        call(root, "crash")

    reason = app.wait(timeout=1)
    assert isinstance(reason, Crash)
    assert reason.message == "root-worker crashed on request"


def test_the_application_master_never_restarts_the_root(tree: Tree) -> None:
    app = tree.app(tree.worker("root-worker"))
    root = app.start()

    with pytest.raises(NoProc):
        call(root, "crash")

    assert not app.is_running
    assert tree.lines() == [
        "start root-worker",
        "terminate root-worker builtins.RuntimeError: root-worker crashed on request",
    ]


def test_wait_raises_call_timeout_while_the_root_runs(tree: Tree) -> None:
    app = tree.app(sup_spec("root", []))
    app.start()

    with pytest.raises(CallTimeout):
        app.wait(timeout=0.1)

    assert app.is_running


def test_starting_an_application_twice_raises(tree: Tree) -> None:
    app = tree.app(sup_spec("root", [tree.worker("a")]))
    app.start()

    with pytest.raises(SupervisionError, match="already started"):
        app.start()

    assert app.is_running
    assert tree.lines() == ["start a"]


def test_application_root_must_be_a_child_spec() -> None:
    with pytest.raises(TypeError, match="ChildSpec"):
        Application("root", base="simpleSystemBase")  # type: ignore[arg-type]


def test_start_returns_as_soon_as_the_tree_has_started(tree: Tree) -> None:
    # Regression test (fixed library bug):
    # test_call_returns_at_once_even_with_an_unrelated_timer_pending): the
    # supervisor's start_timeout wake-up is still pending when the start
    # reply arrives, and the start call sleeps until it (30 s with the
    # default start_timeout; 2 s here).
    spec = ChildSpec("a", tree.worker("a").start, start_timeout=2.0, shutdown="infinity")
    app = tree.app(sup_spec("root", [spec]))

    started = time.monotonic()
    app.start()

    assert time.monotonic() - started < 1


def test_stop_returns_as_soon_as_the_tree_has_stopped(tree: Tree) -> None:
    # Regression test (fixed library bug): the shutdown deadline wake-up of a
    # worker with a numeric shutdown (5 s by default; 2 s here) is still pending
    # when the stop reply arrives, and stop() sleeps until it.
    spec = ChildSpec("a", tree.worker("a").start, start_timeout=None, shutdown=2.0)
    app = tree.app(sup_spec("root", [spec]))
    app.start()

    started = time.monotonic()
    assert app.stop() == "shutdown"

    assert time.monotonic() - started < 1
    assert tree.lines() == ["start a", "terminate a shutdown"]


# ---------------------------------------------------------------- start types (OTP row 19)

#: A process running one Application of a Worker root with the given start
#: type; it makes the root stop with the given reason (or stops the
#: application itself: "app.stop"), then prints "alive".
_NODE_SCRIPT = """
import logging, sys
from supervision import Application, ChildSpec, call
from tests.actors import Worker

start_type, how, base, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
app = Application(ChildSpec("root", (Worker, ("root",))), base=base, admin_port=port,
                  log_level=logging.CRITICAL, start_type=start_type)
app.start()
if how == "app.stop":
    app.stop()
else:
    call(app.root, ("stop", how))
# Wait for the root's exit to be handled: a node that stops gets SIGTERM
# here, else the exit is only reported (a poll right after the stop call
# could come before the master saw the exit).
app.wait(10)
print("alive", app.poll(1), flush=True)
app.stop()
"""


def _run_node(
    start_type: str, how: str, base: str = "simpleSystemBase"
) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", _NODE_SCRIPT, start_type, how, base, str(free_port(20000, 20999))],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("start_type", "how", "node_stops"),
    [
        ("temporary", "boom", False),
        ("transient", "normal", False),
        ("transient", "shutdown", True),  # only "normal" is normal for an application
        ("transient", "boom", True),
        ("permanent", "normal", True),
        ("permanent", "boom", True),
        ("permanent", "app.stop", False),  # a stop asked for is no exit of the root
    ],
)
def test_start_type_decides_whether_the_root_exit_stops_the_node(
    start_type: str, how: str, node_stops: bool
) -> None:
    """OTP row 19: when the root of a permanent application exits, or that of
    a transient one with a reason other than normal, the node stops (here:
    the process that started the application gets SIGTERM); a temporary
    application's exit is only reported."""
    done = _run_node(start_type, how)

    if node_stops:
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert "alive" not in done.stdout
    else:
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("alive (False,")


def test_permanent_application_stops_its_node_on_the_multiprocess_base() -> None:
    """Row 19 where the master runs in a process of its own: it signals the
    process that started the application."""
    done = _run_node("permanent", "boom", "multiprocTCPBase")

    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "alive" not in done.stdout


def test_start_type_must_be_one_of_otps() -> None:
    with pytest.raises(ValueError):
        Application(ChildSpec("root", Sup), start_type="forever")
