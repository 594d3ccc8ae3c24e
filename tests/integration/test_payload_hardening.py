"""Integration specification of hostile payloads on a real node and broker:
oversized headers and bodies, execution keys and names AMQP refuses, bounds
on max_workers (the security review's H5, M2, M3, M7)."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

import roger_actors as roger
from roger_actors import Queue
from roger_actors import node as roger_node
from roger_actors.partition.consumer import Status
from roger_actors.partition.headers import DROPPED_HEADERS_HEADER, kept_headers
from roger_actors.partition.settler import INVALID_HEADER
from tests.partition_harness import NodeHarness, counts, drain, holds_for, publish_raw, wait_for
from tests.roger_test_jobs2 import KeyedJob, TimedJob

pytestmark = pytest.mark.timeout(60)

MAX_PAYLOAD = 4096


@pytest.fixture
def h(h: NodeHarness) -> NodeHarness:
    """The harness of conftest, with its node started (small max_payload_bytes)."""
    h.start(max_payload_bytes=MAX_PAYLOAD)
    return h


def _consumer(pid: str) -> dict[str, Any]:
    status: dict[str, Any] = roger_node.current().consumer_call(pid, Status(), 5)
    return status


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_a_payload_with_headers_near_frame_max_goes_to_invalid_and_the_connection_stays_up(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 2})
    before = _consumer(pid)
    work = Queue.make_name(pid, "default")
    body = cbor2.dumps({"v": 1, "id": "big-headers", "module": "x" * 2000, "args": []})
    publish_raw(work, body, headers={"pad": "p" * 130_900}, message_id="m-big")
    good = h.enqueue(TimedJob, pid, "good-1", 0.1)

    invalid = Queue.invalid_name(pid, "default")
    wait_for(lambda: (counts(invalid) or (0, 0))[0] == 1, what="the payload in .invalid")
    h.wait_tags("after_run", {"good-1"})
    wait_for(lambda: (counts(work) or (1, 0))[0] == 0, what="work queue empty (all acked)")
    holds_for(lambda: len(h.events("before_run")) == 1, 1.5, "the good job ran exactly once")
    after = _consumer(pid)
    assert after["connected"] and after["pid"] == before["pid"]
    assert {e["tag"] for e in h.events("before_run")} == {"good-1"} and good.id

    [(moved, headers, message_id)] = drain(invalid)
    assert moved == body and message_id == "m-big"
    assert "pad" not in headers and int(headers[DROPPED_HEADERS_HEADER]) > 130_000
    reason = _text(headers[INVALID_HEADER])
    assert reason.startswith("Job module name is too long") and len(reason) <= 256


def test_small_headers_are_kept_when_a_payload_is_set_aside() -> None:
    assert kept_headers({"x-trace": "abc", "n": 3}) == {"x-trace": "abc", "n": 3}
    dropped = kept_headers({"big": "b" * 5000})
    assert list(dropped) == [DROPPED_HEADERS_HEADER] and dropped[DROPPED_HEADERS_HEADER] > 5000
    assert kept_headers({}) == {}


def test_a_body_over_max_payload_bytes_is_set_aside_without_decoding(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 1})
    work = Queue.make_name(pid, "default")
    body = cbor2.dumps({"v": 1, "id": "big", "module": TimedJob.__module__ + ".TimedJob",
                        "args": [h.journal, "too-big", "x" * MAX_PAYLOAD]})
    publish_raw(work, body, message_id="m-too-big")
    h.enqueue(TimedJob, pid, "after-big", 0)

    h.wait_tags("after_run", {"after-big"})
    invalid = Queue.invalid_name(pid, "default")
    wait_for(lambda: (counts(invalid) or (0, 0))[0] == 1, what="the big payload in .invalid")
    [(moved, headers, _)] = drain(invalid)
    assert moved == body
    assert f"larger than max_payload_bytes ({MAX_PAYLOAD} bytes)" in _text(headers[INVALID_HEADER])
    assert "too-big" not in h.tags("before_run")


def test_enqueue_refuses_a_payload_over_max_payload_bytes_before_publishing(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 1})
    job = roger.Job.create(TimedJob, [h.journal, "x" * MAX_PAYLOAD, 0])
    size = rf"larger than max_payload_bytes \({MAX_PAYLOAD}"
    with pytest.raises(roger.InvalidJobError, match=size):
        roger.Job.enqueue(job, pid)
    assert roger.Consumer.get_queues(pid)["default"]["message_count"] == 0


def test_two_jobs_with_an_execution_key_amqp_names_refuse_both_run_in_order(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 2})
    key = "clé-42"
    first = roger.Job.create(KeyedJob, [h.journal, "k1", 0.5, None, key])
    second = roger.Job.create(KeyedJob, [h.journal, "k2", 0, None, key])
    roger.Job.enqueue(first, pid)
    h.wait_events("start", 1)
    roger.Job.enqueue(second, pid)

    h.wait_tags("end", {"k1", "k2"})
    order = [(e["event"], e["tag"]) for e in h.events() if e["event"] in ("start", "end")]
    assert order == [("start", "k1"), ("end", "k1"), ("start", "k2"), ("end", "k2")]


def test_partition_start_refuses_bad_partition_ids_and_max_workers_past_the_bound(
    h: NodeHarness,
) -> None:
    for bad in ("мой", "a=b", "tenant-ü"):
        with pytest.raises(ValueError, match="may contain only ASCII letters"):
            roger.Partition.start(bad, {"default": 1})
    pid = h.partition_id("w")
    with pytest.raises(ValueError, match="max_workers must be an int >= 0 and <= 1000"):
        roger.Partition.start(pid, {"default": 10**9})
    assert pid not in roger.Partition.partitions()["running"]
