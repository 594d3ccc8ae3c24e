"""Specification: what a Consumer writes on the broker and in Global when a
delivery ends (``roger_actors.partition.settler``): an outcome's copy, then
the queue key freed, then the ack; a payload set aside in ``.invalid``; a
cancel mark cleared. On the in-memory broker, with Global's pure state
answering.

Run with ``scripts/test tests/unit/test_settler.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from roger_actors.job import Job
from roger_actors.partition import consumer_core, settler
from roger_actors.partition.lease import LeaseKeeper
from roger_actors.queue import Queue
from roger_actors.transport.base import NotFound
from tests.memory_rig import PID, QUEUE, Clock, Rig


class QueueKeyed(Job):
    retryable = True

    def perform(self, args: Any) -> Any:
        return None

    def queue_key(self, args: Any) -> str | None:
        return args[0]


def _settler(rig: Rig, clock: Clock | None = None) -> settler.Settler:
    keeper = LeaseKeeper(
        rig.link, PID, 60.0, lambda key: Queue.make_name(PID, key), lambda headers: headers
    )
    return settler.Settler(rig.link, keeper, PID, rig.ask, lambda: 4096, clock or Clock())


def _queued(rig: Rig, key: str) -> None:
    rig.state.apply(PID, "is_queued", [key, True])


def test_an_outcome_is_published_then_its_queue_key_freed_then_acked(rig: Rig) -> None:
    job = Job.create(QueueKeyed, ["qk"], id="j1")
    _queued(rig, "qk")
    delivery = rig.deliver(job)
    copy = consumer_core.CopyTo(f"{PID}-{QUEUE}-retry-1", {}, b"next copy")
    effect = consumer_core.RecordThenAck(copy=copy, free_queue_key="qk")
    rig.run(_settler(rig).record(delivery, job, "error", effect))
    [published] = rig.get_all(copy.queue)
    assert published.body == b"next copy" and published.properties.message_id == "j1"
    ops = [op for op, _ in rig.asked]
    assert ops == ["remove_queued"] and rig.state.queued == set()
    rig.reconnect()  # acked: it does not come back
    assert rig.messages(rig.work_queue) == 0


def test_an_outcome_whose_channel_is_gone_records_nothing_and_acks_nothing(rig: Rig) -> None:
    job = Job.create(QueueKeyed, ["qk"], id="j1")
    _queued(rig, "qk")
    delivery = rig.deliver(job)
    rig.reconnect()  # the broker took the delivery back: its copy gets an outcome of its own
    copy = consumer_core.CopyTo(f"{PID}-{QUEUE}-retry-1", {}, b"next copy")
    effect = consumer_core.RecordThenAck(copy=copy, free_queue_key="qk")
    rig.run(_settler(rig).record(delivery, job, "error", effect))
    assert rig.asked == [] and rig.state.queued == {"qk"}
    with pytest.raises(NotFound):  # not even declared
        rig.messages(copy.queue)
    assert rig.messages(rig.work_queue) == 1  # the broker holds the job again


def test_a_queue_key_is_freed_once_global_answers_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settler, "FREE_RETRY_SECONDS", 0.01)
    job = Job.create(QueueKeyed, ["qk"], id="j1")
    _queued(rig, "qk")
    delivery = rig.deliver(job)
    answers = iter([TimeoutError("no Global"), TimeoutError("no Global"), None])
    real_ask = rig.ask

    async def flaky(op: str, args: list[Any]) -> Any:
        error = next(answers)
        if error is not None:
            raise error
        return await real_ask(op, args)

    settle = _settler(rig)
    settle.ask = flaky
    rig.run(settle.free_queue_key("qk", delivery))
    assert rig.state.queued == set()


def test_a_free_global_refuses_is_given_up(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    delivery = rig.deliver(Job.create(QueueKeyed, ["qk"], id="j1"))
    rig.global_error = ValueError("bad key")
    rig.run(_settler(rig).free_queue_key("qk", delivery))
    assert len(rig.asked) == 1
    assert "refused to free queue key" in caplog.text


def test_a_payload_set_aside_goes_to_invalid_with_its_reason_frees_its_key_and_is_acked(
    rig: Rig,
) -> None:
    job = Job.create(QueueKeyed, ["qk"], id="j1")
    _queued(rig, "qk")
    delivery = rig.deliver(job)
    rig.run(_settler(rig).set_aside(delivery, "x" * 1000))
    [moved] = rig.get_all(Queue.invalid_name(PID, QUEUE))
    assert moved.body == job.encode()
    assert moved.properties.headers[settler.INVALID_HEADER] == "x" * settler.INVALID_REASON_CHARS
    assert rig.state.queued == set()
    rig.reconnect()
    assert rig.messages(rig.work_queue) == 0


def test_a_payload_set_aside_without_freeing_keeps_its_queue_key(rig: Rig) -> None:
    job = Job.create(QueueKeyed, ["qk"], id="j1")
    _queued(rig, "qk")
    rig.run(_settler(rig).set_aside(rig.deliver(job), "why", free_key=False))
    assert rig.state.queued == {"qk"} and rig.asked == []


def test_clear_cancel_is_true_once_and_then_frees_the_queue_key(rig: Rig) -> None:
    job = Job.create(QueueKeyed, ["qk"], id="j1")
    _queued(rig, "qk")
    rig.state.apply(PID, "cancel_job", ["j1"])
    delivery = rig.deliver(job)
    settle = _settler(rig)
    assert rig.run(settle.clear_cancel(job, delivery)) is True
    assert rig.state.queued == set() and "j1" not in rig.state.cancelled
    _queued(rig, "qk")
    assert rig.run(settle.clear_cancel(job, delivery)) is False  # cleared already
    assert rig.state.queued == {"qk"}


def test_a_job_given_back_comes_back_as_a_fresh_copy(rig: Rig) -> None:
    job = Job.create(QueueKeyed, ["qk"], id="j1")
    rig.run(_settler(rig).give_back(rig.deliver(job)))
    again = rig.delivered("j1")
    assert not again.redelivered  # a fresh copy, not a requeue


def test_invalid_payload_lines_are_rate_limited_then_counted(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    settle = _settler(rig, clock)
    with caplog.at_level(logging.WARNING, logger="roger_actors.consumer"):
        for n in range(25):
            settle.note_invalid(f"bad {n}")
        clock.now += settler.INVALID_LOG_WINDOW + 1
        settle.note_invalid("bad again")
    lines = [r.getMessage() for r in caplog.records]
    assert sum("invalid job payload set aside" in line for line in lines) == 11
    assert any("15 more invalid job payloads set aside" in line for line in lines)
