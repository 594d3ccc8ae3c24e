"""Exceptions raised by :mod:`roger_actors`.

Roger (Elixir) reports failures as ``{:error, reason}`` tuples; the port raises
one of the exceptions below instead. Every exception derives from
:class:`RogerError`, so ``except roger.RogerError`` catches anything this library
raises on purpose. The ones that signal bad input also derive from
:class:`ValueError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ConfigError",
    "DuplicateJobError",
    "EnqueueError",
    "GlobalTimeoutError",
    "InvalidJobError",
    "NotRunningError",
    "NotStartedError",
    "RogerError",
]


class RogerError(Exception):
    """Base class of every exception that :mod:`roger_actors` raises deliberately."""


class InvalidJobError(RogerError, ValueError):
    """A job, a job payload or a job definition is invalid.

    Raised by ``Job.create`` (bad job class, arguments that CBOR cannot carry,
    a key hook returning something other than ``str``/``None``), by
    ``Job.encode`` (arguments mutated into something unencodable) and by
    ``Job.decode`` (undecodable or invalid payload). The message contains
    Roger's wording where Roger has one: "Job id must be set",
    "Job module must be set", "Job module must be a string",
    "Unknown job module", "Invalid job module".
    """


class DuplicateJobError(RogerError):
    """``Job.enqueue`` refused a job whose queue key is held by a job queued or running.

    Roger returns ``{:error, :duplicate}`` in that case. ``queue_key`` holds the
    offending key when it is known, else ``None``.
    """

    def __init__(self, message: str, queue_key: str | None = None) -> None:
        super().__init__(message)
        self.queue_key = queue_key


class EnqueueError(RogerError):
    """``Job.enqueue_many`` could not enqueue some of the jobs (no confirm:
    the connection dropped, the broker nacked, the partition's Global did
    not answer for a job with a queue key).

    ``confirmed`` are on the broker; ``duplicates`` were refused for their
    queue key (published nowhere); ``failed`` are ``(job, error)`` pairs,
    not enqueued (as far as the broker said) and safe to enqueue again.
    Each list keeps the order the jobs were given in.
    """

    def __init__(
        self,
        message: str,
        confirmed: Sequence[Any] = (),
        duplicates: Sequence[Any] = (),
        failed: Sequence[tuple[Any, BaseException]] = (),
    ) -> None:
        super().__init__(message)
        self.confirmed = list(confirmed)
        self.duplicates = list(duplicates)
        self.failed = list(failed)

    @classmethod
    def of_batch(
        cls,
        partition_id: str,
        confirmed: Sequence[Any],
        duplicates: Sequence[Any],
        failed: Sequence[tuple[Any, BaseException]],
    ) -> EnqueueError:
        """The error of a batch into ``partition_id`` of which ``failed`` (at
        least one) were not enqueued, its message naming how many and the
        first failure's error (raise it ``from`` that error)."""
        return cls(
            f"{len(failed)} of {len(confirmed) + len(failed)} jobs were not enqueued "
            f"in partition {partition_id!r}: {failed[0][1]!r}",
            confirmed,
            duplicates,
            failed,
        )


class NotStartedError(RogerError):
    """An operation needs something that is not started.

    Examples: no node is started in this process, or a partition's Global
    is not running anywhere in the cluster.
    """


class GlobalTimeoutError(RogerError, TimeoutError):
    """A partition's Global did not answer in time (it is running somewhere,
    but busy, failing over for longer than the timeout, or cut off)."""


class NotRunningError(RogerError):
    """The partition named in a call is not running on this node.

    Roger returns ``{:error, :not_running}`` in that case (``Partition.stop``,
    ``Partition.reconfigure``, ``Partition.safe_stop``).
    """


class ConfigError(RogerError, ValueError):
    """The configuration is invalid; the message names the offending key."""
