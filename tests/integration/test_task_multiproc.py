"""``supervision.task`` on multiprocTCPBase: a task is an OS process of its
own, and an ``await_`` past its timeout SIGKILLs it. Fixtures come from
``test_supervision_multiproc``; every wait is a bounded poll."""

# ruff: noqa: F811 (the imported fixtures are, as pytest wants, test parameters)

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from supervision import (
    Application,
    CallTimeout,
    ChildSpec,
    Crash,
    SupervisorSpec,
    Task,
    TaskExit,
    TaskSupervisor,
    count_children,
    task_supervisor,
    which_children,
)
from tests.actors import Sup
from tests.integration.test_supervision_multiproc import (  # noqa: F401 (fixtures)
    control,
    journal,
    start_app,
    wait_gone,
    wait_until,
)
from tests.unit.test_task import add, fail

pytestmark = pytest.mark.timeout(120)


def test_tasks_run_in_their_own_process_and_an_await_past_its_timeout_kills_it(
    start_app: Callable[[ChildSpec], Application],
) -> None:
    app = start_app(ChildSpec("root", (Sup, (SupervisorSpec([task_supervisor("tasks")]),))))
    sup = which_children(app.root)[0].address

    task = Task.async_(add, 2, 3)
    assert task.pid != os.getpid()
    assert task.await_(timeout=30) == 5
    with pytest.raises(TaskExit) as raised:
        TaskSupervisor.async_nolink(sup, fail, "in a process").await_(timeout=30)
    assert isinstance(raised.value.reason, Crash)
    assert raised.value.reason.message == "in a process"

    slow = TaskSupervisor.async_nolink(sup, time.sleep, 3600.0)
    with pytest.raises(CallTimeout):
        slow.await_(timeout=0.5)

    wait_gone([slow.pid])
    wait_until(lambda: count_children(sup)["specs"] == 0, "the killed task is forgotten")
    with pytest.raises(TypeError):
        Task.async_(lambda: 1)
