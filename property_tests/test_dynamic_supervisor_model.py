"""A ``DynamicSupervisor`` behaves like Elixir's ``DynamicSupervisor`` (OTP's
``simple_one_for_one``), checked against a reference model step by step.

The model below is written from the documented rules of Elixir's
DynamicSupervisor and OTP's supervisor, not from the library:

- children are added only by ``start_child`` and are known by their address;
  with ``max_children`` set, ``start_child`` answers ``max_children`` once
  that many children are held (running or restarting);
- a start returning ``ignore`` adds nothing; a failing start adds nothing;
- ``permanent`` children are always restarted, ``transient`` ones only after
  an abnormal exit, ``temporary`` ones never; a child that is not restarted
  is forgotten; a restart whose start returns ``ignore`` forgets the child;
- the strategy is one_for_one: a restart touches nobody else;
- each restart is recorded at the current time in whole seconds (OTP's
  ``erlang:monotonic_time(1)``, the clock floored); restarts older than
  ``now - max_seconds`` are forgotten; more than ``max_restarts`` make the
  supervisor terminate all its children (in no defined order) and exit
  ``shutdown``; a start that fails during a restart is tried again, each try
  being a restart;
- ``terminate_child`` takes an address, stops that child and forgets it
  (``not_found`` for any other address); ``restart_child`` and
  ``delete_child`` are not supported.

After every step the machine compares ``which_children`` (no ids, each
child's address and running / restarting state; the order is not part of
the contract), ``count_children``, whether the supervisor still runs, and
the workers' journal (in order, except the terminations of an intensity
shutdown, whose order is not defined). A ``brutal_kill`` child's
``terminate`` does not run. When the intensity is exceeded it checks that
the application ended with reason ``shutdown`` and starts a fresh one.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from property_tests.harness import (
    EXITS,
    LIGHT_EXAMPLES,
    MACHINE_SETTINGS,
    SHUTDOWNS,
    FakeClock,
    Line,
    QuietLogs,
    Workspace,
    application,
    settle,
)
from supervision import (
    ChildSpec,
    DynamicSupervisorSpec,
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

RESTART_TYPES = ("permanent", "transient", "temporary")
RUNNING, RESTARTING = "running", "restarting"


@dataclass
class ModelChild:
    name: str
    restart: str
    shutdown: Any
    status: str = RUNNING
    #: Its current address; None right after a restart, until the test learns it.
    address: Any = None


class FailedStart(Exception):
    """Model: the child's start function returned an error."""


class Model:
    """Elixir DynamicSupervisor semantics."""

    def __init__(self, max_restarts: int, max_seconds: float, max_children: int | None) -> None:
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.max_children = max_children
        self.children: list[ModelChild] = []
        self.restarts: list[int] = []
        self.now = 0.0
        self.alive = True
        self.failing: set[str] = set()
        self.ignoring: set[str] = set()
        self.journal: list[Line] = []  # lines this step, in order
        self.unordered: list[Line] = []  # then these, in any order

    def by_address(self, address: Any) -> ModelChild | None:
        return next((c for c in self.children if c.address == address), None)

    def forget(self, child: ModelChild) -> None:
        self.children = [c for c in self.children if c is not child]

    def start(self, name: str) -> str:
        if name in self.failing:
            raise FailedStart(name)
        if name in self.ignoring:
            event("a start returned ignore")
            return "ignore"
        self.journal.append(Line("start", name))
        return "ok"

    def start_child(self, name: str, restart: str, shutdown: Any) -> Any:
        if self.max_children is not None and len(self.children) >= self.max_children:
            event("max_children reached")
            return MaxChildren
        try:
            result = self.start(name)
        except FailedStart:
            return StartError
        if result == "ok":
            self.children.append(ModelChild(name, restart, shutdown))
        return result

    def terminate_child(self, address: Any) -> Any:
        child = self.by_address(address)
        if child is None:
            return NotFound
        self.stopped_by_supervisor(child)
        self.forget(child)
        return "ok"

    def stopped_by_supervisor(self, child: ModelChild, journal: list[Line] | None = None) -> None:
        """Killed (no ``terminate`` runs) or asked to exit with reason shutdown."""
        if child.status == RUNNING and child.shutdown != "brutal_kill":
            (self.journal if journal is None else journal).append(
                Line("terminate", child.name, "shutdown")
            )

    def child_exited(self, child: ModelChild, journal_reason: str, normal: bool) -> None:
        self.journal.append(Line("terminate", child.name, journal_reason))
        child.address = None
        if child.restart == "permanent" or (child.restart == "transient" and not normal):
            self.restart(child)
        else:
            self.forget(child)

    def restart(self, child: ModelChild) -> None:
        second = math.floor(self.now)
        self.restarts = [t for t in self.restarts if t >= second - self.max_seconds]
        self.restarts.append(second)
        if len(self.restarts) > self.max_restarts:
            event("intensity exceeded: supervisor exits shutdown")
            self.forget(child)
            for other in self.children:
                self.stopped_by_supervisor(other, self.unordered)
            self.children = []
            self.alive = False
            return
        try:
            result = self.start(child.name)
        except FailedStart:
            event("a restart failed and is tried again")
            child.status = RESTARTING
            self.restart(child)
            return
        if result == "ignore":
            event("a restart returned ignore: the child is forgotten")
            self.forget(child)
        else:
            child.status = RUNNING


class DynamicSupervisorMachine(RuleBasedStateMachine):
    base: ClassVar[str] = "simpleSystemBase"

    def __init__(self) -> None:
        super().__init__()
        self.quiet = QuietLogs()
        self.clock = FakeClock()
        self.clock.install()
        self.ws = Workspace()
        self.app: Any = None
        self.root: Any = None
        self.model: Model
        self.started = 0  # workers are named w1, w2... in the order of start attempts
        self.stale: list[Any] = []  # addresses of children that are gone

    def teardown(self) -> None:
        try:
            if self.app is not None:
                self.app.stop()
        finally:
            FakeClock.uninstall()
            self.ws.remove()
            self.quiet.restore()

    @initialize(
        max_restarts=st.integers(0, 4),
        max_seconds=st.sampled_from([1, 2, 5]),
        max_children=st.none() | st.integers(0, 4),
    )
    def start_application(
        self, max_restarts: int, max_seconds: float, max_children: int | None
    ) -> None:
        self.flags = (max_restarts, max_seconds, max_children)
        self._fresh_application()
        self._check()

    def _fresh_application(self) -> None:
        self.model = Model(*self.flags)
        self.model.now = self.clock.now
        spec = DynamicSupervisorSpec(*self.flags)
        self.app = application(ChildSpec("root", (DynSup, (spec,))), self.base)
        self.root = self.app.start()

    def _next_name(self) -> str:
        return f"w{self.started + 1}"

    # ---------------------------------------------------------------- rules

    @rule(restart=st.sampled_from(RESTART_TYPES), shutdown=st.sampled_from(SHUTDOWNS))
    def start_child(self, restart: str, shutdown: Any) -> None:
        name = self._next_name()
        expected = self.model.start_child(name, restart, shutdown)
        spec = self.ws.worker_spec(name, name, restart, shutdown)
        if expected is MaxChildren:
            with pytest.raises(MaxChildren):
                start_child(self.root, spec)
            self._check()
            return
        self.started += 1
        if expected is StartError:
            with pytest.raises(StartError):
                start_child(self.root, spec)
        else:
            address = start_child(self.root, spec)
            if expected == "ignore":
                assert address is None
            else:
                assert address is not None
                self.model.children[-1].address = address
        self._check()

    def _termination_targets(self) -> list[Any]:
        """Addresses of running children, and of a few that are gone."""
        running = [c.address for c in self.model.children if c.status == RUNNING]
        return running + self.stale[-3:]

    @precondition(lambda self: bool(self._termination_targets()))
    @rule(data=st.data())
    def terminate_child(self, data: st.DataObject) -> None:
        targets = self._termination_targets()
        address = data.draw(st.sampled_from(targets), label="address")
        expected = self.model.terminate_child(address)
        if expected is NotFound:
            with pytest.raises(NotFound):
                terminate_child(self.root, address)
        else:
            terminate_child(self.root, address)
            self.stale.append(address)
        self._check()

    @rule(data=st.data(), which=st.sampled_from(["restart_child", "delete_child"]))
    def restart_or_delete_is_not_supported(self, data: st.DataObject, which: str) -> None:
        targets: list[Any] = ["w1", *[c.address for c in self.model.children]]
        target = data.draw(st.sampled_from(targets), label="target")
        function = restart_child if which == "restart_child" else delete_child
        with pytest.raises(NotSupported):
            function(self.root, target)
        self._check()

    @precondition(lambda self: any(c.status == RUNNING for c in self.model.children))
    @rule(data=st.data(), how=st.sampled_from(sorted(EXITS)))
    def child_exits(self, data: st.DataObject, how: str) -> None:
        running = [c for c in self.model.children if c.status == RUNNING]
        child = data.draw(st.sampled_from(running), label="child")
        address = child.address
        request, journal_reason, normal = EXITS[how]
        self.model.child_exited(child, journal_reason, normal)
        self.stale.append(address)
        if request == "crash":
            with pytest.raises(NoProc):
                call(address, "crash")
        else:
            assert call(address, request) == "stopping"
        self._check()

    @rule(
        data=st.data(),
        what=st.sampled_from(["fail", "ignore"]),
        on=st.sampled_from([True, True, False]),
    )
    def control_next_start(self, data: st.DataObject, what: str, on: bool) -> None:
        names = [c.name for c in self.model.children] + [self._next_name()]
        name = data.draw(st.sampled_from(names), label="name")
        chosen = self.model.failing if what == "fail" else self.model.ignoring
        if on:
            chosen.add(name)
        else:
            chosen.discard(name)
        self.ws.set_control(name, what, on)
        self._check()

    @rule(seconds=st.sampled_from([0.5, 1, 2, 5]))
    def sleep(self, seconds: float) -> None:
        self.clock.now += seconds
        self.model.now = self.clock.now
        self._check()

    # ---------------------------------------------------------------- checks

    def _check(self) -> None:
        settle(self.app)
        model = self.model
        lines = self.ws.new_lines()
        ordered = len(model.journal)
        assert lines[:ordered] == model.journal, (
            f"journal: got {[str(x) for x in lines]}, expected {[str(x) for x in model.journal]}"
        )
        assert Counter(lines[ordered:]) == Counter(model.unordered), (
            f"journal: got {[str(x) for x in lines]}, expected {[str(x) for x in model.journal]}"
            f" then in any order {[str(x) for x in model.unordered]}"
        )
        model.journal, model.unordered = [], []
        if not model.alive:
            # is_running first: it answers at once, where wait() on a root
            # that still runs would block for its whole timeout.
            assert not self.app.is_running, "the supervisor should have exited"
            assert self.app.wait(1) == "shutdown"
            self.app.stop()
            self.stale.clear()
            self.ws.clear_controls()
            self._fresh_application()
        assert self.app.is_running
        children = which_children(self.root)
        assert all(c.id is None for c in children)
        restarting = [c for c in children if c.address == "restarting"]
        running = [c.address for c in children if c.address != "restarting"]
        assert None not in running, "a child held with no process and not restarting"
        assert len(restarting) == sum(1 for c in model.children if c.status == RESTARTING)
        known = [c.address for c in model.children if c.address is not None]
        assert all(address in running for address in known)
        fresh = [address for address in running if address not in known]
        unknown = [c for c in model.children if c.status == RUNNING and c.address is None]
        assert len(fresh) == len(unknown)
        for child, address in zip(unknown, fresh, strict=True):  # at most one per step
            child.address = address
        assert count_children(self.root) == {
            "specs": len(model.children),
            "active": len(running),
            "supervisors": 0,
            "workers": len(model.children),
        }
        if model.max_children is not None:
            assert len(children) <= model.max_children


TestDynamicSupervisorFollowsElixir = DynamicSupervisorMachine.TestCase
TestDynamicSupervisorFollowsElixir.settings = MACHINE_SETTINGS


class DynamicSupervisorLightMachine(DynamicSupervisorMachine):
    base = "light"


TestDynamicSupervisorFollowsElixirOnLight = DynamicSupervisorLightMachine.TestCase
TestDynamicSupervisorFollowsElixirOnLight.settings = settings(
    MACHINE_SETTINGS, max_examples=LIGHT_EXAMPLES
)
