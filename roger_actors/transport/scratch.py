"""Spare scratch channels: channels without confirms kept open for the next
short operation (a declare, a passive declare, a ``basic.get``).

Opening a channel costs a broker round trip and a few broker processes; a
partition's start runs several short operations, and a node starting a
thousand partitions would open and close thousands of channels. A
:class:`ScratchChannels` keeps up to ``max_spares`` channels that an
operation ended with cleanly, each closed after ``idle_seconds`` unused, so
that the next operation takes one instead of opening its own. An operation
holds its channel alone: two at once get two channels.

An :class:`~roger_actors.transport.amqp.AmqpLink` on a connection of its own
keeps one spare; the links sharing a connection
(:mod:`~roger_actors.transport.shared`) share that connection's spares.
Use it from its loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

from .base import Channel

__all__ = ["SPARE_SECONDS", "ScratchChannels", "close_in_background"]

#: Seconds a spare scratch channel stays open unused: the declares of a
#: partition's start reuse it; an idle connection keeps none.
SPARE_SECONDS = 5.0


#: Channels being closed in the background (kept referenced until done).
_closing: set[asyncio.Task[None]] = set()


def close_in_background(channel: Channel) -> None:
    """Close ``channel`` in a task of the running loop, unless it is closed;
    an error of the close (the channel or its connection went meanwhile) is
    dropped."""
    if channel.is_closed:
        return
    task = asyncio.get_running_loop().create_task(channel.close())
    _closing.add(task)
    task.add_done_callback(_closed)


def _closed(task: asyncio.Task[None]) -> None:
    _closing.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a channel that closed meanwhile is fine


class ScratchChannels:
    """The spare scratch channels of one connection.

    ``open_channel`` opens a new channel without confirms on that connection
    (and raises what opening one raises). At most ``max_spares`` are kept;
    each is closed once unused for ``idle_seconds``.
    """

    def __init__(
        self,
        open_channel: Callable[[], Awaitable[Channel]],
        *,
        max_spares: int,
        idle_seconds: float,
    ) -> None:
        if max_spares < 1:
            raise ValueError(f"max_spares must be at least 1, got {max_spares!r}")
        if idle_seconds <= 0:
            raise ValueError(f"idle_seconds must be positive, got {idle_seconds!r}")
        self._open_channel = open_channel
        self.max_spares = max_spares
        self.idle_seconds = idle_seconds
        #: (channel, loop time it was given back), the oldest first.
        self._spares: deque[tuple[Channel, float]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """The spares kept now (some may have been closed by the broker since)."""
        return len(self._spares)

    async def take(self) -> Channel:
        """A channel for one operation: the spare given back last that is
        still open, else a new one. Raises what opening a channel raises."""
        while self._spares:
            channel, _ = self._spares.pop()
            if not channel.is_closed:
                return channel
        return await self._open_channel()

    def give_back(self, channel: Channel) -> None:
        """Keep ``channel``, which an operation ended with cleanly, for the
        next :meth:`take` (a closed one is dropped; beyond ``max_spares`` the
        oldest spare is closed)."""
        if channel.is_closed:
            return
        loop = asyncio.get_running_loop()
        self._spares.append((channel, loop.time()))
        while len(self._spares) > self.max_spares:
            close_in_background(self._spares.popleft()[0])
        if self._timer is None:
            self._timer = loop.call_later(self.idle_seconds, self._expire)

    def forget(self) -> None:
        """Stop keeping the spares, leaving them open: they close with their
        connection, which is closing."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._spares.clear()

    def clear(self) -> None:
        """Close every spare (in the background) and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        spares, self._spares = self._spares, deque()
        for channel, _ in spares:
            with contextlib.suppress(RuntimeError):  # no running loop: closed with the connection
                close_in_background(channel)

    def _expire(self) -> None:
        """Close the spares unused for ``idle_seconds``; look again when the
        next one will be."""
        self._timer = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() - self.idle_seconds
        while self._spares and self._spares[0][1] <= deadline:
            close_in_background(self._spares.popleft()[0])
        if self._spares:
            due = self._spares[0][1] + self.idle_seconds - loop.time()
            self._timer = loop.call_later(max(due, 0.0), self._expire)
