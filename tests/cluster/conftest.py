"""The cluster tests (issue 13): their own redis-server and several server processes.

Every test here needs redis-server; without it they are all skipped, on one
line of pytest's summary, and with ``CHATSERVER_REQUIRE_REDIS=1`` (CI) they
fail. A test that checks the harness itself without Redis is marked
``runs_without_redis``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.support import (
    CountingClient,
    Node,
    RedisProcess,
    skip_without_redis,
    start_nodes,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "runs_without_redis: a cluster test that needs no redis-server"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Raised here, not in a fixture (whose skips pytest reports at each test),
    # so that the summary has one line for all of them.
    if item.get_closest_marker("runs_without_redis") is None:
        skip_without_redis()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own: append-only file synced on every write."""
    server = RedisProcess(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def cluster(redis: RedisProcess, tmp_path: Path) -> Iterator[Callable[..., list[Node]]]:
    """``cluster(n, *args)``: n more server processes on ``redis``; all killed after."""
    nodes: list[Node] = []

    def start(n: int, *args: str) -> list[Node]:
        started = start_nodes(n, redis, tmp_path, *args, first=len(nodes) + 1)
        nodes.extend(started)
        return started

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def counting() -> Iterator[Callable[..., CountingClient]]:
    """``counting(port, name, **hello)``: a welcomed CountingClient; all closed after."""
    clients: list[CountingClient] = []

    def connect(port: int, name: str, **hello: Any) -> CountingClient:
        client = CountingClient(port)
        clients.append(client)
        client.hello(name, **hello)
        return client

    yield connect
    for client in clients:
        client.close()
