"""Specification of node configuration: Config, AmqpSettings and load_config."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
from pathlib import Path
from typing import Any

import attrs
import pytest

import roger_actors as roger
from roger_actors.config import ENV_OVERRIDES, AmqpSettings, default_worker_pool_size, parse_amqp
from roger_actors.persisters import Filesystem, Stub


class MyCallbacks(roger.WorkerCallback):
    pass


class NotCallbacks:
    pass


def load(source: Any = None, **env: str) -> roger.Config:
    """load_config with exactly the given environment."""
    return roger.load_config(source, env=env)


# ------------------------------------------------------------------ defaults


def test_every_key_has_the_api_default() -> None:
    config = load()
    assert config.amqp.url() == "amqp://guest:guest@localhost:5672/"
    assert config.partitions == {}
    assert config.callbacks is None
    assert config.persister is Stub
    assert config.persister_options == {}
    assert config.retry_levels == (1, 3, 5, 10, 20, 35, 60, 100, 200, 400, 1000, 1800)
    assert config.max_buried_queue_size == 100
    assert config.shutdown_timeout == 15
    assert config.system_exchange_prefix is None
    assert config.node_name == f"{socket.gethostname()}-{os.getpid()}"
    assert config.actor_system_base == "light"
    assert config.admin_port == 1900
    assert config.allowed_job_modules == ()


def test_config_keys_lists_every_key() -> None:
    assert set(roger.Config.keys()) == {
        "amqp", "partitions", "callbacks", "persister", "persister_options", "retry_levels",
        "max_buried_queue_size", "shutdown_timeout", "system_exchange_prefix", "node_name",
        "actor_system_base", "admin_port", "allowed_job_modules", "cluster_secret",
        "max_payload_bytes", "cancel_mark_ttl", "prefetch", "delivery_limit", "consumer_timeout",
        "worker_pool_size",
    }


def test_worker_pool_size_defaults_to_four_per_cpu_and_is_checked() -> None:
    assert default_worker_pool_size(1) == 8
    assert default_worker_pool_size(6) == 24
    assert load().worker_pool_size == default_worker_pool_size()
    assert load({"worker_pool_size": 3}).worker_pool_size == 3
    assert load(ROGER_WORKER_POOL_SIZE="5").worker_pool_size == 5
    for bad in (0, -1, "4", 2.5, True):
        with pytest.raises(roger.ConfigError, match="worker_pool_size"):
            load({"worker_pool_size": bad})


def test_default_amqp_settings_follow_roger() -> None:
    amqp = load().amqp
    assert (amqp.host, amqp.port, amqp.username, amqp.password) == (
        "localhost", 5672, "guest", "guest"
    )
    assert (amqp.virtual_host, amqp.channel_max, amqp.frame_max) == ("/", 0, 0)
    assert amqp.heartbeat is None and amqp.connection_timeout is None
    assert amqp.ssl_options is None and not amqp.use_ssl


def test_config_is_immutable_and_picklable() -> None:
    config = load({"partitions": {"myapp": {"default": 10}}, "amqp": {"password": "s3cret"}})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.admin_port = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(config)) == config


def test_evolve_validates_again() -> None:
    config = load()
    assert attrs.evolve(config, admin_port=2000).admin_port == 2000
    with pytest.raises(roger.ConfigError, match="admin_port"):
        attrs.evolve(config, admin_port=0)


# ------------------------------------------------------------------ sources


def test_load_config_accepts_a_mapping() -> None:
    config = load({"admin_port": 1901, "node_name": "n1"})
    assert (config.admin_port, config.node_name) == (1901, "n1")


def test_load_config_returns_a_config_unchanged_without_env() -> None:
    config = roger.Config(admin_port=1999)
    assert load(config) is config


def test_unknown_keys_are_all_named() -> None:
    with pytest.raises(roger.ConfigError, match=r"unknown config key.*'colour'.*'size'"):
        load({"size": 1, "colour": "red", "admin_port": 1900})


def test_load_config_rejects_other_sources() -> None:
    with pytest.raises(roger.ConfigError, match="config source must be"):
        load(42)


def test_load_config_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "roger.toml"
    path.write_text(
        'amqp = "amqp://u:p@rabbit:5673/vh"\n'
        "retry_levels = [1, 10, 60]\n"
        'persister = "roger_actors.persisters:Filesystem"\n'
        "[persister_options]\n"
        f'path = "{tmp_path / "state"}"\n'
        "[partitions.myapp]\n"
        "default = 10\n"
        "other = 5\n"
    )
    config = load(path)
    assert config.amqp.host == "rabbit" and config.amqp.virtual_host == "vh"
    assert config.retry_levels == (1, 10, 60)
    assert config.partitions == {"myapp": {"default": 10, "other": 5}}
    persister = config.make_persister()
    assert isinstance(persister, Filesystem) and persister.path == tmp_path / "state"
    assert load(str(path)) == config


def test_load_config_uses_the_roger_table_of_a_larger_file(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        "[other_tool]\nx = 1\n[roger]\nadmin_port = 1950\n[roger.amqp]\nheartbeat = 30\n"
    )
    config = load(path)
    assert config.admin_port == 1950 and config.amqp.heartbeat == 30


def test_load_config_names_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(roger.ConfigError, match="config file not found"):
        load(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("admin_port = = 3\n")
    with pytest.raises(roger.ConfigError, match="cannot read config file"):
        load(broken)


# ---------------------------------------------------------------- env vars


def test_env_amqp_url_replaces_the_amqp_key() -> None:
    config = load({"amqp": {"host": "file-host"}}, ROGER_AMQP_URL="amqp://env-host/")
    assert config.amqp.host == "env-host"


def test_env_overrides_scalar_and_list_keys() -> None:
    config = load(
        {"admin_port": 1900, "node_name": "from-file"},
        ROGER_ADMIN_PORT="1999",
        ROGER_NODE_NAME="from-env",
        ROGER_SHUTDOWN_TIMEOUT="2.5",
        ROGER_MAX_BURIED_QUEUE_SIZE="7",
        ROGER_SYSTEM_EXCHANGE_PREFIX="test",
        ROGER_ACTOR_SYSTEM_BASE="simpleSystemBase",
        ROGER_CALLBACKS="tests.unit.test_config:MyCallbacks",
        ROGER_PERSISTER="roger_actors.persisters:Stub",
        ROGER_RETRY_LEVELS="1, 2,3",
        ROGER_ALLOWED_JOB_MODULES="myapp.jobs, other",
    )
    assert config.admin_port == 1999
    assert config.node_name == "from-env"
    assert config.shutdown_timeout == 2.5
    assert config.max_buried_queue_size == 7
    assert config.system_exchange_prefix == "test"
    assert config.actor_system_base == "simpleSystemBase"
    assert config.callbacks_class() is MyCallbacks
    assert isinstance(config.make_persister(), Stub)
    assert config.retry_levels == (1, 2, 3)
    assert config.allowed_job_modules == ("myapp.jobs", "other")


def test_env_overrides_apply_to_a_config_object_too() -> None:
    assert load(roger.Config(admin_port=1901), ROGER_ADMIN_PORT="1902").admin_port == 1902


def test_empty_env_values_are_ignored() -> None:
    assert load({"node_name": "kept"}, ROGER_NODE_NAME="").node_name == "kept"


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROGER_ADMIN_PORT", "1888")
    assert roger.load_config({}).admin_port == 1888


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ROGER_ADMIN_PORT", "many", "ROGER_ADMIN_PORT"),
        ("ROGER_SHUTDOWN_TIMEOUT", "soon", "ROGER_SHUTDOWN_TIMEOUT"),
        ("ROGER_RETRY_LEVELS", "1,x", "ROGER_RETRY_LEVELS"),
        ("ROGER_ADMIN_PORT", "70000", "admin_port"),
        ("ROGER_AMQP_URL", "http://x/", "amqp"),
    ],
)
def test_a_bad_env_value_names_the_variable_or_key(variable: str, value: str, message: str) -> None:
    with pytest.raises(roger.ConfigError, match=message):
        load({}, **{variable: value})


def test_env_overrides_cover_documented_variables() -> None:
    assert ENV_OVERRIDES["ROGER_AMQP_URL"] == "amqp"
    assert all(name.startswith("ROGER_") for name in ENV_OVERRIDES)


# -------------------------------------------------------------------- amqp


def test_amqp_dict_accepts_every_reference_option() -> None:
    amqp = load(
        {
            "amqp": {
                "host": "rabbit",
                "port": 5673,
                "username": "user",
                "password": "pw",
                "virtual_host": "vh",
                "channel_max": 10,
                "frame_max": 131072,
                "heartbeat": 15,
                "connection_timeout": 2500,
                "ssl_options": None,
                "client_properties": {"product": "app"},
            }
        }
    ).amqp
    assert amqp == AmqpSettings(
        host="rabbit", port=5673, username="user", password="pw", virtual_host="vh",
        channel_max=10, frame_max=131072, heartbeat=15, connection_timeout=2500,
        ssl_options=None, client_properties={"product": "app"},
    )
    assert amqp.connection_timeout_seconds == 2.5
    assert amqp.url() == "amqp://user:pw@rabbit:5673/vh?heartbeat=15&timeout=3"


def test_amqp_url_percent_encodes_credentials_and_vhost() -> None:
    amqp = parse_amqp({"username": "us:er@x", "password": "p@ss/w%rd", "virtual_host": "a/b c"})
    assert amqp.url() == "amqp://us%3Aer%40x:p%40ss%2Fw%25rd@localhost:5672/a%2Fb%20c"
    assert parse_amqp(amqp.url()) == amqp


def test_ssl_options_switch_to_amqps_and_port_5671() -> None:
    amqp = parse_amqp(
        {
            "host": "rabbit",
            "ssl_options": {
                "cacertfile": "/ca.pem",
                "certfile": "/cert.pem",
                "keyfile": "/key.pem",
                "verify": "verify_none",
            },
        }
    )
    assert amqp.use_ssl and amqp.port == 5671
    assert amqp.url() == (
        "amqps://guest:guest@rabbit:5671/?cafile=%2Fca.pem&certfile=%2Fcert.pem"
        "&keyfile=%2Fkey.pem&no_verify_ssl=1"
    )
    assert parse_amqp({"ssl_options": True}).url() == "amqps://guest:guest@localhost:5671/"


def test_aiormq_reads_the_url_as_intended() -> None:
    aiormq = pytest.importorskip("aiormq")
    amqp = parse_amqp(
        {
            "host": "rabbit",
            "username": "us:er@x",
            "password": "p@ss/w%rd",
            "virtual_host": "a/b c",
            "heartbeat": 7,
            "ssl_options": {"cafile": "/ca.pem", "verify": "verify_none"},
        }
    )

    async def parse() -> Any:
        return aiormq.Connection(amqp.url())

    connection = asyncio.run(parse())
    assert connection.url.scheme == "amqps"
    assert (connection.url.user, connection.url.password) == ("us:er@x", "p@ss/w%rd")
    assert connection.vhost == "a/b c"
    assert connection.heartbeat_timeout == 7
    assert connection.ssl_certs.cafile == "/ca.pem"
    assert connection.ssl_certs.verify is False
    default = asyncio.run(_connection(aiormq, load().amqp.url()))
    assert default.vhost == "/"


async def _connection(aiormq: Any, url: str) -> Any:
    return aiormq.Connection(url)


def test_amqp_url_strings_are_parsed_into_settings() -> None:
    amqp = parse_amqp(
        "amqps://u%40x:p%2F@[::1]/v%2Fh?heartbeat=5&connection_timeout=1500&cacertfile=/ca"
        "&name=node1"
    )
    assert (amqp.host, amqp.port, amqp.username, amqp.password) == ("::1", 5671, "u@x", "p/")
    assert amqp.virtual_host == "v/h"
    assert amqp.heartbeat == 5 and amqp.connection_timeout == 1500
    assert amqp.ssl_options == {"cafile": "/ca"}
    assert amqp.query == {"name": "node1"}
    assert amqp.url().startswith("amqps://u%40x:p%2F@[::1]:5671/v%2Fh?")
    assert parse_amqp("amqp://h/?timeout=2").connection_timeout == 2000


def test_redacted_url_and_repr_hide_the_password() -> None:
    config = load({"amqp": "amqp://user:topsecret@h/"})
    assert "topsecret" not in config.amqp.redacted_url()
    assert "topsecret" not in repr(config)
    assert "topsecret" in config.amqp.url()


def test_client_properties_accept_pairs_and_erlang_triples() -> None:
    amqp = parse_amqp({"client_properties": [("a", "x"), ("b", "longstr", "y"), ["c", 3]]})
    assert amqp.client_properties == {"a": "x", "b": "y", "c": 3}


@pytest.mark.parametrize(
    ("amqp", "message"),
    [
        ({"hostname": "x"}, "unknown AMQP option.*'hostname'"),
        ({"port": 0}, r"amqp\.port"),
        ({"port": "5672"}, r"amqp\.port"),
        ({"heartbeat": -1}, r"amqp\.heartbeat"),
        ({"connection_timeout": 0}, r"amqp\.connection_timeout"),
        ({"virtual_host": ""}, r"amqp\.virtual_host"),
        ({"ssl_options": {"ciphers": "x"}}, "unknown ssl option 'ciphers'"),
        ({"ssl_options": {"verify": "maybe"}}, r"ssl_options\.verify"),
        ({"client_properties": {"a": [1]}}, r"client_properties\.a"),
        ("http://host/", "scheme must be amqp or amqps"),
        ("amqp://host/?colour=red", "unknown AMQP URL parameter 'colour'"),
        ("amqp://host/?cafile=/ca", "ssl parameters need an amqps"),
        ("amqp://host:notaport/", "invalid AMQP URL"),
        ("amqp:///vh", "URL has no host"),
        ("amqp://host/?heartbeat=soon", "URL parameter heartbeat"),
        (42, "must be an AMQP URL or a mapping"),
    ],
)
def test_bad_amqp_settings_name_the_option(amqp: Any, message: str) -> None:
    with pytest.raises(roger.ConfigError, match=message):
        load({"amqp": amqp})


def test_connection_timeout_may_be_infinity() -> None:
    assert parse_amqp({"connection_timeout": "infinity"}).connection_timeout is None


# ------------------------------------------------- several broker addresses


def test_amqp_list_of_urls_keeps_each_address_settings() -> None:
    amqp = load(
        {"amqp": ["amqp://a:pa@rabbit1:5701/vh", "amqps://b:pb@rabbit2/vh?heartbeat=5"]}
    ).amqp
    assert (amqp.host, amqp.port, amqp.username, amqp.password) == ("rabbit1", 5701, "a", "pa")
    assert amqp.url() == "amqp://a:pa@rabbit1:5701/vh"  # the first address, as before
    assert amqp.urls() == [
        "amqp://a:pa@rabbit1:5701/vh",
        "amqps://b:pb@rabbit2:5671/vh?heartbeat=5",
    ]
    assert amqp.addresses == ["rabbit1:5701", "rabbit2:5671"]
    assert [e.use_ssl for e in amqp.endpoints()] == [False, True]
    assert all(e.failover == () for e in amqp.endpoints())


def test_amqp_comma_separated_urls_in_a_string_or_the_environment() -> None:
    urls = ["amqp://u:p@rabbit1:5701/", "amqp://u:p@rabbit2:5702/", "amqp://u:p@rabbit3:5703/"]
    assert load({"amqp": ", ".join(urls)}).amqp.urls() == urls
    from_env = load({"amqp": "amqp://file-host/"}, ROGER_AMQP_URL=",".join(urls)).amqp
    assert from_env.urls() == urls
    # A comma inside a password does not split the URL.
    one = load({}, ROGER_AMQP_URL="amqp://u:a,b@rabbit1/").amqp
    assert one.password == "a,b" and one.failover == ()


def test_amqp_mapping_addresses_share_the_other_options() -> None:
    amqp = parse_amqp(
        {
            "addresses": ["rabbit1", "rabbit2:5673", "[::1]:5674", {"host": "rabbit4"}, "::2"],
            "port": 5999,
            "username": "user",
            "password": "pw",
            "virtual_host": "vh",
            "ssl_options": {"cafile": "/ca.pem"},
            "heartbeat": 7,
        }
    )
    assert amqp.addresses == [
        "rabbit1:5999", "rabbit2:5673", "[::1]:5674", "rabbit4:5999", "[::2]:5999",
    ]
    for endpoint in amqp.endpoints():
        assert (endpoint.username, endpoint.password, endpoint.virtual_host) == ("user", "pw", "vh")
        assert endpoint.ssl_options == {"cafile": "/ca.pem"} and endpoint.heartbeat == 7
    assert amqp.urls()[1] == "amqps://user:pw@rabbit2:5673/vh?heartbeat=7&cafile=%2Fca.pem"
    # The default port follows TLS, as for "host".
    assert parse_amqp({"addresses": ["a", "b"], "ssl_options": True}).addresses == [
        "a:5671", "b:5671",
    ]


def test_toml_forms_of_several_addresses(tmp_path: Path) -> None:
    listed = tmp_path / "listed.toml"
    listed.write_text('amqp = ["amqp://rabbit1/", "amqp://rabbit2/"]\n')
    assert load(listed).amqp.addresses == ["rabbit1:5672", "rabbit2:5672"]
    table = tmp_path / "table.toml"
    table.write_text('[roger.amqp]\naddresses = ["rabbit1:5701", "rabbit2:5702"]\npassword = "x"\n')
    assert load(table).amqp.addresses == ["rabbit1:5701", "rabbit2:5702"]


def test_several_addresses_pickle_redact_and_take_the_cli_password() -> None:
    amqp = parse_amqp(["amqp://u:secret1@rabbit1/", "amqp://u:secret2@rabbit2/"])
    assert pickle.loads(pickle.dumps(amqp)) == amqp
    shown = repr(amqp) + " ".join(amqp.redacted_urls())
    assert "secret1" not in shown and "secret2" not in shown
    assert amqp.redacted_urls() == ["amqp://u:***@rabbit1:5672/", "amqp://u:***@rabbit2:5672/"]
    changed = amqp.with_password("new")
    assert [e.password for e in changed.endpoints()] == ["new", "new"]


@pytest.mark.parametrize(
    ("amqp", "message"),
    [
        ([], r"'amqp': must name at least one broker"),
        (["amqp://rabbit1/", "http://rabbit2/"], r"'amqp\[1\]': URL scheme must be amqp"),
        (["amqp://rabbit1/", 5], r"'amqp\[1\]': must be an AMQP URL or a mapping"),
        (["amqp://rabbit1/", {"hostname": "x"}], r"'amqp\[1\]': unknown AMQP option"),
        (["amqp://rabbit1/", {"addresses": ["x"]}], r"'amqp\[1\]': 'addresses' belongs"),
        (["amqp://rabbit1/a", "amqp://rabbit2/b"], r"'amqp\[1\]': virtual host 'b' differs"),
        (["amqp://rabbit1/", "amqp://u:p@rabbit1:5672/"], r"'amqp\[1\]': names rabbit1:5672"),
        ("amqp://rabbit1/,amqp://rabbit2:99999/", r"'amqp\[1\]': invalid AMQP URL"),
        ({"host": "a", "addresses": ["b"]}, r"'amqp': give either 'host'.*or 'addresses'"),
        ({"addresses": []}, r"'amqp.addresses': must name at least one"),
        ({"addresses": "rabbit1,rabbit2"}, r"'amqp.addresses': must be a list"),
        ({"addresses": ["rabbit1", "rabbit1:5672"]}, r"'amqp.addresses\[1\]': names rabbit1"),
        ({"addresses": ["rabbit1:http"]}, r"'amqp.addresses\[0\] port': must be an integer"),
        ({"addresses": ["rabbit1:0"]}, r"'amqp.addresses\[0\] port': must be >= 1"),
        ({"addresses": ["[::1"]}, r"'amqp.addresses\[0\]': must be '\[address\]'"),
        ({"addresses": ["u:p@rabbit1"]}, r"'amqp.addresses\[0\]': is not a 'host'"),
        ({"addresses": [{"host": "a", "user": "x"}]}, r"'amqp.addresses\[0\]': an address"),
        ({"addresses": [{"host": "a", "port": 0}]}, r"'amqp.addresses\[0\].port'"),
        ({"addresses": [""]}, r"'amqp.addresses\[0\]': must be a non-empty str"),
    ],
)
def test_bad_broker_addresses_name_the_entry(amqp: Any, message: str) -> None:
    with pytest.raises(roger.ConfigError, match=message):
        load({"amqp": amqp})


def test_bad_addresses_in_the_environment_name_the_entry_without_the_password() -> None:
    with pytest.raises(roger.ConfigError, match=r"'amqp\[1\]'") as caught:
        load({}, ROGER_AMQP_URL="amqp://u:hunter22@rabbit1/,amqp://u:hunter22@rabbit2:x/")
    assert "hunter22" not in str(caught.value)


# -------------------------------------------------------------- partitions


def test_partitions_accept_mappings_and_pairs() -> None:
    expected = {"myapp": {"default": 10, "other": 5}, "idle": {}}
    assert load({"partitions": expected}).partitions == expected
    pairs = [("myapp", [("default", 10), ("other", 5)]), ("idle", [])]
    assert load({"partitions": pairs}).partitions == expected


@pytest.mark.parametrize(
    ("partitions", "message"),
    [
        ({"myapp": {"default": -1}}, "partitions.myapp.default"),
        ({"myapp": {"default": "10"}}, "partitions.myapp.default"),
        ({"myapp": {"bad-type": 1}}, "partitions.myapp queue type 'bad-type'"),
        ({"": {"default": 1}}, "partitions"),
        ({3: {"default": 1}}, "partitions"),
        ([("myapp", {}), ("myapp", {})], "partitions.myapp' is defined more than once"),
        ([("myapp",)], r"partitions\[0\]"),
        ("myapp", "partitions"),
    ],
)
def test_bad_partitions_name_the_key(partitions: Any, message: str) -> None:
    with pytest.raises(roger.ConfigError, match=message):
        load({"partitions": partitions})


# ------------------------------------------------- callbacks and persister


def test_callbacks_accept_a_class_or_a_reference_resolved_lazily() -> None:
    assert load({"callbacks": MyCallbacks}).callbacks_class() is MyCallbacks
    lazy = load({"callbacks": "tests.unit.test_config:MyCallbacks"})
    assert lazy.callbacks == "tests.unit.test_config:MyCallbacks"
    assert lazy.callbacks_class() is MyCallbacks
    assert load().callbacks_class() is None


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_such_module_xyz:Callbacks", "cannot import module 'no_such_module_xyz'"),
        ("tests.unit.test_config:Missing", "has no attribute 'Missing'"),
        ("tests.unit.test_config:NotCallbacks", "is not a WorkerCallback subclass"),
    ],
)
def test_unresolvable_callbacks_fail_when_resolved(reference: str, message: str) -> None:
    config = load({"callbacks": reference})
    with pytest.raises(roger.ConfigError, match=message):
        config.callbacks_class()


@pytest.mark.parametrize("value", ["no colon", "a:", ":B", NotCallbacks, 3])
def test_malformed_callbacks_fail_at_load(value: Any) -> None:
    with pytest.raises(roger.ConfigError, match="'callbacks'"):
        load({"callbacks": value})


def test_persister_accepts_a_class_an_instance_or_a_reference(tmp_path: Path) -> None:
    assert isinstance(load().make_persister(), Stub)
    instance = Filesystem(path=tmp_path)
    assert load({"persister": instance}).make_persister() is instance
    made = load(
        {"persister": Filesystem, "persister_options": {"path": str(tmp_path)}}
    ).make_persister()
    assert isinstance(made, Filesystem) and made.path == tmp_path


def test_bad_persisters_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(roger.ConfigError, match="'persister'"):
        load({"persister": NotCallbacks})
    with pytest.raises(roger.ConfigError, match="is not a StatePersister subclass"):
        load({"persister": "tests.unit.test_config:NotCallbacks"}).make_persister()
    with pytest.raises(roger.ConfigError, match="'persister_options'"):
        load({"persister": Filesystem}).make_persister()
    with pytest.raises(roger.ConfigError, match="'persister_options'"):
        load(
            {"persister": Filesystem(path=tmp_path), "persister_options": {"path": "x"}}
        ).make_persister()


# ---------------------------------------------------------- scalar keys


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retry_levels", [1, 0]),
        ("retry_levels", "1,2"),
        ("retry_levels", [1.5]),
        ("max_buried_queue_size", -1),
        ("shutdown_timeout", -1),
        ("shutdown_timeout", "15"),
        ("shutdown_timeout", float("inf")),
        ("system_exchange_prefix", ""),
        ("system_exchange_prefix", "has space"),
        ("node_name", ""),
        ("node_name", "a\nb"),
        ("actor_system_base", "threadedBase"),
        ("admin_port", 70000),
        ("admin_port", True),
        ("allowed_job_modules", "myapp"),
        ("allowed_job_modules", ["my-app"]),
    ],
)
def test_bad_scalar_values_name_their_key(key: str, value: Any) -> None:
    with pytest.raises(roger.ConfigError, match=key):
        load({key: value})


def test_scalar_keys_accept_valid_values() -> None:
    config = load(
        {
            "retry_levels": [1, 10, 60],
            "max_buried_queue_size": 0,
            "shutdown_timeout": 0,
            "system_exchange_prefix": "test-1",
            "actor_system_base": "simpleSystemBase",
            "allowed_job_modules": ["myapp.jobs"],
        }
    )
    assert config.retry_levels == (1, 10, 60)
    assert config.max_buried_queue_size == 0
    assert config.shutdown_timeout == 0.0
    assert config.system_exchange_prefix == "test-1"
    assert config.allowed_job_modules == ("myapp.jobs",)
    assert load({"retry_levels": []}).retry_levels == ()


def test_a_config_given_to_start_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from roger_actors.node import application as node

    monkeypatch.setenv("ROGER_AMQP_URL", "amqp://other:other@elsewhere:5672/")
    built = roger.load_config({"amqp": "amqp://guest:guest@127.0.0.1:5672/"}, env={})
    assert node._final_config(built) is built
    assert node._final_config({}).amqp.url().startswith("amqp://other:other@elsewhere")


# ---------------------------------------------------------------- security keys


def test_cluster_secret_is_never_shown_in_repr() -> None:
    config = roger.Config(cluster_secret="x" * 40, persister_options={"url": "amqp://u:S3cr3t@h/"})
    assert "x" * 40 not in repr(config)
    assert "S3cr3t" not in repr(config)


def test_cluster_secret_shorter_than_16_bytes_is_refused_without_echoing_it() -> None:
    with pytest.raises(roger.ConfigError, match="cluster_secret") as info:
        roger.Config(cluster_secret="short-secret")
    assert "short-secret" not in str(info.value)


def test_cluster_secret_and_payload_limit_come_from_the_environment() -> None:
    config = load({}, ROGER_CLUSTER_SECRET="y" * 20, ROGER_MAX_PAYLOAD_BYTES="4096")
    assert config.cluster_secret == "y" * 20
    assert config.max_payload_bytes == 4096


@pytest.mark.parametrize("value", [0, 1023, 2**27 + 1, "1024", True])
def test_max_payload_bytes_out_of_range_is_refused(value: object) -> None:
    with pytest.raises(roger.ConfigError, match="max_payload_bytes"):
        roger.Config(max_payload_bytes=value)


@pytest.mark.parametrize(
    "url", ["amqp://guest:Pa55/word@127.0.0.1:5672/", "amqp://guest:S3cr3tPW#x@h/"]
)
def test_an_unparsable_amqp_url_never_echoes_the_password(url: str) -> None:
    with pytest.raises(roger.ConfigError) as info:
        roger.Config(amqp=url)
    assert "Pa55" not in str(info.value) and "S3cr3tPW" not in str(info.value)


def test_a_memory_url_names_the_embedded_broker() -> None:
    assert parse_amqp("memory://").embedded == "default"
    assert parse_amqp("memory://tenant-a").embedded == "tenant-a"
    assert parse_amqp("MEMORY://x").embedded == "x"
    assert parse_amqp("amqp://guest:guest@localhost:5672/").embedded is None
    for bad, says in [
        ("memory://a/b", "broker name only"),
        ("memory://u:p@x", "broker name only"),
        ("memory://x?heartbeat=1", "broker name only"),
        ("memory://a b", "letters, digits"),
    ]:
        with pytest.raises(roger.ConfigError, match=says):
            parse_amqp(bad)


def test_a_producer_cannot_reach_an_embedded_broker_no_node_here_serves() -> None:
    with pytest.raises(roger.ConfigError, match="embedded broker of a node"):
        roger.start_producer({"amqp": "memory://nobody-serves-this"})
