"""Nested supervisors and escalation chains behave as OTP's, checked against
a reference model of a whole supervision tree step by step.

The tree (drawn once per example) has a root ``Supervisor`` and up to three
levels: each supervisor holds workers and child supervisors, each with its
own restart type; each supervisor has its own ``max_restarts`` /
``max_seconds``. All strategies are ``one_for_one`` (the strategies are the
subject of ``test_supervisor_model``); this machine is about the levels.

The model, written from OTP's rules (supervisor.erl ``do_restart/3``,
``restart/2``, ``add_restart``, ``terminate_children``):

- a child that exits is restarted when ``permanent``, or ``transient`` with
  an abnormal reason; otherwise it stays (stopped) in its supervisor, a
  ``temporary`` one is dropped;
- each restart is stamped in whole seconds (``erlang:monotonic_time(1)``) in
  *its own* supervisor; more than ``max_restarts`` stamps ``>= now -
  max_seconds`` make that supervisor terminate its children (reverse start
  order, depth first: a child supervisor terminates its own children first)
  and exit ``shutdown``;
- that exit is an ordinary child exit for the parent: a ``permanent``
  supervisor is restarted (a restart counted in the parent's intensity, and
  the restarted supervisor starts every child of its spec again, in order);
  a ``transient`` one is not (``shutdown`` is a normal reason) and stays as a
  stopped child; a ``temporary`` one is dropped; the root's exit stops the
  application with reason ``shutdown``;
- ``which_children`` lists each supervisor's children newest first.

After every step the machine walks the real tree with ``which_children`` and
compares, level by level, the ids, the running / stopped states and
``count_children``; and it compares the lines the workers wrote (every start
and terminate, with its reason, in order) with the model's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from property_tests.harness import (
    EXITS,
    LIGHT_EXAMPLES,
    MACHINE_SETTINGS,
    FakeClock,
    Line,
    QuietLogs,
    Workspace,
    application,
    settle,
)
from supervision import (
    ChildSpec,
    NoProc,
    SupervisorSpec,
    call,
    count_children,
    which_children,
)
from tests.actors import Sup

RESTART_TYPES = ("permanent", "transient", "temporary")
RUNNING, STOPPED = "running", "undefined"


@dataclass
class Node:
    """A worker or a supervisor of the model; ``template`` children are those
    of its spec, ``children`` those it holds now."""

    id: str
    kind: str  # "worker" | "supervisor"
    restart: str = "permanent"
    max_restarts: int = 0
    max_seconds: int = 1
    template: list[Node] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    status: str = STOPPED
    restarts: list[int] = field(default_factory=list)


class TreeModel:
    def __init__(self, root: Node) -> None:
        self.root = root
        self.journal: list[Line] = []
        self.now = 0.0
        self.alive = True

    def start(self, node: Node) -> None:
        node.status = RUNNING
        if node.kind == "worker":
            self.journal.append(Line("start", node.id))
            return
        node.restarts = []
        node.children = [copy.deepcopy(t) for t in node.template]
        for child in node.children:
            self.start(child)

    def shut_down(self, node: Node) -> None:
        if node.status == RUNNING:
            if node.kind == "worker":
                self.journal.append(Line("terminate", node.id, "shutdown"))
            else:
                for child in reversed(node.children):
                    self.shut_down(child)
                node.children = []
        node.status = STOPPED

    def parent_of(self, node: Node) -> Node | None:
        def search(sup: Node) -> Node | None:
            for child in sup.children:
                if child is node:
                    return sup
                if child.kind == "supervisor":
                    found = search(child)
                    if found is not None:
                        return found
            return None

        return search(self.root)

    def worker_exited(self, worker: Node, journal_reason: str, normal: bool) -> None:
        self.journal.append(Line("terminate", worker.id, journal_reason))
        worker.status = STOPPED
        parent = self.parent_of(worker)
        assert parent is not None
        self.child_exited(parent, worker, normal)

    def child_exited(self, sup: Node, child: Node, normal: bool) -> None:
        if child.restart == "permanent" or (child.restart == "transient" and not normal):
            self.restart(sup, child)
        elif child.restart == "temporary":
            sup.children = [c for c in sup.children if c is not child]

    def restart(self, sup: Node, child: Node) -> None:
        second = math.floor(self.now)
        sup.restarts = [t for t in sup.restarts if t >= second - sup.max_seconds]
        sup.restarts.append(second)
        if len(sup.restarts) <= sup.max_restarts:
            self.start(child)
            return
        event(f"intensity of a level-{self.depth(sup)} supervisor exceeded")
        self.shut_down(sup)
        parent = self.parent_of(sup)
        if parent is None:
            event("escalation reached the application")
            self.alive = False
            return
        event(f"escalation to a {sup.restart} supervisor's parent")
        self.child_exited(parent, sup, normal=True)  # reason shutdown

    def depth(self, node: Node) -> int:
        parent = self.parent_of(node)
        return 0 if parent is None else 1 + self.depth(parent)

    def running_workers(self) -> list[Node]:
        found: list[Node] = []

        def walk(sup: Node) -> None:
            for child in sup.children:
                if child.status != RUNNING:
                    continue
                if child.kind == "worker":
                    found.append(child)
                else:
                    walk(child)

        walk(self.root)
        return found


# ---------------------------------------------------------------- trees


WORKER = st.tuples(st.just("w"), st.sampled_from(RESTART_TYPES))


def _supervisor(children: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[Any]:
    """``("s", restart, max_restarts, max_seconds, children)``."""
    return st.tuples(
        st.just("s"),
        st.sampled_from(RESTART_TYPES),
        st.integers(0, 2),
        st.sampled_from([1, 5]),
        children,
    )


LEVEL3 = _supervisor(st.lists(WORKER, min_size=1, max_size=2))
LEVEL2 = _supervisor(st.lists(st.one_of(WORKER, LEVEL3), min_size=1, max_size=3))
#: ``(max_restarts, max_seconds, children)`` of the root.
ROOT = st.tuples(
    st.integers(0, 3),
    st.sampled_from([1, 5]),
    st.lists(st.one_of(WORKER, LEVEL2), min_size=1, max_size=3),
)


class Builder:
    """Turns a drawn tree into model nodes with unique ids (w1.., s1..) and
    the matching ChildSpecs."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.counts = {"w": 0, "s": 0}

    def _name(self, kind: str) -> str:
        self.counts[kind] += 1
        return f"{kind}{self.counts[kind]}"

    def node(self, drawn: tuple[Any, ...]) -> Node:
        if drawn[0] == "w":
            return Node(self._name("w"), "worker", drawn[1])
        _, restart, max_restarts, max_seconds, children = drawn
        sup = Node(self._name("s"), "supervisor", restart, max_restarts, max_seconds)
        sup.template = [self.node(c) for c in children]
        return sup

    def spec(self, node: Node) -> ChildSpec:
        if node.kind == "worker":
            return self.ws.worker_spec(node.id, node.id, node.restart, "infinity")
        return ChildSpec(node.id, (Sup, (self.flags(node),)), restart=node.restart)  # type: ignore[arg-type]

    def flags(self, sup: Node) -> SupervisorSpec:
        children = [self.spec(c) for c in sup.template]
        return SupervisorSpec(children, "one_for_one", sup.max_restarts, sup.max_seconds)


class SupervisionTreeMachine(RuleBasedStateMachine):
    base: ClassVar[str] = "simpleSystemBase"

    def __init__(self) -> None:
        super().__init__()
        self.quiet = QuietLogs()
        self.clock = FakeClock()
        self.clock.install()
        self.ws = Workspace()
        self.app: Any = None
        self.model: TreeModel
        self.root_template: Node
        self.root_flags: SupervisorSpec
        self.addresses: dict[str, Any] = {}

    def teardown(self) -> None:
        try:
            if self.app is not None:
                self.app.stop()
        finally:
            FakeClock.uninstall()
            self.ws.remove()
            self.quiet.restore()

    @initialize(tree=ROOT)
    def start_tree(self, tree: tuple[Any, ...]) -> None:
        max_restarts, max_seconds, children = tree
        builder = Builder(self.ws)
        root = Node("root", "supervisor", "permanent", max_restarts, max_seconds)
        root.template = [builder.node(c) for c in children]
        self.root_template = root
        self.root_flags = builder.flags(root)
        supervisors = builder.counts["s"]
        event(f"{supervisors} child supervisors" if supervisors < 3 else "3+ child supervisors")
        self._fresh_application()
        self._check()

    def _fresh_application(self) -> None:
        self.model = TreeModel(copy.deepcopy(self.root_template))
        self.model.now = self.clock.now
        self.app = application(ChildSpec("root", (Sup, (self.root_flags,))), self.base)
        self.model.start(self.model.root)
        self.app.start()

    @precondition(lambda self: bool(self.model.running_workers()))
    @rule(data=st.data(), how=st.sampled_from(sorted(EXITS)))
    def worker_exits(self, data: st.DataObject, how: str) -> None:
        workers = self.model.running_workers()
        worker = data.draw(st.sampled_from(workers), label="worker")
        request, journal_reason, normal = EXITS[how]
        address = self.addresses[worker.id]
        self.model.worker_exited(worker, journal_reason, normal)
        if request == "crash":
            with pytest.raises(NoProc):
                call(address, "crash")
        else:
            assert call(address, request) == "stopping"
        self._check()

    @rule(seconds=st.sampled_from([0.5, 1, 2, 5]))
    def sleep(self, seconds: float) -> None:
        self.clock.now += seconds
        self.model.now = self.clock.now
        self._check()

    # ---------------------------------------------------------------- checks

    def _check(self) -> None:
        settle(self.app)
        lines = self.ws.new_lines()
        assert lines == self.model.journal, (
            f"journal: got {[str(x) for x in lines]}, "
            f"expected {[str(x) for x in self.model.journal]}"
        )
        self.model.journal = []
        if not self.model.alive:
            assert not self.app.is_running, "the root should have exited"
            assert self.app.wait(1) == "shutdown"
            self.app.stop()
            self._fresh_application()
            lines = self.ws.new_lines()
            assert lines == self.model.journal
            self.model.journal = []
        assert self.app.is_running
        self.addresses = {}
        self._compare(self.app.root, self.model.root)

    def _compare(self, address: Any, sup: Node) -> None:
        infos = which_children(address)
        got = [(i.id, STOPPED if i.address is None else RUNNING) for i in infos]
        want = [(c.id, c.status) for c in reversed(sup.children)]  # newest first
        assert got == want, f"children of {sup.id}: got {got}, expected {want}"
        supervisors = sum(1 for c in sup.children if c.kind == "supervisor")
        assert count_children(address) == {
            "specs": len(sup.children),
            "active": sum(1 for c in sup.children if c.status == RUNNING),
            "supervisors": supervisors,
            "workers": len(sup.children) - supervisors,
        }
        for info, child in zip(infos, reversed(sup.children), strict=True):
            assert info.type == child.kind
            if child.status != RUNNING:
                continue
            if child.kind == "supervisor":
                self._compare(info.address, child)
            else:
                self.addresses[child.id] = info.address


TestSupervisionTreesFollowOTP = SupervisionTreeMachine.TestCase
TestSupervisionTreesFollowOTP.settings = MACHINE_SETTINGS


class SupervisionTreeLightMachine(SupervisionTreeMachine):
    base = "light"


TestSupervisionTreesFollowOTPOnLight = SupervisionTreeLightMachine.TestCase
TestSupervisionTreesFollowOTPOnLight.settings = settings(
    MACHINE_SETTINGS, max_examples=LIGHT_EXAMPLES
)
