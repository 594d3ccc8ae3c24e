"""Local name registration (OTP's ``register/2``, ``whereis/1``,
``unregister/1``, ``{local, Name}`` and ``{already_started, Pid}``;
docs/supervision.md row 81), on simpleSystemBase and, through
``tests/unit/test_light.py``, on ``base="light"``. An exit reaches the registry
asynchronously on light, so what follows an exit is a bounded wait."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from thespian.actors import Actor

import supervision.registry
from supervision import (
    AlreadyStarted,
    CallTimeout,
    ChildSpec,
    DynamicSupervisorSpec,
    InvalidSpec,
    NameTaken,
    NoProc,
    NotFound,
    call,
    cast,
    count_children,
    current_system,
    register,
    start_child,
    stop,
    terminate_child,
    unregister,
    whereis,
    which_children,
)
from supervision.protocol import Demonitor
from supervision.registry import _local_registry
from tests.actors import DynSup
from tests.otp_actors import SelfFinder
from tests.procs import wait_until
from tests.unit_actors import Tree, sup_spec

T = TypeVar("T")


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    with Tree(tmp_path) as t:
        yield t


def start(tree: Tree, *specs: ChildSpec) -> tuple[Any, dict[Any, Any]]:
    root = tree.start(sup_spec("root", list(specs), max_restarts=100))
    return root, {info.id: info.address for info in which_children(root)}


def named(spec: ChildSpec, name: Any) -> ChildSpec:
    return dataclasses.replace(spec, name=name)


def address_of(sup: Any, child_id: Any) -> Any:
    return next(info.address for info in which_children(sup) if info.id == child_id)


# ---------------------------------------------------------------- register / whereis / unregister


def test_register_makes_whereis_give_the_address_until_unregister(tree: Tree) -> None:
    _, kids = start(tree, tree.worker("a"))

    register("svc", kids["a"])
    assert whereis("svc") == kids["a"]

    unregister("svc")
    assert whereis("svc") is None
    assert call(kids["a"], "ping") == "pong"  # unregistering leaves the actor alone


def test_whereis_of_a_name_nobody_holds_is_none(tree: Tree) -> None:
    start(tree, tree.worker("a"))

    assert whereis("nobody") is None
    assert whereis(("tuple", 1)) is None


def test_registering_a_taken_name_raises_name_taken_with_the_holder(tree: Tree) -> None:
    _, kids = start(tree, tree.worker("a"), tree.worker("b"))
    register("svc", kids["a"])

    with pytest.raises(NameTaken) as raised:
        register("svc", kids["b"])

    assert raised.value.address == kids["a"]
    assert raised.value.name == "svc"
    assert whereis("svc") == kids["a"]


def test_an_actor_has_at_most_one_name(tree: Tree) -> None:
    _, kids = start(tree, tree.worker("a"))
    register("first", kids["a"])

    with pytest.raises(InvalidSpec, match="registered as 'first'"):
        register("second", kids["a"])

    assert whereis("second") is None


@pytest.mark.parametrize("bad", [None, ["a", "list"], {"a": 1}, lambda: 0])
def test_an_invalid_name_raises_invalid_spec_naming_the_name(tree: Tree, bad: Any) -> None:
    _, kids = start(tree, tree.worker("a"))

    with pytest.raises(InvalidSpec, match="name"):
        register(bad, kids["a"])
    with pytest.raises(InvalidSpec, match="name"):
        whereis(bad)
    if bad is not None:  # name=None is a child without a name
        with pytest.raises(InvalidSpec, match="name"):
            named(tree.worker("b"), bad)


def test_an_address_is_not_a_name(tree: Tree) -> None:
    _, kids = start(tree, tree.worker("a"))

    with pytest.raises(InvalidSpec, match="not an actor address"):
        register(kids["a"], kids["a"])
    with pytest.raises(InvalidSpec, match="address"):
        register("svc", "not an address")


def test_registering_a_dead_actor_raises_noproc(tree: Tree) -> None:
    root, kids = start(tree, tree.worker("a", "temporary"))
    terminate_child(root, "a")

    with pytest.raises(NoProc) as raised:
        register("svc", kids["a"])

    assert raised.value.reason == "noproc"
    assert whereis("svc") is None


class Plain(Actor):  # type: ignore[misc]
    """A Thespian actor that is not a supervision actor: it ignores every message."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        return None


def test_registering_an_actor_that_never_confirms_times_out_and_leaves_the_name_free(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervision.registry, "CONFIRM_TIMEOUT", 0.2)
    _, kids = start(tree, tree.worker("a"))
    plain = current_system().createActor(Plain)

    with pytest.raises(CallTimeout):
        register("svc", plain)

    assert whereis("svc") is None
    register("svc", kids["a"])
    assert whereis("svc") == kids["a"]


def test_unregister_of_a_name_nobody_holds_raises_not_found(tree: Tree) -> None:
    start(tree, tree.worker("a"))

    with pytest.raises(NotFound):
        unregister("nobody")


# ---------------------------------------------------------------- freed on exit


def test_name_is_freed_when_its_actor_crashes(tree: Tree) -> None:
    _, kids = start(tree, tree.worker("a", "temporary"))
    register("svc", kids["a"])

    with pytest.raises(NoProc):
        call(kids["a"], "crash")

    wait_until(lambda: whereis("svc") is None, "the name is freed")


def test_name_is_freed_when_its_actor_stops_normally(tree: Tree) -> None:
    _, kids = start(tree, tree.worker("a", "temporary"))
    register("svc", kids["a"])

    stop(kids["a"])

    wait_until(lambda: whereis("svc") is None, "the name is freed")


def test_name_is_freed_when_its_actor_is_brutally_killed(tree: Tree) -> None:
    root, kids = start(tree, tree.worker("a", shutdown="brutal_kill"))
    register("svc", kids["a"])

    terminate_child(root, "a")

    wait_until(lambda: whereis("svc") is None, "the name is freed")


def test_a_freed_name_can_be_registered_again_by_another_actor(tree: Tree) -> None:
    _, kids = start(tree, tree.worker("a", "temporary"), tree.worker("b"))
    register("svc", kids["a"])
    stop(kids["a"])
    wait_until(lambda: whereis("svc") is None, "the name is freed")

    register("svc", kids["b"])

    assert whereis("svc") == kids["b"]


def test_a_holder_whose_exit_the_registry_missed_loses_its_name_to_a_new_registrant(
    tree: Tree,
) -> None:
    # the registry asks the holder again before refusing a name (a restarted
    # child may register while its predecessor's Down is still on its way)
    _, kids = start(tree, tree.worker("a", "temporary"), tree.worker("b"))
    register("svc", kids["a"])
    registry = _local_registry(current_system())
    assert registry is not None
    current_system().tell(kids["a"], Demonitor(registry._names["svc"].ref))  # its Down is lost
    stop(kids["a"])
    assert whereis("svc") == kids["a"]  # the registry did not see the exit

    register("svc", kids["b"])

    assert whereis("svc") == kids["b"]


# ---------------------------------------------------------------- ChildSpec(name=...)


def test_child_spec_name_is_registered_before_init_runs(tree: Tree) -> None:
    spec = named(tree.worker("a", actor=SelfFinder, args=("svc",)), "svc")
    _, kids = start(tree, spec)

    assert call(kids["a"], "found") is True
    assert whereis("svc") == kids["a"]


def test_second_child_with_the_same_name_fails_to_start_with_already_started(
    tree: Tree,
) -> None:
    dyn = tree.start(ChildSpec("dyn", (DynSup, (DynamicSupervisorSpec(),)), start_timeout=None))
    spec = named(tree.worker("a", "temporary"), "svc")
    first = start_child(dyn, spec)

    with pytest.raises(AlreadyStarted) as raised:
        start_child(dyn, spec)

    assert raised.value.address == first
    assert raised.value.name == "svc"
    assert count_children(dyn)["active"] == 1
    assert whereis("svc") == first
    assert tree.lines().count("start a") == 1  # the second one never ran its init


def test_start_child_of_a_supervisor_with_a_taken_name_raises_already_started(
    tree: Tree,
) -> None:
    root, kids = start(tree, named(tree.worker("a"), "svc"))

    with pytest.raises(AlreadyStarted) as raised:
        start_child(root, named(tree.worker("b"), "svc"))

    assert raised.value.address == kids["a"]
    assert [info.id for info in which_children(root)] == ["a"]


def test_restarted_child_holds_its_name_again(tree: Tree) -> None:
    root, kids = start(tree, named(tree.worker("a"), "svc"))
    assert whereis("svc") == kids["a"]

    with pytest.raises(NoProc):
        call(kids["a"], "crash")

    def restarted() -> Any:
        address = address_of(root, "a")
        return address not in (None, kids["a"], "restarting") and address

    new = wait_until(restarted, "the child is restarted")
    wait_until(lambda: whereis("svc") == new, "the restarted child holds the name")
    assert call("svc", "ping") == "pong"


# ---------------------------------------------------------------- call / cast by name


def test_call_and_cast_by_name_reach_the_holder(tree: Tree) -> None:
    _, kids = start(tree, named(tree.worker("a"), "svc"))

    assert call("svc", "name") == "a"
    assert whereis("svc") == kids["a"]
    cast("svc", "hello")
    wait_until(lambda: call("svc", "casts") == ["hello"], "the cast is handled")


def test_call_to_an_unregistered_name_raises_noproc_at_once(tree: Tree) -> None:
    start(tree, tree.worker("a"))

    began = time.monotonic()
    with pytest.raises(NoProc) as raised:
        call("nobody", "ping", timeout=30)

    assert raised.value.reason == "noproc"
    assert time.monotonic() - began < 5
    cast("nobody", "dropped")  # a cast to nobody is dropped, as OTP's


def test_call_to_none_raises_noproc_at_once_and_a_cast_to_none_is_dropped(tree: Tree) -> None:
    start(tree, tree.worker("a"))

    with pytest.raises(NoProc) as raised:
        call(None, "ping", timeout=30)

    assert raised.value.reason == "noproc"
    cast(None, "dropped")
