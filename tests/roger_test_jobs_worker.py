"""Jobs and an owner actor for the worker tests (tests/integration/test_worker_scoreboard.py).

Jobs report through marker files in the directory ``args[0]``:
``<tag>.started`` when ``perform`` begins, ``<tag>.done`` when it completes.
A :class:`GateJob` waits (bounded) for the file ``<tag>.gate`` before it
completes, so a test decides when it ends; a :class:`SignalledJob` waits
until its worker's control thread took in a given datagram, so a test knows
the datagram was handled while that job ran.

:class:`Owner` stands in for the Consumer: it records the ``WorkerReady``,
``JobsFinished`` and ``WorkerExited`` messages it gets and hands batches to
workers on the test's request.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from roger_actors import Job
from roger_actors.partition.messages import JobsFinished, RunJobs, WorkerExited, WorkerReady
from supervision import From, Server

#: The longest a GateJob waits for its gate.
GATE_SECONDS = 30.0


def mark(directory: str, tag: str, what: str) -> None:
    """Create the marker file ``<directory>/<tag>.<what>``."""
    Path(directory, f"{tag}.{what}").touch()


class QuickJob(Job):
    """args: [dir, tag] -> marks started and done at once; returns the tag."""

    def perform(self, args: Any) -> Any:
        mark(args[0], args[1], "started")
        mark(args[0], args[1], "done")
        return args[1]


class SleepJob(Job):
    """args: [dir, tag, seconds] -> marks started, sleeps, marks done."""

    def perform(self, args: Any) -> Any:
        mark(args[0], args[1], "started")
        time.sleep(args[2])
        mark(args[0], args[1], "done")
        return args[1]


class GateJob(Job):
    """args: [dir, tag] -> marks started, waits for ``<tag>.gate`` (at most
    GATE_SECONDS), then marks done. Fails when the gate never opened."""

    def perform(self, args: Any) -> Any:
        mark(args[0], args[1], "started")
        gate = Path(args[0], f"{args[1]}.gate")
        deadline = time.monotonic() + GATE_SECONDS
        while not gate.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate of {args[1]} never opened")
            time.sleep(0.01)
        mark(args[0], args[1], "done")
        return args[1]


def _control_state() -> Any:
    """The worker's private control state in this (worker) process, or None."""
    from roger_actors.partition.worker import _BatchControl

    found = [obj for obj in gc.get_objects() if isinstance(obj, _BatchControl)]
    return found[0] if len(found) == 1 else None


class SignalledJob(Job):
    """args: [dir, tag, what] -> marks started, waits (at most GATE_SECONDS)
    until its worker's control thread took in ``what``: ``"return"``
    (RETURN_UNSTARTED) or a token (a cancel of a job of the current batch),
    then marks done. Fails when that never happened.

    It reads the worker's private control state so that a test knows for
    sure the datagram was handled while this job ran."""

    def perform(self, args: Any) -> Any:
        mark(args[0], args[1], "started")
        what = args[2]
        deadline = time.monotonic() + GATE_SECONDS
        state = None
        while True:
            state = state or _control_state()
            if state is not None:
                with state.lock:
                    if what == "return" and state.return_unstarted:
                        break
                    if what != "return" and what in state.cancelled:
                        break
            if time.monotonic() > deadline:
                raise TimeoutError(f"signal {what!r} never seen")
            time.sleep(0.005)
        mark(args[0], args[1], "done")
        return args[1]


class Owner(Server):
    """Records what workers tell it; calls: ``"ready"``, ``"finished"``,
    ``"exited"`` (lists so far) and ``("run", pid, items)`` (send ``RunJobs``
    to the worker with that pid, at the address it reported)."""

    def init(self) -> None:
        self.ready: list[WorkerReady] = []
        self.finished: list[Any] = []
        self.exited: list[WorkerExited] = []

    def handle_info(self, message: Any) -> None:
        if isinstance(message, WorkerReady):
            self.ready.append(message)
        elif isinstance(message, JobsFinished):
            self.finished.extend(message.results)
        elif isinstance(message, WorkerExited):
            self.exited.append(message)
        else:
            super().handle_info(message)

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "ready":
            return list(self.ready)
        if request == "finished":
            return list(self.finished)
        if request == "exited":
            return list(self.exited)
        if isinstance(request, tuple) and request[0] == "run":
            _, pid, items = request
            [ready] = [r for r in self.ready if r.pid == pid]
            self.send(ready.address, RunJobs(items))
            return True
        return super().handle_call(request, from_)
