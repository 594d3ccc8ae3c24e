"""Roger's KeySet: a set of string keys held by an actor.

Roger (Elixir) describes ``Roger.KeySet`` as "an opaque interface to storing
keys and testing set membership of keys". This port keeps its API with a
handle object instead of a pid::

    ks = KeySet.start()                  # a KeySetServer actor; see "Where it runs"
    ks.add("a"); ks.add_many(["b", "c"])
    ks.contains("a")                     # True
    ks.remove("a")
    state = ks.get_state()               # opaque bytes
    ks2 = KeySet.start(state)            # a new actor with the same keys
    ks.put_state(state)                  # replace the keys of ks
    ks.union(ks2); ks.difference(ks2)    # applied to ks; ks2 is left untouched
    ks.stop()

Contracts:

- Keys are ``str`` (any string, ``""`` included). A bad argument is refused
  in the caller, before anything is sent, with a ``TypeError`` naming it.
- The state is a versioned CBOR document (:data:`STATE_VERSION`); it is
  opaque to users and never pickled. A state that is not valid CBOR, has
  another version or another shape is answered with
  :class:`KeySetStateError` by the actor, which lives on. ``start`` checks
  the state in the caller first, so a bad state never reaches an ``init``.
- A malformed request sent straight to the actor (bypassing the handle) is
  answered with :class:`KeySetRequestError` (or
  :class:`~supervision.UnknownRequest` for a request the actor does not
  know); the actor lives on.
- ``union``/``difference``: the actor asks the other actor for its state
  with a non-blocking call (``Server.call_async``) and applies the operation
  when the answer arrives, so the other actor is only read. Its errors reach
  the caller; when it is gone the caller gets ``CallTimeout`` after half
  the call's timeout (both bases drop messages to a reaped actor), or
  :class:`~supervision.NoProc` when it is seen exiting. ``ks.union(ks)``
  works (no change), ``ks.difference(ks)`` empties ``ks``.
- Every handle method is a blocking :func:`supervision.call` (thread-safe);
  it raises :class:`~supervision.NoProc` or ``CallTimeout`` once the actor
  is stopped. From inside an actor, do not use the handle: send the request
  dataclasses below with ``Server.call_async``.

Where it runs. ``KeySet.start`` starts the actor with
:func:`supervision.start_child`, as a ``temporary`` child (a KeySet's keys
live only in memory, so a restarted one would silently be empty; a crashed
one stays dead and its callers get ``NoProc``):

- under ``supervisor`` when given (any Supervisor or DynamicSupervisor
  address, e.g. a node's own);
- otherwise under this module's :class:`KeySetSupervisor`, a
  DynamicSupervisor started lazily, once per actor system, as the root of a
  small :class:`~supervision.Application` that reuses that actor system
  (``system``, else :func:`supervision.current_system`: the actor system of
  the most recently started Application). It lives as long as that actor
  system; it is not part of the caller's own supervision tree.

To put a KeySet in a supervision tree of your own, use
:meth:`KeySet.child_spec` and wrap the child's address with ``KeySet(address)``.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import cbor2
from thespian.actors import ActorAddress, PoisonMessage

from supervision import (
    NOREPLY,
    Application,
    CallTimeout,
    ChildSpec,
    DynamicSupervisor,
    DynamicSupervisorSpec,
    From,
    NoProc,
    Server,
    SupervisionError,
    TimerRef,
    call,
    current_system,
    start_child,
    use_system,
)
from supervision.calls import DEFAULT_TIMEOUT
from supervision.protocol import CallReply

from . import cbor_strict
from .errors import RogerError

__all__ = [
    "STATE_VERSION",
    "Add",
    "AddMany",
    "Contains",
    "Difference",
    "GetState",
    "KeySet",
    "KeySetRequestError",
    "KeySetServer",
    "KeySetStateError",
    "KeySetSupervisor",
    "PutState",
    "Remove",
    "Stop",
    "Union",
    "decode_state",
    "default_supervisor",
    "encode_state",
]

log = logging.getLogger("roger_actors.key_set")

#: Version written in every state; a state of another version is refused.
STATE_VERSION = 1

#: Deepest nesting of a valid state: a map holding an array of strings.
_MAX_STATE_DEPTH = 3


class KeySetStateError(RogerError, ValueError):
    """A KeySet state is not one this version reads: not CBOR, another
    version, or another shape. The message says which."""


class KeySetRequestError(RogerError, TypeError):
    """The KeySet actor got a malformed request (a field of the wrong type);
    the message names the field. The handle never sends one."""


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class Add:
    """Call: add ``key``; replies None."""

    key: str


@dataclass(frozen=True)
class AddMany:
    """Call: add every key of ``keys``; replies None."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class Remove:
    """Call: remove ``key`` (no error when absent); replies None."""

    key: str


@dataclass(frozen=True)
class Contains:
    """Call: replies True when ``key`` is in the set."""

    key: str


@dataclass(frozen=True)
class GetState:
    """Call: replies the state (bytes, see :data:`STATE_VERSION`)."""


@dataclass(frozen=True)
class PutState:
    """Call: replace the keys with those of ``state``; replies None."""

    state: bytes


@dataclass(frozen=True)
class Union:
    """Call: add the keys of the KeySet actor at ``other``; replies None.

    ``timeout``: seconds to wait for the other actor's state.
    """

    other: Any
    timeout: float = DEFAULT_TIMEOUT / 2


@dataclass(frozen=True)
class Difference:
    """Call: remove the keys of the KeySet actor at ``other``; replies None.

    ``timeout``: seconds to wait for the other actor's state.
    """

    other: Any
    timeout: float = DEFAULT_TIMEOUT / 2


@dataclass(frozen=True)
class Stop:
    """Call: reply None, then stop with reason ``normal``."""


@dataclass(frozen=True)
class _OtherTimeout:
    """Timer: the other actor of a union/difference did not answer."""

    ref: str


# ---------------------------------------------------------------- state encoding


def encode_state(keys: Iterable[str]) -> bytes:
    """Return the state of a KeySet holding ``keys``: the CBOR map
    ``{"v": STATE_VERSION, "keys": [sorted keys]}`` (deterministic)."""
    return cbor2.dumps({"v": STATE_VERSION, "keys": sorted(keys)})


def decode_state(state: bytes) -> set[str]:
    """Return the keys of a state made by :func:`encode_state`.

    Raises :class:`KeySetStateError` for anything else: not bytes, not one
    CBOR item, CBOR tags, another version, another shape, a non-string key.
    """
    if not isinstance(state, bytes):
        raise KeySetStateError(f"state must be bytes, got {type(state).__name__}")
    try:
        document = cbor_strict.loads(state, max_depth=_MAX_STATE_DEPTH)
    except cbor_strict.CborError as exc:
        if "trailing bytes" in str(exc):
            raise KeySetStateError(f"key set state has {exc}") from None
        raise KeySetStateError(f"key set state is not valid CBOR: {exc}") from None
    if not isinstance(document, dict) or "v" not in document:
        raise KeySetStateError("key set state is not a versioned map")
    version = document["v"]
    if version != STATE_VERSION or type(version) is not int:
        raise KeySetStateError(
            f"key set state has version {version!r}; this version reads {STATE_VERSION}"
        )
    if set(document) != {"v", "keys"}:
        raise KeySetStateError(
            f"key set state must hold exactly 'v' and 'keys', got {sorted(map(str, document))}"
        )
    keys = document["keys"]
    if not isinstance(keys, list):
        raise KeySetStateError(f"key set state: 'keys' must be an array, got {type(keys).__name__}")
    for index, key in enumerate(keys):
        if not isinstance(key, str):
            raise KeySetStateError(
                f"key set state: keys[{index}] must be a string, got {type(key).__name__}"
            )
    return set(keys)


# ---------------------------------------------------------------- the actor


@dataclass
class _Pending:
    from_: From
    op: Literal["union", "difference"]
    other: Any
    timeout: float
    timer: TimerRef


class KeySetServer(Server):
    """The actor of a KeySet: a ``set[str]`` answering the request dataclasses
    of this module (see the module documentation for the contracts).

    Start arguments: ``init(state=None)``, ``state`` as made by ``get_state``.
    A bad request or state is answered with an error; the actor lives on.
    """

    reply_errors = (KeySetRequestError, KeySetStateError)

    def init(self, state: bytes | None = None) -> None:
        """Start empty, or with the keys of ``state`` (raises KeySetStateError)."""
        self.keys: set[str] = set() if state is None else decode_state(state)
        self.pending: dict[str, _Pending] = {}

    def handle_call(self, request: Any, from_: From) -> Any:
        """Answer one request; see the request classes for the replies."""
        if isinstance(request, Contains):
            return _valid_key(request.key, "Contains.key") in self.keys
        if isinstance(request, Add):
            self.keys.add(_valid_key(request.key, "Add.key"))
            return None
        if isinstance(request, AddMany):
            self.keys.update(_valid_keys(request.keys))
            return None
        if isinstance(request, Remove):
            self.keys.discard(_valid_key(request.key, "Remove.key"))
            return None
        if isinstance(request, GetState):
            return encode_state(self.keys)
        if isinstance(request, PutState):
            self.keys = decode_state(request.state)
            return None
        if isinstance(request, (Union, Difference)):
            return self._ask_other(request, from_)
        if isinstance(request, Stop):
            self.stop()
            return None
        return super().handle_call(request, from_)

    def _ask_other(self, request: Union | Difference, from_: From) -> Any:
        name = type(request).__name__
        if not isinstance(request.other, ActorAddress):
            raise KeySetRequestError(
                f"{name}.other must be an actor address, got {type(request.other).__name__}"
            )
        timeout = request.timeout
        if (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not 0 < timeout < float("inf")
        ):
            raise KeySetRequestError(f"{name}.timeout must be a number > 0, got {timeout!r}")
        try:
            ref = self.call_async(request.other, GetState())
        except Exception as exc:  # an address forged by the sender: refuse, do not crash
            raise KeySetRequestError(
                f"{name}.other: cannot send to {request.other}: {exc}"
            ) from None
        op: Literal["union", "difference"] = "union" if isinstance(request, Union) else "difference"
        timer = self.send_after(timeout, _OtherTimeout(ref))
        self.pending[ref] = _Pending(from_, op, request.other, timeout, timer)
        return NOREPLY

    def handle_info(self, message: Any) -> None:
        """Complete a union/difference: the other actor's state, its error,
        its death (a PoisonMessage for our call) or the timeout."""
        if isinstance(message, CallReply):
            pending = self.pending.pop(message.ref, None)
            if pending is None:
                log.debug("KeySetServer: late or unknown reply %r dropped", message.ref)
                return
            self.cancel_timer(pending.timer)
            if not message.ok:
                self.reply_error(pending.from_, _as_exception(message.value))
                return
            try:
                keys = decode_state(message.value)
            except KeySetStateError as exc:
                self.reply_error(
                    pending.from_,
                    KeySetStateError(f"the {pending.op} operand {pending.other} answered: {exc}"),
                )
                return
            if pending.op == "union":
                self.keys |= keys
            else:
                self.keys -= keys
            self.reply(pending.from_, None)
        elif isinstance(message, _OtherTimeout):
            pending = self.pending.pop(message.ref, None)
            if pending is not None:
                self.reply_error(pending.from_, CallTimeout(GetState(), pending.timeout))
        elif isinstance(message, PoisonMessage) and _poisoned_ref(message) is not None:
            pending = self.pending.pop(_poisoned_ref(message) or "", None)
            if pending is not None:
                self.cancel_timer(pending.timer)
                self.reply_error(
                    pending.from_,
                    NoProc(f"the {pending.op} operand {pending.other} is not alive"),
                )
        else:
            super().handle_info(message)


class KeySetSupervisor(DynamicSupervisor):
    """The DynamicSupervisor under which ``KeySet.start`` puts key sets by default."""

    def init(self, *args: Any, **kwargs: Any) -> DynamicSupervisorSpec:
        """No bound on children; the default restart intensity (children are temporary)."""
        return DynamicSupervisorSpec()


def _poisoned_ref(message: Any) -> str | None:
    poisoned = getattr(message, "poisonMessage", None)
    ref = getattr(poisoned, "ref", None)
    return ref if isinstance(ref, str) else None


def _as_exception(value: Any) -> Exception:
    if isinstance(value, Exception):
        return value
    return NoProc(f"the other key set answered an error: {value!r}")


def _valid_key(key: Any, name: str) -> str:
    if not isinstance(key, str):
        raise KeySetRequestError(f"{name} must be a str, got {type(key).__name__}")
    return key


def _valid_keys(keys: Any) -> tuple[str, ...]:
    if not isinstance(keys, tuple):
        raise KeySetRequestError(f"AddMany.keys must be a tuple, got {type(keys).__name__}")
    for index, key in enumerate(keys):
        _valid_key(key, f"AddMany.keys[{index}]")
    return keys


# ---------------------------------------------------------------- default supervisor

_supervisors: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_supervisors_lock = threading.Lock()


def _default_supervisor(system: Any, timeout: float | None) -> Any:
    """The address of the KeySetSupervisor of ``system``, started on first use."""
    with _supervisors_lock:
        address = _supervisors.get(system)
        if address is None:
            app = Application(
                ChildSpec("roger_key_sets", KeySetSupervisor),
                system=system,
                start_timeout=timeout,
            )
            # Application.start makes its system the default one of call():
            # keep the caller's default as it was.
            try:
                previous = current_system()
            except SupervisionError:
                previous = None
            try:
                address = app.start()
            finally:
                use_system(previous)
            _supervisors[system] = address
        return address


def default_supervisor(system: Any = None, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """The address of the :class:`KeySetSupervisor` of ``system`` (default:
    the current actor system), started on first use; where ``KeySet.start``
    puts key sets when it is given no supervisor."""
    asys = system if system is not None else current_system()
    return _default_supervisor(asys, _check_timeout(timeout))


def _forget_default_supervisor(system: Any, address: Any) -> None:
    with _supervisors_lock:
        if _supervisors.get(system) == address:
            del _supervisors[system]


# ---------------------------------------------------------------- the handle


def _check_key(key: Any, name: str = "key") -> str:
    if not isinstance(key, str):
        raise TypeError(f"{name} must be a str, got {type(key).__name__}: {key!r}")
    return key


def _check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise ValueError(f"timeout must be a number > 0 or None, got {timeout!r}")
    return float(timeout)


def _check_state(state: Any) -> bytes:
    if isinstance(state, (bytearray, memoryview)):
        return bytes(state)
    if not isinstance(state, bytes):
        raise TypeError(f"state must be bytes, got {type(state).__name__}")
    return state


class KeySet:
    """A handle on a KeySet actor (``roger.KeySet``): its address and actor system.

    Create one with :meth:`start`, or wrap the address of a running
    :class:`KeySetServer` with ``KeySet(address)``. ``system``: the actor
    system to call through (default: :func:`supervision.current_system` at
    each call). Handles compare and hash by address and pickle without
    their actor system. (Addresses are unique within one actor system
    only: two simpleSystemBase systems reuse the same names.)
    """

    def __init__(self, address: Any, *, system: Any = None) -> None:
        if not isinstance(address, ActorAddress):
            raise TypeError(f"address must be an actor address, got {address!r}")
        self._address = address
        self._system = system

    # ------------------------------------------------------------ starting

    @classmethod
    def start(
        cls,
        state: bytes | None = None,
        *,
        supervisor: Any = None,
        system: Any = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> KeySet:
        """Start a KeySet actor, empty or with the keys of ``state`` (from
        :meth:`get_state`), and return its handle.

        The actor is a ``temporary`` child of ``supervisor`` when given, else
        of the :class:`KeySetSupervisor` of ``system`` (default: the current
        actor system), started on first use. Raises ``TypeError`` for a
        ``state`` that is not bytes, :class:`KeySetStateError` for one that
        is not a valid state (both before starting anything),
        ``SupervisionError`` (no actor system) and the errors of
        :func:`supervision.start_child`.
        """
        if state is not None:
            state = _check_state(state)
            decode_state(state)
        timeout = _check_timeout(timeout)
        asys = system if system is not None else current_system()
        spec = cls.child_spec(f"key_set-{uuid.uuid4().hex}", state)
        if supervisor is not None:
            address = start_child(supervisor, spec, timeout, system=asys)
            return cls(address, system=system)
        parent = _default_supervisor(asys, timeout)
        try:
            address = start_child(parent, spec, timeout, system=asys)
        except NoProc:
            # The KeySetSupervisor is gone (killed): start a fresh one, once.
            _forget_default_supervisor(asys, parent)
            parent = _default_supervisor(asys, timeout)
            address = start_child(parent, spec, timeout, system=asys)
        return cls(address, system=system)

    @staticmethod
    def child_spec(child_id: Any = "key_set", state: bytes | None = None) -> ChildSpec:
        """A ``temporary`` worker ChildSpec of a :class:`KeySetServer`
        starting with ``state`` (Elixir's ``child_spec``)."""
        if state is not None:
            state = _check_state(state)
        args = () if state is None else (state,)
        return ChildSpec(child_id, (KeySetServer, args), restart="temporary")

    # ------------------------------------------------------------ identity

    @property
    def address(self) -> Any:
        """The actor address of the KeySetServer."""
        return self._address

    def __eq__(self, other: object) -> bool:
        """True for a KeySet handle on the same actor address."""
        return isinstance(other, KeySet) and other._address == self._address

    def __hash__(self) -> int:
        """A hash consistent with ``==`` (by address)."""
        # Thespian's ActorAddress compares by value but is not hashable.
        return hash(str(self._address))

    def __repr__(self) -> str:
        """``KeySet(<actor address>)``."""
        return f"KeySet({self._address})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle the address only (an ActorSystem does not pickle)."""
        return (KeySet, (self._address,))

    # ------------------------------------------------------------ operations

    def _call(self, request: Any, timeout: float | None) -> Any:
        return call(self._address, request, _check_timeout(timeout), system=self._system)

    def add(self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Add ``key`` (a str; TypeError otherwise). Adding a present key is a no-op."""
        self._call(Add(_check_key(key)), timeout)

    def add_many(self, keys: Iterable[str], *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Add every key of ``keys``, an iterable of str but not a str itself
        (TypeError naming the bad element otherwise; nothing is added then)."""
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise TypeError(f"keys must be an iterable of str (not a string), got {keys!r}")
        checked = tuple(_check_key(key, f"keys[{i}]") for i, key in enumerate(keys))
        self._call(AddMany(checked), timeout)

    def contains(self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> bool:
        """True when ``key`` (a str; TypeError otherwise) is in the set."""
        return bool(self._call(Contains(_check_key(key)), timeout))

    def remove(self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Remove ``key`` (a str; TypeError otherwise); no error when it is absent."""
        self._call(Remove(_check_key(key)), timeout)

    def get_state(self, *, timeout: float | None = DEFAULT_TIMEOUT) -> bytes:
        """The keys as opaque bytes, for :meth:`put_state` or :meth:`start`."""
        state = self._call(GetState(), timeout)
        if not isinstance(state, bytes):
            raise KeySetStateError(f"the actor answered {type(state).__name__}, not bytes")
        return state

    def put_state(self, state: bytes, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Replace the keys with those of ``state`` (from :meth:`get_state`).

        TypeError when ``state`` is not bytes; :class:`KeySetStateError`,
        from the actor, when it is not a valid state (the keys are then unchanged).
        """
        self._call(PutState(_check_state(state)), timeout)

    def union(self, other: KeySet, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Add the keys of ``other`` to this set; ``other`` is left untouched.

        Raises the error of the other actor and ``CallTimeout`` when it did
        not answer within half of ``timeout`` (5 s for an infinite one): a
        stopped actor never answers. The operation is applied when the other
        actor's state arrives; calls from other clients handled meanwhile
        are not lost.
        """
        self._set_op(Union, other, timeout)

    def difference(self, other: KeySet, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Remove the keys of ``other`` from this set; ``other`` is left untouched.

        Errors as for :meth:`union`.
        """
        self._set_op(Difference, other, timeout)

    def _set_op(
        self, op: type[Union] | type[Difference], other: Any, timeout: float | None
    ) -> None:
        if not isinstance(other, KeySet):
            raise TypeError(f"other must be a KeySet, got {type(other).__name__}: {other!r}")
        timeout = _check_timeout(timeout)
        inner = timeout / 2 if timeout is not None and math.isfinite(timeout) else DEFAULT_TIMEOUT
        self._call(op(other.address, inner), timeout)

    def stop(self, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Stop the actor (reason ``normal``; its supervisor forgets it).

        Raises :class:`~supervision.NoProc` or ``CallTimeout`` when it is not running.
        """
        self._call(Stop(), timeout)
