"""Specification: the confirms of a pipelined batch on aiormq
(``AiormqChannel.publish_many``) are plain futures that one future of the
channel's store stands for: when the channel or its connection closes, each
confirm still pending takes the closing error (as a transport error), and
none is left waiting.

Run with ``scripts/test tests/unit/test_pipelined_confirms.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roger_actors.transport.aiormq_transport import _confirms
from roger_actors.transport.base import ConnectionLost


def _run(body: Any) -> Any:
    return asyncio.run(body())


Waiting = tuple[list["asyncio.Future[Any]"], "asyncio.Future[Any]", "asyncio.Task[Any]"]


def _waiting(count: int) -> Waiting:
    """``count`` pending confirms, the channel's closing future, and the
    task of ``_confirms`` waiting on them (call it on the running loop)."""
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(count)]
    closed = loop.create_future()
    return futures, closed, asyncio.ensure_future(_confirms(futures, closed))


def test_the_outcomes_are_the_confirms_in_the_order_of_the_futures() -> None:
    async def body() -> list[Any]:
        futures, closed, waiting = _waiting(3)
        futures[2].set_result("ack-3")
        futures[0].set_result("ack-1")
        error = ValueError("nack")
        futures[1].set_exception(error)
        outcomes = await waiting
        assert not closed.done()
        return [outcomes[0], outcomes[1] is error, outcomes[2]]

    assert _run(body) == ["ack-1", True, "ack-3"]


def test_a_closing_channel_fails_every_pending_confirm_with_its_error() -> None:
    async def body() -> list[Any]:
        futures, closed, waiting = _waiting(3)
        futures[0].set_result("ack-1")
        await asyncio.sleep(0)
        closed.set_exception(ConnectionResetError("gone"))
        return await asyncio.wait_for(waiting, 5)

    first, *rest = _run(body)
    assert first == "ack-1"
    assert [type(outcome) for outcome in rest] == [ConnectionLost] * 2
    assert "gone" in str(rest[0])


def test_a_channel_closed_without_a_reason_fails_the_confirms_as_connection_lost() -> None:
    async def body() -> list[Any]:
        _, closed, waiting = _waiting(2)
        await asyncio.sleep(0)
        closed.set_exception(Exception())  # aiormq's reject_all(None)
        return await asyncio.wait_for(waiting, 5)

    assert [type(outcome) for outcome in _run(body)] == [ConnectionLost] * 2


def test_a_closing_future_cancelled_without_an_error_still_frees_the_confirms() -> None:
    async def body() -> list[Any]:
        _, closed, waiting = _waiting(1)
        await asyncio.sleep(0)
        closed.cancel()
        return await asyncio.wait_for(waiting, 5)

    [outcome] = _run(body)
    assert isinstance(outcome, ConnectionLost)


def test_a_cancelled_caller_leaves_no_confirm_waiter_behind() -> None:
    async def body() -> bool:
        futures, _, waiting = _waiting(1)
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return futures[0].cancelled()

    assert _run(body) is True
