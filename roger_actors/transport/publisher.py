"""Publishing from ordinary code (producers, the facade): a blocking, thread-safe
publisher over its own AMQP connection with publisher confirms."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from roger_actors.errors import InvalidJobError

from .amqp import DEFAULT_DELIVERY_LIMIT, AmqpLink, BrokerAddresses, properties
from .base import Nacked
from .loop import LoopThread


class Publisher:
    """Publish messages and wait for the broker's confirm.

    ``url`` is one broker URL or several (a sequence, or a string separated
    by commas: the nodes of one RabbitMQ cluster). Connects lazily to the
    first address that answers and reconnects on the next publish after a
    connection loss, starting with the address after the one last used.
    Every method blocks the calling thread at most ``timeout`` seconds, except
    that connecting may take ``timeout`` per address tried (it then raises
    :class:`ConnectionError` naming them).
    :meth:`publish` (jobs) refuses bodies over ``max_payload_bytes`` (the
    node's config value; ``None``: no limit). Work queues it declares get
    ``delivery_limit`` (the config key) as their ``x-delivery-limit``.
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

    def publish(self, routing_key: str, body: bytes, props: dict[str, Any]) -> None:
        """Publish ``body`` to the work queue ``routing_key`` (default exchange) and
        wait for the confirm; ``props`` by AMQP name.

        The queue is declared first (once per publisher), so a job enqueued
        before any node started its partition waits in the queue instead of
        being dropped by the broker. A body larger than ``max_payload_bytes``
        raises :class:`~roger_actors.errors.InvalidJobError` (naming both
        sizes) and nothing is sent.
        """
        if self.max_payload_bytes is not None and len(body) > self.max_payload_bytes:
            raise InvalidJobError(
                f"Job payload is {len(body)} bytes, larger than max_payload_bytes "
                f"({self.max_payload_bytes} bytes)"
            )
        if routing_key not in self.declared:
            self.run("declare_work_queue", routing_key, self.delivery_limit)
            self.declared.add(routing_key)
        try:
            self._publish_confirmed(routing_key, body, props)
        except (Nacked, ConnectionError):
            # Nacked: right after a broker node of a cluster died, a channel
            # may go on getting nacks for a quorum queue whose leader moved
            # (seen for up to a minute here). The next publish gets a new
            # connection (the next address first) instead of the same channel.
            self.drop_link()
            raise

    def drop_link(self) -> None:
        """Close the connection; the next operation opens a new one."""
        with self._lock:
            link, self._link = self._link, None
            if link is not None and self._io is not None:
                with contextlib.suppress(Exception):
                    self._io.submit(link.close()).result(self.timeout)

    def _publish_confirmed(self, routing_key: str, body: bytes, props: dict[str, Any]) -> None:
        self.run(
            "publish",
            routing_key,
            body,
            properties(
                message_id=props.get("message_id"),
                app_id=props.get("app_id"),
                headers=props.get("headers"),
                content_type=props.get("content_type"),
                persistent=props.get("delivery_mode", 2) == 2,
            ),
        )

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
