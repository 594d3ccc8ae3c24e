"""Runs a Consumer's callbacks off the Consumer's actor thread.

The Consumer calls ``on_error``/``on_buried`` for jobs whose worker timed
out or died and ``on_cancel`` for cancelled jobs (their worker is gone or
never ran them). In Roger each job's own Worker process runs those, so a
slow callback (an HTTP call to an error tracker, say) holds up that job
only. Run on the Consumer's thread, it would hold up dispatch and acks for
the whole partition. A :class:`CallbackRunner` is a small bounded thread
pool that belongs to one Consumer:

- :meth:`CallbackRunner.submit` queues ``callbacks.<name>(*args)`` and
  returns at once. It never blocks and never raises. The Consumer settles
  the job (ack, retry or burial publish) without waiting for the callback.
  No order is kept between a callback and the settle of its job, nor
  between callbacks: with several threads they may run in any order, and
  at the same time.
- A callback that raises (any ``BaseException``, ``SystemExit`` included)
  is logged with its name and job id. Its thread goes on with the next one.
- A callback that hangs holds one thread, and only that thread, for as long
  as it hangs. Dispatch and acks go on. Callbacks queued meanwhile run on
  the other threads. When every thread is held, they wait in the queue.
- The queue is bounded: at most ``max_pending`` callbacks wait for a
  thread while every thread is busy. When it is full, a new callback is
  **dropped**: ``submit`` returns False and an error is logged. The log
  names the partition, the callback and the job, and how long the longest
  running callback has run. There is at most one such line per
  ``log_interval`` seconds, with a count of the callbacks dropped since the
  last one. The job's outcome is not affected: it is settled as it would
  have been. Running the callback inline instead would stall the actor,
  which is what this pool is for, and blocking until there is room could
  stall it forever.
- Threads are started on demand, up to ``max_threads``. A thread idle for
  ``idle_seconds`` ends, so a quiet partition holds none. They are daemon
  threads: a hung callback never keeps the process from exiting.

Thread safety: a Consumer's callbacks object (one instance of the configured
:class:`~roger_actors.callbacks.WorkerCallback` class per Consumer) may be
called from several of these threads at once. Its methods must be
thread-safe, or lock what they share. The objects in ``args`` (the job, the
error tuple) are not used by the Consumer after it submitted them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from roger_actors.job import Job, bounded_repr

log = logging.getLogger("roger_actors.callback_runner")

#: Most threads running one Consumer's callbacks at once.
MAX_THREADS = 4
#: Most callbacks waiting for a thread; more are dropped (with an error log).
MAX_PENDING = 1000
#: A thread with nothing to run for this many seconds ends.
IDLE_SECONDS = 30.0
#: At most one "callbacks dropped" log line per this many seconds.
LOG_INTERVAL = 10.0
#: Seconds the Consumer's terminate waits for its callbacks.
CLOSE_SECONDS = 2.0


def _job_id(args: tuple[Any, ...]) -> str:
    """The id of the first job in ``args`` (for the logs), or ``"-"``."""
    for arg in args:
        if isinstance(arg, Job):
            return bounded_repr(arg.id)
    return "-"


class CallbackRunner:
    """A bounded pool of threads running ``callbacks.<name>(*args)``; see the module docstring.

    ``callbacks`` None makes every :meth:`submit` a no-op. ``label`` (the
    partition id) starts every log line and names the threads.
    """

    def __init__(
        self,
        callbacks: Any,
        label: str,
        max_threads: int = MAX_THREADS,
        max_pending: int = MAX_PENDING,
        idle_seconds: float = IDLE_SECONDS,
        log_interval: float = LOG_INTERVAL,
    ) -> None:
        if max_threads < 1 or max_pending < 0:
            raise ValueError("max_threads must be >= 1 and max_pending >= 0")
        self.callbacks = callbacks
        self.label = label
        self.max_threads = max_threads
        self.max_pending = max_pending
        self.idle_seconds = idle_seconds
        self.log_interval = log_interval
        self._lock = threading.Lock()
        #: Signalled when a callback is queued or the runner closes (threads wait on it).
        self._work = threading.Condition(self._lock)
        #: Signalled when a callback ends (close waits on it).
        self._done = threading.Condition(self._lock)
        self._pending: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._threads = 0
        self._idle = 0
        #: Thread ident -> (callback name, monotonic start) of the callbacks running now.
        self._running: dict[int, tuple[str, float]] = {}
        self._closed = False
        self._started = 0
        #: Dropped since the last "dropped" log line, and the first of them.
        self._dropped = 0
        self._dropped_first = ""
        self._dropped_total = 0
        self._last_drop_log = float("-inf")

    # ------------------------------------------------------------ the Consumer's side

    def submit(self, name: str, *args: Any) -> bool:
        """Queue ``callbacks.<name>(*args)`` and return at once.

        True when it was queued (or there are no callbacks). False when it
        was dropped: the queue was full or the runner is closed (logged,
        rate-limited). Never blocks, never raises."""
        if self.callbacks is None:
            return True
        line: tuple[Any, ...] | None = None
        queued = False
        try:
            with self._lock:
                # Each idle thread and each thread not started yet takes one.
                room = self.max_pending + self._idle + self.max_threads - self._threads
                if self._closed or len(self._pending) >= room:
                    self._note_dropped(name, args)
                else:
                    self._pending.append((name, args))
                    if len(self._pending) > self._idle and self._threads < self.max_threads:
                        self._start_thread()
                    if self._threads == 0:  # no thread could be started
                        self._pending.pop()
                        self._note_dropped(name, args)
                    else:
                        self._work.notify()
                        queued = True
                line = self._drop_log_line()
            if line is not None:
                log.error(*line)
        except Exception:
            log.exception("%s: callback %s could not be queued", self.label, name)
            return False
        return queued

    @property
    def busy(self) -> bool:
        """True while callbacks are queued or running."""
        with self._lock:
            return bool(self._pending or self._running)

    def close(self, timeout: float = CLOSE_SECONDS) -> int:
        """Refuse new callbacks, then wait at most ``timeout`` seconds for the
        queued and running ones to end. Returns how many did not end.

        Queued callbacks keep running during the wait. When it is over,
        those still queued are dropped and never run. Those still running
        are abandoned: their daemon threads go on until the callback returns,
        or until the process exits (a Consumer's process exits right after its
        terminate, which kills them mid-call). Both counts are logged as an
        error. Never raises; calling it again waits again, for what is left."""
        try:
            deadline = time.monotonic() + max(0.0, timeout)
            with self._lock:
                self._closed = True
                self._work.notify_all()  # idle threads end
                while self._pending or self._running:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._done.wait(remaining)
                dropped = [name for name, _ in self._pending]
                self._pending.clear()
                running = sorted(name for name, _ in self._running.values())
                line = self._drop_log_line(force=True)
            if line is not None:
                log.error(*line)
            if dropped or running:
                log.error(
                    "%s: at shutdown after %.1f s, %d callbacks never ran (%s) and %d were "
                    "still running (%s); those are abandoned",
                    self.label,
                    timeout,
                    len(dropped),
                    ", ".join(sorted(set(dropped))) or "-",
                    len(running),
                    ", ".join(running) or "-",
                )
            return len(dropped) + len(running)
        except Exception:
            log.exception("%s: closing the callback runner failed", self.label)
            return 0

    def stats(self) -> dict[str, int]:
        """``{threads, idle, running, pending, started, dropped}`` now (for tests and status)."""
        with self._lock:
            return {
                "threads": self._threads,
                "idle": self._idle,
                "running": len(self._running),
                "pending": len(self._pending),
                "started": self._started,
                "dropped": self._dropped_total,
            }

    # ------------------------------------------------------------ internals (lock held)

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._run, name=f"roger-callbacks-{self.label}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:  # can't start new thread
            log.error("%s: cannot start a callback thread: %s", self.label, exc)
            return
        self._threads += 1

    def _note_dropped(self, name: str, args: tuple[Any, ...]) -> None:
        self._dropped_total += 1
        if not self._dropped:
            why = "the runner is closed" if self._closed else "the queue is full"
            self._dropped_first = f"{name} for job {_job_id(args)} ({why})"
        self._dropped += 1

    def _drop_log_line(self, force: bool = False) -> tuple[Any, ...] | None:
        """The log line (format and arguments) for the callbacks dropped since
        the last one, at most once per ``log_interval`` (unless ``force``);
        None when there is nothing to log now. Logged outside the lock."""
        if not self._dropped:
            return None
        moment = time.monotonic()
        if not force and moment - self._last_drop_log < self.log_interval:
            return None
        longest = max((moment - began for _, began in self._running.values()), default=0.0)
        line = (
            "%s: %d callbacks dropped, never run, first %s; %d pending (limit %d), "
            "%d running on %d threads, the longest for %.1f s",
            self.label,
            self._dropped,
            self._dropped_first,
            len(self._pending),
            self.max_pending,
            len(self._running),
            self._threads,
            longest,
        )
        self._dropped = 0
        self._last_drop_log = moment
        return line

    # ------------------------------------------------------------ the threads

    def _run(self) -> None:
        """A pool thread: run queued callbacks until idle too long or closed."""
        ident = threading.get_ident()
        try:
            while self._run_one(ident):
                pass
        finally:
            with self._lock:
                self._running.pop(ident, None)
                self._threads -= 1
                self._done.notify_all()

    def _run_one(self, ident: int) -> bool:
        """Wait for a callback and run it; False when the thread should end."""
        with self._lock:
            idle_until = time.monotonic() + self.idle_seconds
            while not self._pending:
                remaining = idle_until - time.monotonic()
                if self._closed or remaining <= 0:
                    return False
                self._idle += 1
                try:
                    self._work.wait(remaining)
                finally:
                    self._idle -= 1
            name, args = self._pending.popleft()
            self._running[ident] = (name, time.monotonic())
            self._started += 1
        try:
            getattr(self.callbacks, name)(*args)
        except BaseException:  # SystemExit too: the thread goes on
            log.exception("%s: callback %s for job %s raised", self.label, name, _job_id(args))
        finally:
            with self._lock:
                self._running.pop(ident, None)
                self._done.notify_all()
        return True


__all__ = ["CLOSE_SECONDS", "CallbackRunner"]
