"""Blocking calls into actors from ordinary (non-actor) Python code.

``call`` sends a :class:`~supervision.protocol.Call` and waits for the
matching reply; it is thread-safe (each call uses a private endpoint of the
actor system). Inside an actor use ``Server.call_async`` instead: a blocking
wait there would stop the actor from handling the reply.

Which actor system is used: the ``system`` argument, else the one of the
most recently started :class:`~supervision.Application` in this process (or
the one given to :func:`use_system`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Hashable
from typing import Any

from thespian.actors import ActorAddress, ActorSystem, PoisonMessage

from .errors import CallTimeout, NoProc, SupervisionError
from .monitors import WATCH_INTERVAL, PortWatches, ensure_dead_letters, noproc_error
from .protocol import (
    Call,
    CallReply,
    Cast,
    ChildInfo,
    CountChildren,
    DeleteChild,
    GetChildSpec,
    GetState,
    RestartChild,
    StartChild,
    StopRequest,
    TerminateChild,
    WhichChildren,
)
from .spec import ChildSpec

DEFAULT_TIMEOUT = 5.0

_current: ActorSystem | None = None
_lock = threading.RLock()


def use_system(system: ActorSystem | None) -> None:
    """Make ``system`` the default actor system of :func:`call` in this process."""
    global _current
    _current = system


def current_system() -> ActorSystem:
    """The default actor system; raises SupervisionError when none is set."""
    if _current is None:
        raise SupervisionError("no actor system: start an Application or call use_system()")
    return _current


def _is_simple(system: ActorSystem) -> bool:
    return type(system._systemBase).__module__.endswith("simpleSystemBase")


def call(
    address: Any,
    request: Any,
    timeout: float | None = DEFAULT_TIMEOUT,
    *,
    system: ActorSystem | None = None,
) -> Any:
    """Send ``request`` to the actor at ``address`` and return its reply.

    ``address`` may be a name registered with :func:`supervision.register`
    (or ``ChildSpec.name``): the call goes to the actor holding it, and
    raises :class:`~supervision.NoProc` (``reason == "noproc"``) at once when
    no actor holds it (OTP's ``gen_server:call`` to a local name), or when
    ``address`` is None; ``InvalidSpec`` for a value that cannot be a name.

    The caller monitors the actor while it waits (OTP's ``gen_server:call``):

    - :class:`~supervision.NoProc` at once when no actor lives at
      ``address`` (``reason == "noproc"``) or it has exited, and as soon as
      the actor exits before replying: a crash in this or any other
      handler, ``stop`` while the reply is deferred, a SIGKILL (seen within
      a few tenths of a second on multiprocTCPBase); ``NoProc.reason`` is
      the exit reason;
    - :class:`~supervision.CallTimeout` when no reply came within ``timeout``
      seconds (``None``: wait forever) while the actor lives on; a late
      reply is dropped;
    - the error the actor replied with (``UnknownRequest``, ``NotFound``...)
      is raised here.
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    asys = system or current_system()
    ensure_dead_letters(asys)
    if not isinstance(address, ActorAddress):
        holder = None if address is None else _resolve(address, asys)
        if holder is None:
            raise NoProc(f"no actor is registered as {address!r}", reason="noproc")
        address = holder
    ref = uuid.uuid4().hex
    deadline = None if timeout is None else time.monotonic() + timeout
    if _is_simple(asys):
        # simpleSystemBase runs actors in this thread; one caller at a time.
        with _lock:
            me = _simple_address(asys)
            return _exchange(asys, address, Call(ref, request, me), deadline, timeout, True)
    with asys.private() as endpoint:
        me = getattr(getattr(endpoint._systemBase, "transport", None), "myAddress", None)
        if me is None:  # a light endpoint has an address of its own
            me = getattr(endpoint, "address", None)
        return _exchange(endpoint, address, Call(ref, request, me), deadline, timeout, False)


def _resolve(name: Any, system: ActorSystem) -> Any:
    """The address registered under ``name`` (None when nobody holds it)."""
    from .registry import whereis

    return whereis(name, system=system)


def _simple_address(system: ActorSystem) -> Any:
    """The address replies to this process's external requests go to (simpleSystemBase)."""
    try:
        return system._systemBase.actorRegistry["System:ExternalRequester"].address
    except (AttributeError, KeyError):  # pragma: no cover - other Thespian versions
        return None


def _exchange(
    endpoint: ActorSystem,
    address: Any,
    message: Call,
    deadline: float | None,
    timeout: Any,
    simple: bool,
) -> Any:
    endpoint.tell(address, message)
    watch = PortWatches()
    if not simple:
        # the call was delivered (a dead address gives NoProc("noproc") through
        # the dead-letter handler), so a listener gone later means a kill
        watch.add(message.ref, address, probe=False, unseen="killed")
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        # simpleSystemBase: tell() ran every actor to completion, so a reply may
        # already wait; listen(0) takes it without sleeping for pending timers.
        reply = endpoint.listen(0) if simple else None
        if reply is None:
            if remaining is not None and remaining <= 0:
                raise CallTimeout(message.request, timeout)
            if simple:
                reply = endpoint.listen(remaining if remaining is not None else 3600)
            else:
                # listen in slices and look at the callee's listening socket in
                # between: a SIGKILLed actor never answers (monitors.py)
                piece = WATCH_INTERVAL if remaining is None else min(WATCH_INTERVAL, remaining)
                reply = endpoint.listen(piece)
                if reply is None:
                    for _key, reason in watch.poll():
                        raise noproc_error(address, reason)
        if reply is None:
            if simple:  # nothing more can happen before the deadline
                raise CallTimeout(message.request, timeout)
            continue
        if isinstance(reply, CallReply) and reply.ref == message.ref:
            if reply.ok:
                return reply.value
            raise reply.value
        if isinstance(reply, PoisonMessage):
            poisoned = reply.poisonMessage
            if isinstance(poisoned, Call) and poisoned.ref == message.ref:
                raise NoProc(f"actor at {address} did not take the call: {reply.details}")
        # anything else is a stale reply to an earlier, timed-out call: drop it


def cast(address: Any, request: Any, *, system: ActorSystem | None = None) -> None:
    """Send ``request`` to ``handle_cast`` of the server at ``address``; no reply.

    ``address`` may be a registered name. Never fails, even when nothing
    lives at ``address`` or holds the name, or ``address`` is None (the cast
    is dropped); a value that cannot be a name raises ``InvalidSpec``.
    """
    asys = system or current_system()
    if not isinstance(address, ActorAddress):
        address = None if address is None else _resolve(address, asys)
        if address is None:
            return
    if _is_simple(asys):
        with _lock:
            asys.tell(address, Cast(request))
        return
    with asys.private() as endpoint:
        endpoint.tell(address, Cast(request))


def stop(
    address: Any,
    reason: Any = "normal",
    timeout: float | None = None,
    *,
    system: ActorSystem | None = None,
) -> None:
    """Stop the Server at ``address`` with ``reason`` and wait until it has
    exited, ``terminate`` included (OTP's ``gen_server:stop/3``).

    Returns once it exited with ``reason``. Raises ``NoProc`` when nothing
    lives at ``address`` (``reason == "noproc"``) or it exited with another
    reason (a crash in ``terminate``, a kill...: ``NoProc.reason``),
    ``CallTimeout`` when it has not exited within ``timeout`` seconds
    (``None``: wait forever; it may still be stopping), ``UnknownRequest``
    when the actor is not a Server (a supervisor: use ``terminate_child``).
    A supervised server is then handled by its supervisor like any exit
    (a ``permanent`` one is restarted).
    """
    try:
        call(address, StopRequest(reason), timeout, system=system)
    except NoProc as exited:
        if exited.reason == reason and reason != "noproc":
            return
        raise
    raise SupervisionError(f"actor at {address} answered a stop request")  # pragma: no cover


def get_state(
    address: Any, timeout: float | None = DEFAULT_TIMEOUT, *, system: ActorSystem | None = None
) -> Any:
    """The state of the Server at ``address``, as its ``get_state()`` returns it
    (OTP's ``sys:get_state``); the errors of :func:`call`."""
    return call(address, GetState(), timeout, system=system)


# ---------------------------------------------------------------- supervisor API
#
# As OTP's ``supervisor`` (``gen_server:call(Sup, Req, infinity)``) and Elixir's
# Supervisor / DynamicSupervisor, these wait for the answer with no timeout by
# default: a supervisor answers every request once the operation before it has
# finished (a child's ``init`` can take its whole ``start_timeout``, a
# ``terminate_child`` its ``shutdown``), and a timeout in the caller would
# report a failure for an operation the supervisor then carries out anyway.
# Give ``timeout`` (seconds) to bound the wait; ``CallTimeout`` is raised then.
# Each raises ``NoProc`` when the supervisor is dead (see :func:`call`).


def start_child(
    supervisor: Any, spec: ChildSpec, timeout: float | None = None, **kw: Any
) -> Any:
    """Start a child; returns its address (None when its ``init`` returned IGNORE).

    Errors: ``AlreadyStarted``, ``AlreadyPresent`` (Supervisor), ``MaxChildren``
    (DynamicSupervisor), ``StartError`` with the child's reason, ``InvalidSpec``.
    Waits for the child's ``init`` with no timeout unless ``timeout`` is given
    (``CallTimeout``; the supervisor still completes the start).
    """
    return call(supervisor, StartChild(spec), timeout, **kw)


def terminate_child(
    supervisor: Any, child: Any, timeout: float | None = None, **kw: Any
) -> None:
    """Stop a child (by id, or by address for a DynamicSupervisor) per its shutdown.

    A Supervisor keeps the spec (a ``temporary`` one is dropped); a
    DynamicSupervisor forgets the child. Errors: ``NotFound``; ``NotSupported``
    for a DynamicSupervisor given anything but an address. Waits for the
    child's shutdown with no timeout unless ``timeout`` is given (``CallTimeout``).
    """
    call(supervisor, TerminateChild(child), timeout, **kw)


def restart_child(
    supervisor: Any, child_id: Hashable, timeout: float | None = None, **kw: Any
) -> Any:
    """Start again a stopped child still held by a Supervisor; returns its address.

    Errors: ``NotFound``, ``Running``, ``Restarting``, ``StartError``, ``NotSupported``.
    No timeout unless ``timeout`` is given (``CallTimeout``).
    """
    return call(supervisor, RestartChild(child_id), timeout, **kw)


def delete_child(
    supervisor: Any, child_id: Hashable, timeout: float | None = None, **kw: Any
) -> None:
    """Drop the spec of a stopped child. Errors: ``NotFound``, ``Running``,
    ``Restarting``, ``NotSupported``. No timeout unless ``timeout`` is given."""
    call(supervisor, DeleteChild(child_id), timeout, **kw)


def which_children(
    supervisor: Any, timeout: float | None = None, **kw: Any
) -> list[ChildInfo]:
    """The children as ``ChildInfo(id, address, type, modules)``: for a
    Supervisor newest first (reverse start order, as OTP), for a
    DynamicSupervisor in start order (OTP leaves that order unspecified).
    No timeout unless ``timeout`` is given (``CallTimeout``)."""
    result: list[ChildInfo] = call(supervisor, WhichChildren(), timeout, **kw)
    return result


def count_children(
    supervisor: Any, timeout: float | None = None, **kw: Any
) -> dict[str, int]:
    """Counts: ``specs``, ``active`` (running), ``supervisors``, ``workers``.
    No timeout unless ``timeout`` is given (``CallTimeout``)."""
    result: dict[str, int] = call(supervisor, CountChildren(), timeout, **kw)
    return result


def get_childspec(
    supervisor: Any, child_id: Hashable, timeout: float | None = None, **kw: Any
) -> ChildSpec:
    """The ChildSpec of a Supervisor's child. Error: ``NotFound``. No timeout
    unless ``timeout`` is given (``CallTimeout``)."""
    result: ChildSpec = call(supervisor, GetChildSpec(child_id), timeout, **kw)
    return result
