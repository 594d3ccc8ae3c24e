"""Fuzzing a live partition: at least 10,000 hostile payloads, with hostile
headers, published into a work queue on the real broker. Every one must end
in ``.invalid``, the Consumer must never restart, and a valid job enqueued
afterwards must run (the security review's H4/H5/M3 end to end)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiormq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from pamqp import commands as spec

import roger_actors as roger
from roger_actors import Queue
from roger_actors import node as roger_node
from roger_actors.partition.consumer import Status
from tests import hostile_payloads
from tests.partition_harness import BROKER, NodeHarness, counts, wait_for
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(120)

MAX_PAYLOAD = 4096
#: Payloads drawn by hypothesis; each gives 4 (hostile_payloads.variants).
DRAWN = 2600
AT_LEAST = 10_000


def _hostile_messages() -> list[tuple[bytes, dict[str, Any] | None]]:
    """Draw payloads and headers with hypothesis; keep only payloads that are
    no valid job here (a random mutation may stay valid)."""
    drawn: list[tuple[bytes, dict[str, Any] | None]] = []

    @settings(
        max_examples=DRAWN,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=hostile_payloads.payloads(MAX_PAYLOAD), headers=hostile_payloads.headers)
    def draw(data: bytes, headers: dict[str, Any] | None) -> None:
        for variant in hostile_payloads.variants(data):
            if len(variant) <= MAX_PAYLOAD:
                try:
                    roger.Job.decode(variant)
                except roger.InvalidJobError:
                    pass
                else:
                    continue
            drawn.append((variant, headers))

    draw()
    return drawn


async def _publish_all(queue: str, messages: list[tuple[bytes, dict[str, Any] | None]]) -> None:
    """Publish on one channel with confirms, many in flight at once."""
    connection = await aiormq.connect(BROKER + "?name=roger-test-fuzz")
    try:
        channel = await connection.channel(publisher_confirms=True)
        for start in range(0, len(messages), 500):
            confirms = await asyncio.gather(
                *(
                    channel.basic_publish(
                        body,
                        routing_key=queue,
                        properties=spec.Basic.Properties(
                            headers=headers, message_id=f"fuzz-{start + i}", delivery_mode=2
                        ),
                    )
                    for i, (body, headers) in enumerate(messages[start : start + 500])
                )
            )
            assert all(isinstance(c, spec.Basic.Ack) for c in confirms)
    finally:
        await connection.close()


def test_ten_thousand_hostile_payloads_all_go_to_invalid_and_the_consumer_never_restarts(
    h: NodeHarness,
) -> None:
    started = time.monotonic()
    h.start(max_payload_bytes=MAX_PAYLOAD)
    pid = h.start_partition({"default": 25})
    consumer_pid = roger_node.current().consumer_call(pid, Status(), 5)["pid"]
    messages = _hostile_messages()
    assert len(messages) >= AT_LEAST
    drawn_at = time.monotonic()

    work, invalid = Queue.make_name(pid, "default"), Queue.invalid_name(pid, "default")
    asyncio.run(_publish_all(work, messages))
    wait_for(
        lambda: (counts(invalid) or (0, 0))[0] >= len(messages),
        60,
        what=f"{len(messages)} payloads in .invalid",
        interval=0.5,
    )
    assert (counts(invalid) or (0, 0))[0] == len(messages)
    assert (counts(work) or (1, 0))[0] == 0

    h.enqueue(TimedJob, pid, "valid-after-fuzz", 0)
    h.wait_tags("after_run", {"valid-after-fuzz"})
    status = roger_node.current().consumer_call(pid, Status(), 5)
    assert status["pid"] == consumer_pid and status["connected"]
    assert h.tags("before_run") == {"valid-after-fuzz"}
    print(
        f"\nfuzzed {len(messages)} payloads into {pid}: 0 Consumer restarts; drawing "
        f"{drawn_at - started:.1f} s (with node start), total {time.monotonic() - started:.1f} s"
    )
