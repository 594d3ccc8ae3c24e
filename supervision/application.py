"""``Application``: run a supervision tree from ordinary Python code.

::

    app = Application(ChildSpec("root", (Supervisor, (SupervisorSpec(children),))),
                      base="multiprocTCPBase", admin_port=1950)
    app.start()          # the root supervisor and all its children have started
    ...
    app.stop()           # ordered shutdown, then the actor system ends

or ``with Application(...) as app: ...``.

The root runs under an *application master* actor, as in OTP. The master
never restarts the root: if the root exits (its restart intensity was
exceeded, escalation reached the top, or it was killed), the application has
stopped; :meth:`Application.wait` returns the root's exit reason and
:attr:`Application.exit_reason` keeps it.

What else happens then is the application's *start type* (OTP's
``application:start(App, Type)``), for a root that exits by itself (never
for :meth:`Application.stop`):

``"temporary"`` (default, as OTP's)
    the exit is reported (logged); nothing else stops.
``"transient"``
    an exit with reason ``"normal"`` is reported; any other reason
    (``"shutdown"`` from an intensity exit included) stops the node.
``"permanent"``
    any exit stops the node.

*The node* is the process that called :meth:`Application.start` (OTP stops
the whole runtime system): the master sends it ``SIGTERM``, as a process
manager would. Without a handler Python ends at once (and the actor systems
it started are then ended by their masters, see below); a process that
handles SIGTERM stops in order, and can tell why with :meth:`Application.poll`.

An application that started its own multi-process actor system owns it: if
the process that called :meth:`Application.start` dies without stopping it
(SIGKILL included), the master SIGKILLs the actor system's process group
(admin, logger, every actor) within about a second, so that no orphaned
actor system lives on, holding its admin port and its work, with nobody to
stop it. The master watches that process through a pidfd (Linux), else
checks every :data:`OWNER_CHECK_SECONDS`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Generator
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

from thespian.actors import ActorSystem, WakeupMessage, WatchMessage

from . import calls
from .errors import StartError, SupervisionError
from .protocol import Call, CallReply
from .reasons import KILLED, SHUTDOWN, ExitReason
from .registry import prepare_registry
from .spec import ChildSpec
from .supervisor import Op, _Child, _SupervisorBase, _Wait
from .system import _PROTOCOLS, DEFAULT_ADMIN_PORT, admin_process, process_alive, start_actor_system

log = logging.getLogger("supervision.application")

#: Seconds between two looks at the owner process where no pidfd can watch it.
OWNER_CHECK_SECONDS = 1.0

#: OTP's application start types.
START_TYPES = ("temporary", "transient", "permanent")


@dataclass(frozen=True)
class _StartRoot:
    spec: ChildSpec
    #: ``(pid, process group)`` of the process that started the actor system,
    #: when the master is to end the actor system once that process is gone.
    owner: tuple[int, int] | None = None
    #: OTP start type: what the root's own exit does to ``node_pid``.
    start_type: str = "temporary"
    #: The process that started the application (the "node" it may stop).
    node_pid: int | None = None


@dataclass(frozen=True)
class _OwnerCheck:
    """Wake-up payload: look again whether the owner process is alive."""


@dataclass(frozen=True)
class _StopRoot:
    pass


@dataclass(frozen=True)
class _WaitRoot:
    pass


@dataclass(frozen=True)
class _RootStatus:
    pass


class ApplicationMaster(_SupervisorBase):
    """Top-level actor that starts the root supervisor and outlives it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sv_phase = "running"  # created by the actor system itself, no InitChild
        self._sv_parent_pid = os.getpid()
        self._root: _Child | None = None
        self._reason: ExitReason = None
        self._waiters: list[tuple[Any, str]] = []
        self._owner: tuple[int, int] | None = None
        self._owner_fd: int | None = None
        self._start_type = "temporary"
        self._node_pid: int | None = None

    # ------------------------------------------------------------ the owner

    def _watch_owner(self, owner: tuple[int, int]) -> None:
        """End the actor system when ``owner`` (the process that started it)
        is gone: watched through a pidfd where Linux has them, else checked
        every :data:`OWNER_CHECK_SECONDS`."""
        self._owner = owner
        try:
            self._owner_fd = os.pidfd_open(owner[0])
        except (AttributeError, OSError):
            self.wakeupAfter(timedelta(seconds=OWNER_CHECK_SECONDS), _OwnerCheck())
        else:
            self.watch_fileno(self._owner_fd)
        self._check_owner()

    def _check_owner(self) -> None:
        if self._owner is None or process_alive(self._owner[0]):
            return
        group = os.getpgrp()
        log.error(
            "the process that started this actor system (pid %d) is gone: "
            "ending the actor system (process group %d)",
            self._owner[0],
            group,
        )
        if group != self._owner[1] and group != 1:
            os.killpg(group, signal.SIGKILL)

    def _sv_running(self, message: Any, sender: Any) -> None:
        if isinstance(message, WatchMessage):
            self._check_owner()
            return
        if isinstance(message, WakeupMessage) and isinstance(message.payload, _OwnerCheck):
            self._check_owner()
            self.wakeupAfter(timedelta(seconds=OWNER_CHECK_SECONDS), _OwnerCheck())
            return
        super()._sv_running(message, sender)

    def _children(self) -> list[_Child]:
        return [self._root] if self._root is not None else []

    def _remove(self, child: _Child) -> None:
        pass

    def _stop_all(self) -> Op:
        if self._root is not None and self._root.running:
            yield from self._stop_children([self._root])

    def _request_handler(self, request: Any) -> Any:
        if isinstance(request, _StartRoot):
            return self._start_root
        if isinstance(request, _StopRoot):
            return lambda r: self._stop_root()
        if isinstance(request, _RootStatus):
            return lambda r: (self._root is not None and self._root.running, self._reason)
        return None

    def _sv_on_call(self, message: Call, sender: Any) -> None:
        if isinstance(message.request, _WaitRoot):
            if self._root is not None and not self._root.running:
                self.send(sender, CallReply(message.ref, True, self._reason))
            else:
                self._waiters.append((sender, message.ref))
            return
        super()._sv_on_call(message, sender)

    def _start_root(self, request: _StartRoot) -> Generator[_Wait, Any, Any]:
        if self._root is not None:
            raise SupervisionError("the application was already started")
        if request.owner is not None:
            self._watch_owner(request.owner)
        self._start_type, self._node_pid = request.start_type, request.node_pid
        child = _Child(request.spec, request.spec.id)
        result, detail = yield from self._start_child(child)
        if result != "ok":
            self._reason = detail
            raise StartError(request.spec.id, detail)
        self._root = child
        return child.address

    def _stop_root(self) -> Generator[_Wait, Any, Any]:
        if self._root is not None and self._root.running:
            yield from self._stop_children([self._root])
            self._root_exited(SHUTDOWN)
        return self._reason

    def _on_child_exit(self, child: _Child, reason: ExitReason) -> Op:
        child.address, child.pid = None, None
        log.error("application root %r exited with %s", child.spec.id, reason)
        self._root_exited(reason)
        if self._start_type == "permanent" or (
            self._start_type == "transient" and reason != "normal"
        ):
            self._stop_node(child.spec.id, reason)
        yield from ()

    def _stop_node(self, root_id: Any, reason: ExitReason) -> None:
        """OTP: a permanent (or abnormally ended transient) application takes
        its node down: SIGTERM to the process that started it."""
        pid = self._node_pid
        if pid is None:
            return
        log.error(
            "%s application %r exited with %s: stopping the node (SIGTERM to pid %d)",
            self._start_type,
            root_id,
            reason,
            pid,
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)

    def _root_exited(self, reason: ExitReason) -> None:
        self._reason = reason
        for address, ref in self._waiters:
            self.send(address, CallReply(ref, True, reason))
        self._waiters.clear()


class Application:
    """A supervision tree in an actor system, driven from non-actor code.

    ``root`` is the ChildSpec of the root (normally a Supervisor).
    ``system`` reuses an existing actor system (it is then not shut down by
    :meth:`stop`); otherwise one is started with ``base`` and ``admin_port``
    (see :func:`supervision.system.start_actor_system`).
    ``start_type``: ``"temporary"`` (default), ``"transient"`` or
    ``"permanent"``, OTP's: whether the root's own exit stops the node (the
    process that called :meth:`start` gets SIGTERM; see the module docstring).
    """

    def __init__(
        self,
        root: ChildSpec,
        *,
        base: str = "multiprocTCPBase",
        admin_port: int = DEFAULT_ADMIN_PORT,
        system: ActorSystem | None = None,
        log_level: int | str = logging.WARNING,
        start_timeout: float | None = 60.0,
        start_type: str = "temporary",
    ) -> None:
        if not isinstance(root, ChildSpec):
            raise TypeError(f"root must be a ChildSpec, got {root!r}")
        if start_type not in START_TYPES:
            raise ValueError(f"start_type must be one of {START_TYPES}, got {start_type!r}")
        self.start_type = start_type
        self.root_spec = root
        self.base = base
        self.admin_port = admin_port
        self.log_level = log_level
        self.start_timeout = start_timeout
        self._given_system = system
        self.system: ActorSystem | None = system
        self.master: Any = None
        self.root: Any = None
        #: ``(pid, process group)`` of the admin of the actor system this
        #: application started (multi-process bases), else None.
        self.admin: tuple[int, int] | None = None
        self.exit_reason: ExitReason = None

    def start(self) -> Any:
        """Start the actor system (if needed) and the whole tree; return the root's address.

        Blocks until every child's ``init`` has run. Raises ``StartError`` (the
        actor system started here is shut down again) when the root fails to start.
        """
        if self.master is not None:
            raise SupervisionError("application already started")
        if self.system is None:
            self.system = start_actor_system(self.base, self.admin_port, log_level=self.log_level)
        calls.use_system(self.system)
        prepare_registry(self.system)
        self.master = self.system.createActor(ApplicationMaster)
        protocol = _PROTOCOLS.get(self.base)
        owner = None
        if self._given_system is None and protocol is not None:
            owner = (os.getpid(), os.getpgrp())
        try:
            self.root = calls.call(
                self.master,
                _StartRoot(self.root_spec, owner, self.start_type, os.getpid()),
                self.start_timeout,
                system=self.system,
            )
        except BaseException:
            self._shutdown_system()
            raise
        with _running_lock:
            _running.append(self)
        if owner is not None and protocol is not None:
            self.admin = admin_process(self.admin_port, protocol)
        return self.root

    def stop(self, timeout: float | None = None) -> ExitReason:
        """Shut the tree down in order (per the shutdown of each child), then end
        the actor system if this application started it. Returns the root's exit reason."""
        if self.master is None or self.system is None:
            return self.exit_reason
        try:
            self.exit_reason = calls.call(self.master, _StopRoot(), timeout, system=self.system)
        finally:
            self._shutdown_system()
        return self.exit_reason

    def wait(self, timeout: float | None = None) -> ExitReason:
        """Block until the root exits; return its exit reason.

        Raises ``CallTimeout`` after ``timeout`` seconds while it still runs.
        """
        if self.master is None or self.system is None:
            return self.exit_reason
        self.exit_reason = calls.call(self.master, _WaitRoot(), timeout, system=self.system)
        return self.exit_reason

    def admin_alive(self) -> bool:
        """False once the admin process of the actor system this application
        started is gone (always True when it did not start one, or on
        ``simpleSystemBase``). Without its admin an actor system answers
        nothing: see :meth:`kill_actor_system`."""
        return self.admin is None or process_alive(self.admin[0])

    def kill_actor_system(self) -> None:
        """End, with SIGKILL, every process left of the actor system this
        application started (its admin's process group: the admin, logger and
        actors); for an actor system whose admin died, which can no longer be
        shut down in order. The application is stopped afterwards."""
        if self.admin is not None:
            group = self.admin[1]
            if group != os.getpgrp():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
        with _running_lock:
            if self in _running:
                _running.remove(self)
        system, self.system, self.master = self.system, None, None
        if calls._current is system:
            calls.use_system(None)

    def poll(self, timeout: float = 5.0) -> tuple[bool, ExitReason]:
        """``(running, exit_reason)`` of the root, asked within ``timeout``
        seconds (``(False, exit_reason)`` once stopped). Raises ``CallTimeout``
        when the application master does not answer in time (its actor system
        is gone or stuck)."""
        if self.master is None or self.system is None:
            return False, self.exit_reason
        running, reason = calls.call(self.master, _RootStatus(), timeout, system=self.system)
        if not running:
            self.exit_reason = reason
        return bool(running), reason

    @property
    def is_running(self) -> bool:
        """True while the root supervisor runs."""
        if self.master is None or self.system is None:
            return False
        running, reason = calls.call(self.master, _RootStatus(), system=self.system)
        if not running:
            self.exit_reason = reason
        return bool(running)

    def call(
        self, address: Any, request: Any, timeout: float | None = calls.DEFAULT_TIMEOUT
    ) -> Any:
        """:func:`supervision.call` in this application's actor system."""
        return calls.call(address, request, timeout, system=self.system)

    def _shutdown_system(self) -> None:
        with _running_lock:
            if self in _running:
                _running.remove(self)
        system, self.system = self.system, None
        self.master = None
        if system is not None:
            if system is not self._given_system:
                system.shutdown()
            if calls._current is system:
                calls.use_system(None)

    def __enter__(self) -> Application:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


#: Applications started (and not yet stopped) in this process, oldest first.
_running: list[Application] = []
_running_lock = threading.Lock()


def running_applications() -> list[Application]:
    """The applications started in this process and not stopped yet, oldest
    first (a library embedded in a user's tree finds its subtree from here)."""
    with _running_lock:
        return list(_running)


__all__ = ["KILLED", "Application", "ApplicationMaster", "running_applications"]
