"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.memory_rig import Rig


@pytest.fixture
def rig() -> Iterator[Rig]:
    """A link on a fresh in-memory broker, and Global's pure state (tests.memory_rig)."""
    made = Rig()
    try:
        yield made
    finally:
        made.close()
