from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers import Client


@pytest.fixture
def witnesses(connect: Callable[..., Client]) -> tuple[Client, Client]:
    """Two bystanders in lobby: bad input from someone else must not touch them."""
    bob = connect("bob")
    carol = connect("carol")
    bob.expect("join", name="carol")
    return bob, carol


@pytest.fixture
def open_client() -> Iterator[Callable[..., Client]]:
    """Clients to any server (make_server ones too); all closed after the test."""
    clients: list[Client] = []

    def factory(port: int, name: str | None = None, **hello: Any) -> Client:
        client = Client(port)
        clients.append(client)
        if name is not None:
            client.hello(name, **hello)
        return client

    yield factory
    for client in clients:
        client.close()
