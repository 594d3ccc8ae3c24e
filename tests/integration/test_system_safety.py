"""Specification of what ``supervision.start_actor_system`` does for safety on
``multiprocTCPBase``: every socket on the bind address, an admin port it
never shares, Thespian's log in a private directory.

Each test starts its own actor system on a port from 23500-23999 and shuts
it down; "another local user" is ``nobody`` (tests/node_procs.squatter).
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervision import Application, ChildSpec, SupervisorSpec, start_actor_system
from supervision.system import AdminPortInUse, _check_own_admin, private_directory
from tests.actors import Sup, Worker
from tests.node_procs import NOBODY, listening_sockets, node_processes, squatter
from tests.procs import free_port

pytestmark = pytest.mark.timeout(90)


def free_admin_port() -> int:
    return free_port(23500, 23999)


@pytest.fixture
def app() -> Iterator[Application]:
    children = [ChildSpec(name, (Worker, (name,))) for name in ("a", "b")]
    made = Application(
        ChildSpec("root", (Sup, (SupervisorSpec(children),))),
        base="multiprocTCPBase",
        admin_port=free_admin_port(),
    )
    made.start()
    try:
        yield made
    finally:
        made.stop(timeout=30)


def test_every_socket_of_an_actor_system_listens_on_loopback_only(app: Application) -> None:
    processes = node_processes(app.admin_port)
    sockets = listening_sockets(processes)
    # admin, logger, master, root and its two workers: each has its own port.
    assert len({pid for pid, _ in sockets}) >= 6, sockets
    assert app.admin_port in {s.port for _, s in sockets}
    exposed = [(pid, s) for pid, s in sockets if not ipaddress.ip_address(s.address).is_loopback]
    assert exposed == []
    assert {s.address for _, s in sockets} == {"127.0.0.1"}


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "::1"])
def test_an_admin_port_another_user_listens_on_is_refused_with_its_number(host: str) -> None:
    port = free_admin_port()
    with squatter(port, host, NOBODY), pytest.raises(AdminPortInUse) as raised:
        start_actor_system("multiprocTCPBase", port)
    assert raised.value.port == port and raised.value.uids == (NOBODY,)
    assert f"admin port {port}" in str(raised.value)


def test_an_admin_port_our_own_system_listens_on_is_not_joined(app: Application) -> None:
    with pytest.raises(AdminPortInUse, match=f"admin port {app.admin_port}"):
        start_actor_system("multiprocTCPBase", app.admin_port)


def test_after_the_start_an_admin_listener_of_another_uid_is_refused() -> None:
    port = free_admin_port()
    with squatter(port, "127.0.0.1", NOBODY), pytest.raises(AdminPortInUse) as raised:
        _check_own_admin(port, "tcp", "127.0.0.1")
    assert raised.value.after_start and raised.value.uids == (NOBODY,)
    with pytest.raises(AdminPortInUse, match=str(port)):  # nothing listens at all
        _check_own_admin(port, "tcp", "127.0.0.1")


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"bind_address": "0.0.0.0"}, "bind_address"),
        ({"bind_address": "localhost"}, "bind_address"),
        ({"bind_address": "::1"}, "bind_address"),
        ({"capabilities": {"Process Startup Method": "spawn"}}, "Process Startup Method"),
    ],
)
def test_bad_bind_settings_are_refused_naming_the_argument(
    kwargs: dict[str, object], names: str
) -> None:
    with pytest.raises(ValueError, match=names):
        start_actor_system("multiprocTCPBase", free_admin_port(), **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- private directory


def _private(path: Path) -> bool:
    info = os.lstat(path)
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and stat.S_IMODE(info.st_mode) == 0o700
    )


@pytest.fixture
def tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory of the test's own, with no XDG_RUNTIME_DIR."""
    base = tmp_path / "tmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return base


def test_the_private_directory_is_made_0700_under_xdg_runtime_dir(
    tempdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    made = private_directory()
    assert made == runtime / "roger-actors" and _private(made)
    assert private_directory() == made, "an existing private directory is reused"


def test_without_xdg_runtime_dir_it_is_a_per_uid_directory_of_the_tempdir(tempdir: Path) -> None:
    made = private_directory()
    assert made == tempdir / f"roger-actors-{os.geteuid()}" and _private(made)


@pytest.mark.parametrize("planted", ["symlink", "foreign", "open"])
def test_a_planted_per_uid_path_is_never_used(tempdir: Path, planted: str) -> None:
    path = tempdir / f"roger-actors-{os.geteuid()}"
    elsewhere = tempdir / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if planted == "symlink":
        path.symlink_to(elsewhere)
    else:
        path.mkdir(mode=0o700)
        if planted == "foreign":
            os.chown(path, NOBODY, NOBODY)
        else:
            path.chmod(0o755)
    made = private_directory()
    assert made not in (path, elsewhere)
    assert made.parent == tempdir and _private(made)


def test_thespians_log_goes_to_the_private_directory_by_default(
    tempdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("THESPLOG_FILE", raising=False)
    port = free_admin_port()
    system = start_actor_system("multiprocTCPBase", port)
    try:
        log_file = Path(os.environ["THESPLOG_FILE"])
    finally:
        system.shutdown()
        monkeypatch.delenv("THESPLOG_FILE", raising=False)
    assert log_file == tempdir / f"roger-actors-{os.geteuid()}" / f"thespian-{port}.log"
    assert _private(log_file.parent)
    assert not (tempdir / f"thespian-{port}.log").exists()


def test_a_thespian_log_given_on_purpose_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("THESPLOG_FILE", raising=False)
    wanted = tmp_path / "mine.log"
    system = start_actor_system("multiprocTCPBase", free_admin_port(), thespian_log=str(wanted))
    try:
        assert os.environ["THESPLOG_FILE"] == str(wanted)
    finally:
        system.shutdown()
        monkeypatch.delenv("THESPLOG_FILE", raising=False)
