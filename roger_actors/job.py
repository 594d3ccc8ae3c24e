"""The job model (Roger's ``Roger.Job``): plain data, no actor system, no broker.

Defining a job type
-------------------
Subclass :class:`Job` and implement the hooks; every hook receives the job's
arguments::

    class SquareJob(roger.Job):
        retryable = False            # Roger's retryable?/0
        max_execution_time = None    # seconds; None = infinity; below 1 means 1

        def perform(self, args):                 # required
            return args[0] * args[0]

        def queue_key(self, args):               # optional, str or None
            return None

        def execution_key(self, args):           # optional, str or None
            return None

        def queue_type(self, args):              # optional, str or str-valued Enum
            return "default"

A subclass registers itself, when its ``class`` statement runs, under its
qualified name ``f"{cls.__module__}.{cls.__qualname__}"`` (``job.module``).
That name is what a payload carries.

Jobs
----
A *job* is an instance of the job's class holding Roger's ``%Roger.Job{}``
fields: ``id``, ``module``, ``args``, ``queue_key``, ``execution_key``,
``retry_count``, ``queued_at``, ``started_at`` and ``max_execution_time``. Build
one with :meth:`Job.create` or :meth:`Job.decode`, never by calling the class
(``__init__`` is reserved and raises). ``perform`` runs with ``self`` being the
job, so it can read ``self.id`` or ``self.retry_count``. Defaults, as in
Roger's struct: ``retry_count``, ``queued_at`` and ``started_at`` 0 (the
times are set when the job is enqueued and when it is handed to a worker).

Name sharing between hooks and fields (the design choice)
---------------------------------------------------------
API.md spells both the hooks (``queue_key(self, args)``, ``queue_type(self,
args)``) and the data (``job.queue_key``, ``roger.Job.queue_type(job)``) with
the same names. The port resolves it so:

* ``queue_key`` / ``execution_key``: the values computed at creation are stored
  in the instance ``__dict__`` and shadow the hook methods on the instance, so
  ``job.queue_key`` is the ``str``/``None`` value, as in API.md. The library
  calls the hooks through the class (``type(job).queue_key(job, args)``). Typed
  code reads the values with :func:`queue_key_of` / :func:`execution_key_of`.
* ``queue_type``: nothing is stored. ``Job.queue_type(job)`` (one argument)
  returns the job's queue type *name*: the base implementation treats a call
  without ``args`` as the accessor and calls the job class's hook with
  ``job.args``, then normalises an ``Enum`` member to its ``str`` value. With
  ``args`` it is the default hook and returns ``"default"``. Because a subclass
  hook takes ``args``, call the accessor through the base class
  (``roger.Job.queue_type(job)``) or use ``job.queue_type_name()``;
  ``job.queue_type()`` on an instance works only for classes that do not
  override the hook. (A type checker flags an override that drops the
  default of ``args``; ``def queue_type(self, args=None)`` satisfies it and
  behaves the same.)
* ``retryable`` / ``max_execution_time`` are class attributes;
  ``Job.is_retryable(job)`` (or ``job.is_retryable()``) reads the former, and
  the resolved ``max_execution_time`` is stored on each job.

Payloads and trust
------------------
:meth:`Job.encode` produces CBOR: a map with a schema version ``"v": 1`` and the
fields above. :meth:`Job.decode` treats its input as untrusted: CBOR tags other
than big integers are refused, only ``None``, ``bool``, ``int``, ``float``,
``str``, ``bytes``, lists and maps with ``str`` keys may appear in ``args``, and
the job type is resolved *only* through the registry of imported subclasses or
through modules explicitly allowed with :meth:`Job.allow_modules` (exact module
names: only a listed module is ever imported, never another module under it).
Any other name is rejected ("Unknown job module") and never imported.

Every bad payload raises :class:`~roger_actors.errors.InvalidJobError` and
nothing else: integers are bounded (:data:`MAX_FIELD_INT`) before any
arithmetic, the id and the keys are at most :data:`MAX_KEY_BYTES` bytes, and
untrusted values appear in messages only through :func:`bounded_repr`. What a
payload may not decide: ``max_execution_time`` is the class's (a payload value
may only lower it), and the ``queue_key``/``execution_key`` a payload carries
must be what the class's hooks give for its args (otherwise it is invalid).
"""

from __future__ import annotations

import enum
import importlib
import math
import reprlib
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NamedTuple, cast

import cbor2

from roger_actors import cbor_strict
from roger_actors.clock import now
from roger_actors.errors import (
    DuplicateJobError,
    EnqueueError,
    InvalidJobError,
    NotStartedError,
)
from roger_actors.queue import Queue, normalise_queue_type, validate_partition_id

__all__ = [
    "CONTENT_TYPE",
    "MAX_ARGS_DEPTH",
    "MAX_FIELD_INT",
    "MAX_KEY_BYTES",
    "MAX_MODULE_NAME_CHARS",
    "SCHEMA_VERSION",
    "AmqpMessage",
    "EnqueueHook",
    "Job",
    "allowed_modules",
    "bounded_repr",
    "check_payload_size",
    "checked_jobs",
    "declared_queue_key",
    "execution_key_of",
    "job_class_name",
    "normalise_args",
    "queue_key_of",
    "registered_job_classes",
    "resolve_job_class",
    "set_allowed_modules",
    "set_enqueue_hook",
]

#: Version of the payload schema written by :meth:`Job.encode` (key ``"v"``).
SCHEMA_VERSION = 1
#: AMQP ``content_type`` of a job payload.
CONTENT_TYPE = "application/cbor"
#: Deepest nesting of lists/maps accepted in job arguments.
MAX_ARGS_DEPTH = 100
#: Largest magnitude of an integer field (``v``, ``retry_count``, ``queued_at``,
#: ``started_at``, ``max_execution_time``): what a signed 64-bit integer holds.
MAX_FIELD_INT = 2**63 - 1
#: Longest job id, queue key or execution key, in UTF-8 bytes (RabbitMQ's
#: short-string limit, which also bounds what the Global state holds).
MAX_KEY_BYTES = 255
#: Longest ``module`` name a payload may carry, in characters.
MAX_MODULE_NAME_CHARS = 1000

_FIELDS: tuple[str, ...] = (
    "id",
    "module",
    "args",
    "queue_key",
    "execution_key",
    "retry_count",
    "queued_at",
    "started_at",
    "max_execution_time",
)
_REQUIRED_PAYLOAD_KEYS = ("v", "id", "module", "args")
_PAYLOAD_KEYS = frozenset(("v", *_FIELDS))

# Names a subclass may not define: the public API of Job and the data fields
# that instances carry (a method of that name would be silently shadowed).
_RESERVED_NAMES = frozenset(
    {
        "__init__",
        "allow_modules",
        "copy_with",
        "create",
        "decode",
        "encode",
        "enqueue",
        "execute",
        "is_retryable",
        "queue_type_name",
        "started",
        "to_amqp",
        "id",
        "module",
        "args",
        "retry_count",
        "queued_at",
        "started_at",
    }
)

#: Signature of the function that :meth:`Job.enqueue` delegates to: it gets the
#: job, the validated partition id and the normalised queue override (or None).
EnqueueHook = Callable[["Job", str, "str | None"], object]

_lock = threading.RLock()
_registry: dict[str, type[Job]] = {}
_allowed_prefixes: tuple[str, ...] = ()
_enqueue_hook: EnqueueHook | None = None


class _NoArgs(enum.Enum):
    TOKEN = 0


_NO_ARGS = _NoArgs.TOKEN


class _BoundedRepr(reprlib.Repr):
    """reprlib with short limits that never formats a huge int or bytes in full."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 60
        self.maxlong = 40
        self.maxother = 60
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 6

    def repr_int(self, x: int, level: int) -> str:
        """Digits of small ints; a huge int (which ``repr`` may refuse) by its size."""
        bits = x.bit_length()
        if bits > 128:
            return f"<int of {bits} bits>"
        return super().repr_int(x, level)

    def repr_bytes(self, x: bytes, level: int) -> str:
        """The first bytes only (never a copy of the whole value)."""
        if len(x) <= self.maxstring:
            return repr(x)
        return f"{x[: self.maxstring]!r}...<{len(x)} bytes>"

    def repr_str(self, x: str, level: int) -> str:
        """The first characters only, and the length when cut."""
        if len(x) <= self.maxstring:
            return repr(x)
        return f"{x[: self.maxstring]!r}...<{len(x)} chars>"


_bounded = _BoundedRepr()


def bounded_repr(value: object, limit: int | None = None) -> str:
    """Return a short ``repr`` of an untrusted value (also cut to ``limit``
    characters when given); never raises.

    Strings and bytes are cut to 60 characters (with their length), containers
    to 6 items and 3 levels, and an int of more than 128 bits is shown as
    ``<int of N bits>`` (``repr`` refuses ints past 4300 digits). A value
    whose repr fails is named by its type.
    """
    try:
        text = _bounded.repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    if limit is None or len(text) <= limit:
        return text
    return text[: max(limit - 3, 0)] + "..."


def _clip(text: str, limit: int = 200) -> str:
    """``text`` for a message: as is when short and printable, else bounded."""
    if len(text) <= limit and text.isprintable():
        return text
    return bounded_repr(text)


# --------------------------------------------------------------------------
# Registry and allow-list
# --------------------------------------------------------------------------


def job_class_name(cls: type[Job]) -> str:
    """Return the name a job class is registered under: ``"module.QualName"``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def registered_job_classes() -> dict[str, type[Job]]:
    """Return a snapshot ``{name: class}`` of every registered job class."""
    with _lock:
        return dict(_registry)


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"module prefix must be a non-empty str, got {bounded_repr(prefix)}")
    if not all(part.isidentifier() for part in prefix.split(".")):
        raise ValueError(
            f"module prefix must be a dotted Python module path, got {bounded_repr(prefix)}"
        )
    return prefix


def allowed_modules() -> tuple[str, ...]:
    """Return the modules from which :meth:`Job.decode` may import job classes."""
    return _allowed_prefixes


def set_allowed_modules(prefixes: Iterable[str]) -> tuple[str, ...]:
    """Replace the allow-list of modules; return the previous one.

    Each entry is the exact dotted name of a module, such as
    ``"myapp.jobs"``: a payload naming ``"myapp.jobs.SomeJob"`` (or a nested
    class, ``"myapp.jobs.Outer.Inner"``) makes :meth:`Job.decode` import
    ``myapp.jobs`` (and so its parent packages). A module *under* a listed
    one (``"myapp.jobs.billing"``) is never imported on a payload's demand:
    list it too. (Until this rule, an entry was a prefix that allowed its
    submodules: a payload could then run the module-level code of any module
    in the package.) Raises :class:`ValueError` for a malformed entry,
    leaving the list unchanged.
    """
    global _allowed_prefixes
    checked = tuple(dict.fromkeys(_check_prefix(p) for p in prefixes))
    with _lock:
        previous = _allowed_prefixes
        _allowed_prefixes = checked
    return previous


def _module_allowed(module_name: str) -> bool:
    return module_name in _allowed_prefixes


def _unknown(name: str) -> InvalidJobError:
    return InvalidJobError(f"Unknown job module: {_clip(name)}")


def _import_allowed(name: str) -> object:
    """Import the object ``name`` from an allow-listed module, or raise.

    Only a module that is itself on the allow-list is imported (the longest
    listed one that ``name`` starts with); the rest of ``name`` is a path of
    public attributes of that module."""
    parts = name.split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise _unknown(name)
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        if not _module_allowed(module_name):
            continue
        try:
            obj: object = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (
                module_name == exc.name or module_name.startswith(exc.name + ".")
            ):
                continue  # that module (or a parent) does not exist; try a shorter path
            raise InvalidJobError(
                f"Invalid job module: {_clip(name)}: importing {module_name} failed: "
                f"{_clip(str(exc))}"
            ) from exc
        except Exception as exc:
            raise InvalidJobError(
                f"Invalid job module: {_clip(name)}: importing {module_name} failed: "
                f"{type(exc).__name__}"
            ) from exc
        registered = _registry.get(name)
        if registered is not None:
            return registered
        for attribute in parts[split:]:
            if attribute.startswith("_") or not hasattr(obj, attribute):
                raise _unknown(name)
            obj = getattr(obj, attribute)
        return obj
    raise _unknown(name)


def resolve_job_class(name: object) -> type[Job]:
    """Return the job class that a payload's ``module`` field names.

    Resolution order: the registry of imported :class:`Job` subclasses; then,
    only when the name is ``<module>.<attributes>`` with ``<module>`` given
    to :meth:`Job.allow_modules` (or :func:`set_allowed_modules`), an import
    of that module. Nothing else is ever imported. Raises
    :class:`InvalidJobError` with Roger's messages: "Job module must be set"
    (missing/empty), "Job module must be a string", "Job module name is too
    long" (over :data:`MAX_MODULE_NAME_CHARS`), "Unknown job module: <name>"
    (not found), "Invalid job module: <name> ..." (found but not a
    :class:`Job` subclass, or one without ``perform``). The name is cut in
    messages.
    """
    if name is None or name == "":
        raise InvalidJobError("Job module must be set")
    if type(name) is not str:
        raise InvalidJobError(f"Job module must be a string, got {type(name).__name__}")
    if len(name) > MAX_MODULE_NAME_CHARS:
        raise InvalidJobError(
            f"Job module name is too long: {len(name)} characters "
            f"(at most {MAX_MODULE_NAME_CHARS}): {_clip(name)}"
        )
    # No lock around the import: a module being imported by another thread may
    # be defining job classes, whose registration takes the lock.
    found: object = _registry.get(name)
    if found is None:
        found = _import_allowed(name)
    if not (isinstance(found, type) and issubclass(found, Job)) or found is Job:
        raise InvalidJobError(
            f"Invalid job module: {_clip(name)} is not a roger_actors.Job subclass"
        )
    _check_implements_perform(found, name)
    return found


def _check_implements_perform(cls: type[Job], name: str) -> None:
    if cls.perform is Job.perform:
        raise InvalidJobError(
            f"Invalid job module: {_clip(name)} does not implement perform(self, args)"
        )


# --------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------


#: Where a value sits in the args: ``None`` for ``args`` itself, else
#: ``(parent, index or key)``. Built in O(1) per item; text only on error.
_Path = tuple[Any, "int | str"] | None


def _path_text(path: _Path) -> str:
    segments: list[str] = []
    while path is not None:
        path, step = path
        segments.append(f"[{step}]" if type(step) is int else f"[{bounded_repr(step)}]")
        if len(segments) > 12:
            segments.append("...")
            break
    return "args" + "".join(reversed(segments))


def _describe(path: _Path | str, value: object) -> str:
    where = path if isinstance(path, str) else _path_text(path)
    return f"{where} is a {type(value).__module__}.{type(value).__qualname__}"


def _normalise(value: object, path: _Path, depth: int, strict: bool) -> Any:
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float or kind is str:
        return value
    if kind is bytes:
        return value
    if kind is list or (not strict and isinstance(value, list | tuple)):
        if depth >= MAX_ARGS_DEPTH:
            raise InvalidJobError(
                f"Job args nest deeper than {MAX_ARGS_DEPTH} levels at {_path_text(path)}"
            )
        items = cast("list[object] | tuple[object, ...]", value)
        return [
            _normalise(item, (path, index), depth + 1, strict) for index, item in enumerate(items)
        ]
    if kind is dict or (not strict and isinstance(value, Mapping)):
        if depth >= MAX_ARGS_DEPTH:
            raise InvalidJobError(
                f"Job args nest deeper than {MAX_ARGS_DEPTH} levels at {_path_text(path)}"
            )
        result: dict[str, Any] = {}
        for key, item in cast("Mapping[object, object]", value).items():
            if type(key) is not str and (strict or not isinstance(key, str)):
                raise InvalidJobError(
                    "Job args are not CBOR-representable: map keys must be str, "
                    f"{_describe(f'a key in {_path_text(path)}', key)}"
                )
            text = str.__str__(key)
            result[text] = _normalise(item, (path, text), depth + 1, strict)
        return result
    if not strict:
        # Subclasses of the plain types (str/int-valued enums, ...) become the plain type.
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):
            return int.__int__(value)
        if isinstance(value, float):
            return float.__float__(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
    raise InvalidJobError(
        "Job args are not CBOR-representable: "
        f"{_describe(path, value)} (allowed: None, bool, int, float, str, bytes, "
        "lists and dicts with str keys)"
    )


def normalise_args(args: object) -> Any:
    """Return a copy of ``args`` made only of the types a job payload carries.

    Allowed: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, lists
    and dicts with ``str`` keys, nested at most :data:`MAX_ARGS_DEPTH` deep.
    Tuples become lists, other mappings dicts, ``bytearray``/``memoryview``
    ``bytes``, and subclasses of ``str``/``int``/``float`` (such as a
    ``str``-valued enum member) their plain value, so the result round-trips
    through CBOR unchanged. Raises :class:`InvalidJobError` naming the path
    of the first value that cannot be carried, e.g. ``args[1]['when']``.
    """
    return _normalise(args, None, 0, strict=False)


# --------------------------------------------------------------------------
# Field validation shared by create, decode and copy_with
# --------------------------------------------------------------------------


def _bounded_int(value: int, where: str) -> int:
    if -MAX_FIELD_INT <= value <= MAX_FIELD_INT:
        return value
    raise InvalidJobError(f"{where} is out of range: {bounded_repr(value)} (|x| <= 2**63 - 1)")


def _resolve_max_execution_time(value: object, where: str) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJobError(
            f"{where} must be None or a number of seconds, got {type(value).__name__}"
        )
    if isinstance(value, int):
        _bounded_int(int.__int__(value), where)
    if math.isnan(value) or value < 0:
        raise InvalidJobError(
            f"{where} must be None or a number of seconds >= 0, got {bounded_repr(value)}"
        )
    if math.isinf(value):
        return None
    return value if value >= 1 else 1


def _check_short_text(value: str, name: str) -> str:
    # A str of more than MAX_KEY_BYTES characters is too long in any encoding.
    size = len(value) if len(value) > MAX_KEY_BYTES else len(value.encode("utf-8", "replace"))
    if size > MAX_KEY_BYTES:
        raise InvalidJobError(
            f"Job {name} is too long: {size}{'+' if len(value) > MAX_KEY_BYTES else ''} "
            f"bytes (at most {MAX_KEY_BYTES} bytes of UTF-8): {bounded_repr(value)}"
        )
    return value


def _check_key(value: object, name: str) -> str | None:
    if value is None:
        return None
    if type(value) is str:
        return _check_short_text(value, name)
    raise InvalidJobError(f"Job {name} must be a string or None, got {type(value).__name__}")


def _check_time(value: object, name: str) -> int | None:
    if value is None:
        return None
    if type(value) is int:
        return _bounded_int(value, f"Job {name}")
    raise InvalidJobError(
        f"Job {name} must be None or integer milliseconds, got {type(value).__name__}"
    )


def _check_id(value: object) -> str:
    if type(value) is not str or not value:
        shown = "nothing" if value is None else f"{type(value).__name__} {bounded_repr(value)}"
        raise InvalidJobError(f"Job id must be set (a non-empty string), got {shown}")
    return _check_short_text(value, "id")


def _check_retry_count(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_FIELD_INT:
        raise InvalidJobError(
            f"Job retry_count must be an integer >= 0 (at most 2**63 - 1), "
            f"got {bounded_repr(value)}"
        )
    return value


def _checked_fields(fields: Mapping[str, Any], strict: bool) -> dict[str, Any]:
    """Validate every data field except ``module``; return them normalised."""
    return {
        "id": _check_id(fields["id"]),
        "module": fields["module"],
        "args": _normalise(fields["args"], None, 0, strict),
        "queue_key": _check_key(fields["queue_key"], "queue_key"),
        "execution_key": _check_key(fields["execution_key"], "execution_key"),
        "retry_count": _check_retry_count(fields["retry_count"]),
        # Roger's struct defaults are 0; a payload's null (older encoders) reads as 0 too.
        "queued_at": _check_time(fields["queued_at"], "queued_at") or 0,
        "started_at": _check_time(fields["started_at"], "started_at") or 0,
        "max_execution_time": _resolve_max_execution_time(
            fields["max_execution_time"], "Job max_execution_time"
        ),
    }


def _hook_key(cls: type[Job], job: Job, hook: str, args: Any) -> str | None:
    """The value of the class's ``queue_key``/``execution_key`` hook for ``args``,
    checked (str or None, at most :data:`MAX_KEY_BYTES` bytes)."""
    value = getattr(cls, hook)(job, args)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidJobError(
            f"{job_class_name(cls)}.{hook}(args) must return a str or None, "
            f"got {type(value).__name__}"
        )
    return _check_short_text(str.__str__(value), f"{hook} (from {cls.__qualname__}.{hook})")


def _lowest_limit(cls: type[Job], claimed: object) -> int | float | None:
    """The class's ``max_execution_time``, or the payload's when that is lower."""
    limit = _resolve_max_execution_time(
        cls.max_execution_time, f"{cls.__qualname__}.max_execution_time"
    )
    value = _resolve_max_execution_time(claimed, "Job max_execution_time")
    if value is not None and (limit is None or value < limit):
        return value
    return limit


def check_payload_size(body: bytes | bytearray | memoryview, limit: int) -> None:
    """Raise :class:`InvalidJobError` when ``body`` is larger than ``limit`` bytes.

    The message names both numbers (the config key is ``max_payload_bytes``).
    """
    size = len(body)
    if size > limit:
        raise InvalidJobError(
            f"Job payload is {size} bytes, larger than max_payload_bytes ({limit} bytes)"
        )


# --------------------------------------------------------------------------
# CBOR decoding of untrusted bytes
# --------------------------------------------------------------------------


def _decode_cbor(data: bytes | bytearray | memoryview) -> object:
    try:
        return cbor_strict.loads(data, max_depth=MAX_ARGS_DEPTH + 1, big_integers=True)
    except cbor_strict.CborError as exc:
        raise InvalidJobError(f"Job decoding error: {exc}") from exc


# --------------------------------------------------------------------------
# AMQP publishing, pure part
# --------------------------------------------------------------------------


class AmqpMessage(NamedTuple):
    """What :meth:`Job.to_amqp` computes for publishing a job.

    ``routing_key`` is the work queue's name (published on the default
    exchange), ``body`` the CBOR payload, ``properties`` the AMQP basic
    properties by their AMQP/pamqp field names.
    """

    routing_key: str
    body: bytes
    properties: dict[str, Any]


def checked_jobs(jobs: Iterable[Job]) -> list[Job]:
    """``jobs`` as a list; TypeError naming the first item (``jobs[i]``) that
    is not a :class:`Job`."""
    batch = list(jobs)
    for index, job in enumerate(batch):
        if not isinstance(job, Job):
            raise TypeError(f"jobs[{index}] must be a Job, got {type(job).__name__}")
    return batch


def set_enqueue_hook(hook: EnqueueHook | None) -> EnqueueHook | None:
    """Install the function that :meth:`Job.enqueue` delegates to; return the previous one.

    The node installs it when it starts and removes it (``None``) when it
    stops. The hook receives ``(job, partition_id, queue_override)`` with the
    partition id validated and the override normalised to a ``str`` or
    ``None``; it performs the queue-key check and the publish and raises
    :class:`~roger_actors.errors.DuplicateJobError` for a duplicate.

    A hook may also have a ``many(jobs, partition_id, queue_override)``
    method, which :meth:`Job.enqueue_many` calls (it returns the duplicates,
    and raises :class:`~roger_actors.errors.EnqueueError` when some job was not
    enqueued); without one, ``enqueue_many`` calls the hook once per job.
    """
    global _enqueue_hook
    with _lock:
        previous = _enqueue_hook
        _enqueue_hook = hook
    return previous


def declared_queue_key(data: bytes | bytearray | memoryview) -> str | None:
    """The queue key a payload names, or None, without validating the rest.

    For a payload that :meth:`Job.decode` refused: the key it was enqueued
    with (registered with the partition's Global by the producer) can still
    be given back. Never raises.
    """
    try:
        payload = _decode_cbor(data)
    except Exception:
        return None
    if type(payload) is not dict or payload.get("v") != SCHEMA_VERSION:
        return None
    key = payload.get("queue_key")
    if type(key) is not str or not key or len(key) > MAX_KEY_BYTES:
        return None
    return key if len(key.encode("utf-8", "replace")) <= MAX_KEY_BYTES else None


def queue_key_of(job: Job) -> str | None:
    """Return ``job.queue_key``, the stored value (typed; see the module docstring)."""
    return cast("str | None", job.__dict__.get("queue_key"))


def execution_key_of(job: Job) -> str | None:
    """Return ``job.execution_key``, the stored value (typed; see the module docstring)."""
    return cast("str | None", job.__dict__.get("execution_key"))


# --------------------------------------------------------------------------
# Job
# --------------------------------------------------------------------------


class Job:
    """Base class of job types, and the type of job instances.

    See the module docstring for how subclasses define hooks, how hooks and
    stored fields share names, and how payloads are validated. Class
    attributes a subclass may set: ``retryable`` (``bool``, default
    ``False``) and ``max_execution_time`` (seconds as ``int``/``float``;
    ``None`` means no limit; values below 1, including 0, mean 1).
    Subclasses may not define ``__init__`` or any name of the public API
    (``create``, ``encode``, ``enqueue``, ...), nor the field names ``id``,
    ``module``, ``args``, ``retry_count``, ``queued_at``, ``started_at``.
    """

    retryable: ClassVar[bool] = False
    max_execution_time: int | float | None = None

    id: str
    module: str
    args: Any
    retry_count: int
    #: When the job was enqueued (ms since the epoch); 0 (Roger's default)
    #: for a job not enqueued.
    queued_at: int
    #: When the job was handed to its worker (ms since the epoch); 0 (Roger's
    #: default) for a job that has not started.
    started_at: int

    def __init__(self) -> None:
        """Refuse direct construction: jobs come from :meth:`create` or :meth:`decode`."""
        raise TypeError(
            f"{type(self).__qualname__} instances are made with roger_actors.Job.create(...) "
            "or Job.decode(...), not by calling the class"
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check the subclass's definition and register it under :func:`job_class_name`.

        Raises :class:`TypeError` when the subclass defines a reserved name or
        a ``retryable``/``max_execution_time`` of the wrong type, and
        :class:`ValueError` for a negative ``max_execution_time``. A class
        registered under the same name earlier (a re-definition or module
        reload) is replaced.
        """
        super().__init_subclass__(**kwargs)
        clashes = sorted(_RESERVED_NAMES.intersection(vars(cls)))
        if clashes:
            raise TypeError(
                f"job class {cls.__qualname__} may not define {', '.join(clashes)}: "
                "reserved by roger_actors.Job"
            )
        if not isinstance(cls.retryable, bool):
            raise TypeError(
                f"{cls.__qualname__}.retryable must be a bool, got {type(cls.retryable).__name__}"
            )
        limit = cls.max_execution_time
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int | float):
                raise TypeError(
                    f"{cls.__qualname__}.max_execution_time must be None or a number of "
                    f"seconds, got {type(limit).__name__}"
                )
            if math.isnan(limit) or limit < 0:
                raise ValueError(
                    f"{cls.__qualname__}.max_execution_time must be None or a number of "
                    f"seconds >= 0, got {limit}"
                )
        with _lock:
            _registry[job_class_name(cls)] = cls

    # ---------------------------------------------------------------- hooks

    def perform(self, args: Any) -> Any:
        """Do the job's work with ``args`` and return a result (required hook).

        Called by :meth:`execute`, in a worker process. ``self`` is the job.
        The base implementation raises :class:`NotImplementedError`.
        """
        raise NotImplementedError(f"{type(self).__qualname__} must implement perform(self, args)")

    def queue_key(self, args: Any) -> str | None:
        """Return the job's queue key for ``args``, or ``None`` (optional hook).

        A queue key makes the job unique in its queue: from its enqueue until
        it has run (its outcome settled, as in Roger; see ``docs/global.md``),
        enqueueing another job with that key raises ``DuplicateJobError``.
        Computed once, by :meth:`create`; the value is then ``job.queue_key``.
        """
        return None

    def execution_key(self, args: Any) -> str | None:
        """Return the job's execution key for ``args``, or ``None`` (optional hook).

        Jobs sharing an execution key never run concurrently: a later one waits
        until the running one finishes. Computed once, by :meth:`create`; the
        value is then ``job.execution_key``.
        """
        return None

    def queue_type(self, args: Any = _NO_ARGS) -> str | enum.Enum:
        """Hook and accessor for the job's queue type.

        As a hook (called with ``args``; override it in a subclass as
        ``queue_type(self, args)``) it names the partition queue the job runs
        on: a ``str`` or a ``str``-valued :class:`enum.Enum` member; the default
        is ``"default"``. As the accessor ``roger.Job.queue_type(job)`` (called
        without ``args``) it returns the job's normalised queue type name, the
        same as :meth:`queue_type_name`.
        """
        if args is _NO_ARGS:
            return self.queue_type_name()
        return "default"

    # ------------------------------------------------------------- accessors

    def queue_type_name(self) -> str:
        """Return the name of this job's queue type, e.g. ``"default"``.

        Calls the class's ``queue_type(self, args)`` hook with ``self.args`` and
        normalises an :class:`enum.Enum` member to its ``str`` value. Raises
        :class:`InvalidJobError` when the hook returns something that is not a
        valid queue type.
        """
        raw = type(self).queue_type(self, self.args)
        try:
            return normalise_queue_type(raw, argument=f"{self.module}.queue_type(args)")
        except (TypeError, ValueError) as exc:
            raise InvalidJobError(str(exc)) from exc

    def is_retryable(self) -> bool:
        """Return the job class's ``retryable`` attribute (Roger's ``retryable?/1``).

        Usable as ``roger.Job.is_retryable(job)`` or ``job.is_retryable()``.
        """
        return bool(type(self).retryable)

    # ------------------------------------------------------------- lifecycle

    @staticmethod
    def create(job_class: type[Job] | str, args: Any = (), id: str | None = None) -> Job:
        """Create a job of ``job_class`` with ``args`` (Roger's ``Job.create/3``).

        ``job_class`` is a :class:`Job` subclass or its registered name
        (resolved as by :func:`resolve_job_class`). ``args`` (default: an empty
        list) is normalised by :func:`normalise_args`. ``id`` defaults to a
        random lowercase hex string (32 characters). The returned job has
        ``queue_key``/``execution_key`` computed by the class's hooks from the
        normalised args, ``retry_count``, ``queued_at`` and ``started_at`` 0
        (Roger's defaults) and the class's ``max_execution_time`` resolved
        (``None`` or ``>= 1``). Raises :class:`InvalidJobError` for a bad class, id, args or
        hook result (the id and keys are at most :data:`MAX_KEY_BYTES` bytes);
        exceptions raised by the hooks themselves propagate.
        """
        if isinstance(job_class, str):
            cls = resolve_job_class(job_class)
        elif isinstance(job_class, type) and issubclass(job_class, Job) and job_class is not Job:
            cls = job_class
            _check_implements_perform(cls, job_class_name(cls))
        else:
            raise InvalidJobError(
                f"Invalid job module: {job_class!r} is not a roger_actors.Job subclass"
            )
        job_id = uuid.uuid4().hex if id is None else _check_id(id)
        normalised = normalise_args(args)
        job = object.__new__(cls)
        job.__dict__.update(
            id=job_id,
            module=job_class_name(cls),
            args=normalised,
            queue_key=None,
            execution_key=None,
            retry_count=0,
            queued_at=0,
            started_at=0,
            max_execution_time=_resolve_max_execution_time(
                cls.max_execution_time, f"{cls.__qualname__}.max_execution_time"
            ),
        )
        for hook in ("queue_key", "execution_key"):
            job.__dict__[hook] = _hook_key(cls, job, hook, normalised)
        return job

    def execute(self) -> Any:
        """Run ``perform(args)`` in the current process and return its result.

        Exceptions raised by ``perform`` propagate. In a node this is called
        by the worker; calling it directly is useful in tests.
        """
        return self.perform(self.args)

    def encode(self) -> bytes:
        """Return the job as a CBOR payload (schema version :data:`SCHEMA_VERSION`).

        The payload is a map ``{"v": 1, "id", "module", "args", "queue_key",
        "execution_key", "retry_count", "queued_at", "started_at",
        "max_execution_time"}``. Fields are validated again first (they are
        plain attributes and may have been changed), so what is encoded always
        decodes; raises :class:`InvalidJobError` otherwise.
        """
        fields = _checked_fields({name: self.__dict__.get(name) for name in _FIELDS}, strict=False)
        if not isinstance(fields["module"], str) or not fields["module"]:
            raise InvalidJobError("Job module must be set")
        payload: dict[str, Any] = {"v": SCHEMA_VERSION}
        payload.update(fields)
        return cbor2.dumps(payload)

    @staticmethod
    def decode(data: bytes | bytearray | memoryview) -> Job:
        """Decode and validate an untrusted payload; return the job.

        Raises :class:`InvalidJobError`, and only that, for any bad input,
        with a message that says what is wrong (untrusted values in it are
        bounded by :func:`bounded_repr`): "Job decoding error: ..." (not CBOR,
        trailing bytes, CBOR tags, nesting deeper than :data:`MAX_ARGS_DEPTH`,
        duplicate or non-str map keys), "Job payload must be a CBOR map",
        "Unsupported job schema version", "Job payload has unknown fields",
        "Job id must be set", "Job id is too long", "Job module must be set",
        "Job module must be a string", "Unknown job module", "Invalid job
        module", "Job args are not CBOR-representable", "... is out of range"
        (an integer field beyond :data:`MAX_FIELD_INT`), "... does not match"
        (a key the class's hook does not give), or a message naming another
        bad field. Keys ``v``, ``id``, ``module``, ``args`` are required;
        an absent ``retry_count``, ``queued_at`` or ``started_at`` is 0 (as
        is a null ``queued_at`` or ``started_at``, which older encoders wrote).

        What the payload cannot decide (the port's trust model; Roger's wire
        format, which carries these fields, is unchanged):

        * ``max_execution_time`` is the job class's; a payload value may only
          lower it (``None`` or a larger value in the payload is ignored).
        * ``queue_key`` and ``execution_key`` are computed by the class's
          hooks from the decoded args; a payload that carries a different
          value is invalid (a tampered or stale key would free or hold another
          job's key in Global). An absent key takes the hook's value. A hook
          that raises makes the payload invalid.

        An unregistered module outside the allow-list is never imported.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidJobError(
                f"Job decoding error: payload must be bytes, got {type(data).__name__}"
            )
        payload = _decode_cbor(data)
        if type(payload) is not dict:
            raise InvalidJobError(f"Job payload must be a CBOR map, got {type(payload).__name__}")
        version = payload.get("v")
        if type(version) is not int or version != SCHEMA_VERSION:
            shown = "none" if version is None else bounded_repr(version)
            raise InvalidJobError(
                f"Unsupported job schema version: {shown} (expected 'v': {SCHEMA_VERSION})"
            )
        unknown = [key for key in payload if key not in _PAYLOAD_KEYS]
        if unknown:
            names = sorted(
                _clip(key, 60) if type(key) is str else bounded_repr(key) for key in unknown[:5]
            )
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise InvalidJobError(f"Job payload has unknown fields: {', '.join(names)}{more}")
        _check_id(payload.get("id"))
        cls = resolve_job_class(payload.get("module"))
        if "args" not in payload:
            raise InvalidJobError("Job args must be set (key 'args' is missing)")
        fields: dict[str, Any] = {
            "queue_key": None,
            "execution_key": None,
            "retry_count": 0,
            "queued_at": 0,
            "started_at": 0,
        }
        fields.update(payload)
        fields["max_execution_time"] = _lowest_limit(cls, payload.get("max_execution_time"))
        checked = _checked_fields(fields, strict=True)
        checked["module"] = job_class_name(cls)
        job = object.__new__(cls)
        job.__dict__.update(checked)
        for hook in ("queue_key", "execution_key"):
            try:
                expected = _hook_key(cls, job, hook, checked["args"])
            except InvalidJobError:
                raise
            except Exception as exc:
                raise InvalidJobError(
                    f"{_clip(checked['module'])}.{hook}(args) raised {type(exc).__name__} "
                    "for the payload's args"
                ) from None
            if hook not in payload:
                job.__dict__[hook] = expected
            elif checked[hook] != expected:
                raise InvalidJobError(
                    f"Job {hook} does not match {cls.__qualname__}.{hook}(args): the payload "
                    f"carries {bounded_repr(checked[hook])}, the hook gives "
                    f"{bounded_repr(expected)}"
                )
        return job

    def copy_with(self, **changes: Any) -> Job:
        """Return a copy of this job with some fields replaced.

        ``changes`` may name any job field except ``module`` (e.g.
        ``retry_count=job.retry_count + 1`` or ``started_at=roger.now()``).
        The result is validated as in :meth:`decode`; raises
        :class:`InvalidJobError` for an unknown or invalid field.
        """
        unknown = sorted(name for name in changes if name not in _FIELDS or name == "module")
        if unknown:
            raise InvalidJobError(f"copy_with cannot set: {', '.join(unknown)}")
        fields = {name: self.__dict__.get(name) for name in _FIELDS}
        fields.update(changes)
        checked = _checked_fields(fields, strict=False)
        job = object.__new__(type(self))
        job.__dict__.update(checked)
        return job

    def started(self, at: int) -> Job:
        """A copy of this job with ``started_at`` set to ``at`` (ms), without the
        validation :meth:`copy_with` does (the job was validated when decoded)."""
        if isinstance(at, bool) or not isinstance(at, int):
            raise InvalidJobError("started_at must be an integer number of milliseconds")
        job = object.__new__(type(self))
        job.__dict__.update(self.__dict__)
        job.__dict__["started_at"] = at
        return job

    def to_amqp(
        self,
        partition_id: str,
        queue: str | enum.Enum | None = None,
        max_payload_bytes: int | None = None,
    ) -> AmqpMessage:
        """Compute the publish of this job into a partition, without doing it.

        Returns ``AmqpMessage(routing_key, body, properties)``: the routing key
        is ``Queue.make_name(partition_id, queue or Job.queue_type(job))``, the
        body encodes a copy of the job with ``queued_at`` set to
        :func:`~roger_actors.clock.now` (the job itself is unchanged), and the
        properties are ``content_type`` :data:`CONTENT_TYPE`, ``delivery_mode``
        2 (persistent), ``message_id`` the job id and ``app_id`` the partition
        id, as in Roger's ``publish_opts/2``. Raises :class:`TypeError` or
        :class:`ValueError` for a bad partition id or queue, and
        :class:`InvalidJobError` for an invalid job, or for a body larger than
        ``max_payload_bytes`` when that is given (see :func:`check_payload_size`).
        """
        partition = validate_partition_id(partition_id)
        queue_type = (
            self.queue_type_name()
            if queue is None
            else normalise_queue_type(queue, argument="queue")
        )
        routing_key = Queue.make_name(partition, queue_type)
        body = self.copy_with(queued_at=now()).encode()
        if max_payload_bytes is not None:
            check_payload_size(body, max_payload_bytes)
        properties: dict[str, Any] = {
            "content_type": CONTENT_TYPE,
            "delivery_mode": 2,
            "message_id": self.id,
            "app_id": partition,
        }
        return AmqpMessage(routing_key, body, properties)

    @staticmethod
    def enqueue_many(
        jobs: Iterable[Job], partition_id: str, queue: str | enum.Enum | None = None
    ) -> list[Job]:
        """Enqueue ``jobs`` in a partition with pipelined publisher confirms
        (many in flight at once, so at about the broker's speed); each job is
        confirmed by the broker, as with :meth:`enqueue`. Jobs without a queue
        key reach their queue in the order given.

        Returns the jobs refused as duplicates (their queue key is already
        queued or running: published nowhere), in the order given. Validates
        everything first: a bad partition id or queue, a job that is not a
        :class:`Job`, an invalid job or a payload over the node's
        ``max_payload_bytes`` raises (TypeError, ValueError,
        :class:`InvalidJobError`) before anything is published. Raises
        :class:`~roger_actors.errors.EnqueueError` when some job could not be
        enqueued (its ``confirmed``, ``duplicates`` and ``failed`` lists say
        which: the failed ones may be enqueued again), ``TimeoutError`` when
        the node's publisher timed out (jobs may be on the broker or not),
        and :class:`NotStartedError` when no node or producer is started in
        this process.
        """
        batch = checked_jobs(jobs)
        partition = validate_partition_id(partition_id)
        override = None if queue is None else normalise_queue_type(queue, argument="queue")
        hook = _enqueue_hook
        if hook is None:
            raise NotStartedError("no node started in this process")
        if not batch:
            return []
        many = getattr(hook, "many", None)
        if many is not None:
            return list(many(batch, partition, override))
        confirmed: list[Job] = []
        duplicates: list[Job] = []
        for index, job in enumerate(batch):
            try:
                hook(job, partition, override)
            except DuplicateJobError:
                duplicates.append(job)
            except Exception as exc:
                rest = [(later, exc) for later in batch[index:]]
                raise EnqueueError.of_batch(partition, confirmed, duplicates, rest) from exc
            else:
                confirmed.append(job)
        return duplicates

    def enqueue(self, partition_id: str, queue: str | enum.Enum | None = None) -> None:
        """Enqueue this job in a partition (``roger.Job.enqueue(job, "myapp")``).

        ``queue`` overrides the job's queue type. Validates the arguments, then
        delegates to the hook installed by the node running in this process
        (:func:`set_enqueue_hook`), which raises
        :class:`~roger_actors.errors.DuplicateJobError` when the job's queue key
        is already queued, and :class:`InvalidJobError` (naming both sizes),
        before publishing anything, when the payload is larger than the
        node's ``max_payload_bytes``. Raises :class:`NotStartedError` when no
        node is started in this process.
        """
        partition = validate_partition_id(partition_id)
        override = None if queue is None else normalise_queue_type(queue, argument="queue")
        hook = _enqueue_hook
        if hook is None:
            raise NotStartedError("no node started in this process")
        hook(self, partition, override)

    @staticmethod
    def allow_modules(*prefixes: str) -> tuple[str, ...]:
        """Add modules from which :meth:`decode` may import job classes.

        Normally a job class is found because the module defining it was
        imported. ``Job.allow_modules("myapp.jobs")`` also lets payloads name
        classes of the module ``myapp.jobs`` before it is imported; it is then
        imported on demand. Only listed modules are imported: a submodule such
        as ``myapp.jobs.billing`` must be listed itself (see
        :func:`set_allowed_modules`). Returns the whole allow-list. Raises
        :class:`ValueError` for an entry that is not a dotted module path.
        """
        with _lock:
            set_allowed_modules((*_allowed_prefixes, *prefixes))
            return _allowed_prefixes

    # ------------------------------------------------------------ dunders

    def __eq__(self, other: object) -> bool:
        """Jobs are equal when they have the same class and the same field values."""
        if type(other) is not type(self):
            return NotImplemented
        return all(self.__dict__.get(f) == other.__dict__.get(f) for f in _FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """Show the class and every field, each bounded (:func:`bounded_repr`); never raises."""
        shown = ", ".join(f"{name}={bounded_repr(self.__dict__.get(name))}" for name in _FIELDS)
        return f"{type(self).__qualname__}({shown})"
