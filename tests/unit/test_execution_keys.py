"""Specification: a Consumer's execution keys on the broker and in Global
(``roger_actors.partition.execution_keys``): take or park, hand over on
release, sweeps, take-over from a dead holder, reassertion after a reconnect.
On the in-memory broker, with Global's pure state answering.

Run with ``scripts/test tests/unit/test_execution_keys.py``.
"""

from __future__ import annotations

from typing import Any

from roger_actors.job import Job
from roger_actors.partition import execution_fence
from roger_actors.partition.execution_keys import (
    ORIGIN_HEADER,
    ExecutionKeys,
    waiting_queue_name,
)
from tests.memory_rig import PID, QUEUE, Clock, Rig


class Keyed(Job):
    def perform(self, args: Any) -> Any:
        return None

    def execution_key(self, args: Any) -> str | None:
        return args[0]


class Plain(Job):
    def perform(self, args: Any) -> Any:
        return None


def _keys(rig: Rig, clock: Clock | None = None) -> ExecutionKeys:
    return ExecutionKeys(rig.link, PID, rig.ask, lambda: 4096, clock or Clock())


def _gate(rig: Rig, keys: ExecutionKeys, job: Job) -> tuple[str, str]:
    token = keys.new_token()
    return rig.run(keys.gate(job, rig.deliver(job), token)), token


def test_a_job_without_an_execution_key_goes_without_asking_global(rig: Rig) -> None:
    keys = _keys(rig)
    assert _gate(rig, keys, Job.create(Plain, [], id="j1"))[0] == "go"
    assert rig.asked == []


def test_the_first_job_takes_the_key_with_its_token_and_the_next_is_parked(rig: Rig) -> None:
    keys = _keys(rig)
    verdict, token = _gate(rig, keys, Job.create(Keyed, ["k"], id="j1"))
    assert verdict == "go"
    assert rig.state.executing == {"k": "j1"} and rig.state.holders == {"k": token}
    assert keys.present  # its presence queue is held on this connection
    assert _gate(rig, keys, Job.create(Keyed, ["k"], id="j2"))[0] == "parked"
    [parked] = rig.get_all(waiting_queue_name(PID, "k"))
    assert parked.properties.message_id == "j2"
    assert parked.properties.headers[ORIGIN_HEADER] == QUEUE
    rig.reconnect()  # only j1, taken and not acked (it runs), goes back; j2 was acked
    assert [m.properties.message_id for m in rig.get_all(rig.work_queue)] == ["j1"]


def test_tokens_are_unique_and_name_the_incarnation() -> None:
    rig = Rig()
    try:
        keys = _keys(rig)
        first, second = keys.new_token(), keys.new_token()
        assert first != second
        assert execution_fence.incarnation_of(first) == keys.incarnation
        assert _keys(rig).incarnation != keys.incarnation
    finally:
        rig.close()


def test_release_hands_the_key_to_the_first_waiting_job_which_goes_back_to_its_queue(
    rig: Rig,
) -> None:
    keys = _keys(rig)
    _, token = _gate(rig, keys, Job.create(Keyed, ["k"], id="j1"))
    _gate(rig, keys, Job.create(Keyed, ["k"], id="j2"))
    _gate(rig, keys, Job.create(Keyed, ["k"], id="j3"))
    assert rig.run(keys.release("k", "j1", token)) is None
    assert rig.state.executing == {"k": "j2"}  # reserved for the first in line
    assert rig.messages(waiting_queue_name(PID, "k")) == 1  # j3 waits on
    back = rig.delivered("j2")  # on its work queue again, from the waiting queue
    assert back.key == QUEUE and ORIGIN_HEADER not in back.headers


def test_release_with_nobody_waiting_frees_the_key(rig: Rig) -> None:
    keys = _keys(rig)
    _, token = _gate(rig, keys, Job.create(Keyed, ["k"], id="j1"))
    assert rig.run(keys.release("k", "j1", token)) is None
    assert rig.state.executing == {}


def test_release_of_a_key_another_delivery_holds_leaves_it_and_the_waiting_job(
    rig: Rig,
) -> None:
    keys = _keys(rig)
    _gate(rig, keys, Job.create(Keyed, ["k"], id="j1"))
    _gate(rig, keys, Job.create(Keyed, ["k"], id="j2"))
    assert rig.run(keys.release("k", "j1", "some-other.1")) is None
    assert rig.state.executing == {"k": "j1"}
    assert rig.messages(waiting_queue_name(PID, "k")) == 1


def test_release_while_global_does_not_answer_returns_what_to_try_again(rig: Rig) -> None:
    keys = _keys(rig)
    _, token = _gate(rig, keys, Job.create(Keyed, ["k"], id="j1"))
    _gate(rig, keys, Job.create(Keyed, ["k"], id="j2"))
    rig.global_error = TimeoutError("no Global")
    assert rig.run(keys.release("k", "j1", token)) == ("k", "j1", token)
    assert rig.messages(waiting_queue_name(PID, "k")) == 1  # j2 still first in line
    rig.global_error = None
    assert rig.run(keys.release("k", "j1", token)) is None
    assert rig.state.executing == {"k": "j2"}


def test_a_gate_global_does_not_answer_is_failed_and_leaves_the_delivery(rig: Rig) -> None:
    keys = _keys(rig)
    rig.global_error = TimeoutError("no Global")
    assert _gate(rig, keys, Job.create(Keyed, ["k"], id="j1"))[0] == "failed"
    rig.reconnect()  # not acked: the broker has it again
    assert rig.messages(rig.work_queue) == 1


def test_a_sweep_moves_the_first_waiting_job_once_the_key_is_free(rig: Rig) -> None:
    keys = _keys(rig)
    assert rig.run(keys.sweep("k")) == "empty"
    _, token = _gate(rig, keys, Job.create(Keyed, ["k"], id="j1"))
    _gate(rig, keys, Job.create(Keyed, ["k"], id="j2"))
    assert rig.run(keys.sweep("k")) == "busy"
    assert rig.messages(waiting_queue_name(PID, "k")) == 1  # still first in line
    rig.state.apply(PID, "give_execution", ["k", "j1", token, None])  # freed, nobody told
    assert rig.run(keys.sweep("k")) == "moved"
    assert rig.state.executing == {"k": "j2"}
    assert rig.messages(waiting_queue_name(PID, "k")) == 0


def test_a_key_whose_holder_has_no_presence_is_seized_after_the_grace_period(rig: Rig) -> None:
    clock = Clock()
    keys = _keys(rig, clock)
    dead = "deadbeef.1"  # a Consumer incarnation with no presence queue
    rig.state.apply(PID, "take_execution", ["k", "j0", dead])
    _gate(rig, keys, Job.create(Keyed, ["k"], id="j1"))  # parked behind the dead holder
    assert rig.run(keys.sweep("k")) == "busy"  # first seen absent now
    clock.now += execution_fence.GRACE_SECONDS - 1
    assert rig.run(keys.sweep("k")) == "busy"
    clock.now += 2
    assert rig.run(keys.sweep("k")) == "moved"
    assert rig.state.executing == {"k": "j1"}


def test_a_holder_whose_consumer_is_present_is_never_seized(rig: Rig) -> None:
    clock = Clock()
    holder, waiter = _keys(rig, clock), _keys(rig, clock)
    _gate(rig, holder, Job.create(Keyed, ["k"], id="j1"))
    _gate(rig, waiter, Job.create(Keyed, ["k"], id="j2"))
    for _ in range(3):
        clock.now += execution_fence.GRACE_SECONDS
        assert rig.run(waiter.sweep("k")) == "busy"
    assert rig.state.executing == {"k": "j1"}


def test_reassert_takes_the_keys_again_and_names_the_tokens_that_lost_theirs(rig: Rig) -> None:
    keys = _keys(rig)
    _, kept = _gate(rig, keys, Job.create(Keyed, ["a"], id="j1"))
    _, lost = _gate(rig, keys, Job.create(Keyed, ["b"], id="j2"))
    rig.state.apply(PID, "give_execution", ["b", "j2", lost, None])
    rig.state.apply(PID, "take_execution", ["b", "j9", "other.1"])  # b went elsewhere
    rig.reconnect()
    assert not keys.present  # a new connection: the presence queue is gone
    holds: list[tuple[str | None, str, str]] = [("a", "j1", kept), ("b", "j2", lost)]
    assert rig.run(keys.reassert(holds)) == [lost]
    assert keys.present
    assert rig.state.holders == {"a": kept, "b": "other.1"}
