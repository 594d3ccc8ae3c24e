"""``ChildSpec(placement="process")`` on the light base: a child in its own OS process.

A supervisor running on :class:`~supervision.light.LightSystem` starts a
placed child as a *proxy* light actor (:class:`_Placed`) in its own system.
At the child's ``InitChild`` the proxy has the process's fork server
(:mod:`supervision.forkserver`) fork a new process: a clean one, that
inherits none of the host's threads, connections or files. The new process
arms ``PR_SET_PDEATHSIG`` (it dies with the fork server; the server kills it
when its host ends), runs a ``LightSystem`` of its own on a fresh event loop
and creates the real child there, under a relay actor (:class:`_PlacedRoot`).
The child's class must be importable (it is sent by reference), as must
everything in its start arguments. Every message is relayed both ways over a
socketpair (length-prefixed pickles, watched with the loops' ``add_reader``):

- sent to the proxy's address -> delivered to the real child;
- sent by the real child (or any actor of the process) to an address of the
  host -> delivered there, from the proxy's address (the child) or from a
  *ghost* address standing for the other actor.

Addresses are translated wherever they occur in a message (an entry for
addresses in the relay's pickle dispatch table): the child's own address is
the proxy's on the host side; any other address of the far side becomes a
local ghost that relays to it.
So the parent sees the child at one address, and addresses the child hands
out (``which_children`` of a placed supervisor, say) work from the host.

The real child answers ``ChildStarted(os.getpid())``: the supervisor knows
the process's pid and its kill path (``_kill``) SIGKILLs the process. The
process's end (its pidfd readable, or EOF on the socket) is seen on the
host: whatever the process had written is delivered first (its real exit
reason among it); then, if no ``ExitNotice`` came, the proxy answers the
calls relayed and not answered with ``NoProc("killed")``, sends ``Down`` /
``ExitSignal`` with ``"killed"`` to the monitors and links made through it,
and ends, so that its parent gets ``ChildActorExited`` (reason
``"killed"``). After that the address is a dead one: a ``Call`` to it is
answered ``NoProc`` at once. The process is reaped by the fork server.

When the proxy ends (its parent reaps it, or the host's system shuts down)
the real child gets the ``ActorExitRequest`` and its process exits; one
still there :data:`EXIT_GRACE` seconds later is SIGKILLed. A proxy ended
before the real child answered its ``InitChild`` (a start timeout) SIGKILLs
the process at once. A child class that cannot be built in the new process
ends it: the start fails with ``"killed"``; one that cannot be sent to
the fork server (not importable there) fails the start with that reason.

Messages that cross must pickle (as on multiprocTCPBase). Ghosts are kept
per relay side, the :data:`GHOSTS` most recently used (the real child's
parent is never dropped). A placed child cannot have a ``name`` (its start
fails with ``NotSupported``).
"""

from __future__ import annotations

import asyncio
import collections

# Imported before any fork: asyncio's resolver imports it lazily on a loop
# thread, and a process forked half way through that import keeps it broken.
import concurrent.futures.thread  # noqa: F401
import contextlib
import copyreg
import io
import logging
import os
import pickle
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from thespian.actors import Actor, ActorAddress, ActorExitRequest, ChildActorExited

from . import forkserver, light
from .errors import NotSupported
from .monitors import noproc_error
from .protocol import (
    Call,
    CallReply,
    ChildIgnored,
    ChildStarted,
    ChildStartFailed,
    Demonitor,
    Down,
    ExitNotice,
    ExitSignal,
    InitChild,
    Kill,
    Link,
    Monitor,
    Unlink,
)
from .reasons import KILLED, Crash

log = logging.getLogger("supervision.placement")

#: Seconds a placed process has to exit after its proxy ended before it is SIGKILLed.
EXIT_GRACE = 5.0
#: Most seconds a placed process whose child ended waits for its last words
#: (:func:`supervision.light.last_words`: a link's close, the last acks)
#: before it exits; within :data:`EXIT_GRACE`.
LAST_WORDS_SECONDS = 3.0

#: Ghost addresses kept per relay side (least recently used ones are dropped).
GHOSTS = 10_000

_HEADER = struct.Struct(">I")

#: The wire id of the far side's alias (the child, seen from the host, and back).
_ALIAS = ("alias", None)


def _address(details: Any) -> ActorAddress:
    """The light address whose ``addressDetails`` are ``details``."""
    address = light.LightAddress.__new__(light.LightAddress)
    ActorAddress.__init__(address, details)
    return address


#: The relay whose frame this thread unpickles now (see :func:`_wired`).
_loading = threading.local()


def _wired(owner: str, details: Any) -> Any:
    """An address as it crossed the socket, made local again by the relay
    unpickling the frame (:meth:`_Relay.from_wire`). Addresses are pickled
    through the relay's dispatch table, so the pickler calls back into
    Python only for addresses, not for every object of a message."""
    relay: _Relay = _loading.relay
    return relay.from_wire((owner, details))


class _Ghost:
    """The instance behind a ghost address: what it is sent goes to ``remote``."""

    def __init__(self, relay: _Relay, remote: Any) -> None:
        self.relay = relay
        self.remote = remote

    def receiveMessage(self, message: Any, sender: Any) -> None:
        self.relay.touch(self.remote)
        self.relay.send(("yours", self.remote), message, sender)


class _Relay:
    """One side of a placed child's socket: frames out and in, address translation.

    ``alias``: the local address that stands for the far side's alias:
    the proxy on the host, the real child in the placed process (each is the
    other's, however they cross). ``on_frame(target, message,
    sender)`` gets each message that arrives; ``on_broken()`` is called once
    when the socket reports EOF or an error.
    """

    def __init__(
        self,
        system: light.LightSystem,
        sock: socket.socket,
        alias: Any,
        on_frame: Callable[[Any, Any, Any], None],
        on_broken: Callable[[], None],
    ) -> None:
        self.system = system
        self.loop = system.loop
        self.sock = sock
        sock.setblocking(False)
        self.fd = sock.fileno()
        self.alias = alias
        self.alias_key = alias.addressDetails
        self.on_frame = on_frame
        self.on_broken = on_broken
        #: ghost key -> far details, least recently used first
        self.ghosts: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self.by_remote: dict[Any, Any] = {}
        #: ghost keys never dropped (the placed child's parent)
        self.pinned: set[Any] = set()
        #: How this side pickles: copyreg's reducers, and an address becomes
        #: its wire id (_wired).
        self.dispatch: dict[Any, Any] = {}
        self._take_dispatch()
        self.inbox = bytearray()
        self.outbox = bytearray()
        #: a flush of the outbox is scheduled (call_soon) or a writer is armed
        self.flushing = False
        self.closed = False
        self.loop.add_reader(self.fd, self._readable)

    # ---------------------------------------------------------- translation

    def wire_id(self, address: Any) -> Any:
        key = address.addressDetails
        remote = self.ghosts.get(key)
        if remote is not None:
            return ("yours", remote)
        if key == self.alias_key:
            return ("alias", None)
        return ("mine", key)

    def _take_dispatch(self) -> None:
        self.dispatch = dict(copyreg.dispatch_table)
        self.dispatch[light.LightAddress] = self._reduce_address

    def _reduce_address(self, address: Any) -> tuple[Any, ...]:
        return (_wired, self.wire_id(address))

    def from_wire(self, pid: Any) -> Any:
        owner, details = pid
        if owner == "yours":
            return _address(details)
        if owner == "alias":
            return self.alias
        return self.ghost_for(details)

    def ghost_for(self, details: Any) -> Any:
        """The local ghost address relaying to the far side's ``details``."""
        address = self.by_remote.get(details)
        if address is not None:
            self.touch(details)
            return address
        ghost = light._Ref(self.system, _Ghost(self, details), None)
        self.system._actors[ghost.key] = ghost
        self.ghosts[ghost.key] = details
        self.by_remote[details] = ghost.address
        if len(self.ghosts) > GHOSTS:
            for key in list(self.ghosts):
                if len(self.ghosts) <= GHOSTS:
                    break
                if key not in self.pinned:
                    self.by_remote.pop(self.ghosts.pop(key), None)
                    self.system._actors.pop(key, None)
        return ghost.address

    def touch(self, details: Any) -> None:
        address = self.by_remote.get(details)
        if address is not None:
            self.ghosts.move_to_end(address.addressDetails)

    def drop_ghosts(self) -> None:
        """Unregister every ghost of this relay (their addresses become dead)."""
        for key in self.ghosts:
            self.system._actors.pop(key, None)
        self.ghosts.clear()
        self.by_remote.clear()

    # ---------------------------------------------------------- frames

    def send(self, target: Any, message: Any, sender: Any) -> None:
        """Relay ``message`` from ``sender`` to ``target`` on the far side:
        the wire id of an address there (``("yours", details)``), or
        ``("alias", None)``, the far alias.

        A message that does not pickle is dropped (a ``Call`` is answered
        with the error); once closed, nothing is sent."""
        if self.closed:
            return
        if len(self.dispatch) != len(copyreg.dispatch_table) + 1:
            self._take_dispatch()  # a reducer was registered with copyreg since
        buffer = io.BytesIO()
        try:
            pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
            pickler.dispatch_table = self.dispatch
            pickler.dump((target, message, sender))
        except Exception as exc:
            log.error("placement: cannot relay %r: %r", message, exc)
            if isinstance(message, Call) and sender is not None:
                self.system._post(sender, CallReply(message.ref, False, exc), self.alias)
            return
        data = buffer.getvalue()
        self._write(_HEADER.pack(len(data)) + data)

    def _write(self, data: bytes) -> None:
        """Queue one frame. The outbox goes out at the end of the loop's
        current round (one ``send`` for every frame of the round), or when
        the socket is writable again after a partial send."""
        self.outbox += data
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self.closed or not self.outbox:
            self.flushing = False
            return
        try:
            sent = self.sock.send(self.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.flushing = False
            self._broken()
            return
        del self.outbox[:sent]
        if self.outbox:
            self.loop.add_writer(self.fd, self._writable)
        else:
            self.flushing = False

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.outbox)
        except BlockingIOError:
            return
        except OSError:
            self.loop.remove_writer(self.fd)
            self.flushing = False
            self._broken()
            return
        del self.outbox[:sent]
        if not self.outbox:
            self.loop.remove_writer(self.fd)
            self.flushing = False

    def flush_blocking(self) -> None:
        """Write what is still queued, waiting as long as it takes (before exit)."""
        if self.outbox and not self.closed:
            self.loop.remove_writer(self.fd)
            with contextlib.suppress(OSError):
                self.sock.setblocking(True)
                self.sock.sendall(bytes(self.outbox))
            self.outbox.clear()

    def _readable(self) -> None:
        try:
            chunk = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._broken()
            return
        self.inbox += chunk
        self._frames()

    def drain(self) -> None:
        """Deliver every frame still readable (the far process has ended)."""
        while not self.closed:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                break
            if not chunk:
                break
            self.inbox += chunk
        self._frames()

    def _frames(self) -> None:
        inbox = self.inbox
        while len(inbox) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(inbox)
            end = _HEADER.size + size
            if len(inbox) < end:
                break
            data = bytes(inbox[_HEADER.size : end])
            del inbox[:end]
            previous = getattr(_loading, "relay", None)
            _loading.relay = self
            try:
                wire, message, sender = pickle.loads(data)
                target = self.from_wire(wire)
            except Exception:
                log.exception("placement: a relayed message does not unpickle")
                continue
            finally:
                _loading.relay = previous
            self.on_frame(target, message, sender)

    def _broken(self) -> None:
        if not self.closed:
            self.on_broken()

    def close(self) -> None:
        """Stop watching and close the socket (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self.sock.close()


# ---------------------------------------------------------------- host side


class _Placement:
    """The host's record of one placed process: its pid, relay, and what is
    owed to the host's actors if the process dies without its exit notice."""

    def __init__(self, proxy: _Placed, pid: int, relay_sock: socket.socket) -> None:
        self.proxy_ref: light._Ref = proxy._myRef
        self.system = self.proxy_ref.system
        self.pid = pid
        self.address = self.proxy_ref.address
        self.gone = False
        self.exit_seen = False
        #: the real child answered its InitChild (started, ignored or failed)
        self.answered = False
        self.calls: dict[str, Any] = {}
        self.monitors: dict[str, Any] = {}
        self.links: list[Any] = []
        self.relay = _Relay(self.system, relay_sock, self.address, self._arrived, self.end)
        self.pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self.pidfd = os.pidfd_open(pid)
        if self.pidfd is not None:
            self.system.loop.add_reader(self.pidfd, self.end)

    def relay_in(self, message: Any, sender: Any) -> None:
        """A message for the placed child, from ``sender`` on the host."""
        if isinstance(message, Call):
            self.calls[message.ref] = message.monitor if message.monitor is not None else sender
        elif isinstance(message, Monitor):
            self.monitors[message.ref] = message.watcher
        elif isinstance(message, Demonitor):
            self.monitors.pop(message.ref, None)
        elif isinstance(message, Link):
            self.links.append(message.linker)
        elif isinstance(message, Unlink):
            self.links = [peer for peer in self.links if peer != message.address]
        self.relay.send(_ALIAS, message, sender)

    def _arrived(self, target: Any, message: Any, sender: Any) -> None:
        if sender is not None and sender == self.address:
            if isinstance(message, (ChildStarted, ChildStartFailed, ChildIgnored)):
                self.answered = True
            elif isinstance(message, ExitNotice):
                self.exit_seen = True
                self.calls.clear()
                self.monitors.clear()
                self.links.clear()
            elif isinstance(message, CallReply):
                self.calls.pop(message.ref, None)
            elif isinstance(message, Down):
                self.monitors.pop(message.ref, None)
            elif isinstance(message, ExitSignal):
                self.links = [peer for peer in self.links if peer != target]
        self.system._post(target, message, sender)

    def leave(self, request: Any, sender: Any) -> None:
        """The proxy ends on ``request`` (``ActorExitRequest``): the real child
        gets it and ends, then its process exits and is reaped (pidfd / EOF).
        A child that has not answered its ``InitChild`` is being given up at
        its start timeout: its process is SIGKILLed at once. Any process still
        there :data:`EXIT_GRACE` seconds later is SIGKILLed."""
        if not self.answered:
            self.kill()
            return
        self.relay.send(_ALIAS, request, sender)
        self.system.loop.call_later(EXIT_GRACE, self.kill)

    def kill(self) -> None:
        """SIGKILL the process (nothing when it is gone already). Through its
        pidfd where there is one: the fork server reaps the process, so its
        pid could name another process once it is gone."""
        if self.gone:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)

    def end(self) -> None:
        """The process ended (or its socket broke, and it is killed now):
        deliver what it wrote, settle what it owed, end the proxy. (The fork
        server, its parent, reaps it.)"""
        if self.gone:
            return
        self.kill()
        self.gone = True
        if self.pidfd is not None:
            self.system.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        self.relay.drain()
        self.relay.close()
        self.relay.drop_ghosts()
        post = self.system._post
        if not self.exit_seen:
            for ref, caller in self.calls.items():
                error = noproc_error(self.address, KILLED)
                post(caller, CallReply(ref, False, error), self.address)
            for ref, watcher in self.monitors.items():
                post(watcher, Down(ref, self.address, KILLED), self.address)
            for peer in self.links:
                post(peer, ExitSignal(self.address, KILLED), self.address)
        self.calls, self.monitors, self.links = {}, {}, []
        if self.proxy_ref.alive:
            post(self.address, ActorExitRequest(), self.address)


class _Placed(Actor):  # type: ignore[misc]
    """The host-side stand-in of a placed child (see the module doc); made
    per child class by :func:`placed_class`, whose ``target`` it starts."""

    target: type = object

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._placement: _Placement | None = None

    def receiveMessage(self, message: Any, sender: Any) -> None:
        """Start the process at ``InitChild``; relay the rest; end with the process."""
        placement = self._placement
        if placement is None:
            if isinstance(message, InitChild):
                self._spawn(message, sender)
            elif isinstance(message, Call):
                self._myRef.system._dead_letter(self.myAddress, message, sender)
            return
        if isinstance(message, Kill):
            placement.kill()
        elif isinstance(message, ActorExitRequest):
            if sender is not None and sender == self.myAddress:
                return  # the process is gone: the proxy ends now
            if not placement.gone:
                placement.leave(message, sender)
        elif placement.gone:
            self._myRef.system._dead_letter(self.myAddress, message, sender)
        else:
            placement.relay_in(message, sender)

    def _spawn(self, init: InitChild, parent: Any) -> None:
        if init.name is not None:
            error = NotSupported("a child placed in its own process cannot have a name")
            self.send(parent, ChildStartFailed(Crash.from_exception(error)))
            return
        host, far = socket.socketpair()
        try:
            pid = forkserver.fork(far, self.target)
        except forkserver.ForkFailed as exc:
            host.close()
            self.send(parent, ChildStartFailed(Crash.from_exception(exc)))
            return
        finally:
            far.close()
        self._placement = _Placement(self, pid, host)
        self._placement.relay_in(init, parent)


_classes: dict[type, type] = {}


def placed_class(actor_class: type, creator: Any) -> type:
    """The class to create for a child of ``actor_class`` with
    ``placement="process"`` by the actor ``creator``: a proxy class when
    ``creator`` runs on a light system, else ``actor_class`` itself (on
    multiprocTCPBase every actor has a process of its own already; on
    simpleSystemBase the child runs in the host's thread, as every actor)."""
    if not isinstance(getattr(creator, "_myRef", None), light._Ref):
        return actor_class
    proxy = _classes.get(actor_class)
    if proxy is None:
        name = f"Placed{actor_class.__name__}"
        proxy = type(name, (_Placed,), {"target": actor_class, "__qualname__": name})
        _classes[actor_class] = proxy
    return proxy


# ---------------------------------------------------------------- placed process


class _PlacedRoot(Actor):  # type: ignore[misc]
    """The placed process's top-level actor: creates the real child, relays
    for it, and ends the process when the child ends (or the host is gone)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._child: Any = None
        self._relay: _Relay | None = None
        self._exiting = False

    def setup(self, sock: socket.socket, actor_class: type) -> None:
        """Create the real child of ``actor_class`` (the host's proxy stands
        for it) and relay over ``sock``."""
        self._child = self.createActor(actor_class)
        self._relay = _Relay(self._myRef.system, sock, self._child, self._arrived, _host_gone)

    def _arrived(self, target: Any, message: Any, sender: Any) -> None:
        relay = self._relay
        if isinstance(message, InitChild) and relay is not None and sender is not None:
            relay.pinned.add(sender.addressDetails)  # the child's parent stays reachable
        self._myRef.system._post(target, message, sender)

    def receiveMessage(self, message: Any, sender: Any) -> None:
        """The real child's end (or the system's shutdown) ends the process,
        once the last words of its actors are said (at most
        :data:`LAST_WORDS_SECONDS`)."""
        ended = isinstance(message, ChildActorExited) and message.childAddress == self._child
        if (ended or isinstance(message, ActorExitRequest)) and not self._exiting:
            self._exiting = True
            self._myRef.system.loop.create_task(self._exit())

    async def _exit(self) -> None:
        # The exits of the subtree may still be on their way to the actors
        # below (a time slice ended the delivery round): their ``terminate``
        # registers last words only once they are delivered.
        system = self._myRef.system
        deadline = time.monotonic() + LAST_WORDS_SECONDS
        try:
            while (left := deadline - time.monotonic()) > 0:
                if not system._idle():
                    await asyncio.wait([asyncio.wrap_future(system._idle_future())], timeout=left)
                elif await light.last_words_said(left) and system._idle():
                    break
            else:
                log.warning("placement: last words still unsaid after %s s", LAST_WORDS_SECONDS)
            if self._relay is not None:
                self._relay.flush_blocking()
        finally:
            os._exit(0)


def _host_gone() -> None:
    log.error("placement: the host closed the relay; this process exits")
    os._exit(1)


def _process_loop() -> asyncio.AbstractEventLoop:
    """The event loop of a placed process: uvloop's where it is installed (a
    dependency on Linux), else asyncio's. A placed process is a clean
    interpreter of ours, so its loop is ours to choose; the partition host's
    AMQP frames, relays and light deliveries all run on it (a drain of
    no-op jobs on this project's bench went 15% to 40% faster on uvloop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _placed_main(sock: socket.socket, actor_class: type, server_pid: int) -> None:
    """The body of a placed process (just forked by the fork server, which
    is its parent): die with the server, then run a new LightSystem with the
    child. Never returns."""
    try:
        from .process import _die_with_parent

        if not _die_with_parent(server_pid):
            os._exit(1)
        loop = _process_loop()
        asyncio.set_event_loop(loop)
        light._host_lock = threading.Lock()
        light._host = loop
        system = light.LightSystem(loop=loop)

        def boot() -> None:
            try:
                address = system._create(_PlacedRoot, None)
                root = system._actors[address.addressDetails].instance
                root.setup(sock, actor_class)
            except BaseException:
                # the host sees the process end: the start fails with "killed"
                log.exception("placement: cannot create %s", actor_class.__qualname__)
                os._exit(1)

        loop.call_soon(boot)
        loop.run_forever()
    except BaseException:
        with contextlib.suppress(BaseException):
            log.exception("placement: the placed process failed")
    os._exit(1)


__all__ = ["placed_class"]
