"""Test helper for the job-module allow-list.

Importing this module is recorded in ``IMPORTED`` and in ``sys.modules``; the
tests use that to prove that ``Job.decode`` does not import modules a payload
names unless they are allow-listed.
"""

from __future__ import annotations

from typing import Any

import roger_actors as roger

IMPORTED = True

#: Something that is not a job class, for the "Invalid job module" case.
NOT_A_JOB = 42


class SentinelJob(roger.Job):
    """A job that exists only in this module."""

    def perform(self, args: Any) -> Any:
        """Return a marker."""
        return "sentinel ran"
