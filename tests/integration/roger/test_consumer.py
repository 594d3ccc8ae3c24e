"""Port of Roger's ``test/roger/consumer_test.exs``.

Its ``doctest Roger.Partition.Consumer`` covers nothing: that module's docs
in lib/roger/partition/consumer.ex have no ``iex>`` example.

Roger's ``refute_receive`` (100 ms unless given) becomes: wait until the job
is seen waiting in its queue with no consumer, then check for that long that
it did not run.
"""

from __future__ import annotations

from typing import Any

import pytest

import roger_actors as roger
from roger_actors import node as roger_node
from roger_actors.partition.consumer import Status
from tests.integration.roger.conftest import Journal
from tests.integration.roger.jobs import ConsumerTest
from tests.partition_harness import counts, holds_for, wait_for
from tests.procs import sigkill

pytestmark = pytest.mark.timeout(60)

def _waiting_unconsumed(app: str, queue: str = "default", count: int = 1) -> None:
    """Wait until ``count`` messages sit in the queue and nothing consumes it."""
    name = roger.Queue.make_name(app, queue)
    wait_for(lambda: counts(name) == (count, 0), what=f"{count} message(s) waiting in {name}")


def _not_done(journal: Journal, tag: str, seconds: float = 0.1) -> None:
    holds_for(lambda: not journal.events("done", args=tag), seconds, f"{tag} not run")


def test_consumer_starting(app: str) -> None:
    """test/roger/consumer_test.exs: "consumer starting"."""
    assert roger.Consumer.is_alive(app)

    queue = roger.Consumer.get_queues(app)["default"]
    assert queue["max_workers"] == 10
    assert queue["message_count"] == 0

    assert roger.Consumer.reconfigure(app, {"default": 20, "fast": 40}) is None

    queues = roger.Consumer.get_queues(app)
    assert queues["default"]["max_workers"] == 20
    assert queues["fast"]["max_workers"] == 40

    assert roger.Consumer.reconfigure(app, {"fast": 10}) is None

    queues = roger.Consumer.get_queues(app)
    assert len(queues) == 1
    assert queues["fast"]["max_workers"] == 10


def test_pause_resume_api(app: str, journal: Journal) -> None:
    """test/roger/consumer_test.exs: "pause/resume API"."""
    assert roger.Consumer.pause(app, "default") is None

    job = roger.Job.create(ConsumerTest.TestJob, "job_1")
    roger.Job.enqueue(job, app)
    _waiting_unconsumed(app)
    _not_done(journal, "job_1")

    assert roger.Consumer.resume(app, "default") is None

    journal.wait("done", args="job_1")


def test_pause_resume_state_should_survive_reconfigure(app: str, journal: Journal) -> None:
    """test/roger/consumer_test.exs: "pause/resume state should survive reconfigure"."""
    roger.Consumer.pause(app, "default")

    job = roger.Job.create(ConsumerTest.TestJob, "job_2")
    roger.Job.enqueue(job, app)
    _waiting_unconsumed(app)

    roger.Consumer.reconfigure(app, [])
    roger.Consumer.reconfigure(app, {"default": 10})

    _not_done(journal, "job_2")  # Roger: 100 ms sleep, then refute_receive (100 ms)
    _not_done(journal, "job_2")

    roger.Consumer.resume(app, "default")

    journal.wait("done", args="job_2")


def test_pause_resume_state_through_global(app: str, journal: Journal) -> None:
    """test/roger/consumer_test.exs: "pause/resume state through Global"."""
    assert roger.Global.queue_pause(app, "default") is None
    # Roger sleeps 50 ms for the pause to reach the Consumer: wait for it.
    wait_for(lambda: roger.Consumer.get_queues(app)["default"]["paused"], what="paused")

    job = roger.Job.create(ConsumerTest.TestJob, "job_3")
    roger.Job.enqueue(job, app)
    _waiting_unconsumed(app)
    _not_done(journal, "job_3")

    assert roger.Global.queue_resume(app, "default") is None

    journal.wait("done", args="job_3")


def test_pause_resume_state_through_global_consumer_restart_in_between(
    app: str, journal: Journal
) -> None:
    """test/roger/consumer_test.exs: "pause/resume state through Global, consumer
    restart in between"."""
    roger.Global.queue_pause(app, "default")
    wait_for(lambda: roger.Consumer.get_queues(app)["default"]["paused"], what="paused")

    job = roger.Job.create(ConsumerTest.TestJob, "job_4")
    roger.Job.enqueue(job, app)

    # Roger's Process.exit(pid, :normal) does not end a process that does not
    # trap exits, so its Consumer lives on; here the Consumer really restarts.
    node = roger_node.current()
    consumer = node.consumer_call(app, Status())["pid"]
    sigkill(consumer)

    def new_consumer_paused() -> Any:
        try:
            if node.consumer_call(app, Status(), 2)["pid"] == consumer:
                return False
            return roger.Consumer.get_queues(app)["default"]["paused"]
        except Exception:
            return False

    wait_for(new_consumer_paused, what="a new Consumer, with default paused")
    _waiting_unconsumed(app)
    _not_done(journal, "job_4", 0.2)

    roger.Global.queue_resume(app, "default")

    journal.wait("done", args="job_4")
