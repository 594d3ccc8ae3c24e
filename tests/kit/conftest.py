"""The fixtures of ``roger_actors.testing.pytest_plugin`` for the tests of this folder
(users enable them with ``pytest_plugins`` in their root conftest; a non-root
conftest may not, so they are imported here)."""

from roger_actors.testing.pytest_plugin import (  # noqa: F401 (fixtures)
    roger_amqp_url,
    roger_config,
    roger_eager,
    roger_join,
    roger_ledger,
    roger_node,
    roger_partition,
)
