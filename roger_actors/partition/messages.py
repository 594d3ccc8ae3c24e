"""Messages between a partition's Consumer, its WorkerSupervisor and Workers.

They cross process boundaries (pickled by Thespian) and stay inside one
node: nothing here ever goes to the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roger_actors.job import Job


@dataclass(frozen=True)
class WorkerReady:
    """Worker -> Consumer: the worker process ``pid`` at ``address`` is up and idle."""

    pid: int
    address: Any


@dataclass(frozen=True)
class RunJob:
    """Consumer -> Worker: run ``job``; ``token`` identifies the delivery."""

    token: int
    job: Job


@dataclass(frozen=True)
class JobFinished:
    """Worker -> Consumer: the job's outcome, after the callbacks ran.

    ``outcome`` is ``"done"``, ``"error"`` (not retryable: drop),
    ``"retry"`` (publish ``job`` with one more retry) or ``"buried"``.
    ``error`` is ``(kind, detail)`` as a string pair (it is logged).
    """

    token: int
    outcome: str
    error: tuple[str, str] | None = None


@dataclass(frozen=True)
class WorkerExited:
    """WorkerSupervisor -> Consumer: a worker process ended with ``reason``."""

    address: Any
    reason: Any
