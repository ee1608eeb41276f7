"""The full-screen app driven through a pipe input, no terminal, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from chatclient.session import SessionConfig
from chatclient.state import Kind
from chatclient.tui import ChatApp
from tests.client.conftest import until
from tests.helpers import Client, ThreadServer


def texts(chat: ChatApp, room: str) -> list[str]:
    return [line.text for line in chat.state.panes[room].lines]


def test_type_switch_complete_paste_quit(
    server: ThreadServer, connect: Callable[..., Client]
) -> None:
    bob = connect("bob", rooms=["lobby", "dev"])

    async def scenario() -> int:
        with create_pipe_input() as keys:
            config = SessionConfig(name="alice", port=server.port, rooms=("lobby", "dev"))
            chat = ChatApp(config, input=keys, output=DummyOutput(), bell=False)
            run = asyncio.create_task(chat.run())
            dev = lambda: chat.state.panes.get("dev")  # noqa: E731
            await until(lambda: dev() is not None and "bob" in dev().members)
            assert chat.state.current == "lobby"

            keys.send_text("hello bob\r")
            got = await asyncio.to_thread(bob.expect, "msg", text="hello bob")
            assert got["room"] == "lobby"
            await until(lambda: "hello bob" in texts(chat, "lobby"))
            assert chat.input.text == ""

            bob.send({"type": "say", "room": "dev", "text": "alice: over here"})
            await until(lambda: chat.state.panes["dev"].unread == 1)
            assert chat.state.panes["dev"].mentioned

            keys.send_text("\x1b2")  # Alt-2
            await until(lambda: chat.state.current == "dev")
            assert chat.state.panes["dev"].unread == 0

            keys.send_text("hi b\t")  # Tab completes the only matching nick
            await until(lambda: chat.input.text == "hi bob ")
            keys.send_text("\r")
            assert (await asyncio.to_thread(bob.expect, "msg", text="hi bob "))["room"] == "dev"

            keys.send_text("\x1b[200~one\ntwo\x1b[201~")  # a bracketed paste of two lines
            await until(lambda: chat.pending == ["one", "two"])
            keys.send_text("y")
            assert (await asyncio.to_thread(bob.expect, "msg", text="one"))["room"] == "dev"
            await asyncio.to_thread(bob.expect, "msg", text="two")
            # Wait for alice's own echo, so the local error below is the last line.
            await until(lambda: texts(chat, "dev")[-1] == "two")

            keys.send_text("/nope\r")
            await until(lambda: chat.state.panes["dev"].lines[-1].kind is Kind.ERROR)

            keys.send_text("/help\r")
            await until(lambda: any("/join ROOM" in t for t in texts(chat, "dev")))

            keys.send_text("\x0e")  # Ctrl-N wraps around to the first pane
            await until(lambda: chat.state.current == "lobby")
            keys.send_text("/quit\r")
            return await asyncio.wait_for(run, 10)

    assert asyncio.run(scenario()) == 0
    assert bob.expect("leave", name="alice")["room"] in ("lobby", "dev")


def test_name_taken_at_start(server: ThreadServer, connect: Callable[..., Client]) -> None:
    connect("alice")

    async def scenario() -> int:
        with create_pipe_input() as keys:
            config = SessionConfig(name="alice", port=server.port)
            return await ChatApp(config, input=keys, output=DummyOutput()).run()

    assert asyncio.run(scenario()) == 3


def test_a_resume_cut_short_is_paged_back_to_where_we_were(
    make_server: Callable[..., ThreadServer],
) -> None:
    """The server replays only the newest --resume-max messages of a resume (with ``more``):
    the app pages back with ``history before`` until nothing missed is left out."""
    server = make_server(msg_rate=0, resume_max=20)
    bob = Client(server.port)
    bob.hello("bob")

    async def scenario() -> list[int]:
        with create_pipe_input() as keys:
            config = SessionConfig(name="alice", port=server.port, backoff_base=60.0)
            chat = ChatApp(config, input=keys, output=DummyOutput(), bell=False)
            run = asyncio.create_task(chat.run())
            lobby = lambda: chat.state.panes.get("lobby")  # noqa: E731
            await until(lambda: lobby() is not None and "bob" in lobby().members)
            for i in range(1, 6):
                bob.send({"type": "say", "text": f"before {i}"})
            await until(lambda: "before 5" in texts(chat, "lobby"))
            chat.session._abort()  # the network drops; the backoff waits a minute
            await until(lambda: chat.state.status == "offline")
            for i in range(1, 301):
                bob.send({"type": "say", "text": f"missed {i}"})
            await asyncio.to_thread(bob.expect, "msg", text="missed 300")
            chat.session.reconnect_now()
            await until(lambda: "missed 1" in texts(chat, "lobby"), timeout=15)
            ids = [ln.id for ln in chat.state.panes["lobby"].lines if ln.id is not None]
            keys.send_text("/quit\r")
            await asyncio.wait_for(run, 10)
            return ids

    try:
        ids = asyncio.run(scenario())
    finally:
        bob.close()
    assert len(ids) == 305 and ids == sorted(set(ids))
