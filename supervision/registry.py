"""Local name registration: OTP's ``register/2``, ``whereis/1``, ``unregister/1``.

One :class:`Registry` actor per actor system, created on first use under the
global name :data:`REGISTRY`, maps names to the addresses of live actors.

- A name is any hashable, picklable value that is not ``None`` and not an
  actor address (a string, a tuple...). A name has at most one holder and,
  as in OTP, an actor has at most one name.
- Registering makes the registry monitor the actor (``Monitor`` with
  confirmation, see :mod:`supervision.monitors`): the registration completes
  once the actor confirmed it lives, and fails with ``NoProc`` when it does
  not. The name is freed when the actor exits, whatever the reason: its own
  ``Down``, or the dead-letter handler's ``noproc``, or, on
  multiprocTCPBase, the port watch of a SIGKILLed process.
- A name whose holder is being replaced (a restarted child registering the
  name of its predecessor, whose ``Down`` may still be on its way) is not
  refused on the registry's memory alone: the registry asks the holder
  again (a second confirmed monitor) and refuses the name only when the
  holder answers that it lives.

The holders are supervision actors (``Server``, ``Supervisor``,
``DynamicSupervisor``): a plain Thespian actor does not answer the monitor,
so registering one fails with ``CallTimeout`` after :data:`CONFIRM_TIMEOUT`
seconds, and the name stays free.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from thespian.actors import Actor, ActorAddress, ActorSystem, WakeupMessage

from .errors import CallTimeout, InvalidSpec, NameTaken, NotFound
from .monitors import WATCH_INTERVAL, PortWatches, noproc_error, tcp_port
from .protocol import Call, CallReply, Demonitor, Down, Monitor, Monitored
from .spec import check_name

log = logging.getLogger("supervision.registry")

#: Global name of the name registry of an actor system.
REGISTRY = "supervision.registry"

#: Seconds an actor has to confirm the registry's monitor before its
#: registration fails (``CallTimeout``) and the name is free again.
CONFIRM_TIMEOUT = 5.0


@dataclass(frozen=True)
class Register:
    """Call to the registry: register ``name`` for the actor at ``address``."""

    name: Any
    address: Any


@dataclass(frozen=True)
class Unregister:
    """Call to the registry: remove the registration of ``name``."""

    name: Any


@dataclass(frozen=True)
class WhereIs:
    """Call to the registry: the address registered under ``name``, or None."""

    name: Any


class _Tick:
    """Wake-up payload: poll the port watches of the holders."""


@dataclass(frozen=True)
class _Expire:
    """Wake-up payload: the registration whose monitor is ``ref`` must be confirmed by now."""

    ref: str


@dataclass
class _Entry:
    address: Any
    ref: str
    confirmed: bool = False
    #: the registration awaiting the holder's confirmation: (caller, call ref)
    registrant: tuple[Any, str] | None = None
    #: a second monitor asking a confirmed holder whether it still lives
    probe: str | None = None
    #: registrations of the same name waiting for the holder's answer
    contenders: list[tuple[Any, Call]] = field(default_factory=list)


class Registry(Actor):  # type: ignore[misc]
    """The name table of one actor system; answers ``Call(Register | Unregister
    | WhereIs)`` with ``CallReply`` and never raises."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._names: dict[Hashable, _Entry] = {}
        self._refs: dict[str, Hashable] = {}
        self._ports = PortWatches()
        self._ticking = False

    def lookup(self, name: Any) -> Any:
        """The address holding ``name``, or None (in-process bases read this directly)."""
        try:
            entry = self._names.get(name)
        except TypeError:
            return None
        return entry.address if entry is not None and entry.confirmed else None

    def receiveMessage(self, message: Any, sender: Any) -> None:
        """Thespian's entry point; an error is logged, never raised."""
        try:
            if isinstance(message, Call):
                self._on_call(message, sender)
            elif isinstance(message, Monitored):
                self._on_monitored(message.ref)
            elif isinstance(message, Down):
                self._on_down(message.ref, message.reason)
            elif isinstance(message, WakeupMessage) and isinstance(message.payload, _Expire):
                self._on_expire(message.payload.ref)
            elif isinstance(message, WakeupMessage) and isinstance(message.payload, _Tick):
                self._ticking = False
                for key, reason in self._ports.poll():
                    self._on_down(key, reason)
                self._schedule_tick()
        except Exception:  # pragma: no cover - the registry must outlive any message
            log.exception("registry: failed on %r", message)

    # ------------------------------------------------------------ requests

    def _reply(self, to: Any, ref: str, ok: bool, value: Any) -> None:
        self.send(to, CallReply(ref, ok, value))

    def _on_call(self, call: Call, sender: Any) -> None:
        request = call.request
        if isinstance(request, WhereIs):
            self._reply(sender, call.ref, True, self.lookup(request.name))
        elif isinstance(request, Unregister):
            entry = self._entry(request.name)
            if entry is None or not entry.confirmed:
                self._reply(sender, call.ref, False, NotFound(f"no name {request.name!r}"))
                return
            self.send(entry.address, Demonitor(entry.ref))
            if entry.probe is not None:
                self.send(entry.address, Demonitor(entry.probe))
            self._drop(request.name, entry)
            self._reply(sender, call.ref, True, None)
            for caller, waiting in entry.contenders:  # the name is free for them now
                self._register(waiting, caller)
        elif isinstance(request, Register):
            self._register(call, sender)
        else:
            self._reply(sender, call.ref, False, InvalidSpec(f"registry: {request!r}"))

    def _entry(self, name: Any) -> _Entry | None:
        try:
            return self._names.get(name)
        except TypeError:
            return None

    def _register(self, call: Call, sender: Any) -> None:
        name, address = call.request.name, call.request.address
        try:
            check_name(name)
            if not isinstance(address, ActorAddress):
                raise InvalidSpec(f"address must be an actor address, got {address!r}")
        except InvalidSpec as error:
            self._reply(sender, call.ref, False, error)
            return
        entry = self._names.get(name)
        if entry is None:
            other = next((n for n, e in self._names.items() if e.address == address), None)
            if other is not None:
                taken = InvalidSpec(f"address: the actor at {address} is registered as {other!r}")
                self._reply(sender, call.ref, False, taken)
                return
            ref = uuid.uuid4().hex
            self._names[name] = _Entry(address, ref, registrant=(sender, call.ref))
            self._refs[ref] = name
            if tcp_port(address) is not None:
                self._ports.add(ref, address, pending=True)
                self._schedule_tick()
            self.send(address, Monitor(ref, self.myAddress, confirm=True))
            self.wakeupAfter(timedelta(seconds=CONFIRM_TIMEOUT), _Expire(ref))
            return
        entry.contenders.append((sender, call))
        if entry.confirmed and entry.probe is None:
            entry.probe = uuid.uuid4().hex
            self._refs[entry.probe] = name
            self.send(entry.address, Monitor(entry.probe, self.myAddress, confirm=True))
            self.wakeupAfter(timedelta(seconds=CONFIRM_TIMEOUT), _Expire(entry.probe))

    # ------------------------------------------------------------ holders

    def _on_monitored(self, ref: str) -> None:
        name = self._refs.get(ref)
        entry = None if name is None else self._names.get(name)
        if entry is None:
            return
        if ref == entry.ref:
            entry.confirmed = True
            self._ports.confirm(ref)
            if entry.registrant is not None:
                caller, call_ref = entry.registrant
                entry.registrant = None
                self._reply(caller, call_ref, True, None)
        elif ref == entry.probe:
            self.send(entry.address, Demonitor(ref))
            self._refs.pop(ref, None)
            entry.probe = None
        else:
            return
        contenders, entry.contenders = entry.contenders, []
        for caller, call in contenders:
            self._reply(caller, call.ref, False, NameTaken(name, entry.address))

    def _on_down(self, ref: str, reason: Any) -> None:
        name = self._refs.get(ref)
        entry = None if name is None else self._names.get(name)
        if entry is None or ref not in (entry.ref, entry.probe):
            self._refs.pop(ref, None)
            return
        self._drop(name, entry)
        if entry.registrant is not None:
            caller, call_ref = entry.registrant
            self._reply(caller, call_ref, False, noproc_error(entry.address, reason))
        for caller, call in entry.contenders:
            self._register(call, caller)

    def _on_expire(self, ref: str) -> None:
        """A holder that never confirmed its monitor (not a supervision actor,
        or the Monitor was lost): its registration fails, the name is free.
        A holder that never answered the second monitor keeps its name."""
        name = self._refs.get(ref)
        entry = None if name is None else self._names.get(name)
        if entry is not None and ref == entry.probe:
            self._on_monitored(ref)  # no word either way: the holder keeps the name
            return
        if entry is None or entry.ref != ref or entry.confirmed:
            return
        self.send(entry.address, Demonitor(ref))
        self._drop(name, entry)
        if entry.registrant is not None:
            caller, call_ref = entry.registrant
            self._reply(
                caller, call_ref, False, CallTimeout(Register(name, entry.address), CONFIRM_TIMEOUT)
            )
        for caller, call in entry.contenders:
            self._register(call, caller)

    def _drop(self, name: Any, entry: _Entry) -> None:
        self._names.pop(name, None)
        self._refs.pop(entry.ref, None)
        if entry.probe is not None:
            self._refs.pop(entry.probe, None)
        self._ports.discard(entry.ref)

    def _schedule_tick(self) -> None:
        if self._ports and not self._ticking:
            self._ticking = True
            self.wakeupAfter(timedelta(seconds=WATCH_INTERVAL), _Tick())


# ---------------------------------------------------------------- the registry of a system

_addresses: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _in_process(system: Any) -> bool:
    """True on simpleSystemBase and light, where every actor runs in this process."""
    base = system._systemBase
    return type(base).__module__.endswith("simpleSystemBase") or isinstance(
        getattr(base, "_globals", None), dict
    )


def _local_registry(system: Any) -> Registry | None:
    """The Registry instance when it runs in this process (simpleSystemBase,
    light), else None; never creates it."""
    base: Any = getattr(system, "_systemBase", None)
    globals_ = getattr(base, "_globals", None)  # LightSystem
    if isinstance(globals_, dict):
        ref = globals_.get(REGISTRY)
        instance = getattr(ref, "instance", None)
        return instance if isinstance(instance, Registry) else None
    names = getattr(base, "_globalNames", None)  # simpleSystemBase
    if isinstance(names, dict) and type(base).__module__.endswith("simpleSystemBase"):
        address = names.get(REGISTRY)
        actor_ref = None if address is None else base.actorRegistry.get(address.actorAddressString)
        instance = getattr(actor_ref, "instance", None)
        return instance if isinstance(instance, Registry) else None
    return None


def registry_address(system: ActorSystem) -> Any:
    """The address of ``system``'s Registry, created on first use."""
    base = system._systemBase
    known = _addresses.get(base)
    if known is not None:
        return known
    if _in_process(system):
        address = system.createActor(Registry, globalName=REGISTRY)
    else:
        with system.private() as endpoint:
            address = endpoint.createActor(Registry, globalName=REGISTRY)
    _addresses[base] = address
    return address


def prepare_registry(system: ActorSystem) -> None:
    """Create ``system``'s Registry now on simpleSystemBase, where an actor
    created under a global name by another actor would be that actor's child
    and die with it (a child registering its ``ChildSpec.name`` creates the
    Registry when none exists). Elsewhere it is created on first use: by the
    admin on multiprocTCPBase, top-level on light."""
    if type(system._systemBase).__module__.endswith("simpleSystemBase"):
        registry_address(system)


def _system(system: ActorSystem | None) -> ActorSystem:
    from .calls import current_system

    return system or current_system()


def register(name: Hashable, address: Any, *, system: ActorSystem | None = None) -> None:
    """Register ``name`` for the live actor at ``address`` (OTP's ``register/2``).

    Returns once the registry holds the name: from then on :func:`whereis`
    gives ``address`` and :func:`supervision.call`/:func:`supervision.cast`
    accept ``name`` in its place, until :func:`unregister` or until the actor
    exits, whatever the reason (stop, crash, brutal kill, SIGKILL on
    multiprocTCPBase), when the name is freed.

    Raises :class:`~supervision.InvalidSpec` (a ``ValueError``) naming the
    argument when ``name`` is None, an address, unhashable or not picklable,
    when ``address`` is not an actor address, or when the actor already has
    a name; :class:`~supervision.NameTaken` (with the holder's ``address``)
    when another live actor holds ``name``; :class:`~supervision.NoProc`
    when no actor lives at ``address``; :class:`~supervision.CallTimeout`
    when the actor did not confirm the registry's monitor within
    :data:`CONFIRM_TIMEOUT` seconds (it is not a supervision actor; the name
    stays free). Blocks: not for use inside an actor (use ``ChildSpec(name=...)``).
    """
    from .calls import call

    check_name(name)
    if not isinstance(address, ActorAddress):
        raise InvalidSpec(f"address must be an actor address, got {address!r}")
    asys = _system(system)
    # the registry answers within CONFIRM_TIMEOUT (CallTimeout itself past it)
    call(registry_address(asys), Register(name, address), CONFIRM_TIMEOUT + 5, system=asys)


def unregister(name: Hashable, *, system: ActorSystem | None = None) -> None:
    """Remove the registration of ``name`` (OTP's ``unregister/1``); the actor
    lives on. Raises :class:`~supervision.NotFound` when no actor holds
    ``name``, :class:`~supervision.InvalidSpec` for an invalid name. Blocks."""
    from .calls import call

    check_name(name)
    asys = _system(system)
    call(registry_address(asys), Unregister(name), system=asys)


def whereis(name: Hashable, *, system: ActorSystem | None = None) -> Any:
    """The address of the live actor registered under ``name``, or None
    (OTP's ``whereis/1``). An exited actor's name is freed as soon as the
    registry learns of the exit (at once for an exit the actor observes,
    within a few tenths of a second for a SIGKILL on multiprocTCPBase).

    On simpleSystemBase and light it reads the registry in this process
    without blocking, so it works inside actors too (an ``init`` finds its
    own ``ChildSpec.name``); on multiprocTCPBase it asks the registry (a
    blocking call, for ordinary code only). Raises
    :class:`~supervision.InvalidSpec` for an invalid name.
    """
    from .calls import call

    check_name(name)
    asys = _system(system)
    if _in_process(asys):
        local = _local_registry(asys)
        return None if local is None else local.lookup(name)
    return call(registry_address(asys), WhereIs(name), system=asys)


__all__ = [
    "REGISTRY",
    "Registry",
    "prepare_registry",
    "register",
    "registry_address",
    "unregister",
    "whereis",
]
