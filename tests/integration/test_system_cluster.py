"""Roger's System across the cluster: the wire format, and real nodes on the broker.

Every node test uses its own ``system_exchange_prefix`` so that tests (and
other users of the shared broker) never see each other's nodes. The second
node of the two-node tests is a separate process (``tests.cluster_harness``),
killed in teardown. The clusters have a cluster secret (``SIGNED_CLUSTER``):
the signed path is the one tested; ``test_system_auth.py`` runs a node
without one too.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import cbor2
import pytest

import roger_actors as roger
from roger_actors.cluster_auth import PURPOSE_SYSTEM_REPLY
from roger_actors.node.system import HEARTBEAT_TIMEOUT
from roger_actors.system_protocol import (
    CommandError,
    SystemCommand,
    SystemReply,
    decode_command,
    decode_message,
    decode_reply,
    encode_command,
    encode_reply,
    exchange_name,
)
from tests.cluster_harness import Cluster
from tests.partition_harness import wait_for
from tests.system_tap import Tap, publish, signed

pytestmark = pytest.mark.timeout(120)

#: The ``cluster`` fixture gives its nodes a cluster secret.
SIGNED_CLUSTER = True

# ---------------------------------------------------------------- wire format


def test_exchange_name_with_and_without_prefix() -> None:
    assert exchange_name(None) == "system"
    assert exchange_name("") == "system"
    assert exchange_name("app1") == "app1-system"  # as Roger names it


def test_a_call_command_round_trips() -> None:
    body = encode_command("cancel", ["p1", "job-1"], "node-a", "cid", "amq.gen-x")
    command = decode_command(body)
    assert command == SystemCommand("cancel", ("p1", "job-1"), "node-a", "cid", "amq.gen-x")
    assert command.is_call
    assert decode_message(body) == command


def test_a_cast_command_round_trips() -> None:
    command = decode_command(encode_command("ping", [], "node-a"))
    assert command == SystemCommand("ping", (), "node-a", None, None)
    assert not command.is_call


def test_replies_round_trip() -> None:
    assert decode_reply(encode_reply("cid", "node-b", True, {"x": [1, 2]})) == SystemReply(
        "cid", "node-b", True, {"x": [1, 2]}
    )
    body = encode_reply("cid", "node-b", False, "boom")
    assert decode_message(body) == SystemReply("cid", "node-b", False, "boom")


def test_a_reply_value_cbor_cannot_encode_becomes_an_error_reply() -> None:
    reply = decode_reply(encode_reply("cid", "node-b", True, object()))
    assert not reply.ok
    assert "cannot be encoded" in reply.value


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("", [], "n"), {}, ValueError, "command must be a non-empty string"),
        (("ping", [], ""), {}, ValueError, "from_node"),
        (("ping", [], "n"), {"call_id": "c"}, ValueError, "together"),
        (("ping", [object()], "n"), {}, TypeError, "not CBOR-encodable"),
    ],
)
def test_encode_command_refuses_malformed_commands(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        encode_command(*args, **kwargs)


def _command(**changes: Any) -> bytes:
    document: dict[str, Any] = {
        "v": 1,
        "command": "ping",
        "args": [],
        "from": "n",
        "call_id": None,
        "reply_to": None,
    }
    for key, value in changes.items():
        if value is _DROP:
            del document[key]
        else:
            document[key] = value
    return cbor2.dumps(document)


_DROP = object()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("text", "must be bytes"),
        (b"", "empty"),
        (b"\xff\x00", "not valid CBOR"),
        (cbor2.dumps({"v": 1}) + b"\x00", "trailing bytes"),
        (cbor2.dumps([1, 2]), "must be a CBOR map, got list"),
        (_command(v=_DROP), "no version"),
        (_command(v=2), "unknown system message version 2"),
        (_command(v="1"), "unknown system message version '1'"),
        (_command(v=True), "unknown system message version True"),
        (_command(command=_DROP), "no 'command'"),
        (_command(command=3), "'command' must be str"),
        (_command(command=""), "'command' must not be empty"),
        (_command(args=_DROP), "no 'args'"),
        (_command(args="x"), "'args' must be list"),
        (_command(**{"from": _DROP}), "no 'from'"),
        (_command(**{"from": None}), "'from' must be str"),
        (_command(call_id=_DROP), "no 'call_id'"),
        (_command(call_id=5, reply_to="q"), "'call_id' must be str or null"),
        (_command(call_id="c"), "only one of 'call_id' and 'reply_to'"),
        (_command(args=[datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)]), "CBOR tag"),
        (_command(args=[cbor2.CBORTag(4242, 1)]), "CBOR tag 4242"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_decode_refuses_malformed_commands(body: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_command(body)


def test_decode_message_refuses_a_map_of_neither_kind() -> None:
    with pytest.raises(ValueError, match="neither a command"):
        decode_message(cbor2.dumps({"v": 1, "x": 1}))


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ({"v": 1, "from": "n", "ok": True, "value": 1}, "no 'call_id'"),
        ({"v": 1, "call_id": "c", "ok": True, "value": 1}, "no 'from'"),
        ({"v": 1, "call_id": "c", "from": "n", "ok": 1, "value": 1}, "'ok' must be bool"),
        ({"v": 1, "call_id": "c", "from": "n", "ok": True}, "no 'value'"),
        ({"v": 1, "call_id": "c", "from": "n", "ok": False, "value": 3}, "'value' must be str"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_decode_refuses_malformed_replies(document: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_reply(cbor2.dumps(document))


def test_decode_refuses_deep_nesting() -> None:
    nested: Any = []
    for _ in range(200):
        nested = [nested]
    with pytest.raises(ValueError, match="not valid CBOR"):
        decode_command(_command(args=nested))


def test_decode_command_refuses_a_reply_and_decode_reply_a_command() -> None:
    with pytest.raises(ValueError, match="no 'command'"):
        decode_command(encode_reply("c", "n", True, 1))
    with pytest.raises(ValueError, match="no 'ok'"):
        decode_reply(encode_command("ping", [], "n"))


# ---------------------------------------------------------------- broker helpers


def publish_to_exchange(exchange: str, bodies: list[bytes], secret: str | None) -> None:
    """Publish each body as is, signed with ``secret``, to the fanout ``exchange``
    (with publisher confirms)."""
    for body in bodies:
        publish(body, exchange=exchange, headers=signed(secret, body))


# ---------------------------------------------------------------- one node



def test_a_call_on_one_node_gets_its_pong(cluster: Cluster) -> None:
    cluster.start()
    assert roger.System.call("ping") == [(cluster.node_name, "pong")]
    assert roger.System.is_connected()
    assert roger.System.is_active()


def test_a_cast_returns_at_once(cluster: Cluster) -> None:
    cluster.start()
    before = cluster.stats()["commands"]
    started = time.monotonic()
    assert roger.System.cast("ping") is None
    assert time.monotonic() - started < 2.0
    wait_for(lambda: cluster.stats()["commands"] > before, what="the cast received")


def test_an_unknown_command_gets_an_error_entry_and_the_system_lives_on(
    cluster: Cluster,
) -> None:
    cluster.start()
    address = cluster.system_address()
    [(name, value)] = roger.System.call("no_such_command", 1, "two")
    assert name == cluster.node_name
    assert isinstance(value, CommandError)
    assert "unknown system command 'no_such_command'" in value.message
    roger.System.cast("no_such_command")
    wait_for(lambda: cluster.stats()["unknown_command"] == 2, what="the cast seen")
    assert roger.System.call("ping") == [(cluster.node_name, "pong")]
    assert cluster.system_address() == address, "the System was restarted"


def test_partition_commands_are_answered_ok_and_checked(cluster: Cluster) -> None:
    cluster.start()
    assert roger.System.call("cancel", "tp-x", "job-1") == [(cluster.node_name, "ok")]
    assert roger.System.call("queue_pause", "tp-x", "default") == [(cluster.node_name, "ok")]
    assert roger.System.call("queue_resume", "tp-x", "default") == [(cluster.node_name, "ok")]
    [(_, value)] = roger.System.call("cancel", "tp-x")
    assert isinstance(value, CommandError)
    assert "cancel expects [partition_id, job_id]" in value.message


def test_malformed_messages_are_dropped_without_harm(cluster: Cluster) -> None:
    cluster.start()
    address = cluster.system_address()
    bodies = [
        b"\xff not cbor",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps({"v": 99, "command": "ping"}),
        cbor2.dumps({"v": 1, "command": "ping"}),
        b"",
    ]
    publish_to_exchange(cluster.exchange, bodies, cluster.secret)
    wait_for(lambda: cluster.stats()["malformed"] == len(bodies), what="malformed messages seen")
    assert roger.System.call("ping") == [(cluster.node_name, "pong")]
    assert cluster.system_address() == address, "the System was restarted"


def test_a_reply_on_the_exchange_is_malformed_and_one_to_an_unknown_call_dropped(
    cluster: Cluster,
) -> None:
    cluster.start()
    address = cluster.system_address()
    reply = encode_reply("no-such-call", "ghost", True, "pong")
    publish_to_exchange(cluster.exchange, [reply], cluster.secret)
    wait_for(lambda: cluster.stats()["malformed"] == 1, what="the reply on the exchange seen")

    tap = Tap(cluster.exchange)  # learn the node's reply queue from one of its calls
    try:
        roger.System.call("ping")
        call = tap.wait_command(lambda c: c.is_call, what="the node's call")
    finally:
        tap.close()
    assert call.reply_to is not None
    headers = signed(cluster.secret, reply, PURPOSE_SYSTEM_REPLY)
    publish(reply, routing_key=call.reply_to, headers=headers)
    wait_for(lambda: cluster.stats()["unknown_reply"] == 1, what="the stray reply seen")
    assert roger.System.call("ping") == [(cluster.node_name, "pong")]
    assert cluster.system_address() == address, "the System was restarted"


def test_set_inactive(cluster: Cluster) -> None:
    cluster.start()
    roger.System.set_inactive()
    assert not roger.System.is_active()


def test_a_bad_timeout_is_refused(cluster: Cluster) -> None:
    cluster.start()
    with pytest.raises(ValueError, match="timeout"):
        roger.System.call("ping", timeout=0)


def test_the_facade_needs_a_node() -> None:
    with pytest.raises(roger.NotStartedError):
        roger.System.call("ping")


# ---------------------------------------------------------------- two nodes


def test_a_call_gets_one_reply_per_node(cluster: Cluster) -> None:
    cluster.start()
    other = f"n2-{cluster.harness.tag}"
    cluster.start_other(other)
    replies = roger.System.call("ping")
    assert replies == sorted([(cluster.node_name, "pong"), (other, "pong")])


def test_three_nodes_each_answer_a_call_once(cluster: Cluster) -> None:
    cluster.start()
    others = [f"n{i}-{cluster.harness.tag}" for i in (2, 3)]
    for name in others:
        cluster.start_other(name)
    replies = roger.System.call("ping")
    assert replies == sorted((name, "pong") for name in [cluster.node_name, *others])


def test_a_killed_node_drops_out_within_the_heartbeat_timeout(cluster: Cluster) -> None:
    cluster.start()
    other = f"n2-{cluster.harness.tag}"
    node2 = cluster.start_other(other)
    assert len(roger.System.call("ping")) == 2

    killed = time.monotonic()
    node2.kill()
    # A call made now does not wait out its timeout for the dead node: it
    # returns once the node is declared dead.
    replies = roger.System.call("ping", timeout=60)
    elapsed = time.monotonic() - killed
    assert replies == [(cluster.node_name, "pong")]
    assert elapsed < HEARTBEAT_TIMEOUT + 3, f"took {elapsed:.1f} s"
    assert cluster.members() == [cluster.node_name]


def test_a_node_that_stops_cleanly_leaves_at_once(cluster: Cluster) -> None:
    cluster.start()
    other = f"n2-{cluster.harness.tag}"
    proc = cluster.start_other(other).proc
    assert proc.stdin is not None
    proc.stdin.close()  # the node stops (roger.stop) and says "leave"
    left = time.monotonic()
    wait_for(lambda: cluster.members() == [cluster.node_name], 30, what="node left")
    assert time.monotonic() - left < HEARTBEAT_TIMEOUT, "it timed out instead of leaving"
    proc.wait(timeout=30)


def test_a_queue_pause_cast_reaches_the_partition_consumer(cluster: Cluster) -> None:
    cluster.start()
    pid = cluster.harness.start_partition({"default": 1})
    # Once the Consumer consumes, it has Global's paused set: a cast that came
    # before would be replaced by it (Global's state is the truth).
    wait_for(
        lambda: roger.Consumer.get_queues(pid)["default"]["consumer_count"] == 1,
        what="the queue consumed",
    )
    roger.System.cast("queue_pause", pid, "default")
    wait_for(
        lambda: roger.Consumer.get_queues(pid)["default"]["paused"],
        what="queue paused through the System",
    )
    roger.System.cast("queue_resume", pid, "default")
    wait_for(
        lambda: not roger.Consumer.get_queues(pid)["default"]["paused"],
        what="queue resumed through the System",
    )
