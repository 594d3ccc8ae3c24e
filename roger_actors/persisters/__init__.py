"""Persisters for a partition's Global state (Roger's ``StatePersister`` modules).

* :class:`StatePersister`: the interface (``init``/``load``/``store``);
* :class:`Stub`: persists nothing (the default);
* :class:`Filesystem`: one file per partition in a directory.

A persister that keeps the state in RabbitMQ itself (no shared disk needed in a
cluster) belongs to the broker layer and is added there.
"""

from roger_actors.persisters.base import StatePersister
from roger_actors.persisters.filesystem import Filesystem, state_file_name
from roger_actors.persisters.stub import Stub

__all__ = ["Filesystem", "StatePersister", "Stub", "state_file_name"]
