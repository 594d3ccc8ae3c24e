"""The ``prefetch`` setting (issue 10, item 8 of the issue, item 5 of its brief).

Roger's Consumer sets each queue channel's prefetch to ``max_workers``
(``Roger.Queue.setup_channel``). ``prefetch = "roger"`` does that; the
default ``"adaptive"`` follows the batch size (``test_partition_details``
covers it). Config checks, then one real node and RabbitMQ.
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from roger_actors import Queue
from roger_actors.config import DEFAULT_PREFETCH, Config, load_config
from roger_actors.errors import ConfigError
from tests.integration.test_partition_details import _prefetch_of
from tests.partition_harness import NodeHarness, holds_for, wait_for
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(90)


def test_prefetch_is_a_config_key_with_two_modes() -> None:
    assert Config().prefetch == DEFAULT_PREFETCH == "adaptive"
    assert Config(prefetch="roger").prefetch == "roger"
    assert load_config({}, env={"ROGER_PREFETCH": "roger"}).prefetch == "roger"
    for bad in ("Roger", "", 10, None, ["roger"]):
        with pytest.raises(ConfigError, match="prefetch"):
            Config(prefetch=bad)


def test_with_roger_prefetch_a_queue_channel_holds_max_workers_deliveries(
    h: NodeHarness,
) -> None:
    h.start(prefetch="roger")
    pid = h.start_partition({"default": 2})
    queue = Queue.make_name(pid, "default")
    assert _prefetch_of(queue) == 2, "Roger's prefetch: max_workers"

    for i in range(40):  # short jobs: the adaptive prefetch would grow
        h.enqueue(TimedJob, pid, f"short{i}", 0)
    h.wait_events("after_run", 40)
    holds_for(lambda: _prefetch_of(queue) == 2, 1.0, "the prefetch stays max_workers")

    roger.Partition.reconfigure(pid, {"default": 3})
    wait_for(lambda: _prefetch_of(queue) == 3, what="the prefetch follows max_workers")
    h.enqueue(TimedJob, pid, "after", 0)
    h.wait_tags("after_run", {"after"})
