"""Specification of child specs and supervisor flags (``supervision.spec``)."""

from __future__ import annotations

from typing import Any

import pytest
from thespian.actors import Actor

from supervision import (
    ChildSpec,
    DynamicSupervisorSpec,
    InvalidSpec,
    Start,
    SupervisorSpec,
)
from tests.actors import DynSup, Sup, Worker


def worker(child_id: Any = "w", **fields: Any) -> ChildSpec:
    return ChildSpec(child_id, (Worker, ("w",)), **fields)


# ---------------------------------------------------------------- ChildSpec


def test_child_spec_defaults_are_otp_defaults_for_a_worker() -> None:
    spec = worker()

    assert spec.start == Start(Worker, ("w",), {})
    assert spec.actor_class is Worker
    assert (spec.restart, spec.shutdown, spec.type, spec.start_timeout) == (
        "permanent",
        5.0,
        "worker",
        30.0,
    )


@pytest.mark.parametrize("supervisor_class", [Sup, DynSup])
def test_child_spec_infers_type_supervisor_and_infinite_shutdown_for_supervisors(
    supervisor_class: type,
) -> None:
    spec = ChildSpec("s", (supervisor_class, (SupervisorSpec(),)))

    assert (spec.type, spec.shutdown) == ("supervisor", "infinity")


@pytest.mark.parametrize(
    "start",
    [Worker, (Worker,), (Worker, ()), (Worker, [], {}), Start(Worker)],
    ids=["class", "1-tuple", "2-tuple", "3-tuple", "Start"],
)
def test_child_spec_start_accepts_a_class_a_tuple_or_a_start(start: Any) -> None:
    assert ChildSpec("w", start).start == Start(Worker, (), {})


def test_child_spec_start_keeps_args_and_kwargs() -> None:
    spec = ChildSpec("w", (Worker, ["w", "journal"], {"terminate_delay": 1}))

    assert spec.start == Start(Worker, ("w", "journal"), {"terminate_delay": 1})


@pytest.mark.parametrize("shutdown", ["brutal_kill", "infinity", 1, 0.5])
def test_child_spec_accepts_each_kind_of_shutdown(shutdown: Any) -> None:
    assert worker(shutdown=shutdown).shutdown == shutdown


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
def test_child_spec_accepts_each_restart_type(restart: Any) -> None:
    assert worker(restart=restart).restart == restart


@pytest.mark.parametrize("restart", ["sometimes", None, 1, "Permanent"])
def test_child_spec_with_a_bad_restart_raises_invalid_spec_naming_restart(restart: Any) -> None:
    with pytest.raises(InvalidSpec, match=r"^restart"):
        worker(restart=restart)


@pytest.mark.parametrize("shutdown", [0, -1, "later", True, "5", float("nan")])
def test_child_spec_with_a_bad_shutdown_raises_invalid_spec_naming_shutdown(
    shutdown: Any,
) -> None:
    with pytest.raises(InvalidSpec, match=r"^shutdown"):
        worker(shutdown=shutdown)


@pytest.mark.parametrize("child_type", ["manager", "Worker", 1])
def test_child_spec_with_a_bad_type_raises_invalid_spec_naming_type(child_type: Any) -> None:
    with pytest.raises(InvalidSpec, match=r"^type"):
        worker(type=child_type)


@pytest.mark.parametrize("start_timeout", [0, -1, "soon"])
def test_child_spec_with_a_bad_start_timeout_raises_invalid_spec_naming_it(
    start_timeout: Any,
) -> None:
    with pytest.raises(InvalidSpec, match=r"^start_timeout"):
        worker(start_timeout=start_timeout)


def test_child_spec_with_an_unhashable_id_raises_invalid_spec_naming_id() -> None:
    with pytest.raises(InvalidSpec, match=r"^id"):
        worker(["w"])


class NotAnActor:
    pass


@pytest.mark.parametrize(
    "start",
    [
        (NotAnActor, ()),
        (int, ()),
        (Actor, ()),  # a Thespian actor that does not speak the supervision protocol
    ],
    ids=["plain-class", "builtin-class", "thespian-actor"],
)
def test_child_spec_whose_start_class_is_not_a_supervision_actor_raises_invalid_spec(
    start: Any,
) -> None:
    with pytest.raises(InvalidSpec, match=r"^start: .* is not a supervision actor"):
        ChildSpec("w", start)


@pytest.mark.parametrize(
    "start",
    [Worker(), (Worker(), ()), ("tests.actors.Worker", ())],
    ids=["instance", "instance-in-tuple", "class-name"],
)
def test_child_spec_whose_start_is_not_a_class_raises_invalid_spec(start: Any) -> None:
    with pytest.raises(InvalidSpec, match=r"^start"):
        ChildSpec("w", start)


@pytest.mark.parametrize(
    "start",
    [(Worker, "w"), (Worker, ("w",), ["kw"]), (), (Worker, (), {}, "extra"), "Worker"],
    ids=["args-not-tuple", "kwargs-not-dict", "empty", "too-long", "string"],
)
def test_child_spec_with_a_malformed_start_raises_invalid_spec_naming_start(start: Any) -> None:
    with pytest.raises(InvalidSpec, match=r"^start"):
        ChildSpec("w", start)


def test_invalid_spec_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        worker(restart="never")


# ---------------------------------------------------------------- SupervisorSpec


def test_supervisor_spec_defaults_are_one_for_one_and_three_restarts_in_five_seconds() -> None:
    spec = SupervisorSpec([worker("a"), worker("b")])

    assert (spec.strategy, spec.max_restarts, spec.max_seconds) == ("one_for_one", 3, 5)
    assert [child.id for child in spec.children] == ["a", "b"]


def test_supervisor_spec_with_duplicate_child_ids_raises_invalid_spec_naming_the_id() -> None:
    with pytest.raises(InvalidSpec, match=r"duplicate child id 'a'"):
        SupervisorSpec([worker("a"), worker("b"), worker("a")])


@pytest.mark.parametrize("strategy", ["simple_one_for_one", "one_for_none", None])
def test_supervisor_spec_with_a_bad_strategy_raises_invalid_spec_naming_strategy(
    strategy: Any,
) -> None:
    with pytest.raises(InvalidSpec, match=r"^strategy"):
        SupervisorSpec([], strategy)


@pytest.mark.parametrize("max_restarts", [-1, 1.5, True, "3"])
def test_supervisor_spec_with_a_bad_max_restarts_raises_invalid_spec_naming_it(
    max_restarts: Any,
) -> None:
    with pytest.raises(InvalidSpec, match=r"^max_restarts"):
        SupervisorSpec([], max_restarts=max_restarts)


@pytest.mark.parametrize("max_seconds", [0, -5, "5", False])
def test_supervisor_spec_with_a_bad_max_seconds_raises_invalid_spec_naming_it(
    max_seconds: Any,
) -> None:
    with pytest.raises(InvalidSpec, match=r"^max_seconds"):
        SupervisorSpec([], max_seconds=max_seconds)


def test_supervisor_spec_accepts_max_restarts_zero() -> None:
    assert SupervisorSpec([], max_restarts=0).max_restarts == 0


def test_supervisor_spec_children_must_be_child_specs() -> None:
    with pytest.raises(InvalidSpec, match=r"^children"):
        SupervisorSpec([worker("a"), ("b", Worker)])  # type: ignore[list-item]


# ---------------------------------------------------------------- DynamicSupervisorSpec


def test_dynamic_supervisor_spec_defaults_to_no_bound_on_children() -> None:
    spec = DynamicSupervisorSpec()

    assert (spec.max_restarts, spec.max_seconds, spec.max_children) == (3, 5, None)


@pytest.mark.parametrize("max_children", [-1, 2.5, "10"])
def test_dynamic_supervisor_spec_with_a_bad_max_children_raises_invalid_spec_naming_it(
    max_children: Any,
) -> None:
    with pytest.raises(InvalidSpec, match=r"^max_children"):
        DynamicSupervisorSpec(max_children=max_children)


def test_dynamic_supervisor_spec_with_a_negative_max_restarts_raises_invalid_spec() -> None:
    with pytest.raises(InvalidSpec, match=r"^max_restarts"):
        DynamicSupervisorSpec(max_restarts=-1)
