"""Specification of embedding Roger's tree in a user's own supervision tree
(``roger.child_spec``, Roger's ``child_spec/1``).

The user's Application (``multiprocTCPBase``) runs a supervisor with a
worker of its own and Roger's tree as its last child; the facades of this
process find the tree on first use. Real broker at 127.0.0.1:5672. Run one
test with ``scripts/test tests/integration/test_embedding.py::<name>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import roger_actors as roger
from roger_actors import Queue
from supervision import (
    Application,
    ChildSpec,
    Server,
    Supervisor,
    SupervisorSpec,
    call,
    which_children,
)
from tests.partition_harness import BROKER, NodeHarness, _free_admin_port, counts
from tests.roger_test_jobs2 import JsonCallbacks, TimedJob

pytestmark = pytest.mark.timeout(90)


class Counter(Server):
    """A user's own worker next to Roger's tree."""

    def init(self) -> None:
        """Count from 0."""
        self.count = 0

    def handle_call(self, request: Any, from_: Any) -> Any:
        """Any request: the count, incremented."""
        self.count += 1
        return self.count


class UserRoot(Supervisor):
    """The user's root: their Counter, then Roger's tree (last, as Roger's README advises)."""

    def init(self, roger_spec: ChildSpec) -> SupervisorSpec:
        """Counter, Roger; one_for_one."""
        return SupervisorSpec([ChildSpec("counter", Counter), roger_spec], "one_for_one")


@pytest.fixture
def embedded(h: NodeHarness) -> Iterator[tuple[Application, NodeHarness]]:
    """The user's application running Roger's tree; stopped afterwards."""
    spec = roger.child_spec(
        {
            "amqp": f"{BROKER}?name={h.connection_name}",
            "callbacks": JsonCallbacks,
            "retry_levels": [1, 2],
            "shutdown_timeout": 5,
        }
    )
    app = Application(ChildSpec("root", (UserRoot, (spec,))), admin_port=_free_admin_port())
    app.start()
    try:
        yield app, h
    finally:
        try:
            roger.stop()
        finally:
            app.stop(timeout=60)


def test_roger_runs_jobs_as_a_child_of_a_users_supervisor(
    embedded: tuple[Application, NodeHarness],
) -> None:
    app, h = embedded
    children = {info.id: info for info in which_children(app.root)}
    assert set(children) == {"counter", "roger"}
    assert children["roger"].type == "supervisor"

    pid = h.start_partition({"default": 2})
    assert pid in roger.NodeInfo.running_partitions()
    h.enqueue(TimedJob, pid, "embedded", 0)
    h.wait_tags("after_run", {"embedded"})
    # The user's own child works alongside.
    assert call(children["counter"].address, "incr") == 1


def test_job_enqueue_as_the_first_call_finds_the_embedded_tree(
    embedded: tuple[Application, NodeHarness],
) -> None:
    _app, h = embedded
    pid = h.partition_id("first")

    job = h.enqueue(TimedJob, pid, "enqueued-first", 0)  # before any facade found the tree

    assert roger.Partition.start(pid, {"default": 1}) == "running"
    h.wait_tags("after_run", {"enqueued-first"})
    assert job.id


def test_stop_drains_the_embedded_partitions_and_leaves_the_users_tree_running(
    embedded: tuple[Application, NodeHarness],
) -> None:
    app, h = embedded
    pid = h.start_partition({"default": 1})
    h.enqueue(TimedJob, pid, "finishes", 1.0)
    h.wait_tags("start", {"finishes"})

    roger.stop()

    assert h.tags("end") == {"finishes"}, "the running job was not waited for"
    assert app.is_running
    counter = {info.id: info.address for info in which_children(app.root)}["counter"]
    assert call(counter, "incr") == 1


def test_child_spec_refuses_a_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(roger.ConfigError, match="retry_levels"):
        roger.child_spec({"retry_levels": "soon"})


def test_child_spec_leaves_a_running_producer_enqueueing(h: NodeHarness) -> None:
    roger.start_producer({"amqp": f"{BROKER}?name={h.connection_name}"})
    try:
        roger.child_spec({"amqp": BROKER}, id="roger-unused")
        pid = h.partition_id("producer")

        h.enqueue(TimedJob, pid, "through-the-producer", 0)  # no tree runs: the producer's

        assert (counts(Queue.make_name(pid, "default")) or (0, 0))[0] == 1
    finally:
        roger.stop()
        from roger_actors.node import application

        application._embedded.pop("roger-unused", None)
