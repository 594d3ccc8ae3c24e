"""The embedded broker: the in-memory broker of this process on a loopback AMQP port.

A node configured with ``amqp = "memory://"`` (or ``"memory://name"``) runs
its broker itself: :func:`serve` starts the in-memory broker ``name``
(:mod:`roger_actors.transport.memory`) behind a :class:`~.wire.WireServer`
on ``127.0.0.1`` with a fresh random password, on an event loop in a daemon
thread of this process, and returns the ``amqp://`` URL that every process
of the node (actors, workers, in-process producers) then connects to with
the AMQP client it already has.

It is one broker in one process on one host: what it holds lives in this
process's memory and is gone when the process ends or :func:`shutdown`
stops it; nothing outside this host can reach it (loopback only), and
nothing without the password can (the password is never printed). Use
RabbitMQ for anything that must outlive the process or span hosts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from dataclasses import dataclass, field

from .base import Connection, connect
from .loop import LoopThread
from .wire import WireServer

__all__ = ["EmbeddedBroker", "is_running", "serve", "shutdown"]

#: How long starting or stopping the embedded broker may take (seconds).
START_TIMEOUT = 10.0


@dataclass
class EmbeddedBroker:
    """A running embedded broker: its URL (with the password: pass it on,
    never print it), its port, and the loop thread serving it."""

    name: str
    url: str = field(repr=False)
    port: int
    username: str
    password: str = field(repr=False)
    _server: WireServer = field(repr=False)
    _io: LoopThread = field(repr=False)

    @property
    def running(self) -> bool:
        """True until :meth:`stop`."""
        return self._io.alive

    def drop_connections(
        self, reason: str = "closed by the broker", name: str | None = None
    ) -> int:
        """Close client connections from the broker's side, as ``rabbitmqctl
        close_all_connections`` does (clients see ``CONNECTION_FORCED``;
        their unacked deliveries go back to their queues): every one, or
        those whose client named itself ``name`` (its ``connection_name``
        client property). For fault tests; returns how many, once done (at
        most :data:`START_TIMEOUT` s)."""
        return self._io.submit(self._server.drop_clients(reason, name)).result(START_TIMEOUT)

    def queue_names(self) -> list[str]:
        """The names of the broker's queues now (as ``rabbitmqctl list_queues``)."""

        async def names() -> list[str]:
            from .memory import broker

            return sorted(broker(f"memory://{self.name}").queues)

        return self._io.submit(names()).result(START_TIMEOUT)

    def stop(self, timeout: float = START_TIMEOUT) -> None:
        """Close every client connection (they see ``CONNECTION_FORCED``),
        stop listening and end the loop thread. Waits at most ``timeout``
        seconds; idempotent."""
        if not self._io.alive:
            return
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self._io.submit(self._server.close()).result(timeout)
        self._io.stop(timeout)


_lock = threading.Lock()
_running: dict[str, EmbeddedBroker] = {}


def serve(
    name: str = "default",
    backend: str | None = None,
) -> EmbeddedBroker:
    """The embedded broker ``name`` of this process, started on first use.

    ``backend`` is the transport URL the wire server forwards to
    (default ``memory://<name>``; another one, such as RabbitMQ's, makes it a
    proxy, which the tests use). Raises ``ValueError`` for an empty ``name``,
    ``OSError`` when no loopback port can be bound and ``TimeoutError`` when
    the broker did not start within :data:`START_TIMEOUT` seconds.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty str")
    with _lock:
        broker = _running.get(name)
        if broker is not None and broker.running:
            return broker
        broker = _start(name, backend if backend is not None else f"memory://{name}")
        _running[name] = broker
        return broker


def is_running(name: str) -> bool:
    """True when the embedded broker ``name`` runs in this process."""
    with _lock:
        broker = _running.get(name)
        return broker is not None and broker.running


def shutdown(name: str | None = None) -> None:
    """Stop the embedded broker ``name`` (every one when None); what it held
    is gone. A name that is not running is ignored."""
    with _lock:
        names = list(_running) if name is None else [name]
        brokers = [_running.pop(n) for n in names if n in _running]
    for broker in brokers:
        broker.stop()


def _start(name: str, backend_url: str) -> EmbeddedBroker:
    io = LoopThread(f"roger-embedded-broker-{name}")

    async def connect_backend() -> Connection:
        return await connect(backend_url)

    server = WireServer(connect_backend)
    try:
        io.submit(server.start()).result(START_TIMEOUT)
    except concurrent.futures.TimeoutError:
        io.stop()
        raise TimeoutError(f"the embedded broker {name!r} did not start") from None
    except BaseException:
        io.stop()
        raise
    return EmbeddedBroker(
        name, server.url, server.port, server.username, server.password, server, io
    )
