"""Local name registration on multiprocTCPBase, with real SIGKILLs
(docs/supervision.md row 81): a SIGKILLed holder says nothing, so its name
is freed by the registry's port watch. Fixtures and process helpers come
from ``test_supervision_multiproc``; every wait is a bounded poll."""

# ruff: noqa: F811 (the imported fixtures are, as pytest wants, test parameters)

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervision import (
    AlreadyStarted,
    Application,
    ChildSpec,
    DynamicSupervisorSpec,
    NoProc,
    SupervisorSpec,
    call,
    register,
    start_child,
    whereis,
    which_children,
)
from tests.actors import DynSup, Sup, Worker
from tests.integration.test_server_monitors_multiproc import kids, kill
from tests.integration.test_supervision_multiproc import (  # noqa: F401 (fixtures)
    control,
    journal,
    start_app,
    wait_gone,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def worker(child_id: str, journal: Path, **spec: Any) -> ChildSpec:
    return ChildSpec(child_id, (Worker, (child_id, str(journal))), **spec)


def test_name_is_freed_after_a_sigkill_of_its_actor_process(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    app = start_app(
        ChildSpec("root", (Sup, (SupervisorSpec([worker("a", journal, restart="temporary")]),)))
    )
    address = kids(app.root)["a"]
    register("svc", address)
    assert whereis("svc") == address

    wait_gone([kill(address)])

    wait_until(lambda: whereis("svc") is None, "the name is freed")
    with pytest.raises(NoProc):
        call("svc", "ping", timeout=30)


def test_sigkilled_named_child_is_restarted_under_its_name(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    spec = SupervisorSpec([worker("a", journal, name="svc")], max_restarts=10)
    app = start_app(ChildSpec("root", (Sup, (spec,))))
    old = whereis("svc")
    assert old is not None and old == kids(app.root)["a"]

    kill(old)

    def restarted() -> Any:
        address = kids(app.root)["a"]
        return address not in (None, old, "restarting") and address

    new = wait_until(restarted, "the child is restarted")
    wait_until(lambda: whereis("svc") == new, "the restarted child holds the name")
    assert call("svc", "name") == "a"


def test_second_child_with_a_taken_name_fails_with_already_started_across_processes(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    app = start_app(ChildSpec("dyn", (DynSup, (DynamicSupervisorSpec(),)), start_timeout=None))
    spec = worker("a", journal, name="svc", restart="temporary")
    first = start_child(app.root, spec)

    with pytest.raises(AlreadyStarted) as raised:
        start_child(app.root, spec)

    assert raised.value.address == first
    assert [info.address for info in which_children(app.root)] == [first]
