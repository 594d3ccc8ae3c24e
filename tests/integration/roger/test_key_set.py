"""Port of Roger's ``test/roger/key_set_test.exs``: ``doctest Roger.KeySet``,
the five ``iex>`` examples of its moduledoc in lib/roger/key_set.ex (ExUnit
makes one test of each group of consecutive ``iex>`` lines).

The KeySets are actors of the module's node (multiprocTCPBase: each its own
process), as Roger's are processes of its node. Roger's ``start_link``
answers ``{:ok, pid}``; the port's ``KeySet.start`` returns a handle, whose
methods stand for Roger's functions on the pid (``:ok`` is None).
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import RogerHarness

pytestmark = pytest.mark.timeout(60)


def test_doctest_module_roger_key_set_1(node: RogerHarness) -> None:
    """test/roger/key_set_test.exs: "doctest module Roger.KeySet (1)" (add, contains?)."""
    pid = roger.KeySet.start()
    assert pid.add("bla") is None
    assert pid.contains("bla") is True
    assert pid.contains("beh") is False


def test_doctest_module_roger_key_set_2(node: RogerHarness) -> None:
    """test/roger/key_set_test.exs: "doctest module Roger.KeySet (2)" (remove)."""
    pid = roger.KeySet.start()
    pid.add("bla")
    assert pid.remove("bla") is None
    assert pid.contains("bla") is False


def test_doctest_module_roger_key_set_3(node: RogerHarness) -> None:
    """test/roger/key_set_test.exs: "doctest module Roger.KeySet (3)" (get_state,
    start_link(state: state))."""
    pid = roger.KeySet.start()
    pid.add("existing")
    state = pid.get_state()
    pid2 = roger.KeySet.start(state)
    assert pid2.contains("existing") is True


def test_doctest_module_roger_key_set_4(node: RogerHarness) -> None:
    """test/roger/key_set_test.exs: "doctest module Roger.KeySet (4)" (add_many)."""
    pid = roger.KeySet.start()
    assert pid.add_many(["a", "b", "c"]) is None
    assert pid.contains("a") is True
    assert pid.contains("b") is True
    assert pid.contains("c") is True


def test_doctest_module_roger_key_set_5(node: RogerHarness) -> None:
    """test/roger/key_set_test.exs: "doctest module Roger.KeySet (5)" (union,
    difference: applied to the first keyset, the second left untouched)."""
    a = roger.KeySet.start()
    a.add_many(["a1", "a2", "a3"])
    b = roger.KeySet.start()
    b.add_many(["b1", "b2"])
    assert a.union(b) is None
    assert a.contains("b1") is True
    assert b.contains("a1") is False
    assert a.difference(b) is None
    assert a.contains("b1") is False
