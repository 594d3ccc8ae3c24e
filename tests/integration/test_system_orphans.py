"""An actor system whose starter died is an orphan, and a new start reclaims its port.

A process can be killed after its actor system started and before anything
watches it (the application master watches the starter once the tree
starts). The admin daemonized into a session of its own, so it lives on,
holding the admin port. The next start on that port ends it, and only it:
a system whose starter is alive is never touched (``AdminPortInUse``).
Real processes, real SIGKILLs, multiprocTCPBase.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import pytest

from supervision.system import admin_process
from tests.cluster_harness import ROOT
from tests.partition_harness import _free_admin_port, wait_for

pytestmark = pytest.mark.timeout(120)

START = """
import os, signal, sys, time
from supervision.system import start_actor_system
start_actor_system("multiprocTCPBase", int(sys.argv[1]))
print("started", flush=True)
if sys.argv[2] == "die":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(600)
"""


def _start(port: int, then: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", START, str(port), then],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _end(proc: subprocess.Popen[str], port: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    admin = admin_process(port)
    if admin is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(admin[1], signal.SIGKILL)


def test_a_start_reclaims_the_port_of_an_actor_system_whose_starter_died() -> None:
    port = _free_admin_port()
    first = _start(port, "die")
    second = None
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "started"
        assert first.wait(30) == -signal.SIGKILL
        orphan = admin_process(port)
        assert orphan is not None, "the killed starter's admin is gone by itself"
        second = _start(port, "live")
        assert second.stdout is not None
        said = [second.stdout.readline().strip() for _ in range(2)]
        assert said[-1] == "started", said
        assert "which is gone; ending it" in said[0], said
        now = admin_process(port)
        assert now is not None and now != orphan
        wait_for(lambda: not os.path.exists(f"/proc/{orphan[0]}"), 10, what="the orphan gone")
    finally:
        _end(first, port)
        if second is not None:
            _end(second, port)


def test_a_start_never_touches_an_actor_system_whose_starter_lives() -> None:
    port = _free_admin_port()
    first = _start(port, "live")
    second = None
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "started"
        running = admin_process(port)
        second = _start(port, "live")
        assert second.wait(30) != 0
        assert second.stdout is not None and "AdminPortInUse" in second.stdout.read()
        assert admin_process(port) == running
    finally:
        _end(first, port)
        if second is not None:
            _end(second, port)
