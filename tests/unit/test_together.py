"""Specification: ``roger_actors.transport.amqp.together`` runs a link's steps
at once and ends when every one has ended.

Run with ``scripts/test tests/unit/test_together.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from roger_actors.transport.amqp import together


async def _step(value: str, delay: float, ended: list[str], error: bool = False) -> str:
    await asyncio.sleep(delay)
    ended.append(value)
    if error:
        raise ValueError(value)
    return value


def test_the_results_come_in_the_order_given() -> None:
    ended: list[str] = []
    results = asyncio.run(together(_step("slow", 0.02, ended), _step("fast", 0.0, ended)))
    assert results == ["slow", "fast"]
    assert ended == ["fast", "slow"], "run at once, not one after the other"


def test_an_error_is_raised_once_every_step_has_ended() -> None:
    ended: list[str] = []
    with pytest.raises(ValueError, match="first"):
        asyncio.run(
            together(
                _step("first", 0.0, ended, error=True),
                _step("late", 0.02, ended),
                _step("second", 0.01, ended, error=True),
            )
        )
    assert sorted(ended) == ["first", "late", "second"]


def test_a_cancelled_call_cancels_its_steps() -> None:
    ended: list[str] = []

    async def go() -> None:
        task = asyncio.create_task(together(_step("a", 0.5, ended), _step("b", 0.5, ended)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.6)

    asyncio.run(go())
    assert ended == []
