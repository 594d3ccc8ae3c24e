"""Decoding CBOR that comes from outside the process (payloads, states, messages).

:func:`loads` accepts exactly one CBOR item: no trailing bytes, no tags
(cbor2 would otherwise build dates, decimals, sets, regular expressions,
shared references and cycles from them), at most ``max_depth`` levels of
nesting, map keys hashable and unique. Big integers (tags 2 and 3) are
allowed only when asked for. Anything else raises :class:`CborError`, a
``ValueError`` whose message says what was wrong; callers put their own
context in front.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

#: Semantic tags cbor2 decodes natively, besides big integers (2, 3).
SEMANTIC_TAGS = (
    *(0, 1, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100),
    *(256, 258, 260, 261, 1004, 55799),
)
BIG_INTEGER_TAGS = (2, 3)


class CborError(ValueError):
    """The bytes are not one acceptable CBOR item; the message says why."""


def _refuse(tag: Any, *_: Any) -> Any:
    raise ValueError(f"CBOR tag {getattr(tag, 'tag', tag)} is not allowed")


def loads(
    data: bytes | bytearray | memoryview, *, max_depth: int, big_integers: bool = False
) -> Any:
    """The one CBOR item in ``data``; raises CborError (see the module docstring)."""
    refusing = _REFUSING_SEMANTIC if big_integers else _REFUSING_ALL
    raw = bytes(data)
    buffer = io.BytesIO(raw)
    try:
        decoder = cbor2.CBORDecoder(
            buffer,
            tag_hook=_refuse,
            semantic_decoders=refusing,
            max_depth=max_depth,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
        value = decoder.decode()
    except Exception as exc:  # cbor2 raises several types; all mean "not acceptable"
        detail = str(exc)
        if exc.__cause__ is not None:
            detail = f"{detail}: {exc.__cause__}"
        raise CborError(detail) from None
    if buffer.tell() != len(raw):
        raise CborError("trailing bytes after the CBOR item")
    return value


def _refusing(tag: int) -> Any:
    def refuse(*_: Any) -> Any:
        raise ValueError(f"CBOR tag {tag} is not allowed")

    return refuse


#: The semantic decoders that refuse each tag, made once (cbor2 only reads them).
_REFUSING_SEMANTIC = {tag: _refusing(tag) for tag in SEMANTIC_TAGS}
_REFUSING_ALL = {tag: _refusing(tag) for tag in SEMANTIC_TAGS + BIG_INTEGER_TAGS}


__all__ = ["BIG_INTEGER_TAGS", "SEMANTIC_TAGS", "CborError", "loads"]
