"""Roger's ApplySystem: the node's answers to the cluster's information and
partition-management commands.

The System actor (:mod:`roger_actors.node.system`) receives every command of the
``system`` fanout exchange. The commands in
:data:`~roger_actors.system_protocol.APPLY_COMMANDS` it does not answer
itself: it sends them, as :class:`~roger_actors.system_protocol.ApplyCommand`,
to this actor (its sibling ``apply_system`` under the node's root
supervisor), which gathers the answer from the registry and the partitions'
Consumers and publishes the reply over its *own* AMQP connection. So a large
answer (the running jobs of every partition) never holds up the System's
heartbeats and other commands. Roger splits its System the same way.

Commands and their arguments (``args`` of the command), with the value of a
successful reply:

``node_info`` ``[what, *params]``:

- ``"partitions"``: ``{"running": {pid: {queue: max_workers}}, "waiting": {...}}``;
- ``"running_partitions"``: ``{pid: {queue: stats}}``, ``stats`` as the
  Consumer's ``GetQueues`` gives them (``max_workers``, ``paused``,
  ``message_count``, ``consumer_count``);
- ``"waiting_partitions"``: ``{pid: {queue: max_workers}}``;
- ``"running_partition_ids"``: sorted list of the running partition ids;
- ``"running_jobs"`` (optional param: a partition id, or None): without it
  ``{pid: [job_map, ...]}`` for every partition of the node, with it
  ``[job_map, ...]`` (empty when the partition does not run here). A
  ``job_map`` is the job's payload map, as ``cbor2.loads(job.encode())``;
- ``"running_worker_pids"``: sorted OS pids of the worker processes running
  a job now.

``partition_start`` ``[pid, {queue: max_workers}, node_name | None]``,
``partition_reconfigure`` ``[pid, {queue: max_workers}, node_name | None]``,
``partition_stop`` ``[pid, node_name | None]``: applied through the registry
when ``node_name`` is None (or left out) or is this node's name, answered
``"ok"``; any other node answers ``"skipped"``. ``partition_reconfigure``
and ``partition_stop`` of a partition not running here fail
(``NotRunningError``).

A failure (unknown ``what``, bad parameters, an error from the registry, no
answer within :data:`APPLY_TIMEOUT`) is an error reply (``ok=False``) whose
message names the problem; the actor lives on, whatever the arguments (they
are only ever formatted bounded: :func:`~roger_actors.system_protocol.bounded_repr`).
Replies are signed with the cluster secret
(:data:`~roger_actors.cluster_auth.PURPOSE_SYSTEM_REPLY`) and only published
to a server-named ``reply_to``; a command with another ``reply_to`` is not
run (the System drops those before they get here). A partition that stops
while its information is being gathered is left out of the answer.

The same commands can be run on this node only with the call
:class:`Apply` (the ``roger_actors.NodeInfo`` facade does): the value is the
same, a failure is raised at the caller (``ValueError``, ``TypeError``, the
registry's ``RogerError``, ``TimeoutError``).

All gathering is asynchronous (``call_async`` and ``CallReply``): the actor
never blocks on another actor of the node.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2
from thespian.actors import PoisonMessage, WatchMessage

from supervision import NOREPLY, From, NoProc, Server, TimerRef
from supervision.protocol import Call, CallReply, WhichChildren

from ..cluster_auth import ClusterAuth
from ..config import Config
from ..errors import NotRunningError, RogerError
from ..job import Job, bounded_repr
from ..partition.consumer import GetQueues, Status
from ..queue import normalise_queue_defs, validate_partition_id
from ..system_protocol import (
    ApplyCommand,
    encode_reply,
    publish_reply,
    valid_reply_to,
)
from ..transport.amqp import LinkLost
from ..transport.link_owner import LinkOwner
from .registry import ConsumerOf, Partitions, StartPartition, StopPartition

log = logging.getLogger("roger_actors.apply_system")

#: Seconds a command may take before it is answered with a timeout error.
APPLY_TIMEOUT = 20.0

#: Replies kept while the reply link is down (the oldest is dropped past it):
#: a command that came through the System before this link was up (right
#: after the node started, or while it reconnects) is answered once it is.
UNSENT_REPLIES = 100

#: What ``node_info`` can be asked, with the number of parameters each takes
#: (minimum, maximum).
NODE_INFO: dict[str, tuple[int, int]] = {
    "partitions": (0, 0),
    "running_partitions": (0, 0),
    "waiting_partitions": (0, 0),
    "running_partition_ids": (0, 0),
    "running_jobs": (0, 1),
    "running_worker_pids": (0, 0),
}


@dataclass(frozen=True)
class Apply:
    """Call: run ``command`` with ``args`` (as on the System exchange) on this
    node only; answered with the command's value, or the failure raised."""

    command: str
    args: tuple[Any, ...] = ()


@dataclass
class _Task:
    """One command being answered; ``reply(ok, value)`` sends the answer."""

    key: str
    label: str
    reply: Callable[[bool, Any], None]
    timer: TimerRef | None = None
    done: bool = False
    refs: set[str] = field(default_factory=set)


class _Failed(Exception):
    """Ends a task with an error reply (raised inside a continuation)."""


def job_map(job: Job) -> dict[str, Any]:
    """The payload map of ``job`` as it travels in replies: ``cbor2.loads(job.encode())``."""
    value = cbor2.loads(job.encode())
    assert isinstance(value, dict)
    return value


def _describe(error: Any) -> str:
    """A bounded description of a failure (an exception or a message)."""
    try:
        if isinstance(error, BaseException):
            text = str(error)[:2000]
            return f"{type(error).__name__}: {text}" if text else type(error).__name__
        return error[:2000] if isinstance(error, str) else bounded_repr(error, 2000)
    except Exception:
        return type(error).__name__


def _is_gone(error: Any) -> bool:
    """True for the errors that mean "that partition is not (or no longer) running"."""
    return isinstance(error, (NotRunningError, NoProc))


class ApplySystem(Server, LinkOwner):
    """Answers the System's apply commands and :class:`Apply` calls; see the
    module docstring."""

    def init(self, config: Config) -> None:
        """Start connecting (in the background) the link replies are published on."""
        self.config = config
        self.node_name = config.node_name
        self.auth = ClusterAuth(config.cluster_secret)
        self.connected = False
        #: (reply_to, body) of the replies made while not connected
        self.unsent: collections.deque[tuple[str, bytes]] = collections.deque(
            maxlen=UNSENT_REPLIES
        )
        #: call ref -> (task, continuation taking the CallReply)
        self.waiting: dict[str, tuple[_Task, Callable[[CallReply], None]]] = {}
        #: task key -> task not answered yet
        self.tasks: dict[str, _Task] = {}
        self.task_ids = 0
        self.open_link(
            "roger-apply-system", config.amqp.urls(), config.amqp.connection_timeout_seconds
        )
        self._connect()

    # ------------------------------------------------------------ connection

    def _connect(self) -> None:
        self.connect_link()

    def _on_event(self, event: Any) -> None:
        if isinstance(event, LinkLost) or (isinstance(event, tuple) and event[0] == "failed"):
            if self.connected or isinstance(event, tuple):
                log.warning("apply_system: broker connection down: %s", event)
            self.connected = False
            self.reconnect_later()
        elif isinstance(event, tuple) and event[0] == "connected":
            self.connected = True
            self.link_up()
            while self.unsent and self.connected:
                self._publish(*self.unsent.popleft())
        elif isinstance(event, tuple) and event[0] == "published" and event[1] is not None:
            log.warning("apply_system: reply not published: %s", event[1])

    # ------------------------------------------------------------ entry points

    def handle_call(self, request: Any, from_: From) -> Any:
        """:class:`Apply`: run a command on this node; answered when gathered."""
        if isinstance(request, Apply):

            def finish(ok: bool, value: Any) -> None:
                if ok:
                    self.reply(from_, value)
                elif isinstance(value, Exception):
                    self.reply_error(from_, value)
                else:
                    self.reply_error(from_, RogerError(str(value)))

            self._run(request.command, tuple(request.args), finish)
            return NOREPLY
        return super().handle_call(request, from_)

    def handle_info(self, message: Any) -> None:
        """ApplyCommand from the System, replies to this actor's calls, loop events,
        task deadlines and reconnects."""
        if isinstance(message, ApplyCommand):
            self._on_apply_command(message)
        elif isinstance(message, CallReply):
            self._on_call_reply(message)
        elif isinstance(message, PoisonMessage) and isinstance(message.poisonMessage, Call):
            # The actor called is gone (a partition stopped meanwhile).
            ref = message.poisonMessage.ref
            self._on_call_reply(CallReply(ref, False, NoProc(f"actor gone: {message.details}")))
        elif isinstance(message, WatchMessage):
            for event in self.io.drain():
                self._on_event(event)
        elif isinstance(message, tuple) and message and message[0] == "deadline":
            task = message[1]
            if isinstance(task, str):
                self._expire(task)
        elif message == "reconnect":
            self._connect()
        else:
            super().handle_info(message)

    def _on_apply_command(self, command: ApplyCommand) -> None:
        """Run a command from the System; never raises (a failure is an error
        reply for a call, a log line for a cast)."""
        call_id, reply_to = command.call_id, command.reply_to
        if reply_to is not None and not valid_reply_to(reply_to):
            log.warning(
                "apply_system: %s with a bad reply_to not run", bounded_repr(command.command)
            )
            return
        label = bounded_repr(command.command, 80)

        def finish(ok: bool, value: Any) -> None:
            if call_id is None or reply_to is None:
                if not ok:
                    log.warning("cast %s from %s failed: %s", label,
                                bounded_repr(command.from_node), _describe(value))
                return
            body = encode_reply(call_id, self.node_name, ok, value if ok else _describe(value))
            self._publish(reply_to, body)

        try:
            self._run(command.command, tuple(command.args), finish)
        except Exception as exc:  # _run does not raise; this is the last guard
            log.exception("apply_system: %s failed", label)
            with contextlib.suppress(Exception):
                finish(False, exc)

    def _publish(self, reply_to: str, body: bytes) -> None:
        if not self.connected:
            if len(self.unsent) == self.unsent.maxlen:
                log.warning(
                    "apply_system: not connected, the oldest of %d unsent replies dropped",
                    len(self.unsent),
                )
            self.unsent.append((reply_to, body))
            return

        async def publish() -> None:
            try:
                await publish_reply(self.link, reply_to, body, auth=self.auth)
            except Exception as exc:
                self.io.post(("published", repr(exc)))

        self.io.submit(publish())

    # ------------------------------------------------------------ tasks

    def _run(self, command: str, args: tuple[Any, ...], reply: Callable[[bool, Any], None]) -> None:
        """Start answering ``command``; ``reply(ok, value)`` is called exactly once."""
        self.task_ids += 1
        # The label is bounded and never raises, whatever the arguments.
        label = f"{bounded_repr(command, 60)} {bounded_repr(list(args))}"
        task = _Task(str(self.task_ids), label, reply)
        self.tasks[task.key] = task
        task.timer = self.send_after(APPLY_TIMEOUT, ("deadline", task.key))
        self._step(task, lambda: self._dispatch(task, command, args))

    def _finish(self, task: _Task, ok: bool, value: Any) -> None:
        """Answer ``task`` (once; later calls are ignored) and forget its calls."""
        if task.done:
            return
        task.done = True
        self.tasks.pop(task.key, None)
        if task.timer is not None:
            self.cancel_timer(task.timer)
        for ref in task.refs:
            self.waiting.pop(ref, None)
        task.reply(ok, value)

    def _step(self, task: _Task, action: Callable[[], None]) -> None:
        """Run one step of ``task``; a failure (bad input, or a bug) ends the task
        with an error reply instead of crashing the actor."""
        if task.done:
            return
        try:
            action()
        except _Failed as failed:
            self._finish(task, False, failed.args[0] if failed.args else "failed")
        except (ValueError, TypeError, RogerError) as exc:
            self._finish(task, False, exc)
        except Exception as exc:
            log.exception("apply_system: %s failed", task.label)
            self._finish(task, False, exc)

    def _expire(self, key: str) -> None:
        task = self.tasks.get(key)
        if task is not None:
            error = TimeoutError(f"{task.label}: no answer within {APPLY_TIMEOUT} s")
            self._finish(task, False, error)

    def _ask(
        self, task: _Task, address: Any, request: Any, then: Callable[[CallReply], None]
    ) -> None:
        """Call ``address`` without blocking; ``then(reply)`` runs as a step of ``task``."""
        ref = self.call_async(address, request)
        task.refs.add(ref)
        self.waiting[ref] = (task, then)

    def _on_call_reply(self, reply: CallReply) -> None:
        entry = self.waiting.pop(reply.ref, None)
        if entry is None:
            return
        task, then = entry
        task.refs.discard(reply.ref)
        self._step(task, lambda: then(reply))

    def _gather(
        self,
        task: _Task,
        calls: list[tuple[str, Any, Any]],
        then: Callable[[dict[str, CallReply]], None],
    ) -> None:
        """Make the calls ``(key, address, request)`` at once; ``then`` gets every
        reply by key once all arrived."""
        if not calls:
            then({})
            return
        replies: dict[str, CallReply] = {}

        def collect(key: str, reply: CallReply) -> None:
            replies[key] = reply
            if len(replies) == len(calls):
                then(replies)

        for key, address, request in calls:
            self._ask(task, address, request, functools.partial(collect, key))

    def _with_registry(self, task: _Task, then: Callable[[Any], None]) -> None:
        """Find the node's registry (looked up each time: it may have been restarted)."""

        def found(reply: CallReply) -> None:
            for info in reply.value if reply.ok else []:
                if info.id == "registry" and info.address not in (None, "restarting"):
                    then(info.address)
                    return
            raise _Failed(NotRunningError("the node's registry is not running"))

        self._ask(task, self.parent, WhichChildren(), found)

    def _registry_call(
        self, task: _Task, request: Any, then: Callable[[Any, Any], None]
    ) -> None:
        """Call the registry; ``then(registry, value)`` on success, error reply otherwise."""

        def with_registry(registry: Any) -> None:
            def answered(reply: CallReply) -> None:
                if not reply.ok:
                    raise _Failed(reply.value)
                then(registry, reply.value)

            self._ask(task, registry, request, answered)

        self._with_registry(task, with_registry)

    def _consumer_calls(
        self,
        task: _Task,
        registry: Any,
        pids: list[str],
        request: Any,
        then: Callable[[dict[str, Any]], None],
    ) -> None:
        """Ask the Consumer of each of ``pids`` ``request``; ``then({pid: value})``
        for the ones that answered. A partition that is not (or no longer)
        running is left out; another failure ends the task with an error."""

        def with_consumers(found: dict[str, CallReply]) -> None:
            consumers = {}
            for pid, reply in found.items():
                if reply.ok:
                    consumers[pid] = reply.value
                elif not _is_gone(reply.value):
                    raise _Failed(f"partition {pid!r}: {_describe(reply.value)}")

            def with_values(values: dict[str, CallReply]) -> None:
                result = {}
                for pid, reply in values.items():
                    if reply.ok:
                        result[pid] = reply.value
                    elif not _is_gone(reply.value):
                        raise _Failed(f"partition {pid!r}: {_describe(reply.value)}")
                then(result)

            self._gather(task, [(p, a, request) for p, a in consumers.items()], with_values)

        self._gather(task, [(pid, registry, ConsumerOf(pid)) for pid in pids], with_consumers)

    # ------------------------------------------------------------ commands

    def _dispatch(self, task: _Task, command: str, args: tuple[Any, ...]) -> None:
        if command == "node_info":
            self._node_info(task, args)
        elif command == "partition_start":
            self._partition_change(task, command, args, 3)
        elif command == "partition_reconfigure":
            self._partition_change(task, command, args, 3)
        elif command == "partition_stop":
            self._partition_change(task, command, args, 2)
        else:
            raise ValueError(f"unknown apply command {bounded_repr(command, 80)}")

    def _node_info(self, task: _Task, args: tuple[Any, ...]) -> None:
        if not args or not isinstance(args[0], str):
            raise ValueError(
                f"node_info expects [what, *params] with what one of {sorted(NODE_INFO)}"
            )
        what, params = args[0], args[1:]
        if what not in NODE_INFO:
            raise ValueError(
                f"node_info: unknown what {bounded_repr(what, 80)} (one of {sorted(NODE_INFO)})"
            )
        low, high = NODE_INFO[what]
        if not low <= len(params) <= high:
            raise ValueError(
                f"node_info {what!r} takes {low} to {high} parameters, got {len(params)}"
            )

        def finish(ok: bool, value: Any) -> None:
            self._finish(task, ok, value)

        if what in ("partitions", "waiting_partitions", "running_partition_ids"):

            def listed(_: Any, value: dict[str, dict[str, dict[str, int]]]) -> None:
                if what == "partitions":
                    finish(True, value)
                elif what == "waiting_partitions":
                    finish(True, value["waiting"])
                else:
                    finish(True, sorted(value["running"]))

            self._registry_call(task, Partitions(), listed)
        elif what == "running_partitions":

            def stats(registry: Any, value: dict[str, Any]) -> None:
                self._consumer_calls(
                    task, registry, sorted(value["running"]), GetQueues(),
                    lambda found: finish(True, found),
                )

            self._registry_call(task, Partitions(), stats)
        elif what == "running_jobs":
            partition_id = params[0] if params else None
            if partition_id is not None:
                validate_partition_id(partition_id)

            def jobs(registry: Any, value: dict[str, Any]) -> None:
                every = sorted({*value["running"], *value["waiting"]})
                pids = every if partition_id is None else [p for p in every if p == partition_id]

                def done(found: dict[str, Any]) -> None:
                    maps = {
                        pid: [job_map(job) for job in status["running_jobs"]]
                        for pid, status in sorted(found.items())
                    }
                    if partition_id is None:
                        finish(True, maps)
                    else:
                        finish(True, maps.get(partition_id, []))

                self._consumer_calls(task, registry, pids, Status(), done)

            self._registry_call(task, Partitions(), jobs)
        else:  # running_worker_pids

            def workers(registry: Any, value: dict[str, Any]) -> None:
                every = sorted({*value["running"], *value["waiting"]})

                def done(found: dict[str, Any]) -> None:
                    pids: set[int] = set()
                    for status in found.values():
                        pids.update(status.get("worker_pids", []))
                    finish(True, sorted(pids))

                self._consumer_calls(task, registry, every, Status(), done)

            self._registry_call(task, Partitions(), workers)

    def _partition_change(
        self, task: _Task, command: str, args: tuple[Any, ...], arity: int
    ) -> None:
        names = "partition_id, " + ("queues, " if arity == 3 else "") + "node_name|None"
        if not arity - 1 <= len(args) <= arity:
            raise ValueError(f"{command} expects [{names}], got {len(args)} arguments")
        node_name = args[arity - 1] if len(args) == arity else None
        if node_name is not None and not isinstance(node_name, str):
            raise TypeError(
                f"{command}: node_name must be a str or None, got {type(node_name).__name__}"
            )
        pid = validate_partition_id(args[0])
        queues = normalise_queue_defs(args[1]) if arity == 3 else {}
        if node_name is not None and node_name != self.node_name:
            self._finish(task, True, "skipped")
            return

        def ok(_: Any, __: Any) -> None:
            self._finish(task, True, "ok")

        if command == "partition_start":
            self._registry_call(task, StartPartition(pid, queues), ok)
        elif command == "partition_stop":
            self._registry_call(task, StopPartition(pid), ok)
        else:  # partition_reconfigure: only a partition that runs here

            def running(_: Any, __: Any) -> None:
                self._registry_call(task, StartPartition(pid, queues), ok)

            self._registry_call(task, ConsumerOf(pid), running)

    # ------------------------------------------------------------ stop

    def terminate(self, reason: Any) -> None:
        """Close the connection and the I/O thread."""
        self.close_link("apply_system")
