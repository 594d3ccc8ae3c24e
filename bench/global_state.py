"""Cost of a Global snapshot with many cancel marks (M4 of the security review).

    PYTHONPATH=$PWD .venv/bin/python -m bench.global_state [--marks N]

Prints the snapshot size and the time to encode it (first, then again with
only a queue key changed: the group-commit case), decode it, and store it
with the Filesystem persister.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid

from roger_actors.partition.global_state import GlobalState
from roger_actors.persisters import Filesystem


def main() -> None:
    """Measure and print; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marks", type=int, default=1_000_000)
    marks = parser.parse_args().marks
    state = GlobalState()
    for _ in range(marks):
        state.apply("p", "cancel_job", [uuid.uuid4().hex])
    began = time.perf_counter()
    data = state.encode()
    first = time.perf_counter() - began
    state.apply("p", "is_queued", ["some-key", True])
    began = time.perf_counter()
    data = state.encode()
    again = time.perf_counter() - began
    began = time.perf_counter()
    GlobalState.decode(data)
    decode = time.perf_counter() - began
    persister = Filesystem(tempfile.mkdtemp())
    began = time.perf_counter()
    persister.store("p", data)
    store = time.perf_counter() - began
    print(
        f"{marks} marks: snapshot {len(data) / 1e6:.1f} MB, encode {first:.3f} s "
        f"(again after a key change {again:.3f} s), decode {decode:.3f} s, "
        f"Filesystem.store {store:.3f} s"
    )


if __name__ == "__main__":
    main()
