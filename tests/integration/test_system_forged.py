"""Forged System messages against a node with a cluster secret.

Someone on the broker without the secret (a producer's credentials are
enough to write the System exchange) sends commands, heartbeats, ``leave``
and replies unsigned, signed with another secret, with a garbled signature,
or replayed (stale). Each must be dropped, counted (the System's
``unauthenticated`` counter, the ClusterClient's ``dropped``) and change
nothing; the same messages rightly signed keep working. One node (with one
partition) and one operator's ClusterClient serve every test of the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

import roger_actors as roger
from roger_actors.cluster_auth import PURPOSE_SYSTEM, PURPOSE_SYSTEM_REPLY
from roger_actors.cluster_client import ClusterClient
from roger_actors.system_protocol import encode_command, encode_reply
from tests.cluster_harness import ROOT, Cluster
from tests.partition_harness import BROKER, counts, holds_for, wait_for
from tests.roger_test_jobs2 import TimedJob
from tests.system_tap import (
    Tap,
    delete_queue,
    forged_headers,
    publish,
    replies_in,
    server_named_queue,
    signed,
    stale_headers,
)

pytestmark = pytest.mark.timeout(90)

SECRET = "forged-test-secret-" + uuid.uuid4().hex


@dataclass
class Secured:
    cluster: Cluster
    pid: str
    client: ClusterClient
    tap: Tap

    @property
    def me(self) -> str:
        return self.cluster.node_name

    def refused(self) -> int:
        """The node's count of unauthenticated messages."""
        return self.cluster.stats()["unauthenticated"]

    def forge(self, body: bytes, *, routing_key: str = "", purpose: str = PURPOSE_SYSTEM) -> int:
        """Publish ``body`` with every kind of bad signature (to the exchange,
        or to the queue ``routing_key``); returns how many were sent."""
        kinds = [*forged_headers(body, purpose), stale_headers(SECRET, body, purpose)]
        exchange = "" if routing_key else self.cluster.exchange
        for headers in kinds:
            publish(body, exchange=exchange, routing_key=routing_key, headers=headers)
        return len(kinds)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    cluster = Cluster(tmp_path_factory.mktemp("forged"), SECRET)
    client: ClusterClient | None = None
    tap: Tap | None = None
    try:
        cluster.start()
        pid = cluster.harness.start_partition({"default": 1})
        client = ClusterClient(
            {
                "amqp": f"{BROKER}?name=roger-test-forged-client",
                "system_exchange_prefix": cluster.prefix,
                "cluster_secret": SECRET,
            }
        )
        assert client.members() == [cluster.node_name]
        tap = Tap(cluster.exchange)
        yield Secured(cluster, pid, client, tap)
    finally:
        if client is not None:
            client.close()
        if tap is not None:
            tap.close()
        cluster.close()


# ---------------------------------------------------------------- commands


def test_a_forged_cancel_does_not_touch_a_running_job(secured: Secured) -> None:
    h = secured.cluster.harness
    job = h.enqueue(TimedJob, secured.pid, "survivor", 2.0)
    h.wait_tags("start", {"survivor"})
    before = secured.refused()

    sent = secured.forge(encode_command("cancel", [secured.pid, job.id], "attacker"))

    wait_for(lambda: secured.refused() == before + sent, what="the forged cancels refused")
    h.wait_tags("after_run", {"survivor"})
    assert "survivor" in h.tags("end")
    assert "survivor" not in h.tags("on_cancel")


def test_a_forged_partition_stop_does_nothing(secured: Secured) -> None:
    before = secured.refused()

    sent = secured.forge(encode_command("partition_stop", [secured.pid, None], "attacker"))

    wait_for(lambda: secured.refused() == before + sent, what="the forged stops refused")
    # A signed call goes the same way (System, then ApplySystem) after them.
    [(node, running)] = secured.client.call("node_info", ["running_partition_ids"])
    assert (node, running) == (secured.me, [secured.pid])
    # A stop that got through takes a moment (the Consumer and its workers end).
    holds_for(
        lambda: secured.pid in roger.Partition.partitions()["running"]
        and roger.Consumer.is_alive(secured.pid),
        2.0,
        "the partition running",
    )


def test_a_forged_node_info_call_gets_no_reply(secured: Secured) -> None:
    queue = server_named_queue()  # a reply_to the node would answer
    try:
        before = secured.refused()
        forged = encode_command("node_info", ["running_jobs"], "attacker", "forged", queue)

        sent = secured.forge(forged)

        wait_for(lambda: secured.refused() == before + sent, what="the forged calls refused")
        legit = encode_command("node_info", ["running_jobs"], "tool", "legit", queue)
        publish(legit, exchange=secured.cluster.exchange, headers=signed(SECRET, legit))
        [reply] = wait_for(lambda: replies_in(queue), what="the signed call's reply")
        assert (reply.call_id, reply.from_node, reply.ok) == ("legit", secured.me, True)
        holds_for(lambda: counts(queue) == (0, 0), 1.0, "no other reply")
    finally:
        delete_queue(queue)


def test_forged_heartbeats_and_leave_do_not_change_membership(secured: Secured) -> None:
    before, client_before = secured.refused(), secured.client.dropped
    me = secured.me

    sent = secured.forge(encode_command("heartbeat", ["ghost-hb"], "ghost-hb"))
    sent += secured.forge(encode_command("leave", [me], me))

    wait_for(lambda: secured.refused() == before + sent, what="the node refused them")
    wait_for(lambda: secured.client.dropped == client_before + sent, what="the client too")
    assert secured.cluster.members() == [me]
    assert secured.client.members() == [me]


# ---------------------------------------------------------------- replies


def _answer_as_ghost(secured: Secured, ghost: str, caller: str, sent: list[int]) -> None:
    """As an eavesdropper: wait for ``caller``'s ping and reply to it as ``ghost``
    with every bad signature (and the signature of a command, not a reply)."""
    call = secured.tap.wait_command(
        lambda c: c.command == "ping" and c.from_node == caller and c.is_call,
        what=f"the ping of {caller}",
    )
    assert call.call_id is not None and call.reply_to is not None
    reply = encode_reply(call.call_id, ghost, True, "pong")
    count = secured.forge(reply, routing_key=call.reply_to, purpose=PURPOSE_SYSTEM_REPLY)
    publish(reply, routing_key=call.reply_to, headers=signed(SECRET, reply, PURPOSE_SYSTEM))
    sent.append(count + 1)


def _ghost_member(secured: Secured, ghost: str) -> None:
    """Make ``ghost`` a member (a rightly signed heartbeat): calls wait for its reply."""
    beat = encode_command("heartbeat", [ghost], ghost)
    publish(beat, exchange=secured.cluster.exchange, headers=signed(SECRET, beat))
    wait_for(lambda: ghost in secured.cluster.members(), what=f"{ghost} a member of the node")
    wait_for(lambda: ghost in secured.client.members(), what=f"{ghost} a member for the client")


def _forget_pings(secured: Secured) -> None:
    secured.tap.seen = [c for c in secured.tap.seen if c.command != "ping"]


def test_a_forged_reply_from_a_fake_node_is_not_counted_by_the_node(secured: Secured) -> None:
    _forget_pings(secured)
    _ghost_member(secured, "ghost-node")
    before = secured.refused()
    sent: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        attacker = pool.submit(_answer_as_ghost, secured, "ghost-node", secured.me, sent)

        replies = roger.System.call("ping", timeout=3)

        attacker.result(30)
    assert replies == [(secured.me, "pong")]
    assert secured.refused() == before + sent[0]


def test_a_forged_reply_from_a_fake_node_is_not_counted_by_a_client(secured: Secured) -> None:
    _forget_pings(secured)
    _ghost_member(secured, "ghost-client")
    client = secured.client
    before = client.dropped
    sent: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        attacker = pool.submit(_answer_as_ghost, secured, "ghost-client", client.name, sent)

        replies = client.call("ping", timeout=3)

        attacker.result(30)
    assert replies == [(secured.me, "pong")]
    assert client.dropped == before + sent[0]


# ---------------------------------------------------------------- the CLI


def _cli_ping(secured: Secured, secret: str | None) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ROGER_")},
        "PYTHONPATH": str(ROOT),
        "ROGER_AMQP_URL": f"{BROKER}?name=roger-test-forged-cli",
        "ROGER_SYSTEM_EXCHANGE_PREFIX": secured.cluster.prefix,
    }
    if secret is not None:
        env["ROGER_CLUSTER_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "roger_actors", "ping", "--timeout", "2"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )


def test_the_cli_signs_with_the_secret_from_its_environment(secured: Secured) -> None:
    result = _cli_ping(secured, SECRET)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [secured.me, "pong"]

    before = secured.refused()
    result = _cli_ping(secured, None)  # its ping is unsigned: refused
    assert result.returncode == 4 and "no node answered" in result.stderr
    assert "Traceback" not in result.stderr
    wait_for(lambda: secured.refused() >= before + 1, what="the unsigned ping refused")
