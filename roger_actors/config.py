"""Node configuration: :class:`Config`, :class:`AmqpSettings` and :func:`load_config`.

Keys (all optional; API.md lists them with Roger's defaults):

==========================  ===============================================
``amqp``                    URL string or dict of Roger's AMQP options;
                            several broker addresses (a RabbitMQ cluster):
                            a list of URLs, URLs separated by commas, or
                            ``addresses`` in the dict (:func:`parse_amqp`,
                            ``docs/operations.md``)
                            [``amqp://guest:guest@localhost:5672/``]
``partitions``              ``{"myapp": {"default": 10}}`` or pairs [none]
``callbacks``               ``WorkerCallback`` subclass or ``"module:Name"``
``persister``               ``StatePersister`` subclass, instance or
                            ``"module:Name"`` [``persisters.Stub``]
``persister_options``       keyword arguments for the persister class [{}]
``retry_levels``            seconds [1, 3, 5, 10, 20, 35, 60, 100, 200, 400,
                            1000, 1800]
``max_buried_queue_size``   [100]
``shutdown_timeout``        seconds [15]
``system_exchange_prefix``  [None]
``node_name``               [``"<host name>-<pid>"``]
``actor_system_base``       ``"light"`` (the node's actors in its process,
                            every partition's tree in one partition host
                            process, workers started on demand) or a
                            Thespian base (``"multiprocTCPBase"``: every
                            actor an OS process of its own) [``"light"``]
``admin_port``              Thespian admin port [1900]
``allowed_job_modules``     modules (exact dotted names, not prefixes:
                            a submodule must be listed itself) whose job
                            classes payloads may name before the module is
                            imported (see ``Job.allow_modules``) [()]
``cluster_secret``          the secret that signs every cluster message
                            (System commands and replies, Global requests,
                            replies and snapshots); ``None`` trusts everyone
                            who can publish on the virtual host
                            (``docs/security.md``) [None]
``max_payload_bytes``       largest job payload: refused at enqueue, set
                            aside when one arrives [1048576]
``cancel_mark_ttl``         seconds a cancel mark is kept in Global when
                            its job is never settled [604800, one week]
``prefetch``                how many deliveries a queue's consumer channel
                            may hold unacked: ``"roger"`` (``max_workers``,
                            Roger's) or ``"adaptive"`` (``max_workers *
                            (1 + batch)``: 2 to 33 times ``max_workers``,
                            following the recent job durations); see
                            :data:`PREFETCH_MODES` [``"adaptive"``]
``delivery_limit``          deliveries without an outcome before a job is
                            set aside in ``<queue>.invalid`` [20]
``consumer_timeout``        the broker's ``consumer_timeout``, seconds [1800]
``worker_pool_size``        worker processes of the node at once, shared
                            fairly by its partitions' queues (each also
                            capped by its ``max_workers``); on
                            ``multiprocTCPBase`` it caps each partition
                            [4 per CPU, at least 8]
==========================  ===============================================

``persister_options``, ``allowed_job_modules``, ``cluster_secret``,
``max_payload_bytes``, ``cancel_mark_ttl``, ``prefetch`` and
``worker_pool_size`` are additions to API.md.

Environment variables override the source (see :func:`load_config`):
``ROGER_AMQP_URL`` replaces ``amqp`` (one URL, or several separated by
commas); ``ROGER_<KEY>`` (the key upper-cased)
sets ``max_buried_queue_size``, ``shutdown_timeout``,
``system_exchange_prefix``, ``node_name``, ``actor_system_base``,
``admin_port``, ``callbacks``, ``persister``, ``cluster_secret``,
``max_payload_bytes``, ``cancel_mark_ttl``, ``prefetch``, ``worker_pool_size``, and,
as comma-separated lists,
``retry_levels`` and ``allowed_job_modules``. An empty variable is ignored.

Every error is a :class:`~roger_actors.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import socket
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import attrs

from roger_actors.callbacks import WorkerCallback
from roger_actors.errors import ConfigError
from roger_actors.persisters.base import StatePersister
from roger_actors.persisters.stub import Stub
from roger_actors.queue import normalise_queue_defs, validate_partition_id
from roger_actors.transport.urls import split_urls

__all__ = [
    "ACTOR_SYSTEM_BASES",
    "DEFAULT_AMQP_URL",
    "DEFAULT_RETRY_LEVELS",
    "ENV_OVERRIDES",
    "AmqpSettings",
    "Config",
    "load_config",
    "parse_amqp",
]

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_RETRY_LEVELS: tuple[int, ...] = (1, 3, 5, 10, 20, 35, 60, 100, 200, 400, 1000, 1800)
#: Thespian system bases that :attr:`Config.actor_system_base` may name.
ACTOR_SYSTEM_BASES = frozenset(
    {"multiprocTCPBase", "multiprocUDPBase", "multiprocQueueBase", "simpleSystemBase", "light"}
)

_AMQP_KEYS = (
    "host",
    "addresses",
    "port",
    "username",
    "password",
    "virtual_host",
    "channel_max",
    "frame_max",
    "heartbeat",
    "connection_timeout",
    "ssl_options",
    "client_properties",
)
# ssl option names accepted (Erlang's and aiormq's) -> aiormq URL query name
_SSL_OPTION_NAMES = {
    "cacertfile": "cafile",
    "cafile": "cafile",
    "capath": "capath",
    "certfile": "certfile",
    "keyfile": "keyfile",
    "no_verify_ssl": "no_verify_ssl",
    "verify": "no_verify_ssl",
}
# aiormq URL query parameters passed through unchanged
_PASSTHROUGH_QUERY = frozenset({"name", "auth", "cadata"})
_REF_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _fail(key: str, message: str) -> ConfigError:
    return ConfigError(f"config key {key!r}: {message}")


def _int(value: object, key: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, f"must be an int, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise _fail(key, f"must be >= {minimum}{upper}, got {value}")
    return int(value)


def _str(value: object, key: str, *, allow_empty: bool = False) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _fail(key, f"must be a str, got {type(value).__name__}")
    if not value and not allow_empty:
        raise _fail(key, "must be a non-empty str")
    return str.__str__(value)


# --------------------------------------------------------------------------
# AMQP
# --------------------------------------------------------------------------


def _normalise_ssl_options(value: object, key: str) -> dict[str, str] | None:
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(
            key, f"must be a mapping of ssl options, true or null, got {type(value).__name__}"
        )
    result: dict[str, str] = {}
    for name, option in value.items():
        where = f"{key}.{name}"
        target = _SSL_OPTION_NAMES.get(name) if isinstance(name, str) else None
        if target is None:
            raise _fail(
                key,
                f"unknown ssl option {name!r} (known: {', '.join(sorted(_SSL_OPTION_NAMES))})",
            )
        if target == "no_verify_ssl":
            result[target] = _verify_flag(name, option, where)
        else:
            result[target] = _str(option, where)
    return result


def _verify_flag(name: str, option: object, where: str) -> str:
    """Return aiormq's ``no_verify_ssl`` value ("1" = do not verify) for an option."""
    if name == "verify":
        if option in ("verify_peer", True):
            return "0"
        if option in ("verify_none", False):
            return "1"
        raise _fail(where, f"must be 'verify_peer' or 'verify_none', got {option!r}")
    if option in ("1", 1, True):
        return "1"
    if option in ("0", 0, False):
        return "0"
    raise _fail(where, f"must be a boolean, got {option!r}")


def _normalise_client_properties(value: object, key: str) -> dict[str, Any]:
    items: Iterable[Any]
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise _fail(key, f"must be a mapping or a list of pairs, got {type(value).__name__}")
    result: dict[str, Any] = {}
    for index, item in enumerate(items):
        if not isinstance(item, list | tuple) or len(item) not in (2, 3):
            raise _fail(f"{key}[{index}]", "must be a (name, value) or (name, type, value) entry")
        name, prop = item[0], item[-1]
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        name = _str(name, f"{key}[{index}] name")
        if isinstance(prop, bytes):
            prop = prop.decode("utf-8", "replace")
        if not isinstance(prop, str | int | float | bool):
            raise _fail(
                f"{key}.{name}", f"must be a str, int, float or bool, got {type(prop).__name__}"
            )
        result[name] = prop
    return result


def _timeout_ms(value: object, key: str) -> int | None:
    if value is None or value == "infinity":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, f"must be milliseconds (a number), 'infinity' or null, got {value!r}")
    if math.isinf(value):
        return None
    if math.isnan(value) or value <= 0:
        raise _fail(key, f"must be > 0 milliseconds, got {value}")
    return math.ceil(value)


@attrs.frozen(kw_only=True)
class AmqpSettings:
    """The normalised AMQP connection options (Roger's ``amqp`` config keys).

    Fields, with Roger's meaning: ``host``, ``port`` (5672, or 5671 with ssl),
    ``username``/``password`` (``"guest"``), ``virtual_host`` (``"/"``),
    ``channel_max``/``frame_max`` (0 = the server's value), ``heartbeat``
    (seconds; ``None`` = the client library's default, 60 s for aiormq, where
    Roger's Erlang client defaults to 0 = off), ``connection_timeout``
    (milliseconds; ``None`` = no limit), ``ssl_options`` (``None`` = plain AMQP;
    a dict, possibly empty, = TLS, keys in aiormq's vocabulary: ``cafile``,
    ``capath``, ``certfile``, ``keyfile``, ``no_verify_ssl``),
    ``client_properties`` (extra properties sent to the server) and
    ``query`` (aiormq URL parameters passed through: ``name``, ``auth``,
    ``cadata``). Build it with :func:`parse_amqp`; the constructor does not
    validate.

    Several broker addresses (the nodes of one RabbitMQ cluster): the fields
    above are the first address's, and ``failover`` holds the others. Every
    connection of a node tries them in turn (see :meth:`urls`); the
    per-attempt connection timeout is the first address's
    ``connection_timeout``.
    """

    host: str = "localhost"
    port: int = 5672
    username: str = "guest"
    password: str = attrs.field(default="guest", repr=lambda _: "'***'")
    virtual_host: str = "/"
    channel_max: int = 0
    frame_max: int = 0
    heartbeat: int | None = None
    connection_timeout: int | None = None
    ssl_options: dict[str, str] | None = None
    client_properties: dict[str, Any] = attrs.field(factory=dict)
    query: dict[str, str] = attrs.field(factory=dict)
    #: The other broker addresses (nodes of the same RabbitMQ cluster), in
    #: order, each with its own complete settings; their own ``failover`` is
    #: empty. A connection tries this address and then these in turn
    #: (:meth:`urls`).
    failover: tuple[AmqpSettings, ...] = ()
    #: The name of the embedded broker (``amqp = "memory://name"``): the node
    #: serves it from its own process (:mod:`roger_actors.transport.embedded`)
    #: and replaces these settings with its loopback address before anything
    #: connects. None for a real broker.
    embedded: str | None = None

    def endpoints(self) -> tuple[AmqpSettings, ...]:
        """Every address's settings, first this one (without ``failover``), then
        the ``failover`` ones."""
        return (attrs.evolve(self, failover=()), *self.failover)

    def urls(self) -> list[str]:
        """The :meth:`url` of every address, in order (one for a single broker)."""
        return [endpoint.url() for endpoint in self.endpoints()]

    def redacted_urls(self) -> list[str]:
        """:meth:`urls` with the passwords replaced by ``***`` (for logs)."""
        return [endpoint.redacted_url() for endpoint in self.endpoints()]

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of every address, in order (``[::1]:5672`` for IPv6)."""
        return [
            f"[{e.host}]:{e.port}" if ":" in e.host else f"{e.host}:{e.port}"
            for e in self.endpoints()
        ]

    def with_password(self, password: str) -> AmqpSettings:
        """A copy whose every address uses ``password`` (the CLI's password file)."""
        return attrs.evolve(
            self,
            password=password,
            failover=tuple(attrs.evolve(e, password=password) for e in self.failover),
        )

    @property
    def use_ssl(self) -> bool:
        """True when the connection uses TLS (``amqps``)."""
        return self.ssl_options is not None

    @property
    def connection_timeout_seconds(self) -> float | None:
        """``connection_timeout`` in seconds (``None`` = no limit), for ``asyncio.wait_for``."""
        return None if self.connection_timeout is None else self.connection_timeout / 1000

    def url(self) -> str:
        """Return an ``amqp://`` or ``amqps://`` URL that aiormq understands,
        for the first address (:meth:`urls` gives them all).

        User name, password and virtual host are percent-encoded (the default
        virtual host ``/`` is written as the path ``/``). Query parameters in
        aiormq's names: ``heartbeat`` (seconds), ``timeout`` (the connection
        timeout rounded up to whole seconds), ``cafile``, ``capath``,
        ``certfile``, ``keyfile``, ``no_verify_ssl`` and the pass-through
        ``query``. aiormq takes ``channel_max``/``frame_max`` from the server
        and has no URL parameter for them, and ``client_properties`` go to
        ``aiormq.connect(url, client_properties=...)``: neither is in the URL.
        """
        return self._url(self.password)

    def redacted_url(self) -> str:
        """Return :meth:`url` with the password replaced by ``***`` (for logs);
        the first address only (see :meth:`redacted_urls`)."""
        return self._url("***", quote_password=False)

    def _url(self, password: str, quote_password: bool = True) -> str:
        scheme = "amqps" if self.use_ssl else "amqp"
        user = quote(self.username, safe="")
        secret = quote(password, safe="") if quote_password else password
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = "/" if self.virtual_host == "/" else "/" + quote(self.virtual_host, safe="")
        query: dict[str, str] = {}
        if self.heartbeat is not None:
            query["heartbeat"] = str(self.heartbeat)
        if self.connection_timeout is not None:
            query["timeout"] = str(math.ceil(self.connection_timeout / 1000))
        query.update(self.ssl_options or {})
        query.update(self.query)
        tail = f"?{urlencode(query)}" if query else ""
        return f"{scheme}://{user}:{secret}@{host}:{self.port}{path}{tail}"


def _amqp_from_mapping(value: Mapping[Any, Any], key: str) -> AmqpSettings:
    unknown = sorted(str(k) for k in value if k not in _AMQP_KEYS)
    if unknown:
        raise _fail(
            key,
            f"unknown AMQP option(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(_AMQP_KEYS)})",
        )
    ssl_options = _normalise_ssl_options(value.get("ssl_options"), f"{key}.ssl_options")
    default_port = 5671 if ssl_options is not None else 5672
    heartbeat = value.get("heartbeat")
    port = _int(value.get("port", default_port), f"{key}.port", 1, 65535)
    addresses: list[tuple[str, int]] = []
    if "addresses" in value:
        if "host" in value:
            raise _fail(
                key,
                "give either 'host' (one broker) or 'addresses' (several), not both "
                "(with 'addresses', 'port' is the port of an address that names none)",
            )
        addresses = _addresses(value["addresses"], f"{key}.addresses", port)
    first = AmqpSettings(
        host=_str(value.get("host", "localhost"), f"{key}.host"),
        port=port,
        username=_str(value.get("username", "guest"), f"{key}.username", allow_empty=True),
        password=_str(value.get("password", "guest"), f"{key}.password", allow_empty=True),
        virtual_host=_str(value.get("virtual_host", "/"), f"{key}.virtual_host"),
        channel_max=_int(value.get("channel_max", 0), f"{key}.channel_max", 0, 65535),
        frame_max=_int(value.get("frame_max", 0), f"{key}.frame_max", 0, 2**32 - 1),
        heartbeat=None if heartbeat is None else _int(heartbeat, f"{key}.heartbeat", 0, 65534),
        connection_timeout=_timeout_ms(
            value.get("connection_timeout"), f"{key}.connection_timeout"
        ),
        ssl_options=ssl_options,
        client_properties=_normalise_client_properties(
            value.get("client_properties"), f"{key}.client_properties"
        ),
    )
    if not addresses:
        return first
    (host, port), *others = addresses
    return attrs.evolve(
        first,
        host=host,
        port=port,
        failover=tuple(attrs.evolve(first, host=h, port=p) for h, p in others),
    )


def _addresses(value: object, key: str, default_port: int) -> list[tuple[str, int]]:
    """The ``addresses`` of the mapping form: ``"host"``, ``"host:port"``,
    ``"[v6 address]:port"`` or ``{"host": ..., "port": ...}`` entries."""
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise _fail(
            key,
            f"must be a list of 'host', 'host:port' or {{host, port}} entries, "
            f"got {type(value).__name__}",
        )
    if not value:
        raise _fail(key, "must name at least one broker address")
    result: list[tuple[str, int]] = []
    for index, entry in enumerate(value):
        where = f"{key}[{index}]"
        if isinstance(entry, Mapping):
            unknown = sorted(str(k) for k in entry if k not in ("host", "port"))
            if unknown or "host" not in entry:
                raise _fail(where, "an address mapping has 'host' and optionally 'port', only")
            host = _str(entry["host"], f"{where}.host")
            port = _int(entry.get("port", default_port), f"{where}.port", 1, 65535)
        else:
            text = _str(entry, where)
            if any(ch.isspace() or ch in "/@?#" for ch in text):
                # no credentials or paths here (and never echo what may be a password)
                raise _fail(where, "is not a 'host' or 'host:port' (no user, '/', '?' or '#')")
            host, port = _host_port(text, where, default_port)
        if (host, port) in result:
            raise _fail(where, f"names {host}:{port} a second time")
        result.append((host, port))
    return result


def _host_port(text: str, where: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise _fail(where, f"must be '[address]' or '[address]:port', got {text!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:  # a host name, or a bare IPv6 address
        host, port_text = text, None
    if not host:
        raise _fail(where, f"has no host: {text!r}")
    if port_text is None:
        return host, default_port
    return host, _query_int(port_text, f"{where} port", 1, 65535)


def _query_int(raw: str, where: str, minimum: int, maximum: int) -> int:
    try:
        number = int(raw)
    except ValueError:
        raise _fail(where, f"must be an integer, got {raw!r}") from None
    return _int(number, where, minimum, maximum)


def _amqp_from_url(url: str, key: str) -> AmqpSettings:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # urlsplit's message can quote part of the URL, which may be the password
        raise _fail(
            key,
            "invalid AMQP URL (is the port a number, and are '/', '#', '?' and '@' in "
            "the user name and password percent-encoded?)",
        ) from None
    if parts.scheme not in ("amqp", "amqps"):
        raise _fail(key, f"URL scheme must be amqp or amqps, got {parts.scheme!r}")
    if not parts.hostname:
        raise _fail(key, "URL has no host")
    if parts.fragment:
        raise _fail(key, "URL must not have a #fragment")
    fields: dict[str, Any] = {
        "host": parts.hostname,
        "port": port if port is not None else (5671 if parts.scheme == "amqps" else 5672),
        "username": unquote(parts.username) if parts.username is not None else "guest",
        "password": unquote(parts.password) if parts.password is not None else "guest",
        "virtual_host": "/" if parts.path in ("", "/") else unquote(parts.path[1:]),
    }
    ssl_options: dict[str, str] = {}
    query: dict[str, str] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        where = f"{key} URL parameter {name}"
        if name == "heartbeat":
            fields["heartbeat"] = _query_int(raw, where, 0, 65534)
        elif name == "connection_timeout":
            fields["connection_timeout"] = _query_int(raw, where, 1, 2**31)
        elif name == "timeout":
            try:
                seconds = float(raw)
            except ValueError:
                raise _fail(where, f"must be a number of seconds, got {raw!r}") from None
            fields["connection_timeout"] = _timeout_ms(seconds * 1000, where)
        elif name in ("channel_max", "frame_max"):
            fields[name] = _query_int(raw, where, 0, 65535 if name == "channel_max" else 2**32 - 1)
        elif name in _SSL_OPTION_NAMES:
            target = _SSL_OPTION_NAMES[name]
            if target == "no_verify_ssl":
                ssl_options[target] = _verify_flag(name, raw, where)
            else:
                ssl_options[target] = _str(raw, where)
        elif name in _PASSTHROUGH_QUERY:
            query[name] = raw
        else:
            raise _fail(key, f"unknown AMQP URL parameter {name!r}")
    if ssl_options and parts.scheme != "amqps":
        raise _fail(key, "ssl parameters need an amqps:// URL")
    return attrs.evolve(
        AmqpSettings(**fields),
        ssl_options=ssl_options if parts.scheme == "amqps" else None,
        query=query,
    )


def _embedded_from_url(url: str, key: str) -> AmqpSettings:
    """``memory://`` or ``memory://name``: the embedded broker (name ``default``)."""
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise _fail(key, "a memory:// URL takes a broker name only (memory://name)")
    name = parts.netloc or "default"
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise _fail(
            key, f"memory:// broker name must be letters, digits, '-', '_' or '.', got {name!r}"
        )
    return AmqpSettings(host="127.0.0.1", port=0, username="roger", password="", embedded=name)


def parse_amqp(value: object, key: str = "amqp") -> AmqpSettings:
    """Normalise the ``amqp`` config value into :class:`AmqpSettings`.

    ``value`` is an :class:`AmqpSettings` (returned unchanged), ``None`` (the
    default URL), an ``amqp://``/``amqps://`` URL, ``memory://`` or
    ``memory://name`` (the embedded broker, served by the node's own process:
    one process, one host), or a mapping of Roger's AMQP
    options (``host`` or ``addresses``, ``port``, ``username``, ``password``, ``virtual_host``,
    ``channel_max``, ``frame_max``, ``heartbeat``, ``connection_timeout`` in
    ms, ``ssl_options``, ``client_properties``). URLs may carry the query
    parameters of aiormq (``heartbeat``, ``timeout`` in seconds, ``cafile``,
    ``capath``, ``certfile``, ``keyfile``, ``no_verify_ssl``, ``name``,
    ``auth``, ``cadata``) and of RabbitMQ's URI spec (``connection_timeout`` in
    ms, ``channel_max``, ``frame_max``, ``cacertfile``, ``verify``).
    ``ssl_options`` is a mapping of those ssl names, ``true`` (TLS with
    defaults) or ``null``; ``client_properties`` a mapping or a list of
    ``(name, value)`` / ``(name, type, value)`` entries.

    Several broker addresses (nodes of one RabbitMQ cluster; connections try
    them in turn and fail over, see :meth:`AmqpSettings.urls`): a list of
    URLs or of mappings, each with its own credentials and TLS settings
    (``key[i]`` in errors); a string of URLs separated by commas (split only
    where ``amqp://``/``amqps://`` follows the comma); or, in the mapping,
    ``addresses`` instead of ``host``: a list of ``"host"``, ``"host:port"``,
    ``"[IPv6]:port"`` or ``{"host", "port"}`` entries sharing the mapping's
    other options (``port`` is then the port of an entry that names none).
    All addresses must have the same virtual host, and no address may appear
    twice. Raises :class:`ConfigError` naming ``key`` and the bad option.
    """
    if isinstance(value, AmqpSettings):
        return value
    if value is None:
        return _amqp_from_url(DEFAULT_AMQP_URL, key)
    if isinstance(value, str) and value.split(":", 1)[0].lower() == "memory":
        return _embedded_from_url(value, key)
    if isinstance(value, str):
        urls = split_urls(value)
        if len(urls) == 1:
            return _amqp_from_url(urls[0], key)
        return _join_endpoints(
            [_amqp_from_url(url, f"{key}[{i}]") for i, url in enumerate(urls)], key
        )
    if isinstance(value, Mapping):
        return _amqp_from_mapping(value, key)
    if isinstance(value, list | tuple):
        if not value:
            raise _fail(key, "must name at least one broker (the list is empty)")
        endpoints = []
        for index, item in enumerate(value):
            where = f"{key}[{index}]"
            if isinstance(item, Mapping) and "addresses" in item:
                raise _fail(where, "'addresses' belongs in a single mapping, not in a list entry")
            if not isinstance(item, str | Mapping):
                raise _fail(where, f"must be an AMQP URL or a mapping, got {type(item).__name__}")
            endpoints.append(
                _amqp_from_url(item, where)
                if isinstance(item, str)
                else _amqp_from_mapping(item, where)
            )
        return _join_endpoints(endpoints, key)
    raise _fail(
        key,
        "must be an AMQP URL or a mapping of AMQP options, or a list of them "
        f"(several broker addresses), got {type(value).__name__}",
    )


def _join_endpoints(endpoints: list[AmqpSettings], key: str) -> AmqpSettings:
    """One :class:`AmqpSettings`: the first address, the others as ``failover``.
    All must reach the same virtual host (one cluster) at distinct addresses."""
    first = endpoints[0]
    seen = {(first.host, first.port): 0}
    for index, endpoint in enumerate(endpoints[1:], start=1):
        where = f"{key}[{index}]"
        if endpoint.virtual_host != first.virtual_host:
            raise _fail(
                where,
                f"virtual host {endpoint.virtual_host!r} differs from {key}[0]'s "
                f"{first.virtual_host!r} (every address must reach the same virtual "
                "host of one RabbitMQ cluster)",
            )
        previous = seen.setdefault((endpoint.host, endpoint.port), index)
        if previous != index:
            raise _fail(where, f"names {endpoint.host}:{endpoint.port}, as {key}[{previous}] does")
    return attrs.evolve(first, failover=tuple(endpoints[1:]))


# --------------------------------------------------------------------------
# Config field converters
# --------------------------------------------------------------------------


def _convert_amqp(value: object) -> AmqpSettings:
    return parse_amqp(value, "amqp")


def _convert_partitions(value: object) -> dict[str, dict[str, int]]:
    key = "partitions"
    if value is None:
        return {}
    pairs: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list | tuple):
        pairs = []
        for index, item in enumerate(value):
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise _fail(f"{key}[{index}]", "must be a (partition_id, queues) pair")
            pairs.append((item[0], item[1]))
    else:
        raise _fail(key, f"must be a mapping or a list of pairs, got {type(value).__name__}")
    result: dict[str, dict[str, int]] = {}
    for raw_id, queues in pairs:
        try:
            partition_id = validate_partition_id(raw_id, argument=f"partition id {raw_id!r}")
        except (TypeError, ValueError) as exc:
            raise _fail(key, str(exc)) from None
        where = f"{key}.{partition_id}"
        if partition_id in result:
            raise ConfigError(f"config key {where!r} is defined more than once")
        try:
            result[partition_id] = normalise_queue_defs(queues, argument=where)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config key {exc}") from None
    return result


def _check_reference(value: str, key: str) -> str:
    if not _REF_PATTERN.match(value):
        raise _fail(key, f"must be a class or a 'module:Name' string, got {value!r}")
    return value


def _convert_callbacks(value: object) -> type[WorkerCallback] | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _check_reference(value, "callbacks")
    if isinstance(value, type) and issubclass(value, WorkerCallback):
        return value
    raise _fail(
        "callbacks", f"must be a WorkerCallback subclass or a 'module:Name' string, got {value!r}"
    )


def _convert_persister(value: object) -> type[StatePersister] | StatePersister | str:
    if value is None:
        return Stub
    if isinstance(value, str):
        return _check_reference(value, "persister")
    if isinstance(value, StatePersister):
        return value
    if isinstance(value, type) and issubclass(value, StatePersister):
        return value
    raise _fail(
        "persister",
        f"must be a StatePersister subclass or instance or a 'module:Name' string, got {value!r}",
    )


def _convert_persister_options(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail("persister_options", "must be a mapping with str keys")
    return dict(value)


def _convert_retry_levels(value: object) -> tuple[int, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _fail("retry_levels", f"must be a list of seconds, got {type(value).__name__}")
    return tuple(_int(level, f"retry_levels[{i}]", 1) for i, level in enumerate(value))


def _convert_max_buried(value: object) -> int:
    return _int(value, "max_buried_queue_size", 0)


def _convert_shutdown_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("shutdown_timeout", f"must be a number of seconds, got {value!r}")
    if math.isnan(value) or value < 0 or math.isinf(value):
        raise _fail("shutdown_timeout", f"must be a finite number of seconds >= 0, got {value}")
    return float(value)


def _convert_prefix(value: object) -> str | None:
    if value is None:
        return None
    prefix = _str(value, "system_exchange_prefix")
    if not re.fullmatch(r"[\w.:-]+", prefix):
        raise _fail(
            "system_exchange_prefix",
            f"may contain only letters, digits, '_', '-', '.', ':', got {prefix!r}",
        )
    return prefix


def _convert_node_name(value: object) -> str:
    name = _str(value, "node_name")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise _fail("node_name", f"must not contain control characters, got {name!r}")
    return name


def _convert_base(value: object) -> str:
    base = _str(value, "actor_system_base")
    if base not in ACTOR_SYSTEM_BASES:
        raise _fail(
            "actor_system_base",
            f"must be one of {', '.join(sorted(ACTOR_SYSTEM_BASES))}, got {base!r}",
        )
    return base


def _convert_admin_port(value: object) -> int:
    return _int(value, "admin_port", 1, 65535)


def _convert_allowed_modules(value: object) -> tuple[str, ...]:
    key = "allowed_job_modules"
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _fail(key, f"must be a list of module names, got {type(value).__name__}")
    result: list[str] = []
    for index, prefix in enumerate(value):
        text = _str(prefix, f"{key}[{index}]")
        if not all(part.isidentifier() for part in text.split(".")):
            raise _fail(f"{key}[{index}]", f"must be a dotted module path, got {text!r}")
        result.append(text)
    return tuple(result)


#: The shortest ``cluster_secret`` accepted, in bytes (UTF-8).
MIN_CLUSTER_SECRET_BYTES = 16
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
#: RabbitMQ's own ceiling on a message body (``max_message_size``, 128 MiB).
MAX_PAYLOAD_BYTES_LIMIT = 128 * 1024 * 1024
DEFAULT_CANCEL_MARK_TTL = 7 * 24 * 3600.0
#: Values of the ``prefetch`` key. ``"roger"``: each queue's channel holds at
#: most ``max_workers`` unacked deliveries, as Roger's (so jobs a node cannot
#: start yet stay in the queue, where other nodes can take them; each worker
#: waits a broker round trip between jobs). ``"adaptive"``: ``max_workers *
#: (1 + batch)``, where the batch (1 to 32 jobs) holds about 20 ms of work
#: judging by the queue's recent job durations: 2x ``max_workers`` for slow
#: jobs, up to 33x for very short ones (workers never wait for the broker;
#: a node may hold, for short jobs, up to 32x ``max_workers`` jobs it cannot
#: start yet).
#:
#: The default is ``"adaptive"`` because of what it costs to go Roger's way:
#: draining 10 000 no-op jobs with ``max_workers`` 10 on one node (``python -m
#: bench.run --jobs 10000 --runners roger --concurrency 10``, 2 CPUs shared,
#: four trials each) ran at 2,123-2,880 jobs/s adaptive and 354-425 jobs/s
#: with ``"roger"`` (about 6.8x fewer), the node spending 2.5-2.9 ms of CPU
#: per job instead of 0.38-0.40 ms: with one job per worker message, every
#: job pays a worker message and a broker round trip. Latency at 50 jobs/s
#: was the same (p50 about 6 ms both). Choose ``"roger"`` when jobs are long
#: and several nodes share a queue: a node then never holds a job it cannot
#: start (adaptive holds up to ``max_workers`` such jobs when jobs are slow).
PREFETCH_MODES = ("roger", "adaptive")
DEFAULT_PREFETCH = "adaptive"


def _convert_cluster_secret(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail("cluster_secret", f"must be a str or null, got {type(value).__name__}")
    if len(value.encode("utf-8")) < MIN_CLUSTER_SECRET_BYTES:
        raise _fail(
            "cluster_secret",
            f"must be at least {MIN_CLUSTER_SECRET_BYTES} bytes long "
            "(e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)",
        )
    return str.__str__(value)


def _redact_secret(value: object) -> str:
    return "None" if value is None else "'***'"


_SECRET_OPTION = re.compile(r"pass|secret|token|key|url|uri|dsn|credential", re.IGNORECASE)


def _redact_options(value: Mapping[str, Any]) -> str:
    """``persister_options`` for repr: values under names that may hold a secret
    (password, token, URL, ...) are shown as ``'***'``."""
    shown = {k: ("***" if _SECRET_OPTION.search(k) else v) for k, v in value.items()}
    return repr(shown)


def _convert_max_payload_bytes(value: object) -> int:
    return _int(value, "max_payload_bytes", 1024, MAX_PAYLOAD_BYTES_LIMIT)


def _convert_cancel_mark_ttl(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("cancel_mark_ttl", f"must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 1:
        raise _fail("cancel_mark_ttl", f"must be a finite number of seconds >= 1, got {value}")
    return float(value)


def _convert_delivery_limit(value: object) -> int:
    return _int(value, "delivery_limit", 1, 1_000_000)


def _convert_consumer_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("consumer_timeout", f"must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 2:
        raise _fail("consumer_timeout", f"must be a finite number of seconds >= 2, got {value}")
    return float(value)


#: Largest ``worker_pool_size``.
MAX_WORKER_POOL_SIZE = 10_000


def default_worker_pool_size(cpus: int | None = None) -> int:
    """The default ``worker_pool_size``: four worker processes per CPU, at
    least 8 (``cpus`` defaults to ``os.cpu_count()``)."""
    count = cpus if cpus is not None else os.cpu_count() or 1
    return max(8, 4 * count)


def _convert_worker_pool_size(value: object) -> int:
    return _int(value, "worker_pool_size", 1, MAX_WORKER_POOL_SIZE)


def _convert_prefetch(value: object) -> str:
    if not isinstance(value, str) or value not in PREFETCH_MODES:
        choices = " or ".join(map(repr, PREFETCH_MODES))
        raise _fail("prefetch", f"must be {choices}, got {value!r}")
    return value


def _default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _resolve_reference(reference: str, key: str) -> object:
    module_name, _, qualname = reference.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:
        raise _fail(key, f"cannot import module {module_name!r}: {exc}") from exc
    for attribute in qualname.split("."):
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            raise _fail(key, f"module {module_name!r} has no attribute {qualname!r}") from None
    return obj


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Config:
    """A node's configuration; immutable, validated and normalised on construction.

    Build it with keyword arguments, ``Config(**mapping)`` or
    :func:`load_config`; every field is converted (``amqp`` to
    :class:`AmqpSettings`, ``partitions`` to ``{pid: {queue_type:
    max_workers}}``, ``retry_levels``/``allowed_job_modules`` to tuples,
    ``shutdown_timeout`` to ``float``) and an invalid value raises
    :class:`ConfigError` naming its key. ``callbacks`` and ``persister`` keep
    what was given; :meth:`callbacks_class` and :meth:`make_persister` import
    and check ``"module:Name"`` references when they are called. Use
    :func:`attrs.evolve` to derive a changed copy. The dict fields are plain
    copies (picklable); treat them as read-only.
    """

    amqp: AmqpSettings = attrs.field(factory=AmqpSettings, converter=_convert_amqp)
    partitions: dict[str, dict[str, int]] = attrs.field(factory=dict, converter=_convert_partitions)
    callbacks: type[WorkerCallback] | str | None = attrs.field(
        default=None, converter=_convert_callbacks
    )
    persister: type[StatePersister] | StatePersister | str = attrs.field(
        default=Stub, converter=_convert_persister
    )
    persister_options: dict[str, Any] = attrs.field(
        factory=dict, converter=_convert_persister_options, repr=_redact_options
    )
    retry_levels: tuple[int, ...] = attrs.field(
        default=DEFAULT_RETRY_LEVELS, converter=_convert_retry_levels
    )
    max_buried_queue_size: int = attrs.field(default=100, converter=_convert_max_buried)
    shutdown_timeout: float = attrs.field(default=15.0, converter=_convert_shutdown_timeout)
    system_exchange_prefix: str | None = attrs.field(default=None, converter=_convert_prefix)
    node_name: str = attrs.field(factory=_default_node_name, converter=_convert_node_name)
    actor_system_base: str = attrs.field(default="light", converter=_convert_base)
    admin_port: int = attrs.field(default=1900, converter=_convert_admin_port)
    allowed_job_modules: tuple[str, ...] = attrs.field(
        default=(), converter=_convert_allowed_modules
    )
    cluster_secret: str | None = attrs.field(
        default=None, converter=_convert_cluster_secret, repr=_redact_secret
    )
    max_payload_bytes: int = attrs.field(
        default=DEFAULT_MAX_PAYLOAD_BYTES, converter=_convert_max_payload_bytes
    )
    cancel_mark_ttl: float = attrs.field(
        default=DEFAULT_CANCEL_MARK_TTL, converter=_convert_cancel_mark_ttl
    )
    prefetch: str = attrs.field(default=DEFAULT_PREFETCH, converter=_convert_prefetch)
    #: A job delivered this many times without an outcome (its node or
    #: Consumer died under it each time) is set aside in ``<queue>.invalid``;
    #: also the ``x-delivery-limit`` of new work queues, whose dead-letter
    #: target is ``<queue>.invalid``. At most 20 (RabbitMQ 4.x's default limit
    #: of quorum queues declared without one) keeps existing queues safe.
    delivery_limit: int = attrs.field(default=20, converter=_convert_delivery_limit)
    #: The broker's ``consumer_timeout`` in seconds (RabbitMQ's default 1800):
    #: a delivery held for half of it is handed over to a lease
    #: (``roger_actors/partition/lease.py``) so that long jobs survive it.
    consumer_timeout: float = attrs.field(default=1800.0, converter=_convert_consumer_timeout)
    #: Worker processes of the node at once, shared by its partitions' queues
    #: by weighted fair shares (``roger_actors/partition/worker_slots.py``).
    worker_pool_size: int = attrs.field(
        factory=default_worker_pool_size, converter=_convert_worker_pool_size
    )

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Return the names of all configuration keys."""
        return tuple(field.name for field in attrs.fields(cls))

    def callbacks_class(self) -> type[WorkerCallback] | None:
        """Return the configured :class:`WorkerCallback` subclass, or ``None``.

        A ``"module:Name"`` string is imported now. Raises :class:`ConfigError`
        when the module cannot be imported, the name is missing or the object
        is not a :class:`WorkerCallback` subclass.
        """
        value = self.callbacks
        if value is None or not isinstance(value, str):
            return value
        found = _resolve_reference(value, "callbacks")
        if not (isinstance(found, type) and issubclass(found, WorkerCallback)):
            raise _fail("callbacks", f"{value!r} is not a WorkerCallback subclass")
        return found

    def make_persister(self) -> StatePersister:
        """Return the configured persister instance.

        An instance is returned as it is (``persister_options`` must then be
        empty); a class, or the class a ``"module:Name"`` string names, is
        called with ``persister_options`` as keyword arguments. Raises
        :class:`ConfigError` for an unresolvable reference, a non-persister or
        a constructor that rejects the options.
        """
        value = self.persister
        if isinstance(value, StatePersister):
            if self.persister_options:
                raise _fail("persister_options", "must be empty when persister is an instance")
            return value
        found: object = _resolve_reference(value, "persister") if isinstance(value, str) else value
        if not (isinstance(found, type) and issubclass(found, StatePersister)):
            raise _fail("persister", f"{value!r} is not a StatePersister subclass")
        try:
            return found(**self.persister_options)
        except TypeError as exc:
            raise _fail("persister_options", f"rejected by {found.__qualname__}: {exc}") from exc


#: Environment variables read by :func:`load_config` -> the key they override.
ENV_OVERRIDES: dict[str, str] = {
    "ROGER_AMQP_URL": "amqp",
    "ROGER_MAX_BURIED_QUEUE_SIZE": "max_buried_queue_size",
    "ROGER_SHUTDOWN_TIMEOUT": "shutdown_timeout",
    "ROGER_SYSTEM_EXCHANGE_PREFIX": "system_exchange_prefix",
    "ROGER_NODE_NAME": "node_name",
    "ROGER_ACTOR_SYSTEM_BASE": "actor_system_base",
    "ROGER_ADMIN_PORT": "admin_port",
    "ROGER_CALLBACKS": "callbacks",
    "ROGER_PERSISTER": "persister",
    "ROGER_RETRY_LEVELS": "retry_levels",
    "ROGER_ALLOWED_JOB_MODULES": "allowed_job_modules",
    "ROGER_CLUSTER_SECRET": "cluster_secret",
    "ROGER_MAX_PAYLOAD_BYTES": "max_payload_bytes",
    "ROGER_CANCEL_MARK_TTL": "cancel_mark_ttl",
    "ROGER_PREFETCH": "prefetch",
    "ROGER_WORKER_POOL_SIZE": "worker_pool_size",
}
_INT_KEYS = frozenset(
    {"max_buried_queue_size", "admin_port", "max_payload_bytes", "worker_pool_size"}
)
_LIST_KEYS = frozenset({"retry_levels", "allowed_job_modules"})


def _env_value(variable: str, key: str, raw: str) -> object:
    try:
        if key in _INT_KEYS:
            return int(raw)
        if key in ("shutdown_timeout", "cancel_mark_ttl"):
            return float(raw)
        if key == "retry_levels":
            return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"environment variable {variable} (config key {key!r}): cannot parse {raw!r}"
        ) from None
    if key in _LIST_KEYS:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _env_overrides(env: Mapping[str, str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for variable, key in ENV_OVERRIDES.items():
        raw = env.get(variable)
        if raw is None or raw == "":
            continue
        overrides[key] = _env_value(variable, key, raw)
    return overrides


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {os.fspath(path)}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {os.fspath(path)}: {exc}") from exc
    section = document.get("roger")
    if isinstance(section, dict):
        return section
    return document


def load_config(
    source: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build a :class:`Config` from ``source``, then apply environment overrides.

    ``source`` is a :class:`Config`, a mapping of config keys, the path of a
    TOML file (its ``[roger]`` table when there is one, else the whole
    document), or ``None`` for the defaults. Environment variables listed in
    :data:`ENV_OVERRIDES` then override keys (``ROGER_AMQP_URL`` replaces
    ``amqp`` entirely; numbers are parsed, lists are comma-separated, empty
    values are ignored). ``env`` defaults to :data:`os.environ`; pass ``{}``
    to ignore the environment. Raises :class:`ConfigError` for an unknown
    key (all of them are named), an invalid value (its key is named), an
    unreadable file or a bad environment variable.
    """
    if env is None:
        env = os.environ
    if isinstance(source, Config):
        config = source
    else:
        if source is None:
            mapping: Mapping[Any, Any] = {}
        elif isinstance(source, str | os.PathLike):
            mapping = _read_toml(source)
        elif isinstance(source, Mapping):
            mapping = source
        else:
            raise ConfigError(
                "config source must be a Config, a mapping or the path of a TOML file, "
                f"got {type(source).__name__}"
            )
        known = set(Config.keys())
        unknown = sorted(str(key) for key in mapping if key not in known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(map(repr, unknown))}")
        config = Config(**{str(key): value for key, value in mapping.items()})
    overrides = _env_overrides(env)
    return attrs.evolve(config, **overrides) if overrides else config
