"""Specification: an aiormq connection of the transport queues up to
``FRAME_BUFFER`` frames for its writer and each of its channels as many for
its reader, not aiormq's default of 10.

A connection reads its frames in order and waits at a channel whose queue is
full, so with 10 one partition's deliveries held back every other
partition's on a shared connection (the light base), and every few frames of
a burst of publishes or acks waited for the writer. The effect is measured,
not asserted (``python -m bench.fairness``: a quiet tenant's p50 wait behind
a loud one's backlog went from 120 ms to 14 ms); this pins the setting on a
real connection.

Run with ``scripts/test tests/integration/test_transport_buffers.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from roger_actors.transport.aiormq_transport import FRAME_BUFFER, connect_aiormq
from tests.partition_harness import BROKER

pytestmark = pytest.mark.timeout(60)


def test_a_connection_and_its_channels_queue_frame_buffer_frames() -> None:
    async def run() -> tuple[int, int, int]:
        connection = await connect_aiormq(BROKER)
        try:
            confirmed = await connection.channel()
            plain = await connection.channel(publisher_confirms=False)
            return (
                connection.raw.write_queue.maxsize,
                confirmed.raw.frames.maxsize,
                plain.raw.frames.maxsize,
            )
        finally:
            await connection.close()

    assert asyncio.run(run()) == (FRAME_BUFFER, FRAME_BUFFER, FRAME_BUFFER)
    assert FRAME_BUFFER >= 1024
