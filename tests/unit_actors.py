"""Actors and helpers for the simpleSystemBase unit tests of ``supervision``.

On simpleSystemBase every actor runs in the test's own thread, so these
actors may also report through module-level state (:data:`TERMINATED`)
besides the journal file that ``tests.actors.Worker`` writes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from supervision import (
    NOREPLY,
    Application,
    ChildSpec,
    From,
    Server,
    SupervisorSpec,
    clock,
)
from supervision.protocol import CallReply, TerminateChild, WhichChildren
from tests.actors import Sup, Worker, read_journal
from tests.procs import open_files

#: The base the unit tests run on: ``SUPERVISION_TEST_BASE=light`` runs them on
#: ``supervision.light`` (in-process asyncio actors) instead of simpleSystemBase.
BASE = os.environ.get("SUPERVISION_TEST_BASE", "simpleSystemBase")

#: ``(name, reason)`` of every ``Probe.terminate`` run in this process, in order.
TERMINATED: list[tuple[str, Any]] = []


class Probe(Worker):
    """A Worker that also reports its casts and terminate reasons, and can leave a call unanswered.

    Extra calls: ``"casts"`` -> the cast requests handled so far;
    ``"never"`` -> NOREPLY, and no reply ever comes; ``("raise", text)``
    -> raises ``ValueError(text)``; ``("wait", seconds)`` -> NOREPLY, then
    replies ``"waited"`` from a ``send_after`` timer ``seconds`` later.
    """

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "casts":
            return list(getattr(self, "casts", []))
        if request == "never":
            return NOREPLY
        if request == "fds":  # what this process has open: fd -> what it is
            return open_files()
        if isinstance(request, tuple) and request[0] == "env":
            return os.environ.get(request[1])
        if request == "cwd":
            return os.getcwd()
        if request == "loop":  # the module of the event loop this actor runs on
            return type(asyncio.get_running_loop()).__module__
        if isinstance(request, tuple) and request[0] == "imported":
            return request[1] in sys.modules
        if isinstance(request, tuple) and request[0] == "raise":
            raise ValueError(request[1])
        if isinstance(request, tuple) and request[0] == "wait":
            self.send_after(request[1], ("waited", from_))
            return NOREPLY
        return super().handle_call(request, from_)

    def handle_info(self, message: Any) -> None:
        if isinstance(message, tuple) and message[0] == "waited":
            self.reply(message[1], "waited")
        else:
            super().handle_info(message)

    def terminate(self, reason: Any) -> None:
        TERMINATED.append((self.name, reason))
        super().terminate(reason)


class Flaky(Probe):
    """A Probe whose next ``n`` starts fail, ``n`` read from ``<control>/<name>.failures``.

    Each failing start writes ``failed <name>`` to the journal, decrements the
    count and, when ``spy`` is given, asks the spy to look at the parent
    supervisor's children while the restart is still in progress.
    """

    def init(  # type: ignore[override]
        self, name: str, journal: str, control: str, spy: Any = None
    ) -> Any:
        counter = Path(control) / f"{name}.failures"
        left = int(counter.read_text()) if counter.exists() else 0
        if left > 0:
            counter.write_text(str(left - 1))
            with open(journal, "a") as f:
                f.write(f"failed {name}\n")
            if spy is not None:
                self.cast(spy, ("look", self.parent))
            raise RuntimeError(f"{name} failing on purpose ({left} left)")
        return super().init(name, journal, control)


class Spy(Server):
    """On cast ``("look", supervisor)`` asks that supervisor for its children;
    call ``"seen"`` returns every ``which_children`` answer received so far."""

    def init(self) -> None:
        self.seen: list[Any] = []

    def handle_cast(self, request: Any) -> None:
        if isinstance(request, tuple) and request[0] == "look":
            self.call_async(request[1], WhichChildren())

    def handle_info(self, message: Any) -> None:
        if isinstance(message, CallReply):
            self.seen.append(message.value)

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "seen":
            return list(self.seen)
        return super().handle_call(request, from_)


class Reaper(Server):
    """Terminates a DynamicSupervisor's child while its restart is failing.

    Call ``("aim", address)`` names the child; on the next cast ``("look",
    supervisor)`` (which ``Flaky`` sends from a failing start) it asks that
    supervisor to terminate ``address``. Call ``("send", [request, ...])``
    instead sends those supervisor requests, one per look. Call ``"answers"`` returns
    ``(ok, value)`` of every reply received.
    """

    def init(self) -> None:
        self.target: Any = None
        self.requests: list[Any] = []
        self.answers: list[tuple[bool, Any]] = []

    def handle_call(self, request: Any, from_: From) -> Any:
        if isinstance(request, tuple) and request[0] == "aim":
            self.target = request[1]
            return "aimed"
        if isinstance(request, tuple) and request[0] == "send":
            # the next looks send these supervisor requests, one per look
            self.requests = list(request[1])
            return "aimed"
        if request == "answers":
            return list(self.answers)
        return super().handle_call(request, from_)

    def handle_cast(self, request: Any) -> None:
        if isinstance(request, tuple) and request[0] == "look" and self.target is not None:
            self.call_async(request[1], TerminateChild(self.target))
            self.target = None
        elif isinstance(request, tuple) and request[0] == "look" and self.requests:
            self.call_async(request[1], self.requests.pop(0))

    def handle_info(self, message: Any) -> None:
        if isinstance(message, CallReply):
            self.answers.append((message.ok, message.value))


class FailingInit(Server):
    """A Server whose ``init`` always raises ``KeyError(text)``."""

    def init(self, text: str = "no such key") -> None:
        raise KeyError(text)


class Incomparable:
    """A child id that cannot be compared: ``==`` raises TypeError."""

    def __eq__(self, other: object) -> bool:
        raise TypeError("Incomparable cannot be compared")

    __hash__ = object.__hash__


class FakeClock:
    """A clock for restart intensity that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Tree:
    """What one test runs: its journal and control files, and the Applications it started.

    Use as a context manager (the tests' fixture does): on exit every
    Application is stopped and the real clock and :data:`TERMINATED` are restored.
    """

    def __init__(self, root: Path, base: str | None = None) -> None:
        self.root = root
        self.base = base or BASE
        self.journal = str(root / "journal")
        self.control = str(root)
        self.apps: list[Application] = []

    def __enter__(self) -> Tree:
        TERMINATED.clear()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for app in self.apps:
                app.stop()
        finally:
            clock.set_source(None)
            TERMINATED.clear()

    # ---------------------------------------------------------------- starting

    def app(self, root: ChildSpec) -> Application:
        """An Application of ``root`` on this tree's base (default :data:`BASE`),
        stopped at the end of the test."""
        app = Application(root, base=self.base)
        self.apps.append(app)
        return app

    def start(self, root: ChildSpec) -> Any:
        """Start an Application of ``root``; return the root's address."""
        return self.app(root).start()

    def fake_clock(self) -> FakeClock:
        """Install a fake intensity clock for the rest of the test."""
        fake = FakeClock()
        clock.set_source(fake)
        return fake

    # ---------------------------------------------------------------- specs

    def worker(
        self,
        name: str,
        restart: str = "permanent",
        *,
        actor: type = Probe,
        args: tuple[Any, ...] = (),
        shutdown: Any = "infinity",
        start_timeout: float | None = None,
    ) -> ChildSpec:
        """A ChildSpec (id ``name``) for a worker journaling to this test's files.

        ``shutdown="infinity"`` and ``start_timeout=None`` by default: on
        simpleSystemBase stopping and starting are synchronous anyway, so the
        tests need no timers; the tests that are about timers set them.
        """
        return ChildSpec(
            name,
            (actor, (name, self.journal, self.control, *args)),
            restart=restart,  # type: ignore[arg-type]
            shutdown=shutdown,
            start_timeout=start_timeout,
        )

    # ---------------------------------------------------------------- control

    def fail_starts(self, name: str) -> None:
        """Make every start of Worker ``name`` fail until :meth:`heal`."""
        (self.root / f"{name}.fail").touch()

    def fail_next_starts(self, name: str, count: int) -> None:
        """Make the next ``count`` starts of Flaky ``name`` fail."""
        (self.root / f"{name}.failures").write_text(str(count))

    def ignore_starts(self, name: str) -> None:
        """Make every ``init`` of Worker ``name`` return IGNORE until :meth:`heal`."""
        (self.root / f"{name}.ignore").touch()

    def heal(self, name: str) -> None:
        """Let Worker ``name`` start normally again."""
        for suffix in ("fail", "ignore", "failures"):
            (self.root / f"{name}.{suffix}").unlink(missing_ok=True)

    def lines(self) -> list[str]:
        """The journal so far, without the pids of the ``start`` lines."""
        out = []
        for line in read_journal(self.journal):
            words = line.split(" ")
            out.append(" ".join(words[:2]) if words[0] == "start" else line)
        return out


def sup_spec(
    child_id: Any,
    children: Sequence[ChildSpec],
    strategy: str = "one_for_one",
    max_restarts: int = 3,
    max_seconds: float = 5,
    restart: str = "permanent",
) -> ChildSpec:
    """A ChildSpec for a ``Sup`` running ``children`` with these flags."""
    spec = SupervisorSpec(children, strategy, max_restarts, max_seconds)  # type: ignore[arg-type]
    return ChildSpec(child_id, (Sup, (spec,)), restart=restart, start_timeout=None)  # type: ignore[arg-type]
