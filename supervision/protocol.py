"""Messages of the supervision protocol.

These are what supervisors, servers and callers exchange; they are public so
that an actor can speak the protocol without the blocking helpers (for
example a :class:`~supervision.Server` sending ``Call(ref, StartChild(spec))``
to a supervisor and receiving the ``CallReply`` in ``handle_info``).
All are plain picklable dataclasses.
"""

from __future__ import annotations

import builtins
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .spec import ChildSpec

# ---------------------------------------------------------------- lifecycle


@dataclass(frozen=True)
class InitChild:
    """Parent -> new child: run ``init(*args, **kwargs)`` and report back.

    With a ``name`` the child first registers it (:mod:`supervision.registry`);
    when that fails its start fails with ``("already_started", holder)``.
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    parent_pid: int
    name: Any = None


@dataclass(frozen=True)
class ChildStarted:
    """Child -> parent: ``init`` succeeded; ``pid`` is the child's OS process id."""

    pid: int


@dataclass(frozen=True)
class ChildIgnored:
    """Child -> parent: ``init`` returned ``IGNORE``; the child is to be reaped."""


@dataclass(frozen=True)
class ChildStartFailed:
    """Child -> parent: ``init`` failed with ``reason``; the child is to be reaped."""

    reason: Any


@dataclass(frozen=True)
class ShutdownRequest:
    """Parent -> child: stop (run ``terminate``), then report ``ExitNotice``."""

    reason: Any = "shutdown"


@dataclass(frozen=True)
class ExitNotice:
    """Child -> parent: the child's last word, its exit reason.

    After sending it the child handles nothing but its reaping (the parent's
    ``ActorExitRequest``).
    """

    reason: Any


@dataclass(frozen=True)
class Kill:
    """Parent -> child on a single-process base, before ``ActorExitRequest``:
    exit without running ``terminate`` (the closest to SIGKILL there)."""


@dataclass(frozen=True)
class Exited:
    """Delivered to a Server's ``handle_info`` when an actor it created itself
    (not through a supervisor) exits: its address and exit reason."""

    address: Any
    reason: Any


# ---------------------------------------------------------------- monitors and links


@dataclass(frozen=True)
class Down:
    """Delivered to ``handle_info`` of a monitoring Server (OTP's
    ``{'DOWN', Ref, process, Pid, Reason}``): the actor at ``address``,
    monitored with ``ref``, exited with ``reason`` (``"noproc"`` when no
    actor lived at that address, ``"killed"`` when it was SIGKILLed)."""

    ref: str
    address: Any
    reason: Any


@dataclass(frozen=True)
class Monitor:
    """Watcher -> target: send ``Down(ref, target, reason)`` to ``watcher`` on exit.

    With ``confirm`` a live target also answers ``Monitored(ref)`` at once: the
    watcher then knows the monitor is in place, so that a listening socket it
    sees at the target's port belongs to the actor it monitors (see
    :mod:`supervision.monitors`).
    """

    ref: str
    watcher: Any
    confirm: bool = False


@dataclass(frozen=True)
class Monitored:
    """Target -> watcher: the monitor ``ref`` is in place (the target lives)."""

    ref: str


@dataclass(frozen=True)
class Demonitor:
    """Watcher -> target: forget the monitor ``ref``."""

    ref: str


@dataclass(frozen=True)
class Link:
    """Linker -> target: link the two; ``linker`` gets an ``ExitSignal`` on exit.

    With a ``ref`` a live target also answers ``Linked(ref)`` at once, as it
    answers ``Monitored`` for a confirmed monitor: the linker's port watch
    then takes the socket at the target's port as the target's own.
    """

    linker: Any
    ref: str = ""


@dataclass(frozen=True)
class Linked:
    """Target -> linker: the link whose ``Link`` carried ``ref`` is in place."""

    ref: str


@dataclass(frozen=True)
class Unlink:
    """Either side -> the other: remove the link with ``address``."""

    address: Any


@dataclass(frozen=True)
class ExitSignal:
    """A linked actor at ``address`` exited with ``reason`` (OTP's exit signal)."""

    address: Any
    reason: Any


# ---------------------------------------------------------------- calls


@dataclass(frozen=True)
class Call:
    """A request that expects exactly one ``CallReply`` with the same ``ref``.

    ``monitor``, when given, is the caller's address: the callee then
    answers ``CallReply(ref, False, NoProc(reason))`` there if it exits
    before replying, and a call to an address where no actor lives is
    answered the same way (reason ``"noproc"``) by the dead-letter handler.
    """

    ref: str
    request: Any
    monitor: Any = None


@dataclass(frozen=True)
class CallReply:
    """The answer to a ``Call``: ``ok`` with ``value``, or ``value`` is an exception."""

    ref: str
    ok: bool
    value: Any


@dataclass(frozen=True)
class Cast:
    """A request that expects no reply."""

    request: Any


@dataclass(frozen=True)
class StopRequest:
    """Call request of :func:`supervision.stop`: the Server stops with ``reason``;
    it sends no reply, the caller's monitor reports the exit."""

    reason: Any = "normal"


@dataclass(frozen=True)
class GetState:
    """Call request of :func:`supervision.get_state`: reply ``Server.get_state()``."""


class From(NamedTuple):
    """Who is waiting for the reply to a call (give it to ``Server.reply``)."""

    address: Any
    ref: str


# ---------------------------------------------------------------- supervisor requests


@dataclass(frozen=True)
class StartChild:
    """Start a child from ``spec``; replies its address (None if it returned IGNORE)."""

    spec: ChildSpec


@dataclass(frozen=True)
class TerminateChild:
    """Stop a child by id (Supervisor) or address (DynamicSupervisor)."""

    child: Any


@dataclass(frozen=True)
class RestartChild:
    """Start again a stopped child that is still in the supervisor."""

    child_id: Hashable


@dataclass(frozen=True)
class DeleteChild:
    """Remove a stopped child's spec from the supervisor."""

    child_id: Hashable


@dataclass(frozen=True)
class WhichChildren:
    """List the children: ``[ChildInfo, ...]``; a Supervisor's newest first (as OTP)."""


@dataclass(frozen=True)
class CountChildren:
    """Count the children: ``{"specs", "active", "supervisors", "workers"}``."""


@dataclass(frozen=True)
class GetChildSpec:
    """The ``ChildSpec`` of a child by id."""

    child_id: Hashable


class ChildInfo(NamedTuple):
    """One row of ``which_children`` (OTP's ``{Id, Child, Type, Modules}``).

    ``address`` is the child's actor address, ``None`` when it is not running,
    or the string ``"restarting"`` between failed restart attempts.
    """

    id: Hashable
    address: Any
    type: str
    modules: tuple[builtins.type, ...]
