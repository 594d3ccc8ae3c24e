"""Job classes of the testing-kit tests (imported before the node starts)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import roger_actors as roger


class Touch(roger.Job):
    """Waits ``args[1]`` seconds, then creates the file ``args[0]``."""

    def perform(self, args: Any) -> None:
        time.sleep(args[1])
        Path(args[0]).touch()


class Explode(roger.Job):
    def perform(self, args: Any) -> None:
        raise ValueError(f"exploded on {args[0]}")


class FailOnce(roger.Job):
    """Fails its first attempt (marked by the file ``args[0]``), then succeeds."""

    retryable = True

    def perform(self, args: Any) -> None:
        marker = Path(args[0])
        if not marker.exists():
            marker.touch()
            raise RuntimeError("first attempt fails")
        Path(args[0] + ".done").touch()


class AlwaysFails(roger.Job):
    retryable = True

    def perform(self, args: Any) -> None:
        raise KeyError(args[0])


class TooSlow(roger.Job):
    max_execution_time = 1

    def perform(self, args: Any) -> None:
        time.sleep(30)


class Spawner(roger.Job):
    """Enqueues a Touch job (``args``) into its own partition, then returns."""

    def perform(self, args: Any) -> None:
        roger.Job.create(Touch, args[1:]).enqueue(args[0])


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("not picklable")


class RaisesUnpicklable(roger.Job):
    def perform(self, args: Any) -> None:
        raise Unpicklable("cannot travel")


class Serial(roger.Job):
    """Holds ``account-<args[0]>`` for ``args[2]`` seconds; writes its span to
    the file ``args[1]`` + its id."""

    def execution_key(self, args: Any) -> str:
        return f"account-{args[0]}"

    def perform(self, args: Any) -> None:
        began = time.time()
        time.sleep(args[2])
        Path(args[1] + self.id).write_text(f"{began} {time.time()}")
