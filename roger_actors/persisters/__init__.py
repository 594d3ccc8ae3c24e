"""Persisters for a partition's Global state (Roger's ``StatePersister`` modules).

* :class:`StatePersister`: the interface (``init``/``load``/``store``);
* :class:`Stub`: persists nothing (the default);
* :class:`Filesystem`: one file per partition in a directory;
* :class:`RabbitMQ`: the snapshot as the one message of a queue per partition
  (no shared disk needed in a cluster).
"""

from roger_actors.persisters.base import StatePersister
from roger_actors.persisters.filesystem import Filesystem, state_file_name
from roger_actors.persisters.rabbitmq import RabbitMQ
from roger_actors.persisters.stub import Stub

__all__ = ["Filesystem", "RabbitMQ", "StatePersister", "Stub", "state_file_name"]
