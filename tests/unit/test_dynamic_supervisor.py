"""Specification of ``supervision.DynamicSupervisor`` (Elixir's DynamicSupervisor,
OTP's simple_one_for_one) on simpleSystemBase."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervision import (
    ChildSpec,
    DynamicSupervisorSpec,
    InvalidSpec,
    MaxChildren,
    NoProc,
    NotFound,
    NotSupported,
    StartError,
    call,
    count_children,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
    which_children,
)
from tests.actors import DynSup
from tests.unit_actors import Flaky, Probe, Reaper, Tree, sup_spec


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    with Tree(tmp_path) as t:
        yield t


def start_dyn(tree: Tree, **flags: Any) -> Any:
    """Start an Application whose root is a DynSup with these flags."""
    spec = ChildSpec("dyn", (DynSup, (DynamicSupervisorSpec(**flags),)), start_timeout=None)
    return tree.start(spec)


def running(sup: Any) -> list[Any]:
    return [info.address for info in which_children(sup)]


def crash(address: Any) -> None:
    with pytest.raises(NoProc):
        call(address, "crash")


def test_dynamic_supervisor_starts_with_no_children(tree: Tree) -> None:
    dyn = start_dyn(tree)

    assert which_children(dyn) == []
    assert count_children(dyn) == {"specs": 0, "active": 0, "supervisors": 0, "workers": 0}


def test_start_child_returns_the_address_of_each_new_child(tree: Tree) -> None:
    dyn = start_dyn(tree)

    first = start_child(dyn, tree.worker("w1"))
    second = start_child(dyn, tree.worker("w2"))

    assert first != second
    assert [call(first, "name"), call(second, "name")] == ["w1", "w2"]
    assert running(dyn) == [first, second]


def test_start_child_ignores_the_id_so_one_spec_starts_many_children(tree: Tree) -> None:
    dyn = start_dyn(tree)
    spec = tree.worker("w")

    addresses = [start_child(dyn, spec) for _ in range(3)]

    assert all(a != b for i, a in enumerate(addresses) for b in addresses[i + 1 :])
    assert [info.id for info in which_children(dyn)] == [None, None, None]
    assert tree.lines() == ["start w", "start w", "start w"]


def test_start_child_whose_init_fails_raises_start_error_and_keeps_nothing(tree: Tree) -> None:
    dyn = start_dyn(tree)
    tree.fail_starts("w")

    with pytest.raises(StartError):
        start_child(dyn, tree.worker("w"))

    assert which_children(dyn) == []


def test_start_child_past_max_children_raises_max_children(tree: Tree) -> None:
    dyn = start_dyn(tree, max_children=2)
    start_child(dyn, tree.worker("w1"))
    start_child(dyn, tree.worker("w2"))

    with pytest.raises(MaxChildren):
        start_child(dyn, tree.worker("w3"))

    assert len(running(dyn)) == 2
    assert tree.lines() == ["start w1", "start w2"]


def test_a_terminated_child_frees_its_place_under_max_children(tree: Tree) -> None:
    dyn = start_dyn(tree, max_children=1)
    first = start_child(dyn, tree.worker("w1"))

    terminate_child(dyn, first)

    assert start_child(dyn, tree.worker("w2")) is not None


def test_terminate_child_by_address_stops_and_forgets_the_child(tree: Tree) -> None:
    dyn = start_dyn(tree)
    first = start_child(dyn, tree.worker("w1"))
    second = start_child(dyn, tree.worker("w2"))

    terminate_child(dyn, first)

    assert running(dyn) == [second]
    assert tree.lines()[-1] == "terminate w1 shutdown"


def test_terminate_child_with_an_unknown_address_raises_not_found(tree: Tree) -> None:
    dyn = start_dyn(tree)
    first = start_child(dyn, tree.worker("w1"))
    terminate_child(dyn, first)

    with pytest.raises(NotFound):
        terminate_child(dyn, first)


def test_terminate_child_by_anything_but_an_address_is_not_supported(tree: Tree) -> None:
    """OTP row 58: a simple_one_for_one supervisor answers terminate_child
    with a child id (not a pid) {error, simple_one_for_one}."""
    dyn = start_dyn(tree)
    start_child(dyn, tree.worker("w1"))

    with pytest.raises(NotSupported):
        terminate_child(dyn, "w1")  # children are known by address, not by id

    assert count_children(dyn)["active"] == 1


def test_restart_child_and_delete_child_are_not_supported(tree: Tree) -> None:
    dyn = start_dyn(tree)
    address = start_child(dyn, tree.worker("w"))

    with pytest.raises(NotSupported):
        restart_child(dyn, address)
    with pytest.raises(NotSupported):
        delete_child(dyn, address)

    assert running(dyn) == [address]


def test_crashed_permanent_child_is_restarted_with_the_same_arguments(tree: Tree) -> None:
    dyn = start_dyn(tree)
    address = start_child(dyn, tree.worker("w"))

    crash(address)

    [restarted] = running(dyn)
    assert restarted not in (None, address)
    assert call(restarted, "name") == "w"
    assert tree.lines() == [
        "start w",
        "terminate w builtins.RuntimeError: w crashed on request",
        "start w",
    ]


def test_crash_restarts_only_the_crashed_child(tree: Tree) -> None:
    dyn = start_dyn(tree)
    first = start_child(dyn, tree.worker("w1"))
    second = start_child(dyn, tree.worker("w2"))

    crash(first)

    [restarted, untouched] = running(dyn)
    assert untouched == second
    assert restarted != first


def test_crashed_temporary_child_is_forgotten(tree: Tree) -> None:
    dyn = start_dyn(tree)
    address = start_child(dyn, tree.worker("w", "temporary"))

    crash(address)

    assert which_children(dyn) == []


def test_transient_child_that_stops_normally_is_forgotten(tree: Tree) -> None:
    dyn = start_dyn(tree)
    address = start_child(dyn, tree.worker("w", "transient"))

    call(address, ("stop", "normal"))

    assert which_children(dyn) == []
    assert count_children(dyn)["specs"] == 0


def test_restart_intensity_is_shared_by_all_children(tree: Tree) -> None:
    tree.fake_clock()
    dyn = start_dyn(tree, max_restarts=2, max_seconds=10)
    children = [start_child(dyn, tree.worker(f"w{i}")) for i in range(3)]
    app = tree.apps[0]

    crash(children[0])
    crash(children[1])
    assert app.is_running

    crash(children[2])  # the third restart within 10 s, though each child crashed once

    assert app.wait(timeout=1) == "shutdown"
    assert sorted(tree.lines()[-2:]) == ["terminate w0 shutdown", "terminate w1 shutdown"]


def test_shutdown_terminates_all_children(tree: Tree) -> None:
    dyn = start_dyn(tree)
    for name in ("w1", "w2", "w3"):
        start_child(dyn, tree.worker(name))

    assert tree.apps[0].stop() == "shutdown"

    assert sorted(tree.lines()[3:]) == [
        "terminate w1 shutdown",
        "terminate w2 shutdown",
        "terminate w3 shutdown",
    ]


def test_dynamic_supervisor_under_a_supervisor_is_a_supervisor_child(tree: Tree) -> None:
    dyn_spec = ChildSpec("dyn", (DynSup, (DynamicSupervisorSpec(),)), start_timeout=None)
    root = tree.start(sup_spec("root", [dyn_spec]))
    [info] = which_children(root)
    start_child(info.address, tree.worker("w"))

    assert info.type == "supervisor"
    assert count_children(root) == {"specs": 1, "active": 1, "supervisors": 1, "workers": 0}

    tree.apps[0].stop()
    assert tree.lines() == ["start w", "terminate w shutdown"]


def test_start_child_whose_init_returns_ignore_returns_none_and_keeps_nothing(tree: Tree) -> None:
    dyn = start_dyn(tree)
    tree.ignore_starts("w")

    assert start_child(dyn, tree.worker("w")) is None

    assert which_children(dyn) == []


def test_child_whose_restart_returns_ignore_is_forgotten(tree: Tree) -> None:
    # Regression test (fixed library bug): _restart_one leaves the child in the
    # DynamicSupervisor with no address; it shows in which_children as
    # ChildInfo(None, None, ...), cannot be terminated (it has no address) and
    # holds a max_children place forever. Elixir's DynamicSupervisor deletes a
    # child whose restart returns :ignore.
    dyn = start_dyn(tree, max_children=1)
    address = start_child(dyn, tree.worker("w"))
    tree.ignore_starts("w")

    crash(address)

    assert which_children(dyn) == []
    tree.heal("w")
    assert start_child(dyn, tree.worker("w")) is not None


# ---------------------------------------------------------------- OTP conformance rows


def test_extra_arguments_are_prepended_to_every_start_and_restart(tree: Tree) -> None:
    """OTP row 53: Elixir's ``extra_arguments`` come before the child's own
    start arguments, at start_child and at every restart."""
    tree.fake_clock()
    dyn = start_dyn(tree, extra_arguments=("e",))
    spec = ChildSpec("ignored", (Probe, (tree.journal, tree.control)), start_timeout=None)

    child = start_child(dyn, spec)
    assert call(child, "name") == "e"
    crash(child)

    [again] = running(dyn)
    assert again != child and call(again, "name") == "e"
    assert [line for line in tree.lines() if line.startswith("start")] == ["start e", "start e"]


def test_extra_arguments_must_be_a_sequence() -> None:
    with pytest.raises(InvalidSpec):
        DynamicSupervisorSpec(extra_arguments="e")  # type: ignore[arg-type]


def test_child_between_restart_attempts_is_terminated_by_its_old_address(tree: Tree) -> None:
    """OTP row 55: a child whose restart is failing ({restarting, OldPid})
    is found by the address of the process that died; terminate_child ends
    the retries and forgets it."""
    tree.fake_clock()
    dyn = start_dyn(tree, max_restarts=5)
    reaper = start_child(dyn, ChildSpec("reaper", Reaper, restart="temporary", start_timeout=None))
    flaky = start_child(dyn, tree.worker("f", actor=Flaky, args=(reaper,)))
    assert call(reaper, ("aim", flaky)) == "aimed"
    tree.fail_next_starts("f", 3)

    crash(flaky)  # the restart fails; meanwhile the reaper terminates it by its old address

    # (on light the reaper may still be at it when the crash call returns)
    deadline = time.monotonic() + 5.0
    while not call(reaper, "answers") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert call(reaper, "answers") == [(True, None)]
    assert running(dyn) == [reaper]
    assert tree.lines().count("failed f") == 1  # no retry after the terminate


def test_auto_shutdown_any_significant_stops_the_dynamic_supervisor(tree: Tree) -> None:
    """OTP row 60 (simple_one_for_one): any_significant."""
    dyn = start_dyn(tree, auto_shutdown="any_significant")
    keep = start_child(dyn, tree.worker("keep"))
    sig = ChildSpec(
        "s",
        (Probe, ("s", tree.journal, tree.control)),
        restart="transient",
        significant=True,
        start_timeout=None,
    )
    s = start_child(dyn, sig)
    assert call(keep, "ping") == "pong"

    assert call(s, ("stop", "normal")) == "stopping"

    assert tree.apps[0].wait(timeout=1) == "shutdown"
    assert "terminate keep shutdown" in tree.lines()


def test_significant_child_under_auto_shutdown_never_is_refused(tree: Tree) -> None:
    dyn = start_dyn(tree)
    sig = ChildSpec(
        "s", (Probe, ("s", tree.journal, tree.control)), restart="temporary", significant=True
    )

    with pytest.raises(InvalidSpec):
        start_child(dyn, sig)

    assert running(dyn) == []
