"""roger_actors: multi-tenant job processing on RabbitMQ, a Python port of Roger.

This package's top level is importable without starting an actor system or
connecting to a broker: producers import it to define, create and encode jobs.
The public surface so far (API.md lists what follows):

* jobs: :class:`Job`, :func:`now`;
* queues: :class:`Queue` (naming);
* configuration: :class:`Config`, :class:`AmqpSettings`, :func:`load_config`;
* key sets: :class:`KeySet` (an actor holding a set of keys);
* cluster information: :class:`Info` (every node), :class:`NodeInfo` (this node);
* extension points: :class:`WorkerCallback`, :class:`StatePersister` and the
  :mod:`roger_actors.persisters` package (``Stub``, ``Filesystem``);
* errors: :class:`RogerError` and its subclasses.
"""

from roger_actors import persisters
from roger_actors.callbacks import WorkerCallback
from roger_actors.clock import now
from roger_actors.config import AmqpSettings, Config, load_config
from roger_actors.errors import (
    ConfigError,
    DuplicateJobError,
    EnqueueError,
    GlobalTimeoutError,
    InvalidJobError,
    NotRunningError,
    NotStartedError,
    RogerError,
)
from roger_actors.job import Job
from roger_actors.persisters import StatePersister
from roger_actors.queue import Queue, QueueDef


def __getattr__(name: str) -> object:
    # The node layer imports Thespian and aiormq: load it only when used, so
    # that producers importing roger_actors for Job stay light.
    if name == "KeySet":
        from roger_actors.key_set import KeySet

        return KeySet
    if name in ("Info", "NodeInfo"):
        from roger_actors.node import info

        return getattr(info, name)
    if name in _NODE_NAMES:
        from roger_actors import node

        return getattr(node, name)
    raise AttributeError(f"module 'roger_actors' has no attribute {name!r}")


_NODE_NAMES = (
    "start",
    "start_producer",
    "child_spec",
    "stop",
    "stop_on_signals",
    "Partition",
    "Consumer",
    "Node",
    "Worker",
    "Global",
    "System",
)

__all__ = [
    "AmqpSettings",
    "Config",
    "ConfigError",
    "Consumer",
    "DuplicateJobError",
    "EnqueueError",
    "Global",
    "GlobalTimeoutError",
    "Info",
    "InvalidJobError",
    "Job",
    "KeySet",
    "Node",
    "NodeInfo",
    "NotRunningError",
    "NotStartedError",
    "Partition",
    "Queue",
    "QueueDef",
    "RogerError",
    "StatePersister",
    "System",
    "Worker",
    "WorkerCallback",
    "child_spec",
    "load_config",
    "now",
    "persisters",
    "start",
    "start_producer",
    "stop",
    "stop_on_signals",
]
