"""Eager mode: ``Job.enqueue`` runs the job here and now (unit tests of job classes).

Inside ``with eager() as run:``, ``job.enqueue(partition_id)`` does not
publish. The job makes the round trip a worker sees (encoded with
``queued_at`` set, then decoded and validated), and then it runs in the
calling thread with the callbacks given, the way a worker runs it:
``before_run``, ``perform``, then ``after_run``, or for a failure exactly one
of ``on_error``/``on_buried`` (the same code as the worker:
:func:`roger_actors.partition.worker.execute_job`). No node and no broker are
needed.

Roger's decisions, eagerly:

* a failed retryable job is retried at once (``retry_count`` + 1), without
  the back-off delay, until it succeeds or its last retry level buries it;
  each attempt is an :class:`EagerOutcome` (``"retry"``, then ``"done"`` or
  ``"buried"``). A failed job that is not retryable is ``"error"``;
* a queue key is held from the enqueue until the job's last attempt ends:
  an enqueue with that key meanwhile (a job enqueueing its duplicate) raises
  :class:`~roger_actors.errors.DuplicateJobError`, as the node does;
* an execution key is held while the job runs: a job with that key
  enqueued meanwhile waits, and runs right after the holder's attempt;
* :meth:`EagerRun.cancel` marks a job id: when that job would run, it is
  dropped instead (``on_cancel``, outcome ``"cancelled"``);
* errors: with ``raise_errors=True`` (the default) the exception of the first
  ``"error"`` or ``"buried"`` outcome is raised by the outermost
  ``enqueue`` once every job it caused has run (a job's enqueue inside
  another job's ``perform`` never raises it into that job). With
  ``raise_errors=False`` failures are only recorded (:attr:`EagerRun.errors`).

Not eager (no process to kill, no cluster): ``max_execution_time`` is not
enforced, ``roger.Global`` and ``roger.Info`` need a node, and the jobs run
one at a time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from roger_actors.callbacks import ErrorInfo, Stacktrace, WorkerCallback
from roger_actors.config import DEFAULT_RETRY_LEVELS
from roger_actors.errors import DuplicateJobError
from roger_actors.job import Job, execution_key_of, queue_key_of, set_enqueue_hook

__all__ = ["EagerOutcome", "EagerRun", "eager"]

_active_lock = threading.Lock()
_active: EagerRun | None = None


@dataclass(frozen=True)
class EagerOutcome:
    """One attempt of a job run eagerly.

    ``outcome``: ``"done"``, ``"retry"`` (failed, run again), ``"error"``
    (failed, not retryable), ``"buried"`` (failed its last retry level) or
    ``"cancelled"`` (not run). ``job`` is the job as it ran (``retry_count``,
    ``queued_at`` and ``started_at`` set), ``result`` what ``perform``
    returned, ``error`` the exception it raised.
    """

    job: Job
    partition_id: str
    queue: str
    outcome: str
    result: Any = None
    error: BaseException | None = None


class _Capture(WorkerCallback):
    """Passes every callback on to the user's, keeping the exception of a failure."""

    def __init__(self, inner: WorkerCallback | None) -> None:
        self.inner = inner
        self.result: Any = None
        self.error: BaseException | None = None
        self.job: Job | None = None

    def before_run(self, partition_id: str, job: Job) -> Any:
        self.result, self.error, self.job = None, None, job
        return None if self.inner is None else self.inner.before_run(partition_id, job)

    def after_run(self, partition_id: str, job: Job, result: Any, state: Any) -> None:
        self.result = result
        if self.inner is not None:
            self.inner.after_run(partition_id, job, result, state)

    def on_error(self, partition_id: str, job: Job, error: ErrorInfo, stacktrace: Stacktrace,
                 state: Any) -> None:
        self.error = error[1] if isinstance(error[1], BaseException) else None
        if self.inner is not None:
            self.inner.on_error(partition_id, job, error, stacktrace, state)

    def on_buried(self, partition_id: str, job: Job, error: ErrorInfo, stacktrace: Stacktrace,
                  state: Any) -> None:
        self.error = error[1] if isinstance(error[1], BaseException) else None
        if self.inner is not None:
            self.inner.on_buried(partition_id, job, error, stacktrace, state)


@dataclass
class EagerRun:
    """What :func:`eager` gives: the outcomes so far, and cancel marks."""

    callbacks: WorkerCallback | None
    retry_levels: tuple[int, ...]
    raise_errors: bool
    #: Every attempt, in the order they ended.
    outcomes: list[EagerOutcome] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _queue_keys: set[tuple[str, str]] = field(default_factory=set)
    _executing: set[tuple[str, str]] = field(default_factory=set)
    _waiting: dict[tuple[str, str], deque[tuple[Job, str, str]]] = field(default_factory=dict)
    _cancelled: set[str] = field(default_factory=set)
    _depth: int = 0
    _first_error: BaseException | None = None

    @property
    def errors(self) -> list[EagerOutcome]:
        """The failures that ended a job: outcomes ``"error"`` and ``"buried"``."""
        return [o for o in self.outcomes if o.outcome in ("error", "buried")]

    def outcomes_of(self, job: Job | str) -> list[EagerOutcome]:
        """The attempts of ``job`` (a job or its id), in order."""
        job_id = job if isinstance(job, str) else job.id
        return [o for o in self.outcomes if o.job.id == job_id]

    def cancel(self, job_id: str) -> None:
        """Cancel ``job_id``: if it has not run yet, it is dropped when it would
        (``on_cancel`` runs once, outcome ``"cancelled"``). ValueError for an
        id that is not a non-empty ``str``."""
        if not isinstance(job_id, str) or not job_id:
            raise ValueError(f"job_id must be a non-empty str, got {job_id!r}")
        with self._lock:
            self._cancelled.add(job_id)

    # ------------------------------------------------------------ the hook

    def enqueue(self, job: Job, partition_id: str, queue: str | None) -> None:
        """The enqueue hook: run ``job`` now (see the module docstring)."""
        with self._lock:
            message = job.to_amqp(partition_id, queue)
            queued = Job.decode(message.body)  # what a worker gets
            queue_type = queue if queue is not None else queued.queue_type_name()
            key = queue_key_of(queued)
            if key is not None:
                if (partition_id, key) in self._queue_keys:
                    raise DuplicateJobError(
                        f"a job with queue key {key!r} is already queued or running in "
                        f"partition {partition_id!r}",
                        key,
                    )
                self._queue_keys.add((partition_id, key))
            self._depth += 1
            try:
                self._schedule(queued, partition_id, queue_type)
            finally:
                self._depth -= 1
            if self._depth == 0 and self._first_error is not None:
                error, self._first_error = self._first_error, None
                if self.raise_errors:
                    raise error

    def _schedule(self, job: Job, partition_id: str, queue: str) -> None:
        exec_key = execution_key_of(job)
        if exec_key is not None and (partition_id, exec_key) in self._executing:
            self._waiting.setdefault((partition_id, exec_key), deque()).append(
                (job, partition_id, queue)
            )
            return
        self._run(job, partition_id, queue)

    def _run(self, job: Job, partition_id: str, queue: str) -> None:
        """Run every attempt of ``job``, then the jobs that waited for its execution key."""
        from roger_actors.partition.worker import execute_job

        key = queue_key_of(job)
        exec_key = execution_key_of(job)
        try:
            while True:
                if job.id in self._cancelled:
                    self._cancelled.discard(job.id)
                    if self.callbacks is not None:
                        _call_logged(self.callbacks, "on_cancel", partition_id, job)
                    self.outcomes.append(EagerOutcome(job, partition_id, queue, "cancelled"))
                    return
                capture = _Capture(self.callbacks)
                if exec_key is not None:
                    self._executing.add((partition_id, exec_key))
                try:
                    finished = execute_job(partition_id, job, capture, self.retry_levels)
                finally:
                    if exec_key is not None:
                        self._executing.discard((partition_id, exec_key))
                ran = capture.job if capture.job is not None else job
                outcome = EagerOutcome(
                    ran, partition_id, queue, finished.outcome, capture.result, capture.error
                )
                self.outcomes.append(outcome)
                if exec_key is not None:
                    self._release_waiting(partition_id, exec_key)
                if finished.outcome == "retry":
                    job = job.copy_with(retry_count=job.retry_count + 1)
                    continue
                if finished.outcome in ("error", "buried") and self._first_error is None:
                    self._first_error = capture.error or RuntimeError(
                        f"job {job.id} ({job.module}) failed: {finished.error!r}"
                    )
                return
        finally:
            if key is not None:
                self._queue_keys.discard((partition_id, key))

    def _release_waiting(self, partition_id: str, exec_key: str) -> None:
        waiting = self._waiting.get((partition_id, exec_key))
        while waiting and (partition_id, exec_key) not in self._executing:
            job, pid, queue = waiting.popleft()
            self._run(job, pid, queue)
        if waiting is not None and not waiting:
            self._waiting.pop((partition_id, exec_key), None)


def _call_logged(callbacks: WorkerCallback, name: str, *args: Any) -> None:
    from roger_actors.partition.worker import run_callback

    run_callback(callbacks, name, *args)


def _make_callbacks(callbacks: WorkerCallback | type[WorkerCallback] | str | None
                    ) -> WorkerCallback | None:
    if callbacks is None or isinstance(callbacks, WorkerCallback):
        return callbacks
    if isinstance(callbacks, str):
        from roger_actors.config import load_config

        cls = load_config({"callbacks": callbacks}).callbacks_class()
        return None if cls is None else cls()
    if isinstance(callbacks, type) and issubclass(callbacks, WorkerCallback):
        return callbacks()
    raise TypeError(
        "callbacks must be a WorkerCallback instance or subclass, its 'module:Name', or None; "
        f"got {callbacks!r}"
    )


@contextmanager
def eager(
    callbacks: WorkerCallback | type[WorkerCallback] | str | None = None,
    retry_levels: Sequence[int] = DEFAULT_RETRY_LEVELS,
    raise_errors: bool = True,
) -> Iterator[EagerRun]:
    """Run jobs at their enqueue, in this thread, while the block runs.

    ``callbacks``: a :class:`WorkerCallback` instance, subclass (made with no
    arguments) or ``"module:Name"``, or None. ``retry_levels``: how many
    retries a retryable job gets (the delays are not waited). ``raise_errors``:
    see the module docstring. Yields the :class:`EagerRun`.

    The enqueue hook of this process (a node's or a producer's) is replaced
    for the block and put back after it, also when the block raises. Raises
    RuntimeError when an eager block is already active (in any thread),
    TypeError/ValueError for bad arguments.
    """
    global _active
    if not isinstance(raise_errors, bool):
        raise TypeError(f"raise_errors must be a bool, got {raise_errors!r}")
    levels = tuple(retry_levels)
    if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in levels):
        raise ValueError(f"retry_levels must be ints > 0, got {list(retry_levels)!r}")
    run = EagerRun(_make_callbacks(callbacks), levels, raise_errors)
    with _active_lock:
        if _active is not None:
            raise RuntimeError("an eager() block is already active")
        _active = run
    previous = set_enqueue_hook(run.enqueue)
    try:
        yield run
    finally:
        set_enqueue_hook(previous)
        with _active_lock:
            _active = None
