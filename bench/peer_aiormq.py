"""The ceiling: a bare aiormq consume-and-ack loop, with no job framework at all.

Client side: the harness publishes persistent messages with aiormq on a
channel without publisher confirms (like Dramatiq's and Celery's defaults).
The body is a small JSON object holding the enqueue time (or null).

Worker side (``python -m bench.peer_aiormq --queue Q --prefetch C``): one
process, one connection, one channel with ``basic.qos(prefetch_count=C)``.
Each delivery decodes its JSON body, runs the shared no-op
(:func:`bench.jobsink.JobSink.record`) and acks that delivery alone (no
``multiple`` acks, no batching). Nothing any real job system needs (payload
validation, retries, bookkeeping) is done, so this is the most a Python
consumer on this broker and machine can be expected to reach.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import aiormq
import aiormq.abc
from pamqp.commands import Basic

from bench.common import (
    DEFAULT_URL,
    BenchConfig,
    BenchError,
    PeerRunner,
    check_loopback_url,
)
from bench.jobsink import sink_from_env

PERSISTENT = Basic.Properties(delivery_mode=2)


def _body(enqueued_at: float | None) -> bytes:
    """The message body of one job."""
    return json.dumps({"enqueued_at": enqueued_at}).encode()


class AiormqRunner(PeerRunner):
    """Raw aiormq: publish with aiormq, consume with the loop in this module's ``main``."""

    name = "aiormq"

    def __init__(self, config: BenchConfig) -> None:
        """See :class:`bench.common.PeerRunner`."""
        super().__init__(config)
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self.notes["prefetch"] = self.config.concurrency

    @property
    def channel(self) -> aiormq.abc.AbstractChannel:
        """The publishing channel."""
        if self._channel is None:
            raise BenchError("aiormq client is not open")
        return self._channel

    def _open_client(self) -> None:
        """Connect and open a channel without publisher confirms."""
        self._connection = self.bridge.run(aiormq.connect(self.config.url))
        self._channel = self.bridge.run(self._connection.channel(publisher_confirms=False))

    def _declare(self) -> None:
        """Declare a durable queue with no arguments."""
        self.bridge.run(self.channel.queue_declare(self.queue, durable=True))

    def _publish(self, enqueued_at: float | None) -> None:
        """Publish one persistent job to the default exchange."""
        self.bridge.run(
            self.channel.basic_publish(
                _body(enqueued_at), routing_key=self.queue, properties=PERSISTENT
            )
        )

    async def _publish_many(self, n: int) -> None:
        """Publish ``n`` jobs one after the other from one coroutine."""
        channel, queue = self.channel, self.queue
        body = _body(None)
        for _ in range(n):
            await channel.basic_publish(body, routing_key=queue, properties=PERSISTENT)

    def _publish_throughput_jobs(self, n: int) -> None:
        """Publish ``n`` jobs in one run of the event loop (an async app's natural loop)."""
        self.bridge.run(self._publish_many(n), timeout=self.config.phase_timeout)

    def _close_client(self) -> None:
        """Close the publishing connection."""
        if self._connection is not None:
            self.bridge.run(self._connection.close(), timeout=5.0)
        self._connection = None
        self._channel = None

    def _worker_argv(self) -> list[str]:
        """Run this module as the worker."""
        return [
            sys.executable,
            "-m",
            "bench.peer_aiormq",
            "--url",
            self.config.url,
            "--queue",
            self.queue,
            "--prefetch",
            str(self.config.concurrency),
            "--max-seconds",
            str(int(self.config.startup_timeout + 3 * self.config.phase_timeout)),
        ]


async def consume(url: str, queue: str, prefetch: int, max_seconds: float) -> int:
    """Consume ``queue`` until SIGTERM/SIGINT or ``max_seconds``, acking each job after it ran.

    Returns 0 after a requested stop, 1 if the broker closed the connection
    (the harness then sees the worker exit and fails the trial).
    """
    sink = sink_from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        await channel.basic_qos(prefetch_count=prefetch)

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            sink.record(json.loads(message.body)["enqueued_at"])
            tag = message.delivery_tag
            if tag is not None:
                await channel.basic_ack(tag)

        await channel.basic_consume(queue, on_message, no_ack=False)
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait(
            [stopped, connection.closing], timeout=max_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        stopped.cancel()
        if not done:
            print(f"aiormq worker: stopping after {max_seconds} s", file=sys.stderr)
        elif stopped not in done:
            print("aiormq worker: the broker closed the connection", file=sys.stderr)
            return 1
        return 0
    finally:
        if not connection.is_closed:
            await connection.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process."""
    parser = argparse.ArgumentParser(description="bare aiormq consume-and-ack worker")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--prefetch", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)
    return asyncio.run(
        consume(check_loopback_url(args.url), args.queue, args.prefetch, args.max_seconds)
    )


if __name__ == "__main__":
    sys.exit(main())
