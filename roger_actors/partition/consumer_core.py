"""The Consumer's decisions, without I/O: what to do with a delivery, with a
job's outcome and with a cancel, and how a queue's jobs are batched.

Pure code: no broker, no actor, no event loop, no clock (times are passed
in). The Consumer actor (:mod:`roger_actors.partition.consumer`) feeds it
what happened (a delivery, a worker's report, Global's answer) and carries
out the *effects* it returns, small frozen values that say what to do:

- :class:`SetAside`: publish the delivery, body unchanged, to its queue's
  ``.invalid`` queue with the reason, free the queue key its payload names
  (when ``free_queue_key``), then ack it;
- :class:`GiveBack`: return the delivery unrun to its work queue (a fresh
  copy, then the ack), keeping the keys its job holds;
- :class:`ClearCancel`: ask Global to clear the job's cancel mark; the job
  is settled as cancelled only if Global says it cleared it;
- :class:`Admit`: take the job (gate its execution key, or put it in its
  queue's backlog);
- :class:`ReleaseExecution`: give the job's execution key up (to the next
  job waiting for it);
- :class:`AckLater`: ack the delivery with the other acks of this message;
- :class:`RecordThenAck`: publish the job's next copy (:class:`CopyTo`, a
  retry or buried queue) with confirm, then free its queue key, then ack;
- :class:`ConfirmCancel`, :class:`ConfirmLater`: ask Global (now, or again
  in a second) whether a job in a worker is cancelled;
- :class:`TellWorkerCancel`: tell the job's worker to skip it or die under it;
- :class:`RunCallback`: run one of the job's callbacks off the actor's thread;
- :class:`SettleAs`: settle the flight with an outcome (:func:`settle`);
- :class:`Crashed`: the job ended as if its worker died under it;
- :class:`TakeExecution`: gate a job, taking its execution key in Global or
  parking it in the key's waiting queue; its verdict then gives
  :class:`Backlog` (put it in its queue's backlog), :class:`Parked` (forget
  it, sweep the key) or :class:`RequeueLater` (Global did not answer).

State: :class:`QueueState` holds one queue type's batching, prefetch and
worker-pool bookkeeping (its backlog of delivery tokens, its running
average of job durations and the batch size and prefetch that follow from
it, its workers); :class:`WorkerRef` one worker process and the jobs it
holds; :class:`Flight` one delivery held from its arrival to its outcome;
:class:`CancelMarks` the local, expiring copy of the cancelled job ids;
:class:`WaitingKeys` the execution keys whose waiting queues are swept;
:class:`PauseBits` the one pause bit per queue type and Global's paused set.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from roger_actors.errors import InvalidJobError
from roger_actors.job import Job, execution_key_of, queue_key_of

from . import retry

if TYPE_CHECKING:
    from .control import Scoreboard

#: A batch handed to a worker holds about this many seconds of work.
BATCH_TARGET_SECONDS = 0.02
#: Most jobs handed to a worker in one message.
MAX_BATCH = 32
#: Jobs that together take less than this are not split over idle workers:
#: one message to one worker costs the partition host more than running
#: them one after the other costs the worker.
UNSPLIT_SECONDS = 0.001
#: Weight of the newest job duration in a queue's running average.
DURATION_WEIGHT = 0.2
#: AMQP's prefetch count is a 16-bit field.
MAX_PREFETCH = 65535
#: Outcomes a worker reports of a job it never ran: no duration to learn from.
UNRUN_OUTCOMES = frozenset({"returned", "cancelled"})

# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class SetAside:
    """Move the delivery to ``<partition>-<queue>.invalid`` with ``reason``
    (at most the Consumer's ``INVALID_REASON_CHARS``), freeing the queue key
    its payload declares when ``free_queue_key``, then ack it."""

    reason: str
    free_queue_key: bool = True


@dataclass(frozen=True)
class GiveBack:
    """Return the delivery, not run, to its work queue (a fresh copy that does
    not count as a failed delivery, then the ack); its job keeps its keys."""


@dataclass(frozen=True)
class ClearCancel:
    """Ask Global to clear ``job``'s cancel mark; settle it as cancelled only
    if this call cleared it."""

    job: Job


@dataclass(frozen=True)
class Admit:
    """Take ``job``: gate its execution key, or put it in its queue's backlog."""

    job: Job


@dataclass(frozen=True)
class ReleaseExecution:
    """Job ``job_id`` (its delivery's ``exec_token``) is done with execution
    key ``key``: hand it to the first job waiting for it, else free it."""

    key: str
    job_id: str
    exec_token: str


@dataclass(frozen=True)
class AckLater:
    """Ack the delivery with the other acks of this message (one I/O hop)."""


@dataclass(frozen=True)
class CopyTo:
    """The job's next copy: ``body`` published to ``queue``, declared with
    ``arguments`` (a retry queue of one level, or the buried queue)."""

    queue: str
    arguments: Mapping[str, Any]
    body: bytes


@dataclass(frozen=True)
class RecordThenAck:
    """Record the outcome on the broker, in this order, then ack: publish
    ``copy`` (when given) with confirm, free ``free_queue_key`` (when given)
    in Global. Nothing is acked while the copy is not in place."""

    copy: CopyTo | None = None
    free_queue_key: str | None = None


#: What :func:`triage` decides for a delivery.
Triage = SetAside | GiveBack | ClearCancel | Admit
#: What :func:`settle` decides for an outcome.
Settlement = GiveBack | ClearCancel | ReleaseExecution | AckLater | RecordThenAck


# ---------------------------------------------------------------- deliveries


def triage(
    body: bytes,
    *,
    failed_deliveries: int,
    delivery_limit: int,
    runnable: bool,
    max_payload_bytes: int,
    cancelled: Container[str],
    decode: Callable[[bytes], Job] = Job.decode,
) -> Triage:
    """What to do with a delivery whose payload is ``body``, in this order:

    1. delivered ``delivery_limit`` times or more without an outcome
       (``failed_deliveries``, as its headers count them): set aside, its
       queue key freed;
    2. not ``runnable`` (its queue is unknown or paused, or the Consumer
       stopped consuming): given back;
    3. larger than ``max_payload_bytes``: set aside, not decoded (so no
       queue key is freed);
    4. ``decode`` raises :class:`InvalidJobError`: set aside with its message;
       any other exception (a decoder bug): set aside naming its type;
    5. its job id is in ``cancelled``: :class:`ClearCancel`;
    6. else :class:`Admit`.

    Never raises (a ``decode`` that raises is case 4)."""
    if failed_deliveries >= delivery_limit:
        # Before the broker's x-delivery-limit drops (4.x, no dead-letter
        # target) or dead-letters it; also for a queue declared elsewhere.
        return SetAside(
            f"Delivered {failed_deliveries} times without an outcome (delivery_limit "
            f"{delivery_limit}); not run again"
        )
    if not runnable:
        return GiveBack()
    if len(body) > max_payload_bytes:
        return SetAside(
            f"Job payload is {len(body)} bytes, larger than max_payload_bytes "
            f"({max_payload_bytes} bytes); not decoded",
            free_queue_key=False,
        )
    try:
        job = decode(body)
    except InvalidJobError as exc:
        return SetAside(str(exc))
    except Exception as exc:  # a decoder bug must not crash the Consumer
        return SetAside(f"Job decoding failed: {type(exc).__name__}")
    if job.id in cancelled:
        return ClearCancel(job)
    return Admit(job)


# ---------------------------------------------------------------- outcomes


def settle(
    job: Job,
    outcome: str,
    *,
    partition_id: str,
    queue: str,
    exec_token: str,
    cancelling: bool,
    retry_levels: tuple[int, ...],
    max_buried_queue_size: int,
) -> tuple[Settlement, ...]:
    """The effects that record ``outcome`` for ``job``, delivered from queue
    type ``queue`` (``exec_token``: the token its delivery took its execution
    key with; ``cancelling``: Global already cleared its cancel mark).

    - ``returned`` (never started): :class:`GiveBack`, keeping its keys;
    - ``cancelled`` not yet cleared with Global: :class:`ClearCancel` only;
    - any other outcome: :class:`ReleaseExecution` first when the job has an
      execution key, then :class:`AckLater` for ``done``, ``error`` and a
      cleared ``cancelled`` of a job without a queue key, else
      :class:`RecordThenAck`: for ``retry`` the copy goes to the retry queue
      of the job's next level (``retry_count + 1``), for ``buried`` to the
      buried queue, and the queue key (not for ``cancelled``: clearing the
      mark freed it) is freed before the ack.

    Raises ValueError for ``retry`` of a job that has no retry level left
    (the worker decides ``retry`` only when one is left)."""
    if outcome == "returned":
        return (GiveBack(),)
    if outcome == "cancelled" and not cancelling:
        return (ClearCancel(job),)
    effects: list[Settlement] = []
    execution_key = execution_key_of(job)
    if execution_key is not None:
        effects.append(ReleaseExecution(execution_key, job.id, exec_token))
    queue_key = queue_key_of(job) if outcome != "cancelled" else None
    if outcome in ("done", "error", "cancelled") and queue_key is None:
        effects.append(AckLater())
        return tuple(effects)
    copy = None
    if outcome == "retry":
        level = retry.level_for(job.retry_count, retry_levels)
        if level is None:
            raise ValueError(
                f"outcome 'retry' for job {job.id} with retry_count {job.retry_count}: "
                f"no retry level left of {len(retry_levels)}"
            )
        name, args = retry.retry_queue(partition_id, queue, level)
        copy = CopyTo(name, args, job.copy_with(retry_count=job.retry_count + 1).encode())
    elif outcome == "buried":
        name, args = retry.buried_queue(partition_id, queue, max_buried_queue_size)
        copy = CopyTo(name, args, job.encode())
    effects.append(RecordThenAck(copy, queue_key))
    return tuple(effects)


class Ackable(Protocol):
    """A delivery as far as acking goes: its channel and its tag."""

    @property
    def key(self) -> str: ...

    @property
    def generation(self) -> int: ...

    @property
    def tag(self) -> int: ...


def acks_by_channel(deliveries: Iterable[Ackable]) -> dict[tuple[str, int], list[int]]:
    """The tags of ``deliveries`` grouped by consumer channel ``(key,
    generation)``, in the order given (one multiple ack per channel)."""
    grouped: dict[tuple[str, int], list[int]] = {}
    for delivery in deliveries:
        grouped.setdefault((delivery.key, delivery.generation), []).append(delivery.tag)
    return grouped


# ---------------------------------------------------------------- batches


@dataclass
class QueueState:
    """One queue type of the partition on this node: its limits, its pause
    bit, its workers (the actor's records of them), the tokens of the
    deliveries waiting for a worker (``backlog``, in delivery order), and the
    running average of its job durations that sizes batches and prefetch."""

    name: str
    max_workers: int
    paused: bool = False
    workers: list[WorkerRef] = field(default_factory=list)
    #: Workers asked of the WorkerSupervisor, not there yet.
    starting: int = 0
    backlog: deque[int] = field(default_factory=deque)
    #: Running average of job durations (seconds), None before the first.
    avg_seconds: float | None = None
    #: The prefetch asked of the broker for this queue's channel.
    prefetch: int = 0
    #: The prefetch follows the batch size (config ``prefetch = "adaptive"``);
    #: else it is ``max_workers`` (``"roger"``).
    adaptive: bool = True

    def jobs_in(self, seconds: float) -> int:
        """How many of this queue's jobs take ``seconds`` together, by the
        running average (0 before the first job's duration is known)."""
        if self.avg_seconds is None:
            return 0
        return int(seconds / max(self.avg_seconds, 1e-6))

    @property
    def batch_limit(self) -> int:
        """Jobs per batch: about BATCH_TARGET_SECONDS of work, 1 to MAX_BATCH."""
        return max(1, min(MAX_BATCH, self.jobs_in(BATCH_TARGET_SECONDS)))

    @property
    def wanted_prefetch(self) -> int:
        """Adaptive: room for every worker's batch and the next one being
        gathered; else ``max_workers``. At most AMQP's :data:`MAX_PREFETCH`
        (``max_workers`` is bounded by :data:`~roger_actors.queue.MAX_WORKERS`
        so that the clamp only matters for states made without that check)."""
        if not self.adaptive:
            return min(MAX_PREFETCH, self.max_workers)
        return min(MAX_PREFETCH, self.max_workers * (1 + self.batch_limit))

    def record_duration(self, seconds: float) -> None:
        """Learn one job's duration: the first sets the average, each next one
        moves it by :data:`DURATION_WEIGHT` of the difference."""
        if self.avg_seconds is None:
            self.avg_seconds = seconds
        else:
            self.avg_seconds += DURATION_WEIGHT * (seconds - self.avg_seconds)

    def prefetch_change(self) -> int | None:
        """The new prefetch to ask of the broker, now set as ``prefetch``, when
        it is adaptive and the wanted one differs by a factor of 2 or more
        (or none was asked yet); None when it stays (also for a queue with
        ``max_workers`` 0, which is not consumed)."""
        if not self.adaptive or self.max_workers == 0:
            return None
        wanted = self.wanted_prefetch
        if self.prefetch and self.prefetch // 2 < wanted < self.prefetch * 2:
            return None
        self.prefetch = wanted
        return wanted

    def idle_worker(self) -> WorkerRef | None:
        """The first worker that may take a batch (:attr:`WorkerRef.idle`)."""
        return next((worker for worker in self.workers if worker.idle), None)

    def stop_idle(self, before: float) -> list[WorkerRef]:
        """Take out of :attr:`workers` and return those idle since earlier than
        ``before`` (to be stopped); none while jobs wait in the backlog."""
        if self.backlog:
            return []
        stale = [w for w in self.workers if w.idle and w.idle_since < before]
        gone = {id(w) for w in stale}
        self.workers = [w for w in self.workers if id(w) not in gone]
        return stale

    def workers_to_start(self) -> int:
        """How many more workers to start: one per backlogged job no starting
        worker will take, within ``max_workers`` counting those there and
        those starting."""
        wanted = len(self.backlog) - self.starting
        room = self.max_workers - len(self.workers) - self.starting
        return max(0, min(wanted, room))

    def take_batch(self, job_of: Callable[[int], Job | None]) -> tuple[list[tuple[int, Job]], bool]:
        """Take the next batch for one idle worker off the backlog: its fair
        share (the backlog split over ``max_workers``, rounded up, but at
        least the jobs that take :data:`UNSPLIT_SECONDS` together), at most
        :attr:`batch_limit` jobs. A job with a ``max_execution_time`` travels
        alone (its timer starts when it is handed): it ends a batch begun
        before it, or is a batch of its own. Tokens ``job_of`` knows nothing
        of (forgotten deliveries) are dropped. Returns the ``(token, job)``
        pairs and whether the batch is one timed job."""
        share = max(
            -(-len(self.backlog) // max(1, self.max_workers)), self.jobs_in(UNSPLIT_SECONDS)
        )
        items: list[tuple[int, Job]] = []
        while self.backlog and len(items) < min(self.batch_limit, share):
            token = self.backlog[0]
            job = job_of(token)
            if job is None:
                self.backlog.popleft()
                continue
            if job.max_execution_time is not None:
                if items:
                    break
                self.backlog.popleft()
                return [(token, job)], True
            self.backlog.popleft()
            items.append((token, job))
        return items, False


# ---------------------------------------------------------------- flights

DeliveryT = TypeVar("DeliveryT")
WorkerT = TypeVar("WorkerT")


@dataclass
class Flight(Generic[DeliveryT, WorkerT]):
    """One delivery this Consumer holds, from its arrival to its outcome: the
    delivery, its decoded job, the worker it was handed to (None before), and
    where it stands in gating (execution key), timing and cancellation."""

    delivery: DeliveryT
    job: Job
    worker: WorkerT | None = None
    timed_out: bool = False
    #: The actor's timer of ``max_execution_time`` (its handle), None if none.
    timer: Any = None
    #: Waiting for Global (execution key taken, or parked) before dispatch.
    gating: bool = False
    #: A cancel arrived while gating or running in a worker.
    cancel_requested: bool = False
    #: Being cancelled (Global asked to clear the mark).
    cancelling: bool = False
    #: When it was handed to a worker (ms since the epoch), 0 before.
    handed_at: int = 0
    #: Its keys were seen to (or it has none): it may go to the backlog.
    gated: bool = False
    #: Its worker reported it skipped (never started) because of a cancel.
    skipped: bool = False
    #: The token this delivery takes its execution key with (execution_fence).
    exec_token: str = ""
    #: Its worker was killed by the fence (once).
    fenced: bool = False


# ---------------------------------------------------------------- cancellation


@dataclass(frozen=True)
class ConfirmCancel:
    """Ask Global whether job ``job_id`` is cancelled, leaving its mark, before
    its worker is told (a cast is only a hint: a forged one kills nothing)."""

    job_id: str


@dataclass(frozen=True)
class ConfirmLater:
    """Global did not answer a :class:`ConfirmCancel`: ask again in a second."""


@dataclass(frozen=True)
class TellWorkerCancel:
    """Tell the flight's worker to skip its job if not started, else to die
    under it."""


@dataclass(frozen=True)
class RunCallback:
    """Run the job's callback ``name`` (``on_cancel``) off the actor's thread."""

    name: str


@dataclass(frozen=True)
class SettleAs:
    """Settle the flight with ``outcome`` (see :func:`settle`)."""

    outcome: str


@dataclass(frozen=True)
class Crashed:
    """The job ended as if its worker died under it, with the error ``(kind,
    reason)``: its ``on_error`` or ``on_buried`` callback, then retried or
    buried as its class says (:func:`crash_outcome`)."""

    kind: str
    reason: str


class CancelMarks:
    """This Consumer's copy of the partition's cancelled job ids, each with
    when it was learned (a time the caller chooses, in seconds), oldest first.
    A hint only: Global confirms a mark before anything is settled as
    cancelled. A mark noted again is renewed (it moves to the end).

    A mark this Consumer cleared in Global stays, as *cleared here*, until it
    expires: the job's ack may be lost with its channel, and the copy the
    broker delivers again must not run (Global holds no mark for it any
    more: see :func:`cancel_cleared`)."""

    def __init__(self) -> None:
        self._learned: dict[str, float] = {}
        self._cleared: set[str] = set()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._learned

    def __len__(self) -> int:
        return len(self._learned)

    def ids(self) -> set[str]:
        """The marked ids."""
        return set(self._learned)

    def note(self, job_id: str, at: float) -> None:
        """Mark ``job_id`` as learned at ``at`` (renewed if marked)."""
        self._learned.pop(job_id, None)
        self._learned[job_id] = at

    def forget(self, job_id: str) -> None:
        """Drop ``job_id``'s mark, if any (also one cleared here)."""
        self._learned.pop(job_id, None)
        self._cleared.discard(job_id)

    def note_cleared(self, job_id: str, at: float) -> None:
        """``job_id``'s mark was cleared in Global by this Consumer at ``at``:
        kept (renewed) as cleared here."""
        self.note(job_id, at)
        self._cleared.add(job_id)

    def cleared_here(self, job_id: str) -> bool:
        """True when this Consumer cleared ``job_id``'s mark (not expired yet)."""
        return job_id in self._cleared

    def expire(self, now: float, ttl: float) -> None:
        """Drop the marks learned ``ttl`` seconds or more before ``now``."""
        limit = now - ttl
        while self._learned:
            job_id, learned = next(iter(self._learned.items()))
            if learned > limit:
                break
            del self._learned[job_id]
            self._cleared.discard(job_id)


def cancel_hint(flight: Flight[Any, Any]) -> ClearCancel | ConfirmCancel | None:
    """A ``cancel`` cast names ``flight``'s job:

    - already being cancelled, or in a worker with a cancel under way:
      nothing more;
    - waiting for Global (gating): ``cancel_requested`` is set, decided when
      the gate answers;
    - not handed to a worker: :class:`ClearCancel` (the actor takes it out of
      its backlog first);
    - in a worker: :class:`ConfirmCancel` (Global must confirm the mark
      before the worker is told)."""
    if flight.cancelling:
        return None
    if flight.gating:
        flight.cancel_requested = True
        return None
    if flight.worker is None:
        return ClearCancel(flight.job)
    if flight.cancel_requested:
        return None
    return ConfirmCancel(flight.job.id)


def cancel_confirmed(
    flight: Flight[Any, Any], confirmed: Any, *, failed: bool, marks: CancelMarks
) -> tuple[ConfirmLater | TellWorkerCancel, ...]:
    """Global answered :class:`ConfirmCancel` for ``flight`` (``failed``: it
    did not answer). Nothing for a flight no longer in a worker or already
    being cancelled; no answer: :class:`ConfirmLater`; an answer other than
    ``True``: the local mark is forgotten and the job runs on; ``True``:
    ``cancel_requested`` is set and the worker told."""
    if flight.worker is None or flight.cancelling:
        return ()
    if failed:
        return (ConfirmLater(),)
    if confirmed is not True:
        marks.forget(flight.job.id)
        return ()
    flight.cancel_requested = True
    return (TellWorkerCancel(),)


def cancel_cleared(
    flight: Flight[Any, Any],
    cleared: bool,
    *,
    failed: bool,
    connected: bool,
    marks: CancelMarks,
    at: float,
    redelivered: bool = False,
) -> tuple[GiveBack | Admit | RunCallback | SettleAs | Crashed, ...]:
    """Global answered :class:`ClearCancel` for ``flight`` at ``at``
    (``failed``: it did not answer; ``connected``: the Consumer's link is up;
    ``redelivered``: the broker says its delivery was delivered before).

    - no answer: :class:`GiveBack` (the job comes back, still marked here);
    - cleared: ``on_cancel``, then settled as ``cancelled``; the mark is kept
      as cleared here (:meth:`CancelMarks.note_cleared`);
    - not cleared, but this Consumer cleared the job's mark before and the
      delivery is ``redelivered``: a copy of a job it cancelled, delivered
      again because the first ack was lost with its channel: settled as
      ``cancelled`` (acked, never run), with no second ``on_cancel``. A job
      enqueued again with the same id is a new message (not redelivered):
      it runs;
    - not cleared (a forged or stale cast, an expired mark): never settled
      as cancelled, and its flags are reset: a job not handed to a worker is
      admitted again (when connected; else its channel is gone and the
      broker requeued it), one its worker skipped is ``returned``, one whose
      worker was killed is a worker crash. The local mark is forgotten."""
    if failed:
        return (GiveBack(),)
    job_id = flight.job.id
    if cleared:
        marks.note_cleared(job_id, at)
        return (RunCallback("on_cancel"), SettleAs("cancelled"))
    if redelivered and marks.cleared_here(job_id):
        return (SettleAs("cancelled"),)
    marks.forget(job_id)
    flight.cancelling = flight.cancel_requested = False
    if flight.worker is None:
        return (Admit(flight.job),) if connected else ()
    if flight.skipped:
        return (SettleAs("returned"),)
    return (Crashed("worker_crash", "cancelled, but Global holds no cancel mark"),)


def died_under(flight: Flight[Any, Any], reason: str) -> ClearCancel | Crashed:
    """The worker process ended while running ``flight``'s job: a cancel
    confirmed for it is carried on (:class:`ClearCancel`); else the job
    crashed with ``timeout`` (its ``max_execution_time`` was passed and the
    worker killed) or ``worker_crash`` (``reason``, how the worker ended)."""
    if flight.cancel_requested:
        return ClearCancel(flight.job)
    if flight.timed_out:
        limit = flight.job.max_execution_time
        return Crashed("timeout", f"job exceeded max_execution_time of {limit} s")
    return Crashed("worker_crash", reason)


def error_outcome(job: Job, retry_levels: tuple[int, ...]) -> str:
    """What happens to a job that failed: ``error`` (not retryable), ``retry``
    (a retry level is left), or ``buried``."""
    if not Job.is_retryable(job):
        return "error"
    return "retry" if job.retry_count < len(retry_levels) else "buried"


def crash_callback(outcome: str) -> str:
    """The one callback a crashed job's ``outcome`` runs (as Roger's
    ``handle_error``): ``on_buried`` when it buries the job, else ``on_error``."""
    return "on_buried" if outcome == "buried" else "on_error"


# ---------------------------------------------------------------- keys


@dataclass(frozen=True)
class TakeExecution:
    """Gate the job before it runs: take its execution key in Global with
    ``exec_token``, or park it in the key's waiting queue."""

    exec_token: str


@dataclass(frozen=True)
class Backlog:
    """Put the flight in its queue's backlog, then hand out work."""


@dataclass(frozen=True)
class RequeueLater:
    """Global did not answer the gate: give the delivery back in a second."""


@dataclass(frozen=True)
class Parked:
    """The job now waits in the waiting queue of execution key ``key`` (its
    delivery was acked there): forget the flight, sweep the key."""

    key: str


def admit(
    flight: Flight[Any, Any], *, runnable: bool, new_exec_token: Callable[[], str]
) -> GiveBack | TakeExecution | Backlog:
    """Take ``flight``, a job not (or no longer) cancelled: given back when
    not ``runnable``; gated (:class:`TakeExecution`, with a token from
    ``new_exec_token``; ``gating`` is set) when it has an execution key not
    seen to yet; else ``gated`` and :class:`Backlog`."""
    if not runnable:
        return GiveBack()
    if not flight.gated and execution_key_of(flight.job) is not None:
        flight.gating = True
        flight.exec_token = new_exec_token()
        return TakeExecution(flight.exec_token)
    flight.gated = True
    return Backlog()


def gate_answered(
    flight: Flight[Any, Any], verdict: str, *, cancelled: Container[str], runnable: bool
) -> RequeueLater | Parked | ClearCancel | GiveBack | Backlog:
    """The gate of ``flight`` (:class:`TakeExecution`) ended with ``verdict``:
    ``"failed"`` (Global did not answer): :class:`RequeueLater`, the flight
    unchanged. Otherwise its keys are seen to (``gated``, no longer
    ``gating``), and: ``"parked"``: :class:`Parked`; a cancel arrived while
    it gated, or its id is in ``cancelled``: :class:`ClearCancel`; not
    ``runnable`` any more: :class:`GiveBack`; else (``"go"``, the key is
    its): :class:`Backlog`."""
    if verdict == "failed":
        return RequeueLater()
    flight.gating = False
    flight.gated = True
    if verdict == "parked":
        key = execution_key_of(flight.job)
        if key is None:
            raise ValueError(f"job {flight.job.id} was parked but has no execution key")
        return Parked(key)
    if flight.cancel_requested or flight.job.id in cancelled:
        return ClearCancel(flight.job)
    if not runnable:
        return GiveBack()
    return Backlog()


class WaitingKeys:
    """The execution keys whose waiting queues this Consumer sweeps (so that a
    job parked there that missed its hand-over still runs): the keys it
    parked jobs for, with their queue type, and the keys Global's snapshot
    lists as held (queue type ``""``, maybe parked by a node before it
    restarted); and the keys a sweep is under way for. A key is dropped
    when a sweep finds its waiting queue empty."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._sweeping: set[str] = set()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[str]:
        """The keys swept, sorted."""
        return sorted(self._keys)

    def parked(self, key: str, queue: str) -> None:
        """A job of queue type ``queue`` was parked for ``key``."""
        self._keys[key] = queue

    def held(self, key: str) -> None:
        """Global holds ``key``: sweep its waiting queue too (a key already
        known keeps its queue type)."""
        self._keys.setdefault(key, "")

    def start_sweeps(self) -> list[str]:
        """The keys to sweep now, in the order they were learned: those with
        no sweep under way, now marked as being swept."""
        due = [key for key in self._keys if key not in self._sweeping]
        self._sweeping.update(due)
        return due

    def swept(self, key: str, result: Any) -> None:
        """The sweep of ``key`` ended with ``result`` (``"empty"``,
        ``"moved"``, ``"busy"``, or None when it failed): ``"empty"`` drops
        the key; it may be swept again."""
        self._sweeping.discard(key)
        if result == "empty":
            self._keys.pop(key, None)


# ---------------------------------------------------------------- workers


class ScoreboardRecord(Protocol):
    """What a worker's scoreboard says of its current batch (see
    :class:`~roger_actors.partition.control.BatchRecord`)."""

    @property
    def batch_id(self) -> int: ...

    @property
    def current(self) -> int: ...

    @property
    def outcomes(self) -> tuple[str | None, ...]: ...


@dataclass
class WorkerRef:
    """The Consumer's record of one worker process of queue type ``queue``:
    where it is (``address``, ``pid``, its ``control`` socket and
    ``scoreboard`` path, reported when it is ``ready``), the tokens it holds
    (``tokens``: not finished yet; ``batch``: the whole batch last handed,
    in order), and since when it is idle (a time the caller chooses)."""

    queue: str
    address: Any = None
    pid: int | None = None
    tokens: list[int] = field(default_factory=list)
    idle_since: float = 0.0
    ready: bool = False
    control: str = ""
    scoreboard: str = ""
    #: The scoreboard, attached read-only once the worker is ready.
    board: Scoreboard | None = None
    #: Tokens of the batch last handed to the worker, in order.
    batch: list[int] = field(default_factory=list)

    @property
    def idle(self) -> bool:
        """Ready and holding no job: it may take a batch."""
        return self.ready and not self.tokens

    def hand(self, tokens: list[int]) -> None:
        """The worker gets the batch ``tokens``, in order."""
        self.tokens = list(tokens)
        self.batch = list(tokens)

    def finished(self, token: int, at: float) -> bool:
        """The worker reported ``token``'s outcome: True when that was its last
        job (it is idle since ``at``); False when it holds others, or did not
        hold ``token``."""
        if token not in self.tokens:
            return False
        self.tokens.remove(token)
        if self.tokens:
            return False
        self.idle_since = at
        return True

    def running_token(self, record: ScoreboardRecord | None) -> int | None:
        """The token whose job runs in the worker now: none when it holds no
        job; with no scoreboard ``record`` (or no batch), its first job not
        finished; else the job the record says runs, none when the record is
        of another batch or says no job runs."""
        if not self.tokens:
            return None
        if record is None or not self.batch:
            return self.tokens[0]
        if record.batch_id != self.batch[0] or not (0 <= record.current < len(self.batch)):
            return None
        return self.batch[record.current]

    def died(
        self, record: ScoreboardRecord | None
    ) -> tuple[int | None, list[tuple[int, str | None]]]:
        """The worker process ended; its jobs are taken back (``tokens`` is
        emptied). Returns the token of the job it died under (None if none)
        and each other job it held, in order, with its outcome as the
        scoreboard ``record`` says (the outcome not reported yet) or None
        (never started: it goes back to its queue). Without a record of the
        batch last handed, it died under its first job not finished."""
        outstanding, self.tokens = self.tokens, []
        if not outstanding:
            return None, []
        running: int | None = outstanding[0]
        finished: dict[int, str] = {}
        if record is not None and self.batch and record.batch_id == self.batch[0]:
            running = None
            for index, token in enumerate(self.batch):
                outcome = record.outcomes[index] if index < len(record.outcomes) else None
                if outcome is not None:
                    finished[token] = outcome
                elif index == record.current:
                    running = token
        others = [(token, finished.get(token)) for token in outstanding if token != running]
        return running, others


# ---------------------------------------------------------------- pauses


class PauseBits:
    """The one pause bit per queue type of this Consumer, shared by the local
    pause (``Pause``, ``PauseAll``, ``Resume``) and the cluster-wide one
    (``queue_pause`` and ``queue_resume`` casts, Global's snapshot): whichever
    set a bit, either clears it. Kept also for queue types not configured
    (now or any more), so a bit outlives a reconfiguration. Also Global's
    paused set as last heard (its snapshot, then casts), which a later
    snapshot is compared with."""

    def __init__(self) -> None:
        self._bits: set[str] = set()
        self._global: set[str] = set()

    def __contains__(self, queue: object) -> bool:
        return queue in self._bits

    def set(self, queue: str, paused: bool) -> None:
        """Set or clear ``queue``'s bit (Global's set is not changed)."""
        if paused:
            self._bits.add(queue)
        else:
            self._bits.discard(queue)

    def cast(self, queue: str, paused: bool) -> None:
        """A ``queue_pause`` (``paused``) or ``queue_resume`` cast: Global's
        set and ``queue``'s bit follow it."""
        if paused:
            self._global.add(queue)
        else:
            self._global.discard(queue)
        self.set(queue, paused)

    def apply_snapshot(self, paused: Iterable[str]) -> None:
        """Global's snapshot lists ``paused``: those bits are set; the bits of
        queues Global listed before and no longer does (a resume cast this
        Consumer missed) are cleared; other bits (local pauses) stay."""
        previous, self._global = self._global, set(paused)
        self._bits |= self._global
        self._bits -= previous - self._global

    def missed_casts(self, paused: Iterable[str]) -> list[tuple[str, bool]]:
        """The casts that would turn Global's set as last heard into
        ``paused`` (a newer snapshot): ``(queue, paused)``, sorted by queue."""
        now = set(paused)
        return [(name, name in now) for name in sorted(now ^ self._global)]


# ---------------------------------------------------------------- reconfiguration


@dataclass(frozen=True)
class QueuesPlan:
    """What a reconfiguration changes on the broker: the queue types whose
    consumers stop (``removed``), the new ones to declare and consume
    (``added``: ``{queue: (prefetch, paused)}``), and the ones kept with a new
    ``max_workers`` (``changed``: ``{queue: (previous max_workers, prefetch,
    paused)}``). A prefetch of 0 (``max_workers`` 0) means not consumed."""

    removed: tuple[str, ...]
    added: dict[str, tuple[int, bool]]
    changed: dict[str, tuple[int, int, bool]]


def reconfigure(
    queues: dict[str, QueueState],
    wanted: Mapping[str, int],
    pauses: PauseBits,
    adaptive: bool,
) -> tuple[list[QueueState], QueuesPlan]:
    """Make ``queues`` the complete list ``wanted`` (``{queue: max_workers}``),
    in place: queue types not wanted are taken out, new ones are added with
    their pause bit from ``pauses`` (a queue removed and added back, or
    added after a cast paused it, starts paused), kept ones take their new
    ``max_workers``; each one's ``prefetch`` is set to what it wants. Returns
    the states taken out (their backlog and workers are the caller's to
    return and stop) and the plan for the broker."""
    removed = [queues.pop(name) for name in [n for n in queues if n not in wanted]]
    added: dict[str, tuple[int, bool]] = {}
    changed: dict[str, tuple[int, int, bool]] = {}
    for name, limit in wanted.items():
        state = queues.get(name)
        if state is None:
            state = queues[name] = QueueState(name, limit, paused=name in pauses, adaptive=adaptive)
            state.prefetch = state.wanted_prefetch
            added[name] = (state.prefetch, state.paused)
        else:
            previous, state.max_workers = state.max_workers, limit
            state.prefetch = state.wanted_prefetch
            changed[name] = (previous, state.prefetch, state.paused)
    return removed, QueuesPlan(tuple(s.name for s in removed), added, changed)


def consuming_plan(
    queues: Mapping[str, QueueState], consuming: bool
) -> tuple[list[str], list[str]]:
    """``(run, stop)``: the queue types whose consumers should run now
    (``consuming``, not paused) and those that should not; queues with
    ``max_workers`` 0 have no consumer and are in neither."""
    run: list[str] = []
    stop: list[str] = []
    for name, state in queues.items():
        if state.max_workers > 0:
            (run if consuming and not state.paused else stop).append(name)
    return run, stop


# ---------------------------------------------------------------- Global's snapshot


@dataclass(frozen=True)
class Snapshot:
    """Global's ``snapshot`` reply, checked: the cancelled job ids, the
    queue types paused cluster-wide, and the execution keys held (an older
    Global sends none)."""

    cancelled: tuple[str, ...]
    paused: tuple[str, ...]
    executing: tuple[str, ...] = ()


def parse_snapshot(value: Any) -> Snapshot:
    """The :class:`Snapshot` of Global's reply ``value``: a map of
    ``cancelled``, ``paused`` and optionally ``executing``, each a list of
    non-empty strings. ValueError naming what is wrong for anything else."""
    if not isinstance(value, dict) or not (
        {"cancelled", "paused"} <= set(value) <= {"cancelled", "paused", "executing"}
    ):
        raise ValueError(
            "Global snapshot must be a map of 'cancelled', 'paused' and, optionally, 'executing'"
        )
    for name in [n for n in ("cancelled", "paused", "executing") if n in value]:
        items = value[name]
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise ValueError(f"Global snapshot: {name!r} must be a list of non-empty strings")
    return Snapshot(
        tuple(value["cancelled"]), tuple(value["paused"]), tuple(value.get("executing", ()))
    )


__all__ = [
    "BATCH_TARGET_SECONDS",
    "DURATION_WEIGHT",
    "MAX_BATCH",
    "MAX_PREFETCH",
    "UNRUN_OUTCOMES",
    "UNSPLIT_SECONDS",
    "AckLater",
    "Ackable",
    "Admit",
    "Backlog",
    "CancelMarks",
    "ClearCancel",
    "ConfirmCancel",
    "ConfirmLater",
    "CopyTo",
    "Crashed",
    "Flight",
    "GiveBack",
    "Parked",
    "PauseBits",
    "QueueState",
    "QueuesPlan",
    "RecordThenAck",
    "ReleaseExecution",
    "RequeueLater",
    "RunCallback",
    "ScoreboardRecord",
    "SetAside",
    "SettleAs",
    "Settlement",
    "Snapshot",
    "TakeExecution",
    "TellWorkerCancel",
    "Triage",
    "WaitingKeys",
    "WorkerRef",
    "acks_by_channel",
    "admit",
    "cancel_cleared",
    "cancel_confirmed",
    "cancel_hint",
    "consuming_plan",
    "crash_callback",
    "died_under",
    "error_outcome",
    "gate_answered",
    "parse_snapshot",
    "reconfigure",
    "settle",
    "triage",
]
