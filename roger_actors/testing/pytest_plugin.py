"""Pytest fixtures for testing roger-actors jobs: a node, partitions, ``join``, eager mode.

Enable them in your root ``conftest.py``::

    pytest_plugins = ["roger_actors.testing.pytest_plugin"]

Fixtures (override any of them in your ``conftest.py``):

* ``roger_amqp_url`` (session): the broker. ``ROGER_TEST_AMQP_URL`` or the
  embedded broker ``memory://roger-pytest``, served by the test process
  (nothing to install; set ``ROGER_TEST_AMQP_URL`` to a RabbitMQ URL to test
  on RabbitMQ).
* ``roger_config`` (session): the node's configuration as a dict: a free
  ``admin_port``, its own ``node_name``, the ``system_exchange_prefix``
  ``"roger-pytest"``, ``retry_levels`` ``[1, 1]`` (a retried job is buried
  within seconds), ``shutdown_timeout`` 5, and ``callbacks``
  :class:`~roger_actors.testing.RecordingCallbacks` (a subclass of it is fine:
  ``join`` needs what it records).
* ``roger_ledger`` (session): the :class:`~roger_actors.testing.Ledger` the
  node's processes record into (a directory of pytest's ``tmp_path``).
* ``roger_node`` (session): the node, started on first use, stopped at the end.
* ``roger_partition`` (per test): a factory ``roger_partition(queues=None,
  name="p")`` that starts a partition with a fresh id (``f"{name}-<hex>"``,
  queues default ``{"default": 4}``), returns its id once it consumes every
  queue, and after the test stops it and deletes its queues (the
  execution-waiting ones of the keys the ledger saw included).
* ``roger_join`` (per test): :func:`~roger_actors.testing.join` on the ledger.
* ``roger_eager`` (per test): an :func:`~roger_actors.testing.eager` block
  (no node, no broker) for the whole test; yields the ``EagerRun``.

Job classes must be defined (imported) before the node starts: its workers
are forked from the test process.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import roger_actors as roger
from roger_actors.node import Consumer, Node, Partition
from roger_actors.node import start as start_node
from roger_actors.node import stop as stop_node

from .eager import EagerRun, eager
from .join import join
from .ledger import LEDGER_ENV, Ledger, RecordingCallbacks
from .queues import delete_partition_queues, partition_queue_names

__all__ = [
    "DEFAULT_TEST_AMQP_URL",
    "ledger_for_tests",
    "node_for_tests",
    "roger_amqp_url",
    "roger_config",
    "roger_eager",
    "roger_join",
    "roger_ledger",
    "roger_node",
    "roger_partition",
]

DEFAULT_TEST_AMQP_URL = "memory://roger-pytest"
#: How long a new partition may take to consume its queues (seconds).
PARTITION_START_TIMEOUT = 30.0


def _free_port(low: int = 24000, high: int = 24999) -> int:
    start = secrets.randbelow(high - low)
    for offset in range(high - low):
        port = low + (start + offset) % (high - low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high} for the node's actor system")


@pytest.fixture(scope="session")
def roger_amqp_url() -> str:
    """The broker the test node uses (``ROGER_TEST_AMQP_URL``, else the embedded broker)."""
    return os.environ.get("ROGER_TEST_AMQP_URL", DEFAULT_TEST_AMQP_URL)


@pytest.fixture(scope="session")
def roger_config(roger_amqp_url: str) -> dict[str, Any]:
    """The test node's configuration (see the module docstring)."""
    return {
        "amqp": roger_amqp_url,
        "admin_port": _free_port(),
        "node_name": f"pytest-{secrets.token_hex(4)}",
        "system_exchange_prefix": "roger-pytest",
        "retry_levels": [1, 1],
        "shutdown_timeout": 5,
        "callbacks": RecordingCallbacks,
    }


@contextmanager
def ledger_for_tests(directory: Path) -> Iterator[Ledger]:
    """A :class:`~roger_actors.testing.Ledger` in ``directory`` for the block
    (``ROGER_TESTING_LEDGER`` set, and put back as it was after it)."""
    before = os.environ.get(LEDGER_ENV)
    ledger = Ledger.create(directory)
    try:
        yield ledger
    finally:
        if before is None:
            os.environ.pop(LEDGER_ENV, None)
        else:
            os.environ[LEDGER_ENV] = before


@contextmanager
def node_for_tests(config: dict[str, Any], ledger: Ledger) -> Iterator[Node]:
    """Start a node with ``config`` that records into ``ledger``, for the block;
    stopped after it (gracefully, also when the block raises).

    Raises ``pytest.UsageError`` when ``config["callbacks"]`` is not
    RecordingCallbacks or a subclass (``join`` could not see errors), and
    what ``roger.start`` raises (a node already running in this process)."""
    loaded = roger.load_config(dict(config))
    callbacks = loaded.callbacks_class()
    if callbacks is None or not issubclass(callbacks, RecordingCallbacks):
        raise pytest.UsageError(
            "roger_config['callbacks'] must be roger_actors.testing.RecordingCallbacks or a "
            f"subclass of it (join reads what it records); got {callbacks!r}"
        )
    node = start_node(loaded)
    try:
        ledger.record_enqueues()
        yield node
    finally:
        stop_node()


@pytest.fixture(scope="session")
def roger_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """The ledger of the session's node (sets ``ROGER_TESTING_LEDGER``)."""
    with ledger_for_tests(tmp_path_factory.mktemp("roger-ledger")) as ledger:
        yield ledger


@pytest.fixture(scope="session")
def roger_node(roger_config: dict[str, Any], roger_ledger: Ledger) -> Iterator[Node]:
    """A node for the session, recording into ``roger_ledger``; stopped at the end
    (see :func:`node_for_tests`). A suite whose other tests start nodes of their
    own overrides it (and ``roger_ledger``) with a narrower scope."""
    with node_for_tests(roger_config, roger_ledger) as node:
        yield node


def _wait_consuming(partition_id: str, queues: dict[str, int]) -> None:
    wanted = {q for q, n in queues.items() if n > 0}
    deadline = time.monotonic() + PARTITION_START_TIMEOUT
    while True:
        try:
            stats = Consumer.get_queues(partition_id)
        except roger.NotRunningError:
            stats = {}
        if all(stats.get(q, {}).get("consumer_count", 0) >= 1 for q in wanted):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"partition {partition_id!r} not consuming {sorted(wanted)} after "
                f"{PARTITION_START_TIMEOUT} s: {stats!r}"
            )
        time.sleep(0.05)


@pytest.fixture
def roger_partition(roger_node: Node, roger_ledger: Ledger) -> Iterator[Callable[..., str]]:
    """``roger_partition(queues=None, name="p") -> partition_id``; see the module docstring."""
    started: list[tuple[str, dict[str, int]]] = []

    def start(queues: dict[str, int] | None = None, name: str = "p") -> str:
        queues = dict(queues) if queues is not None else {"default": 4}
        partition_id = f"{name}-{secrets.token_hex(5)}"
        Partition.start(partition_id, queues)
        started.append((partition_id, queues))
        _wait_consuming(partition_id, queues)
        return partition_id

    try:
        yield start
    finally:
        levels = roger_node.config.retry_levels
        for partition_id, queues in started:
            try:
                Partition.stop(partition_id)
            except roger.NotRunningError:
                pass
            keys = roger_ledger.execution_keys(partition_id)
            delete_partition_queues(partition_queue_names(partition_id, queues, levels, keys))


@pytest.fixture
def roger_join(roger_ledger: Ledger) -> Callable[..., None]:
    """:func:`~roger_actors.testing.join` bound to the session's ledger."""
    return functools.partial(join, ledger=roger_ledger)


@pytest.fixture
def roger_eager() -> Iterator[EagerRun]:
    """The whole test in an :func:`~roger_actors.testing.eager` block (defaults)."""
    with eager() as run:
        yield run
