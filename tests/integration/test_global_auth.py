"""Global against hostile broker traffic, on one real node and RabbitMQ: signed
requests and replies, reply queues, sealed snapshots, and cancel casts that
Global did not confirm (security review H2.2, H3, L3)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from typing import Any

import aiormq
import pytest
from pamqp import commands as spec

import roger_actors as roger
from roger_actors.cluster_auth import PURPOSE_GLOBAL_REPLY, ClusterAuth
from roger_actors.errors import GlobalTimeoutError, RogerError
from roger_actors.partition.global_client import (
    QUEUE_ARGUMENTS,
    encode_reply,
    encode_request,
    queue_name,
    request,
)
from roger_actors.partition.global_state import GlobalState
from roger_actors.persisters.rabbitmq import RabbitMQ
from roger_actors.system_protocol import encode_command, exchange_name
from roger_actors.transport.amqp import AmqpLink
from tests.partition_harness import (
    BROKER,
    NodeHarness,
    counts,
    delete_queues,
    holds_for,
    is_alive,
    wait_for,
)
from tests.procs import sigkill
from tests.roger_test_jobs2 import SpawningJob, TimedJob

pytestmark = pytest.mark.timeout(90)

SECRET = "s3cret-for-tests-" + "x" * 16


def prefix() -> str:
    """A System exchange prefix of this test alone (casts reach no other run)."""
    return f"t{uuid.uuid4().hex[:8]}."


async def _publish(exchange: str, routing_key: str, body: bytes, props: Any) -> None:
    connection = await aiormq.connect(BROKER + "?name=roger-test-forger")
    try:
        channel = await connection.channel()
        await channel.basic_publish(
            body, exchange=exchange, routing_key=routing_key, properties=props
        )
    finally:
        await connection.close()


def forge(exchange: str, routing_key: str, body: bytes, **props: Any) -> None:
    """Publish ``body`` as anyone allowed on the broker could."""
    asyncio.run(_publish(exchange, routing_key, body, spec.Basic.Properties(**props)))


def test_a_forged_cancel_cast_does_not_touch_a_running_job(h: NodeHarness) -> None:
    system_prefix = prefix()
    h.start(system_exchange_prefix=system_prefix)
    pid = h.start_partition({"default": 1})
    job = h.enqueue(TimedJob, pid, "victim", 1.5)
    [start] = h.wait_events("start", 1)

    forge(exchange_name(system_prefix), "", encode_command("cancel", [pid, job.id], "forger"))

    h.wait_tags("after_run", {"victim"})
    assert "victim" in h.tags("end") and not h.events("on_cancel")
    assert is_alive(start["pid"]), "the worker was not killed"
    assert roger.Global.is_cancelled(pid, job.id) is False
    # The forged hint is forgotten: the same id, enqueued again, runs.
    roger.Job.enqueue(roger.Job.create(TimedJob, [h.journal, "again", 0], id=job.id), pid)
    h.wait_tags("end", {"again"})
    assert not h.events("on_cancel")


def test_a_forged_cancel_cast_does_not_drop_a_queued_job(h: NodeHarness) -> None:
    system_prefix = prefix()
    h.start(system_exchange_prefix=system_prefix)
    pid = h.start_partition({"default": 1})
    h.enqueue(TimedJob, pid, "blocker", 1.0)
    h.wait_tags("start", {"blocker"})
    queued = h.enqueue(TimedJob, pid, "queued", 0)  # waits in the backlog

    forge(exchange_name(system_prefix), "", encode_command("cancel", [pid, queued.id], "forger"))

    h.wait_tags("after_run", {"blocker", "queued"})
    assert not h.events("on_cancel")


def test_an_unsigned_global_request_is_dropped_without_a_change_or_a_reply(
    h: NodeHarness,
) -> None:
    h.start(cluster_secret=SECRET, system_exchange_prefix=prefix())
    pid = h.start_partition({"default": 1})
    inbox = f"{pid}-inbox"
    asyncio.run(_declare(inbox))
    served = h.global_status(pid)["served"]

    body = encode_request("cancel_job", ["forged"])
    forge("", queue_name(pid), body, reply_to=inbox, correlation_id="c1")
    bad = {"x-roger-ts": "1", "x-roger-sig": "0" * 64}
    forge("", queue_name(pid), body, reply_to=inbox, correlation_id="c2", headers=bad)

    assert roger.Global.is_cancelled(pid, "forged") is False  # signed: answered
    status = h.global_status(pid)
    assert status["dropped"] == 2 and status["served"] > served
    assert counts(inbox) == (0, 0)
    delete_queues([inbox])


def test_with_a_secret_nodes_and_running_jobs_talk_to_global(h: NodeHarness) -> None:
    h.start(cluster_secret=SECRET, system_exchange_prefix=prefix())
    pid = h.start_partition({"default": 2})
    h.enqueue(SpawningJob, pid, "parent", pid)  # asks Global and enqueues, from its worker
    h.wait_tags("end", {"parent-child"})
    assert h.events("spawning")[0]["cancelled"] is False
    assert h.global_status(pid)["dropped"] == 0


def test_global_never_replies_into_a_queue_that_is_not_a_reply_queue(h: NodeHarness) -> None:
    h.start(system_exchange_prefix=prefix())  # no secret: a trusted vhost
    pid = h.start_partition({"default": 1})
    target = f"{pid}-target"
    asyncio.run(_declare(target))

    forge("", queue_name(pid), encode_request("queue_pause", ["default"]), reply_to=target)

    assert roger.Global.queue_get_paused(pid) == set()  # dropped, not applied
    assert counts(target) == (0, 0)
    delete_queues([target])


async def _declare(queue: str) -> None:
    connection = await aiormq.connect(BROKER + "?name=roger-test-forger")
    try:
        channel = await connection.channel()
        await channel.queue_declare(queue, auto_delete=False)
    finally:
        await connection.close()


def test_a_message_put_into_the_state_queue_never_resets_the_state(h: NodeHarness) -> None:
    h.start(
        cluster_secret=SECRET,
        system_exchange_prefix=prefix(),
        persister="roger_actors.persisters:RabbitMQ",
        persister_options={"url": BROKER},
    )
    pid = h.start_partition({"default": 1})
    roger.Global.cancel_job(pid, "victim")
    victim = h.global_status(pid)["pid"]
    # Anyone can publish there; the queue keeps one message: theirs now.
    forge(
        "",
        RabbitMQ.queue_name(pid),
        GlobalState().encode(),
        message_type="roger-global-state",  # marked like a snapshot
        app_id="roger-actors",
        delivery_mode=2,
    )

    sigkill(victim)
    # The restarted Global refuses the state it finds instead of starting
    # empty (where is_cancelled would say False).
    wait_for(lambda: _refused(pid), what="the restarted Global refusing the stored state")
    with pytest.raises(RogerError, match=r"stored Global state .* is refused"):
        roger.Global.is_cancelled(pid, "victim")
    holds_for(
        lambda: _refused(pid), 1.0, "the Global keeps refusing (it never starts empty)"
    )
    assert h.global_status(pid)["pid"] != victim


def _refused(pid: str) -> bool:
    try:
        roger.Global.is_cancelled(pid, "victim")
    except RogerError as exc:
        return "refused" in str(exc)
    return False


def test_a_reply_that_is_not_signed_is_ignored_by_the_caller() -> None:
    pid = f"treply-{uuid.uuid4().hex[:10]}"
    auth = ClusterAuth(SECRET)

    async def scenario(sign: bool) -> Any:
        responder = await aiormq.connect(BROKER + "?name=roger-test-responder")
        link = AmqpLink(BROKER, lambda _event: None, 10.0)
        try:
            channel = await responder.channel()
            await channel.queue_declare(queue_name(pid), arguments=QUEUE_ARGUMENTS)

            async def answer(message: Any) -> None:
                props = message.header.properties
                body = encode_reply(True, "forged", "", props.correlation_id)
                headers = auth.headers(PURPOSE_GLOBAL_REPLY, body) if sign else None
                await channel.basic_publish(
                    body,
                    routing_key=props.reply_to,
                    properties=spec.Basic.Properties(
                        correlation_id=props.correlation_id, headers=headers
                    ),
                )
                await channel.basic_ack(message.delivery.delivery_tag)

            await channel.basic_consume(queue_name(pid), answer)
            await link.connect()
            return await request(link, pid, "snapshot", [], 2.0, auth)
        finally:
            await link.close()
            await responder.close()

    try:
        with pytest.raises(GlobalTimeoutError):
            asyncio.run(scenario(sign=False))
        assert asyncio.run(scenario(sign=True)) == "forged"
    finally:
        delete_queues([queue_name(pid)])


def _rabbitmqctl(*args: str) -> list[list[str]]:
    """Rows of a read-only ``rabbitmqctl`` listing (header lines dropped)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_global_publishes_its_casts_on_a_channel_in_confirm_mode(h: NodeHarness) -> None:
    h.start(system_exchange_prefix=prefix())
    pid = h.start_partition({"default": 1})
    roger.Global.queue_pause(pid, "default")  # answered once the cast is confirmed
    wait_for(lambda: roger.Consumer.get_queues(pid)["default"]["paused"], what="paused")

    [channel] = [c for q, c in _rabbitmqctl("list_consumers", "queue_name", "channel_pid")
                 if q == queue_name(pid)]
    confirm = dict(_rabbitmqctl("list_channels", "pid", "confirm"))
    assert confirm[channel] == "true"
