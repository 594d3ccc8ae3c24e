"""The broker's own share of enqueue-to-start latency: raw aiormq, no job
framework, publish (with a confirm, as Roger's enqueue) to delivery, on a
quorum queue (what a Roger work queue is) and on a classic queue (what
Dramatiq's are).

Run::

    python -m bench.broker_latency
    python -m bench.broker_latency --samples 500 --interval 0.02

Each sample publishes one persistent message carrying ``perf_counter()``
to a fresh queue that one consumer (another connection) acks; the next is
sent once it arrived, ``--interval`` seconds later. Printed: p50 and p90
in ms per queue type. Whatever a job system adds comes on top of these
figures. A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import aiormq

from bench.common import check_loopback_url, percentile
from bench.partitions import DEFAULT_URL


async def sample(url: str, queue_type: str, samples: int, interval: float) -> list[float]:
    """``samples`` publish-to-delivery latencies (seconds) on a new queue of ``queue_type``."""
    consumer = await aiormq.connect(url)
    producer = await aiormq.connect(url)
    queue = f"bench-broker-latency-{queue_type}-{uuid.uuid4().hex[:8]}"
    try:
        channel = await consumer.channel()
        publish = await producer.channel()
        await channel.queue_declare(queue, durable=True, arguments={"x-queue-type": queue_type})
        latencies: list[float] = []
        arrived = asyncio.Event()

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            latencies.append(time.perf_counter() - float(message.body))
            await channel.basic_ack(message.delivery.delivery_tag)
            arrived.set()

        consume = await channel.basic_consume(queue, on_message)
        persistent = aiormq.spec.Basic.Properties(delivery_mode=2)
        for _ in range(samples):
            arrived.clear()
            body = repr(time.perf_counter()).encode()
            await publish.basic_publish(body, routing_key=queue, properties=persistent)
            await asyncio.wait_for(arrived.wait(), 10)
            await asyncio.sleep(interval)  # the sending pace
        await channel.basic_cancel(consume.consumer_tag)
        await channel.queue_delete(queue)
        return latencies
    finally:
        await producer.close()
        await consumer.close()


def main(argv: list[str] | None = None) -> int:
    """Measure both queue types; print their p50 and p90."""
    parser = argparse.ArgumentParser(prog="python -m bench.broker_latency", description=__doc__)
    parser.add_argument("--samples", type=int, default=300, help="per queue type (300)")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between (0.02)")
    parser.add_argument("--url", default=os.environ.get("ROGER_BENCH_URL", DEFAULT_URL))
    args = parser.parse_args(argv)
    check_loopback_url(args.url)
    if args.samples < 1 or args.interval < 0:
        parser.error("--samples must be >= 1 and --interval >= 0")
    for queue_type in ("quorum", "classic"):
        seconds = asyncio.run(sample(args.url, queue_type, args.samples, args.interval))
        ms = [1000 * s for s in seconds]
        print(
            f"{queue_type:>8}: p50 {percentile(ms, 50):.2f} ms, p90 {percentile(ms, 90):.2f} ms "
            f"({len(ms)} samples)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
