"""Broker connections shared by the links of one event loop.

On the light base a partition host runs every partition's I/O actors on
one event loop. Each :class:`~roger_actors.transport.amqp.AmqpLink` there
gets a :class:`ConnectionView` instead of a connection of its own: a
:class:`~roger_actors.transport.base.Connection` whose channels are opened
on a connection shared with the other links of the loop to the same broker
URLs (so a tenant costs channels, not connections). Per loop, one
:class:`SharedConnections`:

- **Joining**: :meth:`SharedConnections.open` gives a view on an open
  connection to those URLs that has room (fewer than
  :data:`VIEWS_PER_CONNECTION` views and :data:`CHANNELS_PER_CONNECTION`
  channels: RabbitMQ's ``channel_max`` is 2,047 by default), else opens a
  new one; links opening at the same time wait for one connect.
- **A view's close** closes the channels opened through it (their unacked
  deliveries go back to their queues) and calls its close callbacks with
  None; the connection closes with its last view.
- **The connection's loss** (a broker restart, ``close_connection``, the
  network) is fanned out: every view on it closes and its close callbacks
  get the :class:`~roger_actors.transport.base.ConnectionLost`, so each link
  posts its own ``LinkLost`` and reconnects (the first one to reconnect
  opens the next shared connection, the others join it).

What the broker ties to a connection outlives a view: an exclusive queue
declared through a view is deleted only when the shared connection closes,
so a link deletes the exclusive queues it owns itself when it closes
(:meth:`~roger_actors.transport.amqp.AmqpLink.own_queue`). Use everything
here from its loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence

from . import scratch
from .base import Channel, CloseCallback, Connection, ConnectionLost
from .scratch import ScratchChannels

log = logging.getLogger("roger_actors.amqp")

#: Views (links) one shared connection takes at most.
VIEWS_PER_CONNECTION = 400
#: Channels a shared connection takes new views with (RabbitMQ's channel_max
#: is 2,047 by default; a view opens a few more after it joined).
CHANNELS_PER_CONNECTION = 1_500
#: Spare scratch channels a shared connection keeps for its links (each
#: closed after :data:`~roger_actors.transport.scratch.SPARE_SECONDS` unused).
SPARES_PER_CONNECTION = 32

__all__ = [
    "CHANNELS_PER_CONNECTION",
    "SPARES_PER_CONNECTION",
    "VIEWS_PER_CONNECTION",
    "ConnectionView",
    "SharedConnections",
    "shared_connections",
]


#: Makes a new connection (a link's :meth:`BrokerAddresses.connect`, failing over).
ConnectFn = Callable[[], Awaitable[Connection]]


class _Shared:
    """One real connection and the views on it."""

    def __init__(self, key: tuple[str, ...], connection: Connection) -> None:
        self.key = key
        self.connection = connection
        self.views: set[ConnectionView] = set()
        self.channels = 0
        #: The links' spare scratch channels, on the connection itself (a
        #: view's close leaves them to the other views).
        self.scratch = ScratchChannels(
            functools.partial(self.open_channel, publisher_confirms=False),
            max_spares=SPARES_PER_CONNECTION,
            idle_seconds=scratch.SPARE_SECONDS,
        )

    async def open_channel(self, *, publisher_confirms: bool) -> Channel:
        """A channel on the connection, counted in :attr:`channels` until it closes."""
        channel = await self.connection.channel(publisher_confirms=publisher_confirms)
        self.channels += 1

        def uncount(_: BaseException | None) -> None:
            self.channels -= 1

        channel.add_close_callback(uncount)
        return channel

    @property
    def has_room(self) -> bool:
        return (
            not self.connection.is_closed
            and len(self.views) < VIEWS_PER_CONNECTION
            and self.channels < CHANNELS_PER_CONNECTION
        )


class ConnectionView(Connection):
    """A link's share of a shared connection (see the module docstring)."""

    def __init__(self, pool: SharedConnections, shared: _Shared) -> None:
        self._pool = pool
        self._shared = shared
        self._channels: set[Channel] = set()
        self._callbacks: list[CloseCallback] = []
        self._closed = False

    @property
    def shared(self) -> Connection:
        """The connection this view's channels are on."""
        return self._shared.connection

    @property
    def scratch(self) -> ScratchChannels:
        """The spare scratch channels of the shared connection, for every
        view on it (an operation holds its channel alone; see
        :mod:`~roger_actors.transport.scratch`)."""
        return self._shared.scratch

    @property
    def is_closed(self) -> bool:
        """True once the view was closed or its connection is."""
        return self._closed or self._shared.connection.is_closed

    @property
    def frame_max(self) -> int:
        """The shared connection's negotiated frame size."""
        return self._shared.connection.frame_max

    def add_close_callback(self, callback: CloseCallback) -> None:
        """Call ``callback`` once when the view closes: None for :meth:`close`,
        the ConnectionLost when the shared connection was lost."""
        if self._closed:
            callback(None)
            return
        self._callbacks.append(callback)

    async def channel(self, *, publisher_confirms: bool = True) -> Channel:
        """Open a channel on the shared connection, closed with this view.
        Raises ConnectionLost when the view or its connection is closed."""
        if self.is_closed:
            raise ConnectionLost("the connection is closed")
        channel = await self._shared.open_channel(publisher_confirms=publisher_confirms)
        if self._closed:  # closed while the channel opened
            with contextlib.suppress(Exception):
                await channel.close()
            raise ConnectionLost("the connection is closed")
        self._channels.add(channel)
        channel.add_close_callback(lambda _: self._channels.discard(channel))
        return channel

    async def close(self) -> None:
        """Close this view's channels; the shared connection closes with its
        last view. Closing a closed view does nothing."""
        if self._closed:
            return
        channels = list(self._channels)
        self._end(None)
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close()
        await self._pool._left(self._shared)

    def _end(self, error: BaseException | None) -> None:
        """Mark the view closed and call its close callbacks with ``error``."""
        if self._closed:
            return
        self._closed = True
        self._shared.views.discard(self)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(error)
            except Exception:
                log.exception("a connection close callback failed")


class SharedConnections:
    """The shared connections of one event loop (see the module docstring)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, ...], list[_Shared]] = {}
        self._opening: dict[tuple[str, ...], asyncio.Future[_Shared]] = {}

    def connections(self) -> list[Connection]:
        """The shared connections open now."""
        return [s.connection for entries in self._open.values() for s in entries]

    async def open(self, key: Sequence[str], connect: ConnectFn) -> ConnectionView:
        """A view on a shared connection for the broker URLs ``key``: one with
        room, else a new one made by ``connect()`` (links asking meanwhile
        wait for that one). Raises what ``connect`` raises."""
        urls = tuple(key)
        while True:
            for shared in self._open.get(urls, []):
                if shared.has_room:
                    return self._view(shared)
            pending = self._opening.get(urls)
            if pending is None:
                break
            try:
                await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this caller was cancelled, not the connect it waited for
            except Exception:
                pass  # that connect failed: try one of our own
        future: asyncio.Future[_Shared] = asyncio.get_running_loop().create_future()
        self._opening[urls] = future
        try:
            connection = await connect()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: the waiters only retry
            raise
        finally:
            self._opening.pop(urls, None)
        shared = _Shared(urls, connection)
        self._open.setdefault(urls, []).append(shared)
        connection.add_close_callback(lambda error: self._lost(shared, error))
        future.set_result(shared)
        return self._view(shared)

    def _view(self, shared: _Shared) -> ConnectionView:
        view = ConnectionView(self, shared)
        shared.views.add(view)
        return view

    def _lost(self, shared: _Shared, error: BaseException | None) -> None:
        """The shared connection closed: every view on it ends with ``error``."""
        entries = self._open.get(shared.key, [])
        if shared in entries:
            entries.remove(shared)
            if not entries:
                self._open.pop(shared.key, None)
        shared.scratch.clear()
        lost = error if error is not None else ConnectionLost("the shared connection closed")
        for view in list(shared.views):
            view._end(lost)

    async def _left(self, shared: _Shared) -> None:
        """A view closed: close the connection if it was the last one."""
        if shared.views or shared.connection.is_closed:
            return
        self._lost(shared, None)
        with contextlib.suppress(Exception):
            await shared.connection.close()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedConnections] = (
    weakref.WeakKeyDictionary()
)


def shared_connections(loop: asyncio.AbstractEventLoop) -> SharedConnections:
    """The shared connections of ``loop`` (made on first use)."""
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = SharedConnections()
    return pool
