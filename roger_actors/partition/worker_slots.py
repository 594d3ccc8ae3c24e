"""The node's shared worker pool: how many worker processes each queue of each
partition may hold at once.

A node has ``worker_pool_size`` worker *slots*; every worker process a
Consumer starts takes one (:meth:`SlotClient.acquire`) and gives it back when
it is stopped or ends (:meth:`SlotClient.release`). Every Consumer of a
process is a client of the process's one :class:`WorkerSlots`
(:func:`shared`): on the ``light`` base all partitions of a node run in one
partition host process, so the size is the node's; on ``multiprocTCPBase``
every Consumer is a process of its own, and the size caps each partition.

**Fair shares.** Each queue type of a partition is a *holding*. Its *demand*
is the number of workers it could use now (its workers, those starting and
those its backlog calls for, within ``max_workers``); its *weight* is its
``max_workers``. The slots are shared by weighted max-min fairness (water
filling): a holding whose demand is below an even share (by weight) gets its
demand, and what it leaves is shared by the others. So a queue type with a
backlog of 100,000 jobs holds no more than its share while another one wants
workers, and ``max_workers`` stays the hard cap of each.

- A holding may take a free slot while it holds less than its share, the
  holdings waiting longer first.
- When no slot is free and a holding waits below its share, every holding
  over its share by a whole slot, or over it at all and holding its last
  slot for :data:`QUANTUM_SECONDS` or more, has a *surplus*: its Consumer
  stops an idle worker of that queue type, or the next worker that finishes
  its batch, instead of giving it more work (:attr:`SlotClient.surplus`).
  The quantum keeps workers from changing hands at every batch when more
  queue types want a worker than there are slots: each holds one for the
  quantum, in turn. It does not keep a worker that has had no job to take
  for :data:`~roger_actors.partition.worker_pool.UNUSED_SECONDS`.

**Isolation.** A worker process serves one queue type of one partition for
its whole life: a slot that changes hands is a worker stopped and a new one
started for the other partition, never a process reused across tenants
(``docs/operations.md`` has what a change of hands costs).

Clients are told to look again through their ``wake`` callable (a Consumer
sends itself a message), called when a slot was freed or the shares changed;
nothing here blocks or does I/O, and every call happens on the thread of the
process's actors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["QUANTUM_SECONDS", "SlotClient", "WorkerSlots", "shared"]

#: Seconds a holding keeps a slot it is over its (fractional) share by less
#: than one slot, before it gives it up to a waiting holding.
QUANTUM_SECONDS = 1.0


@dataclass
class _Holding:
    client: SlotClient
    queue: str
    weight: int = 1
    held: int = 0
    demand: int = 0
    #: Its fair share of the pool (slots, fractional), from the last demands.
    share: float = 0.0
    #: Monotonic time of its last acquire (the quantum counts from it).
    since: float = 0.0
    #: Monotonic time since when it waits below its share (None: not waiting).
    waiting_since: float | None = None
    #: When its client was first woken to take a free slot since it waits (None: not yet).
    woken_at: float | None = None


class WorkerSlots:
    """``size`` worker slots shared by weighted max-min fairness; see the module
    docstring. ``clock`` gives monotonic seconds (injectable for tests)."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self.clock = clock
        self._holdings: dict[tuple[int, str], _Holding] = {}
        self._held = 0
        #: No slot is free and a holding waits below its share: only then may
        #: a holding have a surplus (a Consumer's hot path asks this first).
        self.contended = False

    # ------------------------------------------------------------ the pool

    @property
    def held(self) -> int:
        """Slots held now (worker processes started and not yet stopped)."""
        return self._held

    @property
    def free(self) -> int:
        """Slots no one holds (0 when the pool is over-committed after a resize)."""
        return max(0, self.size - self._held)

    def resize(self, size: int) -> None:
        """Make the pool ``size`` slots; holdings over their new share give
        slots back by the usual rules, while another one waits (nothing is
        killed)."""
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self._changed()

    def client(self, name: str, wake: Callable[[], None]) -> SlotClient:
        """A new client (one Consumer) named ``name`` for logs; ``wake()`` is
        called when it should look again, by another client's call (it should
        act on it in its next turn, not from within the callback)."""
        return SlotClient(self, name, wake)

    def share(self, client: SlotClient, queue: str) -> float:
        """The fair share of ``client``'s queue type ``queue`` (slots, fractional)."""
        holding = self._holdings.get((id(client), queue))
        return 0.0 if holding is None else holding.share

    # ------------------------------------------------------------ internals

    def _holding(self, client: SlotClient, queue: str) -> _Holding:
        key = (id(client), queue)
        holding = self._holdings.get(key)
        if holding is None:
            holding = self._holdings[key] = _Holding(client, queue)
        return holding

    def _drop_if_empty(self, holding: _Holding) -> None:
        if holding.held == 0 and holding.demand == 0:
            self._holdings.pop((id(holding.client), holding.queue), None)

    def _compute_shares(self) -> None:
        """Weighted water filling of ``size`` over the holdings' demands."""
        left = float(self.size)
        open_ = []
        for holding in self._holdings.values():
            holding.share = 0.0
            if holding.demand > 0:
                open_.append(holding)
        while open_:
            level = left / sum(h.weight for h in open_)
            capped = [h for h in open_ if h.demand <= level * h.weight]
            if not capped:
                for holding in open_:
                    holding.share = level * holding.weight
                break
            for holding in capped:
                holding.share = float(holding.demand)
                left -= holding.demand
            open_ = [h for h in open_ if h.demand > level * h.weight]

    def _waiting(self, holding: _Holding) -> bool:
        return holding.demand > holding.held and holding.held < holding.share

    def _ahead(self, holding: _Holding) -> int:
        """Holdings that wait below their share since before ``holding`` (or
        before now, when it does not wait) and were not woken more than
        :data:`QUANTUM_SECONDS` ago: a free slot is theirs first. One woken
        long ago that took nothing does not hold the others up."""
        moment = self.clock()
        mine = holding.waiting_since if holding.waiting_since is not None else moment
        return sum(
            1
            for h in self._holdings.values()
            if h is not holding
            and h.waiting_since is not None
            and h.waiting_since < mine
            and (h.woken_at is None or moment - h.woken_at < QUANTUM_SECONDS)
            and self._waiting(h)
        )

    def _surplus(self, holding: _Holding, unused: bool = False) -> bool:
        if not self.contended or holding.held == 0:
            return False
        over = holding.held - holding.share
        if over <= 1e-9:
            return False
        return unused or over >= 1 - 1e-9 or self.clock() - holding.since >= QUANTUM_SECONDS

    def _changed(self, cause: _Holding | None = None) -> None:
        """The demands or the held slots changed (by a call about the holding
        ``cause``): new shares; wake the clients of the waiting holdings
        (longest waiting first) when a slot is free, and of the holdings with
        a surplus when none is. ``cause`` itself is not woken (its caller
        acts on the call's result), but its client is for any other holding
        of the client (another queue type of the same Consumer)."""
        self._compute_shares()
        moment = self.clock()
        waiting = []
        for holding in self._holdings.values():
            if self._waiting(holding):
                if holding.waiting_since is None:
                    holding.waiting_since = moment
                waiting.append(holding)
            else:
                holding.waiting_since = holding.woken_at = None
        self.contended = self.free == 0 and bool(waiting)
        to_wake: list[SlotClient] = []
        if self.free > 0:
            waiting.sort(key=lambda h: h.waiting_since or 0.0)
            for holding in waiting:
                if holding is not cause and holding.woken_at is None:
                    holding.woken_at = moment
            to_wake = [h.client for h in waiting if h is not cause]
        elif waiting:
            to_wake = [
                h.client for h in self._holdings.values() if h is not cause and self._surplus(h)
            ]
        seen: set[int] = set()
        for client in to_wake:
            if id(client) not in seen:
                seen.add(id(client))
                client.wake()

    def _close(self, client: SlotClient) -> None:
        keys = [key for key, h in self._holdings.items() if h.client is client]
        for key in keys:
            self._held -= self._holdings.pop(key).held
        if keys:
            self._changed()


class SlotClient:
    """One Consumer's view of the pool; made by :meth:`WorkerSlots.client`."""

    def __init__(self, slots: WorkerSlots, name: str, wake: Callable[[], None]) -> None:
        self.slots = slots
        self.name = name
        self.wake = wake
        self.closed = False

    def demand(self, queue: str, workers: int, weight: int) -> None:
        """Queue type ``queue`` could use ``workers`` workers now (those it
        has, those starting, those its backlog calls for); ``weight`` is its
        ``max_workers``. Shares are computed again when it changed."""
        if self.closed:
            return
        holding = self.slots._holding(self, queue)
        weight = max(1, weight)
        if holding.demand == workers and holding.weight == weight:
            return
        holding.demand, holding.weight = max(0, workers), weight
        self.slots._changed(holding)
        self.slots._drop_if_empty(holding)

    def acquire(self, queue: str) -> bool:
        """Take a slot for a worker of ``queue`` about to start: True when one
        is free, no queue type that waits longer is owed it, and this one
        holds less than its share (set its demand first); else False (it is
        woken when that changes). So a queue type that gave a slot up to one
        waiting does not take it straight back."""
        if self.closed:
            return False
        holding = self.slots._holding(self, queue)
        slots = self.slots
        if holding.held >= holding.share - 1e-9 or slots.free <= slots._ahead(holding):
            holding.woken_at = None  # it acted on its wake: the next one counts afresh
            slots._drop_if_empty(holding)
            return False
        holding.held += 1
        slots._held += 1
        holding.since = slots.clock()
        slots._changed(holding)  # the pool may be full now: the surplus holders are told
        return True

    def release(self, queue: str) -> None:
        """A worker of ``queue`` was stopped or ended: its slot is free (a
        release with none held is ignored)."""
        if self.closed:
            return
        holding = self.slots._holdings.get((id(self), queue))
        if holding is None or holding.held == 0:
            return
        holding.held -= 1
        self.slots._held -= 1
        self.slots._changed(holding)
        self.slots._drop_if_empty(holding)

    def surplus(self, queue: str, unused: bool = False) -> bool:
        """True when ``queue`` should give a slot back now: no slot is free,
        another queue type waits below its share, and this one is over its
        share (see the module docstring); ``unused``: the caller's idle worker
        has no job to take, so the quantum does not keep it. The caller stops
        one idle worker and releases its slot, then asks again."""
        if self.closed:
            return False
        holding = self.slots._holdings.get((id(self), queue))
        return holding is not None and self.slots._surplus(holding, unused)

    @property
    def contended(self) -> bool:
        """The pool has no slot free and a queue type waits below its share
        (False once closed): only then can :meth:`surplus` be True."""
        return not self.closed and self.slots.contended

    def held(self, queue: str) -> int:
        """Slots ``queue`` holds."""
        holding = self.slots._holdings.get((id(self), queue))
        return 0 if holding is None else holding.held

    def close(self) -> None:
        """Give back every slot of this client (its Consumer ends); later
        calls do nothing."""
        if not self.closed:
            self.closed = True
            self.slots._close(self)


#: This process's pool, by the pid that made it (a forked child makes its own).
_process_slots: tuple[int, WorkerSlots] | None = None


def shared(size: int) -> WorkerSlots:
    """This process's :class:`WorkerSlots`, made with ``size`` slots on first
    use; a later call with another ``size`` resizes it (the last configuration
    started wins). A process forked from one that had a pool gets its own."""
    global _process_slots
    if _process_slots is None or _process_slots[0] != os.getpid():
        _process_slots = (os.getpid(), WorkerSlots(size))
    elif _process_slots[1].size != size:
        _process_slots[1].resize(size)
    return _process_slots[1]
