"""Roger's ShutdownHandler: the graceful part of stopping a node.

On ``GracefulStop(timeout)`` it marks the node inactive, makes every
partition stop taking jobs (safe stop: jobs not yet started go back to the
broker), and waits until the running jobs are done, at most ``timeout``
seconds. It then answers; the application's ordered shutdown follows, which
kills the workers of jobs still running: their deliveries were never acked,
so those jobs come back to their queues.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from supervision import NOREPLY, From, Server
from supervision.protocol import CallReply, WhichChildren

from .registry import DrainPartition, Partitions
from .system import SetInactive

log = logging.getLogger("roger_actors.shutdown")

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class GracefulStop:
    """Call: stop taking jobs everywhere, wait for running ones (at most ``timeout`` s)."""

    timeout: float


class ShutdownHandler(Server):
    """See the module docstring."""

    def init(self) -> None:
        """Find the registry and System (siblings)."""
        self.siblings: dict[Any, Any] = {}
        self.lookup = self.call_async(self.parent, WhichChildren())
        self.waiter: From | None = None
        self.deadline = 0.0
        self.poll_ref = ""
        self.stopping: set[str] = set()

    def handle_call(self, request: Any, from_: From) -> Any:
        """GracefulStop."""
        if isinstance(request, GracefulStop):
            if "registry" not in self.siblings:
                return "not-ready"
            log.info("graceful stop: waiting up to %s s for running jobs", request.timeout)
            self.waiter = from_
            self.deadline = time.monotonic() + request.timeout
            if "system" in self.siblings:
                self.call_async(self.siblings["system"], SetInactive())
            self.poll_ref = self.call_async(self.siblings["registry"], Partitions())
            self.stopping.clear()
            return NOREPLY
        return super().handle_call(request, from_)

    def handle_info(self, message: Any) -> None:
        """Replies from siblings; polls until the partitions are gone."""
        if isinstance(message, CallReply):
            if message.ref == self.lookup and message.ok:
                self.siblings = {info.id: info.address for info in message.value}
            elif message.ref == self.poll_ref and self.waiter is not None:
                self._progress(message.value if message.ok else {})
        elif message == "poll" and self.waiter is not None:
            self.poll_ref = self.call_async(self.siblings["registry"], Partitions())
        else:
            super().handle_info(message)

    def _progress(self, listed: dict[str, dict[str, Any]]) -> None:
        partitions = set(listed.get("running", {})) | set(listed.get("waiting", {}))
        for pid in partitions - self.stopping:
            log.info("graceful stop: partition %s stops taking jobs", pid)
            self.call_async(self.siblings["registry"], DrainPartition(pid))
            self.stopping.add(pid)
        if not partitions or time.monotonic() >= self.deadline:
            if partitions:
                log.warning(
                    "graceful stop: deadline reached with partitions %s still running; "
                    "their running jobs go back to the queues",
                    sorted(partitions),
                )
            else:
                log.info("graceful stop: every partition is done")
            assert self.waiter is not None
            self.reply(self.waiter, sorted(partitions))
            self.waiter = None
            return
        self.send_after(POLL_SECONDS, "poll")
