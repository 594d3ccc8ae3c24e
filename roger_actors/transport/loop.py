"""An asyncio event loop in a thread, bridged to one Thespian actor.

An actor that does asynchronous I/O (aiormq) owns a :class:`LoopThread`:
coroutines run on the loop thread; whatever they want the actor to know is
:meth:`post`-ed into an inbox and a byte is written to a socket pair whose
read end the actor watches with ``ThespianWatch``. On the resulting
``WatchMessage`` the actor calls :meth:`drain` and handles every event in
order. Only the actor thread touches actor state; only the loop thread
touches the asyncio objects.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """A daemon thread running an asyncio loop, with an inbox for the actor."""

    def __init__(self, name: str = "roger-io") -> None:
        self.loop = asyncio.new_event_loop()
        self._inbox: collections.deque[Any] = collections.deque()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._signalled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def alive(self) -> bool:
        """True until :meth:`stop` ended the loop thread."""
        return self._thread.is_alive()

    @property
    def fileno(self) -> int:
        """The descriptor the actor watches; readable when events wait in the inbox."""
        return self._reader.fileno()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop (from any thread); returns a concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, fn: Any, *args: Any) -> None:
        """Run a plain callable on the loop thread."""
        self.loop.call_soon_threadsafe(fn, *args)

    def post(self, event: Any) -> None:
        """Queue ``event`` for the actor and wake it (any thread)."""
        self._inbox.append(event)
        if not self._signalled.is_set():
            self._signalled.set()
            with contextlib.suppress(BlockingIOError, OSError):
                self._writer.send(b"\0")

    def drain(self) -> list[Any]:
        """Take every queued event, oldest first (actor thread)."""
        # Order matters: consume the wake-up bytes, then clear the flag, then
        # empty the inbox. An event posted after the flag is cleared sends a
        # new byte; one posted before is still in the inbox when it is emptied.
        with contextlib.suppress(BlockingIOError, OSError):
            while self._reader.recv(4096):
                pass
        self._signalled.clear()
        events = []
        while self._inbox:
            events.append(self._inbox.popleft())
        return events

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, join the thread and close the loop (pending tasks are cancelled)."""
        if not self._thread.is_alive():
            return

        def _cancel_all() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_soon(self.loop.stop)

        self.loop.call_soon_threadsafe(_cancel_all)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            # Closed here, not by the loop's __del__ at interpreter exit, when
            # its self-pipe may already be gone (a traceback on stderr).
            with contextlib.suppress(Exception):
                self.loop.close()
        with contextlib.suppress(Exception):
            self._reader.close()
            self._writer.close()


def connect_in_background(io: LoopThread, link: Any) -> None:
    """Connect ``link`` (an :class:`~roger_actors.transport.amqp.AmqpLink`) on
    ``io``'s loop; post ``("connected", None)`` to ``io``'s inbox when it is
    up, or ``("failed", repr(error))``."""

    async def connect() -> None:
        try:
            await link.connect()
        except Exception as exc:
            io.post(("failed", repr(exc)))
        else:
            io.post(("connected", None))

    io.submit(connect())
