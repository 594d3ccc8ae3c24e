"""Creating Thespian actor systems with safe defaults.

Which base to use:

- ``"simpleSystemBase"``: every actor runs synchronously in the calling
  thread, only while the caller waits in ``call``/``ask``. Deterministic and
  fast: unit and property tests. No background time (timers fire only while
  someone waits), no real kill (a stuck actor blocks the caller), no
  parallelism, one process.
- ``"multiprocTCPBase"``: every actor is its own OS process, messages go over
  TCP on 127.0.0.1. The production base: real crashes, SIGKILL, shutdown
  timeouts, parallel work. Actor classes must be importable by module path.

What :func:`start_actor_system` does for safety on multi-process bases:

- Binds the actor transport to 127.0.0.1 (``THESPIAN_BASE_IPADDR``): actor
  ports accept pickled messages, so a reachable port would be remote code
  execution.
- Takes the admin port from the caller, so several systems (nodes, parallel
  tests) can share a host.
- Raises Thespian's drop threshold for queued transmits far above its
  back-pressure threshold: a sender blocks instead of a message being dropped.
- Sends Thespian's internal log to a file of the caller's choosing (at the
  caller's level, its primary records also to Python logging) and actor
  logging to Python logging on stderr (see :func:`log_definitions`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from thespian.actors import ActorSystem

BASES = ("simpleSystemBase", "multiprocTCPBase", "multiprocQueueBase", "multiprocUDPBase")

#: Queued transmits past which Thespian would drop a message; see module docs.
DROP_TRANSMITS_LEVEL = 10_000_000

DEFAULT_ADMIN_PORT = 1900


def log_definitions(level: int | str = logging.INFO) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` given to Thespian for actor logging.

    In multi-process bases Thespian forwards every actor's ``logging`` calls
    to one logger process, which applies this configuration: records go to
    stderr with the actor's address.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "actor": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"}
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "actor",
                "level": level,
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def start_actor_system(
    base: str = "multiprocTCPBase",
    admin_port: int = DEFAULT_ADMIN_PORT,
    *,
    log_level: int | str = logging.WARNING,
    thespian_log: str | None = None,
    bind_address: str = "127.0.0.1",
    capabilities: dict[str, Any] | None = None,
) -> ActorSystem:
    """Start (or join) a Thespian actor system and return its handle.

    ``base`` is one of :data:`BASES`. ``admin_port`` must be free unless a
    system of the same base already listens there (then it is joined).
    ``thespian_log`` is the file for Thespian's internal log (default
    ``$TMPDIR/thespian-<admin_port>.log``, unless ``THESPLOG_FILE`` is set).
    Raises ``ValueError`` naming a bad argument.
    """
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}")
    if not isinstance(admin_port, int) or not 0 < admin_port < 65536:
        raise ValueError(f"admin_port must be a TCP port number, got {admin_port!r}")
    if base != "simpleSystemBase":
        os.environ["THESPIAN_BASE_IPADDR"] = bind_address
        os.environ.setdefault("THESPIAN_DROP_TRANSMITS_LEVEL", str(DROP_TRANSMITS_LEVEL))
        if thespian_log is None and "THESPLOG_FILE" not in os.environ:
            thespian_log = os.path.join(tempfile.gettempdir(), f"thespian-{admin_port}.log")
        if thespian_log is not None:
            os.environ["THESPLOG_FILE"] = thespian_log
        _raise_drop_level()
        _route_thespian_log(log_level)
    caps = {"Admin Port": admin_port, "Convention Address.IPv4": None}
    caps.update(capabilities or {})
    if caps.get("Convention Address.IPv4") is None:
        caps.pop("Convention Address.IPv4")
    return ActorSystem(base, caps, logDefs=log_definitions(log_level), transientUnique=True)


def _raise_drop_level() -> None:
    try:
        from thespian.system.transport import asyncTransportBase
    except ImportError:  # pragma: no cover - layout of other Thespian versions
        return
    level = int(os.environ.get("THESPIAN_DROP_TRANSMITS_LEVEL", DROP_TRANSMITS_LEVEL))
    asyncTransportBase.DROP_TRANSMITS_LEVEL = max(asyncTransportBase.DROP_TRANSMITS_LEVEL, level)


def _route_thespian_log(level: int | str) -> None:
    """Thespian's internal log: its file (above) and, for the records Thespian
    marks as primary, Python logging (logger ``Thespian``) at ``level``."""
    from thespian.system.utilis import thesplog_control

    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.WARNING
    thesplog_control(numeric, True, 100 * 1024)
