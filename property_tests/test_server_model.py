"""A ``Server`` behaves like OTP's gen_server, checked against a reference
model step by step: calls, casts, stops, crashes, calls to dead servers and
monitors.

The model follows OTP's rules, not the library:

- casts are handled in order; a call sees every cast sent before it;
- a server that exits (crash in any handler, ``{stop, Reason}``,
  ``gen_server:stop``) ends with that reason; its supervisor restarts it
  (permanent) at a new address with fresh state;
- a caller waiting for a reply when the server exits gets the exit reason
  (a crash, or the stop reason), never a timeout;
- a call to an address nobody lives at fails with ``noproc`` at once;
- each monitor gets exactly one ``DOWN`` with the exit reason, in monitor
  order; monitoring a dead address gives ``DOWN noproc`` at once (also when
  the actor exited only just, and waits to be reaped, or its process is
  closing); after a successful ``demonitor`` no ``DOWN`` comes.

``ServerMachine`` runs on simpleSystemBase, ``LightServerMachine`` on
``base="light"``; ``KillMachine`` (fewer, shorter runs) on multiprocTCPBase,
where SIGKILL is one of the exits (``killed``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from property_tests.harness import (
    EXAMPLES,
    LIGHT_EXAMPLES,
    MACHINE_SETTINGS,
    QuietLogs,
    Workspace,
    settle,
)
from supervision import (
    Application,
    ChildSpec,
    Crash,
    NoProc,
    SupervisorSpec,
    call,
    cast,
    get_state,
    stop,
    which_children,
)
from tests.actors import Sup
from tests.otp_actors import GenServer, Watcher
from tests.procs import free_port, sigkill

T = TypeVar("T")

REASONS = st.sampled_from(["normal", "shutdown", "boom", ("shutdown", "bye")])


def norm(reason: Any) -> Any:
    """A crash compares by kind only."""
    return "crash" if isinstance(reason, Crash) else reason


class Model:
    """What OTP says the server and the watcher hold."""

    def __init__(self) -> None:
        self.casts: list[Any] = []
        self.dead: list[Any] = []  # addresses of exited incarnations
        self.pending: dict[str, int] = {}  # monitor ref -> incarnation monitored
        self.downs: list[tuple[str, Any]] = []
        self.incarnation = 0

    def exited(self, reason: Any, old: Any) -> None:
        for ref, inc in list(self.pending.items()):
            if inc == self.incarnation:
                self.downs.append((ref, norm(reason)))
                del self.pending[ref]
        self.dead.append(old)
        self.casts = []
        self.incarnation += 1


class ServerMachine(RuleBasedStateMachine):
    base = "simpleSystemBase"

    def __init__(self) -> None:
        super().__init__()
        self.quiet = QuietLogs()
        self.ws = Workspace()
        self.model = Model()
        self.app: Application | None = None

    def teardown(self) -> None:
        try:
            if self.app is not None:
                self.app.stop(timeout=30)
        finally:
            self.quiet.restore()
            self.ws.remove()

    @initialize()
    def start(self) -> None:
        children = [
            ChildSpec("s", (GenServer, ("s", self.ws.journal, None))),
            ChildSpec("w", (Watcher, ("w", self.ws.journal, None))),
        ]
        root = ChildSpec("root", (Sup, (SupervisorSpec(children, max_restarts=10_000),)))
        kw: dict[str, Any] = {"base": self.base}
        if self.base == "multiprocTCPBase":
            kw["admin_port"] = free_port(20000, 20999)
        self.app = Application(root, **kw)
        self.app.start()
        self.s, self.w = self.addresses()

    # ------------------------------------------------------------ helpers

    def addresses(self) -> tuple[Any, Any]:
        assert self.app is not None
        found = {i.id: i.address for i in which_children(self.app.root)}
        return found["s"], found["w"]

    def after_exit(self, reason: Any) -> None:
        old = self.s
        self.model.exited(reason, old)
        self.s = self.await_restart(old)

    def await_restart(self, old: Any) -> Any:
        s, w = self.addresses()
        assert w == self.w, "the watcher must never be touched"
        assert s not in (None, "restarting", old)
        return s

    def check_downs(self) -> None:
        got = [(ref, norm(reason)) for ref, reason in call(self.w, "downs")]
        assert got == self.model.downs

    # ------------------------------------------------------------ rules

    @rule(note=st.integers(0, 9))
    def cast_note(self, note: int) -> None:
        cast(self.s, note)
        self.model.casts.append(note)

    @rule()
    def casts_are_seen_in_order(self) -> None:
        assert get_state(self.s).get("casts", []) == self.model.casts

    @rule()
    def crash_in_call(self) -> None:
        with pytest.raises(NoProc) as raised:
            call(self.s, "crash", timeout=30)
        assert isinstance(raised.value.reason, Crash)
        self.after_exit(raised.value.reason)

    @rule(reason=REASONS)
    def stop_from_call(self, reason: Any) -> None:
        assert call(self.s, ("stop", reason)) == "stopping"
        self.after_exit(reason)

    @rule(reason=REASONS)
    def stop_from_outside(self, reason: Any) -> None:
        stop(self.s, reason, timeout=30)
        self.after_exit(reason)

    @rule()
    def crash_while_a_reply_is_deferred(self) -> None:
        with pytest.raises(NoProc) as raised:
            call(self.s, ("crash-later", 0.01), timeout=30)
        assert isinstance(raised.value.reason, Crash)
        self.after_exit(raised.value.reason)

    @rule(reason=REASONS)
    def stop_while_a_reply_is_deferred(self, reason: Any) -> None:
        with pytest.raises(NoProc) as raised:
            call(self.s, ("stop-later", 0.01, reason), timeout=30)
        assert raised.value.reason == reason
        self.after_exit(reason)

    @precondition(lambda self: self.model.dead)
    @rule(data=st.data())
    def call_to_a_dead_address(self, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from(self.model.dead))
        with pytest.raises(NoProc) as raised:
            call(old, "ping", timeout=30)
        assert raised.value.reason == "noproc"

    @rule()
    def monitor_the_server(self) -> None:
        ref = call(self.w, ("monitor", self.s))
        self.model.pending[ref] = self.model.incarnation

    @precondition(lambda self: self.model.dead)
    @rule(data=st.data())
    def monitor_a_dead_address(self, data: st.DataObject) -> None:
        ref = call(self.w, ("monitor", data.draw(st.sampled_from(self.model.dead))))
        self.model.downs.append((ref, "noproc"))
        self.check_downs()

    @precondition(lambda self: self.model.pending)
    @rule(data=st.data())
    def demonitor(self, data: st.DataObject) -> None:
        ref = data.draw(st.sampled_from(sorted(self.model.pending)))
        assert call(self.w, ("demonitor", ref)) is True
        del self.model.pending[ref]

    @rule()
    def downs_match(self) -> None:
        self.check_downs()


TestServerFollowsGenServer = ServerMachine.TestCase
#: a quarter of the supervisor machines' examples: steps wait for real timers
TestServerFollowsGenServer.settings = settings(MACHINE_SETTINGS, max_examples=max(1, EXAMPLES // 4))


# ---------------------------------------------------------------- base="light"


class LightServerMachine(ServerMachine):
    """The same machine on in-process actors run by a live loop: the effects
    of a step (a restart, a Down) are awaited by settling the system."""

    base = "light"

    def await_restart(self, old: Any) -> Any:
        settle(self.app)
        return super().await_restart(old)

    def check_downs(self) -> None:
        settle(self.app)
        super().check_downs()


TestServerFollowsGenServerOnLight = LightServerMachine.TestCase
TestServerFollowsGenServerOnLight.settings = settings(
    MACHINE_SETTINGS, max_examples=max(1, LIGHT_EXAMPLES // 4)
)


# ---------------------------------------------------------------- multiprocTCPBase, real kills

#: Bound of every wait on the multi-process machine.
WAIT = 20.0


def wait_until(condition: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + WAIT
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


class KillMachine(ServerMachine):
    """The same machine on multiprocTCPBase, with SIGKILL as an exit and the
    waits every asynchronous exit needs there."""

    base = "multiprocTCPBase"

    def await_restart(self, old: Any) -> Any:
        def restarted() -> Any:
            s, w = self.addresses()
            assert w == self.w, "the watcher must never be touched"
            return s if s not in (None, "restarting", old) else None

        return wait_until(restarted, "the server was restarted")

    def check_downs(self) -> None:
        def matching() -> bool:
            got = [(ref, norm(reason)) for ref, reason in call(self.w, "downs")]
            return got == self.model.downs

        wait_until(matching, f"the watcher saw {self.model.downs}")

    @rule()
    def monitor_the_server(self) -> None:
        # a monitor is asynchronous here: one that reaches a server already
        # dead gets noproc (distributed Erlang's rule); the model's monitor is
        # the one in place before the next step, so wait for the server's word
        ref = call(self.w, ("monitor", self.s))
        wait_until(lambda: call(self.w, ("monitor-confirmed", ref)), "the monitor is in place")
        self.model.pending[ref] = self.model.incarnation

    @rule()
    def sigkill(self) -> None:
        os.kill(call(self.s, "pid"), signal.SIGKILL)
        self.after_exit("killed")

    @rule()
    def call_to_a_sigkilled_server(self) -> None:
        pid = call(self.s, "pid")
        request = ("stop-later", 3600, "never")
        outcome: list[BaseException] = []

        def waiting_caller() -> None:
            try:
                call(self.s, request, timeout=WAIT * 3)
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=waiting_caller)
        caller.start()
        wait_until(lambda: f"call {request!r}" in get_state(self.s)["log"], "the call is in")
        sigkill(pid)
        caller.join(WAIT * 4)
        [error] = outcome
        assert isinstance(error, NoProc) and error.reason == "killed", error
        self.after_exit("killed")


TestServerFollowsGenServerWithKills = pytest.mark.timeout(600)(KillMachine.TestCase)
TestServerFollowsGenServerWithKills.settings = settings(
    MACHINE_SETTINGS, max_examples=max(1, EXAMPLES // 200), stateful_step_count=10
)
