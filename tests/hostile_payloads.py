"""Hypothesis strategies for hostile job payloads and AMQP headers.

Shared by the decoder's property test (``tests/unit/test_job_hostile.py``) and the
fuzz test against a live partition (``tests/integration/test_payload_fuzz.py``). Every
strategy draws bytes a producer could publish into a work queue: random
bytes, mutations of a valid payload, deep nesting, huge integers and
strings, wrong types in every field, CBOR tags, and payloads over a size
limit.
"""

from __future__ import annotations

from typing import Any

import cbor2
from hypothesis import strategies as st

#: The job class the mutated payloads name (registered in every node of the
#: tests: the test callbacks live in the same module).
JOB_MODULE = "tests.roger_test_jobs2.TimedJob"
KEYED_MODULE = "tests.roger_test_jobs2.KeyedJob"

_FIELDS = (
    "v",
    "id",
    "module",
    "args",
    "queue_key",
    "execution_key",
    "retry_count",
    "queued_at",
    "started_at",
    "max_execution_time",
)

#: Past 2**63, and past the 4300 digits ``str``/``repr`` of an int refuse
#: (built with ``map``: hypothesis reprs its strategies, and a huge bound too).
huge_ints = st.tuples(st.integers(62, 20_000), st.integers(0, 2**64), st.booleans()).map(
    lambda t: ((1 << t[0]) + t[1]) * (-1 if t[2] else 1)
)
any_int = st.integers(min_value=-(2**70), max_value=2**70) | huge_ints
scalars = (
    st.none()
    | st.booleans()
    | any_int
    | st.floats()
    | st.text(max_size=40)
    | st.text(min_size=250, max_size=400)
    | st.binary(max_size=40)
    | st.builds(cbor2.CBORSimpleValue, st.sampled_from([0, 16, 19, 32, 255]))
    | st.just(cbor2.undefined)
)
#: Any value cbor2 can encode: scalars, lists, maps with keys of any type, tags.
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6) | any_int | st.booleans(), children, max_size=4)
    | st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 3, 28, 29, 35, 258, 55799]), children),
    max_leaves=10,
)


def valid_fields(job_id: str = "fuzz") -> dict[str, Any]:
    """The fields of a valid payload of :data:`JOB_MODULE`."""
    return {
        "v": 1,
        "id": job_id,
        "module": JOB_MODULE,
        "args": ["/nonexistent", "fuzz", 0],
        "queue_key": None,
        "execution_key": None,
        "retry_count": 0,
        "queued_at": None,
        "started_at": None,
        "max_execution_time": None,
    }


def _dumps(value: Any) -> bytes:
    try:
        return cbor2.dumps(value)
    except Exception:  # a value cbor2 cannot encode (e.g. a cycle): plain garbage then
        return b"\xff" + repr(type(value)).encode()


@st.composite
def wrong_fields(draw: st.DrawFn) -> bytes:
    """A payload map with hostile values in some fields (valid in the others)."""
    fields: dict[Any, Any] = valid_fields(draw(st.text(min_size=1, max_size=8)))
    for name in draw(st.lists(st.sampled_from(_FIELDS), min_size=1, max_size=4, unique=True)):
        if draw(st.booleans()):
            fields[name] = draw(huge_ints | scalars | values)
        else:
            del fields[name]
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.text(max_size=8) | any_int)] = draw(scalars)
    if draw(st.integers(0, 4)) == 0:
        fields["module"] = draw(
            st.sampled_from([KEYED_MODULE, "os.system", "tests.job_import_sentinel.SentinelJob"])
            | st.text(max_size=30)
            | st.text(min_size=900, max_size=1200)
        )
    return _dumps(fields)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid payload with some bytes replaced, inserted or removed."""
    data = bytearray(cbor2.dumps(valid_fields()))
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.integers(0, 255))
        if action == "insert" or where == len(data):
            data.insert(where, byte)
        elif action == "replace":
            data[where] = byte
        else:
            del data[where]
    return bytes(data)


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    """Lists or maps nested past the decoder's depth limit, in args or bare."""
    depth = draw(st.integers(95, 600))
    opener = draw(st.sampled_from([b"\x81", b"\xa1\x61k"]))
    nested = opener * depth + b"\x00"
    if draw(st.booleans()):
        return nested
    fields = valid_fields()
    del fields["args"]
    head = cbor2.dumps(fields)
    # One more entry in the map: "args": <nested>.
    return bytes([head[0] + 1]) + head[1:] + cbor2.dumps("args") + nested


def oversize(limit: int) -> st.SearchStrategy[bytes]:
    """A valid-looking payload just over ``limit`` bytes."""
    return st.integers(1, 2000).map(
        lambda extra: cbor2.dumps({**valid_fields(), "args": ["x" * (limit + extra)]})
    )


def payloads(limit: int | None = None) -> st.SearchStrategy[bytes]:
    """Any hostile payload; oversize ones when ``limit`` is given."""
    kinds = [
        st.binary(max_size=200),
        mutated(),
        wrong_fields(),
        deep(),
        values.map(_dumps),
    ]
    if limit is not None:
        kinds.append(oversize(limit))
    return st.one_of(kinds)


#: Values the AMQP client can put in a header table (flat: cheap to draw).
_header_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(width=32, allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.integers(1, 40).map(lambda kb: "h" * (kb * 1024))
)
#: Headers of a hostile message (keys are AMQP short strings), up to ~120 KB.
headers = st.none() | st.dictionaries(st.text(min_size=1, max_size=12), _header_values, max_size=3)


def variants(data: bytes) -> list[bytes]:
    """``data`` and three payloads derived from it without drawing: a trailing
    byte, its first half, and ``data`` inside 120 levels of arrays."""
    return [data, data + b"\xf7", data[: len(data) // 2], b"\x81" * 120 + data]
