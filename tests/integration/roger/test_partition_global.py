"""Port of Roger's ``test/roger/partition/global_test.exs`` (AppCase with
queues ``default: 10, fast: 20, expression: 10``)."""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import RogerHarness

pytestmark = pytest.mark.timeout(60)

QUEUES = {"default": 10, "fast": 20, "expression": 10}


def test_pause_and_unpause_queues(app: str) -> None:
    """test/roger/partition/global_test.exs: "pause and unpause queues"."""
    assert roger.Global.queue_get_paused(app) == set()

    assert roger.Global.queue_pause(app, "default") is None
    assert roger.Global.queue_pause(app, "fast") is None
    assert roger.Global.queue_pause(app, "expression") is None

    queues = roger.Global.queue_get_paused(app)
    assert queues == {"default", "fast", "expression"}

    for q in queues:
        assert roger.Global.queue_resume(app, q) is None

    assert roger.Global.queue_get_paused(app) == set()


def test_not_alive_check(app: str, node: RogerHarness) -> None:
    """test/roger/partition/global_test.exs: "(not) alive check"."""
    # Roger's partition "foo": here an id no one else on the broker uses.
    foo = node.partition_id("foo")
    with pytest.raises(roger.NotStartedError):
        roger.Global.cancel_job(foo, "bar")
    with pytest.raises(roger.NotStartedError):
        roger.Global.queue_get_paused(foo)
