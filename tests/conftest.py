from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers import Client, ProcessServer, ThreadServer


def pytest_runtest_setup(item: pytest.Item) -> None:
    if os.environ.get("CHATSERVER_TEST_CLUSTER") == "1":
        # The suite on a one-process cluster needs Redis: one skip line without it.
        from tests.cluster.support import skip_without_redis

        skip_without_redis()


@pytest.fixture
def make_server() -> Iterator[Callable[..., ThreadServer]]:
    """Start servers with settings overrides; all are stopped after the test."""
    servers: list[ThreadServer] = []

    def factory(**overrides: Any) -> ThreadServer:
        server = ThreadServer(**overrides)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def start_server() -> Iterator[Callable[..., ProcessServer]]:
    """Start ``python -m chatserver`` processes; all are killed after the test."""
    servers: list[ProcessServer] = []

    def start(*args: str) -> ProcessServer:
        server = ProcessServer(*args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    """A server with default settings but no rate limit (tests send in bursts)."""
    return make_server(msg_rate=0)


@pytest.fixture
def connect(server: ThreadServer) -> Iterator[Callable[..., Client]]:
    """Open clients to the default server; all are closed after the test."""
    clients: list[Client] = []

    def factory(name: str | None = None, **hello: Any) -> Client:
        client = Client(server.port)
        clients.append(client)
        if name is not None:
            client.hello(name, **hello)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture(autouse=True)
def _client_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's config, logs and history under a temporary home, never the user's own.

    Clients started as subprocesses inherit these too.
    """
    base = tmp_path_factory.mktemp("xdg")
    for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(variable, str(base / variable.lower()))
