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

- Binds every socket of the actor system (the admin's, the logger's, every
  actor's) to 127.0.0.1, or to the one address given as ``bind_address``:
  actor ports accept pickled messages, so a reachable port is remote code
  execution. Thespian itself only *advertises* ``THESPIAN_BASE_IPADDR`` and
  binds to every interface; :func:`install_bind_fix` makes its addresses
  bind where they advertise. The fix is installed in the starting process
  before the admin is forked, so every process of the system inherits it
  (hence only the ``fork`` start method is accepted).
- Starts a new actor system and never joins one: the admin port must be
  free, and after the start the admin's listener must belong to our uid
  (:class:`AdminPortInUse` otherwise). Joining whatever listens on a port
  would run our actors in another user's processes.
- Takes the admin port from the caller, so several systems (nodes, parallel
  tests) can share a host.
- Raises Thespian's drop threshold for queued transmits far above its
  back-pressure threshold: a sender blocks instead of a message being dropped.
- Sends Thespian's internal log to a file of the caller's choosing, by
  default ``thespian-<admin_port>.log`` in a private directory
  (:func:`private_directory`), at the caller's level (its primary records
  also to Python logging), and actor logging to Python logging on stderr
  (see :func:`log_definitions`).

Even bound to loopback, every local user (and anything sharing the network
namespace) can reach the ports: run nodes in their own network namespace or
container when other users share the host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import reprlib
import signal
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thespian.actors import ActorSystem

from .errors import SupervisionError

log = logging.getLogger("supervision.system")

BASES = ("simpleSystemBase", "multiprocTCPBase", "multiprocQueueBase", "multiprocUDPBase")

#: Queued transmits past which Thespian would drop a message; see module docs.
DROP_TRANSMITS_LEVEL = 10_000_000

DEFAULT_ADMIN_PORT = 1900

#: Name of the private directory (under ``$XDG_RUNTIME_DIR``, else the temporary
#: directory with the uid appended) that holds Thespian's log by default.
PRIVATE_DIR_NAME = "roger-actors"


class AdminPortInUse(SupervisionError):
    """The admin port of a new actor system is taken by another listener (or,
    after the start, the admin's listener is not owned by this process's uid).

    ``port`` is the admin port, ``uids`` the owners of what listens there.
    """

    def __init__(self, port: int, uids: tuple[int, ...], after_start: bool = False) -> None:
        owners = ", ".join(str(uid) for uid in uids) or "none"
        if after_start:
            what = f"after the start, its listener is not this process's (listener uid {owners}"
        else:
            what = f"it is already in use (listener uid {owners}"
        super().__init__(
            f"admin port {port}: {what}, ours {os.geteuid()}); a new actor system never "
            "joins one it did not start: choose a free admin port"
        )
        self.port = port
        self.uids = uids
        self.after_start = after_start

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.port, self.uids, self.after_start))


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
    """Start a new Thespian actor system and return its handle.

    ``base`` is one of :data:`BASES`, or ``"light"`` for
    :class:`supervision.light.LightSystem` (the other arguments then do not
    apply: it has no ports, no Thespian log). On the multi-process bases every socket
    of the system binds to ``bind_address`` only: the default keeps it on
    loopback; another address of this host (an IPv4 literal, not 0.0.0.0)
    exposes the pickle ports there on purpose. ``admin_port`` must be free:
    when anything (any address, IPv4 or IPv6, any user) already listens on
    it, or when after the start the admin's listener is not owned by our
    uid, :class:`AdminPortInUse` is raised naming the port; an existing
    system is never joined. ``thespian_log`` is the file for Thespian's
    internal log (default ``thespian-<admin_port>.log`` in
    :func:`private_directory`, unless ``THESPLOG_FILE`` is set).
    ``capabilities`` may not choose a start method other than ``fork``.
    Raises ``ValueError`` naming a bad argument.
    """
    if base == "light":  # supervision.light: in-process actors on asyncio (no Thespian base)
        from .light import LightSystem

        return LightSystem()
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}")
    if isinstance(admin_port, bool) or not isinstance(admin_port, int):
        raise ValueError(f"admin_port must be a TCP port number, got {type(admin_port).__name__}")
    if not 0 < admin_port < 2**16:
        raise ValueError(f"admin_port must be a TCP port number, got {reprlib.repr(admin_port)}")
    caps = {"Admin Port": admin_port, "Convention Address.IPv4": None}
    caps.update(capabilities or {})
    if caps.get("Convention Address.IPv4") is None:
        caps.pop("Convention Address.IPv4")
    protocol = _PROTOCOLS.get(base)
    if base != "simpleSystemBase":
        host = _check_bind_address(bind_address)
        method = caps.get("Process Startup Method", "fork")
        if method != "fork":
            raise ValueError(
                "capabilities['Process Startup Method'] must be 'fork' (the loopback bind "
                f"is inherited by forked processes), got {method!r}"
            )
        install_bind_fix()
        os.environ["THESPIAN_BASE_IPADDR"] = host
        os.environ.setdefault("THESPIAN_DROP_TRANSMITS_LEVEL", str(DROP_TRANSMITS_LEVEL))
        if thespian_log is None and "THESPLOG_FILE" not in os.environ:
            thespian_log = str(private_directory() / f"thespian-{admin_port}.log")
        if thespian_log is not None:
            os.environ["THESPLOG_FILE"] = thespian_log
        _raise_drop_level()
        _route_thespian_log(log_level)
        if protocol is not None:
            taken = listeners(admin_port, protocol)
            if taken and reclaim_orphan(admin_port, protocol):
                taken = listeners(admin_port, protocol)
            if taken:
                raise AdminPortInUse(admin_port, tuple(sorted({s.uid for s in taken})))
    system = ActorSystem(base, caps, logDefs=log_definitions(log_level), transientUnique=True)
    if protocol is not None:
        _check_own_admin(admin_port, protocol, os.environ["THESPIAN_BASE_IPADDR"])
        _record_owner(admin_port, protocol)
    return system


# ---------------------------------------------------------------- orphans
#
# An actor system must not outlive the process that started it. The
# application master watches that process (supervision.application), but a
# process killed before the master watches it (while the tree starts) leaves
# an orphan: the admin daemonized into a session of its own and holds the
# admin port, so every later start fails. So each start records, in this
# uid's private directory, who started the system on that port; a later start
# that finds the port taken by a system whose recorded starter is gone ends
# that system (its admin's process group) and goes on.

#: Seconds a reclaimed admin port may take to be free again.
RECLAIM_SECONDS = 5.0


def _owner_file(port: int) -> Path:
    return private_directory() / f"admin-{port}.owner"


def _start_time(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks after boot), None when it is gone:
    with the pid, it names one process (pids are reused)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[19]) if fields[0] not in ("Z", "X") else None


def _record_owner(port: int, protocol: str) -> None:
    admin = admin_process(port, protocol)
    if admin is None:
        return
    record = {
        "owner": os.getpid(),
        "owner_start": _start_time(os.getpid()),
        "admin": admin[0],
        "admin_pgid": admin[1],
        "admin_start": _start_time(admin[0]),
    }
    path = _owner_file(port)
    with contextlib.suppress(OSError):
        fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(record, file)
        os.replace(f"{path}.tmp", path)


def reclaim_orphan(port: int, protocol: str = "tcp") -> bool:
    """End the actor system listening on ``port`` when it is an orphan of this
    uid: a start recorded its admin (pid, start time, process group) and the
    process that started it, and that process is gone. Returns True when it
    ended one (its admin's process group got SIGKILL and the port is free, or
    :data:`RECLAIM_SECONDS` passed). Anything else (no record, a record not
    ours or not matching the listener, a starter still alive) is left alone:
    False.
    """
    path = _owner_file(port)
    try:
        info = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return False
        if info.st_mode & 0o077:
            return False
        record = json.loads(path.read_text())
        owner, admin, pgid = int(record["owner"]), int(record["admin"]), int(record["admin_pgid"])
        owner_start, admin_start = record["owner_start"], record["admin_start"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if owner_start is not None and _start_time(owner) == owner_start:
        return False  # its starter lives: not an orphan
    found = admin_process(port, protocol)
    if found != (admin, pgid) or admin_start is None or _start_time(admin) != admin_start:
        return False
    if pgid in (1, os.getpgrp()):
        return False
    log.warning(
        "admin port %d: the actor system there was started by process %d, which is gone; "
        "ending it (process group %d)",
        port,
        owner,
        pgid,
    )
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + RECLAIM_SECONDS
    while listeners(port, protocol) and time.monotonic() < deadline:
        time.sleep(0.05)  # the killed processes' sockets close as the kernel reaps them
    with contextlib.suppress(OSError):
        path.unlink()
    return True


_PROTOCOLS = {"multiprocTCPBase": "tcp", "multiprocUDPBase": "udp"}


def _check_bind_address(bind_address: str) -> str:
    try:
        address = ipaddress.IPv4Address(bind_address)
    except (ipaddress.AddressValueError, TypeError, ValueError):
        raise ValueError(
            f"bind_address must be an IPv4 address of this host, got {str(bind_address)[:64]!r}"
        ) from None
    if address.is_unspecified:
        raise ValueError(
            "bind_address must be one address of this host, not 0.0.0.0 (every interface)"
        )
    return str(address)


def _check_own_admin(port: int, protocol: str, host: str) -> None:
    """After the start: what answers on ``host:port`` must be ours (closes the
    race between the free-port check and the admin's bind)."""
    serving = [s for s in listeners(port, protocol) if s.address in (host, "0.0.0.0", "::")]
    foreign = tuple(sorted({s.uid for s in serving if s.uid != os.geteuid()}))
    if foreign or not serving:
        raise AdminPortInUse(port, foreign, after_start=True)


# ---------------------------------------------------------------- binding


def install_bind_fix() -> None:
    """Make Thespian's IP addresses bind where they advertise.

    Thespian builds every listening address (admin, logger, actors) with
    ``bindname = ('', port)``, i.e. every interface, whatever
    ``THESPIAN_BASE_IPADDR`` says. After this call (idempotent), an address
    that would bind to every interface binds to ``THESPIAN_BASE_IPADDR`` when
    that is set. Processes forked afterwards inherit the fix.
    """
    from thespian.system.transport import IPBase

    cls: Any = IPBase.IPActorAddress
    if getattr(cls.__init__, "_bind_fix", False):
        return
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        host = os.environ.get("THESPIAN_BASE_IPADDR")
        if host and self.bindname[0] in ("", "0.0.0.0"):
            self.bindname = (host, self.bindname[1])

    __init__._bind_fix = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


@dataclass(frozen=True)
class Listener:
    """A socket of the host bound to a port: its address, owner uid and inode
    (from ``/proc/net/tcp*``/``udp*``)."""

    address: str
    port: int
    uid: int
    inode: int


def listeners(port: int | None = None, protocol: str = "tcp") -> list[Listener]:
    """The listening TCP (``protocol="tcp"``, state LISTEN) or bound UDP
    (``"udp"``) sockets of this network namespace, IPv4 and IPv6, on ``port``
    (every port when None). Unreadable tables count as empty."""
    found = []
    for table in (f"/proc/net/{protocol}", f"/proc/net/{protocol}6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or (protocol == "tcp" and cols[3] != "0A"):
                continue
            hex_address, hex_port = cols[1].rsplit(":", 1)
            if port is not None and int(hex_port, 16) != port:
                continue
            found.append(Listener(_decode_address(hex_address), int(hex_port, 16),
                                  int(cols[7]), int(cols[9])))
    return found


def admin_process(port: int, protocol: str = "tcp") -> tuple[int, int] | None:
    """``(pid, process group)`` of the actor system's admin listening on
    ``port``, or None. Forked actors inherit the admin's listening socket, so
    the admin is the holder of that socket whose parent does not hold it."""
    inodes = {s.inode for s in listeners(port, protocol)}
    if not inodes:
        return None
    holders: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            fields = stat.rsplit(")", 1)[1].split()
            holders[int(entry.name)] = int(fields[1])
    roots = [pid for pid, parent in holders.items() if parent not in holders]
    if len(roots) != 1:
        return None
    try:
        return roots[0], os.getpgid(roots[0])
    except OSError:
        return None


def process_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _decode_address(hex_address: str) -> str:
    """An address as ``/proc/net/tcp*`` writes it (host byte order words)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


# ---------------------------------------------------------------- private files


def private_directory() -> Path:
    """A directory only this uid can use, for files other users must not read
    or plant (Thespian's log).

    ``$XDG_RUNTIME_DIR/roger-actors`` when ``XDG_RUNTIME_DIR`` is a directory
    of ours not open to others, else ``<tempdir>/roger-actors-<uid>``. Either
    is created with mode 0700, and used only when it is a real directory (not
    a symlink) owned by us with no access for group or others; otherwise a
    fresh ``tempfile.mkdtemp`` directory is used. Never raises for a hostile
    existing path; OSError only when no directory can be made at all.
    """
    uid = os.geteuid()
    candidates = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and _is_private_dir(runtime, uid):
        candidates.append(Path(runtime, PRIVATE_DIR_NAME))
    candidates.append(Path(tempfile.gettempdir(), f"{PRIVATE_DIR_NAME}-{uid}"))
    for path in candidates:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        if _is_private_dir(path, uid):
            return path
    return Path(tempfile.mkdtemp(prefix=f"{PRIVATE_DIR_NAME}-{uid}-"))


def _is_private_dir(path: str | Path, uid: int) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    private = stat.S_IMODE(info.st_mode) & 0o077 == 0
    return stat.S_ISDIR(info.st_mode) and info.st_uid == uid and private


def _raise_drop_level() -> None:
    try:
        from thespian.system.transport import asyncTransportBase
    except ImportError:  # pragma: no cover - layout of other Thespian versions
        return
    level = int(os.environ.get("THESPIAN_DROP_TRANSMITS_LEVEL", DROP_TRANSMITS_LEVEL))
    asyncTransportBase.DROP_TRANSMITS_LEVEL = max(asyncTransportBase.DROP_TRANSMITS_LEVEL, level)


def _route_thespian_log(level: int | str) -> None:
    """Thespian's internal log: its file (above) and, for the records Thespian
    marks as primary, Python logging (logger ``Thespian``) at ``level``.
    Thespian caches its file's path on first use: the cache is cleared so
    that this process and the ones it forks use ``THESPLOG_FILE`` as set now
    (never the default ``$TMPDIR/thespian.log``)."""
    from thespian.system import utilis
    from thespian.system.utilis import thesplog_control

    utilis._thesplog_file = None

    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.WARNING
    thesplog_control(numeric, True, 100 * 1024)
