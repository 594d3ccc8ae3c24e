"""``scripts/demo``: job processing on a real node, every step checked, in under 30 s.

The demo is run as a user runs it (a subprocess of ``scripts/demo``, on this
test's virtual environment so that it installs nothing new), on the RabbitMQ
the tests use and, with no RabbitMQ reachable, on the embedded broker.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo"
STEPS = [
    "start a node, two tenants",
    "enqueue jobs",
    "refuse a duplicate unique job",
    "serialise two jobs (execution key)",
    "cancel a running job",
    "retry a job until it is buried",
    "pause and resume a queue",
    "clean up",
]


def run_demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROGER_VENV": sys.prefix, "COLUMNS": "160"}
    env.pop("ROGER_AMQP_URL", None)
    return subprocess.run(
        [str(DEMO), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _assert_every_step_passed(done: subprocess.CompletedProcess[str], wall: float) -> None:
    report = f"exit {done.returncode} after {wall:.1f} s\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, report
    summary = done.stdout[done.stdout.index("Summary"):]
    for number, title in enumerate(STEPS, 1):
        row = re.search(rf"│ +{number} │ {re.escape(title)} +│ (\w+) ", summary)
        assert row is not None and row.group(1) == "PASS", f"step {title!r}\n{report}"
    found = re.search(r"all steps passed: (\d+) jobs settled, wall time ([\d.]+) s", done.stdout)
    assert found is not None, report
    assert int(found.group(1)) >= 15, report
    assert float(found.group(2)) < 30.0, report
    assert "[3/8] refuse a duplicate unique job: PASS duplicate 'report-7' refused" in done.stdout
    assert re.search(r"\[8/8\] clean up: PASS .*no process left", done.stdout), report


def test_the_demo_runs_every_step_on_rabbitmq_and_exits_0_within_30_seconds() -> None:
    began = time.monotonic()
    done = run_demo()
    _assert_every_step_passed(done, time.monotonic() - began)
    assert "broker: RabbitMQ at 127.0.0.1:5672" in done.stdout


def test_with_no_rabbitmq_the_demo_runs_every_step_on_the_embedded_broker() -> None:
    # Nothing answers on port 1: the default (auto) takes the embedded broker.
    began = time.monotonic()
    done = run_demo("--amqp-url", "amqp://guest:guest@127.0.0.1:1/")
    _assert_every_step_passed(done, time.monotonic() - began)
    assert "RabbitMQ is not reachable at 127.0.0.1:1: broker: the embedded broker" in done.stdout


def test_rabbitmq_asked_for_and_unreachable_is_named_and_exits_3() -> None:
    done = run_demo("--broker", "amqp", "--amqp-url", "amqp://guest:guest@127.0.0.1:1/")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "RabbitMQ is not reachable at 127.0.0.1:1" in done.stdout
    assert "Summary" not in done.stdout


def test_a_step_that_does_not_do_what_it_says_fails_the_demo_with_exit_1_and_cleans_up() -> None:
    # The unique job loses its queue key: the duplicate is accepted, which the
    # demo must notice; it still stops the node and deletes the queues.
    sabotage = (
        "import sys; sys.path.insert(0, 'examples'); import demo_jobs; "
        "demo_jobs.Report.queue_key = lambda self, args: None; "
        "import roger_demo; sys.exit(roger_demo.main([]))"
    )
    env = {**os.environ, "COLUMNS": "160"}
    env.pop("ROGER_AMQP_URL", None)
    done = subprocess.run([sys.executable, "-c", sabotage], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    report = done.stdout + done.stderr
    assert done.returncode == 1, report
    assert "a second job with queue key 'report-7' was accepted" in done.stdout, report
    summary = done.stdout[done.stdout.index("Summary"):]
    assert re.search(r"│ +3 │ refuse a duplicate unique job +│ FAIL ", summary), report
    assert re.search(r"\[8/8\] clean up: PASS .*no process left", done.stdout), report
    assert "FAILED" in done.stdout
