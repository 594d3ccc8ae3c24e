"""The job model (``roger_actors.job``, ``roger_actors.queue`` and what they
import) depends on nothing of the node level (``roger_actors.node``): the node
installs what the model delegates to (``set_enqueue_hook``, ``set_purge_hook``).
Nor does a partition's worker load the node."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Run in a fresh interpreter: import the module, use the calls that delegate
#: to the node without one running, and list the roger_actors modules loaded.
PROBE = """
import json, sys
import {module}
from roger_actors.errors import NotStartedError
from roger_actors.job import Job
from roger_actors.queue import Queue

class ProbeJob(Job):
    def perform(self, args):
        return None

for attempt in (
    lambda: Queue.purge("probe", "default"),
    lambda: Job.create(ProbeJob, []).enqueue("probe"),
):
    try:
        attempt()
    except NotStartedError:
        pass
    else:
        raise AssertionError("expected NotStartedError without a node")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "roger_actors")))
"""


def _loaded(module: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def _is_node(name: str) -> bool:
    return name == "roger_actors.node" or name.startswith("roger_actors.node.")


def _imports(module: str) -> set[str]:
    """Every module ``module``'s source imports, function-level imports
    included, relative ones resolved."""
    path = ROOT / Path(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.is_dir() else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize(
    "module", ["roger_actors.job", "roger_actors.queue", "roger_actors.partition.worker"]
)
def test_the_job_model_loads_no_node_module(module: str) -> None:
    # A partition's worker is below the node too: it sets its process's
    # client up through roger_actors.runtime.
    loaded = _loaded(module)
    assert module in loaded
    assert [name for name in loaded if _is_node(name)] == []


@pytest.mark.parametrize("module", ["roger_actors.job", "roger_actors.queue"])
def test_no_module_of_the_job_model_imports_the_node_even_lazily(module: str) -> None:
    # The package's __init__ loads the node's names on first use (roger.start,
    # roger.Partition...): it is the public surface, not the job model.
    model = [name for name in _loaded(module) if name != "roger_actors"]
    offenders = {name: sorted(filter(_is_node, _imports(name))) for name in model}
    assert {name: found for name, found in offenders.items() if found} == {}
