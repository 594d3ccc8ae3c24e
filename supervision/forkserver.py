"""The fork server: placed processes start from a clean process, not from their host.

A child with ``placement="process"`` on the light base (see
:mod:`supervision.placement`) is not forked from the process that places it.
That process may run threads (the loop's, the user's), hold broker
connections, database sockets and the user's files; a fork would copy all of
it into the child, and a lock some other thread held at that instant stays
locked there for good. Instead each process asks a *fork server* to fork for
it:

- The first placement in a process starts the server with ``subprocess``
  (fork and exec in C): a fresh interpreter with this process's
  ``sys.path``, environment and working directory, the same ``__main__``
  module (run as ``__mp_main__``, as :mod:`multiprocessing` does, so its
  ``if __name__ == "__main__":`` block does not run again; and only when a
  class defined there is placed). It has one thread and no files open but
  its channels. Its processes log as actor processes do on the
  multi-process bases (:func:`supervision.system.log_definitions`: stderr,
  with the pid) at the effective level of this process's root logger.
- :func:`fork` sends the server the child's class (pickled by reference: it
  must be importable by its module and qualified name), the caller's
  environment, working directory and ``sys.path`` (the new process takes
  them, as after a fork), the names of the modules the caller has imported
  from files since its last request, and the placed end of the relay socket
  (``SCM_RIGHTS``). The server imports those modules (once each: later forks
  share them, copy on write; one that fails to import is skipped), so that
  the new process has imported what its asker had, as after a fork, and
  module-level registries filled at import (Roger's job classes) are there.
  Then it forks, and answers the pid.
  The new process gets only its relay socket and a channel of its own to the
  server, through which it places its own children: a partition host's
  workers come from the same clean server, not from the host.
- Every placed process arms ``PR_SET_PDEATHSIG`` on the server: it dies with
  it. The server reaps them; the placing process watches its children by
  pidfd (see :mod:`supervision.placement`). A placed process is named after
  its class (``ps -o comm``, ``top``: ``Worker``, ``PartitionSuperv``...);
  the server is ``forkserver``.
- When a process that placed children ends (the server reaps it, or its
  channel closes) the server SIGKILLs every process forked at its request, so
  a SIGKILLed host never leaves a worker behind. When the process that
  started the server closes its channel (it exited, or was killed), the
  server SIGKILLs every process it forked and exits. A server with no
  process of its own alive exits after :data:`IDLE_SECONDS` without a
  request (a stopped application leaves no process behind); the next
  placement starts a new one.

The channels are socketpairs (``AF_UNIX``, ``SOCK_SEQPACKET``), held only by
the processes of one tree: nothing listens. The server serves one request at
a time; :func:`fork` blocks its caller until the pid comes back (a fork of
the small server takes a millisecond or two; the first request of a class
also imports its module), at most :data:`FORK_TIMEOUT` seconds.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import itertools
import logging
import logging.config
import os
import pickle
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import threading
import types
from typing import Any, NamedTuple

from .process import _name_process

log = logging.getLogger("supervision.forkserver")

#: Seconds :func:`fork` waits for the server's answer.
FORK_TIMEOUT = 30.0

#: Seconds a fork server with no live process of its own waits for a request
#: before it exits (the next placement starts a new one).
IDLE_SECONDS = 5.0

#: Largest request or answer the server reads (a request's module names go
#: in messages of :data:`_MODULES_PER_MESSAGE`, well under it).
_MAX_MESSAGE = 1 << 20
_MODULES_PER_MESSAGE = 256


class ForkFailed(Exception):
    """A placed process could not be forked; the message says why."""


# ---------------------------------------------------------------- the client side

_lock = threading.Lock()
#: This process's channel to its fork server (None until the first placement).
_channel: socket.socket | None = None
#: The server this process started (None in a placed process: it uses its forker's).
_server: subprocess.Popen[bytes] | None = None
#: Request numbers: an answer that arrives after its request timed out is skipped.
_requests = itertools.count(1)
#: True inside the server while it imports the program's modules: a
#: placement there would recurse.
_bootstrapping = False
#: The modules this process's server was told to import (or has: a placed
#: process starts with the server's).
_sent: set[str] = set()


def _forget_after_fork() -> None:
    """In a child of a plain ``os.fork`` (a Thespian actor, say): the parent's
    channel is not this process's to use."""
    global _channel, _server, _lock
    if _channel is not None:
        with contextlib.suppress(OSError):
            _channel.close()
    _channel, _server, _lock = None, None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def fork(relay: socket.socket, actor_class: type) -> int:
    """Fork a placed process for ``actor_class`` and return its pid.

    ``relay`` is the placed end of the relay socketpair: the new process gets
    a duplicate of it (the caller closes its own) and runs
    :func:`supervision.placement._placed_main` on it. Starts this process's
    fork server on first use, and again when the one it started has died
    (the processes that one forked died with it). Blocks the calling thread
    until the server answers, at most :data:`FORK_TIMEOUT` seconds.

    Raises :class:`ForkFailed` when the class does not pickle by reference,
    the server cannot import it or cannot fork, does not answer in time, or
    is gone (its channel broke: a server this process started is then
    stopped, with the processes it forked, and the next call starts a new
    one), or when called inside the server's own bootstrap (a ``__main__``
    that places children at import time)."""
    if _bootstrapping:
        raise ForkFailed(
            "a child was placed while the fork server imported __main__: "
            'guard the program\'s start with if __name__ == "__main__":'
        )
    try:
        request_class = pickle.dumps(actor_class)
    except Exception as exc:
        raise ForkFailed(
            f"{actor_class!r} cannot be placed: its class must be importable ({exc})"
        ) from exc
    with _lock:
        for attempt in (1, 2):
            channel = _ready_channel()
            number = next(_requests)
            try:
                answer = _ask(channel, _request(number, request_class), [relay.fileno()])
                break
            except TimeoutError as exc:
                # a late answer is skipped; a process forked after all finds
                # its relay closed by the caller, and exits
                raise ForkFailed(f"the fork server did not answer in {FORK_TIMEOUT} s") from exc
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                _lost(channel)
                if attempt == 2:
                    raise ForkFailed(f"the fork server is gone ({exc!r})") from exc
                # it exited idle as the request went out: a new one forks
    outcome, value = answer
    if outcome != "forked":
        raise ForkFailed(str(value))
    return int(value)


def prepare() -> None:
    """Start this process's fork server now, if none runs, and have it import
    the modules imported here, so that the first :func:`fork` does not wait
    for that: called when a light application starts. Does not wait for the
    server; errors are left for :func:`fork` to report."""
    if _bootstrapping:
        return
    with _lock, contextlib.suppress(ForkFailed, OSError):
        _send_modules(_ready_channel(), _request(0, b""), everything=True)


def _ready_channel() -> socket.socket:
    """The channel to a live server: this process's, or a new one."""
    if _channel is not None and _server is not None and _server.poll() is not None:
        _lost(_channel)  # the server this process started has exited
    return _channel if _channel is not None else _start()


def _request(number: int, request_class: bytes) -> _Request:
    return _Request(
        number, request_class, dict(os.environ), os.getcwd(), list(sys.path), _new_modules()
    )


def _ask(channel: socket.socket, request: _Request, fds: list[int]) -> tuple[str, Any]:
    request = _send_modules(channel, request)
    socket.send_fds(channel, [pickle.dumps(request)], fds)
    _sent.update(request.modules)
    return _answer(channel, request.number)


def _send_modules(channel: socket.socket, request: _Request, everything: bool = False) -> _Request:
    """Send the request's module names in import-only messages (number 0: no
    answer) of :data:`_MODULES_PER_MESSAGE`; return the request with the
    rest (all of them too when ``everything``)."""
    modules = request.modules
    while modules and (everything or len(modules) > _MODULES_PER_MESSAGE):
        part, modules = modules[:_MODULES_PER_MESSAGE], modules[_MODULES_PER_MESSAGE:]
        imports = request._replace(number=0, actor_class=b"", environ={}, modules=part)
        channel.send(pickle.dumps(imports))
        _sent.update(part)
    return request._replace(modules=modules)


def _new_modules() -> list[str]:
    """The modules imported here from a file, in import order, that the
    server has not been told about yet."""
    found = []
    for name, module in list(sys.modules.items()):
        if name in _sent or name.startswith(("__main__", "__mp_main__")):
            continue
        spec = getattr(module, "__spec__", None)
        if spec is not None and getattr(spec, "has_location", False):
            found.append(name)
    return found


def server_pid() -> int | None:
    """The pid of the fork server this process started, or None (none runs
    yet, or this is a placed process: its server is its parent)."""
    server = _server
    return server.pid if server is not None and server.poll() is None else None


def _answer(channel: socket.socket, number: int) -> tuple[str, Any]:
    channel.settimeout(FORK_TIMEOUT)
    try:
        while True:
            data = channel.recv(_MAX_MESSAGE)
            if not data:
                raise EOFError("the fork server closed its channel")
            answered, outcome, value = pickle.loads(data)
            if answered == number:
                return outcome, value
    finally:
        channel.settimeout(None)


def _lost(channel: socket.socket) -> None:
    """The channel broke: forget it (and stop a server this process started)."""
    global _channel, _server
    with contextlib.suppress(OSError):
        channel.close()
    _sent.clear()
    if _server is not None:
        with contextlib.suppress(OSError):
            _server.kill()
        with contextlib.suppress(Exception):
            _server.wait(5)
    _channel, _server = None, None


def _start() -> socket.socket:
    """Start this process's fork server; return the channel to it."""
    global _channel, _server
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    prepare = {"main": _main_module(), "log_level": logging.getLogger().getEffectiveLevel()}
    code = (
        f"import sys; sys.path[:] = {sys.path!r}; "
        f"from supervision.forkserver import main; main({theirs.fileno()}, {prepare!r})"
    )
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        server = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
    except OSError as exc:
        ours.close()
        raise ForkFailed(f"cannot start the fork server: {exc!r}") from exc
    finally:
        theirs.close()
    _channel, _server = ours, server
    return ours


def _main_module() -> tuple[str, str] | None:
    """How the server finds this process's ``__main__``: ``("name", module)``
    for ``python -m module``, ``("path", file)`` for a script, None for an
    interactive or ``-c`` session."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        name = getattr(spec, "name", None)
        if not isinstance(name, str) or name == "__main__" or name.endswith(".__main__"):
            return None  # a package's __main__ (python -m pytest): nothing of the program's
        return ("name", name)
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and os.path.isfile(path):
        return ("path", os.path.abspath(path))
    return None


# ---------------------------------------------------------------- the server


class _Request(NamedTuple):
    """A fork request: the class (pickled by reference) and what the new
    process takes from the asker, as a plain fork would have given it."""

    number: int
    actor_class: bytes
    environ: dict[str, str]
    cwd: str
    sys_path: list[str]
    #: modules the asker imported since its last request
    modules: list[str]


class _Channel:
    """A channel of the server to one process (``pid``; None for the process
    that started the server)."""

    def __init__(self, sock: socket.socket, pid: int | None) -> None:
        self.sock = sock
        self.pid = pid


class _Server:
    """The fork server's state: its channels and the processes it forked."""

    def __init__(self, root: socket.socket, main: _Main) -> None:
        self.main = main
        #: modules an asker had that do not import here (not tried again)
        self.unimportable: set[str] = set()
        self.selector = selectors.DefaultSelector()
        self.channels: dict[int, _Channel] = {}
        #: forked pid -> the pid of the process that asked for it (None: the root)
        self.asked_by: dict[int, int | None] = {}
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.root = self._add(root, None)

    def _add(self, sock: socket.socket, pid: int | None) -> _Channel:
        channel = _Channel(sock, pid)
        self.channels[sock.fileno()] = channel
        self.selector.register(sock, selectors.EVENT_READ, channel)
        return channel

    def _close(self, channel: _Channel) -> None:
        if self.channels.pop(channel.sock.fileno(), None) is not None:
            self.selector.unregister(channel.sock)
            channel.sock.close()

    def serve(self) -> None:
        """Serve until the root channel closes; then kill every forked process."""
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        while self.root.sock.fileno() in self.channels:
            events = self.selector.select(None if self.asked_by else IDLE_SECONDS)
            if not events and not self.asked_by:
                return  # idle: nothing of its own alive, no request
            for key, _ in events:
                if key.fileobj is self.wake_r:
                    with contextlib.suppress(OSError):
                        self.wake_r.recv(4096)
                    self._reap()
                else:
                    self._serve(key.data)
        for pid in list(self.asked_by):
            self._kill(pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.asked_by.pop(pid, None)
            for channel in [c for c in self.channels.values() if c.pid == pid]:
                self._close(channel)
            self._ended(pid)

    def _ended(self, pid: int) -> None:
        """``pid`` is gone: so are the processes forked at its request."""
        for child, asker in list(self.asked_by.items()):
            if asker == pid:
                self._kill(child)

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid is still this one

    def _serve(self, channel: _Channel) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(channel.sock, _MAX_MESSAGE, 1)
        except OSError:
            data, fds, flags = b"", [], 0
        if flags & socket.MSG_TRUNC:  # its asker times out
            log.error("forkserver: a request over %d bytes was dropped", _MAX_MESSAGE)
            for fd in fds:
                os.close(fd)
            return
        if not data:
            for fd in fds:
                os.close(fd)
            self._close(channel)
            if channel.pid is not None:
                self._ended(channel.pid)
            return
        number: Any = None
        try:
            request = pickle.loads(data)
            number = request.number
            sys.path[:] = request.sys_path
            self._import(request.modules)
            if not request.actor_class:
                return  # prepare(): the imports only, no answer
            if len(fds) != 1:
                raise ForkFailed("a fork request carries one relay socket")
            actor_class = _ClassUnpickler(io.BytesIO(request.actor_class), self.main).load()
            pid = self._fork(fds[0], actor_class, request, channel)
            answer: tuple[Any, str, Any] = (number, "forked", pid)
        except (Exception, SystemExit) as exc:  # the asker gets the reason
            answer = (number, "failed", f"cannot place the child: {exc!r}")
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(OSError):
            channel.sock.send(pickle.dumps(answer))

    def _import(self, modules: list[str]) -> None:
        """Import what the asker had imported, so that the new process has it
        as after a plain fork (module-level registries, such as the job
        classes Roger finds by name, included). A module that fails is
        skipped, and not tried again."""
        global _bootstrapping
        _bootstrapping = True
        try:
            for name in modules:
                if name in sys.modules or name in self.unimportable:
                    continue
                try:
                    importlib.import_module(name)
                except (Exception, SystemExit) as exc:
                    self.unimportable.add(name)
                    log.debug("forkserver: %s does not import here: %r", name, exc)
        finally:
            _bootstrapping = False

    def _fork(self, relay_fd: int, actor_class: type, request: _Request, asker: _Channel) -> int:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server_pid = os.getpid()
        # What the server holds (its imports, mostly) moves to the permanent
        # generation: the new process's collections never walk it, and do
        # not write to (so copy) the pages it shares with the server.
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            mine.close()
            self._become_placed(relay_fd, actor_class, request, theirs, server_pid)
        theirs.close()
        self.asked_by[pid] = asker.pid
        self._add(mine, pid)
        return pid

    def _become_placed(
        self,
        relay_fd: int,
        actor_class: type,
        request: _Request,
        channel: socket.socket,
        server_pid: int,
    ) -> None:
        """The new process: drop the server's files and signals, keep the relay
        and its own channel, take the asker's environment and working
        directory, run the placed child. Never returns."""
        global _channel
        try:
            _name_process(actor_class.__name__)
            os.environ.clear()
            os.environ.update(request.environ)
            with contextlib.suppress(OSError):
                os.chdir(request.cwd)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for other in list(self.channels.values()):
                other.sock.close()
            self.selector.close()
            self.wake_r.close()
            self.wake_w.close()
            _channel = channel
            _sent.update(sys.modules)
            from .placement import _placed_main

            _placed_main(socket.socket(fileno=relay_fd), actor_class, server_pid)
        except BaseException:
            with contextlib.suppress(BaseException):
                log.exception("forkserver: the placed process failed to start")
        os._exit(1)


class _Main:
    """The placing process's ``__main__``, imported here on first need: when a
    class defined there is placed (a program's own script), never otherwise."""

    def __init__(self, where: tuple[str, str] | None) -> None:
        self.where = where
        self.imported = False

    def need(self) -> None:
        """Run the program's ``__main__`` as ``__mp_main__`` (its ``if __name__
        == "__main__":`` block stays out) and make it ``__main__`` here. Once;
        raises what the import raised (``ForkFailed`` for a script that places
        children at import time)."""
        global _bootstrapping
        if self.imported or self.where is None:
            return
        self.imported = True
        kind, where = self.where
        _bootstrapping = True
        try:
            if kind == "name":
                namespace = runpy.run_module(where, run_name="__mp_main__", alter_sys=True)
            else:
                namespace = runpy.run_path(where, run_name="__mp_main__")
        finally:
            _bootstrapping = False
        module = types.ModuleType("__mp_main__")
        module.__dict__.update(namespace)
        sys.modules["__main__"] = sys.modules["__mp_main__"] = module


class _ClassUnpickler(pickle.Unpickler):
    """Unpickles a class reference, importing the program's ``__main__`` first
    when the class lives there."""

    def __init__(self, file: io.BytesIO, main: _Main) -> None:
        super().__init__(file)
        self.main = main

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__":
            self.main.need()
        return super().find_class(module, name)


def main(fd: int, prepare: dict[str, Any]) -> None:
    """The fork server's body (``python -c``, started by :func:`fork`): serve
    fork requests on channel ``fd`` until it closes. Never returns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # it ends with its channel
    _name_process("forkserver")
    from . import placement  # noqa: F401 - imported once, before any fork
    from .system import log_definitions

    logging.config.dictConfig(log_definitions(prepare.get("log_level", logging.WARNING)))
    root = socket.socket(fileno=fd)

    try:
        _Server(root, _Main(prepare.get("main"))).serve()
    finally:
        os._exit(0)


__all__ = ["FORK_TIMEOUT", "IDLE_SECONDS", "ForkFailed", "fork", "prepare", "server_pid"]
