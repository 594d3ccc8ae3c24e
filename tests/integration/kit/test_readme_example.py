"""The README's "Testing your jobs" example, run as a user's project runs it.

Its code blocks are written to files named by their first line
(``# myapp/jobs.py``), and pytest runs them in a process of its own: the
plugin, the eager tests and the node tests pass as the README says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEADING = "## Testing your jobs"


def readme_files() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(HEADING):]
    section = section[: section.index("\n## ", len(HEADING))]
    files = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        first = block.splitlines()[0]
        assert first.startswith("# "), f"a README block without its file name: {first!r}"
        files[first[2:].split(" ")[0]] = block
    return files


def test_the_readme_example_passes_as_a_users_project(tmp_path: Path) -> None:
    files = readme_files()
    assert set(files) == {"conftest.py", "myapp/jobs.py", "tests/test_jobs.py"}
    for name, body in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    (tmp_path / "myapp" / "__init__.py").touch()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("ROGER_TESTING_LEDGER", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_jobs.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout, done.stdout


def run_project(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name, body in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("ROGER_TESTING_LEDGER", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_it.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )


CONFTEST = '''
import pytest
from roger_actors.testing import RecordingCallbacks

pytest_plugins = ["roger_actors.testing.pytest_plugin"]
'''


def test_callbacks_of_ones_own_that_subclass_recording_callbacks_keep_join_working(
    tmp_path: Path
) -> None:
    conftest = CONFTEST + '''

class Mine(RecordingCallbacks):
    def after_run(self, partition_id, job, result, state):
        super().after_run(partition_id, job, result, state)
        open(job.args[0], "w").write(repr(result))


@pytest.fixture(scope="session")
def roger_config(roger_config):
    return {**roger_config, "callbacks": Mine}
'''
    test = '''
import pytest
import roger_actors as roger

class Answer(roger.Job):
    def perform(self, args):
        if args[1]:
            raise LookupError("no answer")
        return 42

def test_it(roger_partition, roger_join, tmp_path):
    pid = roger_partition()
    roger.Job.create(Answer, [str(tmp_path / "out"), False]).enqueue(pid)
    roger_join(pid)
    assert (tmp_path / "out").read_text() == "42"
    roger.Job.create(Answer, [str(tmp_path / "no"), True]).enqueue(pid)
    with pytest.raises(LookupError):
        roger_join(pid)
'''
    done = run_project(tmp_path, {"conftest.py": conftest, "test_it.py": test})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_a_node_whose_callbacks_do_not_record_is_refused_with_a_clear_error(
    tmp_path: Path
) -> None:
    conftest = CONFTEST + '''

@pytest.fixture(scope="session")
def roger_config(roger_config):
    return {**roger_config, "callbacks": None}
'''
    test = "def test_it(roger_node):\n    pass\n"
    done = run_project(tmp_path, {"conftest.py": conftest, "test_it.py": test})
    assert done.returncode != 0
    assert "must be roger_actors.testing.RecordingCallbacks" in done.stdout + done.stderr
