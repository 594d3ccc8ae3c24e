"""The ledger: what jobs did, recorded across processes for :func:`~roger_actors.testing.join`.

Jobs run in worker processes, and their timeouts, crashes and cancels are
handled in the partition's Consumer process: the test process hears of none
of it through the API. So :class:`RecordingCallbacks`, configured as the
node's ``callbacks``, writes each outcome into a *ledger directory* that
every process of the node shares: the directory named by the environment
variable :data:`LEDGER_ENV`, set in the test process before the node starts
(its processes inherit it). The pytest fixtures set it up
(:mod:`roger_actors.testing.pytest_plugin`); by hand::

    ledger = Ledger.create(tmp_dir)          # sets ROGER_TESTING_LEDGER
    node = roger.start({..., "callbacks": RecordingCallbacks})
    ledger.record_enqueues()                  # this process's enqueues too

One record is one file, written whole then renamed into place, so a reader
never sees half of it. A record says what happened (``"enqueued"``,
``"done"``, ``"retry"``, ``"error"``, ``"buried"``, ``"cancelled"``), to
which job (id, module, partition, queue), and for failures the error: its
kind, the exception pickled (when it pickles), its text and traceback.

The ledger holds what this node's own processes wrote: it is for tests on
one host. The records are unpickled by :meth:`Ledger.failures`: the
directory must be private to the test run (the fixtures use pytest's
``tmp_path``, mode 0700).
"""

from __future__ import annotations

import os
import pickle
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roger_actors.callbacks import ErrorInfo, Stacktrace, WorkerCallback
from roger_actors.job import EnqueueHook, Job, execution_key_of, set_enqueue_hook

__all__ = [
    "FINAL",
    "LEDGER_ENV",
    "JobError",
    "Ledger",
    "Record",
    "RecordingCallbacks",
    "RemoteTraceback",
]

#: The environment variable naming the ledger directory.
LEDGER_ENV = "ROGER_TESTING_LEDGER"
#: Outcomes after which a job will not run again.
FINAL = frozenset({"done", "error", "buried", "cancelled"})


class RemoteTraceback(Exception):
    """The traceback of a job's exception in the process where it was raised
    (the ``__cause__`` of the error :func:`join` raises)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class JobError(Exception):
    """A job failure that is not a picklable exception: a timeout
    (``kind == "timeout"``), a worker that died (``"worker_crash"``), or an
    exception that could not be pickled (``"error"``, its text in ``detail``)."""

    def __init__(self, kind: str, detail: str, job_id: str, module: str) -> None:
        super().__init__(f"{kind}: {detail} (job {job_id}, {module})")
        self.kind, self.detail, self.job_id, self.module = kind, detail, job_id, module


@dataclass(frozen=True)
class Record:
    """One entry of the ledger; see the module docstring."""

    event: str
    job_id: str
    module: str
    partition_id: str
    queue: str | None
    retry_count: int
    time: float
    pid: int
    kind: str | None = None
    detail: str | None = None
    exception: bytes | None = None
    trace: str | None = None
    execution_key: str | None = None

    def exception_to_raise(self) -> BaseException:
        """The failure as an exception: the job's own one when it was pickled
        (and unpickles here), else a :class:`JobError`; its ``__cause__`` is
        the :class:`RemoteTraceback`, and a note names the job."""
        error: BaseException | None = None
        if self.exception is not None:
            try:
                loaded = pickle.loads(self.exception)
            except Exception:
                loaded = None
            if isinstance(loaded, BaseException):
                error = loaded
        if error is None:
            error = JobError(self.kind or "error", self.detail or "", self.job_id, self.module)
        if self.trace:
            error.__cause__ = RemoteTraceback(self.trace)
        error.add_note(
            f"raised by job {self.job_id} ({self.module}) in partition {self.partition_id!r}, "
            f"attempt {self.retry_count + 1}: {self.event}"
        )
        return error


_instances_lock = threading.Lock()
_instances: dict[str, Ledger] = {}


class Ledger:
    """A ledger directory; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._reported: set[tuple[str, int, str]] = set()

    @classmethod
    def create(cls, directory: str | os.PathLike[str]) -> Ledger:
        """Make ``directory`` (mode 0700) the ledger of this process and of the
        processes it starts from now on (sets :data:`LEDGER_ENV`)."""
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ[LEDGER_ENV] = str(path)
        ledger = cls(path)
        with _instances_lock:
            _instances[str(path)] = ledger
        return ledger

    @classmethod
    def from_environment(cls) -> Ledger | None:
        """The ledger :data:`LEDGER_ENV` names, or None when it is not set. The
        same object for the same path (so that a failure is taken once)."""
        path = os.environ.get(LEDGER_ENV)
        if not path:
            return None
        with _instances_lock:
            ledger = _instances.get(path)
            if ledger is None:
                ledger = _instances[path] = cls(path)
            return ledger

    # ------------------------------------------------------------ writing

    def write(self, record: Record) -> None:
        """Add ``record`` (a file written whole, then renamed into place).
        Raises OSError when the directory is not writable."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        scratch = self.path / f".{name}.tmp"
        with open(scratch, "wb") as handle:
            pickle.dump(record, handle)
        os.replace(scratch, self.path / f"{name}.rec")

    def record(self, event: str, job: Job, partition_id: str, queue: str | None = None,
               error: ErrorInfo | None = None, stacktrace: Stacktrace = None) -> None:
        """Write what happened to ``job``; never raises (a ledger that cannot be
        written loses the record, the job is not affected)."""
        kind = detail = trace = None
        blob = None
        if error is not None:
            kind, raw = str(error[0]), error[1]
            detail = repr(raw)
            if isinstance(raw, BaseException):
                try:
                    blob = pickle.dumps(raw)
                    pickle.loads(blob)
                except Exception:
                    blob = None
            if stacktrace:
                frames = traceback.StackSummary.from_list(list(stacktrace))
                trace = "Traceback (most recent call last):\n" + "".join(frames.format())
                trace += f"{type(raw).__name__}: {raw}\n" if isinstance(raw, BaseException) else ""
        try:
            self.write(Record(
                event, job.id, job.module, partition_id, queue, job.retry_count, time.time(),
                os.getpid(), kind, detail, blob, trace, execution_key_of(job),
            ))
        except Exception:
            import logging

            logging.getLogger("roger_actors.testing").exception("ledger record %s lost", event)

    def record_enqueues(self) -> None:
        """Wrap this process's enqueue hook (a node's, a producer's or a
        worker's) so that every job it enqueues is recorded ``"enqueued"``
        (after its publish succeeded; a refused duplicate is not). Idempotent.
        Does nothing when no hook is installed."""
        hook = _current_hook()
        if hook is None or getattr(hook, "_roger_ledger", None) is not None:
            return
        ledger = self

        def recording(job: Job, partition_id: str, queue: str | None) -> object:
            result = hook(job, partition_id, queue)
            ledger.record("enqueued", job, partition_id,
                          queue if queue is not None else job.queue_type_name())
            return result

        recording._roger_ledger = self  # type: ignore[attr-defined]
        set_enqueue_hook(recording)

    # ------------------------------------------------------------ reading

    def records(self) -> list[Record]:
        """Every record, oldest first (a file being renamed in is skipped)."""
        found = []
        for entry in sorted(self.path.glob("*.rec")):
            try:
                with open(entry, "rb") as handle:
                    record = pickle.load(handle)
            except (OSError, EOFError, pickle.UnpicklingError):
                continue
            if isinstance(record, Record):
                found.append(record)
        return found

    def pending(self, partition_id: str, queue: str, records: list[Record] | None = None
                ) -> list[str]:
        """Ids of the jobs enqueued (as recorded) into ``queue`` of
        ``partition_id`` that have no final outcome yet."""
        records = self.records() if records is None else records
        enqueued = [r.job_id for r in records
                    if r.event == "enqueued" and r.partition_id == partition_id
                    and r.queue == queue]
        final = {r.job_id for r in records if r.event in FINAL}
        return [job_id for job_id in dict.fromkeys(enqueued) if job_id not in final]

    def execution_keys(self, partition_id: str) -> list[str]:
        """The execution keys of the recorded jobs of ``partition_id`` (their
        waiting queues are among the partition's queues)."""
        keys = (r.execution_key for r in self.records() if r.partition_id == partition_id)
        return sorted({key for key in keys if key is not None})

    def failures(self, partition_id: str, records: list[Record] | None = None) -> list[Record]:
        """Final failures (``"error"``, ``"buried"``) of jobs of ``partition_id``."""
        records = self.records() if records is None else records
        return [r for r in records
                if r.partition_id == partition_id and r.event in ("error", "buried")]

    def take_failure(self, partition_id: str, records: list[Record] | None = None
                     ) -> Record | None:
        """The first final failure of ``partition_id`` not taken before
        (through this Ledger object), or None."""
        for record in self.failures(partition_id, records):
            mark = (record.job_id, record.retry_count, record.event)
            with self._lock:
                if mark in self._reported:
                    continue
                self._reported.add(mark)
            return record
        return None


def _current_hook() -> EnqueueHook | None:
    from roger_actors import job as job_module

    hook: EnqueueHook | None = job_module._enqueue_hook
    return hook


class RecordingCallbacks(WorkerCallback):
    """Worker callbacks that write every outcome to the ledger (when
    :data:`LEDGER_ENV` is set where they run) and do nothing else.

    Subclass it to add callbacks of your own: call ``super()`` in each method
    you override (``before_run`` included, whose return value is the state).
    An instance also records the enqueues of the process it is made in (a
    job's worker: jobs that enqueue jobs). The methods are thread-safe.
    """

    def __init__(self) -> None:
        self.ledger = Ledger.from_environment()
        if self.ledger is not None:
            self.ledger.record_enqueues()

    def after_run(self, partition_id: str, job: Job, result: Any, state: Any) -> None:
        """Record ``"done"``."""
        if self.ledger is not None:
            self.ledger.record("done", job, partition_id)

    def on_error(self, partition_id: str, job: Job, error: ErrorInfo, stacktrace: Stacktrace,
                 state: Any) -> None:
        """Record ``"retry"`` for a retryable job (it runs again), else ``"error"``."""
        if self.ledger is not None:
            event = "retry" if Job.is_retryable(job) else "error"
            self.ledger.record(event, job, partition_id, error=error, stacktrace=stacktrace)

    def on_buried(self, partition_id: str, job: Job, error: ErrorInfo, stacktrace: Stacktrace,
                  state: Any) -> None:
        """Record ``"buried"``."""
        if self.ledger is not None:
            self.ledger.record("buried", job, partition_id, error=error, stacktrace=stacktrace)

    def on_cancel(self, partition_id: str, job: Job) -> None:
        """Record ``"cancelled"``."""
        if self.ledger is not None:
            self.ledger.record("cancelled", job, partition_id)
