"""Monitors, links and calls to dead servers on multiprocTCPBase, with real
SIGKILLs (docs/supervision.md, "Monitors and links"). Fixtures and process
helpers come from ``test_supervision_multiproc``; every wait is a bounded poll."""

# ruff: noqa: F811 (the imported fixtures are, as pytest wants, test parameters)

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervision import (
    Application,
    ChildSpec,
    Crash,
    NoProc,
    SupervisorSpec,
    call,
    get_state,
    stop,
    which_children,
)
from tests.actors import Sup, read_journal
from tests.integration.test_supervision_multiproc import (  # noqa: F401 (fixtures)
    control,
    journal,
    start_app,
    wait_gone,
    wait_until,
)
from tests.otp_actors import GenServer, Watcher
from tests.procs import sigkill

pytestmark = pytest.mark.timeout(120)

#: Far longer than any detection takes: the old behaviour (waiting for the
#: whole timeout) shows as CallTimeout, the new one as NoProc.
LONG = 60.0


def gen(name: str, journal: Path, mode: str = "", delay: float = 0.0, **spec: Any) -> ChildSpec:
    return ChildSpec(name, (GenServer, (name, str(journal), None, mode, delay)), **spec)


def watcher(name: str, journal: Path, trap: bool = False, **spec: Any) -> ChildSpec:
    return ChildSpec(name, (Watcher, (name, str(journal), None, trap)), **spec)


def tree(start_app: Callable[[ChildSpec], Application], *children: ChildSpec) -> Any:
    root = start_app(ChildSpec("root", (Sup, (SupervisorSpec(list(children), max_restarts=50),))))
    return root.root


def kids(root: Any) -> dict[Any, Any]:
    return {info.id: info.address for info in which_children(root)}


def kill(address: Any) -> int:
    pid: int = call(address, "pid")
    sigkill(pid)
    return pid


def test_sigkilled_server_gives_its_monitors_down_killed(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(start_app, watcher("w", journal), gen("b", journal))
    addr = kids(root)
    ref = call(addr["w"], ("monitor", addr["b"]))
    wait_until(lambda: call(addr["w"], ("monitor-confirmed", ref)), "the monitor is in place")

    kill(addr["b"])

    downs = wait_until(lambda: call(addr["w"], "downs"), "the watcher got a Down")
    assert downs == [(ref, "killed")]


def test_monitor_of_a_dead_address_gives_down_noproc(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(start_app, watcher("w", journal), gen("b", journal, restart="temporary"))
    addr = kids(root)
    pid = call(addr["b"], "pid")
    stop(addr["b"])
    wait_gone([pid])  # reaped: nothing lives at the address any more

    ref = call(addr["w"], ("monitor", addr["b"]))

    downs = wait_until(lambda: call(addr["w"], "downs"), "the watcher got a Down")
    assert downs == [(ref, "noproc")]


def test_link_to_a_dead_address_gives_a_trapping_linker_exit_noproc(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(
        start_app, watcher("w", journal, trap=True), gen("b", journal, restart="temporary")
    )
    addr = kids(root)
    pid = call(addr["b"], "pid")
    stop(addr["b"])
    wait_gone([pid])  # reaped: nothing lives at the address any more

    call(addr["w"], ("link", addr["b"]))

    assert wait_until(lambda: call(addr["w"], "exits"), "w got Exited") == ["noproc"]


def test_call_to_a_dead_address_raises_noproc_at_once(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(start_app, gen("b", journal, restart="temporary"))
    b = kids(root)["b"]
    pid = call(b, "pid")
    stop(b)
    wait_gone([pid])

    with pytest.raises(NoProc) as raised:
        call(b, "ping", timeout=LONG)
    assert raised.value.reason == "noproc"


def test_caller_of_a_sigkilled_server_gets_noproc_killed(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(start_app, gen("b", journal))
    b = kids(root)["b"]
    request = ("stop-later", 3600, "never")
    outcome: list[BaseException] = []

    def waiting_caller() -> None:
        try:
            call(b, request, timeout=LONG)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=waiting_caller)
    caller.start()
    wait_until(lambda: f"call {request!r}" in get_state(b)["log"], "the call is pending")
    kill(b)
    caller.join(LONG + 10)

    [error] = outcome
    assert isinstance(error, NoProc)
    assert error.reason == "killed"


def test_caller_of_a_deferred_reply_gets_the_crash_of_another_handler(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(start_app, gen("b", journal))

    with pytest.raises(NoProc) as raised:
        call(kids(root)["b"], ("crash-later", 0.2), timeout=LONG)

    assert isinstance(raised.value.reason, Crash)
    assert raised.value.reason.message == "b crashed from a timer"


def test_stop_with_a_reply_runs_terminate_before_the_reply(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(start_app, gen("b", journal, delay=1.0, restart="transient"))

    assert call(kids(root)["b"], ("stop-reply", "normal"), timeout=LONG) == "bye"

    assert read_journal(journal)[-1] == "terminate b normal"


def test_stop_returns_after_terminate(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(start_app, gen("b", journal, delay=0.5, restart="transient"))

    stop(kids(root)["b"], "normal", timeout=LONG)

    assert read_journal(journal)[-1] == "terminate b normal"


def test_sigkill_of_a_linked_server_ends_a_non_trapping_one_with_killed(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(start_app, watcher("w", journal), gen("b", journal))
    addr = kids(root)
    call(addr["w"], ("link", addr["b"]))
    wait_until(lambda: call(addr["w"], ("link-confirmed", addr["b"])), "b confirmed the link")

    kill(addr["b"])

    wait_until(lambda: "terminate w killed" in read_journal(journal), "w ended with killed")
    wait_until(lambda: kids(root)["w"] not in (None, "restarting", addr["w"]), "w restarted")


def test_sigkill_of_a_linked_server_is_an_exit_message_for_a_trapping_one(
    start_app: Callable[[ChildSpec], Application], journal: Path
) -> None:
    root = tree(start_app, watcher("w", journal, trap=True), gen("b", journal))
    addr = kids(root)
    call(addr["w"], ("link", addr["b"]))
    wait_until(lambda: call(addr["w"], ("link-confirmed", addr["b"])), "b confirmed the link")

    kill(addr["b"])

    assert wait_until(lambda: call(addr["w"], "exits"), "w got Exited") == ["killed"]
    assert kids(root)["w"] == addr["w"]
