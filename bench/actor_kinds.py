"""Actors measured by ``bench/actors.py`` (a module of its own so that forked
actor processes of multiprocTCPBase find the classes by module path)."""

from __future__ import annotations

import time
from typing import Any

from thespian.actors import Actor

from supervision import NOREPLY, DynamicSupervisor, From, Server, Supervisor
from supervision.protocol import CallReply, StartChild


class Idle(Server):
    """An idle supervised server: it holds no timer and answers ``"ping"``."""

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "ping":
            return "pong"
        return super().handle_call(request, from_)


class Echo(Server):
    """Replies every call with its request."""

    def handle_call(self, request: Any, from_: From) -> Any:
        return request


class Pinger(Server):
    """``("ping", target, n)``: make ``n`` sequential actor-to-actor calls to
    ``target`` with ``call_async``; replies the seconds they took."""

    def init(self) -> None:
        self.left = 0
        self.target: Any = None
        self.caller: From | None = None
        self.started = 0.0

    def handle_call(self, request: Any, from_: From) -> Any:
        _, self.target, self.left = request
        self.caller = from_
        self.started = time.perf_counter()
        self.call_async(self.target, "ping")
        return NOREPLY

    def handle_info(self, message: Any) -> None:
        if not isinstance(message, CallReply):
            return
        self.left -= 1
        if self.left > 0:
            self.call_async(self.target, "ping")
        elif self.caller is not None:
            self.reply(self.caller, time.perf_counter() - self.started)
            self.caller = None


class Loader(Server):
    """``("fill", supervisors, per_supervisor, spec)``: start ``per_supervisor``
    children from ``spec`` under each supervisor, one request in flight per
    supervisor (as callers that wait for ``start_child``), all supervisors at
    once; replies ``(seconds, failures)`` once every start was answered."""

    def init(self) -> None:
        self.left: dict[str, tuple[Any, int]] = {}
        self.pending = 0
        self.failures = 0
        self.spec: Any = None
        self.caller: From | None = None
        self.started = 0.0

    def handle_call(self, request: Any, from_: From) -> Any:
        _, supervisors, per, self.spec = request
        self.caller, self.failures = from_, 0
        self.started = time.perf_counter()
        self.pending = len(supervisors) * per
        self.left = {}
        for sup in supervisors:
            if per > 0:
                self.left[self.call_async(sup, StartChild(self.spec))] = (sup, per - 1)
        if self.pending == 0:
            return (0.0, 0)
        return NOREPLY

    def handle_info(self, message: Any) -> None:
        if not isinstance(message, CallReply) or message.ref not in self.left:
            return
        sup, more = self.left.pop(message.ref)
        self.pending -= 1
        if not message.ok:
            self.failures += 1
        if more > 0:
            self.left[self.call_async(sup, StartChild(self.spec))] = (sup, more - 1)
        if self.pending == 0 and self.caller is not None:
            self.reply(self.caller, (time.perf_counter() - self.started, self.failures))
            self.caller = None


class Crasher(Server):
    """Writes ``start <monotonic>`` at each ``init`` and ``crash <monotonic>``
    just before it raises on the call ``"crash"`` (one journal file)."""

    def init(self, journal: str) -> None:
        self.journal = journal
        with open(journal, "a") as f:
            f.write(f"start {time.monotonic()!r}\n")

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "crash":
            with open(self.journal, "a") as f:
                f.write(f"crash {time.monotonic()!r}\n")
            raise RuntimeError("crash on purpose")
        return super().handle_call(request, from_)


class Ticker(Server):
    """Re-arms ``send_after(period)`` at each tick and records each tick's
    lateness (seconds after it was due). Call ``"late"`` returns them."""

    def init(self, period: float) -> None:
        self.period = period
        self.late: list[float] = []
        self.due = time.monotonic() + period
        self.send_after(period, "tick")

    def handle_info(self, message: Any) -> None:
        if message == "tick":
            now = time.monotonic()
            self.late.append(now - self.due)
            self.due = now + self.period
            self.send_after(self.period, "tick")

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "late":
            late, self.late = self.late, []
            return late
        return super().handle_call(request, from_)


class Busy(Server):
    """Cast ``("spin", seconds_each, until)``: burn ``seconds_each`` of CPU per
    message and cast itself again until monotonic time ``until``; call
    ``"count"`` returns the messages handled."""

    def init(self) -> None:
        self.count = 0

    def handle_cast(self, request: Any) -> None:
        _, each, until = request
        end = time.perf_counter() + each
        while time.perf_counter() < end:
            pass
        self.count += 1
        if time.monotonic() < until:
            self.cast(self.address, request)

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "count":
            return self.count
        return super().handle_call(request, from_)


class BenchSup(Supervisor):
    """A Supervisor taking its SupervisorSpec as argument."""


class BenchDynSup(DynamicSupervisor):
    """A DynamicSupervisor taking its DynamicSupervisorSpec as argument."""


class RawPong(Actor):  # type: ignore[misc]
    """A plain Thespian actor (no supervision layer): answers each message."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        self.send(sender, message)


class RawPing(Actor):  # type: ignore[misc]
    """A plain Thespian actor: on ``(pong_address, n)`` from ordinary code,
    exchanges ``n`` messages with the pong actor, then answers the seconds taken."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, tuple):
            self.pong, self.left, self.caller = message[0], message[1], sender
            self.started = time.perf_counter()
            self.send(self.pong, 1)
        elif isinstance(message, int):
            self.left -= 1
            if self.left > 0:
                self.send(self.pong, 1)
            else:
                self.send(self.caller, time.perf_counter() - self.started)
