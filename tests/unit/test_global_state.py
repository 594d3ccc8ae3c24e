"""GlobalState: the operations of Roger's Global and its snapshot, without I/O."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from roger_actors.errors import RogerError
from roger_actors.partition.consumer_core import Snapshot, parse_snapshot
from roger_actors.partition.global_client import (
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from roger_actors.partition.global_state import GlobalState

PID = "p1"


def test_cancel_job_marks_the_id_and_casts_cancel_to_the_cluster() -> None:
    state = GlobalState()
    applied = state.apply(PID, "cancel_job", ["j1"])
    assert applied.dirty and applied.casts == (("cancel", [PID, "j1"]),)
    assert state.apply(PID, "is_cancelled", ["j1", False]).value is True
    assert state.apply(PID, "is_cancelled", ["j2", False]).value is False


def test_is_cancelled_with_remove_is_true_exactly_once() -> None:
    state = GlobalState()
    state.apply(PID, "cancel_job", ["j1"])
    assert state.apply(PID, "is_cancelled", ["j1", True]).value is True
    assert state.apply(PID, "is_cancelled", ["j1", True]).value is False


def test_is_queued_with_add_reports_the_state_before_and_marks_the_key() -> None:
    state = GlobalState()
    first = state.apply(PID, "is_queued", ["k", True])
    assert first.value is False and first.dirty
    assert state.apply(PID, "is_queued", ["k", True]).value is True
    state.apply(PID, "remove_queued", ["k"])
    assert state.apply(PID, "is_queued", ["k", False]).value is False


def test_is_executing_and_remove_executed() -> None:
    state = GlobalState()
    assert state.apply(PID, "is_executing", ["e", True]).value is False
    assert state.apply(PID, "is_executing", ["e", False]).value is True
    state.apply(PID, "remove_executed", ["e"])
    assert state.apply(PID, "is_executing", ["e", False]).value is False


def test_an_execution_key_is_held_by_one_job_and_kept_by_it_on_redelivery() -> None:
    state = GlobalState()
    assert state.apply(PID, "acquire_execution", ["e", "a"]).value is True
    assert state.apply(PID, "acquire_execution", ["e", "b"]).value is False
    assert state.apply(PID, "acquire_execution", ["e", "a"]).value is True  # same job again


def test_release_hands_the_key_to_the_next_job_or_frees_it() -> None:
    state = GlobalState()
    state.apply(PID, "acquire_execution", ["e", "a"])
    assert state.apply(PID, "release_execution", ["e", "a", "b"]).value is True
    assert state.executing == {"e": "b"}
    assert state.apply(PID, "acquire_execution", ["e", "b"]).value is True
    assert state.apply(PID, "release_execution", ["e", "b", None]).value is True
    assert state.executing == {}


def test_release_by_a_job_that_does_not_hold_the_key_changes_nothing() -> None:
    state = GlobalState()
    state.apply(PID, "acquire_execution", ["e", "a"])
    assert state.apply(PID, "release_execution", ["e", "x", None]).value is False
    assert state.executing == {"e": "a"}


def test_pause_and_resume_cast_to_the_cluster_and_are_listed() -> None:
    state = GlobalState()
    assert state.apply(PID, "queue_pause", ["q"]).casts == (("queue_pause", [PID, "q"]),)
    assert state.apply(PID, "queue_get_paused", []).value == ["q"]
    assert state.apply(PID, "queue_resume", ["q"]).casts == (("queue_resume", [PID, "q"]),)
    assert state.apply(PID, "queue_get_paused", []).value == []


def test_the_snapshot_op_gives_what_a_consumer_needs() -> None:
    state = GlobalState()
    state.apply(PID, "cancel_job", ["j"])
    state.apply(PID, "queue_pause", ["q"])
    state.apply(PID, "acquire_execution", ["k", "holder"])
    assert state.apply(PID, "snapshot", []).value == {
        "cancelled": ["j"],
        "paused": ["q"],
        "executing": ["k"],
    }


@pytest.mark.parametrize(
    ("op", "args", "message"),
    [
        ("explode", [], "unknown Global operation 'explode'"),
        ("cancel_job", [], "takes 1 argument"),
        ("cancel_job", [7], "job_id must be a non-empty string"),
        ("is_queued", ["k", "yes"], "add must be a bool"),
        ("release_execution", ["e", "a", 3], "next_id must be a non-empty string"),
    ],
)
def test_bad_requests_raise_value_error_naming_the_problem(
    op: str, args: list[object], message: str
) -> None:
    state = GlobalState()
    with pytest.raises(ValueError, match=message):
        state.apply(PID, op, args)
    assert state == GlobalState()


def test_a_lone_surrogate_is_refused_by_name() -> None:
    state = GlobalState()
    with pytest.raises(ValueError, match="job_id is not valid Unicode text"):
        state.apply(PID, "cancel_job", ["\ud800"])
    assert state == GlobalState()


keys = st.sets(st.text(min_size=1, max_size=8), max_size=5)
marks = st.dictionaries(
    # Ids are valid Unicode text: CBOR carries nothing else (a lone surrogate
    # is refused by _text, see test_a_lone_surrogate_is_refused_by_name).
    st.text(
        st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 2**32 - 1),
    max_size=5,
)


@given(marks, keys, st.dictionaries(st.text(min_size=1), st.text(), max_size=5), keys)
def test_a_snapshot_round_trips(
    cancelled: dict[str, int], queued: set[str], executing: dict[str, str], paused: set[str]
) -> None:
    state = GlobalState(cancelled, queued, executing, paused)
    decoded = GlobalState.decode(state.encode())
    assert decoded == state
    assert list(decoded.cancelled) == list(cancelled)  # marking order kept


def v1(**fields: object) -> bytes:
    document: dict[str, object] = {
        "v": 1,
        "cancelled": [],
        "queued": [],
        "executing": {},
        "paused": [],
    }
    document.update(fields)
    return bytes(cbor2.dumps(document))


def v2(**fields: object) -> bytes:
    document = cbor2.loads(GlobalState().encode())
    document.update(fields)
    return bytes(cbor2.dumps(document))


def test_no_snapshot_is_an_empty_state() -> None:
    assert GlobalState.decode(None) == GlobalState()
    assert GlobalState.decode(b"") == GlobalState()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\x00", "not CBOR"),
        (cbor2.dumps({"v": 99}), "no supported version"),
        (cbor2.dumps({"v": True}), "no supported version"),
        (cbor2.dumps([1]), "not a map"),
        (cbor2.dumps({"v": 1}), r"missing keys \['cancelled', 'executing', 'paused', 'queued'\]"),
        (cbor2.dumps({"v": 2}), "missing keys"),
        (v1(extra=1), "1 unknown key"),
        (v1(cancelled="j"), "'cancelled' must be a list"),
        (v1(executing={"e": 1}), "'executing' must map"),
        (v2(cancelled="j"), "must be bytes"),
        (v2(cancelled=b"a\0b", cancelled_at=b"\0\0\0\0"), "2 cancelled ids but 1 times"),
        (v2(cancelled=b"a\0a", cancelled_at=bytes(8)), "id twice"),
        (v2(cancelled=b"\xff", cancelled_at=bytes(4)), "not UTF-8"),
        (v2(cancelled_at=bytes(3)), "whole 32-bit"),
        # What H3 wrote into roger-state.<pid>: a System reply.
        (cbor2.dumps({"v": 1, "call_id": "c", "from": "n", "ok": True, "value": 1}), "missing"),
    ],
)
def test_an_unreadable_snapshot_raises_value_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GlobalState.decode(data)


def test_a_version_1_snapshot_is_read_with_its_marks_made_at_load_time() -> None:
    state = GlobalState.decode(
        v1(cancelled=["a", "b"], queued=["q"], paused=["p"]), clock=lambda: 5_000
    )
    assert state.cancelled == {"a": 5, "b": 5}
    assert state.queued == {"q"} and state.paused == {"p"}


class Clock:
    """A settable clock in milliseconds."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_a_cancel_mark_expires_after_the_ttl() -> None:
    clock = Clock(1_000_000)
    state = GlobalState(ttl=60, clock=clock)
    state.apply(PID, "cancel_job", ["old"])
    clock.ms += 30_000
    state.apply(PID, "cancel_job", ["young"])
    clock.ms += 29_000
    assert state.apply(PID, "is_cancelled", ["old", False]).value is True
    clock.ms += 1_000  # "old" is 60 s old
    applied = state.apply(PID, "is_cancelled", ["old", False])
    assert applied.value is False and applied.dirty  # the expiry changed the state
    assert state.apply(PID, "is_cancelled", ["young", False]).value is True
    clock.ms += 30_000
    assert state.expire() == 1 and state.cancelled == {}


def test_expiry_in_counts_down_to_the_oldest_marks_expiry() -> None:
    # The active Global sleeps until then when nothing else is due.
    clock = Clock(1_000_000)
    state = GlobalState(ttl=60, clock=clock)
    assert state.expiry_in() is None
    state.apply(PID, "cancel_job", ["old"])
    clock.ms += 20_000
    state.apply(PID, "cancel_job", ["young"])
    assert state.expiry_in() == 40.0
    clock.ms += 45_000
    assert state.expiry_in() == 0.0  # overdue counts as due now
    assert state.expire() == 1
    assert state.expiry_in() == 15.0


def test_cancelling_again_renews_the_mark() -> None:
    clock = Clock(0)
    state = GlobalState(ttl=60, clock=clock)
    state.apply(PID, "cancel_job", ["a"])
    state.apply(PID, "cancel_job", ["b"])
    clock.ms = 50_000
    state.apply(PID, "cancel_job", ["a"])
    assert list(state.cancelled) == ["b", "a"]
    clock.ms = 100_000
    assert state.apply(PID, "is_cancelled", ["b", False]).value is False
    assert state.apply(PID, "is_cancelled", ["a", False]).value is True


def test_marks_keep_their_age_across_a_snapshot() -> None:
    clock = Clock(0)
    state = GlobalState(ttl=60, clock=clock)
    state.apply(PID, "cancel_job", ["a"])
    clock.ms = 61_000
    loaded = GlobalState.decode(state.encode(), ttl=60, clock=clock)
    assert loaded.apply(PID, "is_cancelled", ["a", False]).value is False


def test_an_id_with_a_nul_cannot_be_cancelled() -> None:
    with pytest.raises(ValueError, match="must not contain NUL"):
        GlobalState().apply(PID, "cancel_job", ["a\0b"])


def test_request_and_reply_wire_format() -> None:
    assert decode_request(encode_request("is_queued", ["k", True])) == ("is_queued", ["k", True])
    assert decode_reply(encode_reply(True, [1, 2])) == [1, 2]
    with pytest.raises(ValueError, match="bad"):
        decode_reply(encode_reply(False, "bad", "ValueError"))
    for body in (b"\xff", cbor2.dumps([1]), cbor2.dumps({"v": 1, "op": 3, "args": []})):
        with pytest.raises(ValueError):
            decode_request(body)


def test_a_snapshot_with_many_marks_round_trips_in_marking_order() -> None:
    state = GlobalState(clock=lambda: 7_000)
    ids = [f"job-{i:05d}-é" for i in range(3000, 0, -1)]
    for job_id in ids:
        state.apply(PID, "cancel_job", [job_id])
    state.apply(PID, "is_queued", ["k", True])
    data = state.encode()
    assert data == state.encode()  # the cached marks give the same bytes
    decoded = GlobalState.decode(data)
    assert list(decoded.cancelled) == ids and decoded.queued == {"k"}
    assert set(decoded.cancelled.values()) == {7}


@pytest.mark.parametrize(
    "body",
    [
        cbor2.dumps({"v": 1, "ok": True, "value": {"cancelled": {1, 2}}, "kind": ""}),  # a set
        cbor2.dumps({"v": 1, "ok": True, "value": cbor2.CBORTag(1, 0), "kind": ""}),  # a date
        cbor2.dumps({"ok": True, "value": 1}),  # no version
        cbor2.dumps({"v": 1, "ok": 1, "value": 1, "kind": ""}),  # ok not a bool
        encode_reply(True, 1) + b"\x00",  # trailing bytes
    ],
)
def test_a_reply_is_decoded_strictly(body: bytes) -> None:
    with pytest.raises(RogerError, match="malformed reply"):
        decode_reply(body)


def test_a_reply_to_another_request_is_refused() -> None:
    body = encode_reply(True, 1, "", "cid-1")
    assert decode_reply(body, "cid-1") == 1
    with pytest.raises(RogerError, match="another request"):
        decode_reply(body, "cid-2")


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"cancelled": [], "paused": [], "extra": 1},
        {"cancelled": "abc", "paused": []},
        {"cancelled": [1], "paused": []},
        {"cancelled": [], "paused": [""]},
        {"cancelled": [], "paused": [], "executing": [3]},
    ],
)
def test_a_consumer_refuses_a_snapshot_of_the_wrong_shape(value: object) -> None:
    with pytest.raises(ValueError, match="Global snapshot"):
        parse_snapshot(value)
    assert parse_snapshot({"cancelled": ["j"], "paused": ["q"]}) == Snapshot(("j",), ("q",))
    assert parse_snapshot({"cancelled": [], "paused": [], "executing": ["k"]}) == Snapshot(
        (), (), ("k",)
    )


def test_ids_and_keys_longer_than_255_bytes_are_refused_without_being_echoed() -> None:
    state = GlobalState()
    for op, args in [
        ("cancel_job", ["x" * 256]),
        ("is_queued", ["é" * 128, True]),
        ("is_executing", ["k" * 300, True]),
    ]:
        with pytest.raises(ValueError, match="longer than 255 bytes") as info:
            state.apply("p", op, args)
        assert "x" * 256 not in str(info.value)
    assert not state.cancelled and not state.queued and not state.executing


def test_a_huge_integer_argument_gets_a_bounded_error() -> None:
    with pytest.raises(ValueError, match="bits") as info:
        GlobalState().apply("p", "is_cancelled", ["j", 1 << 20000])
    assert len(str(info.value)) < 300


# ---------------------------------------------------------------- fencing and versions


def test_a_key_taken_with_a_token_is_refused_to_another_copy_of_the_same_job() -> None:
    state = GlobalState()
    assert state.apply(PID, "take_execution", ["e", "a", "c1.1"]).value is True
    assert state.apply(PID, "take_execution", ["e", "a", "c1.1"]).value is True  # same delivery
    assert state.apply(PID, "take_execution", ["e", "a", "c2.1"]).value == "c1.1"  # the copy
    assert state.apply(PID, "take_execution", ["e", "b", "c2.2"]).value == "c1.1"
    assert state.apply(PID, "acquire_execution", ["e", "a"]).value is False
    assert state.apply(PID, "release_execution", ["e", "a", None]).value is False
    assert state.apply(PID, "execution_holder", ["e"]).value == ["a", "c1.1"]


def test_give_hands_a_reservation_over_that_the_next_job_takes_with_its_token() -> None:
    state = GlobalState()
    state.apply(PID, "take_execution", ["e", "a", "c1.1"])
    assert state.apply(PID, "give_execution", ["e", "a", "c2.1", "b"]).value is False
    assert state.apply(PID, "give_execution", ["e", "a", "c1.1", "b"]).value is True
    assert state.apply(PID, "execution_holder", ["e"]).value == ["b", ""]
    assert state.apply(PID, "take_execution", ["e", "x", "c3.1"]).value == ""
    assert state.apply(PID, "take_execution", ["e", "b", "c3.1"]).value is True
    assert state.apply(PID, "give_execution", ["e", "b", "c3.1", None]).value is True
    assert state.executing == {} and state.holders == {}
    assert state.apply(PID, "execution_holder", ["e"]).value is None


def test_a_delivery_that_never_took_the_key_gives_up_only_a_reservation() -> None:
    state = GlobalState()
    state.apply(PID, "acquire_execution", ["e", "a"])
    assert state.apply(PID, "give_execution", ["e", "a", "", None]).value is True
    state.apply(PID, "take_execution", ["e", "a", "c1.1"])
    assert state.apply(PID, "give_execution", ["e", "a", "", None]).value is False


def test_seize_is_a_compare_and_set_on_the_dead_token() -> None:
    state = GlobalState()
    state.apply(PID, "take_execution", ["e", "a", "dead.1"])
    assert state.apply(PID, "seize_execution", ["e", "b", "other.1"]).value is False
    assert state.apply(PID, "seize_execution", ["e", "b", "dead.1"]).value is True
    assert state.executing == {"e": "b"} and state.holders == {}
    assert state.apply(PID, "seize_execution", ["e", "c", "dead.1"]).value is False
    # the dead holder's own late give-up changes nothing now
    assert state.apply(PID, "give_execution", ["e", "a", "dead.1", None]).value is False


def test_remove_executed_drops_the_holder_too() -> None:
    state = GlobalState()
    state.apply(PID, "take_execution", ["e", "a", "c1.1"])
    state.apply(PID, "remove_executed", ["e"])
    assert state.holders == {} and state.executing == {}


def test_a_snapshot_keeps_holders_and_the_version() -> None:
    state = GlobalState(executing={"e": "a", "f": "b"}, holders={"e": "c1.1"}, epoch=7, seq=3)
    decoded = GlobalState.decode(state.encode())
    assert decoded == state and decoded.version() == (7, 3)
    assert cbor2.loads(state.encode())["v"] == 3


def test_a_version_2_snapshot_reads_as_version_zero_with_every_key_reserved() -> None:
    v2_document = {
        "v": 2,
        "cancelled": b"",
        "cancelled_at": b"",
        "queued": [],
        "executing": {"e": "a"},
        "paused": [],
    }
    state = GlobalState.decode(cbor2.dumps(v2_document))
    assert state.version() == (0, 0) and state.holders == {} and state.executing == {"e": "a"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"holders": {"e": "c"}}, "names a key not executing"),
        ({"holders": {"e": ""}, "executing": {"e": "a"}}, "non-empty strings"),
        ({"epoch": -1}, "'epoch' must be an integer"),
        ({"seq": True}, "'seq' must be an integer"),
        ({"seq": "1"}, "'seq' must be an integer"),
    ],
)
def test_a_version_3_snapshot_with_bad_holders_or_version_is_refused(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        GlobalState.decode(v2(**fields))


def test_a_request_the_broker_nacks_is_a_global_timeout_to_try_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A quorum request queue still starting (or electing a leader) nacks the
    publish: that is GlobalTimeoutError, which callers such as the Consumer's
    snapshot fetch try again, not an error that ends them."""
    import asyncio

    from roger_actors.errors import GlobalTimeoutError
    from roger_actors.partition import global_client
    from roger_actors.transport.base import Nacked

    class NackingChannel:
        is_closed = False

        async def publish(self, *args: object, **kwargs: object) -> None:
            raise Nacked("nacked by the broker")

        async def close(self) -> None:
            self.is_closed = True

    class Link:
        connection = None  # the reply channel of no connection is replaced

    class Replies:
        channel = NackingChannel()
        waiting: dict[str, object] = {}

    async def reply_channel(link: object) -> Replies:
        return Replies()

    monkeypatch.setattr(global_client, "_reply_channel", reply_channel)
    with pytest.raises(GlobalTimeoutError, match="refused the request 'snapshot'"):
        asyncio.run(global_client.request(Link(), PID, "snapshot", []))  # type: ignore[arg-type]
