"""A supervision tree in real processes: start it, crash a worker, SIGKILL
another, watch the supervisor restart them, then shut the tree down in order.

Run with ``scripts/demo`` (or ``python examples/supervision_tree.py``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from supervision import (
    Application,
    ChildSpec,
    From,
    NoProc,
    Server,
    Supervisor,
    SupervisorSpec,
    call,
    which_children,
)


class Counter(Server):
    """Counts the calls it gets; forgets everything when it is restarted."""

    def init(self, name: str) -> None:
        self.name = name
        self.count = 0

    def handle_call(self, request: Any, from_: From) -> Any:
        if request == "incr":
            self.count += 1
            return self.count
        if request == "pid":
            return os.getpid()
        if request == "crash":
            raise RuntimeError(f"{self.name} was told to crash")
        return super().handle_call(request, from_)

    def terminate(self, reason: Any) -> None:
        print(f"  [{self.name}] terminate({reason})", file=sys.stderr, flush=True)


class Root(Supervisor):
    """one_for_one over three counters."""

    def init(self) -> SupervisorSpec:
        return SupervisorSpec(
            [ChildSpec(name, (Counter, (name,))) for name in ("alpha", "beta", "gamma")],
            strategy="one_for_one",
            max_restarts=5,
            max_seconds=10,
        )


def address_of(root: Any, child_id: str, not_this: Any = None) -> Any:
    """The address of a running child other than ``not_this``, waiting (bounded)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for info in which_children(root):
            if info.id == child_id and info.address not in (None, "restarting", not_this):
                return info.address
        time.sleep(0.05)
    raise SystemExit(f"{child_id} was not restarted")


def main() -> None:
    """Run the demonstration; exits non-zero if a restart did not happen."""
    port = int(os.environ.get("DEMO_ADMIN_PORT", "19500"))
    with Application(ChildSpec("root", Root), base="multiprocTCPBase", admin_port=port) as app:
        root = app.root
        alpha = address_of(root, "alpha")
        print("alpha counts:", [call(alpha, "incr") for _ in range(3)])
        try:
            call(alpha, "crash")
        except NoProc as exc:
            print("alpha crashed:", exc)
        new_alpha = address_of(root, "alpha", not_this=alpha)
        print("alpha restarted, count starts over:", call(new_alpha, "incr"))

        beta = address_of(root, "beta")
        pid = call(beta, "pid")
        os.kill(pid, signal.SIGKILL)
        print(f"beta (pid {pid}) killed with SIGKILL")
        new_pid = call(address_of(root, "beta", not_this=beta), "pid")
        print(f"beta restarted in a new process (pid {new_pid})")
        print("stopping: children terminate in reverse start order")
    print("application stopped with reason:", app.exit_reason)


if __name__ == "__main__":
    main()
