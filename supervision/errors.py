"""Exceptions raised by the supervision API.

Each carries only picklable data so that an actor can send it back to a
caller in another process; ``str()`` names the offending argument.
"""

from __future__ import annotations

from typing import Any


class SupervisionError(Exception):
    """Base class of every error raised by :mod:`supervision`."""


class CallTimeout(SupervisionError, TimeoutError):
    """No reply to a :func:`supervision.call` arrived within its timeout."""

    def __init__(self, request: Any, timeout: float | None) -> None:
        super().__init__(f"no reply to {request!r} within {timeout} s")
        self.request = request
        self.timeout = timeout

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.request, self.timeout))


class NoProc(SupervisionError):
    """The called actor is not alive (it exited before or while handling the call).

    ``reason`` is its exit reason when known (OTP's ``exit({Reason, ...})`` of
    a caller whose server died): ``"noproc"`` when no actor lived at the
    address, ``"killed"`` when its process was killed, a ``Crash``...
    """

    def __init__(self, message: str = "", reason: Any = None) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.reason))


class UnknownRequest(SupervisionError):
    """The actor has no handler for this call; it stays alive."""


class StartError(SupervisionError):
    """A child failed to start; ``reason`` is its exit reason."""

    def __init__(self, child_id: Any, reason: Any) -> None:
        super().__init__(f"child {child_id!r} failed to start: {reason}")
        self.child_id = child_id
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.child_id, self.reason))


class AlreadyStarted(SupervisionError):
    """``start_child``/``restart_child``: OTP's ``{already_started, Pid}``.

    Either a running child already has this id (``name`` is None), or the
    child's ``ChildSpec.name`` is registered to another live actor (``name``
    is that name). ``address`` is the running child or the name's holder.
    """

    def __init__(self, child_id: Any, address: Any = None, name: Any = None) -> None:
        if name is None:
            super().__init__(f"child {child_id!r} is already started")
        else:
            super().__init__(
                f"child {child_id!r}: the name {name!r} is registered to the actor at {address}"
            )
        self.child_id = child_id
        self.address = address
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.child_id, self.address, self.name))


class NameTaken(SupervisionError):
    """``register``: the name is registered to another live actor, at ``address``
    (OTP's ``badarg`` of ``register/2``, ``{already_started, Pid}`` of a start)."""

    def __init__(self, name: Any, address: Any) -> None:
        super().__init__(f"the name {name!r} is registered to the actor at {address}")
        self.name = name
        self.address = address

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.address))


class AlreadyPresent(SupervisionError):
    """``start_child``: a stopped child with this id is still in the supervisor."""


class NotFound(SupervisionError):
    """No child with this id (or address) in the supervisor; ``unregister``:
    no actor is registered under this name."""


class Running(SupervisionError):
    """``restart_child``/``delete_child``: the child is running."""


class Restarting(SupervisionError):
    """``restart_child``/``delete_child``: the child is between restart attempts."""


class MaxChildren(SupervisionError):
    """``DynamicSupervisor.start_child``: ``max_children`` children already run."""


class NotSupported(SupervisionError):
    """The operation does not apply to this kind of supervisor (OTP ``simple_one_for_one``)."""


class InvalidSpec(SupervisionError, ValueError):
    """A child spec or supervisor spec is malformed; the message names the field."""
