"""Broker URLs as text: splitting a list of them, and showing one without its password.

Pure string handling (no aiormq), shared by the config (``amqp`` key,
``ROGER_AMQP_URL``) and the transport (:class:`~roger_actors.transport.amqp.AmqpLink`,
:class:`~roger_actors.transport.publisher.Publisher`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["address_of", "redact_url", "split_urls"]

#: A comma that starts another URL: a comma followed by optional spaces and a
#: scheme. A comma inside a URL (a password ``a,b``) is not followed by
#: ``amqp://`` and so never splits it.
_SEPARATOR = re.compile(r",\s*(?=amqps?://)", re.IGNORECASE)


def split_urls(value: str | Sequence[str]) -> list[str]:
    """The URLs in ``value``: a sequence of URLs as it is (a list copy), or a
    string of one URL or several separated by commas (``"amqp://a/,amqp://b/"``).

    A string is split only at a comma that another ``amqp://``/``amqps://``
    follows, so a comma in a password needs no encoding. Surrounding spaces
    are dropped. Never raises; validation is the caller's (an empty string
    gives ``[""]``).
    """
    if isinstance(value, str):
        return [part.strip() for part in _SEPARATOR.split(value.strip())]
    return [str(url) for url in value]


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and errors).

    Anything that cannot be parsed is shown as ``<unparsable URL>`` rather
    than risk printing a password."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{user}:***@{host}").geturl()
    except ValueError:
        return "<unparsable URL>"


def address_of(url: str) -> str:
    """The ``host:port`` a URL names (``[::1]:5672`` for IPv6; the default
    port of its scheme when it names none); ``<unparsable URL>`` otherwise.
    Never includes the credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port or (5671 if parts.scheme.lower() == "amqps" else 5672)
        host = parts.hostname or "?"
    except ValueError:
        return "<unparsable URL>"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
