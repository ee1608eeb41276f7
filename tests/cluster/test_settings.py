"""Cluster mode's settings: the command line, the environment, what the log shows."""

from __future__ import annotations

import pytest

from chatserver.config import parse_args
from chatserver.redis_log import shown_url


def test_redis_from_the_command_line_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATSERVER_REDIS", raising=False)
    assert parse_args([]).redis is None  # one process: no Redis at all
    assert parse_args(["--redis", "redis://h:1/0", "--node", "n1"]).node == "n1"
    monkeypatch.setenv("CHATSERVER_REDIS", "redis://:pw@h:6379/2")
    assert parse_args([]).redis == "redis://:pw@h:6379/2"


@pytest.mark.parametrize(
    "argv",
    [["--redis", "h:6379"], ["--redis", "http://h"], ["--node", ""], ["--node", "x" * 65]],
)
def test_bad_cluster_settings_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert "--redis" in capsys.readouterr().err or "--node" in " ".join(argv)


def test_the_log_never_shows_the_redis_password() -> None:
    assert shown_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert shown_url("redis://:s3cret@h:1/0") == "redis://:***@h:1/0"
    assert "s3cret" not in shown_url("rediss://user:s3cret@h/2")
