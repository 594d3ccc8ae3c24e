"""``roger-actors``: the operators' command line.

Run a node in the foreground, or act on a running cluster from a process
that runs no node (it connects as a producer, :func:`roger_actors.start_producer`,
and talks to the nodes through the System exchange and the partitions' Globals)::

    roger-actors [--config PATH] [--amqp URL] [--amqp-password-file PATH] [--json]
                 [--timeout SECONDS] [-v] COMMAND ...

    node                                   run a node until SIGTERM/SIGINT (graceful stop)
    ping                                   one line per live node
    info                                   partitions and queues across the cluster
    jobs running [--partition PID]         running jobs, per node
    jobs queued PID QUEUE [--count N]      queued jobs, newest first (queue untouched)
    enqueue PID JOB_TYPE JSON_ARGS [--queue Q]
    cancel PID JOB_ID                      cluster-wide (Global.cancel_job)
    pause PID QUEUE / resume PID QUEUE     cluster-wide (Global.queue_pause/queue_resume)
    purge PID QUEUE                        empty the work queue; prints the count
    partition start PID QUEUES_JSON [--node NAME]
    partition stop PID [--node NAME]
    partition reconfigure PID QUEUES_JSON [--node NAME]

The configuration comes from ``--config`` (TOML, as :func:`roger_actors.load_config`
reads it), then the ``ROGER_*`` environment variables, then ``--amqp``. The
broker password can be kept out of the command line (every local user sees
``ps``): ``ROGER_AMQP_PASSWORD`` and then ``--amqp-password-file PATH`` (the
file's first line) replace the password of whatever URL the configuration
gives. The global options may also follow the command (``roger-actors ping --json``).

``enqueue`` imports the module named in ``JOB_TYPE`` (``"package.module.Class"``
or ``"package.module:Class"``): the operator names it, and it must be importable
(e.g. through ``PYTHONPATH``). Anything but a :class:`roger_actors.Job`
subclass is refused.

Output is an aligned table by default, one JSON document with ``--json``.
Exit codes: 0 ok; 2 usage or bad argument (the message names it); 3 broker
unreachable; 4 unknown partition, queue or node (``NotStartedError``,
``NotRunningError``); 1 any other failure. No traceback is printed for these.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, NoReturn, TextIO

import attrs

import roger_actors as roger
from roger_actors import node as roger_node
from roger_actors.config import Config, load_config, parse_amqp
from roger_actors.errors import (
    ConfigError,
    DuplicateJobError,
    GlobalTimeoutError,
    InvalidJobError,
    NotRunningError,
    NotStartedError,
)
from roger_actors.job import Job
from roger_actors.node.system import DEFAULT_CALL_TIMEOUT
from roger_actors.queue import (
    Queue,
    normalise_queue_defs,
    normalise_queue_type,
    validate_partition_id,
)
from roger_actors.system_protocol import CommandError

log = logging.getLogger("roger_actors.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BROKER = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130

#: Default seconds to wait for the nodes' answers to ``partition`` commands.
PARTITION_TIMEOUT = 15.0


class UsageError(Exception):
    """A bad command-line argument; the message names it (exit code 2)."""


class NotFound(Exception):
    """Something named on the command line does not exist (exit code 4)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise UsageError instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# ---------------------------------------------------------------- parsing


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options accepted before and after the command (after: no defaults,
    so that a value given before the command is kept)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--config", metavar="PATH", default=default(None), help="TOML configuration file"
    )
    parser.add_argument(
        "--amqp", metavar="URL", default=default(None), help="broker URL (overrides the config)"
    )
    parser.add_argument(
        "--amqp-password-file",
        metavar="PATH",
        default=default(None),
        help=(
            "read the broker password from the first line of PATH (replaces the URL's; "
            "so does the ROGER_AMQP_PASSWORD environment variable): keeps it out of ps"
        ),
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print one JSON document"
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=default(None),
        help="seconds to wait for the cluster's answers",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="log more"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``roger-actors`` (errors raise :class:`UsageError`)."""
    parser = _Parser(
        prog="roger-actors",
        description="Run a Roger node, or inspect and control a running cluster.",
        epilog=(
            "exit codes: 0 ok, 2 usage or bad argument, 3 broker unreachable, "
            "4 unknown partition, queue or node, 1 any other failure"
        ),
    )
    _global_options(parser, suppress=False)
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(
        group: Any, name: str, help_text: str, handler: Callable[..., int] | None
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help_text, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    add(commands, "node", "run a node in the foreground until SIGTERM/SIGINT", None)
    add(commands, "ping", "ping every live node", _cmd_ping)
    add(commands, "info", "partitions and queues across the cluster", _cmd_info)

    jobs = commands.add_parser("jobs", help="running or queued jobs", parents=[common])
    jobs_commands = jobs.add_subparsers(dest="jobs_command", metavar="WHAT", parser_class=_Parser)
    jobs_commands.required = True
    sub = add(jobs_commands, "running", "jobs running on each node", _cmd_jobs_running)
    sub.add_argument("--partition", metavar="PID", help="only this partition")
    sub = add(jobs_commands, "queued", "jobs waiting in a queue, newest first", _cmd_jobs_queued)
    sub.add_argument("pid", metavar="PID")
    sub.add_argument("queue", metavar="QUEUE")
    sub.add_argument("--count", type=_positive_int, default=100, help="at most N jobs [100]")

    sub = add(commands, "enqueue", "enqueue a job; prints its id", _cmd_enqueue)
    sub.add_argument("pid", metavar="PID")
    sub.add_argument("job_type", metavar="JOB_TYPE", help="module.Class or module:Class")
    sub.add_argument("json_args", metavar="JSON_ARGS", help="the job's args as JSON")
    sub.add_argument("--queue", metavar="Q", help="queue type (default: the job's)")

    sub = add(commands, "cancel", "cancel a job wherever it is", _cmd_cancel)
    sub.add_argument("pid", metavar="PID")
    sub.add_argument("job_id", metavar="JOB_ID")
    for name, handler, text in (
        ("pause", _cmd_pause, "pause a queue on every node"),
        ("resume", _cmd_resume, "resume a queue on every node"),
        ("purge", _cmd_purge, "remove every message of a work queue"),
    ):
        sub = add(commands, name, text, handler)
        sub.add_argument("pid", metavar="PID")
        sub.add_argument("queue", metavar="QUEUE")

    partition = commands.add_parser(
        "partition", help="start, stop or reconfigure a partition", parents=[common]
    )
    partition_commands = partition.add_subparsers(
        dest="partition_command", metavar="ACTION", parser_class=_Parser
    )
    partition_commands.required = True
    for name, with_queues in (("start", True), ("stop", False), ("reconfigure", True)):
        sub = add(partition_commands, name, f"{name} a partition", _cmd_partition)
        sub.add_argument("pid", metavar="PID")
        if with_queues:
            sub.add_argument(
                "queues_json", metavar="QUEUES_JSON", help='e.g. \'{"default": 10}\''
            )
        sub.add_argument("--node", metavar="NAME", help="only on this node (default: every node)")
    return parser


# ---------------------------------------------------------------- output


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, CommandError):
        return {"error": value.message}
    return repr(value)


def _print_json(document: Any, out: TextIO) -> None:
    out.write(json.dumps(document, default=_json_default, sort_keys=True) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, CommandError):
        return f"error: {value.message}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_json_default)


def _print_table(
    rows: Sequence[Sequence[Any]], out: TextIO, headers: Sequence[str] | None = None
) -> None:
    """Print ``rows`` as columns separated by two spaces, left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    if headers is not None:
        cells.insert(0, list(headers))
    if not cells:
        return
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


_JOB_FIELDS = (
    "id",
    "args",
    "queue_key",
    "execution_key",
    "retry_count",
    "queued_at",
    "started_at",
)


def _job_dict(job: Any) -> dict[str, Any]:
    """The fields of a job an operator cares about (JSON-ready). ``job`` is a
    Job, or a payload map when its type is not importable here (Info returns
    those as they are), or ``{"invalid": reason, ...}`` for a bad payload."""
    if isinstance(job, dict):
        if "invalid" in job:
            return {"invalid": job["invalid"]}
        found = {name: job.get(name) for name in _JOB_FIELDS}
        found["type"] = job.get("module")
        return found
    found = {name: getattr(job, name, None) for name in _JOB_FIELDS}
    found["type"] = job.module
    return found


# ---------------------------------------------------------------- arguments


def _partition(text: str, argument: str = "PID") -> str:
    try:
        return validate_partition_id(text, argument=argument)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _queue(text: str, argument: str = "QUEUE") -> str:
    try:
        return normalise_queue_type(text, argument=argument)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _json_argument(text: str, argument: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{argument} is not valid JSON: {exc}") from None


def _queues(text: str) -> dict[str, int]:
    try:
        return normalise_queue_defs(_json_argument(text, "QUEUES_JSON"), argument="QUEUES_JSON")
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def resolve_job_type(name: str) -> type[Job]:
    """Import the job class ``name`` (``"module.Class"`` or ``"module:Class"``).

    The module is imported (the operator named it). Raises UsageError naming
    JOB_TYPE when the name is malformed, the module cannot be imported, the
    attribute is missing or it is not a :class:`roger_actors.Job` subclass.
    """
    if ":" in name:
        module_name, _, qualname = name.partition(":")
    else:
        module_name, _, qualname = name.rpartition(".")
    parts = [*module_name.split("."), *qualname.split(".")]
    if not module_name or not qualname or not all(part.isidentifier() for part in parts):
        raise UsageError(f"JOB_TYPE must be 'module.Class' or 'module:Class', got {name!r}")
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"JOB_TYPE {name!r}: cannot import module {module_name!r}: {exc}"
        ) from None
    for attribute in qualname.split("."):
        if not hasattr(found, attribute):
            raise UsageError(f"JOB_TYPE {name!r}: module {module_name!r} has no {qualname!r}")
        found = getattr(found, attribute)
    if not (isinstance(found, type) and issubclass(found, Job)) or found is Job:
        raise UsageError(f"JOB_TYPE {name!r} is not a roger_actors.Job subclass")
    return found


#: Environment variable holding the broker password (applied on top of the URL).
PASSWORD_ENV = "ROGER_AMQP_PASSWORD"


def _load_config(ns: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """The file, then ROGER_* variables, then ``--amqp``, then the password
    from ``ROGER_AMQP_PASSWORD``, then from ``--amqp-password-file``. Raises
    ConfigError naming the option for a file that cannot be read or is empty
    (its content is never shown)."""
    environ = os.environ if env is None else env
    config = load_config(ns.config)
    if ns.amqp is not None:
        config = attrs.evolve(config, amqp=parse_amqp(ns.amqp, "--amqp"))
    password = environ.get(PASSWORD_ENV)
    if password is not None and password == "":
        raise ConfigError(f"config key {PASSWORD_ENV!r}: the password is empty")
    path = getattr(ns, "amqp_password_file", None)
    if path is not None:
        password = read_password_file(path)
    if password is not None:
        config = attrs.evolve(config, amqp=config.amqp.with_password(password))
    return config


def read_password_file(path: str) -> str:
    """The first line of the file ``path`` (without its line end). Raises
    ConfigError naming ``--amqp-password-file`` and the path when it cannot be
    read, is not UTF-8 or its first line is empty; never shows the content."""
    where = f"config key '--amqp-password-file': {path[:200]!r}"
    try:
        with open(path, encoding="utf-8") as handle:
            line = handle.readline(4096)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read ({type(exc).__name__})") from None
    password = line.rstrip("\r\n")
    if not password:
        raise ConfigError(f"{where}: the first line (the password) is empty")
    return password


def _with_timeout(function: Callable[..., Any], ns: argparse.Namespace, *args: Any) -> Any:
    """Call ``function(*args)``, passing ``timeout=`` when one was given and it takes one."""
    if ns.timeout is not None:
        try:
            takes = "timeout" in inspect.signature(function).parameters
        except (TypeError, ValueError):
            takes = False
        if takes:
            return function(*args, timeout=ns.timeout)
    return function(*args)


def _info_class() -> Any:
    """``roger_actors.Info`` (the cluster-wide information calls)."""
    try:
        return roger.Info
    except AttributeError:
        from roger_actors.node.info import Info

        return Info


# ---------------------------------------------------------------- commands


def _print_replies(
    replies: list[tuple[str, Any]], key: str, as_json: bool, out: TextIO
) -> None:
    """One line per node, or a JSON list of ``{"node", key | "error"}``."""
    if as_json:
        _print_json(
            [
                {"node": n, "error": v.message} if isinstance(v, CommandError) else
                {"node": n, key: v}
                for n, v in replies
            ],
            out,
        )
    else:
        _print_table(replies, out)


def _cmd_ping(ns: argparse.Namespace, out: TextIO) -> int:
    timeout = ns.timeout or DEFAULT_CALL_TIMEOUT
    replies = roger_node.System.call("ping", timeout=timeout)
    _print_replies(replies, "reply", ns.json, out)
    if not replies:
        print("no node answered", file=sys.stderr)
        return EXIT_NOT_FOUND
    return EXIT_OK


def _cmd_info(ns: argparse.Namespace, out: TextIO) -> int:
    info = _info_class()
    running = _with_timeout(info.running_partitions, ns)
    waiting = _with_timeout(info.waiting_partitions, ns)
    if ns.json:
        _print_json({"running": running, "waiting": waiting}, out)
        return EXIT_OK
    rows: list[list[Any]] = []
    for node_name in sorted(set(running) | set(waiting)):
        for state, per_node in (("running", running), ("waiting", waiting)):
            partitions = per_node.get(node_name, {})
            if not isinstance(partitions, dict):
                rows.append([node_name, "-", "-", state, partitions, "", "", ""])
                continue
            for pid in sorted(partitions):
                queues = partitions[pid]
                for queue in sorted(queues):
                    stats = queues[queue]
                    if not isinstance(stats, dict):
                        stats = {"max_workers": stats}
                    rows.append(
                        [
                            node_name,
                            pid,
                            queue,
                            state,
                            stats.get("max_workers"),
                            stats.get("paused"),
                            stats.get("message_count"),
                            stats.get("consumer_count"),
                        ]
                    )
    headers = ["NODE", "PARTITION", "QUEUE", "STATE", "MAX_WORKERS", "PAUSED", "MESSAGES",
               "CONSUMERS"]
    _print_table(rows, out, headers)
    return EXIT_OK


def _cmd_jobs_running(ns: argparse.Namespace, out: TextIO) -> int:
    info = _info_class()
    if ns.partition is not None:
        pid = _partition(ns.partition, "--partition")
        per_node = {n: {pid: jobs} for n, jobs in _with_timeout(info.running_jobs, ns, pid).items()}
    else:
        per_node = _with_timeout(info.running_jobs, ns)
    entries: list[dict[str, Any]] = []
    for node_name in sorted(per_node):
        partitions = per_node[node_name]
        if not isinstance(partitions, dict):
            entries.append({"node": node_name, "error": _cell(partitions)})
            continue
        for pid in sorted(partitions):
            jobs = partitions[pid]
            if isinstance(jobs, CommandError) or not isinstance(jobs, list):
                entries.append({"node": node_name, "partition": pid, "error": _cell(jobs)})
                continue
            for job in jobs:
                entries.append({"node": node_name, "partition": pid, **_job_dict(job)})
    if ns.json:
        _print_json(entries, out)
        return EXIT_OK
    rows = [
        [e["node"], e.get("partition", "-"), e.get("id", e.get("error")), e.get("type", ""),
         e.get("started_at"), e.get("args", "")]
        for e in entries
    ]
    _print_table(rows, out, ["NODE", "PARTITION", "JOB_ID", "TYPE", "STARTED_AT", "ARGS"])
    return EXIT_OK


def _cmd_jobs_queued(ns: argparse.Namespace, out: TextIO) -> int:
    pid, queue = _partition(ns.pid), _queue(ns.queue)
    jobs = _info_class().queued_jobs(pid, queue, ns.count)
    entries = [_job_dict(job) for job in jobs]
    if ns.json:
        _print_json(entries, out)
        return EXIT_OK
    rows = [
        [e.get("id", "-"), e.get("type", f"invalid: {e.get('invalid')}"), e.get("queued_at"),
         e.get("retry_count"), e.get("args")]
        for e in entries
    ]
    _print_table(rows, out, ["JOB_ID", "TYPE", "QUEUED_AT", "RETRIES", "ARGS"])
    return EXIT_OK


def _cmd_enqueue(ns: argparse.Namespace, out: TextIO) -> int:
    pid = _partition(ns.pid)
    queue = _queue(ns.queue, "--queue") if ns.queue is not None else None
    args = _json_argument(ns.json_args, "JSON_ARGS")
    job_class = resolve_job_type(ns.job_type)
    try:
        job = Job.create(job_class, args)
    except InvalidJobError as exc:
        raise UsageError(f"JSON_ARGS: {exc}") from None
    job.enqueue(pid, queue=queue)
    if ns.json:
        _print_json(
            {"id": job.id, "partition": pid, "queue": queue or Job.queue_type(job),
             "type": job.module},
            out,
        )
    else:
        out.write(job.id + "\n")
    return EXIT_OK


def _global_timeout(ns: argparse.Namespace) -> dict[str, float]:
    return {} if ns.timeout is None else {"timeout": ns.timeout}


def _cmd_cancel(ns: argparse.Namespace, out: TextIO) -> int:
    pid = _partition(ns.pid)
    if not ns.job_id:
        raise UsageError("JOB_ID must not be empty")
    roger_node.Global.cancel_job(pid, ns.job_id, **_global_timeout(ns))
    if ns.json:
        _print_json({"partition": pid, "job_id": ns.job_id, "cancelled": True}, out)
    else:
        out.write(f"cancelled {ns.job_id} in {pid}\n")
    return EXIT_OK


def _pause_or_resume(ns: argparse.Namespace, out: TextIO, pause: bool) -> int:
    pid, queue = _partition(ns.pid), _queue(ns.queue)
    if pause:
        roger_node.Global.queue_pause(pid, queue, **_global_timeout(ns))
    else:
        roger_node.Global.queue_resume(pid, queue, **_global_timeout(ns))
    if ns.json:
        _print_json({"partition": pid, "queue": queue, "paused": pause}, out)
    else:
        out.write(f"{'paused' if pause else 'resumed'} {queue} in {pid} on every node\n")
    return EXIT_OK


def _cmd_pause(ns: argparse.Namespace, out: TextIO) -> int:
    return _pause_or_resume(ns, out, True)


def _cmd_resume(ns: argparse.Namespace, out: TextIO) -> int:
    return _pause_or_resume(ns, out, False)


def _cmd_purge(ns: argparse.Namespace, out: TextIO) -> int:
    from .transport import base as transport

    pid, queue = _partition(ns.pid), _queue(ns.queue)
    name = Queue.make_name(pid, queue)
    publisher = roger_node.process_publisher()
    try:
        # A passive declare on a channel of its own: purging a missing queue
        # would close the publisher's channel.
        publisher.run("counts", name)
    except transport.NotFound:
        raise NotFound(
            f"queue {name!r} does not exist (partition {pid!r}, queue {queue!r})"
        ) from None
    count = int(publisher.run("purge", name))
    if ns.json:
        _print_json({"partition": pid, "queue": queue, "purged": count}, out)
    else:
        out.write(f"{count}\n")
    return EXIT_OK


def _cmd_partition(ns: argparse.Namespace, out: TextIO) -> int:
    action = ns.partition_command
    pid = _partition(ns.pid)
    node_name = ns.node
    if node_name is not None and not node_name:
        raise UsageError("--node must not be empty")
    if action == "stop":
        args: list[Any] = [pid, node_name]
    else:
        args = [pid, _queues(ns.queues_json), node_name]
    timeout = ns.timeout or PARTITION_TIMEOUT
    replies = roger_node.System.call(f"partition_{action}", *args, timeout=timeout)
    _print_replies(replies, "result", ns.json, out)
    return _partition_exit(replies, node_name)


def _is_not_running(message: str) -> bool:
    """True for a node's error that says the partition does not run there
    (the nodes describe errors as ``"<ExceptionType>: <text>"``)."""
    lowered = message.lower()
    return (
        message.startswith(("NotRunningError", "NotStartedError"))
        or "not running" in lowered
        or "not started" in lowered
    )


def _partition_exit(replies: list[tuple[str, Any]], node_name: str | None) -> int:
    """0 when some node did it and none failed; 4 when no node (or not the named
    one) answered, or the only failures say the partition is not running; 1
    for any other failure."""
    if not replies:
        print("no node answered", file=sys.stderr)
        return EXIT_NOT_FOUND
    if node_name is not None and node_name not in {n for n, _ in replies}:
        print(f"node {node_name!r} did not answer (not in the cluster?)", file=sys.stderr)
        return EXIT_NOT_FOUND
    errors = [v.message for _, v in replies if isinstance(v, CommandError)]
    done = [v for _, v in replies if not isinstance(v, CommandError) and v != "skipped"]
    not_running = [m for m in errors if _is_not_running(m)]
    if len(not_running) < len(errors):
        return EXIT_FAILURE
    if done:
        return EXIT_OK
    return EXIT_NOT_FOUND if errors else EXIT_OK


# ---------------------------------------------------------------- node


#: How often the node command checks that its node can still run (seconds).
WATCH_SECONDS = 0.5


def run_node(config: Config) -> int:
    """Run a node with ``config`` in the foreground (logging to stderr at INFO)
    until SIGTERM or SIGINT, then stop it gracefully (stop taking jobs, wait up
    to ``shutdown_timeout`` for running ones). Must run in the main thread.
    Returns 0 after a clean stop, and 1 (after logging why and stopping what
    is left) when the node can no longer run: its application root exited or
    its actor system's admin is gone (see ``Node.failure``)."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stopping = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stopping.set()

    def install() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    install()
    try:
        roger_node.start(config)
        install()  # in case starting the actor system replaced them
        log.info(
            "node %s started (partitions: %s); stop it with SIGTERM or SIGINT",
            config.node_name,
            ", ".join(sorted(config.partitions)) or "none",
        )
        node = roger_node.current()
        while not stopping.wait(WATCH_SECONDS):
            why = node.failure()
            if why is not None:
                # A permanent application's node stops when its root dies, so
                # that the process manager starts a new one.
                log.error("node %s cannot go on: %s; exiting", config.node_name, why)
                roger_node.stop()
                return EXIT_FAILURE
        log.info(
            "%s received: stopping node %s (running jobs get up to %s s)",
            signal.Signals(received[0]).name,
            config.node_name,
            config.shutdown_timeout,
        )
        roger_node.stop()
        log.info("node %s stopped", config.node_name)
        return EXIT_OK
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ---------------------------------------------------------------- main


def _fail(code: int, message: str) -> int:
    print(f"roger-actors: {message}", file=sys.stderr)
    return code


def _classify(exc: BaseException, config: Config | None) -> int:
    """Print ``exc`` as one line on stderr; return its exit code."""
    from .transport import base as transport

    if isinstance(exc, (UsageError, ConfigError, InvalidJobError)):
        return _fail(EXIT_USAGE, str(exc))
    if isinstance(exc, (NotStartedError, NotRunningError, NotFound)):
        return _fail(EXIT_NOT_FOUND, str(exc))
    if isinstance(exc, transport.NotFound):
        return _fail(EXIT_NOT_FOUND, f"not found: {exc}")
    if isinstance(exc, DuplicateJobError):
        return _fail(EXIT_FAILURE, str(exc))
    if isinstance(exc, GlobalTimeoutError):
        return _fail(EXIT_FAILURE, f"timed out: {exc}")
    if isinstance(exc, transport.ChannelClosed):
        return _fail(EXIT_FAILURE, f"the broker refused: {exc}")
    if isinstance(exc, (ConnectionError, OSError)):
        where = ", ".join(config.amqp.redacted_urls()) if config is not None else "the broker"
        detail = str(exc) or type(exc).__name__
        return _fail(EXIT_BROKER, f"cannot reach the broker at {where}: {detail}")
    if isinstance(exc, ValueError):
        return _fail(EXIT_USAGE, str(exc))
    if isinstance(exc, KeyboardInterrupt):
        return _fail(EXIT_INTERRUPTED, "interrupted")
    return _fail(EXIT_FAILURE, f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    """Run the ``roger-actors`` command line with ``argv`` (default:
    ``sys.argv[1:]``); returns the exit code (see the module docstring).
    Never raises for a usage error, a broker that cannot be reached or a
    failed command: a one-line message goes to stderr instead."""
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        return _fail(EXIT_USAGE, str(exc).removeprefix("roger-actors: "))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if ns.command is None:
        parser.print_usage(sys.stderr)
        return _fail(EXIT_USAGE, "a COMMAND is required")
    config: Config | None = None
    try:
        config = _load_config(ns)
        if ns.command == "node":
            return run_node(config)
        logging.basicConfig(
            level=logging.INFO if ns.verbose else logging.WARNING,
            stream=sys.stderr,
            format="%(levelname)s %(name)s: %(message)s",
        )
        if not ns.verbose:
            # Connection failures are reported once, below, as exit code 3.
            logging.getLogger("aiormq").setLevel(logging.CRITICAL)
        roger_node.start_producer(config)
        try:
            code: int = ns.handler(ns, sys.stdout)
        finally:
            roger_node.stop()
        sys.stdout.flush()
        return code
    except BaseException as exc:  # every failure becomes one line and an exit code
        if isinstance(exc, SystemExit):
            raise
        if ns.verbose:
            traceback.print_exc()
        return _classify(exc, config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
