"""Several servers (``--server HOST:PORT``, repeatable): the client moves on to the
next one when a server dies or cannot be reached, and resumes there by itself.

Real server processes on real ports; a server is "down" when its port is
bound by a socket that does not listen (connects are refused), and killed
with SIGKILL mid-session.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from chatclient.__main__ import parse_args
from chatclient.session import SessionConfig, Tracker, format_address, welcome_node
from chatclient.state import ChatState, Kind
from chatclient.tui import ChatApp
from chatserver.protocol import Hello, HistoryReply, MsgEvent, Welcome, parse_event
from tests.client.conftest import Lines, run_client, spawn_client, until
from tests.helpers import Client, ProcessServer, ThreadServer

LOCAL = "127.0.0.1"


def address(port: int) -> str:
    return f"{LOCAL}:{port}"


@pytest.fixture
def servers(start_server: Callable[..., ProcessServer]) -> Callable[..., ProcessServer]:
    """Server processes without a rate limit (all killed after the test)."""
    return lambda *args: start_server("--msg-rate", "0", *args)


@pytest.fixture
def down() -> Iterator[socket.socket]:
    """A port with nothing listening: bound, so nobody else takes it; connects are refused."""
    sock = socket.socket()
    sock.bind((LOCAL, 0))
    yield sock
    sock.close()


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("argv", "servers"),
    [
        ([], [(LOCAL, 5500)]),
        (["--host", "chat.example.org", "--port", "5501"], [("chat.example.org", 5501)]),
        (["--server", "a:6000", "--server", "b"], [("a", 6000), ("b", 5500)]),
        (["--server", "a", "--server", "b:7", "--port", "6000"], [("a", 6000), ("b", 7)]),
        (
            ["--server", "[::1]:5501", "--server", "[fe80::1%eth0]"],
            [("::1", 5501), ("fe80::1%eth0", 5500)],
        ),
        (["--server", "a:1", "--server", "b:2", "--server", "a:1"], [("a", 1), ("b", 2)]),
    ],
)
def test_servers_from_the_command_line(argv: list[str], servers: list[tuple[str, int]]) -> None:
    args = parse_args(["--name", "alice", *argv])
    assert args.servers == servers
    assert (args.host, args.port) == servers[0]


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--server", "::1"], "write an IPv6 address in brackets"),
        (["--server", "fe80::1:5500"], "write an IPv6 address in brackets"),
        (["--server", "[chat.example.org]:5500"], "brackets hold an IPv6 address"),
        (["--server", "[::1"], "is not [IPV6]:PORT"),
        (["--server", "[::1]5500"], "is not [IPV6]:PORT"),
        (["--server", "a:0"], "the port must be from 1 to 65535"),
        (["--server", "a:65536"], "the port must be from 1 to 65535"),
        (["--server", "a:http"], "the port must be from 1 to 65535"),
        (["--server", "a:+5"], "the port must be from 1 to 65535"),
        (["--server", "a:"], "no port after the colon"),
        (["--server", ":5500"], "is not HOST[:PORT]"),
        (["--server", ""], "is not HOST[:PORT]"),
        (["--server", "a b"], "is not HOST[:PORT]"),
        (["--server", "chat://a:5500"], "no URLs"),
        (["--server", "a", "--host", "b"], "--host and --server do not mix"),
        (["--server", "a", "--port", "0"], "--port must be from 1 to 65535"),
    ],
)
def test_bad_servers_are_usage_errors(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--name", "alice", *argv])
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err


def test_a_bad_server_exits_2_before_connecting() -> None:
    result = run_client(None, "--name", "alice", "--server", "::1", "--send", "hi")
    assert result.returncode == 2
    assert "argument --server: '::1': write an IPv6 address in brackets" in result.stderr


def test_addresses_as_shown() -> None:
    assert format_address(LOCAL, 5500) == "127.0.0.1:5500"
    assert format_address("::1", 5500) == "[::1]:5500"
    welcome = parse_event(
        b'{"type": "welcome", "name": "a", "proto": 1, "server": "chatserver/x", '
        b'"rooms": [], "limits": {}, "node": "n2"}'
    )
    assert isinstance(welcome, Welcome) and welcome_node(welcome) == "n2"
    assert welcome_node(Welcome(name="a", proto=1, server="s", rooms=[], limits={})) is None
    state = ChatState("alice", address(5500))
    state.connection("online", "127.0.0.1:5501 (node n2)")
    state.connection("offline", "connection lost")
    state.connection("connecting", address(5502))
    assert state.server == "127.0.0.1:5502"
    state.connection("online", "127.0.0.1:5502 (node n3)")
    assert state.server == "127.0.0.1:5502 (node n3)"


# ---------------------------------------------------------------- resume elsewhere


def msg(id_: int, text: str) -> MsgEvent:
    return MsgEvent(
        id=id_, ts=f"2026-11-24T10:00:{id_ % 60:02}.000Z", room="lobby", from_="bob", text=text
    )


def welcome(session: str) -> Welcome:
    return Welcome(name="rec", proto=1, server="s", rooms=["lobby"], limits={}, session=session)


def test_resume_on_another_process_keeps_token_and_since_and_drops_shared_ids() -> None:
    """A cluster's processes number messages from one log: B's replay of what A
    already delivered has the same ids, and only what is new gets through."""
    config = SessionConfig(name="rec", servers=((LOCAL, 1), (LOCAL, 2)))
    tracker = Tracker(name="rec")
    tracker.filter(welcome("token-from-a"))
    for event in (msg(101, "one"), msg(102, "two")):
        assert tracker.filter(event) is event

    hello = tracker.hello(config)  # said to B, exactly as it would be to A
    assert hello == Hello(
        name="rec", rooms=("lobby",), since={"lobby": 102}, session="token-from-a"
    )
    tracker.filter(welcome("token-from-b"))
    replay = HistoryReply(room="lobby", messages=[msg(102, "two"), msg(103, "three")], more=False)
    shown = tracker.filter(replay)
    assert isinstance(shown, HistoryReply)
    assert [m.text for m in shown.messages] == ["three"]
    assert tracker.filter(msg(103, "three")) is None  # live, after the replay: still once
    assert tracker.hello(config).since == {"lobby": 103}
    assert tracker.hello(config).session == "token-from-b"


# ---------------------------------------------------------------- real processes


def test_killed_server_the_client_moves_to_the_next_and_works_there(
    servers: Callable[..., ProcessServer],
) -> None:
    a, b = servers(), servers()
    rec = spawn_client(
        None, "--name", "rec", "--listen", "--json",
        "--server", address(a.port), "--server", address(b.port),
    )  # fmt: skip
    out, err = Lines(rec.stdout), Lines(rec.stderr)
    clients: list[Client] = []
    try:
        out.wait('"type": "history"')  # joined on A
        bob = Client(a.port)
        clients.append(bob)
        bob.hello("bob")
        bob.send({"type": "say", "text": "said on A"})
        out.wait('"said on A"')

        a.stop()  # SIGKILL: no bye, the connection just drops
        err.wait("connection lost")
        assert f"reconnected to {address(b.port)}" in err.wait("reconnected")

        carol = Client(b.port)
        clients.append(carol)
        carol.hello("carol")
        out.wait('"name": "carol"')  # carol's join, seen live on B
        carol.send({"type": "say", "text": "said on B"})
        out.wait('"said on B"')
        rec.stdin.write("from rec on B\n")
        rec.stdin.flush()
        assert carol.expect("msg", text="from rec on B")["from"] == "rec"
        out.wait('"from rec on B"')  # its own echo

        events = [json.loads(line) for line in out.seen]
        assert [e["type"] for e in events].count("welcome") == 2
        said = [e["text"] for e in events if e["type"] == "msg"]
        said += [m["text"] for e in events if e["type"] == "history" for m in e["messages"]]
        assert sorted(said) == ["from rec on B", "said on A", "said on B"]
    finally:
        for client in clients:
            client.close()
        rec.kill()
        rec.wait(5)


def test_first_server_down_at_start_the_second_takes_the_message(
    server: ThreadServer, connect: Callable[..., Client], down: socket.socket
) -> None:
    bob = connect("bob")
    dead = address(port_of(down))
    result = run_client(
        None, "--name", "cron", "--server", dead, "--server", address(server.port),
        "--send", "backup done",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert bob.expect("msg", text="backup done")["from"] == "cron"
    assert result.stderr.splitlines() == [
        f"chatclient: cannot connect to {dead}: connection refused; "
        f"connected to {address(server.port)}"
    ]


def test_every_server_down_at_start_exits_1_naming_each(down: socket.socket) -> None:
    other = socket.socket()
    other.bind((LOCAL, 0))
    try:
        first, second = address(port_of(down)), address(port_of(other))
        result = run_client(
            None, "--name", "cron", "--server", first, "--server", second, "--send", "x"
        )
    finally:
        other.close()
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"chatclient: cannot connect to {first}: connection refused; "
        f"cannot connect to {second}: connection refused"
    ]


def test_from_the_second_back_to_the_first_wrapping_around(
    servers: Callable[..., ProcessServer], down: socket.socket
) -> None:
    first_port = port_of(down)
    b = servers()
    rec = spawn_client(
        None, "--name", "rec", "--listen", "--json",
        "--server", address(first_port), "--server", address(b.port),
    )  # fmt: skip
    out, err = Lines(rec.stdout), Lines(rec.stderr)
    bob = None
    try:
        line = err.wait("connected to")
        assert line.strip().endswith(f"connected to {address(b.port)}"), line
        out.wait('"type": "history"')

        down.close()  # the first server comes up on its port
        a = servers("--port", str(first_port))
        b.stop()
        assert f"reconnected to {address(a.port)}" in err.wait("reconnected")
        bob = Client(a.port)
        bob.hello("bob")
        out.wait('"name": "bob"')
        bob.send({"type": "say", "text": "hello on A"})
        out.wait('"hello on A"')
    finally:
        if bob is not None:
            bob.close()
        rec.kill()
        rec.wait(5)


# ---------------------------------------------------------------- the full-screen app


def test_the_status_bar_names_the_server_it_moved_to(
    servers: Callable[..., ProcessServer],
) -> None:
    a, b = servers(), servers()

    async def scenario() -> tuple[int, list[str]]:
        with create_pipe_input() as keys:
            config = SessionConfig(name="alice", servers=((LOCAL, a.port), (LOCAL, b.port)))
            chat = ChatApp(config, input=keys, output=DummyOutput(), bell=False)
            run = asyncio.create_task(chat.run())
            await until(lambda: chat.state.status == "online" and "lobby" in chat.state.panes)
            assert chat.state.server == address(a.port)
            assert address(a.port) in "".join(text for _, text in chat.status_fragments())

            a.stop()
            await until(
                lambda: chat.state.status == "online" and chat.state.server != address(a.port)
            )
            assert chat.state.server == address(b.port)
            assert address(b.port) in "".join(text for _, text in chat.status_fragments())

            bob = await asyncio.to_thread(Client, b.port)
            try:
                await asyncio.to_thread(bob.hello, "bob")
                keys.send_text("hello from the app\r")
                got = await asyncio.to_thread(bob.expect, "msg", text="hello from the app")
                assert got["from"] == "alice"
                bob.send({"type": "say", "text": "hi alice"})
                lobby = chat.state.panes["lobby"]
                await until(lambda: any(line.text == "hi alice" for line in lobby.lines))
            finally:
                bob.close()
            gaps = [line.text for line in lobby.lines if line.kind is Kind.GAP]
            keys.send_text("/quit\r")
            return await asyncio.wait_for(run, 10), gaps

    code, gaps = asyncio.run(scenario())
    assert code == 0
    assert gaps[-1] == f"reconnected to {address(b.port)}; what was missed follows"


def test_the_app_says_which_servers_it_skipped_at_start(
    server: ThreadServer, down: socket.socket
) -> None:
    dead = address(port_of(down))

    async def scenario() -> list[str]:
        with create_pipe_input() as keys:
            config = SessionConfig(
                name="alice", servers=((LOCAL, port_of(down)), (LOCAL, server.port))
            )
            chat = ChatApp(config, input=keys, output=DummyOutput(), bell=False)
            run = asyncio.create_task(chat.run())
            await until(lambda: chat.state.status == "online" and "lobby" in chat.state.panes)
            assert chat.state.server == address(server.port)
            notes = [line.text for line in chat.state.panes["lobby"].lines]
            keys.send_text("/quit\r")
            assert await asyncio.wait_for(run, 10) == 0
            return notes

    notes = asyncio.run(scenario())
    expected = f"cannot connect to {dead}: connection refused; connected to {address(server.port)}"
    assert expected in notes
