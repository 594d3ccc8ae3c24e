"""Worker callbacks (Roger's ``Roger.Partition.Worker.Callback``).

Configure a subclass of :class:`WorkerCallback` as the ``callbacks`` config
key (the class or its ``"module:Name"``). The worker makes one instance of it
(calling the class with no arguments) and calls its methods at points of a
job's life cycle. Every method here does nothing, so a subclass overrides only
what it needs. A callback that raises is logged by the worker and never takes
the worker down or changes the job's outcome.

Where they run: in the worker process that ran the job, except three that
have no worker left to run in: ``on_error``/``on_buried`` for a job that
timed out or whose worker died, and ``on_cancel``. Those run in the
partition's Consumer process, on a pool of up to four threads of their own
(:mod:`roger_actors.partition.callback_runner`), so the methods of a
Consumer's instance may be called from several threads at once: make them
thread-safe. ``roger.Worker.run`` calls them in the calling process.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from roger_actors.job import Job

__all__ = ["ErrorInfo", "Stacktrace", "WorkerCallback"]

#: ``(kind, detail)``: ``("error", exception)`` when ``perform`` raised,
#: ``("timeout", message)`` when ``max_execution_time`` ran out,
#: ``("worker_crash", reason)`` when the worker process died.
ErrorInfo: TypeAlias = tuple[str, Any]

#: Frames of the failure (:func:`traceback.extract_tb`), or ``None`` when there
#: is no Python traceback (timeouts, crashes).
Stacktrace: TypeAlias = "traceback.StackSummary | list[traceback.FrameSummary] | None"


class WorkerCallback:
    """Hooks into a job's life cycle; subclass and override the ones you need.

    ``partition_id`` is the partition the job runs in and ``job`` the
    :class:`~roger_actors.job.Job`. ``state`` is whatever :meth:`before_run`
    returned for that job (``None`` when it was not called, e.g. for a job
    that crashed its worker before running).
    """

    def before_run(self, partition_id: str, job: Job) -> Any:
        """Called in the worker just before ``job.perform`` runs.

        The return value is kept as ``state`` and handed to :meth:`after_run`,
        :meth:`on_error` or :meth:`on_buried` for the same job. Default: ``None``.
        """
        return None

    def after_run(self, partition_id: str, job: Job, result: Any, state: Any) -> None:
        """Called after ``perform`` returned ``result`` without raising."""

    def on_error(
        self,
        partition_id: str,
        job: Job,
        error: ErrorInfo,
        stacktrace: Stacktrace,
        state: Any,
    ) -> None:
        """Called when the job failed: ``perform`` raised, it timed out or its worker died.

        ``error`` is ``(kind, detail)`` (see :data:`ErrorInfo`). Called for a
        failure of a job that is not retryable, and for each failed attempt of
        a retryable job that is retried. Not called when the failure buries
        the job: then :meth:`on_buried` is called instead. So exactly one of
        ``on_error`` and ``on_buried`` runs per failure, as in Roger.
        """

    def on_cancel(self, partition_id: str, job: Job) -> None:
        """Called once when a cancelled job is dropped, whether it was queued or running."""

    def on_buried(
        self,
        partition_id: str,
        job: Job,
        error: ErrorInfo,
        stacktrace: Stacktrace,
        state: Any,
    ) -> None:
        """Called when a retryable job failed its last retry and was moved to the buried queue.

        ``error``, ``stacktrace`` and ``state`` are those of that last failure,
        for which :meth:`on_error` is not called.
        """
