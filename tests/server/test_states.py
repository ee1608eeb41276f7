"""The connection's state machine, driven over a socket pair on each event loop.

The handler is the transport's protocol from the start; these tests watch
its :class:`~chatserver.connection.State` through a connection's life, with
a real hub and no server around it.
"""

from __future__ import annotations

import ast
import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chatserver.config import Settings
from chatserver.connection import Connection, ConnectionHandler, State
from chatserver.history import MemoryHistory
from chatserver.hub import Hub
from chatserver.protocol import FrameDecoder, encode_frame
from tests.helpers import TIMEOUT
from tests.security.support import LOOPS


class Pair:
    """A handler on one end of a socket pair, a raw client on the other."""

    def __init__(self, refuse: str | None = None, **overrides: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self.settings = replace(Settings(), msg_rate=0, db=":memory:", **overrides)
        self.hub = Hub(self.settings, MemoryHistory(), self.loop)
        self.server_sock, self.sock = socket.socketpair()
        self.server_sock.setblocking(False)
        self.sock.setblocking(False)
        self.opened: list[Connection] = []
        self.handler = ConnectionHandler(
            self.hub, self.settings, "peer", refuse, opened=self.opened.append
        )
        self.decoder = FrameDecoder(1 << 20)
        self.frames: list[bytes] = []

    async def open(self) -> None:
        await self.loop.connect_accepted_socket(lambda: self.handler, self.server_sock)

    async def send(self, obj: dict[str, Any]) -> None:
        await self.loop.sock_sendall(self.sock, encode_frame(json.dumps(obj).encode()))

    async def recv(self) -> dict[str, Any] | None:
        """The next event, or None at EOF."""
        while not self.frames:
            try:
                data = await self.loop.sock_recv(self.sock, 1 << 16)
            except ConnectionResetError:  # closed with our bytes unread
                return None
            if not data:
                return None
            self.frames.extend(p for p in self.decoder.feed(data) if p)
        return json.loads(self.frames.pop(0))

    async def recv_line(self) -> bytes:
        data = b""
        while b"\n" not in data:
            data += await self.loop.sock_recv(self.sock, 1 << 16)
        return data.split(b"\n")[0]

    async def expect(self, type_: str) -> dict[str, Any]:
        while True:
            event = await self.recv()
            assert event is not None, f"closed before a {type_}"
            if event["type"] == type_:
                return event

    async def until(self, state: State) -> None:
        while self.handler.state is not state:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self.sock.close()
        self.server_sock.close()


def run(loop: str, test: Callable[[], Awaitable[None]]) -> None:
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop

    async def bounded() -> None:
        await asyncio.wait_for(test(), TIMEOUT)

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(bounded())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_framed_client_from_accept_to_quit(loop: str) -> None:
    async def test() -> None:
        pair = Pair()
        handler = pair.handler
        assert handler.state is State.OPENING and not pair.opened
        await pair.open()
        assert handler.state is State.SNIFFING
        assert pair.opened == [handler.conn]  # counted before its first byte is read
        await pair.send({"type": "hello", "name": "alice"})
        await pair.expect("welcome")
        assert handler.state is State.REGISTERED
        await pair.send({"type": "quit"})
        assert (await pair.expect("bye"))["reason"] == "quit"
        assert await pair.recv() is None
        assert await handler.run() == "closed by server"
        assert handler.state is State.CLOSED
        pair.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_bytes_and_eof_sent_before_the_transport_is_made(loop: str) -> None:
    """What a client sent before the handler existed is read by it all the
    same (it no longer waits in a stream reader's private buffer)."""

    async def test() -> None:
        pair = Pair()
        pair.sock.send(b"alice\n")
        await pair.open()
        assert b"welcome, alice!" in await pair.recv_line()
        assert pair.handler.state is State.REGISTERED
        pair.sock.shutdown(socket.SHUT_WR)
        assert await pair.handler.run() == "disconnected"
        assert pair.handler.state is State.CLOSED
        pair.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_wrong_password_is_denied_then_closed(loop: str) -> None:
    async def test() -> None:
        pair = Pair(password="secret", password_delay=0.2)
        await pair.open()
        await pair.send({"type": "hello", "name": "alice", "password": "guess"})
        await pair.until(State.DENIED)
        await pair.send({"type": "hello", "name": "alice", "password": "secret"})  # unheard
        assert (await pair.expect("error"))["code"] == "bad_password"
        assert await pair.recv() is None
        assert await pair.handler.run() == "closed by server"
        pair.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_closed_by_the_hub_while_idle(loop: str) -> None:
    """A close from elsewhere: closing at once, done once the transport is lost."""

    async def test() -> None:
        pair = Pair()
        await pair.open()
        await pair.send({"type": "hello", "name": "alice"})
        await pair.expect("welcome")
        pair.hub.shutdown([pair.handler.conn])
        assert pair.handler.state is State.CLOSING
        assert (await pair.expect("bye"))["reason"] == "shutdown"
        assert await pair.recv() is None
        assert await pair.handler.run() == "closed by server"
        pair.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_over_a_limit_is_answered_after_its_first_bytes(loop: str) -> None:
    async def test() -> None:
        pair = Pair(refuse="the server is full")
        await pair.open()
        assert pair.handler.state is State.SNIFFING
        await pair.send({"type": "hello", "name": "alice"})
        assert (await pair.expect("error"))["code"] == "server_full"
        assert await pair.recv() is None
        assert await pair.handler.run() == "refused: the server is full"
        assert not pair.hub.users
        pair.close()

    run(loop, test)


def _asyncio_private_names() -> set[str]:
    """The private attributes of asyncio's streams and transports, as made."""

    async def made() -> list[object]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        ours, theirs = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        objects = [reader, protocol, transport, loop]
        transport.close()
        theirs.close()
        return objects

    names = set()
    for obj in asyncio.run(made()):
        for name in [*dir(obj), *vars(obj)]:
            if name.startswith("_") and not name.startswith("__"):
                names.add(name)
    assert {"_buffer", "_eof", "_transport", "_protocol"} <= names
    return names


def test_no_private_attribute_of_asyncio_is_read() -> None:
    """The server uses asyncio's public API only (issue 13): none of its
    streams' or transports' private names is read off anything but ``self``
    in chatserver/ (the handler once took its first bytes from
    ``reader._buffer``)."""
    private = _asyncio_private_names()
    root = Path(__file__).resolve().parents[2] / "chatserver"
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}: .{node.attr}")
    assert not found, found
