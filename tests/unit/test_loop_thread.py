"""The I/O bridge between an asyncio thread and an actor."""

from __future__ import annotations

import threading

from roger_actors.transport.loop import LoopThread


def test_submitted_coroutines_run_on_the_loop_thread() -> None:
    bridge = LoopThread()
    try:

        async def where() -> str:
            return threading.current_thread().name

        assert bridge.submit(where()).result(5) == "roger-io"
    finally:
        bridge.stop()
