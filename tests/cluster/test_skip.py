"""Without redis-server the cluster tests are skipped in one line, and where
they are required (CI) that is a failure instead."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chatserver.bench.redisproc import BINARY_ENV
from tests.cluster.support import REQUIRE_ENV

pytestmark = [pytest.mark.runs_without_redis, pytest.mark.timeout(60)]

HARNESS = Path(__file__).with_name("test_harness.py")


def _pytest(**env: str) -> subprocess.CompletedProcess[str]:
    """pytest on the harness tests, with a redis-server that is not there."""
    base = {k: v for k, v in os.environ.items() if k != REQUIRE_ENV}
    base[BINARY_ENV] = "/nonexistent/redis-server"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HARNESS)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=50, env={**base, **env}, check=False
    )


def test_without_redis_server_the_tests_are_skipped_in_one_line() -> None:
    result = _pytest()
    assert result.returncode == 0, result.stdout
    lines = [line for line in result.stdout.splitlines() if "redis-server" in line]
    assert len(lines) == 1, result.stdout
    assert re.match(r"SKIPPED \[\d+\] .*cluster tests skipped: .*redis-server", lines[0])
    assert "skipped" in result.stdout.splitlines()[-1]


def test_where_they_are_required_a_missing_redis_server_fails() -> None:
    result = _pytest(**{REQUIRE_ENV: "1"})
    assert result.returncode == 1, result.stdout
    assert f"{REQUIRE_ENV}=1 but" in result.stdout and "must run here" in result.stdout
    assert not re.search(r"SKIPPED .*redis-server", result.stdout), result.stdout
