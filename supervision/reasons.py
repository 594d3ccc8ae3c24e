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
            traceback=format_traceback(exc),
            exception=kept,
        )

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_traceback(exc: BaseException) -> str:
    """``exc``'s traceback with its chain of causes and contexts, laid out as
    :func:`traceback.format_exception` lays it out, but without the column
    markers of Python 3.11+: computing those compiles each frame's source
    line, which made formatting three times as slow and was half the cost of
    an in-process restart. An exception group falls back to the standard
    formatter. Never raises for a well-formed exception."""
    if isinstance(exc, BaseExceptionGroup):
        return "".join(traceback.format_exception(exc))
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for error, link in reversed(chain):
        if error.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.StackSummary.extract(traceback.walk_tb(error.__traceback__)).format())
        parts.extend(traceback.format_exception_only(type(error), error))
        parts.append(link)
    return "".join(parts)


def is_normal(reason: ExitReason) -> bool:
    """True for the reasons after which a ``transient`` child is not restarted.

    Those are ``"normal"``, ``"shutdown"`` and ``("shutdown", detail)``.
    """
    if reason in (NORMAL, SHUTDOWN):
        return True
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == SHUTDOWN
