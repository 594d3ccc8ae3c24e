"""The broker password can be given to ``roger-actors`` without putting it in
argv (which every local user reads with ``ps``): ``ROGER_AMQP_PASSWORD`` or
``--amqp-password-file PATH``, applied on top of whatever URL is configured."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from roger_actors import Config, ConfigError
from roger_actors.cli import _load_config, build_parser
from tests.integration.test_cli import failed, run_cli

WRONG = "amqp://guest:not-the-password@127.0.0.1:5672/?name=roger-test-cli-password"


def _config(*args: str, env: dict[str, str] | None = None) -> Config:
    return _load_config(build_parser().parse_args([*args, "ping"]), env or {})


def test_the_password_file_replaces_the_urls_password(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cr3t/#?\n")
    config = _config("--amqp", WRONG, "--amqp-password-file", str(secret))
    assert config.amqp.password == "s3cr3t/#?"
    assert config.amqp.username == "guest" and config.amqp.host == "127.0.0.1"


def test_roger_amqp_password_replaces_it_and_the_file_wins_over_it(tmp_path: Path) -> None:
    from_env = _config("--amqp", WRONG, env={"ROGER_AMQP_PASSWORD": "from-env"})
    assert from_env.amqp.password == "from-env"
    secret = tmp_path / "password"
    secret.write_text("from-file")
    config = _config("--amqp-password-file", str(secret), env={"ROGER_AMQP_PASSWORD": "from-env"})
    assert config.amqp.password == "from-file"


@pytest.mark.parametrize("content", [None, "", "\nsecond-line-secret\n", b"\xff\xfe"])
def test_a_bad_password_file_is_a_config_error_that_never_shows_its_content(
    tmp_path: Path, content: str | bytes | None
) -> None:
    path = tmp_path / "password"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="--amqp-password-file") as raised:
        _config("--amqp-password-file", str(path))
    assert str(path) in str(raised.value)
    assert "second-line-secret" not in str(raised.value)


def test_the_cli_reaches_the_broker_with_a_password_that_is_not_in_its_argv(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "password"
    secret.write_text("guest\n")
    os.chmod(secret, 0o600)
    refused = failed(run_cli("--amqp", WRONG, "ping", timeout=30), 3)
    assert "not-the-password" not in refused
    # With the password from the file the CLI reaches the broker: the ping goes
    # out, and no node answers on this fresh exchange prefix (exit 4, not 3).
    reached = failed(
        run_cli(
            "--amqp", WRONG, "--amqp-password-file", str(secret), "ping",
            prefix=f"t{uuid.uuid4().hex[:12]}.", timeout=30,
        ),
        4,
    )
    assert "no node answered" in reached and "guest" not in reached
