"""Actors used by the tests. They report what happens to them through files,
so the same actors work on simpleSystemBase and on multiprocTCPBase."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from supervision import IGNORE, NOREPLY, DynamicSupervisor, From, Server, Supervisor


def record(journal: str | None, line: str) -> None:
    """Append one line to the journal file (atomic for short lines)."""
    if journal:
        with open(journal, "a") as f:
            f.write(line + "\n")


def read_journal(journal: str | Path) -> list[str]:
    """Lines written so far."""
    try:
        return Path(journal).read_text().splitlines()
    except FileNotFoundError:
        return []


class Worker(Server):
    """A controllable worker.

    init(name, journal=None, control=None, terminate_delay=0): fails when the
    file ``<control>/<name>.fail`` exists, returns IGNORE when
    ``<control>/<name>.ignore`` exists. Journal lines: ``start <name> <pid>``,
    ``terminate <name> <reason>``.
    """

    def init(
        self,
        name: str,
        journal: str | None = None,
        control: str | None = None,
        terminate_delay: float = 0.0,
    ) -> Any:
        self.name = name
        self.journal = journal
        self.terminate_delay = terminate_delay
        self.pending: list[From] = []
        if control and os.path.exists(os.path.join(control, f"{name}.fail")):
            raise RuntimeError(f"{name} told to fail")
        if control and os.path.exists(os.path.join(control, f"{name}.ignore")):
            return IGNORE
        record(journal, f"start {name} {os.getpid()}")
        return None

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "ping":
            return "pong"
        if request == "pid":
            return os.getpid()
        if request == "name":
            return self.name
        if request == "crash":
            raise RuntimeError(f"{self.name} crashed on request")
        if isinstance(request, tuple) and request[0] == "stop":
            self.stop(request[1])
            return "stopping"
        if request == "later":
            self.pending.append(from_)
            self.send_after(0.05, "answer-later")
            return NOREPLY
        if isinstance(request, tuple) and request[0] == "timer":
            self.timer = self.send_after(request[1], ("tick", request[2]))
            return "set"
        if request == "cancel-timer":
            return self.cancel_timer(self.timer)
        if request == "ticks":
            return list(getattr(self, "ticks", []))
        if request == "hang":
            time.sleep(3600)
        if request == "spawn-raw":
            # A child actor that never gets its InitChild (as when its creator
            # is killed right after the fork).
            self.createActor(Worker)
            return "spawned"
        if request == "spawn-slow-raw":
            self.createActor(SlowBuilt)
            return "spawned"
        return super().handle_call(request, from_)

    def handle_cast(self, request: Any) -> None:
        if request == "crash":
            raise RuntimeError(f"{self.name} crashed on cast")
        self.casts = [*getattr(self, "casts", []), request]

    def handle_info(self, message: Any) -> None:
        if message == "answer-later":
            for from_ in self.pending:
                self.reply(from_, "late answer")
            self.pending.clear()
        elif isinstance(message, tuple) and message[0] == "tick":
            self.ticks = [*getattr(self, "ticks", []), message[1]]
        else:
            super().handle_info(message)

    def terminate(self, reason: Any) -> None:
        if self.terminate_delay:
            time.sleep(self.terminate_delay)
        record(self.journal, f"terminate {self.name} {reason}")


class SlowBuilt(Worker):
    """An actor whose process is slow to start: its object takes 15 s to
    build, as if Thespian's start-up in the child (logging, transport,
    loading the class) were held up. Nothing in this library has run in the
    process before ``super().__init__``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        time.sleep(15)  # the slow start-up under test; nothing to wait for
        super().__init__(*args, **kwargs)


class Sup(Supervisor):
    """A Supervisor taking its SupervisorSpec as argument (the default init)."""


class DynSup(DynamicSupervisor):
    """A DynamicSupervisor taking its DynamicSupervisorSpec as argument."""


class SlowInit(Server):
    """init(name, journal, seconds): writes ``init <name> <pid>``, sleeps
    ``seconds`` (a hung ``init``), then writes ``start <name> <pid>``."""

    def init(self, name: str, journal: str, seconds: float) -> None:
        record(journal, f"init {name} {os.getpid()}")
        time.sleep(seconds)
        record(journal, f"start {name} {os.getpid()}")
