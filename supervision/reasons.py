"""Exit reasons, as OTP defines them.

An actor under supervision always ends with an *exit reason* that its parent
sees:

- ``"normal"``: the actor stopped itself (``Server.stop()``) with nothing wrong;
- ``"shutdown"`` or ``("shutdown", detail)``: its supervisor (or the
  application) asked it to stop, or a supervisor gave up after reaching its
  restart intensity;
- ``"killed"``: the process was killed (SIGKILL, a brutal kill, or a
  shutdown timeout that ran out) and could say nothing;
- a :class:`Crash`: a handler raised; the exception is kept when it pickles;
- any other picklable value given to ``Server.stop(reason)``: abnormal.

``normal`` and ``shutdown`` reasons are *normal*: a ``transient`` child that
ends with one of them is not restarted.
"""

from __future__ import annotations

import pickle
import traceback
from dataclasses import dataclass, field
from typing import Any

NORMAL = "normal"
SHUTDOWN = "shutdown"
KILLED = "killed"

#: Any value an actor may exit with (see the module docstring).
ExitReason = Any


@dataclass(frozen=True)
class Crash:
    """An abnormal exit caused by an exception raised in an actor.

    ``type_name`` and ``message`` always survive the trip between processes;
    ``exception`` holds the original exception only when it can be pickled
    (it takes no part in equality). ``traceback`` is the formatted traceback.
    """

    type_name: str
    message: str
    traceback: str = ""
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException) -> Crash:
        """Build a crash reason from an exception, with its traceback."""
        kept: BaseException | None = exc
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            kept = None
        return cls(
            type_name=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            exception=kept,
        )

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


def is_normal(reason: ExitReason) -> bool:
    """True for the reasons after which a ``transient`` child is not restarted.

    Those are ``"normal"``, ``"shutdown"`` and ``("shutdown", detail)``.
    """
    if reason in (NORMAL, SHUTDOWN):
        return True
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == SHUTDOWN
