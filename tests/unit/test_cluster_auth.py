"""Signing and checking cluster messages (roger_actors.cluster_auth)."""

from __future__ import annotations

import logging

import pytest

from roger_actors.cluster_auth import SIG_HEADER, TS_HEADER, AuthError, ClusterAuth, DropLog

SECRET = "s" * 32


def test_a_signed_message_passes_its_check() -> None:
    auth = ClusterAuth(SECRET)
    headers = auth.headers("system", b"body")
    auth.check("system", b"body", headers)


def test_an_unsigned_message_is_refused_when_a_secret_is_set() -> None:
    with pytest.raises(AuthError, match="not signed"):
        ClusterAuth(SECRET).check("system", b"body", {})
    with pytest.raises(AuthError, match="not signed"):
        ClusterAuth(SECRET).check("system", b"body", None)


@pytest.mark.parametrize(
    "change",
    [
        lambda h, b: (h, b + b"x"),
        lambda h, b: ({**h, SIG_HEADER: "0" * 64}, b),
        lambda h, b: ({**h, TS_HEADER: str(int(h[TS_HEADER]) + 1)}, b),
    ],
    ids=["body altered", "signature replaced", "timestamp altered"],
)
def test_an_altered_message_is_refused(change: object) -> None:
    auth = ClusterAuth(SECRET)
    headers, body = change(auth.headers("system", b"body"), b"body")  # type: ignore[operator]
    with pytest.raises(AuthError, match="bad signature"):
        auth.check("system", body, headers)


def test_a_message_signed_for_another_purpose_or_secret_is_refused() -> None:
    headers = ClusterAuth(SECRET).headers("global-reply", b"body")
    with pytest.raises(AuthError, match="bad signature"):
        ClusterAuth(SECRET).check("system", b"body", headers)
    with pytest.raises(AuthError, match="bad signature"):
        ClusterAuth("t" * 32).check("global-reply", b"body", headers)


def test_an_old_or_future_message_is_refused() -> None:
    auth = ClusterAuth(SECRET)
    headers = auth.headers("system", b"b", now=1_000_000.0)
    auth.check("system", b"b", headers, now=1_000_100.0, max_age=300)
    with pytest.raises(AuthError, match="old"):
        auth.check("system", b"b", headers, now=1_000_301.0, max_age=300)
    with pytest.raises(AuthError, match="old"):
        auth.check("system", b"b", headers, now=999_600.0, max_age=300)
    auth.check("system", b"b", headers, now=9e9, max_age=None)


@pytest.mark.parametrize(
    "headers",
    [
        {TS_HEADER: 12, SIG_HEADER: "00"},
        {TS_HEADER: "1" * 400, SIG_HEADER: "0" * 64},
        {TS_HEADER: "-5", SIG_HEADER: "0" * 64},
        {TS_HEADER: "١٢٣", SIG_HEADER: "0" * 64},
        {TS_HEADER: "123", SIG_HEADER: "zz" * 32},
        {TS_HEADER: "123", SIG_HEADER: "0" * 10_000},
        {TS_HEADER: b"123", SIG_HEADER: [1, 2]},
    ],
)
def test_malformed_signature_headers_raise_only_auth_error(headers: dict[str, object]) -> None:
    with pytest.raises(AuthError):
        ClusterAuth(SECRET).check("system", b"b", headers)


def test_without_a_secret_nothing_is_signed_and_everything_passes() -> None:
    auth = ClusterAuth(None)
    assert not auth.enabled
    assert auth.headers("system", b"b") == {}
    auth.check("system", b"b", None)
    auth.check("system", b"b", {SIG_HEADER: "junk"})


def test_a_sealed_blob_unseals_only_under_its_secret_and_purpose() -> None:
    auth = ClusterAuth(SECRET)
    blob = auth.seal("snapshot:p", b"state")
    assert auth.unseal("snapshot:p", blob) == b"state"
    with pytest.raises(AuthError):
        auth.unseal("snapshot:q", blob)
    with pytest.raises(AuthError):
        ClusterAuth("u" * 32).unseal("snapshot:p", blob)
    with pytest.raises(AuthError, match="not sealed"):
        auth.unseal("snapshot:p", b"state")
    with pytest.raises(AuthError):
        auth.unseal("snapshot:p", blob[:-1] + b"X")
    assert ClusterAuth(None).unseal("snapshot:p", blob) == b"state"
    assert ClusterAuth(None).unseal("snapshot:p", b"plain") == b"plain"


def test_the_secret_never_shows_in_repr() -> None:
    assert SECRET not in repr(ClusterAuth(SECRET))


def test_drop_log_counts_every_drop_and_logs_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = DropLog(logging.getLogger("test.drops"), "system messages", interval=3600)
    with caplog.at_level(logging.WARNING, logger="test.drops"):
        for _ in range(1000):
            log.drop("bad signature")
    assert log.total == 1000
    assert len(caplog.records) == 1
