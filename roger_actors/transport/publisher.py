"""Publishing from ordinary code (producers, the facade): a blocking, thread-safe
publisher over its own AMQP connection with publisher confirms."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from .amqp import DEFAULT_DELIVERY_LIMIT, AmqpLink, BrokerAddresses
from .loop import LoopThread


class Publisher:
    """A broker connection for ordinary code: :meth:`run_on_link` runs an
    operation of its :class:`~.amqp.AmqpLink` (a confirmed publish, a Global
    request, a declare) on its own I/O thread and waits for the result.

    ``url`` is one broker URL or several (a sequence, or a string separated
    by commas: the nodes of one RabbitMQ cluster). Connects lazily to the
    first address that answers and reconnects on the next operation after a
    connection loss, starting with the address after the one last used.
    Every method blocks the calling thread at most ``timeout`` seconds, except
    that connecting may take ``timeout`` per address tried (it then raises
    :class:`ConnectionError` naming them).
    It carries, for the jobs published over it
    (:class:`~roger_actors.enqueue.JobPublisher`), the node's
    ``max_payload_bytes`` (``None``: no limit), ``delivery_limit`` (the
    ``x-delivery-limit`` of the work queues declared) and the work queues
    already :attr:`declared`.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        timeout: float = 10.0,
        max_payload_bytes: int | None = None,
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
    ) -> None:
        self.url = url
        self.addresses = BrokerAddresses(url)
        self.delivery_limit = delivery_limit
        self.timeout = timeout
        self.max_payload_bytes = max_payload_bytes
        self._io: LoopThread | None = None
        self._link: AmqpLink | None = None
        self._lock = threading.Lock()
        #: Work queues declared on this publisher's connections (each once).
        self.declared: set[str] = set()

    def _ensure(self) -> tuple[LoopThread, AmqpLink]:
        if self._io is None:
            self._io = LoopThread("roger-publisher")
        if self._link is None or not self._link.is_open:
            link = AmqpLink(self.addresses, lambda event: None, self.timeout)
            future = self._io.submit(link.connect())
            try:
                future.result((link.connect_timeout or self.timeout) + 1)
            except BaseException:
                future.cancel()
                raise
            self._link = link
        return self._io, self._link

    def run(self, operation: str, *args: Any) -> Any:
        """Run ``AmqpLink.<operation>(*args)`` on the connection; return its result."""
        return self.run_on_link(lambda link, *a: getattr(link, operation)(*a), *args)

    def run_on_link(self, operation: Any, *args: Any, timeout: float | None = None) -> Any:
        """Run ``await operation(link, *args)`` on the connection; return its result.
        Waits at most ``timeout`` seconds (default: the publisher's)."""
        with self._lock:
            io, link = self._ensure()
            try:
                return io.submit(operation(link, *args)).result(timeout or self.timeout)
            except BaseException:
                if not link.is_open:
                    self._link = None
                raise

    def drop_link(self) -> None:
        """Close the connection; the next operation opens a new one."""
        with self._lock:
            link, self._link = self._link, None
            if link is not None and self._io is not None:
                with contextlib.suppress(Exception):
                    self._io.submit(link.close()).result(self.timeout)

    def close(self) -> None:
        """Close the connection and stop the I/O thread."""
        with self._lock:
            if self._io is not None:
                if self._link is not None:
                    try:
                        self._io.submit(self._link.close()).result(self.timeout)
                    except Exception:
                        pass
                self._io.stop()
            self._io, self._link = None, None
