"""Exit reasons: a Crash keeps its exception's traceback, chain included."""

from __future__ import annotations

import traceback

from supervision.reasons import Crash, format_traceback


def _lines_without_markers(text: str) -> list[str]:
    """Python 3.11+ marks columns with lines of ``^``/``~``: the only difference."""
    return [line for line in text.splitlines() if line.strip("^~ ") or not line.strip()]


def _chained() -> BaseException:
    def inner() -> None:
        raise KeyError("inner")

    def middle() -> None:
        try:
            inner()
        except KeyError as exc:
            raise ValueError("middle") from exc

    try:
        try:
            middle()
        except ValueError:
            raise RuntimeError("outer")  # noqa: B904 - the implicit context is the point
    except RuntimeError as exc:
        return exc
    raise AssertionError("unreachable")


def test_a_crash_traceback_reads_as_pythons_own_with_causes_and_contexts() -> None:
    exc = _chained()
    assert _lines_without_markers(format_traceback(exc)) == _lines_without_markers(
        "".join(traceback.format_exception(exc))
    )
    crash = Crash.from_exception(exc)
    assert crash.traceback == format_traceback(exc)
    assert "The above exception was the direct cause" in crash.traceback
    assert "During handling of the above exception" in crash.traceback
    assert crash.traceback.rstrip().endswith("RuntimeError: outer")


def test_an_exception_never_raised_formats_as_its_last_line_only() -> None:
    assert format_traceback(ValueError("bare")) == "ValueError: bare\n"


def test_an_exception_group_keeps_the_standard_layout() -> None:
    group = ExceptionGroup("two", [ValueError("a"), KeyError("b")])
    assert format_traceback(group) == "".join(traceback.format_exception(group))
