"""Servers for the gen_server / monitor / link tests (importable on every base)."""

from __future__ import annotations

from typing import Any

from supervision import NOREPLY, TIMEOUT, Down, Exited, From, Server, whereis
from tests.actors import Worker, record


class Watcher(Worker):
    """A Worker that monitors and links on request and records what it saw.

    Calls: ``("monitor", address)`` -> ref; ``("monitor-confirmed", ref)`` ->
    bool (the target confirmed the monitor, or it is over); ``("link-confirmed",
    address)`` -> bool (likewise for links); ``("demonitor", ref)`` -> bool;
    ``("link", address)``; ``("unlink", address)``; ``"downs"`` -> ``[(ref,
    reason)]``; ``"exits"`` -> ``[reason]`` of trapped exits. ``trap`` (4th
    init argument) sets ``trap_exit``. Journal: ``down <name> <reason>``.
    """

    def init(  # type: ignore[override]
        self, name: str, journal: str | None = None, control: str | None = None, trap: bool = False
    ) -> Any:
        self.trap_exit = trap
        self.downs: list[tuple[str, Any]] = []
        self.exits: list[Any] = []
        return super().init(name, journal, control)

    def handle_call(self, request: Any, from_: From) -> Any:
        if isinstance(request, tuple) and request[0] == "monitor":
            return self.monitor(request[1])
        if isinstance(request, tuple) and request[0] == "monitor-confirmed":
            # test-only look inside: the target answered the monitor (multi-process bases)
            watch = self._sv_ports.watches.get(request[1])
            return watch is None or not watch.pending
        if isinstance(request, tuple) and request[0] == "link-confirmed":
            # test-only look inside: the peer answered the link (multi-process bases)
            return not any(
                watch.pending
                for key, watch in self._sv_ports.watches.items()
                if key in self._sv_watches and self._sv_watches[key].address == request[1]
            )
        if isinstance(request, tuple) and request[0] == "demonitor":
            return self.demonitor(request[1])
        if isinstance(request, tuple) and request[0] == "link":
            self.link_to(request[1])
            return "linked"
        if isinstance(request, tuple) and request[0] == "unlink":
            self.unlink_from(request[1])
            return "unlinked"
        if request == "downs":
            return list(self.downs)
        if request == "exits":
            return list(self.exits)
        return super().handle_call(request, from_)

    def handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            self.downs.append((message.ref, message.reason))
            record(self.journal, f"down {self.name} {message.reason}")
        elif isinstance(message, Exited):
            self.exits.append(message.reason)
            record(self.journal, f"exit {self.name} {message.reason}")
        else:
            super().handle_info(message)


class GenServer(Worker):
    """A Worker exercising the gen_server callbacks.

    init(name, journal, control, mode): ``mode="stop"`` calls
    ``stop("bad_config")`` in init; ``"continue"`` asks for
    ``handle_continue("load")``; ``"bad-terminate"`` makes terminate raise.
    Calls: ``"log"`` -> the callbacks seen; ``("idle", s)`` arms an idle
    timeout; ``("crash-later", s)`` / ``("stop-later", s, reason)`` -> NOREPLY,
    then crash / stop from a timer; ``("stop-reply", reason)`` -> stop and
    reply ``"bye"``.
    """

    def init(  # type: ignore[override]
        self,
        name: str,
        journal: str | None = None,
        control: str | None = None,
        mode: str = "",
        terminate_delay: float = 0.0,
    ) -> Any:
        self.log: list[str] = ["init"]
        self.mode = mode
        result = super().init(name, journal, control, terminate_delay)
        if mode == "stop":
            self.stop("bad_config")
        if mode == "continue":
            self.continue_with("load")
        return result

    def handle_continue(self, term: Any) -> None:
        self.log.append(f"continue {term}")

    def handle_call(self, request: Any, from_: From) -> Any:
        self.log.append(f"call {request!r}")
        if request == "log":
            return list(self.log)
        if isinstance(request, tuple) and request[0] == "idle":
            self.idle_timeout(request[1])
            return "armed"
        if isinstance(request, tuple) and request[0] == "crash-later":
            self.send_after(request[1], "crash")
            return NOREPLY
        if isinstance(request, tuple) and request[0] == "stop-later":
            self.send_after(request[1], ("stop", request[2]))
            return NOREPLY
        if isinstance(request, tuple) and request[0] == "stop-reply":
            self.stop(request[1])
            return "bye"
        return super().handle_call(request, from_)

    def handle_info(self, message: Any) -> None:
        if message is TIMEOUT:
            self.log.append("timeout")
        elif message == "crash":
            raise RuntimeError(f"{self.name} crashed from a timer")
        elif isinstance(message, tuple) and message[0] == "stop":
            self.stop(message[1])
        else:
            super().handle_info(message)

    def terminate(self, reason: Any) -> None:
        super().terminate(reason)
        if self.mode == "bad-terminate":
            raise RuntimeError(f"{self.name} terminate failed")


class SelfFinder(Worker):
    """A Worker whose ``init`` looks up ``registered`` (its ``ChildSpec.name``)
    with ``supervision.whereis`` (5th init argument). Call ``"found"`` ->
    whether that lookup gave this server's own address. In-process bases only
    (``whereis`` blocks on multi-process ones)."""

    def init(  # type: ignore[override]
        self,
        name: str,
        journal: str | None = None,
        control: str | None = None,
        registered: Any = None,
    ) -> Any:
        self.found = whereis(registered) == self.address
        return super().init(name, journal, control)

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "found":
            return self.found
        return super().handle_call(request, from_)


class Plain(Server):
    """A Server with the default ``handle_cast`` and ``handle_info``; calls
    ``"ping"`` -> ``"pong"``, ``"later"`` -> ``"late answer"`` 0.2 s later,
    ``"slow"`` -> ``"slow answer"`` 0.4 s later."""

    def init(self) -> None:
        self.pending: list[From] = []
        self.slow: list[From] = []

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "ping":
            return "pong"
        if request == "later":
            self.pending.append(from_)
            self.send_after(0.2, "answer-later")
            return NOREPLY
        if request == "slow":
            self.slow.append(from_)
            self.send_after(0.4, "answer-slow")
            return NOREPLY
        return super().handle_call(request, from_)

    def handle_info(self, message: Any) -> None:
        if message == "answer-later":
            for from_ in self.pending:
                self.reply(from_, "late answer")
            self.pending.clear()
        elif message == "answer-slow":
            for from_ in self.slow:
                self.reply(from_, "slow answer")
            self.slow.clear()
        else:
            super().handle_info(message)
