"""Specification: the headers of a delivery the Consumer publishes again
(``roger_actors.partition.headers``) always fit the frame.

Run with ``scripts/test tests/unit/test_headers.py``.
"""

from __future__ import annotations

from roger_actors.partition.headers import (
    DROPPED_HEADERS_HEADER,
    KEPT_HEADERS_BYTES,
    headers_budget,
    kept_headers,
)
from roger_actors.transport.tables import encoded_size


def test_small_headers_are_kept_as_a_copy() -> None:
    headers = {"a": 1, "b": "two"}
    kept = kept_headers(headers)
    assert kept == headers and kept is not headers
    assert kept_headers({}) == {}


def test_headers_past_the_budget_are_replaced_by_their_size() -> None:
    headers = {"big": "x" * 5000}
    assert kept_headers(headers) == {DROPPED_HEADERS_HEADER: encoded_size(headers)}
    assert kept_headers({"a": "x" * 50}, budget=10) == {
        DROPPED_HEADERS_HEADER: encoded_size({"a": "x" * 50})
    }


def test_headers_that_cannot_be_encoded_again_are_dropped_as_minus_one() -> None:
    assert kept_headers({"odd": object()}) == {DROPPED_HEADERS_HEADER: -1}


def test_the_budget_leaves_room_for_our_properties_on_a_small_frame() -> None:
    assert headers_budget(0) == KEPT_HEADERS_BYTES  # unknown or unlimited
    assert headers_budget(131072) == KEPT_HEADERS_BYTES
    assert headers_budget(4096) == 2048
    assert headers_budget(1000) == 0
