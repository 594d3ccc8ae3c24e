"""Detecting the death of an actor: dead letters and port watches.

Monitors and links (:class:`~supervision.Server.monitor`,
:class:`~supervision.Server.link`, and the monitor every :func:`supervision.call`
sets) rest on three sources of truth, from the most to the least precise:

1. **The actor's own last word.** A supervised actor that exits in any way
   it can observe (stop, crash, shutdown, failed start, ``IGNORE``) sends
   ``Down``/``ExitSignal``/``CallReply(NoProc)`` with its exit reason to
   every watcher before it tells its parent (see :mod:`supervision.process`).
2. **Dead letters.** A message sent to an address where no actor lives any
   more is handed by Thespian to the actor system's dead-letter handler:
   :class:`DeadLetters` (one per actor system, registered under the global
   name :data:`DEAD_LETTERS`) answers a ``Monitor`` with ``Down(noproc)``,
   a ``Link`` with ``ExitSignal(noproc)`` and a monitored ``Call`` with
   ``NoProc``, at once.
3. **Port watches** (multi-process TCP base only). An actor that is
   SIGKILLed (OOM killer, ``brutal_kill``, a killed parent) says nothing.
   Every Thespian TCP actor owns one listening socket, closed by the kernel
   when its process dies (its children do not inherit it). A watcher
   remembers the inode of the listening socket at the target's port
   (``/proc/net/tcp*``) and polls it: when that socket is gone (or another
   socket took the port), the target is dead. The verdict waits for one
   more poll, so that a ``Down`` already on its way with the real reason
   wins; then the reason is ``"killed"``. Only addresses on this host's
   network namespace can be watched this way; for others, only (1) and (2)
   apply.

   A listening socket alone does not prove the actor lives: an actor that
   exited and waits to be reaped, or whose process is closing down, still
   listens. So a monitor's or link's watch takes the socket as its target's
   only once the target confirmed it (``Monitored``, ``Linked``). Until then the watch
   only notes whether anything listens at the port; a port that stays empty
   means the target died before the monitor reached it, and the reason is
   ``"noproc"``, as in distributed Erlang, where a monitor (or a link) that
   reaches a dead process gets ``noproc`` whatever that process died of.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from thespian.actors import Actor, ActorAddress, ActorSystem, DeadEnvelope

from .errors import NoProc
from .protocol import Call, CallReply, Down, ExitSignal, Link, Monitor

log = logging.getLogger("supervision.monitors")

#: Global name of the dead-letter handler of an actor system.
DEAD_LETTERS = "supervision.dead-letters"

#: Seconds between two polls of watched ports.
WATCH_INTERVAL = 0.1

NOPROC = "noproc"


def noproc_error(address: Any, reason: Any) -> NoProc:
    """The error a caller raises when the callee at ``address`` is or became dead."""
    return NoProc(f"actor at {address} exited: {reason!r}", reason=reason)


class _Enable:
    """Make the receiving DeadLetters the dead-letter handler; reply ``True``."""


class DeadLetters(Actor):  # type: ignore[misc]
    """The actor system's dead-letter handler: turns messages to dead actors
    that expect an answer into the answer a dead process gives in OTP."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        """Handle ``_Enable`` and Thespian's ``DeadEnvelope``s; never raises."""
        try:
            if isinstance(message, _Enable):
                self.handleDeadLetters(True)
                self.send(sender, True)
            elif isinstance(message, DeadEnvelope):
                self._dead(message.deadAddress, message.deadMessage)
        except Exception:  # pragma: no cover - a dead letter must never kill the handler
            log.exception("dead-letter handler failed on %r", message)

    def _dead(self, address: Any, message: Any) -> None:
        if isinstance(address, str):  # simpleSystemBase gives the address as text
            address = ActorAddress(address)
        if isinstance(message, Call) and message.monitor is not None:
            self.send(message.monitor, CallReply(message.ref, False, noproc_error(address, NOPROC)))
        elif isinstance(message, Monitor):
            self.send(message.watcher, Down(message.ref, address, NOPROC))
        elif isinstance(message, Link):
            self.send(message.linker, ExitSignal(address, NOPROC))


_enabled: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_enabled_lock = threading.Lock()


def ensure_dead_letters(system: ActorSystem) -> None:
    """Start (once per actor system) the :class:`DeadLetters` handler.

    Blocks until it is registered (at most a few seconds; on failure it is
    logged and calls to dead actors fall back to port watches and timeouts).
    """
    base = system._systemBase
    if getattr(base, "answers_dead_letters", False):
        return  # the light runtime answers a call to a dead address itself
    with _enabled_lock:
        if _enabled.get(base):
            return
        try:
            if type(base).__module__.endswith("simpleSystemBase"):
                _enable(system)
            else:
                with system.private() as endpoint:
                    _enable(endpoint)
            _enabled[base] = True
        except Exception:
            log.exception("could not start the dead-letter handler")


def _enable(system: ActorSystem) -> None:
    handler = system.createActor(DeadLetters, globalName=DEAD_LETTERS)
    if system.ask(handler, _Enable(), 10) is not True:
        raise RuntimeError("the dead-letter handler did not answer")


# ---------------------------------------------------------------- port watches


def tcp_port(address: Any) -> tuple[str, int] | None:
    """``(ip, port)`` of a Thespian TCP actor address, else None."""
    details = getattr(address, "addressDetails", None)
    args = getattr(details, "connectArgs", None)
    if not args:
        return None
    target = args[0]
    if isinstance(target, tuple) and len(target) >= 2 and isinstance(target[1], int):
        return str(target[0]), target[1]
    return None


def listening_inodes(ports: set[int]) -> dict[int, set[int]]:
    """The inodes of the sockets listening (TCP, IPv4 and IPv6) on each of ``ports``."""
    found: dict[int, set[int]] = {}
    wanted = {f"{port:04X}" for port in ports}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) < 10 or cols[3] != "0A":
                        continue
                    hex_port = cols[1].rsplit(":", 1)[1]
                    if hex_port in wanted:
                        found.setdefault(int(hex_port, 16), set()).add(int(cols[9]))
        except OSError:
            continue
    return found


@dataclass
class PortWatch:
    """The liveness of one watched address, as seen from its listening socket."""

    address: Any
    inode: int | None = None
    misses: int = 0
    checks: int = 0
    #: the reason when no listener was ever seen at the port
    unseen: str = NOPROC
    #: awaiting the target's confirmation: any listener counts, none is adopted
    pending: bool = False

    def port(self) -> int | None:
        found = tcp_port(self.address)
        return None if found is None else found[1]


@dataclass
class PortWatches:
    """Port watches by key; :meth:`poll` returns the keys found dead with a reason."""

    watches: dict[str, PortWatch] = field(default_factory=dict)

    def add(
        self,
        key: str,
        address: Any,
        *,
        probe: bool = True,
        unseen: str = NOPROC,
        pending: bool = False,
    ) -> None:
        """Watch ``address`` under ``key`` (polls skip it while it has no TCP port).

        ``probe`` looks for its listening socket now (else at the first poll);
        ``unseen`` is the reason given when no listener was ever seen there.
        ``pending`` watches an address whose actor has not confirmed it lives:
        no socket is taken as its own until :meth:`confirm`, and a port found
        empty on two polls gives ``"noproc"``.
        """
        watch = PortWatch(address, unseen=NOPROC if pending else unseen, pending=pending)
        self.watches[key] = watch
        if probe and not pending:
            self._probe(watch)

    def confirm(self, key: str, *, unseen: str = "killed") -> None:
        """The actor watched under ``key`` confirmed it lives: take the socket
        listening at its port now as its own; ``unseen`` is the reason if none is."""
        watch = self.watches.get(key)
        if watch is None or not watch.pending:
            return
        watch.pending = False
        watch.unseen = unseen
        watch.misses = 0
        self._probe(watch)

    @staticmethod
    def _probe(watch: PortWatch) -> None:
        port = watch.port()
        if port is not None:
            inodes = listening_inodes({port}).get(port, set())
            if len(inodes) == 1:
                watch.inode = next(iter(inodes))

    def discard(self, key: str) -> None:
        self.watches.pop(key, None)

    def __bool__(self) -> bool:
        return bool(self.watches)

    def poll(self) -> list[tuple[str, str]]:
        """Check every watched port once; ``[(key, reason)]`` of the dead ones
        (seen dead on two polls in a row), which are no longer watched."""
        if not self.watches:
            return []
        ports = {p for w in self.watches.values() if (p := w.port()) is not None}
        if not ports:  # nothing to look for (light actors have no TCP port)
            return []
        live = listening_inodes(ports)
        dead: list[tuple[str, str]] = []
        for key, watch in list(self.watches.items()):
            port = watch.port()
            if port is None:
                continue
            inodes = live.get(port, set())
            watch.checks += 1
            if watch.pending:
                alive = bool(inodes)
            else:
                if watch.inode is None and len(inodes) == 1:
                    watch.inode = next(iter(inodes))
                alive = watch.inode in inodes if watch.inode is not None else False
            watch.misses = 0 if alive else watch.misses + 1
            if watch.misses >= 2:
                del self.watches[key]
                dead.append((key, "killed" if watch.inode is not None else watch.unseen))
        return dead


__all__ = ["DEAD_LETTERS", "DeadLetters", "PortWatches", "ensure_dead_letters"]
