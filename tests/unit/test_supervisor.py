"""Specification of ``supervision.Supervisor`` (OTP supervisor) on simpleSystemBase.

On simpleSystemBase a call returns only once every actor has handled what it
caused: after ``call(worker, "crash")`` raises NoProc the supervisor has
already restarted the worker (or given up).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervision import (
    IGNORE,
    AlreadyPresent,
    AlreadyStarted,
    CallTimeout,
    ChildInfo,
    ChildSpec,
    Crash,
    InvalidSpec,
    NoProc,
    NotFound,
    Restarting,
    Running,
    StartError,
    SupervisorSpec,
    UnknownRequest,
    call,
    cast,
    count_children,
    current_system,
    delete_child,
    get_childspec,
    restart_child,
    start_child,
    terminate_child,
    which_children,
)
from supervision.protocol import DeleteChild, RestartChild, StartChild, TerminateChild
from tests.actors import Sup
from tests.procs import wait_until
from tests.unit_actors import Flaky, Incomparable, Reaper, Spy, Tree, sup_spec


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    with Tree(tmp_path) as t:
        yield t


def addresses(sup: Any) -> dict[Any, Any]:
    return {info.id: info.address for info in which_children(sup)}


def summary(reason: Any) -> tuple[str, str]:
    """The type and message of a Crash reason."""
    assert isinstance(reason, Crash), reason
    return (reason.type_name, reason.message)


def crash(address: Any) -> None:
    """Make the worker at ``address`` crash in a call (the caller gets NoProc)."""
    with pytest.raises(NoProc):
        call(address, "crash")


def restarted_at_new_address(sup: Any, child_id: str, old: Any, timeout: float = 5.0) -> Any:
    """Wait (bounded) until ``child_id`` runs again at an address other than ``old``."""
    deadline = time.monotonic() + timeout
    while True:
        now = addresses(sup)[child_id]
        if now not in (None, "restarting", old):
            return now
        assert time.monotonic() < deadline, f"{child_id} was not restarted"
        time.sleep(0.01)


def start_abc(tree: Tree, strategy: str = "one_for_one", **flags: Any) -> Any:
    return tree.start(
        sup_spec("root", [tree.worker("a"), tree.worker("b"), tree.worker("c")], strategy, **flags)
    )


# ---------------------------------------------------------------- start and shutdown order


def test_children_start_in_spec_order_and_stop_in_reverse_order(tree: Tree) -> None:
    root = start_abc(tree)
    assert [info.id for info in which_children(root)] == ["c", "b", "a"]  # newest first
    assert tree.lines() == ["start a", "start b", "start c"]

    assert tree.apps[0].stop() == "shutdown"

    assert tree.lines()[3:] == [
        "terminate c shutdown",
        "terminate b shutdown",
        "terminate a shutdown",
    ]


def test_nested_supervisor_stops_its_own_children_before_its_older_siblings(tree: Tree) -> None:
    tree.start(
        sup_spec(
            "root",
            [
                tree.worker("a"),
                sup_spec("mid", [tree.worker("m1"), tree.worker("m2")]),
                tree.worker("z"),
            ],
        )
    )

    tree.apps[0].stop()

    assert tree.lines() == [
        "start a",
        "start m1",
        "start m2",
        "start z",
        "terminate z shutdown",
        "terminate m2 shutdown",
        "terminate m1 shutdown",
        "terminate a shutdown",
    ]


# ---------------------------------------------------------------- strategies


def test_one_for_one_restarts_only_the_crashed_child(tree: Tree) -> None:
    root = start_abc(tree, "one_for_one")
    before = addresses(root)

    crash(before["b"])

    after = addresses(root)
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] not in (None, before["b"])
    assert tree.lines()[3:] == [
        "terminate b builtins.RuntimeError: b crashed on request",
        "start b",
    ]


def test_one_for_all_stops_the_others_in_reverse_order_and_restarts_all_in_order(
    tree: Tree,
) -> None:
    root = start_abc(tree, "one_for_all")
    before = addresses(root)

    crash(before["b"])

    after = addresses(root)
    assert all(after[i] not in (None, before[i]) for i in "abc")
    assert tree.lines()[3:] == [
        "terminate b builtins.RuntimeError: b crashed on request",
        "terminate c shutdown",
        "terminate a shutdown",
        "start a",
        "start b",
        "start c",
    ]
    assert [call(after[i], "name") for i in "abc"] == ["a", "b", "c"]


def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it(tree: Tree) -> None:
    root = start_abc(tree, "rest_for_one")
    before = addresses(root)

    crash(before["b"])

    after = addresses(root)
    assert after["a"] == before["a"]
    assert after["b"] not in (None, before["b"])
    assert after["c"] not in (None, before["c"])
    assert tree.lines()[3:] == [
        "terminate b builtins.RuntimeError: b crashed on request",
        "terminate c shutdown",
        "start b",
        "start c",
    ]


def test_rest_for_one_crash_of_the_last_child_restarts_it_alone(tree: Tree) -> None:
    root = start_abc(tree, "rest_for_one")
    before = addresses(root)

    crash(before["c"])

    after = addresses(root)
    assert (after["a"], after["b"]) == (before["a"], before["b"])
    assert after["c"] not in (None, before["c"])


def test_one_for_all_drops_a_stopped_temporary_sibling_instead_of_restarting_it(
    tree: Tree,
) -> None:
    root = tree.start(
        sup_spec("root", [tree.worker("a"), tree.worker("t", "temporary")], "one_for_all")
    )

    crash(addresses(root)["a"])

    assert [info.id for info in which_children(root)] == ["a"]
    assert tree.lines()[2:] == [
        "terminate a builtins.RuntimeError: a crashed on request",
        "terminate t shutdown",
        "start a",
    ]


# ---------------------------------------------------------------- restart types

CRASH = "crash"
EXITS = {
    "normal": "normal",
    "shutdown": "shutdown",
    "shutdown-tuple": ("shutdown", "detail"),
    "crash": CRASH,
    "other-reason": "boom",
}
RESTARTED = {
    "permanent": {"normal", "shutdown", "shutdown-tuple", "crash", "other-reason"},
    "transient": {"crash", "other-reason"},
    "temporary": set(),
}


@pytest.mark.parametrize("exit_kind", list(EXITS))
@pytest.mark.parametrize("restart", list(RESTARTED))
def test_restart_type_decides_whether_an_exited_child_is_restarted(
    tree: Tree, restart: str, exit_kind: str
) -> None:
    root = tree.start(sup_spec("root", [tree.worker("w", restart), tree.worker("other")]))
    before = addresses(root)

    if EXITS[exit_kind] == CRASH:
        crash(before["w"])
    else:
        call(before["w"], ("stop", EXITS[exit_kind]))

    after = addresses(root)
    assert after["other"] == before["other"]
    if exit_kind in RESTARTED[restart]:
        assert after["w"] not in (None, before["w"])
        assert call(after["w"], "ping") == "pong"
    elif restart == "temporary":
        assert "w" not in after  # its spec is dropped
    else:
        assert after["w"] is None  # kept, not running
    assert tree.apps[0].is_running


def test_temporary_child_is_removed_after_it_exits(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("t", "temporary"), tree.worker("p")]))

    call(addresses(root)["t"], ("stop", "normal"))

    assert [info.id for info in which_children(root)] == ["p"]
    assert count_children(root) == {"specs": 1, "active": 1, "supervisors": 0, "workers": 1}
    with pytest.raises(NotFound):
        get_childspec(root, "t")


# ---------------------------------------------------------------- intensity


def test_crashes_up_to_max_restarts_are_survived_and_one_more_shuts_the_supervisor_down(
    tree: Tree,
) -> None:
    fake = tree.fake_clock()
    root = tree.start(
        sup_spec("root", [tree.worker("a"), tree.worker("b")], max_restarts=2, max_seconds=10)
    )
    app = tree.apps[0]

    for _ in range(2):
        crash(addresses(root)["a"])
        fake.advance(1)
    assert app.is_running
    assert call(addresses(root)["a"], "ping") == "pong"

    crash(addresses(root)["a"])

    assert app.wait(timeout=1) == "shutdown"
    assert not app.is_running
    assert tree.lines()[-2:] == [
        "terminate a builtins.RuntimeError: a crashed on request",
        "terminate b shutdown",
    ]


def test_restarts_older_than_max_seconds_do_not_count(tree: Tree) -> None:
    fake = tree.fake_clock()
    root = tree.start(sup_spec("root", [tree.worker("a")], max_restarts=2, max_seconds=10))
    app = tree.apps[0]
    crash(addresses(root)["a"])  # t=0
    fake.advance(5)
    crash(addresses(root)["a"])  # t=5
    fake.advance(6)

    crash(addresses(root)["a"])  # t=11: the restart at t=0 has left the window

    assert app.is_running
    crash(addresses(root)["a"])  # t=11 again: 5, 11 and 11 lie within 10 s
    assert app.wait(timeout=1) == "shutdown"


@pytest.mark.parametrize(
    ("first", "second", "survives"),
    [
        (1000.1, 1001.9, False),  # same stamps as 1000 and 1001: within 1 s
        (1000.9, 1002.0, True),  # 1000 and 1002: out of it, though 1.1 s apart
        (1000.0, 1001.0, False),  # the window is inclusive: t >= now - max_seconds
    ],
)
def test_restart_intensity_counts_in_whole_seconds_as_otp(
    tree: Tree, first: float, second: float, survives: bool
) -> None:
    """OTP row 13: restarts are stamped with ``erlang:monotonic_time(1)``
    (whole seconds), so with max_restarts=1, max_seconds=1 two restarts at
    1000.1 s and 1001.9 s (1.8 s apart) exceed the intensity, and two at
    1000.9 s and 1002.0 s (1.1 s apart) do not."""
    fake = tree.fake_clock()
    root = tree.start(sup_spec("root", [tree.worker("a")], max_restarts=1, max_seconds=1))
    app = tree.apps[0]
    fake.now = first
    crashed = addresses(root)["a"]
    crash(crashed)
    # The first restart is stamped before the clock moves on (on light the
    # caller's NoProc can come before the supervisor has seen the exit).
    restarted_at_new_address(root, "a", crashed)
    fake.now = second

    crash(addresses(root)["a"])

    if survives:
        assert app.is_running
    else:
        assert app.wait(timeout=1) == "shutdown"


def test_max_restarts_zero_makes_the_first_crash_escalate(tree: Tree) -> None:
    tree.fake_clock()
    root = tree.start(sup_spec("root", [tree.worker("a")], max_restarts=0))

    crash(addresses(root)["a"])

    assert tree.apps[0].wait(timeout=1) == "shutdown"
    assert tree.lines() == ["start a", "terminate a builtins.RuntimeError: a crashed on request"]


def test_failed_restart_is_retried_until_it_succeeds(tree: Tree) -> None:
    tree.fake_clock()
    root = tree.start(sup_spec("root", [tree.worker("f", actor=Flaky)], max_restarts=3))
    tree.fail_next_starts("f", 2)

    crash(addresses(root)["f"])

    restarted = addresses(root)["f"]
    assert call(restarted, "ping") == "pong"
    assert tree.lines() == [
        "start f",
        "terminate f builtins.RuntimeError: f crashed on request",
        "failed f",
        "failed f",
        "start f",
    ]


def test_each_attempt_of_a_failing_restart_counts_toward_intensity(tree: Tree) -> None:
    # a crash, then a restart that fails twice: 3 restarts where 2 are allowed
    tree.fake_clock()
    root = tree.start(sup_spec("root", [tree.worker("f", actor=Flaky)], max_restarts=2))
    tree.fail_next_starts("f", 2)

    crash(addresses(root)["f"])

    assert tree.apps[0].wait(timeout=1) == "shutdown"
    assert tree.lines()[-2:] == ["failed f", "failed f"]


def test_child_shows_as_restarting_between_failed_restart_attempts(tree: Tree) -> None:
    tree.fake_clock()
    spy = ChildSpec("spy", Spy, start_timeout=None, shutdown="infinity")
    root = tree.start(sup_spec("root", [spy], max_restarts=5))
    spy_address = addresses(root)["spy"]
    start_child(root, tree.worker("f", actor=Flaky, args=(spy_address,)))
    tree.fail_next_starts("f", 2)

    crash(addresses(root)["f"])

    # the spy looked while the 1st and the 2nd attempts were failing
    seen = call(spy_address, "seen")
    assert [{i.id: i.address for i in infos}["f"] for infos in seen] == [
        "restarting",
        "restarting",
    ]
    assert addresses(root)["f"] not in (None, "restarting")


def _root_with_reaper_and_flaky(tree: Tree, requests: list[Any]) -> tuple[Any, Any]:
    """A root with a Reaper that sends ``requests`` (one per failing start of
    ``f``) and a Flaky ``f`` that tells it when its restart fails."""
    reaper_spec = ChildSpec("reaper", Reaper, start_timeout=None, shutdown="infinity")
    root = tree.start(sup_spec("root", [reaper_spec], max_restarts=5))
    reaper = addresses(root)["reaper"]
    start_child(root, tree.worker("f", actor=Flaky, args=(reaper,)))
    assert call(reaper, ("send", requests)) == "aimed"
    return root, reaper


def test_restart_and_delete_of_a_restarting_child_raise_restarting(tree: Tree) -> None:
    """OTP row 32: while a child's restart is failing, restart_child and
    delete_child answer ``{error, restarting}``; the retries go on."""
    tree.fake_clock()
    root, reaper = _root_with_reaper_and_flaky(tree, [RestartChild("f"), DeleteChild("f")])
    tree.fail_next_starts("f", 2)

    crash(addresses(root)["f"])

    answers = wait_until(lambda: len(call(reaper, "answers")) == 2 and call(reaper, "answers"),
                         "both requests answered", timeout=5.0)
    assert [ok for ok, _ in answers] == [False, False]
    assert all(isinstance(value, Restarting) for _, value in answers)
    wait_until(lambda: addresses(root)["f"] not in (None, "restarting"), "f runs again", 5.0)
    assert tree.lines().count("failed f") == 2


def test_terminate_child_of_a_restarting_child_stops_the_retries_and_keeps_its_spec(
    tree: Tree,
) -> None:
    """OTP row 33: terminate_child of a child whose restart is failing cancels
    the retries; the spec stays, and restart_child starts it again."""
    tree.fake_clock()
    root, reaper = _root_with_reaper_and_flaky(tree, [TerminateChild("f")])
    tree.fail_next_starts("f", 1)

    crash(addresses(root)["f"])

    wait_until(lambda: call(reaper, "answers") == [(True, None)], "terminated", timeout=5.0)
    assert addresses(root)["f"] is None  # stopped, spec kept
    assert tree.lines().count("failed f") == 1  # no retry after the terminate
    assert restart_child(root, "f") not in (None, "restarting")


class IgnoringSup(Sup):
    """A supervisor whose ``init`` returns IGNORE."""

    def init(self, *args: Any) -> Any:
        return IGNORE


def test_a_supervisor_whose_init_returns_ignore_is_started_as_ignored(tree: Tree) -> None:
    """OTP row 25: a supervisor's ``init`` returning ``ignore`` makes its
    start return ``ignore`` (``start_child`` returns None, the spec stays)."""
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    spec = ChildSpec("s", (IgnoringSup, (SupervisorSpec([]),)), type="supervisor")
    assert start_child(root, spec) is None

    assert addresses(root)["s"] is None


# ---------------------------------------------------------------- start_child


def test_start_child_adds_a_child_after_the_others_and_returns_its_address(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    address = start_child(root, tree.worker("b"))

    assert which_children(root)[0] == ChildInfo(
        "b", address, "worker", (tree.worker("b").actor_class,)
    )
    assert call(address, "name") == "b"


def test_start_child_with_the_id_of_a_running_child_raises_already_started_with_its_address(
    tree: Tree,
) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    with pytest.raises(AlreadyStarted) as raised:
        start_child(root, tree.worker("a"))

    assert raised.value.child_id == "a"
    assert raised.value.address == addresses(root)["a"]


def test_start_child_with_the_id_of_a_stopped_child_raises_already_present(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))
    terminate_child(root, "a")

    with pytest.raises(AlreadyPresent):
        start_child(root, tree.worker("a"))


def test_start_child_whose_init_fails_raises_start_error_and_keeps_no_spec(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))
    tree.fail_starts("b")

    with pytest.raises(StartError) as raised:
        start_child(root, tree.worker("b"))

    assert raised.value.child_id == "b"
    assert summary(raised.value.reason) == ("builtins.RuntimeError", "b told to fail")
    assert list(addresses(root)) == ["a"]


# ---------------------------------------------------------------- terminate, restart, delete


def test_terminate_child_stops_it_and_keeps_its_spec(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a"), tree.worker("b")]))

    terminate_child(root, "a")

    assert addresses(root)["a"] is None
    assert tree.lines()[-1] == "terminate a shutdown"
    assert get_childspec(root, "a").id == "a"
    assert count_children(root) == {"specs": 2, "active": 1, "supervisors": 0, "workers": 2}


def test_terminate_child_of_a_temporary_child_drops_its_spec(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("t", "temporary")]))

    terminate_child(root, "t")

    assert which_children(root) == []


def test_terminate_child_with_an_unknown_id_raises_not_found(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    with pytest.raises(NotFound):
        terminate_child(root, "zz")


def test_terminated_child_is_not_restarted_by_the_supervisor(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    terminate_child(root, "a")
    terminate_child(root, "a")  # stopping a stopped child is a no-op

    assert addresses(root)["a"] is None
    assert tree.lines() == ["start a", "terminate a shutdown"]


def test_restart_child_of_a_running_child_raises_running(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    with pytest.raises(Running):
        restart_child(root, "a")


def test_restart_child_with_an_unknown_id_raises_not_found(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    with pytest.raises(NotFound):
        restart_child(root, "zz")


def test_restart_child_starts_a_stopped_child_again_and_returns_its_address(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))
    old = addresses(root)["a"]
    terminate_child(root, "a")

    address = restart_child(root, "a")

    assert address not in (None, old)
    assert addresses(root)["a"] == address
    assert call(address, "name") == "a"
    assert tree.lines() == ["start a", "terminate a shutdown", "start a"]


def test_delete_child_of_a_running_child_raises_running(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    with pytest.raises(Running):
        delete_child(root, "a")
    assert "a" in addresses(root)


def test_delete_child_drops_the_spec_of_a_stopped_child(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a"), tree.worker("b")]))
    terminate_child(root, "a")

    delete_child(root, "a")

    assert list(addresses(root)) == ["b"]
    with pytest.raises(NotFound):
        delete_child(root, "a")
    assert start_child(root, tree.worker("a")) is not None  # the id is free again


# ---------------------------------------------------------------- introspection


def test_count_children_counts_specs_running_children_supervisors_and_workers(tree: Tree) -> None:
    root = tree.start(
        sup_spec("root", [tree.worker("a"), sup_spec("mid", [tree.worker("m")]), tree.worker("b")])
    )
    assert count_children(root) == {"specs": 3, "active": 3, "supervisors": 1, "workers": 2}

    terminate_child(root, "b")

    assert count_children(root) == {"specs": 3, "active": 2, "supervisors": 1, "workers": 2}
    assert count_children(addresses(root)["mid"]) == {
        "specs": 1,
        "active": 1,
        "supervisors": 0,
        "workers": 1,
    }


def test_which_children_describes_each_child_newest_first(tree: Tree) -> None:
    """OTP row 42: which_children lists a Supervisor's children in reverse
    start order (OTP keeps them newest first), children added by start_child
    included."""
    root = tree.start(sup_spec("root", [tree.worker("a"), sup_spec("mid", [])]))
    start_child(root, tree.worker("z"))

    [z, mid, a] = which_children(root)

    assert z.id == "z"

    assert (a.id, a.type, a.modules) == ("a", "worker", (tree.worker("a").actor_class,))
    assert (mid.id, mid.type, mid.modules) == ("mid", "supervisor", (Sup,))
    assert call(a.address, "ping") == "pong"
    assert which_children(mid.address) == []


def test_get_childspec_returns_the_spec_given_and_raises_not_found_for_unknown_ids(
    tree: Tree,
) -> None:
    spec = tree.worker("a", "transient")
    root = tree.start(sup_spec("root", [spec]))

    assert get_childspec(root, "a") == spec
    with pytest.raises(NotFound):
        get_childspec(root, "zz")


# ---------------------------------------------------------------- escalation and start failure


def test_nested_supervisor_exceeding_its_intensity_is_restarted_by_its_parent(tree: Tree) -> None:
    tree.fake_clock()
    root = tree.start(
        sup_spec("root", [sup_spec("mid", [tree.worker("w")], max_restarts=0)], max_restarts=1)
    )
    mid = addresses(root)["mid"]

    crash(addresses(mid)["w"])

    new_mid = addresses(root)["mid"]
    assert new_mid not in (None, mid)
    assert call(addresses(new_mid)["w"], "ping") == "pong"
    assert tree.apps[0].is_running


def test_escalation_that_exceeds_the_root_intensity_stops_the_application(tree: Tree) -> None:
    tree.fake_clock()
    root = tree.start(
        sup_spec(
            "root",
            [tree.worker("a"), sup_spec("mid", [tree.worker("w")], max_restarts=0)],
            max_restarts=1,
        )
    )

    crash(addresses(addresses(root)["mid"])["w"])  # mid gives up, root restarts it (1 of 1)
    crash(addresses(addresses(root)["mid"])["w"])  # mid gives up, root gives up

    assert tree.apps[0].wait(timeout=1) == "shutdown"
    assert tree.lines()[-1] == "terminate a shutdown"


def test_initial_start_failure_stops_the_started_children_and_fails_the_application_start(
    tree: Tree,
) -> None:
    tree.fail_starts("b")
    app = tree.app(sup_spec("root", [tree.worker("a"), tree.worker("b"), tree.worker("c")]))

    with pytest.raises(StartError) as raised:
        app.start()

    assert raised.value.child_id == "root"
    shutdown, (what, child_id, reason) = raised.value.reason
    assert (shutdown, what, child_id) == ("shutdown", "failed_to_start_child", "b")
    assert summary(reason) == ("builtins.RuntimeError", "b told to fail")
    assert tree.lines() == ["start a", "terminate a shutdown"]
    assert not app.is_running


def test_start_failure_of_a_nested_supervisor_fails_its_parent_with_the_nested_reason(
    tree: Tree,
) -> None:
    tree.fail_starts("m")
    app = tree.app(sup_spec("root", [tree.worker("a"), sup_spec("mid", [tree.worker("m")])]))

    with pytest.raises(StartError) as raised:
        app.start()

    shutdown, (what, child_id, (inner_shutdown, (inner_what, inner_id, reason))) = (
        raised.value.reason
    )
    assert (shutdown, what, child_id) == ("shutdown", "failed_to_start_child", "mid")
    assert (inner_shutdown, inner_what, inner_id) == ("shutdown", "failed_to_start_child", "m")
    assert summary(reason) == ("builtins.RuntimeError", "m told to fail")
    assert tree.lines() == ["start a", "terminate a shutdown"]


# ---------------------------------------------------------------- malformed requests


def test_unknown_request_is_answered_with_unknown_request_and_the_supervisor_keeps_working(
    tree: Tree,
) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    with pytest.raises(UnknownRequest):
        call(root, "garbage")

    assert start_child(root, tree.worker("b")) is not None
    assert list(addresses(root)) == ["b", "a"]


def test_start_child_with_something_else_than_a_child_spec_raises_invalid_spec(
    tree: Tree,
) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    with pytest.raises(InvalidSpec):
        start_child(root, "not a spec")  # type: ignore[arg-type]
    with pytest.raises(InvalidSpec):
        start_child(root, SupervisorSpec())  # type: ignore[arg-type]

    assert start_child(root, tree.worker("b")) is not None
    assert tree.apps[0].is_running


def test_requests_with_unhashable_ids_are_answered_and_the_supervisor_keeps_working(
    tree: Tree,
) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    for request in (TerminateChild(["x"]), TerminateChild({"x": 1})):
        with pytest.raises(NotFound):
            call(root, request)
    with pytest.raises(NotFound):
        get_childspec(root, ["x"])  # type: ignore[arg-type]

    assert call(addresses(root)["a"], "ping") == "pong"
    assert tree.apps[0].is_running


def test_casts_and_raw_messages_to_a_supervisor_are_ignored(tree: Tree) -> None:
    root = tree.start(sup_spec("root", [tree.worker("a")]))
    before = addresses(root)

    cast(root, "garbage")
    cast(root, StartChild(None))  # type: ignore[arg-type]
    current_system().tell(root, "raw message")

    assert addresses(root) == before
    assert tree.apps[0].is_running


def test_request_with_a_child_id_that_cannot_be_compared_is_answered_and_the_supervisor_lives_on(
    tree: Tree,
) -> None:
    # Regression test (fixed library bug): the supervisor's call handling only turns a
    # SupervisionError into an error reply; the TypeError raised while looking
    # the id up escapes, the supervisor crashes (the docs say no request can
    # make it crash), and the caller is not even answered (CallTimeout, where a
    # crashing Server answers NoProc).
    root = tree.start(sup_spec("root", [tree.worker("a")]))

    with pytest.raises(Exception) as raised:
        call(root, TerminateChild(Incomparable()), timeout=1)

    assert not isinstance(raised.value, CallTimeout | NoProc)
    assert tree.apps[0].is_running
    assert call(addresses(root)["a"], "ping") == "pong"


# ---------------------------------------------------------------- auto_shutdown (OTP 24)


def significant(tree: Tree, name: str, restart: str = "transient") -> ChildSpec:
    return dataclasses.replace(tree.worker(name, restart), significant=True)


def auto_root(tree: Tree, auto_shutdown: str, children: list[ChildSpec]) -> Any:
    spec = SupervisorSpec(children, auto_shutdown=auto_shutdown)  # type: ignore[arg-type]
    return tree.start(ChildSpec("root", (Sup, (spec,)), start_timeout=None))


def test_any_significant_child_ending_normally_shuts_the_supervisor_down(tree: Tree) -> None:
    """OTP row 60: with auto_shutdown any_significant, a transient
    significant child that exits normally (not restarted) makes the
    supervisor stop its other children in reverse order and exit shutdown."""
    root = auto_root(
        tree, "any_significant", [tree.worker("a"), significant(tree, "s"), tree.worker("c")]
    )

    assert call(addresses(root)["s"], ("stop", "normal")) == "stopping"

    assert tree.apps[0].wait(timeout=1) == "shutdown"
    assert tree.lines()[3:] == [
        "terminate s normal",
        "terminate c shutdown",
        "terminate a shutdown",
    ]


def test_significant_child_that_is_restarted_does_not_shut_the_supervisor_down(
    tree: Tree,
) -> None:
    tree.fake_clock()
    root = auto_root(tree, "any_significant", [significant(tree, "s")])
    before = addresses(root)["s"]

    crash(before)  # abnormal: a transient child is restarted

    assert tree.apps[0].is_running
    assert addresses(root)["s"] not in (None, before)


def test_all_significant_shuts_down_when_the_last_significant_child_ends(tree: Tree) -> None:
    root = auto_root(
        tree,
        "all_significant",
        [tree.worker("a"), significant(tree, "s1", "temporary"), significant(tree, "s2")],
    )

    crash(addresses(root)["s1"])  # temporary: never restarted, whatever the reason
    assert tree.apps[0].is_running
    assert call(addresses(root)["s2"], ("stop", ("shutdown", "done"))) == "stopping"

    assert tree.apps[0].wait(timeout=1) == "shutdown"
    assert tree.lines()[-1] == "terminate a shutdown"


def test_terminate_child_of_a_significant_child_does_not_shut_the_supervisor_down(
    tree: Tree,
) -> None:
    root = auto_root(tree, "any_significant", [tree.worker("a"), significant(tree, "s")])

    terminate_child(root, "s")

    assert tree.apps[0].is_running
    assert addresses(root)["s"] is None


def test_significant_flag_is_refused_for_permanent_children_and_under_never() -> None:
    with pytest.raises(InvalidSpec):
        ChildSpec("s", Sup, restart="permanent", significant=True)
    transient = ChildSpec("s", Sup, restart="transient", significant=True)
    with pytest.raises(InvalidSpec):
        SupervisorSpec([transient])  # auto_shutdown "never"
    with pytest.raises(InvalidSpec):
        SupervisorSpec(auto_shutdown="sometimes")  # type: ignore[arg-type]


def test_start_child_of_a_significant_child_under_never_raises_invalid_spec(tree: Tree) -> None:
    root = tree.start(sup_spec("root", []))

    with pytest.raises(InvalidSpec):
        start_child(root, significant(tree, "s"))

    assert addresses(root) == {}


# ---------------------------------------------------------------- API timeouts


@pytest.mark.parametrize(
    "helper",
    [
        start_child,
        terminate_child,
        restart_child,
        delete_child,
        which_children,
        count_children,
        get_childspec,
    ],
)
def test_supervisor_helpers_wait_without_timeout_by_default(helper: Any) -> None:
    """OTP row 50: supervisor:call/2 is gen_server:call(Sup, Req, infinity)."""
    assert inspect.signature(helper).parameters["timeout"].default is None
