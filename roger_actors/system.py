"""Roger's System (connection status for now).

Holds the node's own AMQP connection to the broker and reports whether it
is up; reconnects with back-off when it drops. A node is *active* until
``set_inactive`` (the first step of a graceful shutdown). The cluster-wide
part of Roger's System (the ``system`` fanout exchange, ``call``/``cast``
across nodes) builds on this actor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from thespian.actors import WatchMessage

from supervision import From, Server

from .config import Config
from .transport.amqp import AmqpLink, LinkLost
from .transport.backoff import Backoff
from .transport.loop import LoopThread

log = logging.getLogger("roger_actors.system")


@dataclass(frozen=True)
class IsConnected:
    """Call: True while the node's broker connection is up."""


@dataclass(frozen=True)
class IsActive:
    """Call: True until ``SetInactive``."""


@dataclass(frozen=True)
class SetInactive:
    """Call: mark the node inactive (it is shutting down)."""


class System(Server):
    """Broker connection status and the node's active flag."""

    def init(self, config: Config) -> None:
        """Start connecting (in the background)."""
        self.connected = False
        self.active = True
        self.backoff = Backoff()
        self.io = LoopThread("roger-system")
        self.link = AmqpLink(
            config.amqp.url(), self.io.post, config.amqp.connection_timeout_seconds or 10.0
        )
        self.watch_fileno(self.io.fileno)
        self._connect()

    def _connect(self) -> None:
        async def connect() -> None:
            try:
                await self.link.connect()
            except Exception as exc:
                self.io.post(("failed", repr(exc)))
            else:
                self.io.post(("connected", None))

        self.io.submit(connect())

    def handle_call(self, request: Any, from_: From) -> Any:
        """IsConnected, IsActive, SetInactive."""
        if isinstance(request, IsConnected):
            return self.connected
        if isinstance(request, IsActive):
            return self.active
        if isinstance(request, SetInactive):
            self.active = False
            return None
        return super().handle_call(request, from_)

    def handle_info(self, message: Any) -> None:
        """Connection events and reconnect timers."""
        if isinstance(message, WatchMessage):
            for event in self.io.drain():
                self._on_event(event)
        elif message == "reconnect":
            self._connect()
        else:
            super().handle_info(message)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, LinkLost) or (isinstance(event, tuple) and event[0] == "failed"):
            if self.connected or isinstance(event, tuple):
                log.warning("broker connection down: %s", event)
            self.connected = False
            self.send_after(self.backoff.next(), "reconnect")
        elif isinstance(event, tuple) and event[0] == "connected":
            self.connected = True
            self.backoff.reset()

    def terminate(self, reason: Any) -> None:
        """Close the connection and the I/O thread."""
        try:
            self.io.submit(self.link.close()).result(timeout=5)
        except Exception:
            log.debug("closing the system link failed", exc_info=True)
        self.io.stop()
