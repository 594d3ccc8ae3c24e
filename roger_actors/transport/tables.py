"""AMQP's encoding of message properties and header tables, through pamqp.

Both transports use it: the aiormq adapter to convert properties, the
in-memory broker to refuse what RabbitMQ's client could not send and to hand
consumers the same value types a real broker's would (a tuple cannot be
sent; a header table comes back as a dict; a timestamp is whole seconds).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from pamqp import commands as spec
from pamqp import encode, frame, header

from .base import Properties

__all__ = ["encoded_size", "from_spec", "round_trip", "to_spec"]


def encoded_size(headers: Mapping[str, Any]) -> int:
    """The size in bytes of ``headers`` encoded as an AMQP field table.
    Raises TypeError (naming the key) for a value AMQP cannot carry."""
    return len(encode.field_table(dict(headers)))


def round_trip(props: Properties, body_size: int = 0) -> Properties:
    """``props`` encoded as an AMQP content header and decoded again: what a
    consumer of a real broker receives. Raises TypeError or ValueError (from
    the encoder, naming the property or header key) for properties a client
    cannot send (a header value of an unknown type, a text too long, ...)."""
    content = header.ContentHeader(0, body_size, to_spec(props))
    raw = frame.marshal(content, 1)
    _, _, decoded = frame.unmarshal(raw)
    assert isinstance(decoded, header.ContentHeader)
    return from_spec(decoded.properties)


def to_spec(props: Properties | None) -> spec.Basic.Properties:
    """pamqp's properties for ``props`` (None: transient, nothing else set)."""
    if props is None:
        return spec.Basic.Properties(delivery_mode=1)
    timestamp = (
        None
        if props.timestamp is None
        else datetime.datetime.fromtimestamp(props.timestamp, tz=datetime.UTC)
    )
    return spec.Basic.Properties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        headers=dict(props.headers) if props.headers is not None else None,
        delivery_mode=props.delivery_mode,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        expiration=props.expiration,
        message_id=props.message_id,
        timestamp=timestamp,
        message_type=props.type,
        user_id=props.user_id,
        app_id=props.app_id,
    )


def from_spec(props: spec.Basic.Properties) -> Properties:
    """The interface's properties for pamqp's ``props`` (a timestamp in whole seconds)."""
    stamp = props.timestamp
    timestamp = int(stamp.timestamp()) if isinstance(stamp, datetime.datetime) else None
    return Properties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        headers=dict(props.headers) if props.headers is not None else None,
        delivery_mode=props.delivery_mode,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        expiration=props.expiration,
        message_id=props.message_id,
        timestamp=timestamp,
        type=props.message_type,
        user_id=props.user_id,
        app_id=props.app_id,
    )
