"""An asyncio event loop for one actor's I/O, bridged to the actor.

An actor that does asynchronous I/O (aiormq) owns an I/O loop: coroutines
run on it; whatever they want the actor to know is :meth:`~Inbox.post`-ed
into an inbox, and the actor is woken with a ``WatchMessage``, on which it
calls :meth:`~Inbox.drain` and handles every event in order. Only the actor
touches actor state; only the loop's thread touches the asyncio objects.
Two kinds, one interface (:data:`IoLoop`):

- :class:`LoopThread`: a loop in a daemon thread of its own, for an actor
  with a process (or thread) of its own (multiprocTCPBase). A post writes
  a byte to a socket pair whose read end the actor watches with
  ``ThespianWatch`` (:attr:`~LoopThread.fileno`).
- :class:`InlineLoop`: the loop the actor itself runs on (a light actor,
  :mod:`supervision.light`): no thread, no socket and no hop; the actor's
  handlers and its coroutines take turns on one thread. The first post
  of a loop round schedules one wake-up at the end of the round (the
  ``wake`` callable, which sends the actor ``WatchMessage([])``), so
  every event of the round, say every delivery of one socket read, is
  handled in one go. Its :meth:`~InlineLoop.submit` futures must never be
  waited for with a blocking ``result()`` (that would stop the loop):
  :attr:`~InlineLoop.inline` tells the actor so.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from supervision import light

log = logging.getLogger("roger_actors.amqp")

T = TypeVar("T")


class Inbox:
    """Events for the actor, oldest first; how the actor is woken is the
    subclass's (:meth:`_wake` on a post, :meth:`_woken` on a drain)."""

    def __init__(self) -> None:
        self._inbox: collections.deque[Any] = collections.deque()

    def post(self, event: Any) -> None:
        """Queue ``event`` for the actor and wake it."""
        self._inbox.append(event)
        self._wake()

    def drain(self, limit: int | None = None) -> list[Any]:
        """Take the queued events, oldest first, at most ``limit`` of them
        (None: all); when some are left, the actor is woken again for them,
        after what else waits its turn (actor thread)."""
        # Order matters: first take the wake-up, then empty the inbox. An
        # event posted after the wake-up was taken wakes the actor again;
        # one posted before is still in the inbox when it is emptied.
        self._woken()
        events: list[Any] = []
        inbox = self._inbox
        while inbox and (limit is None or len(events) < limit):
            events.append(inbox.popleft())
        if inbox:
            self._wake()
        return events

    def _wake(self) -> None:
        raise NotImplementedError

    def _woken(self) -> None:
        raise NotImplementedError


class _SocketInbox(Inbox):
    """An inbox that wakes its actor through a socket pair (any thread posts)."""

    def __init__(self) -> None:
        super().__init__()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._signalled = threading.Event()

    @property
    def fileno(self) -> int:
        """The descriptor the actor watches; readable when events wait in the inbox."""
        return self._reader.fileno()

    def _wake(self) -> None:
        if not self._signalled.is_set():
            self._signalled.set()
            with contextlib.suppress(BlockingIOError, OSError):
                self._writer.send(b"\0")

    def _woken(self) -> None:
        # Consume the wake-up bytes, then clear the flag (see drain).
        with contextlib.suppress(BlockingIOError, OSError):
            while self._reader.recv(4096):
                pass
        self._signalled.clear()

    def close_inbox(self) -> None:
        """Close the socket pair; later posts are kept and never read."""
        with contextlib.suppress(Exception):
            self._reader.close()
            self._writer.close()


class LoopThread(_SocketInbox):
    """A daemon thread running an asyncio loop, with an inbox for the actor."""

    #: Futures of :meth:`submit` may be waited for from the actor's thread.
    inline = False

    def __init__(self, name: str = "roger-io") -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def alive(self) -> bool:
        """True until :meth:`stop` ended the loop thread."""
        return self._thread.is_alive()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop (from any thread); returns a concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, fn: Any, *args: Any) -> None:
        """Run a plain callable on the loop thread."""
        self.loop.call_soon_threadsafe(fn, *args)

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
        self.close_inbox()


class TaskFuture(concurrent.futures.Future[T]):
    """The concurrent future of an :class:`InlineLoop` task: cancelling it
    cancels the task."""

    def __init__(self, task: asyncio.Task[T]) -> None:
        super().__init__()
        self.task = task
        task.add_done_callback(self._settle)

    def _settle(self, task: asyncio.Task[T]) -> None:
        if self.done():
            return
        if task.cancelled():
            super().cancel()
            self.set_running_or_notify_cancel()
        elif task.exception() is not None:
            self.set_exception(task.exception())
        else:
            self.set_result(task.result())

    def cancel(self) -> bool:
        self.task.cancel()
        return super().cancel()


class InlineLoop(Inbox):
    """The I/O loop of an actor that runs on ``loop`` itself (a light actor):
    :class:`LoopThread`'s interface with no thread. Call every method,
    :meth:`post` included, from the loop's thread.

    ``wake()`` wakes the actor (sends it ``WatchMessage([])``); it is
    called once per loop round that posted something, at the end of that
    round, and not after :meth:`stop`.

    :meth:`stop` cancels the tasks :meth:`submit` started that still run;
    :meth:`detach` runs a coroutine that outlives the actor (a link's close
    in ``terminate``)."""

    #: Futures of :meth:`submit` must not be waited for (see the module doc).
    inline = True

    def __init__(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        super().__init__()
        self.loop = loop
        self.wake = wake
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False
        #: A wake-up is scheduled or sent and not taken by a drain yet.
        self._pending = False

    def _wake(self) -> None:
        if not self._pending:
            self._pending = True
            self.loop.call_soon(self._ring)

    def _ring(self) -> None:
        if self._pending and not self._stopped:
            self.wake()

    def _woken(self) -> None:
        self._pending = False

    def close_inbox(self) -> None:
        """Nothing to close: later posts are kept and never read."""

    @property
    def alive(self) -> bool:
        """True until :meth:`stop`."""
        return not self._stopped

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` as a task on the loop (it runs once the caller
        returns to the loop); its future cancels the task when cancelled.
        After :meth:`stop`, ``coro`` is closed unrun and the future is
        cancelled."""
        if self._stopped:
            coro.close()
            future: concurrent.futures.Future[T] = concurrent.futures.Future()
            future.cancel()
            return future
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return TaskFuture(task)

    def detach(self, coro: Coroutine[Any, Any, Any], timeout: float, what: str) -> None:
        """Run ``coro`` on the loop for at most ``timeout`` seconds, owned by
        nobody (:meth:`stop` leaves it be); a failure or the timeout is logged
        at debug level, naming ``what``."""

        async def bounded() -> None:
            try:
                await asyncio.wait_for(coro, timeout)
            except BaseException:
                log.debug("%s failed", what, exc_info=True)

        light.last_words(self.loop.create_task(bounded()))

    def call_soon(self, fn: Any, *args: Any) -> None:
        """Run a plain callable on the loop soon (after the caller returns)."""
        self.loop.call_soon(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the tasks still running and close the inbox; the loop runs
        on (it is shared). ``timeout`` is unused (for :class:`LoopThread`'s
        signature)."""
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        self.close_inbox()


#: What an I/O actor runs its coroutines on.
IoLoop = LoopThread | InlineLoop


def connect_in_background(io: IoLoop, link: Any) -> None:
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
