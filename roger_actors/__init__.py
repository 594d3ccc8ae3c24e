"""roger_actors: multi-tenant job processing on RabbitMQ, a Python port of Roger.

This package's top level is importable without starting an actor system or
connecting to a broker: producers import it to define, create and encode jobs.
The public surface so far (API.md lists what follows):

* jobs: :class:`Job`, :func:`now`;
* queues: :class:`Queue` (naming);
* configuration: :class:`Config`, :class:`AmqpSettings`, :func:`load_config`;
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
    InvalidJobError,
    NotRunningError,
    NotStartedError,
    RogerError,
)
from roger_actors.job import Job
from roger_actors.persisters import StatePersister
from roger_actors.queue import Queue

__all__ = [
    "AmqpSettings",
    "Config",
    "ConfigError",
    "DuplicateJobError",
    "InvalidJobError",
    "Job",
    "NotRunningError",
    "NotStartedError",
    "Queue",
    "RogerError",
    "StatePersister",
    "WorkerCallback",
    "load_config",
    "now",
    "persisters",
]
