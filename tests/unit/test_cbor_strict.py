"""cbor_strict.loads: one CBOR item from outside the process, nothing more."""

from __future__ import annotations

import cbor2
import pytest

from roger_actors import cbor_strict
from roger_actors.system_protocol import decode_reply, encode_reply


def test_plain_items_decode() -> None:
    item = {"a": [1, "b", None]}
    assert cbor_strict.loads(cbor2.dumps(item), max_depth=3) == item


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (cbor2.dumps(1) + b"\x00", "trailing bytes"),
        (cbor2.dumps(cbor2.CBORTag(4000, 1)), "CBOR tag 4000 is not allowed"),
        (cbor2.dumps(frozenset({1})), "CBOR tag 258 is not allowed"),
        (cbor2.dumps([[[1]]]), "depth"),
        (b"\xa2\x61a\x01\x61a\x02", "(?i)duplicate"),
        (b"", "."),
    ],
)
def test_anything_else_is_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(cbor_strict.CborError, match=message):
        cbor_strict.loads(data, max_depth=2)


def test_big_integers_only_when_asked_for() -> None:
    data = cbor2.dumps(2**70)
    assert cbor_strict.loads(data, max_depth=1, big_integers=True) == 2**70
    with pytest.raises(cbor_strict.CborError, match="CBOR tag 2"):
        cbor_strict.loads(data, max_depth=1)


def test_a_system_reply_may_carry_a_job_argument_beyond_64_bits() -> None:
    reply = decode_reply(encode_reply("c1", "n1", True, [2**70]))
    assert reply.value == [2**70]
