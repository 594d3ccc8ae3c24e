"""Specification: the glue every I/O actor shares with its AMQP link
(``roger_actors.transport.link_owner``), on the in-memory broker with a
stand-in for the Server's timers and watches.

Run with ``scripts/test tests/unit/test_link_owner.py``.
"""

from __future__ import annotations

import time
from typing import Any

from roger_actors.transport.link_owner import LinkOwner
from roger_actors.transport.memory import forget_broker


class Owner(LinkOwner):
    """What a Server gives the mixin, recorded."""

    def __init__(self) -> None:
        self.watched: list[int] = []
        self.timers: list[tuple[float, Any]] = []

    def watch_fileno(self, fileno: int) -> None:
        self.watched.append(fileno)

    def send_after(self, seconds: float, message: Any) -> Any:
        self.timers.append((seconds, message))
        return len(self.timers)


def _events(owner: Owner, count: int, timeout: float = 5.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(owner.io.drain())
        time.sleep(0.01)
    return got


def test_open_link_makes_the_loop_and_the_link_and_watches_the_inbox() -> None:
    owner = Owner()
    owner.open_link("test-link-owner", ["memory://link-owner-1"], None)
    try:
        assert owner.watched == [owner.io.fileno]
        assert owner.link.timeout == 10.0  # no timeout given: the default
        assert not owner.link.is_open  # nothing connects yet
    finally:
        owner.close_link("test")


def test_connect_link_posts_connected_and_close_link_closes_and_stops_the_loop() -> None:
    owner = Owner()
    owner.open_link("test-link-owner", ["memory://link-owner-2"], 2.0)
    owner.connect_link()
    assert _events(owner, 1) == [("connected", None)]
    assert owner.link.is_open
    owner.close_link("test")
    forget_broker("memory://link-owner-2")
    assert not owner.link.is_open
    assert not owner.io.alive


def test_a_failed_connect_is_posted_naming_the_error() -> None:
    owner = Owner()
    owner.open_link("test-link-owner", ["amqp://guest:guest@127.0.0.1:1/"], 2.0)
    try:
        owner.connect_link()
        [event] = _events(owner, 1)
        assert event[0] == "failed" and "127.0.0.1:1" in event[1]
    finally:
        owner.close_link("test")


def test_reconnects_back_off_and_start_over_once_the_link_is_up() -> None:
    owner = Owner()
    owner.open_link("test-link-owner", ["memory://link-owner-3"], None)
    try:
        for _ in range(6):
            owner.reconnect_later()
        owner.link_up()
        owner.reconnect_later()
        assert owner.timers == [
            (0.5, "reconnect"),
            (1.0, "reconnect"),
            (2.0, "reconnect"),
            (4.0, "reconnect"),
            (8.0, "reconnect"),
            (10.0, "reconnect"),
            (0.5, "reconnect"),
        ]
    finally:
        owner.close_link("test")


def test_close_link_stops_the_loop_even_when_the_link_never_connected() -> None:
    owner = Owner()
    owner.open_link("test-link-owner", ["memory://link-owner-4"], None)
    owner.close_link("test")
    assert not owner.io.alive
