"""Specification of the Global state persisters (Roger's StatePersister modules)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import roger_actors as roger
from roger_actors.persisters import Filesystem, StatePersister, Stub, state_file_name


def test_state_persister_is_abstract_in_load_and_store() -> None:
    with pytest.raises(TypeError):
        StatePersister()  # type: ignore[abstract]

    class Memory(StatePersister):
        def __init__(self) -> None:
            self.data: dict[str, bytes] = {}

        def load(self, partition_id: str) -> bytes | None:
            return self.data.get(partition_id)

        def store(self, partition_id: str, data: bytes) -> None:
            self.data[partition_id] = data

    memory = Memory()
    assert memory.init("myapp") is None
    memory.store("myapp", b"x")
    assert memory.load("myapp") == b"x"


def test_persisters_are_exported_from_the_package() -> None:
    assert roger.persisters.Stub is Stub
    assert roger.persisters.Filesystem is Filesystem
    assert roger.StatePersister is StatePersister


def test_stub_stores_nothing_and_loads_none() -> None:
    stub = Stub()
    stub.init("myapp")
    stub.store("myapp", b"state")
    assert stub.load("myapp") is None


def test_filesystem_loads_none_before_anything_is_stored(tmp_path: Path) -> None:
    persister = Filesystem(path=tmp_path / "state")
    persister.init("myapp")
    assert (tmp_path / "state").is_dir()
    assert persister.load("myapp") is None


def test_filesystem_round_trips_bytes_per_partition(tmp_path: Path) -> None:
    persister = Filesystem(path=tmp_path)
    persister.store("myapp", b"\x00first")
    persister.store("other", bytearray(b"second"))
    persister.store("myapp", b"\x00third")
    assert persister.load("myapp") == b"\x00third"
    assert persister.load("other") == b"second"
    assert Filesystem(path=str(tmp_path)).load("myapp") == b"\x00third"


def test_filesystem_store_creates_the_directory_without_init(tmp_path: Path) -> None:
    persister = Filesystem(path=tmp_path / "a" / "b")
    persister.store("myapp", b"x")
    assert persister.load("myapp") == b"x"


def test_filesystem_leaves_no_temporary_files(tmp_path: Path) -> None:
    persister = Filesystem(path=tmp_path)
    for round_number in range(5):
        persister.store("myapp", str(round_number).encode())
    assert sorted(os.listdir(tmp_path)) == ["myapp.state"]


def test_filesystem_keeps_the_old_state_when_a_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    persister = Filesystem(path=tmp_path)
    persister.store("myapp", b"old")

    def broken_replace(source: Any, target: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        persister.store("myapp", b"new")
    monkeypatch.undo()
    assert persister.load("myapp") == b"old"
    assert sorted(os.listdir(tmp_path)) == ["myapp.state"]


@pytest.mark.parametrize(
    "partition_id", ["../escape", "/abs/path", ".", "..", "a/b", "A", "a%41", "x" * 300, "ü"]
)
def test_filesystem_file_names_stay_inside_the_directory(
    tmp_path: Path, partition_id: str
) -> None:
    persister = Filesystem(path=tmp_path)
    persister.store(partition_id, partition_id.encode())
    assert persister.file_for(partition_id).parent == tmp_path
    assert persister.load(partition_id) == partition_id.encode()
    assert len(state_file_name(partition_id)) <= 255


def test_file_names_are_distinct_even_on_case_insensitive_file_systems() -> None:
    ids = ["a", "A", "%61", "a.b", "a%2Eb", "x" * 300, "x" * 301]
    names = [state_file_name(pid).lower() for pid in ids]
    assert len(set(names)) == len(ids)
    assert state_file_name("my-app_1") == "my-app_1.state"


@pytest.mark.parametrize("bad", ["", None, 3])
def test_filesystem_rejects_bad_partition_ids(tmp_path: Path, bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="partition_id"):
        Filesystem(path=tmp_path).store(bad, b"x")


def test_filesystem_rejects_data_that_is_not_bytes(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="data must be bytes"):
        Filesystem(path=tmp_path).store("myapp", "text")  # type: ignore[arg-type]
