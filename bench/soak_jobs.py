"""The job of the chaos soak (``bench/soak.py``): it writes its id to a journal when it ran.

The journal is the file named by ``SOAK_JOURNAL`` (inherited by every worker
of the node from the node process). One line per completed run, ``<id>\\n``,
appended with ``O_APPEND`` in one ``write``: lines from many processes never
mix. The line is written once ``perform`` is done, so a job killed under
``perform`` leaves no line and a job whose line is there ran to the end at
least once; a job whose id is there twice ran twice.

Arguments: ``[n, work_ms, fail_first]``. The job works ``work_ms``
milliseconds (a sleep: the soak measures delivery, not CPU), and when
``fail_first`` is true it raises on its first attempt (``retry_count == 0``)
so that it goes through a retry queue and comes back.
"""

from __future__ import annotations

import os
import time
from typing import Any

from roger_actors import Job

JOURNAL_ENV = "SOAK_JOURNAL"

_fd: int | None = None


class FirstAttemptFailed(Exception):
    """Raised by a :class:`SoakJob` with ``fail_first`` on its first attempt."""


class SoakJob(Job):
    """Works a few milliseconds, fails once when asked, then journals its id."""

    retryable = True

    def perform(self, args: Any) -> Any:
        """Run the job; see the module docstring."""
        global _fd
        _n, work_ms, fail_first = args
        if work_ms:
            time.sleep(work_ms / 1000)
        if fail_first and self.retry_count == 0:
            raise FirstAttemptFailed(self.id)
        if _fd is None:
            _fd = os.open(os.environ[JOURNAL_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(_fd, f"{self.id}\n".encode())
        return None
