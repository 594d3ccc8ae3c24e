"""supervision: OTP-style supervision trees on Thespian actors.

The public surface, in OTP's vocabulary:

- :class:`ChildSpec`, :class:`SupervisorSpec`, :class:`DynamicSupervisorSpec`:
  what to start and how to restart it.
- :class:`Supervisor` (``one_for_one``, ``one_for_all``, ``rest_for_one``,
  restart intensity, ordered shutdown) and :class:`DynamicSupervisor`.
- :class:`Server`: a GenServer-like behaviour (``init``, ``handle_call``,
  ``handle_cast``, ``handle_info``, ``terminate``), with "let it crash".
- :func:`call` / :func:`cast` and the supervisor API: :func:`start_child`,
  :func:`terminate_child`, :func:`restart_child`, :func:`delete_child`,
  :func:`which_children`, :func:`count_children`.
- :class:`Application`: start and stop a tree from ordinary code.
- Monitors and links (``Server.monitor``/``link``, :class:`Down`,
  :class:`Exited`), :func:`stop` and :func:`get_state` for servers.
- :class:`Task` and :class:`TaskSupervisor` (Elixir's ``Task``,
  ``Task.Supervisor``): one function in an actor of its own.
- Local names (OTP's ``register``/``whereis``/``unregister``, ``{local, Name}``):
  :func:`register`, :func:`unregister`, :func:`whereis`, ``ChildSpec(name=...)``;
  :func:`call`/:func:`cast` accept a registered name.

See ``docs/supervision.md`` for the semantics and the choice of actor system base.
"""

from .application import Application, running_applications
from .calls import (
    call,
    cast,
    count_children,
    current_system,
    delete_child,
    get_childspec,
    get_state,
    restart_child,
    start_child,
    stop,
    terminate_child,
    use_system,
    which_children,
)
from .errors import (
    AlreadyPresent,
    AlreadyStarted,
    CallTimeout,
    InvalidSpec,
    MaxChildren,
    NameTaken,
    NoProc,
    NotFound,
    NotSupported,
    Restarting,
    Running,
    StartError,
    SupervisionError,
    UnknownRequest,
)
from .process import IGNORE
from .protocol import ChildInfo, Down, Exited, From
from .reasons import KILLED, NORMAL, SHUTDOWN, Crash, is_normal
from .registry import register, unregister, whereis
from .server import NOREPLY, TIMEOUT, Server, TimerRef
from .spec import ChildSpec, DynamicSupervisorSpec, Start, SupervisorSpec
from .supervisor import DynamicSupervisor, Supervisor
from .system import AdminPortInUse, start_actor_system
from .task import Task, TaskExit, TaskReply, TaskSupervisor, task_supervisor

__all__ = [
    "IGNORE",
    "KILLED",
    "NOREPLY",
    "NORMAL",
    "SHUTDOWN",
    "TIMEOUT",
    "AdminPortInUse",
    "AlreadyPresent",
    "AlreadyStarted",
    "Application",
    "CallTimeout",
    "ChildInfo",
    "ChildSpec",
    "Crash",
    "Down",
    "DynamicSupervisor",
    "DynamicSupervisorSpec",
    "Exited",
    "From",
    "InvalidSpec",
    "MaxChildren",
    "NameTaken",
    "NoProc",
    "NotFound",
    "NotSupported",
    "Restarting",
    "Running",
    "Server",
    "Start",
    "StartError",
    "SupervisionError",
    "Supervisor",
    "SupervisorSpec",
    "Task",
    "TaskExit",
    "TaskReply",
    "TaskSupervisor",
    "TimerRef",
    "UnknownRequest",
    "call",
    "cast",
    "count_children",
    "current_system",
    "delete_child",
    "get_childspec",
    "get_state",
    "is_normal",
    "register",
    "restart_child",
    "running_applications",
    "start_actor_system",
    "start_child",
    "stop",
    "task_supervisor",
    "terminate_child",
    "unregister",
    "use_system",
    "whereis",
    "which_children",
]
