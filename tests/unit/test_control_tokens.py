"""Delivery tokens (:class:`roger_actors.partition.control.Tokens`): random,
positive, 63-bit, never one still in flight.

Run one: ``scripts/test tests/unit/test_control_tokens.py``."""

from __future__ import annotations

import os

import pytest

from roger_actors.partition import control


def test_tokens_are_positive_63_bit_integers_and_differ() -> None:
    tokens = control.Tokens(set())
    drawn = [next(tokens) for _ in range(3 * 512)]  # more than one draw from the OS
    assert all(0 < token < 2**63 for token in drawn)
    assert len(set(drawn)) == len(drawn)


def test_a_token_still_in_flight_is_never_given_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # The OS's random source repeats itself: the tokens in flight are skipped.
    in_use: set[int] = set()
    draws = iter([bytes(control._DRAW.size), (10).to_bytes(8, "little") * 512])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    tokens = control.Tokens(in_use)
    assert next(tokens) == 5  # 10 >> 1; 0 (the first draw) is never a token
    in_use.add(5)
    with pytest.raises(StopIteration):  # every other draw is 5 again, then the fake source ends
        next(tokens)
