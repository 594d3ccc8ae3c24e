"""Fixtures shared by the integration tests: one node (``h``) or a cluster."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_harness import Cluster
from tests.partition_harness import NodeHarness


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
