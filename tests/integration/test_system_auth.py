"""Hostile and careless input on the System exchange, with and without a
cluster secret: the helpers that bound and check it, huge integers that
used to end the node tree, replies only to server-named queues, and the
Consumers catching up on casts the System missed while disconnected.

Forged messages against a node with a secret are in ``test_system_forged.py``.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

import roger_actors as roger
from roger_actors.cluster_auth import (
    PURPOSE_SYSTEM,
    PURPOSE_SYSTEM_REPLY,
    AuthError,
    ClusterAuth,
)
from roger_actors.job import bounded_repr
from roger_actors.node.system import connection_url
from roger_actors.system_protocol import (
    MAX_COMMAND_BYTES,
    CommandError,
    check_message,
    decode_command,
    encode_command,
    valid_node_name,
    valid_reply_to,
)
from tests.cluster_harness import Cluster
from tests.partition_harness import close_connections_named, counts, drain, wait_for
from tests.roger_test_jobs2 import TimedJob
from tests.system_tap import (
    declare_queue,
    delete_queue,
    publish,
    replies_in,
    server_named_queue,
    signed,
)

pytestmark = pytest.mark.timeout(90)

SECRET = "test-cluster-secret-" + uuid.uuid4().hex
HUGE = 1 << 20000

# ---------------------------------------------------------------- pure parts


def test_bounded_repr_bounds_huge_integers_long_strings_and_nesting() -> None:
    assert bounded_repr(HUGE) == "<int of 20001 bits>"
    assert bounded_repr([HUGE, -HUGE]) == "[<int of 20001 bits>, <int of 20001 bits>]"
    assert bounded_repr(12345) == "12345"
    assert len(bounded_repr("x" * 100_000)) <= 200
    deep: Any = [1]
    for _ in range(1000):
        deep = [deep]
    assert len(bounded_repr(deep)) <= 200
    assert len(bounded_repr({i: "v" * 50 for i in range(1000)}, limit=50)) <= 50

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert bounded_repr(Hostile()).startswith("<Hostile")


@pytest.mark.parametrize(
    ("reply_to", "valid"),
    [
        ("amq.gen-JzTY20BRgKO-HjmUJj0wLg", True),
        ("amq.rabbitmq.reply-to.g1hkABFyYWJiaXRAbG9jYWxob3N0AAAKJQAAAABj", True),
        ("amq.rabbitmq.reply-to", True),
        ("roger-state.p1", False),
        ("roger-global.p1", False),
        ("p1-default", False),
        ("", False),
        ("amq.gen", False),
        ("amq.gen-" + "x" * 300, False),
        ("amq.gen-\n", False),
        (5, False),
        (None, False),
    ],
)
def test_only_server_named_queues_and_direct_reply_to_may_get_replies(
    reply_to: Any, valid: bool
) -> None:
    assert valid_reply_to(reply_to) is valid


def test_a_from_that_is_not_a_node_name_is_refused() -> None:
    assert valid_node_name("node-1@host")
    for bad in ("", "a\nb", "a\x7fb", "n" * 256, 3):
        assert not valid_node_name(bad)
    body = cbor2.dumps(
        {"v": 1, "command": "heartbeat", "args": [], "from": "x" * 10_000,
         "call_id": None, "reply_to": None}
    )
    with pytest.raises(ValueError, match="'from' is not a node name"):
        decode_command(body)


def test_check_message_refuses_unsigned_wrongly_signed_stale_and_oversized() -> None:
    auth = ClusterAuth(SECRET)
    body = encode_command("ping", [], "n")
    check_message(auth, "command", body, auth.headers(PURPOSE_SYSTEM, body))
    check_message(auth, "reply", body, auth.headers(PURPOSE_SYSTEM_REPLY, body))
    for headers in (
        None,
        {},
        ClusterAuth("another-secret-0123456789").headers(PURPOSE_SYSTEM, body),
        auth.headers(PURPOSE_SYSTEM_REPLY, body),  # a reply's signature on a command
        auth.headers(PURPOSE_SYSTEM, body, now=0),
    ):
        with pytest.raises(AuthError):
            check_message(auth, "command", body, headers)
    with pytest.raises(AuthError):
        check_message(auth, "command", body + b"x", auth.headers(PURPOSE_SYSTEM, body))
    big = b"\0" * (MAX_COMMAND_BYTES + 1)
    with pytest.raises(ValueError, match="over the"):
        check_message(ClusterAuth(None), "command", big, None)
    # Without a secret only the size is checked.
    check_message(ClusterAuth(None), "command", body, None)


def test_the_system_connection_is_named_after_the_url() -> None:
    named = connection_url("amqp://u:p@h:5672/?name=app&heartbeat=5", "n1")
    assert "name=app-system" in named and "heartbeat=5" in named
    assert "name=roger-system+n1" in connection_url("amqp://u:p@h:5672/", "n1")


# ---------------------------------------------------------------- one node


@pytest.fixture(params=[None, SECRET], ids=["no-secret", "secret"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A started one-node cluster, without and with a secret."""
    cluster = Cluster(tmp_path, request.param)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def test_node_info_with_a_huge_integer_kills_nothing(node: Cluster) -> None:
    """Sent by someone who may (a buggy operator tool): six casts used to end
    the node's tree (ApplySystem crashed formatting its label)."""
    apply_system = node.node._child_address("apply_system")
    for _ in range(6):
        roger.System.cast("node_info", HUGE)
    [(name, error)] = roger.System.call("node_info", HUGE)
    assert name == node.node_name and isinstance(error, CommandError)
    assert "node_info expects [what, *params]" in error.message
    [(_, error)] = roger.System.call("partition_stop", HUGE, [HUGE])
    assert isinstance(error, CommandError)
    assert roger.System.call("ping") == [(node.node_name, "pong")]
    assert roger.System.call("node_info", "partitions") == [
        (node.node_name, {"running": {}, "waiting": {}})
    ]
    assert node.node._child_address("apply_system") == apply_system, "ApplySystem restarted"


def test_a_call_whose_reply_to_names_an_application_queue_is_not_run(node: Cluster) -> None:
    """The reply would have overwritten a Global's snapshot queue; such a call is
    dropped (counted), even when rightly signed. A server-named queue gets its answer."""
    named = f"roger-state.{node.harness.partition_id('victim')}"
    declare_queue(named)
    mine = server_named_queue()
    try:
        before = node.stats()["bad_reply_to"]
        for command, args in (("ping", []), ("node_info", ["partitions"])):
            body = encode_command(command, args, "tool", uuid.uuid4().hex, named)
            publish(body, exchange=node.exchange, headers=signed(node.secret, body))
        wait_for(lambda: node.stats()["bad_reply_to"] == before + 2, what="both calls dropped")

        body = encode_command("ping", [], "tool", "good-call", mine)
        publish(body, exchange=node.exchange, headers=signed(node.secret, body))
        [(reply, headers, _)] = wait_for(lambda: drain(mine), what="the pong")
        ClusterAuth(node.secret).check(PURPOSE_SYSTEM_REPLY, reply, headers)
        assert (node.secret is None) == ("x-roger-sig" not in headers)
        assert counts(named) == (0, 0), "a reply was put into the named queue"
        assert replies_in(mine) == []
    finally:
        delete_queue(mine)


# ---------------------------------------------------------------- resync


def _connection_pids(name: str) -> set[str]:
    """Broker pids of the connections whose client named itself ``name``."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    return {
        line.split("\t", 1)[0]
        for line in out.splitlines()
        if f'{{"connection_name","{name}"}}' in line
    }


def test_consumers_catch_up_on_casts_missed_while_the_system_was_disconnected(
    cluster: Cluster,
) -> None:
    cluster.start()
    h = cluster.harness
    pid = h.start_partition({"default": 1})
    job = h.enqueue(TimedJob, pid, "victim", 60)
    h.wait_tags("start", {"victim"})
    others = _connection_pids(h.connection_name)  # the Consumer's, ApplySystem's...
    assert others

    assert close_connections_named(f"{h.connection_name}-system") == 1
    wait_for(lambda: not roger.System.is_connected(), what="the System disconnected")
    roger.Global.cancel_job(pid, job.id)
    roger.Global.queue_pause(pid, "default")
    # Global published both casts before answering: the System had no queue then.
    assert not roger.System.is_connected(), "the System reconnected before the casts"

    h.wait_tags("on_cancel", {"victim"})
    wait_for(lambda: roger.Consumer.get_queues(pid)["default"]["paused"], what="queue paused")
    assert "victim" not in h.tags("end")
    assert roger.System.is_connected()
    assert _connection_pids(h.connection_name) == others, "another connection dropped"
