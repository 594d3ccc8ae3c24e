"""Fixtures shared by the integration tests: one node (``h``) or a cluster."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_harness import Cluster
from tests.partition_harness import ON_MEMORY, NodeHarness

#: Tests that need RabbitMQ itself, by module or by test, and why. With
#: ``ROGER_TEST_BROKER=memory`` (the embedded broker) they are skipped.
RABBITMQ_ONLY: dict[str, str] = {
    "tests/integration/test_broker_cluster.py": "starts a RabbitMQ cluster of its own",
    "tests/integration/test_soak.py": "restarts the broker",
    "tests/integration/test_retry_restart.py": "restarts the broker",
    "tests/integration/test_callbacks_off_consumer.py": "reads queue counts with rabbitmqctl",
    "tests/integration/test_partition_details.py":
        "reads queue types, arguments and prefetch with rabbitmqctl",
    "tests/integration/test_persister_rabbitmq.py":
        "the RabbitMQ persister's own URL is RabbitMQ's",
    "tests/integration/test_transport_buffers.py": "reads aiormq's own queues",
    "tests/integration/test_duplicates.py::test_jobs_of_a_batch_not_started_when_the_connection_drops_run_once":
        "reads queue counts with rabbitmqctl",
    "tests/integration/test_fidelity_prefetch.py::test_with_roger_prefetch_a_queue_channel_holds_max_workers_deliveries":
        "reads channel prefetch with rabbitmqctl",
    "tests/integration/test_global_auth.py::test_global_publishes_its_casts_on_a_channel_in_confirm_mode":
        "reads channel confirm mode with rabbitmqctl",
    "tests/integration/test_info.py::test_queued_jobs_newest_first_and_the_queue_untouched":
        "reads the queue type with rabbitmqctl",
    "tests/integration/test_partition_faults.py::test_the_node_reconnects_after_a_broker_restart_and_runs_every_job":
        "restarts the broker",
    "tests/integration/test_system_auth.py::test_consumers_catch_up_on_casts_missed_while_the_system_was_disconnected":
        "lists connections with rabbitmqctl",
}


#: Tests that find and SIGKILL one actor's own process, or use the Thespian
#: admin's port, by module or by test, and why. On the light base the node
#: has no admin port and a partition's actors share the partition host's
#: process (killing "the Consumer's process" kills every partition's tree):
#: these always run their nodes on multiprocTCPBase, whatever
#: ``ROGER_ACTOR_SYSTEM_BASE`` says (``tests/integration/test_light_node.py``
#: and ``test_partition_isolation.py`` are the light base's own).
PROCESS_PER_ACTOR: dict[str, str] = {
    "tests/integration/test_partition_faults.py::test_sigkilled_consumer_is_restarted_by_the_partition_supervisor_and_queued_jobs_run":
        "SIGKILLs the Consumer's own process",
    "tests/integration/test_partition_faults.py::test_sigkilled_worker_supervisor_restarts_the_partition_and_the_running_job_comes_back":
        "SIGKILLs the WorkerSupervisor's own process",
    "tests/integration/test_partition_faults.py::test_sigkilled_partition_supervisor_starts_every_partition_again_and_their_jobs_run":
        "SIGKILLs the PartitionSupervisor's own process",
    "tests/integration/test_node_lifecycle.py::test_a_partition_crashing_again_and_again_never_takes_the_node_down":
        "SIGKILLs one ContainingSupervisor's own process, again and again",
    "tests/integration/test_node_lifecycle.py::test_a_restarted_registry_takes_the_running_partitions_back":
        "SIGKILLs the registry's own process",
    "tests/integration/test_global.py::test_an_answered_change_survives_a_sigkill_right_after_and_calls_go_on":
        "SIGKILLs Global's own process",
    "tests/integration/test_global_faults.py::test_a_sigkilled_active_global_fails_over_with_the_state_and_the_held_key":
        "SIGKILLs the active Global's own process",
    "tests/integration/test_node_exits.py::test_an_embedding_process_learns_from_wait_that_its_nodes_root_died":
        "SIGKILLs the root supervisor's process, found from the admin's",
    "tests/integration/test_node_exposure.py": "reads the Thespian admin's port and processes",
}


#: The marker each folder of the pyramid gives its tests.
FOLDER_MARKERS = {
    "tests/unit/": "unit",
    "tests/integration/": "integration",
    "tests/conformance/": "conformance",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder (``unit``, ``integration``,
    ``conformance``); mark the :data:`RABBITMQ_ONLY` tests, and skip them on
    the embedded broker; mark the :data:`PROCESS_PER_ACTOR` tests
    ``process_per_actor`` (:func:`_process_per_actor_base` runs their nodes on
    multiprocTCPBase)."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        for folder, marker in FOLDER_MARKERS.items():
            if path.startswith(folder):
                item.add_marker(marker)
        base = item.nodeid.split("[", 1)[0]
        process_reason = PROCESS_PER_ACTOR.get(base) or PROCESS_PER_ACTOR.get(path)
        if process_reason is not None:
            item.add_marker(pytest.mark.process_per_actor)
        reason = RABBITMQ_ONLY.get(base) or RABBITMQ_ONLY.get(path)
        if reason is None:
            continue
        item.add_marker(pytest.mark.rabbitmq_only)
        if ON_MEMORY:
            item.add_marker(pytest.mark.skip(reason=f"RabbitMQ only: {reason}"))


@pytest.fixture(autouse=True)
def _process_per_actor_base(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A :data:`PROCESS_PER_ACTOR` test starts its nodes on multiprocTCPBase."""
    if request.node.get_closest_marker("process_per_actor") is not None:
        monkeypatch.setenv("ROGER_ACTOR_SYSTEM_BASE", "multiprocTCPBase")


@pytest.fixture
def h(tmp_path: Path) -> Iterator[NodeHarness]:
    """A node harness (not started); stopped and its queues deleted afterwards."""
    harness = NodeHarness(tmp_path)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster (not started); its nodes killed, queues and exchange deleted
    afterwards. A test module that sets ``SIGNED_CLUSTER = True`` gets a
    cluster with a fresh ``cluster_secret`` (its System messages signed)."""
    signed = getattr(request.module, "SIGNED_CLUSTER", False)
    c = Cluster(tmp_path, secrets.token_hex(16) if signed else None)
    try:
        yield c
    finally:
        c.close()
