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

ROOT = Path(__file__).resolve().parents[2]
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
