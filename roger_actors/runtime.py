"""The process runtime: what this process runs of roger-actors, in one object.

At most one of a node (:mod:`roger_actors.node.application` starts it, or
finds it in the user's application) and a producer, or the client a worker
process's jobs enqueue with (:func:`install_worker_client`). The node level and
the partitions' workers both use it; it imports nothing of either.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import attrs

from .cluster_auth import ClusterAuth
from .config import Config
from .enqueue import JobPublisher
from .errors import NotStartedError
from .job import set_enqueue_hook
from .transport.publisher import Publisher

if TYPE_CHECKING:
    from .cluster_client import ClusterClient
    from .node.application import Node

__all__ = ["Runtime", "install_worker_client", "process_publisher"]


@attrs.define
class Runtime:
    """What this process runs of roger-actors, in one place: at most one of a
    node (started here or found in the user's application) and a producer,
    or the client a worker process's jobs enqueue with. Every change holds
    :attr:`lock`."""

    #: The current node (:func:`roger_actors.node.application.current`), None when none runs here.
    node: Node | None = None
    #: The producer's publisher, and the configuration it started with.
    producer: Publisher | None = None
    producer_config: Config | None = None
    #: The producer's cluster client for ``System.call``/``cast``, made on first use.
    cluster_client: ClusterClient | None = None
    #: The publisher of a worker process's jobs (:func:`install_worker_client`).
    worker_publisher: Publisher | None = None
    #: Signs this process's Global requests: the cluster secret of the node,
    #: producer or worker configuration last started here.
    global_auth: ClusterAuth = attrs.field(factory=lambda: ClusterAuth(None))
    lock: threading.Lock = attrs.field(factory=threading.Lock)


#: This process's runtime.
_runtime = Runtime()


def _fresh_lock_in_child() -> None:
    # The node's actor system is started (its processes forked) while start()
    # holds _runtime.lock: without this, every actor process would inherit it locked.
    _runtime.lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_in_child)


def install_worker_client(config: Config) -> None:
    """Let jobs running in this (worker) process enqueue jobs and use ``Global``:
    a publisher is made for it on first use. No-op where a node or producer runs."""
    with _runtime.lock:
        held = (_runtime.node, _runtime.producer, _runtime.worker_publisher)
        if any(part is not None for part in held):
            return
        publisher = Publisher(
            config.amqp.urls(),
            config.amqp.connection_timeout_seconds or 10,
            config.max_payload_bytes,
            delivery_limit=config.delivery_limit,
        )
        _runtime.worker_publisher = publisher
        _runtime.global_auth = ClusterAuth(config.cluster_secret)

    set_enqueue_hook(JobPublisher(publisher, _runtime.global_auth))


def process_publisher() -> Publisher:
    """The connection this process talks to the broker over: the current node's,
    the producer's, or a worker's. Raises NotStartedError when there is none."""
    if _runtime.node is not None:
        return _runtime.node.publisher
    if _runtime.producer is not None:
        return _runtime.producer
    if _runtime.worker_publisher is not None:
        return _runtime.worker_publisher
    raise NotStartedError(
        "no node or producer started in this process: call roger_actors.start() "
        "or roger_actors.start_producer()"
    )
