"""Child specifications and supervisor flags (OTP ``child_spec()`` and ``sup_flags()``)."""

from __future__ import annotations

import builtins
import pickle
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from thespian.actors import ActorAddress

from .errors import InvalidSpec

Restart = Literal["permanent", "transient", "temporary"]
ChildType = Literal["worker", "supervisor"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
#: ``"brutal_kill"``, ``"infinity"`` or a number of seconds (> 0).
Shutdown = Literal["brutal_kill", "infinity"] | float | int

AutoShutdown = Literal["never", "any_significant", "all_significant"]
#: Where a child runs (see ``ChildSpec.placement``).
Placement = Literal["local", "process"]

RESTARTS = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
AUTO_SHUTDOWNS = ("never", "any_significant", "all_significant")
PLACEMENTS = ("local", "process")

#: Default restart intensity: Elixir's ``Supervisor`` and ``DynamicSupervisor``
#: (``max_restarts: 3, max_seconds: 5``). OTP's ``supervisor`` defaults to 1 in 5.
DEFAULT_MAX_RESTARTS = 3
DEFAULT_MAX_SECONDS = 5

#: Seconds a worker gets to run ``terminate`` before it is killed (OTP's 5000 ms).
DEFAULT_WORKER_SHUTDOWN = 5.0


@dataclass(frozen=True)
class Start:
    """How to start a child: its actor class and the arguments given to its ``init``.

    The class must be importable by module path (actor processes are forked
    and messages are pickled), and must derive from :class:`supervision.Server`
    or :class:`supervision.Supervisor` (or :class:`supervision.DynamicSupervisor`).
    """

    actor_class: type
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.actor_class, type):
            raise InvalidSpec(f"start: actor_class must be a class, got {self.actor_class!r}")
        if not getattr(self.actor_class, "_supervision_process", False):
            raise InvalidSpec(
                f"start: {self.actor_class.__qualname__} is not a supervision actor "
                "(derive it from supervision.Server or supervision.Supervisor)"
            )
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", dict(self.kwargs))


def check_name(name: Any, what: str = "name") -> None:
    """Raise InvalidSpec unless ``name`` can be a registered name: not None,
    not an actor address, hashable and picklable."""
    if name is None:
        raise InvalidSpec(f"{what} must not be None")
    if isinstance(name, ActorAddress):
        raise InvalidSpec(f"{what} must be a name, not an actor address: {name!r}")
    try:
        hash(name)
    except TypeError:
        raise InvalidSpec(f"{what} must be hashable, got {name!r}") from None
    try:
        pickle.dumps(name)
    except Exception as exc:
        raise InvalidSpec(f"{what} must be picklable, got {name!r}: {exc}") from None


def _as_start(value: Any) -> Start:
    if isinstance(value, Start):
        return value
    if isinstance(value, type):
        return Start(value)
    if isinstance(value, tuple) and 1 <= len(value) <= 3:
        cls = value[0]
        args = value[1] if len(value) > 1 else ()
        kwargs = value[2] if len(value) > 2 else {}
        if not isinstance(args, (tuple, list)):
            raise InvalidSpec(f"start: args must be a tuple or list, got {args!r}")
        if not isinstance(kwargs, dict):
            raise InvalidSpec(f"start: kwargs must be a dict, got {kwargs!r}")
        return Start(cls, tuple(args), kwargs)
    raise InvalidSpec(
        f"start must be a Start, an actor class or (class, args[, kwargs]); got {value!r}"
    )


@dataclass(frozen=True)
class ChildSpec:
    """One child of a supervisor, as OTP's ``child_spec()``.

    - ``id``: unique within the supervisor (ignored by a DynamicSupervisor).
    - ``start``: a :class:`Start`, an actor class, or ``(class, args[, kwargs])``.
    - ``restart``: ``"permanent"`` (always restarted), ``"transient"``
      (restarted only after an abnormal exit, see
      :func:`supervision.reasons.is_normal`) or ``"temporary"`` (never
      restarted, and removed from the supervisor when it ends).
    - ``shutdown``: ``"brutal_kill"`` (killed at once, ``terminate`` not run),
      a number of seconds the child gets to stop before it is killed, or
      ``"infinity"``. Default: 5 s for a worker, ``"infinity"`` for a supervisor.
    - ``type``: ``"worker"`` or ``"supervisor"``; inferred from the class
      when not given.
    - ``start_timeout``: seconds the child's ``init`` may take before the start
      counts as failed and the child is killed (``None``: wait forever).
    - ``significant``: the child counts for its supervisor's ``auto_shutdown``
      (OTP 24 ``significant``). Only for ``transient`` and ``temporary``
      children, and only under a supervisor whose ``auto_shutdown`` is not
      ``"never"``.
    - ``name``: a name the child registers (:func:`supervision.register`)
      before its ``init`` runs, at every start and restart (OTP's
      ``{local, Name}``). When the name is registered to another live actor
      the start fails with reason ``("already_started", address)``:
      ``start_child`` raises :class:`~supervision.AlreadyStarted` with that
      address, and the new actor exits. The name is freed when the child
      exits. ``None`` (default): no name.
    - ``placement``: ``"local"`` (default) or ``"process"``: under a
      supervisor on the light base, the child (a worker or a whole
      supervisor subtree) runs in an OS process of its own, with its own
      light system; messages to and from it are relayed (they must pickle),
      a kill is a SIGKILL of that process, and the process dies with its
      host (see :mod:`supervision.placement`). A placed child cannot have a
      ``name`` (its start fails with ``NotSupported``). On multiprocTCPBase
      every child has its own process anyway; on simpleSystemBase the child
      runs in the host's thread like every actor there.
    """

    id: Hashable
    start: Any
    restart: Restart = "permanent"
    shutdown: Shutdown | None = None
    type: ChildType | None = None
    start_timeout: float | None = 30.0
    significant: bool = False
    name: Hashable | None = None
    placement: Placement = "local"

    def __post_init__(self) -> None:
        start = _as_start(self.start)
        object.__setattr__(self, "start", start)
        try:
            hash(self.id)
        except TypeError:
            raise InvalidSpec(f"id must be hashable, got {self.id!r}") from None
        if self.restart not in RESTARTS:
            raise InvalidSpec(f"restart must be one of {RESTARTS}, got {self.restart!r}")
        kind = self.type
        if kind is None:
            kind = getattr(start.actor_class, "_supervision_kind", "worker")
            object.__setattr__(self, "type", kind)
        if kind not in ("worker", "supervisor"):
            raise InvalidSpec(f"type must be 'worker' or 'supervisor', got {kind!r}")
        shutdown = self.shutdown
        if shutdown is None:
            shutdown = "infinity" if kind == "supervisor" else DEFAULT_WORKER_SHUTDOWN
            object.__setattr__(self, "shutdown", shutdown)
        if shutdown not in ("brutal_kill", "infinity") and not (
            isinstance(shutdown, (int, float)) and not isinstance(shutdown, bool) and shutdown > 0
        ):
            raise InvalidSpec(
                "shutdown must be 'brutal_kill', 'infinity' or a positive number of "
                f"seconds, got {shutdown!r}"
            )
        if self.start_timeout is not None and not (
            isinstance(self.start_timeout, (int, float)) and self.start_timeout > 0
        ):
            raise InvalidSpec(
                f"start_timeout must be a positive number or None, got {self.start_timeout!r}"
            )
        if not isinstance(self.significant, bool):
            raise InvalidSpec(f"significant must be True or False, got {self.significant!r}")
        if self.significant and self.restart == "permanent":
            raise InvalidSpec(f"child {self.id!r}: a permanent child cannot be significant")
        if self.name is not None:
            check_name(self.name, f"child {self.id!r}: name")
        if self.placement not in PLACEMENTS:
            raise InvalidSpec(
                f"child {self.id!r}: placement must be one of {PLACEMENTS}, got {self.placement!r}"
            )

    @property
    def actor_class(self) -> builtins.type:
        """The class started for this child."""
        start: Start = self.start
        return start.actor_class


def _check_auto_shutdown(auto_shutdown: Any) -> None:
    if auto_shutdown not in AUTO_SHUTDOWNS:
        raise InvalidSpec(f"auto_shutdown must be one of {AUTO_SHUTDOWNS}, got {auto_shutdown!r}")


def check_significant(child: ChildSpec, auto_shutdown: str) -> None:
    """Raise InvalidSpec for a significant child under ``auto_shutdown="never"`` (as OTP)."""
    if child.significant and auto_shutdown == "never":
        raise InvalidSpec(
            f"child {child.id!r} is significant but the supervisor's auto_shutdown is 'never'"
        )


def _check_intensity(max_restarts: Any, max_seconds: Any) -> None:
    if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or max_restarts < 0:
        raise InvalidSpec(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
    if (
        not isinstance(max_seconds, (int, float))
        or isinstance(max_seconds, bool)
        or max_seconds <= 0
    ):
        raise InvalidSpec(f"max_seconds must be a number > 0, got {max_seconds!r}")


@dataclass(frozen=True)
class SupervisorSpec:
    """What a :class:`supervision.Supervisor` runs: flags and ordered children.

    More than ``max_restarts`` restarts within ``max_seconds`` makes the
    supervisor stop all its children and exit with reason ``"shutdown"``
    (OTP's intensity and period, counted in whole seconds as OTP does). The
    default, 3 in 5, is Elixir's ``Supervisor`` default; OTP's ``supervisor``
    defaults to 1 in 5 (pass ``max_restarts=1`` for it).

    ``auto_shutdown`` (OTP 24): ``"never"`` (default), ``"any_significant"``
    (the supervisor stops all its children and exits ``"shutdown"`` when a
    ``significant`` child ends by itself and is not restarted) or
    ``"all_significant"`` (when the last running significant child does).
    A child stopped by the supervisor's API (``terminate_child``) never
    triggers it.
    """

    children: Sequence[ChildSpec] = ()
    strategy: Strategy = "one_for_one"
    max_restarts: int = DEFAULT_MAX_RESTARTS
    max_seconds: float = DEFAULT_MAX_SECONDS
    auto_shutdown: AutoShutdown = "never"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidSpec(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        _check_intensity(self.max_restarts, self.max_seconds)
        _check_auto_shutdown(self.auto_shutdown)
        children = tuple(self.children)
        seen: set[Hashable] = set()
        for child in children:
            if not isinstance(child, ChildSpec):
                raise InvalidSpec(f"children: expected ChildSpec, got {child!r}")
            if child.id in seen:
                raise InvalidSpec(f"children: duplicate child id {child.id!r}")
            check_significant(child, self.auto_shutdown)
            seen.add(child.id)
        object.__setattr__(self, "children", children)


@dataclass(frozen=True)
class DynamicSupervisorSpec:
    """Flags of a :class:`supervision.DynamicSupervisor` (Elixir's ``DynamicSupervisor.init``).

    - ``max_restarts`` / ``max_seconds``: intensity as for a Supervisor
      (default 3 in 5, Elixir's ``DynamicSupervisor`` default; OTP's is 1 in 5).
    - ``max_children`` bounds the children it holds, running or restarting
      (``None``: no bound).
    - ``extra_arguments``: prepended to the ``init`` arguments of every child
      started by ``start_child`` (Elixir's ``extra_arguments``), restarts included.
    - ``auto_shutdown``: as :class:`SupervisorSpec` (OTP's
      ``simple_one_for_one`` has it; Elixir's DynamicSupervisor does not).
    """

    max_restarts: int = DEFAULT_MAX_RESTARTS
    max_seconds: float = DEFAULT_MAX_SECONDS
    max_children: int | None = None
    extra_arguments: tuple[Any, ...] = ()
    auto_shutdown: AutoShutdown = "never"

    def __post_init__(self) -> None:
        _check_intensity(self.max_restarts, self.max_seconds)
        _check_auto_shutdown(self.auto_shutdown)
        if not isinstance(self.extra_arguments, (tuple, list)):
            raise InvalidSpec(
                f"extra_arguments must be a tuple or list, got {self.extra_arguments!r}"
            )
        object.__setattr__(self, "extra_arguments", tuple(self.extra_arguments))
        if self.max_children is not None and (
            not isinstance(self.max_children, int) or self.max_children < 0
        ):
            raise InvalidSpec(
                f"max_children must be an integer >= 0 or None, got {self.max_children!r}"
            )
