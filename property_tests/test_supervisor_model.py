"""A ``Supervisor`` behaves like OTP's ``supervisor`` (one_for_one,
one_for_all, rest_for_one), checked against a reference model step by step.

The model below is written from OTP's documented rules (supervisor.erl and
its reference manual), not from the library:

- children are kept in start order; ``start_child`` appends;
  ``which_children`` lists them newest first (OTP keeps its list so);
- ``permanent`` children are always restarted, ``transient`` ones only after
  an abnormal exit (anything but ``normal``, ``shutdown``, ``{shutdown, _}``),
  ``temporary`` ones never, and they are forgotten when they end;
- ``one_for_one`` restarts the child alone; ``one_for_all`` terminates every
  other running child in reverse start order and then starts all children of
  the list in start order, running or not (temporary ones are dropped);
  ``rest_for_one`` does the same for the failed child and those after it;
- each restart is recorded at the current time in whole seconds (OTP's
  ``erlang:monotonic_time(1)``, the clock floored); restarts older than
  ``now - max_seconds`` are forgotten (``t >= now - max_seconds`` is kept);
  more than ``max_restarts`` remembered restarts make the supervisor
  terminate all its children (reverse start order) and exit ``shutdown``;
- a start that fails during a restart is tried again, each try being a
  restart; while it waits, the child shows as ``restarting``;
- ``terminate_child`` keeps the spec (a temporary child is dropped);
  ``restart_child`` / ``delete_child`` work on stopped children only
  (``running`` / ``restarting`` / ``not_found`` otherwise); ``start_child``
  answers ``already_started`` / ``already_present`` for a known id;
- a start that returns ``ignore`` keeps a non-temporary spec as not running;
- the supervisor starts its initial children in order; when one fails, the
  started ones are terminated in reverse order and the supervisor's start
  fails with ``{shutdown, {failed_to_start_child, Id, Reason}}``;
- terminating a child kills it (``brutal_kill``: its ``terminate`` does not
  run) or asks it to exit with reason ``shutdown``.

After every step the machine compares ``which_children`` (ids, order,
running / not running / restarting), ``count_children``, ``get_childspec``,
whether the supervisor still runs, and the lines the workers wrote to their
journal (every start and every terminate, with its reason, in order). It also
checks, without the model, that each run of terminations in a step follows
reverse start order and each run of starts follows start order. When the
intensity is exceeded it checks that the application ended with reason
``shutdown`` and starts a fresh one, with the same initial children and the
control files left as they were.

On simpleSystemBase a step runs to completion inside the test's call, with
the fake clock standing still, so a failing restart is retried until it
succeeds or the intensity is exceeded within the step: ``restarting`` (and
the ``Restarting`` errors) are modelled but never observed here.
"""

from __future__ import annotations

import math
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
    AlreadyPresent,
    AlreadyStarted,
    ChildSpec,
    NoProc,
    NotFound,
    Restarting,
    Running,
    StartError,
    SupervisorSpec,
    call,
    count_children,
    delete_child,
    get_childspec,
    restart_child,
    start_child,
    terminate_child,
    which_children,
)
from tests.actors import Sup

IDS = ("a", "b", "c", "d", "e")
RESTART_TYPES = ("permanent", "transient", "temporary")

RUNNING, STOPPED, RESTARTING = "running", "undefined", "restarting"


@dataclass
class ModelChild:
    id: str
    restart: str
    shutdown: Any = "infinity"
    status: str = STOPPED


class FailedStart(Exception):
    """Model: the child's start function returned an error."""


class Model:
    """OTP supervisor semantics for one supervisor with a fixed strategy."""

    def __init__(self, strategy: str, max_restarts: int, max_seconds: float) -> None:
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.children: list[ModelChild] = []
        self.restarts: list[int] = []
        self.alive = True
        self.failing: set[str] = set()
        self.ignoring: set[str] = set()
        self.journal: list[Line] = []  # what the workers must write during this step
        self.now = 0.0  # the fake clock, which does not move while one step runs

    # ---------------------------------------------------------------- helpers

    def find(self, child_id: str) -> ModelChild | None:
        return next((c for c in self.children if c.id == child_id), None)

    def drop(self, child: ModelChild) -> None:
        self.children = [c for c in self.children if c is not child]

    def start(self, child: ModelChild) -> str:
        """Run the child's start function: "ok", "ignore" or raise FailedStart."""
        if child.id in self.failing:
            raise FailedStart(child.id)
        if child.id in self.ignoring:
            event("a start returned ignore")
            child.status = STOPPED
            return "ignore"
        child.status = RUNNING
        self.journal.append(Line("start", child.id))
        return "ok"

    def shut_down(self, child: ModelChild) -> None:
        """The supervisor terminates a child: killed (no ``terminate`` runs)
        or asked to exit with reason shutdown."""
        if child.status == RUNNING and child.shutdown != "brutal_kill":
            self.journal.append(Line("terminate", child.id, "shutdown"))
        child.status = STOPPED

    # ---------------------------------------------------------------- API

    def init(self, specs: list[tuple[str, str, Any]]) -> str | None:
        """Start the supervisor; returns the id of the child that failed to
        start (the started ones are then terminated in reverse start order)."""
        for child_id, restart, shutdown in specs:
            child = ModelChild(child_id, restart, shutdown)
            try:
                result = self.start(child)
            except FailedStart:
                event("a child failed to start with its supervisor")
                for other in reversed(self.children):
                    self.shut_down(other)
                self.children, self.alive = [], False
                return child_id
            if result == "ok" or restart != "temporary":
                self.children.append(child)
        return None

    def start_child(self, child_id: str, restart: str, shutdown: Any) -> Any:
        existing = self.find(child_id)
        if existing is not None:
            return AlreadyStarted if existing.status == RUNNING else AlreadyPresent
        child = ModelChild(child_id, restart, shutdown)
        try:
            result = self.start(child)
        except FailedStart:
            return StartError
        if result == "ok" or restart != "temporary":
            self.children.append(child)
        return result

    def terminate_child(self, child_id: str) -> Any:
        child = self.find(child_id)
        if child is None:
            return NotFound
        self.shut_down(child)
        if child.restart == "temporary":
            self.drop(child)
        return "done"

    def restart_child(self, child_id: str) -> Any:
        child = self.find(child_id)
        if child is None:
            return NotFound
        if child.status == RESTARTING:
            return Restarting
        if child.status == RUNNING:
            return Running
        try:
            return self.start(child)
        except FailedStart:
            return StartError

    def delete_child(self, child_id: str) -> Any:
        child = self.find(child_id)
        if child is None:
            return NotFound
        if child.status == RESTARTING:
            return Restarting
        if child.status == RUNNING:
            return Running
        self.drop(child)
        return "done"

    # ---------------------------------------------------------------- exits

    def child_exited(self, child_id: str, journal_reason: str, normal: bool) -> None:
        child = self.find(child_id)
        assert child is not None and child.status == RUNNING
        self.journal.append(Line("terminate", child_id, journal_reason))
        child.status = STOPPED
        if child.restart == "permanent" or (child.restart == "transient" and not normal):
            self.restart(child)
        elif child.restart == "temporary":
            self.drop(child)

    def add_restart(self, now: float) -> bool:
        second = math.floor(now)
        self.restarts = [t for t in self.restarts if t >= second - self.max_seconds]
        self.restarts.append(second)
        return len(self.restarts) <= self.max_restarts

    def restart(self, child: ModelChild) -> None:
        if not self.add_restart(self.now):
            event("intensity exceeded: supervisor exits shutdown")
            for other in reversed(list(self.children)):
                self.shut_down(other)
            self.children = [c for c in self.children if c.restart != "temporary"]
            self.alive = False
            return
        if self.strategy == "one_for_one":
            try:
                self.start(child)
            except FailedStart:
                event("a restart failed and is tried again")
                child.status = RESTARTING
                self.restart(child)  # tried again, counting as a restart
            return
        position = self.children.index(child)
        group = list(self.children) if self.strategy == "one_for_all" else self.children[position:]
        size = str(len(group)) if len(group) < 3 else "3 or more"
        event(f"{self.strategy} restart of {size} children")
        for other in reversed(group):
            self.shut_down(other)
        for other in group:
            if other.restart == "temporary":
                self.drop(other)
        group = [c for c in group if c.restart != "temporary"]
        for other in group:
            try:
                self.start(other)
            except FailedStart:
                event("a group restart failed and is tried again")
                other.status = RESTARTING
                self.restart(other)
                return


class SupervisorMachine(RuleBasedStateMachine):
    strategy: ClassVar[str] = "one_for_one"
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
        self.addresses: dict[str, Any] = {}
        self.order_before: list[str] = []
        self.initial: list[tuple[str, str, Any]] = []

    def teardown(self) -> None:
        try:
            if self.app is not None:
                self.app.stop()
        finally:
            FakeClock.uninstall()
            self.ws.remove()
            self.quiet.restore()

    # ---------------------------------------------------------------- setup

    @initialize(
        max_restarts=st.integers(0, 4),
        max_seconds=st.sampled_from([1, 2, 5]),
        initial=st.lists(
            st.tuples(
                st.sampled_from(IDS), st.sampled_from(RESTART_TYPES), st.sampled_from(SHUTDOWNS)
            ),
            max_size=3,
            unique_by=lambda t: t[0],
        ),
    )
    def start_application(
        self, max_restarts: int, max_seconds: float, initial: list[tuple[str, str, Any]]
    ) -> None:
        self.initial = initial
        self.max_restarts, self.max_seconds = max_restarts, max_seconds
        self._fresh_application()
        self._check()

    def _fresh_application(self) -> None:
        """Start the application with the initial children. The control files
        stay as they were, so an initial child may fail to start or be ignored;
        after a failed start they are cleared and the application started again."""
        failing, ignoring = set(), set()
        if hasattr(self, "model"):
            failing, ignoring = self.model.failing, self.model.ignoring
        self.model = Model(self.strategy, self.max_restarts, self.max_seconds)
        self.model.now = self.clock.now
        self.model.failing, self.model.ignoring = failing, ignoring
        specs = [self.ws.worker_spec(i, i, r, shutdown) for i, r, shutdown in self.initial]
        sup_spec = SupervisorSpec(specs, self.strategy, self.max_restarts, self.max_seconds)
        self.app = application(ChildSpec("root", (Sup, (sup_spec,))), self.base)
        failed = self.model.init(self.initial)
        if failed is None:
            self.root = self.app.start()
            return
        with pytest.raises(StartError) as error:
            self.app.start()
        assert error.value.child_id == "root"
        shutdown, (what, child_id, reason) = error.value.reason
        assert (shutdown, what, child_id) == ("shutdown", "failed_to_start_child", failed)
        assert reason.type_name == "builtins.RuntimeError"
        assert not self.app.is_running
        self._compare_journal(self.ws.new_lines(), self.model.journal)
        self.ws.clear_controls()
        self.model.failing.clear()
        self.model.ignoring.clear()
        self._fresh_application()

    # ---------------------------------------------------------------- rules

    def _expect(self, child_id: str, expected: Any, action: Any) -> Any:
        """Run ``action``; the model said it returns ``"ok"`` (an address),
        ``"ignore"`` (None), ``"done"`` (nothing to check) or raises the
        error class ``expected``."""
        if not isinstance(expected, type):
            result = action()
            if expected == "ok":
                assert result is not None
            elif expected == "ignore":
                assert result is None
            return
        with pytest.raises(expected) as error:
            action()
        if expected is AlreadyStarted:
            assert error.value.address == self.addresses[child_id]
        elif expected is StartError:
            assert error.value.child_id == child_id
            assert error.value.reason.type_name == "builtins.RuntimeError"

    @rule(
        child_id=st.sampled_from(IDS),
        restart=st.sampled_from(RESTART_TYPES),
        shutdown=st.sampled_from(SHUTDOWNS),
    )
    def start_child(self, child_id: str, restart: str, shutdown: Any) -> None:
        expected = self.model.start_child(child_id, restart, shutdown)
        spec = self.ws.worker_spec(child_id, child_id, restart, shutdown)
        self._expect(child_id, expected, lambda: start_child(self.root, spec))
        self._check()

    @rule(child_id=st.sampled_from(IDS))
    def terminate_child(self, child_id: str) -> None:
        expected = self.model.terminate_child(child_id)
        self._expect(child_id, expected, lambda: terminate_child(self.root, child_id))
        self._check()

    @rule(child_id=st.sampled_from(IDS))
    def restart_child(self, child_id: str) -> None:
        expected = self.model.restart_child(child_id)
        self._expect(child_id, expected, lambda: restart_child(self.root, child_id))
        self._check()

    @rule(child_id=st.sampled_from(IDS))
    def delete_child(self, child_id: str) -> None:
        expected = self.model.delete_child(child_id)
        self._expect(child_id, expected, lambda: delete_child(self.root, child_id))
        self._check()

    def _running(self) -> list[str]:
        return [c.id for c in self.model.children if c.status == RUNNING]

    @precondition(lambda self: any(c.status == RUNNING for c in self.model.children))
    @rule(data=st.data(), how=st.sampled_from(sorted(EXITS)))
    def child_exits(self, data: st.DataObject, how: str) -> None:
        child_id = data.draw(st.sampled_from(self._running()), label="child")
        request, journal_reason, normal = EXITS[how]
        self.model.child_exited(child_id, journal_reason, normal)
        address = self.addresses[child_id]
        if request == "crash":
            with pytest.raises(NoProc):
                call(address, "crash")
        else:
            assert call(address, request) == "stopping"
        self._check(exited=child_id)

    @rule(
        data=st.data(),
        what=st.sampled_from(["fail", "ignore"]),
        on=st.sampled_from([True, True, False]),
    )
    def control_next_start(self, data: st.DataObject, what: str, on: bool) -> None:
        """Make the next starts of a child (mostly one the supervisor holds)
        fail or return IGNORE, or stop doing so."""
        held = [c.id for c in self.model.children]
        child_id = data.draw(st.sampled_from(held or IDS) | st.sampled_from(IDS), label="id")
        chosen = self.model.failing if what == "fail" else self.model.ignoring
        if on:
            chosen.add(child_id)
        else:
            chosen.discard(child_id)
        self.ws.set_control(child_id, what, on)
        self._check()

    @rule(seconds=st.sampled_from([0.5, 1, 2, 5]))
    def sleep(self, seconds: float) -> None:
        self.clock.now += seconds
        self.model.now = self.clock.now
        self._check()

    # ---------------------------------------------------------------- checks

    def _check(self, exited: str | None = None) -> None:
        settle(self.app)
        model = self.model
        lines = self.ws.new_lines()
        self._compare_journal(lines, model.journal)
        self._check_restart_order(lines, exited)
        model.journal = []
        if not model.alive:
            # is_running first: it answers at once, where wait() on a root
            # that still runs would block for its whole timeout.
            assert not self.app.is_running, "the supervisor should have exited"
            assert self.app.wait(1) == "shutdown"
            self.app.stop()
            self._fresh_application()
            self._compare_journal(self.ws.new_lines(), self.model.journal)
            self.model.journal = []
        model = self.model
        assert self.app.is_running
        children = which_children(self.root)
        got = [(c.id, _status(c.address)) for c in children]
        want = [(c.id, c.status) for c in reversed(self.model.children)]  # newest first
        assert got == want
        assert count_children(self.root) == {
            "specs": len(want),
            "active": sum(1 for _, status in want if status == RUNNING),
            "supervisors": 0,
            "workers": len(want),
        }
        for child in model.children:
            spec = get_childspec(self.root, child.id)
            assert (spec.restart, spec.shutdown) == (child.restart, child.shutdown)
        self.addresses = {c.id: c.address for c in children if _status(c.address) == RUNNING}
        self.order_before = [c.id for c in reversed(children)]  # start order

    @staticmethod
    def _compare_journal(lines: list[Line], expected: list[Line]) -> None:
        assert lines == expected, (
            f"journal: got {[str(x) for x in lines]}, expected {[str(x) for x in expected]}"
        )

    def _check_restart_order(self, lines: list[Line], exited: str | None) -> None:
        """Independently of the model: after the exiting child's own line, the
        supervisor terminates children in reverse start order and starts them
        in start order (the order which_children showed before the step).

        Each uninterrupted run of terminate lines must go backwards. Each run
        of start lines must go forwards; a child starting twice in a run
        begins a new round of a retried restart (the terminations between
        rounds leave no line when the children are killed)."""
        if exited is None:
            return
        position = {child_id: i for i, child_id in enumerate(self.order_before)}
        runs: list[tuple[str, list[int]]] = []
        for line in lines[1:]:
            at = position[line.name]
            same_run = runs and runs[-1][0] == line.kind
            if not same_run or (line.kind == "start" and at in runs[-1][1]):
                runs.append((line.kind, []))
            runs[-1][1].append(at)
        for kind, positions in runs:
            in_order = sorted(set(positions), reverse=kind == "terminate")
            assert positions == in_order, f"{kind} order {positions} in {self.order_before}"


def _status(address: Any) -> str:
    if address == "restarting":
        return RESTARTING
    return STOPPED if address is None else RUNNING


class OneForOneMachine(SupervisorMachine):
    strategy = "one_for_one"


class OneForAllMachine(SupervisorMachine):
    strategy = "one_for_all"


class RestForOneMachine(SupervisorMachine):
    strategy = "rest_for_one"


TestOneForOneSupervisorFollowsOTP = OneForOneMachine.TestCase
TestOneForOneSupervisorFollowsOTP.settings = MACHINE_SETTINGS
TestOneForAllSupervisorFollowsOTP = OneForAllMachine.TestCase
TestOneForAllSupervisorFollowsOTP.settings = MACHINE_SETTINGS
TestRestForOneSupervisorFollowsOTP = RestForOneMachine.TestCase
TestRestForOneSupervisorFollowsOTP.settings = MACHINE_SETTINGS


# ---------------------------------------------------------------- the same machines on base="light"

LIGHT_SETTINGS = settings(MACHINE_SETTINGS, max_examples=LIGHT_EXAMPLES)


class OneForOneLightMachine(OneForOneMachine):
    base = "light"


class OneForAllLightMachine(OneForAllMachine):
    base = "light"


class RestForOneLightMachine(RestForOneMachine):
    base = "light"


TestOneForOneSupervisorFollowsOTPOnLight = OneForOneLightMachine.TestCase
TestOneForOneSupervisorFollowsOTPOnLight.settings = LIGHT_SETTINGS
TestOneForAllSupervisorFollowsOTPOnLight = OneForAllLightMachine.TestCase
TestOneForAllSupervisorFollowsOTPOnLight.settings = LIGHT_SETTINGS
TestRestForOneSupervisorFollowsOTPOnLight = RestForOneLightMachine.TestCase
TestRestForOneSupervisorFollowsOTPOnLight.settings = LIGHT_SETTINGS
