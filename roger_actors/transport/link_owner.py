"""The glue between an actor and its AMQP link, written once.

The node's I/O actors (the Consumer, Global's server, System and
ApplySystem) each own an I/O loop (:mod:`~roger_actors.transport.loop`: a
:class:`~roger_actors.transport.loop.LoopThread` of their own, or, for a
light actor, an :class:`~roger_actors.transport.loop.InlineLoop` on the
loop it runs on) and an :class:`~roger_actors.transport.amqp.AmqpLink` on
it. They share the same lifecycle:

1. at ``init``, :meth:`LinkOwner.open_link` makes the I/O loop, the link
   (its events are posted to the loop's inbox) and the reconnect
   :class:`~roger_actors.transport.backoff.Backoff`; the actor is woken
   (``WatchMessage``) when the loop posts events: a LoopThread's inbox
   has a file descriptor the actor watches, an InlineLoop sends the actor
   ``WatchMessage([])`` once per loop round that posted;
2. the actor connects (:meth:`LinkOwner.connect_link` posts
   ``("connected", None)`` or ``("failed", repr(error))``; Global connects
   with its own coroutine);
3. when the link is down (``LinkLost``, a failed connect),
   :meth:`LinkOwner.reconnect_later` sends the actor ``"reconnect"`` after
   the next back-off delay (0.5 s doubling up to 10 s), and
   :meth:`LinkOwner.link_up` starts the back-off over once connected; the
   actor's ``handle_info`` answers ``"reconnect"`` by connecting again;
4. at ``terminate``, :meth:`LinkOwner.close_link` runs the actor's last
   words (a coroutine: a final publish, say), then closes the link (unacked
   deliveries go back to their queues), each bounded, then stops the I/O
   loop. On a :class:`LoopThread` it waits for them (at most
   ``CLOSE_SECONDS`` more than the last words' bound); on an
   :class:`InlineLoop` they run after ``terminate`` returns (waiting would
   stop the loop they run on).

What an actor does once connected, or when the link is lost, stays its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from thespian.actors import WatchMessage

from supervision import light
from supervision.errors import SupervisionError

from .amqp import AmqpLink
from .backoff import Backoff
from .loop import InlineLoop, IoLoop, LoopThread, connect_in_background
from .shared import shared_connections

if TYPE_CHECKING:
    from supervision.server import TimerRef

log = logging.getLogger("roger_actors.amqp")

#: Seconds :meth:`LinkOwner.close_link` waits for the link to close.
CLOSE_SECONDS = 5.0

__all__ = ["CLOSE_SECONDS", "LinkOwner"]


class LinkOwner:
    """Mixin for a :class:`supervision.Server` that owns an AMQP link on a
    loop thread (see the module docstring); list it after ``Server`` among
    the bases. It uses the server's
    ``watch_fileno`` and ``send_after``; it sets ``io``, ``link`` and
    ``backoff``."""

    io: IoLoop
    link: AmqpLink
    backoff: Backoff

    if TYPE_CHECKING:  # provided by supervision.Server, which comes first in the MRO

        myAddress: Any

        def send(self, target: Any, message: Any) -> None: ...

        def watch_fileno(self, fileno: int) -> None: ...

        def send_after(self, seconds: float, message: Any) -> TimerRef: ...

    def open_link(self, thread_name: str, urls: Sequence[str], timeout: float | None) -> None:
        """Make the I/O loop (the loop thread ``thread_name``, or for a light
        actor an :class:`InlineLoop` on its own loop, whose links share
        connections: :mod:`~roger_actors.transport.shared`), the link to ``urls``
        (failing over among them; ``timeout`` seconds per connection attempt,
        a falsy value: 10 s) and the back-off, and watch a LoopThread's inbox.
        Connects nothing yet. Raises what starting a thread raises."""
        self.backoff = Backoff()
        shared = None
        try:
            loop = light.loop_of(self)
        except SupervisionError:
            self.io = LoopThread(thread_name)
        else:
            self.io = InlineLoop(loop, self._io_ready)
            shared = shared_connections(loop)
        self.link = AmqpLink(list(urls), self.io.post, timeout or 10.0, shared)
        if isinstance(self.io, LoopThread):
            self.watch_fileno(self.io.fileno)

    def _io_ready(self) -> None:
        """An :class:`InlineLoop`'s wake-up: events wait in its inbox."""
        self.send(self.myAddress, WatchMessage([]))

    def connect_link(self) -> None:
        """Connect the link in the background; the outcome comes as
        ``("connected", None)`` or ``("failed", repr(error))`` in the loop's
        inbox. Never raises."""
        connect_in_background(self.io, self.link)

    def reconnect_later(self) -> None:
        """Send this actor ``"reconnect"`` after the next back-off delay."""
        self.send_after(self.backoff.next(), "reconnect")

    def link_up(self) -> None:
        """The link is connected: the next loss waits the shortest delay again."""
        self.backoff.reset()

    def close_link(
        self,
        what: str,
        last: Coroutine[Any, Any, Any] | None = None,
        last_seconds: float = 0.0,
    ) -> None:
        """Run ``last`` for at most ``last_seconds``, then close the link for
        at most :data:`CLOSE_SECONDS` (a failure or a timeout of either is
        logged at debug level, naming ``what``), then stop the I/O loop. On
        an :class:`InlineLoop` both run after this returns. For
        ``terminate``; never raises."""
        link = self.link

        async def closing() -> None:
            if last is not None:
                try:
                    await asyncio.wait_for(last, last_seconds)
                except BaseException:
                    log.debug("the last words of the %s link failed", what, exc_info=True)
            await asyncio.wait_for(link.close(), CLOSE_SECONDS)

        io = self.io
        if isinstance(io, InlineLoop):
            io.stop()
            io.detach(closing(), last_seconds + CLOSE_SECONDS + 1, f"closing the {what} link")
            return
        try:
            io.submit(closing()).result(timeout=last_seconds + CLOSE_SECONDS + 1)
        except Exception:
            log.debug("closing the %s link failed", what, exc_info=True)
        io.stop()
