"""The fixtures of ``roger_actors.testing.pytest_plugin`` for the tests of this folder.

Users enable them with ``pytest_plugins`` in their root conftest; a non-root
conftest may not, so they are imported here. The node and its ledger are
scoped to this package rather than the session: the rest of the suite starts
nodes of its own in this process (one at a time)."""

from collections.abc import Iterator
from typing import Any

import pytest

from roger_actors.node import Node
from roger_actors.testing import Ledger, pytest_plugin
from roger_actors.testing.pytest_plugin import ledger_for_tests, node_for_tests

roger_amqp_url = pytest_plugin.roger_amqp_url
roger_config = pytest_plugin.roger_config
roger_eager = pytest_plugin.roger_eager
roger_join = pytest_plugin.roger_join
roger_partition = pytest_plugin.roger_partition


@pytest.fixture(scope="package")
def roger_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    with ledger_for_tests(tmp_path_factory.mktemp("roger-ledger")) as ledger:
        yield ledger


@pytest.fixture(scope="package")
def roger_node(roger_config: dict[str, Any], roger_ledger: Ledger) -> Iterator[Node]:
    with node_for_tests(roger_config, roger_ledger) as node:
        yield node
