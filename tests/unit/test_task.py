"""Elixir's ``Task`` / ``Task.Supervisor`` (``supervision.task``) on
simpleSystemBase; ``tests/unit/test_light.py`` runs these again on ``base="light"``
and ``tests/integration/test_task_multiproc.py`` covers multiprocTCPBase. Waits are
bounded waits on a condition (on simpleSystemBase they hold at once)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from supervision import (
    CallTimeout,
    ChildSpec,
    Crash,
    From,
    NoProc,
    Server,
    Task,
    TaskExit,
    TaskReply,
    TaskSupervisor,
    call,
    count_children,
    task_supervisor,
    which_children,
)
from supervision.protocol import CallReply
from tests.actors import read_journal, record
from tests.procs import wait_until
from tests.unit_actors import Tree, sup_spec

T = TypeVar("T")

# ---------------------------------------------------------------- task functions
# Module-level, so that they pickle by reference on multiprocTCPBase.

#: Set at the end of a test that blocks a task: a ``block``ed function returns then.
RELEASE = threading.Event()


def add(a: int, b: int) -> int:
    return a + b


def fail(text: str) -> None:
    raise ValueError(text)


def note(journal: str, line: str) -> str:
    record(journal, line)
    return line


def note_and_fail(journal: str, line: str) -> None:
    record(journal, line)
    raise RuntimeError(f"{line} failed")


def block(seconds: float) -> str:
    """Wait (in-process: until :data:`RELEASE`; elsewhere ``seconds``), then return."""
    RELEASE.wait(seconds)
    return "late"


class Requester(Server):
    """Starts tasks without blocking: call ``("nolink", sup, fun, *args)`` ->
    the ref; ``"replies"`` -> the ``TaskReply``s received; ``"starts"`` ->
    ``ok`` of the start ``CallReply``s."""

    def init(self) -> None:
        self.replies: list[TaskReply] = []
        self.starts: list[bool] = []

    def handle_call(self, request: Any, from_: From) -> Any:
        if isinstance(request, tuple) and request[0] == "nolink":
            return TaskSupervisor.async_nolink_from(self, request[1], request[2], *request[3:])
        if request == "replies":
            return list(self.replies)
        if request == "starts":
            return list(self.starts)
        if request == "ping":
            return "pong"
        return super().handle_call(request, from_)

    def handle_info(self, message: Any) -> None:
        if isinstance(message, TaskReply):
            self.replies.append(message)
        elif isinstance(message, CallReply):
            self.starts.append(message.ok)
        else:
            super().handle_info(message)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    with Tree(tmp_path) as t:
        yield t


def start(tree: Tree, *extra: ChildSpec) -> dict[Any, Any]:
    """A root with a task supervisor ``tasks`` (and ``extra``); the children's addresses."""
    root = tree.start(sup_spec("root", [task_supervisor("tasks"), *extra], max_restarts=100))
    return {info.id: info.address for info in which_children(root)} | {"root": root}


def gone(address: Any) -> bool:
    try:
        call(address, "ping", timeout=5)
    except NoProc:
        return True
    return False


# ---------------------------------------------------------------- Task.async / await


def test_await_returns_the_result(tree: Tree) -> None:
    start(tree)

    task = Task.async_(add, 2, 3)

    assert task.await_() == 5


def test_await_reraises_a_task_crash_with_its_reason(tree: Tree) -> None:
    start(tree)
    task = Task.async_(fail, "bad input")

    with pytest.raises(TaskExit) as raised:
        task.await_()

    reason = raised.value.reason
    assert isinstance(reason, Crash)
    assert reason.type_name == "builtins.ValueError" and reason.message == "bad input"


def test_await_past_its_timeout_raises_call_timeout_and_the_task_is_gone(tree: Tree) -> None:
    if tree.base == "simpleSystemBase":
        pytest.skip("on simpleSystemBase the task has run to completion inside async_")
    start(tree)
    RELEASE.clear()
    try:
        task = Task.async_(block, 30.0)

        with pytest.raises(CallTimeout):
            task.await_(timeout=0.2)

        wait_until(lambda: gone(task.address), "the task's actor is gone")
        with pytest.raises(TaskExit):
            task.await_(timeout=5)
    finally:
        RELEASE.set()  # in-process, the function's thread runs on until it returns


def test_a_task_is_awaited_once(tree: Tree) -> None:
    start(tree)
    task = Task.async_(add, 1, 1)
    assert task.await_() == 2

    with pytest.raises(TaskExit) as raised:
        task.await_()

    assert raised.value.reason == "noproc"


# ---------------------------------------------------------------- Task.Supervisor


def test_async_nolink_await_raises_the_crash_and_the_supervisor_lives_on(tree: Tree) -> None:
    kids = start(tree)

    with pytest.raises(TaskExit) as raised:
        TaskSupervisor.async_nolink(kids["tasks"], fail, "nolink").await_()

    assert isinstance(raised.value.reason, Crash)
    assert TaskSupervisor.async_nolink(kids["tasks"], add, 20, 22).await_() == 42
    assert {i.id: i.address for i in which_children(kids["root"])}["tasks"] == kids["tasks"]


def test_async_nolink_crash_does_not_take_the_calling_server_down(tree: Tree) -> None:
    kids = start(tree, ChildSpec("requester", Requester))
    requester = kids["requester"]

    ref = call(requester, ("nolink", kids["tasks"], fail, "from a server"))

    [reply] = wait_until(lambda: call(requester, "replies"), "the requester got the TaskReply")
    assert reply.ref == ref and reply.ok is False
    assert isinstance(reply.value, Crash) and reply.value.message == "from a server"
    assert call(requester, "ping") == "pong"
    assert {i.id: i.address for i in which_children(kids["root"])}["requester"] == requester


def test_async_nolink_from_a_server_delivers_the_result(tree: Tree) -> None:
    kids = start(tree, ChildSpec("requester", Requester))

    ref = call(kids["requester"], ("nolink", kids["tasks"], add, 4, 5))

    [reply] = wait_until(lambda: call(kids["requester"], "replies"), "the TaskReply came")
    assert reply == TaskReply(ref, True, 9)
    assert call(kids["requester"], "starts") == [True]


def test_start_child_runs_the_function_fire_and_forget(tree: Tree) -> None:
    kids = start(tree)

    TaskSupervisor.start_child(kids["tasks"], note, tree.journal, "ran")

    wait_until(lambda: "ran" in read_journal(tree.journal), "the task ran")
    wait_until(lambda: count_children(kids["tasks"])["specs"] == 0, "the task ended")


def test_tasks_are_temporary_and_not_restarted(tree: Tree) -> None:
    kids = start(tree)

    TaskSupervisor.start_child(kids["tasks"], note_and_fail, tree.journal, "attempt")

    wait_until(lambda: count_children(kids["tasks"])["specs"] == 0, "the crashed task is forgotten")
    assert read_journal(tree.journal) == ["attempt"]
    assert {i.id: i.address for i in which_children(kids["root"])}["tasks"] == kids["tasks"]
