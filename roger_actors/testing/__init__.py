"""A testing kit for users of roger-actors.

* :func:`eager`: ``Job.enqueue`` runs the job at once in this thread, with
  Roger's retry/bury decisions, the callbacks, queue-key uniqueness and
  execution-key serialisation (unit tests of job classes; no node, no broker).
* :func:`join`: wait until a partition's queue is drained (through
  ``roger.Info`` and the ledger) and re-raise the first job error.
* :class:`RecordingCallbacks` and :class:`Ledger`: how job outcomes in worker
  processes reach :func:`join` (see :mod:`roger_actors.testing.ledger`).
* :mod:`roger_actors.testing.pytest_plugin`: pytest fixtures (a node,
  partitions, ``join``, eager mode); enable with
  ``pytest_plugins = ["roger_actors.testing.pytest_plugin"]``.
* :func:`partition_queue_names`, :func:`delete_partition_queues`: clean-up.

Importing this package imports neither pytest nor an actor system.
"""

from .eager import EagerOutcome, EagerRun, eager
from .join import JoinTimeout, join
from .ledger import LEDGER_ENV, JobError, Ledger, Record, RecordingCallbacks, RemoteTraceback
from .queues import delete_partition_queues, partition_queue_names

__all__ = [
    "LEDGER_ENV",
    "EagerOutcome",
    "EagerRun",
    "JobError",
    "JoinTimeout",
    "Ledger",
    "Record",
    "RecordingCallbacks",
    "RemoteTraceback",
    "delete_partition_queues",
    "eager",
    "join",
    "partition_queue_names",
]
