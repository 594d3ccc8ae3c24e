"""An AMQP 0-9-1 server in front of a transport backend: the embedded broker on a socket.

:class:`WireServer` listens on a TCP port (loopback by default) and speaks
the subset of AMQP 0-9-1 that aiormq and Roger use. Each client connection
gets a backend :class:`~roger_actors.transport.base.Connection` of its own
(from the ``connect_backend`` factory, typically the in-memory broker), and
each client channel a backend channel: the server only translates frames to
calls on the interface and results back to frames. So every process of a
node (actors, workers, producers on the host) reaches one in-memory broker
with the AMQP client it already has.

What it does, as RabbitMQ does:

- handshake with PLAIN authentication (``ACCESS_REFUSED``, 403, closes a
  connection with other credentials), one virtual host ``/``;
- channels: open, close (both ways), a channel error closes only its channel
  with the backend's reply code (404 ``NOT_FOUND``, 405 ``RESOURCE_LOCKED``,
  406 ``PRECONDITION_FAILED``, 403 ``ACCESS_REFUSED``), frames for a closing
  channel are dropped until the client's ``close-ok``;
- ``queue.declare/delete/purge/bind/unbind``, ``exchange.declare/delete``,
  ``basic.qos/consume/cancel/get/ack/nack/reject``, ``confirm.select``;
  ``nowait`` honoured where AMQP has it;
- ``basic.publish`` with content split in frames; a ``mandatory`` message
  that reached no queue comes back as ``basic.return`` (312 ``NO_ROUTE``)
  before its confirm; in confirm mode each publish is acked (or nacked when
  the backend refused it) in order;
- heartbeats both ways: the server sends one every half interval and closes
  a connection that sent nothing for two intervals;
- a client that goes away (socket closed, no ``connection.close``) gets its
  backend connection closed, which returns its unacked deliveries to their
  queues; a backend connection that closes by itself (the embedded broker
  dropping every connection) closes the client's with 320
  ``CONNECTION_FORCED``; a consumer the backend cancels (its queue deleted
  or expired) is cancelled on the client with ``basic.cancel``.

Not supported (a client asking gets a connection error 540
``NOT_IMPLEMENTED``): ``channel.flow``, transactions, ``basic.recover``,
exchange-to-exchange bindings. It never prints the credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pamqp import commands, frame, header, heartbeat
from pamqp.base import Frame
from pamqp.body import ContentBody

from .base import (
    Channel,
    ChannelClosed,
    ChannelError,
    Connection,
    ConnectionLost,
    Message,
    Nacked,
    TransportError,
    Unroutable,
)
from .tables import from_spec, to_spec

__all__ = ["WireServer"]

log = logging.getLogger(__name__)

FRAME_MAX = 131_072
CHANNEL_MAX = 2_047
HEARTBEAT = 60
_FRAME_OVERHEAD = 8  # type (1), channel (2), size (4), end (1)
_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
#: The reason RabbitMQ gives when it closes connections as it shuts down.
_SHUTDOWN = "broker forced connection closure with reason 'shutdown'"

_NOT_IMPLEMENTED = 540
_FRAME_ERROR = 501
_CHANNEL_ERROR = 504
_UNEXPECTED_FRAME = 505
_ACCESS_REFUSED = 403
_CONNECTION_FORCED = 320
_NO_ROUTE = 312

BackendFactory = Callable[[], Awaitable[Connection]]


class _ConnectionError(Exception):
    """A connection-level error: the server closes the connection with it."""

    def __init__(self, code: int, text: str, method: Frame | None = None) -> None:
        super().__init__(text)
        self.code, self.text, self.method = code, text, method


@dataclass
class _ChannelState:
    """One client channel: its backend channel and what is half received."""

    backend: Channel
    confirming: bool = False
    published: int = 0  # publishes since confirm.select (their confirm tags)
    closing: bool = False  # the server sent channel.close, awaits close-ok
    publish: commands.Basic.Publish | None = None
    content: header.ContentHeader | None = None
    parts: list[bytes] = field(default_factory=list)
    received: int = 0


class WireServer:
    """An AMQP 0-9-1 listener whose connections are served by ``connect_backend``.

    ``username``/``password`` are the only credentials accepted (``password``
    defaults to a fresh random token: read it from :attr:`url`, never log
    it). ``host`` defaults to loopback: listening beyond it is a choice the
    caller makes on purpose. ``port`` 0 takes a free port.
    """

    def __init__(
        self,
        connect_backend: BackendFactory,
        *,
        username: str = "roger",
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat: int = HEARTBEAT,
    ) -> None:
        if not isinstance(username, str) or not username:
            raise ValueError("username must be a non-empty str")
        if password is not None and (not isinstance(password, str) or not password):
            raise ValueError("password must be a non-empty str or None")
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int) or heartbeat < 0:
            raise ValueError(f"heartbeat must be an int >= 0, got {heartbeat!r}")
        self._connect_backend = connect_backend
        self._username = username
        self._password = password if password is not None else secrets.token_urlsafe(24)
        self._host, self._port = host, port
        self._heartbeat = heartbeat
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[_Client] = set()

    async def start(self) -> None:
        """Listen; returns once the socket is bound (:attr:`port` is then known).
        OSError when the address cannot be bound."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Client(self), self._host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    @property
    def port(self) -> int:
        """The port listened on (after :meth:`start`)."""
        return self._port

    @property
    def username(self) -> str:
        """The one user name accepted."""
        return self._username

    @property
    def password(self) -> str:
        """The one password accepted: pass it on, never print it."""
        return self._password

    @property
    def url(self) -> str:
        """``amqp://user:password@host:port/``: the address clients connect to.
        It holds the password: pass it on, never print it."""
        return f"amqp://{self._username}:{self._password}@{self._host}:{self._port}/"

    async def close(self) -> None:
        """Stop listening and close every client connection (as the broker
        dropping them: clients see ``CONNECTION_FORCED``); their backend
        connections are closed, so their unacked deliveries go back."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.drop_clients(_SHUTDOWN)

    async def drop_clients(self, reason: str, name: str | None = None) -> int:
        """Close client connections from the broker's side (clients see
        ``CONNECTION_FORCED`` with ``reason``; their backend connections are
        closed, so their unacked deliveries go back): every one, or those
        whose client named itself ``name`` (its ``connection_name`` client
        property). Returns how many."""
        clients = [c for c in self._clients if name is None or c.name == name]
        for client in clients:
            await client.force_close(reason)
        return len(clients)

    def _authenticate(self, mechanism: str, response: str) -> bool:
        if mechanism != "PLAIN":
            return False
        _, _, rest = response.partition("\0")
        user, _, password = rest.partition("\0")
        return secrets.compare_digest(user.encode(), self._username.encode()) and (
            secrets.compare_digest(password.encode(), self._password.encode())
        )


class _Client(asyncio.Protocol):
    """One client connection: frames in, backend calls, frames out."""

    def __init__(self, server: WireServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._inbox: asyncio.Queue[tuple[int, Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._backend: Connection | None = None
        self._channels: dict[int, _ChannelState] = {}
        self._frame_max = FRAME_MAX
        self._heartbeat = 0
        self._heard = 0.0
        self._stage = "header"  # header -> start -> start-ok -> tune-ok -> open -> open-ok
        self._closed = False
        #: The ``connection_name`` the client gave in its client properties.
        self.name: str | None = None

    # ---------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._clients.add(self)
        self._heard = asyncio.get_running_loop().time()
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self._heard = asyncio.get_running_loop().time()
        buffer = self._buffer
        buffer.extend(data)
        while not self._closed:
            if self._stage == "header":
                if len(buffer) < 8:
                    return
                chunk = bytes(buffer[:8])
                if chunk != _PROTOCOL_HEADER:
                    # As the spec says: answer with the protocol this server speaks, and close.
                    assert self._transport is not None
                    self._transport.write(_PROTOCOL_HEADER)
                    self._shut()
                    return
            else:
                if len(buffer) < 7:
                    return
                _, _, size = struct.unpack_from(">BHI", buffer)
                if size > self._frame_max:
                    self._reject(f"FRAME_ERROR - a frame of {size} bytes exceeds frame_max")
                    return
                if len(buffer) < 8 + size:
                    return
                chunk = bytes(buffer[: 8 + size])
            del buffer[: len(chunk)]
            try:
                _, channel, value = frame.unmarshal(chunk)
            except Exception as exc:
                self._reject(f"FRAME_ERROR - {exc}")
                return
            if self._stage == "header":
                self._stage = "start"  # one protocol header only
            if not isinstance(value, heartbeat.Heartbeat):
                self._inbox.put_nowait((channel, value))

    def _reject(self, text: str) -> None:
        """A frame that cannot be read: the connection ends with a frame error."""
        self._buffer.clear()
        self._inbox.put_nowait((0, _ConnectionError(_FRAME_ERROR, text)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server._clients.discard(self)
        self._inbox.put_nowait(None)

    # ---------------------------------------------------------------- serving

    async def _serve(self) -> None:
        try:
            while True:
                item = await self._inbox.get()
                if item is None:
                    return
                number, value = item
                if isinstance(value, _ConnectionError):
                    raise value
                await self._handle(number, value)
        except _ConnectionError as exc:
            self._close_connection(exc.code, exc.text, exc.method)
        except Exception:
            log.exception("embedded broker: a client connection failed")
            self._close_connection(541, "INTERNAL_ERROR")
        finally:
            await self._drop_backend()

    async def _handle(self, number: int, value: Any) -> None:
        if self._stage != "open-ok":
            await self._handshake(number, value)
            return
        if number == 0:
            await self._connection_method(value)
            return
        if number not in self._channels:
            if isinstance(value, commands.Channel.Open):
                await self._open_channel(number)
                return
            if isinstance(value, (commands.Channel.CloseOk, commands.Channel.Close)):
                if isinstance(value, commands.Channel.Close):
                    self._send(number, commands.Channel.CloseOk())
                return
            raise _ConnectionError(
                _CHANNEL_ERROR, f"CHANNEL_ERROR - expected 'channel.open' on {number}"
            )
        state = self._channels[number]
        if state.closing:
            if isinstance(value, commands.Channel.CloseOk):
                del self._channels[number]
            elif isinstance(value, commands.Channel.Close):
                self._send(number, commands.Channel.CloseOk())
            return
        try:
            await self._channel_frame(number, state, value)
        except ChannelError as exc:
            code = exc.reply_code or 406
            self._fail_channel(number, state, code, str(exc) or exc.reply_text, value)
        except ChannelClosed as exc:
            self._fail_channel(number, state, 406, f"PRECONDITION_FAILED - {exc}", value)
        except ConnectionLost:
            self._force(_SHUTDOWN)

    async def _handshake(self, number: int, value: Any) -> None:
        if self._stage == "start":
            if not isinstance(value, header.ProtocolHeader):
                raise _ConnectionError(_FRAME_ERROR, "FRAME_ERROR - expected the protocol header")
            self._send(
                0,
                commands.Connection.Start(
                    server_properties={
                        "product": "roger-actors embedded broker",
                        "capabilities": {
                            "publisher_confirms": True,
                            "basic.nack": True,
                            "consumer_cancel_notify": True,
                            "per_consumer_qos": True,
                            "direct_reply_to": True,
                            "authentication_failure_close": True,
                            "exchange_exchange_bindings": False,
                            "connection.blocked": False,
                        },
                    }
                ),
            )
            self._stage = "start-ok"
        elif self._stage == "start-ok" and isinstance(value, commands.Connection.StartOk):
            properties = value.client_properties or {}
            name = properties.get("connection_name")
            self.name = name if isinstance(name, str) else None
            if not self._server._authenticate(value.mechanism, value.response):
                raise _ConnectionError(
                    _ACCESS_REFUSED,
                    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
                    value,
                )
            self._send(
                0,
                commands.Connection.Tune(
                    channel_max=CHANNEL_MAX, frame_max=FRAME_MAX, heartbeat=self._server._heartbeat
                ),
            )
            self._stage = "tune-ok"
        elif self._stage == "tune-ok" and isinstance(value, commands.Connection.TuneOk):
            if value.frame_max:
                self._frame_max = min(FRAME_MAX, max(4096, value.frame_max))
            self._heartbeat = value.heartbeat
            self._stage = "open"
        elif self._stage == "open" and isinstance(value, commands.Connection.Open):
            backend = await self._server._connect_backend()
            self._backend = backend
            backend.add_close_callback(self._backend_closed)
            self._send(0, commands.Connection.OpenOk())
            self._stage = "open-ok"
            if self._heartbeat:
                self._heartbeat_task = asyncio.get_running_loop().create_task(self._beat())
        else:
            raise _ConnectionError(_UNEXPECTED_FRAME, f"UNEXPECTED_FRAME - {value.name}", value)

    async def _connection_method(self, value: Any) -> None:
        if isinstance(value, commands.Connection.Close):
            await self._drop_backend()
            self._send(0, commands.Connection.CloseOk())
            self._shut()
        elif isinstance(value, commands.Connection.CloseOk):
            self._shut()
        else:
            name = getattr(value, "name", type(value).__name__)
            raise _ConnectionError(_NOT_IMPLEMENTED, f"NOT_IMPLEMENTED - {name}", value)

    async def _open_channel(self, number: int) -> None:
        assert self._backend is not None
        if not 0 < number <= CHANNEL_MAX:
            raise _ConnectionError(_CHANNEL_ERROR, f"CHANNEL_ERROR - channel {number} out of range")
        backend = await self._backend.channel(publisher_confirms=True)
        # Sent after the deliveries already made for that consumer (tasks not
        # yet run), as the broker's cancel must follow them.
        loop = asyncio.get_running_loop()

        def cancelled(tag: str) -> None:
            loop.call_soon(self._send, number, commands.Basic.Cancel(tag))

        backend.add_cancel_callback(cancelled)
        self._channels[number] = _ChannelState(backend)
        self._send(number, commands.Channel.OpenOk())

    # ---------------------------------------------------------------- channel frames

    async def _channel_frame(self, number: int, state: _ChannelState, value: Any) -> None:
        if state.publish is not None:
            await self._content(number, state, value)
            return
        ch = state.backend
        c = commands
        if isinstance(value, c.Basic.Publish):
            state.publish, state.content, state.parts, state.received = value, None, [], 0
        elif isinstance(value, c.Basic.Ack):
            await ch.ack(value.delivery_tag, multiple=value.multiple)
        elif isinstance(value, c.Basic.Nack):
            await ch.nack(value.delivery_tag, multiple=value.multiple, requeue=value.requeue)
        elif isinstance(value, c.Basic.Reject):
            await ch.reject(value.delivery_tag or 0, requeue=value.requeue)
        elif isinstance(value, c.Basic.Consume):
            tag = await ch.consume(
                value.queue,
                self._deliverer(number),
                no_ack=value.no_ack,
                exclusive=value.exclusive,
                consumer_tag=value.consumer_tag or None,
                arguments=value.arguments or None,
            )
            if not value.nowait:
                self._send(number, c.Basic.ConsumeOk(consumer_tag=tag))
        elif isinstance(value, c.Basic.Cancel):
            await ch.cancel(value.consumer_tag or "")
            # Deliveries the backend made before the cancel run as tasks not
            # yet started: let them write their frames first. After cancel-ok
            # a client drops a delivery for that tag (aiormq does, silently),
            # which would strand it unacked on the channel.
            await asyncio.sleep(0)
            if not value.nowait:
                self._send(number, c.Basic.CancelOk(consumer_tag=value.consumer_tag))
        elif isinstance(value, c.Basic.Get):
            message = await ch.get(value.queue, no_ack=value.no_ack)
            if message is None:
                self._send(number, c.Basic.GetEmpty())
            else:
                method = c.Basic.GetOk(
                    delivery_tag=message.delivery_tag,
                    redelivered=message.redelivered,
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                    message_count=message.message_count or 0,
                )
                self._send_content(number, method, message)
        elif isinstance(value, c.Basic.Qos):
            await ch.qos(value.prefetch_count)
            self._send(number, c.Basic.QosOk())
        elif isinstance(value, c.Queue.Declare):
            ok = await ch.queue_declare(
                value.queue,
                passive=value.passive,
                durable=value.durable,
                exclusive=value.exclusive,
                auto_delete=value.auto_delete,
                arguments=value.arguments or None,
            )
            if not value.nowait:
                self._send(
                    number,
                    c.Queue.DeclareOk(
                        queue=ok.queue,
                        message_count=ok.message_count,
                        consumer_count=ok.consumer_count,
                    ),
                )
        elif isinstance(value, c.Queue.Delete):
            count = await ch.queue_delete(
                value.queue, if_unused=value.if_unused, if_empty=value.if_empty
            )
            if not value.nowait:
                self._send(number, c.Queue.DeleteOk(message_count=count))
        elif isinstance(value, c.Queue.Purge):
            count = await ch.queue_purge(value.queue)
            if not value.nowait:
                self._send(number, c.Queue.PurgeOk(message_count=count))
        elif isinstance(value, c.Queue.Bind):
            await ch.queue_bind(
                value.queue, value.exchange, value.routing_key, value.arguments or None
            )
            if not value.nowait:
                self._send(number, c.Queue.BindOk())
        elif isinstance(value, c.Queue.Unbind):
            await ch.queue_unbind(
                value.queue, value.exchange, value.routing_key, value.arguments or None
            )
            self._send(number, c.Queue.UnbindOk())
        elif isinstance(value, c.Exchange.Declare):
            await ch.exchange_declare(
                value.exchange,
                value.exchange_type,  # type: ignore[arg-type]
                passive=value.passive,
                durable=value.durable,
                auto_delete=value.auto_delete,
                arguments=value.arguments or None,
            )
            if not value.nowait:
                self._send(number, c.Exchange.DeclareOk())
        elif isinstance(value, c.Exchange.Delete):
            await ch.exchange_delete(value.exchange)
            if not value.nowait:
                self._send(number, c.Exchange.DeleteOk())
        elif isinstance(value, c.Confirm.Select):
            state.confirming = True
            if not value.nowait:
                self._send(number, c.Confirm.SelectOk())
        elif isinstance(value, c.Channel.Close):
            await ch.close()
            del self._channels[number]
            self._send(number, c.Channel.CloseOk())
        elif isinstance(value, (header.ContentHeader, ContentBody)):
            raise _ConnectionError(
                _UNEXPECTED_FRAME, "UNEXPECTED_FRAME - content without a publish"
            )
        else:
            name = getattr(value, "name", type(value).__name__)
            raise _ConnectionError(_NOT_IMPLEMENTED, f"NOT_IMPLEMENTED - {name}", value)

    async def _content(self, number: int, state: _ChannelState, value: Any) -> None:
        if state.content is None:
            if not isinstance(value, header.ContentHeader):
                raise _ConnectionError(
                    _UNEXPECTED_FRAME, "UNEXPECTED_FRAME - expected a content header"
                )
            state.content = value
        elif isinstance(value, ContentBody):
            state.parts.append(value.value)
            state.received += len(value.value)
        else:
            raise _ConnectionError(_UNEXPECTED_FRAME, "UNEXPECTED_FRAME - expected a content body")
        if state.received < state.content.body_size:
            return
        publish, content = state.publish, state.content
        body = b"".join(state.parts)
        state.publish, state.content, state.parts, state.received = None, None, [], 0
        assert publish is not None
        if state.confirming:
            state.published += 1
        tag = state.published
        try:
            await state.backend.publish(
                body,
                exchange=publish.exchange,
                routing_key=publish.routing_key,
                properties=from_spec(content.properties),
                mandatory=publish.mandatory,
            )
        except Unroutable:
            returned = commands.Basic.Return(
                reply_code=_NO_ROUTE,
                reply_text="NO_ROUTE",
                exchange=publish.exchange,
                routing_key=publish.routing_key,
            )
            self._send_raw(number, returned, body, content.properties)
        except Nacked:
            if state.confirming:
                self._send(number, commands.Basic.Nack(delivery_tag=tag))
            return
        if state.confirming:
            self._send(number, commands.Basic.Ack(delivery_tag=tag))

    def _deliverer(self, number: int) -> Callable[[Message], Awaitable[None]]:
        async def deliver(message: Message) -> None:
            if self._closed or number not in self._channels:
                return
            method = commands.Basic.Deliver(
                consumer_tag=message.consumer_tag,
                delivery_tag=message.delivery_tag,
                redelivered=message.redelivered,
                exchange=message.exchange,
                routing_key=message.routing_key,
            )
            self._send_content(number, method, message)

        return deliver

    def _fail_channel(
        self, number: int, state: _ChannelState, code: int, text: str, value: Any
    ) -> None:
        """The backend refused an operation: its channel is closed; tell the client."""
        state.closing = True
        class_id, method_id = _ids(value)
        self._send(
            number,
            commands.Channel.Close(
                reply_code=code, reply_text=text[:255], class_id=class_id, method_id=method_id
            ),
        )

    # ---------------------------------------------------------------- output

    def _send(self, number: int, value: Any) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(frame.marshal(value, number))

    def _send_content(self, number: int, method: Any, message: Message) -> None:
        self._send_raw(number, method, message.body, to_spec(message.properties))

    def _send_raw(self, number: int, method: Any, body: bytes, properties: Any) -> None:
        if self._transport is None or self._closed:
            return
        out = [
            frame.marshal(method, number),
            frame.marshal(header.ContentHeader(0, len(body), properties), number),
        ]
        step = self._frame_max - _FRAME_OVERHEAD
        for start in range(0, len(body), step):
            out.append(frame.marshal(ContentBody(body[start : start + step]), number))
        self._transport.write(b"".join(out))

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self._heartbeat
        while not self._closed:
            await asyncio.sleep(interval / 2)
            if self._closed:
                return
            if loop.time() - self._heard > 2 * interval:
                log.warning("embedded broker: a client missed its heartbeats; closing it")
                self._shut()
                return
            self._send(0, heartbeat.Heartbeat())

    # ---------------------------------------------------------------- closing

    def _close_connection(self, code: int, text: str, method: Frame | None = None) -> None:
        class_id, method_id = _ids(method)
        self._send(
            0,
            commands.Connection.Close(
                reply_code=code, reply_text=text[:255], class_id=class_id, method_id=method_id
            ),
        )
        self._shut()

    def _force(self, reason: str) -> None:
        self._close_connection(_CONNECTION_FORCED, f"CONNECTION_FORCED - {reason}")

    async def force_close(self, reason: str) -> None:
        """Close this client as a broker shutting down does, and its backend."""
        self._force(reason)
        await self._drop_backend()

    def _backend_closed(self, error: BaseException | None) -> None:
        if error is not None and not self._closed:
            self._force(_SHUTDOWN)

    async def _drop_backend(self) -> None:
        backend, self._backend = self._backend, None
        self._channels.clear()
        if backend is not None and not backend.is_closed:
            with contextlib.suppress(TransportError):
                await backend.close()

    def _shut(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        if self._transport is not None and not self._closed:
            self._closed = True
            self._transport.close()
        self._inbox.put_nowait(None)


def _ids(method: Any) -> tuple[int, int]:
    """AMQP class and method ids of ``method`` (0, 0 for a frame that has none)."""
    index = getattr(method, "index", None)
    if isinstance(index, int):
        return index >> 16, index & 0xFFFF
    return 0, 0
