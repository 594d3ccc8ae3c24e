"""What the supervision state machines share: a fake clock, control files,
the journal of ``tests.actors.Worker``, a fresh application on
simpleSystemBase or on ``base="light"`` (in-process actors on a live loop,
settled before every check).

Only the public API of ``supervision`` is used here. The reference models of
OTP's rules live in the test modules themselves, one per kind of supervisor.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import Phase, settings

from supervision import Application, ChildSpec, clock
from tests.actors import Worker

#: Examples per state machine; raise it for a longer hunt, e.g.
#: ``SUPERVISION_PROPERTY_EXAMPLES=2000 pytest property_tests``.
EXAMPLES = int(os.environ.get("SUPERVISION_PROPERTY_EXAMPLES", "1000"))

#: No explain phase: it can take longer than finding and shrinking a failure,
#: and pytest's per-test timeout would cut the report short.
MACHINE_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)

#: How a child may be stopped. On simpleSystemBase ``brutal_kill`` ends a
#: worker without running its ``terminate`` (no journal line); a number of
#: seconds or ``infinity`` asks it to stop, and it writes ``terminate ... shutdown``.
SHUTDOWNS: tuple[Any, ...] = ("brutal_kill", 5.0, "infinity")

#: Ways a running worker can be made to exit, with the journal word its
#: ``terminate`` writes and whether OTP calls the reason normal.
EXITS: dict[str, tuple[Any, str, bool]] = {
    "crash": ("crash", "crash", False),
    "stop normal": (("stop", "normal"), "normal", True),
    "stop shutdown": (("stop", "shutdown"), "shutdown", True),
    "stop {shutdown,term}": (("stop", ("shutdown", "bye")), "('shutdown', 'bye')", True),
    "stop abnormal": (("stop", "boom"), "boom", False),
}


class FakeClock:
    """The restart-intensity clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def install(self) -> None:
        clock.set_source(self)

    @staticmethod
    def uninstall() -> None:
        clock.set_source(None)


@dataclass(frozen=True)
class Line:
    """One journal line: ``("start", name, "")`` or ``("terminate", name, reason)``.

    A crash reason (the text of a ``Crash``) is shown as ``"crash"``.
    """

    kind: str
    name: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name} {self.reason}".rstrip()


def parse_line(text: str) -> Line:
    kind, name, rest = [*text.split(" ", 2), "", ""][:3]
    if kind == "start":
        return Line("start", name)
    if rest.startswith("builtins.RuntimeError"):
        rest = "crash"
    return Line(kind, name, rest)


class Workspace:
    """A temporary folder holding the journal and the control files."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="supervision-prop-")
        self.journal = os.path.join(self.dir, "journal")
        self._read = 0

    def worker_spec(
        self, child_id: str, name: str, restart: str, shutdown: Any = "infinity"
    ) -> ChildSpec:
        start = (Worker, (name, self.journal, self.dir))
        return ChildSpec(child_id, start, restart=restart, shutdown=shutdown)

    def set_control(self, name: str, what: str, on: bool) -> None:
        """Make the next starts of ``name`` fail (``what="fail"``) or return
        IGNORE (``what="ignore"``), or stop doing so."""
        path = Path(self.dir, f"{name}.{what}")
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def clear_controls(self) -> None:
        for path in Path(self.dir).glob("*.fail"):
            path.unlink()
        for path in Path(self.dir).glob("*.ignore"):
            path.unlink()

    def new_lines(self) -> list[Line]:
        """Journal lines written since the previous call."""
        try:
            lines = Path(self.journal).read_text().splitlines()
        except FileNotFoundError:
            lines = []
        fresh, self._read = lines[self._read :], len(lines)
        return [parse_line(text) for text in fresh]

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def application(root: ChildSpec, base: str) -> Application:
    """A fresh application on ``base``: ``"simpleSystemBase"`` or ``"light"``."""
    return Application(root, base=base, log_level=logging.CRITICAL)


def settle(app: Application | None) -> None:
    """Wait until the application's actors handled every message sent so far
    (``light``); simpleSystemBase is settled whenever a call returns."""
    system = None if app is None else app.system
    wait = getattr(system, "settle", None)
    if wait is not None:
        wait()


#: Examples of a machine on ``base="light"``: an eighth of simpleSystemBase's
#: (each step crosses threads, and the simpleSystemBase machines hunt longer).
LIGHT_EXAMPLES = max(1, EXAMPLES // 8)


class QuietLogs:
    """Silence the error log of expected crashes while a machine runs."""

    NAMES = ("supervision", "Thespian")

    def __init__(self) -> None:
        self._levels = {name: logging.getLogger(name).level for name in self.NAMES}
        for name in self.NAMES:
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)

    def restore(self) -> None:
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
