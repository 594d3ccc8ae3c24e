"""Port watches (supervision/monitors.py): how a watcher on multiprocTCPBase
tells from an actor's listening socket that it died, and when a socket is not
proof of life. Real sockets on loopback; each poll is called by hand."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from thespian.actors import ActorAddress
from thespian.system.transport.IPBase import TCPv4ActorAddress

from supervision.monitors import PortWatches


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    yield sock
    sock.close()


def address_of(sock: socket.socket) -> ActorAddress:
    return ActorAddress(TCPv4ActorAddress("127.0.0.1", sock.getsockname()[1]))


def listen_again(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4)
    return sock


def test_a_confirmed_watch_reports_killed_two_polls_after_the_socket_closes(
    listener: socket.socket,
) -> None:
    watches = PortWatches()
    watches.add("m", address_of(listener), pending=True)
    watches.confirm("m")
    assert watches.poll() == []

    listener.close()

    assert watches.poll() == []  # one more poll, for a Down already on its way
    assert watches.poll() == [("m", "killed")]
    assert not watches


def test_a_confirmed_watch_reports_killed_when_another_socket_took_the_port(
    listener: socket.socket,
) -> None:
    port = listener.getsockname()[1]
    watches = PortWatches()
    watches.add("m", address_of(listener), pending=True)
    watches.confirm("m")

    listener.close()
    successor = listen_again(port)
    try:
        assert watches.poll() == []
        assert watches.poll() == [("m", "killed")]
    finally:
        successor.close()


def test_an_unconfirmed_watch_takes_no_socket_as_its_targets_and_reports_noproc(
    listener: socket.socket,
) -> None:
    # the socket of an actor that exited (waiting to be reaped, or closing
    # down) is no proof of life: a monitor that never got its target's word
    # ends with noproc, not killed
    watches = PortWatches()
    watches.add("m", address_of(listener), pending=True)
    assert watches.poll() == []
    assert watches.poll() == []  # something listens: no verdict yet

    listener.close()

    assert watches.poll() == []
    assert watches.poll() == [("m", "noproc")]


def test_a_watch_of_an_empty_port_reports_noproc(listener: socket.socket) -> None:
    address = address_of(listener)
    listener.close()
    watches = PortWatches()
    watches.add("m", address, pending=True)

    assert watches.poll() == []
    assert watches.poll() == [("m", "noproc")]


def test_a_confirmation_after_the_watch_ended_changes_nothing(listener: socket.socket) -> None:
    watches = PortWatches()
    watches.add("m", address_of(listener), pending=True)
    watches.discard("m")
    watches.confirm("m")
    assert not watches
    assert watches.poll() == []


def test_a_poll_of_addresses_without_a_tcp_port_reads_no_socket_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A light actor's address has no port: nothing to look for, and reading
    # /proc/net/tcp for nothing cost a node 16 callers' worth of CPU.
    from supervision import monitors
    from supervision.light import LightAddress

    def no_table(ports: set[int]) -> dict[int, set[int]]:
        raise AssertionError(f"read the socket tables for {ports!r}")

    monkeypatch.setattr(monitors, "listening_inodes", no_table)
    watches = PortWatches()
    watches.add("m", LightAddress(7), probe=False)
    assert watches.poll() == [] and watches.poll() == []
    assert watches, "still watched: a port-less address is never found dead"
