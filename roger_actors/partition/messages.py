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
    """Worker -> Consumer: the worker process ``pid`` at ``address`` is up and idle;
    ``control`` names its control socket and ``scoreboard`` is the path of its
    scoreboard file (:mod:`roger_actors.partition.control`; ``""``: none)."""

    pid: int
    address: Any
    control: str = ""
    scoreboard: str = ""


@dataclass(frozen=True)
class RunJobs:
    """Consumer -> Worker: run these jobs one after another, in order.

    Each item is ``(token, job)``; the token identifies the delivery.
    """

    items: list[tuple[int, Job]]

    def __repr__(self) -> str:
        # Thespian formats every message it sends (TransmitIntent.identify):
        # showing each job in full was measured at 6% of a Consumer's CPU.
        ids = ", ".join(job.id for _, job in self.items[:3])
        more = f", +{len(self.items) - 3}" if len(self.items) > 3 else ""
        return f"RunJobs({len(self.items)} jobs: {ids}{more})"


@dataclass(frozen=True)
class JobFinished:
    """Worker -> Consumer: the job's outcome, after the callbacks ran.

    ``outcome`` is ``"done"``, ``"error"`` (not retryable: drop),
    ``"retry"`` (publish ``job`` with one more retry), ``"buried"``, or
    ``"returned"`` (not started: the Consumer took it back), or
    ``"cancelled"`` (not started: cancelled through the control socket; the
    worker ran none of its callbacks, the Consumer runs ``on_cancel``). A
    job cancelled while running is not reported: the worker kills its own
    process and its scoreboard says ``"cancelled"``.
    ``error`` is ``(kind, detail)`` as a string pair (it is logged).
    """

    token: int
    outcome: str
    error: tuple[str, str] | None = None
    #: Seconds the job took in the worker (callbacks included).
    seconds: float = 0.0


@dataclass(frozen=True)
class JobsFinished:
    """Worker -> Consumer: outcomes of jobs of a batch, in the order they ran.

    Sent when the batch is done, and sooner when a job took long
    (:data:`roger_actors.partition.worker.FLUSH_SECONDS`), so that outcomes
    are recorded (and acked) promptly.
    """

    results: list[JobFinished]


@dataclass(frozen=True)
class WorkerExited:
    """WorkerSupervisor -> Consumer: a worker process ended with ``reason``."""

    address: Any
    reason: Any


@dataclass(frozen=True)
class QueuesOf:
    """Consumer -> registry (call): the partition's current queues
    ``{queue: max_workers}``; a Consumer restarted after a reconfigure starts
    with these, not with its start arguments."""

    partition_id: str
