"""Roger's Worker: runs one job at a time in its own OS process.

A worker is started by the partition's WorkerSupervisor on the Consumer's
demand, tells the Consumer it is ready (``WorkerReady``, naming its control
socket and its scoreboard), then runs every ``RunJobs`` batch it is sent,
one job after another: ``before_run``, ``perform``, then exactly one of
``after_run`` (done), ``on_error`` (failed: not retryable, or retried) or
``on_buried`` (a retryable job failed its last retry level), as Roger's
``handle_error`` picks one of the last two. Outcomes
are reported in ``JobsFinished`` messages, at the end of the batch and every
:data:`FLUSH_SECONDS`. A callback that raises is logged and never takes the
worker down.

Every outcome is also written, as soon as ``perform`` returned and before
the callbacks run, to the worker's scoreboard
(:class:`~roger_actors.partition.control.Scoreboard`): killing the worker's
process is how a running job is stopped (``max_execution_time``,
cancellation), and the Consumer then reads there which jobs of the batch
ended, how, and which one was running.

A daemon thread reads the control socket while the batch runs (the socket
drops every datagram that a process of another uid sent, see
:class:`~roger_actors.partition.control.ControlSocket`; tokens are random):

* ``RETURN_UNSTARTED``: the jobs of the batch not started yet are reported
  ``"returned"``. Only a signal received during the current batch counts.
* ``cancel:<token>`` for a job of the current batch: not started yet, it is
  reported ``"cancelled"`` without running it or any callback; running, the
  thread writes ``"cancelled"`` to the scoreboard and SIGKILLs its own
  process. Both happen under the lock the batch loop takes to mark a job
  started and to record its outcome, so a job whose outcome was recorded is
  never cancelled, and a killed job is always recorded as cancelled (its
  ``perform`` may have just returned, the cancel taking the lock first). A
  token not in the current batch (or already finished) is ignored; so is a
  signal that arrives before the batch it was meant for has begun (datagrams
  overtake the ``RunJobs`` message), so the Consumer must expect a normal
  outcome for a job it cancelled.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from roger_actors.callbacks import WorkerCallback
from roger_actors.clock import now
from roger_actors.config import Config
from roger_actors.job import Job, set_allowed_modules
from roger_actors.runtime import install_worker_client
from supervision import Server

from .consumer_core import error_outcome
from .control import MAX_ITEMS, RETURN_UNSTARTED, ControlSocket, Scoreboard, parse_cancel
from .messages import JobFinished, JobsFinished, RunJobs, WorkerReady

log = logging.getLogger("roger_actors.worker")

#: Report the outcomes gathered so far once this many seconds passed since the
#: last report, even in the middle of a batch.
FLUSH_SECONDS = 0.05


def run_callback(callbacks: WorkerCallback | None, name: str, *args: Any) -> Any:
    """Call ``callbacks.<name>(*args)``; log and swallow any exception."""
    if callbacks is None:
        return None
    try:
        return getattr(callbacks, name)(*args)
    except Exception:
        log.exception("worker callback %s raised", name)
        return None


#: Most cancels kept for jobs whose batch has not arrived yet.
EARLY_CANCELS = 1024


class _BatchControl:
    """What the control thread and the batch loop share, under ``lock``."""

    def __init__(self, scoreboard: Scoreboard) -> None:
        self.lock = threading.Lock()
        self.scoreboard = scoreboard
        #: Token -> index of the jobs of the current batch (empty between batches).
        self.batch: dict[int, int] = {}
        self.return_unstarted = False
        self.cancelled: set[int] = set()
        #: (index, token) of the job whose perform runs now.
        self.running: tuple[int, int] | None = None
        #: Cancels for tokens not in the current batch: the datagram may overtake
        #: the RunJobs it is about (tokens are never reused; bounded).
        self.early: dict[int, None] = {}

    def begin(self, items: list[tuple[int, Job]]) -> None:
        """A new batch: a return signal received before it is dropped; cancels
        that arrived early for its jobs apply."""
        with self.lock:
            self.batch = {token: index for index, (token, _) in enumerate(items)}
            self.return_unstarted = False
            self.cancelled = {token for token in self.batch if token in self.early}
            for token in self.cancelled:
                del self.early[token]
            self.running = None
            self.scoreboard.begin_batch(items[0][0])

    def end(self) -> None:
        """The batch is over: later signals are ignored."""
        with self.lock:
            self.batch = {}
            self.cancelled = set()
            self.running = None

    def claim(self, index: int, token: int) -> str | None:
        """Before the job at ``index`` runs: ``"cancelled"`` or ``"returned"``
        (recorded in the scoreboard: do not run it), else None (it is marked
        running: run it)."""
        with self.lock:
            verdict = None
            if token in self.cancelled:
                verdict = "cancelled"
            elif self.return_unstarted:
                verdict = "returned"
            if verdict is not None:
                self.scoreboard.finish(index, verdict)
                return verdict
            self.scoreboard.start(index)
            self.running = (index, token)
            return None

    def record(self, index: int, outcome: str) -> None:
        """The running job's ``perform`` returned or raised: record ``outcome``."""
        with self.lock:
            self.scoreboard.finish(index, outcome)
            self.running = None

    def on_datagram(self, datagram: bytes) -> None:
        """Act on one control datagram (called by the control thread)."""
        if datagram == RETURN_UNSTARTED:
            with self.lock:
                if self.batch:
                    self.return_unstarted = True
            return
        token = parse_cancel(datagram)
        if token is None:
            log.warning("unknown control datagram %r", datagram[:64])
            return
        with self.lock:
            if token not in self.batch:
                self.early[token] = None
                while len(self.early) > EARLY_CANCELS:
                    del self.early[next(iter(self.early))]
                return
            if self.running is not None and self.running[1] == token:
                index = self.running[0]
                self.scoreboard.finish(index, "cancelled")
                # Still holding the lock: the batch loop cannot record an outcome.
                os.kill(os.getpid(), signal.SIGKILL)
            self.cancelled.add(token)


def _read_control(control: ControlSocket, shared: _BatchControl, stop: threading.Event) -> None:
    """The control thread: apply every datagram until ``stop`` or the socket closes."""
    while not stop.is_set():
        try:
            datagram = control.receive()
        except OSError:
            return
        if datagram is not None:
            try:
                shared.on_datagram(datagram)
            except Exception:
                log.exception("control datagram %r failed", datagram[:64])


class WorkerServer(Server):
    """Runs jobs for one queue of one partition; see the module docstring."""

    def init(self, owner: Any, partition_id: str, queue: str, config: Config) -> None:
        """``owner`` is the Consumer's address; it gets ``WorkerReady`` with the
        control socket's name and the scoreboard's path."""
        self.owner = owner
        self.partition_id = partition_id
        self.queue = queue
        self.retry_levels = config.retry_levels
        set_allowed_modules(config.allowed_job_modules)
        install_worker_client(config)  # jobs may enqueue jobs and use Global
        callbacks_class = config.callbacks_class()
        self.callbacks = callbacks_class() if callbacks_class is not None else None
        self.scoreboard = Scoreboard.create()
        self.control = ControlSocket()
        self.shared = _BatchControl(self.scoreboard)
        self.stop_control = threading.Event()
        self.control_thread = threading.Thread(
            target=_read_control,
            args=(self.control, self.shared, self.stop_control),
            name="roger-worker-control",
            daemon=True,
        )
        self.control_thread.start()
        self.send(
            owner,
            WorkerReady(
                os.getpid(), self.address, self.control.name, scoreboard=self.scoreboard.path
            ),
        )

    def handle_info(self, message: Any) -> None:
        """Run a ``RunJobs`` batch (at most ``MAX_ITEMS`` jobs); anything else is logged."""
        if not isinstance(message, RunJobs):
            super().handle_info(message)
            return
        if not message.items:
            return
        assert len(message.items) <= MAX_ITEMS, f"batch of {len(message.items)} > {MAX_ITEMS}"
        results: list[JobFinished] = []
        last_report = time.monotonic()
        shared = self.shared
        shared.begin(message.items)
        try:
            for index, (token, job) in enumerate(message.items):
                verdict = shared.claim(index, token)
                if verdict is not None:
                    results.append(JobFinished(token, verdict))
                    continue
                began = time.monotonic()
                result = self.run_job(token, job, functools.partial(shared.record, index))
                results.append(dataclasses.replace(result, seconds=time.monotonic() - began))
                if time.monotonic() - last_report > FLUSH_SECONDS:
                    self.send(self.owner, JobsFinished(results))
                    results, last_report = [], time.monotonic()
        finally:
            shared.end()
        if results:
            self.send(self.owner, JobsFinished(results))

    def terminate(self, reason: Any) -> None:
        """Stop the control thread, release the control socket, remove the scoreboard."""
        stop = getattr(self, "stop_control", None)
        if stop is not None:
            stop.set()
            self.control_thread.join(timeout=1.0)
        control = getattr(self, "control", None)
        if control is not None:
            control.close()
        scoreboard = getattr(self, "scoreboard", None)
        if scoreboard is not None:
            scoreboard.close()

    def run_job(
        self, token: int, queued: Job, record: Callable[[str], None] | None = None
    ) -> JobFinished:
        """Run one job with its callbacks (:func:`execute_job`); never raises."""
        return execute_job(
            self.partition_id, queued, self.callbacks, self.retry_levels, token, record
        )


def execute_job(
    partition_id: str,
    queued: Job,
    callbacks: WorkerCallback | None,
    retry_levels: tuple[int, ...],
    token: int = 0,
    record: Callable[[str], None] | None = None,
) -> JobFinished:
    """Run one job the way a worker does: ``started_at`` set, ``before_run``,
    ``perform``, then ``after_run``, or for a failure ``on_buried`` when it
    buries the job (by ``retry_levels``), else ``on_error``. Never raises: a
    failure of ``perform`` is the outcome, a callback that raises is logged.

    ``record(outcome)`` is called as soon as ``perform`` returned or raised,
    before the one callback of the outcome runs."""
    job = queued.started(now())
    state = run_callback(callbacks, "before_run", partition_id, job)
    try:
        result = Job.execute(job)
    except Exception as exc:
        stack = traceback.extract_tb(exc.__traceback__)
        outcome = error_outcome(job, retry_levels)
        if record is not None:
            record(outcome)
        error = ("error", exc)
        callback = "on_buried" if outcome == "buried" else "on_error"
        run_callback(callbacks, callback, partition_id, job, error, stack, state)
        log.info("job %s (%s) failed: %r -> %s", job.id, job.module, exc, outcome)
        return JobFinished(token, outcome, ("error", repr(exc)))
    if record is not None:
        record("done")
    run_callback(callbacks, "after_run", partition_id, job, result, state)
    return JobFinished(token, "done")
