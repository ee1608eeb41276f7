"""Script mode end to end: a real server, the real client process, pipes."""

from __future__ import annotations

import json

from tests.client.conftest import run_client, spawn_client
from tests.helpers import Client, ThreadServer


def test_piped_lines_arrive_and_the_client_exits_cleanly(
    server: ThreadServer, connect: type[Client]
) -> None:
    bob = connect("bob")
    lines = "".join(f"line {i}\n" for i in range(30)) + "/me waves\n/msg bob psst\n"
    result = run_client(server.port, "--name", "alice", input=lines)
    assert result.returncode == 0, result.stderr
    for i in range(30):
        assert bob.expect("msg", text=f"line {i}")["from"] == "alice"
    assert bob.expect("msg", text="waves")["action"] is True
    assert bob.expect("dm", text="psst")["from"] == "alice"
    out = result.stdout.splitlines()
    # Every echo was printed before the exit, in the contract's rendered form.
    assert sum("[lobby] <alice> line" in line for line in out) == 30
    assert any(line.endswith("[lobby] * alice waves") for line in out)
    assert any(line.endswith("-> bob: psst") for line in out)
    assert result.stderr == ""


def test_json_output_parses_and_carries_refs(server: ThreadServer) -> None:
    result = run_client(
        server.port, "--name", "alice", "--json", "--room", "dev", input="hi\n/who\n"
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[:3] == ["welcome", "join", "history"]
    echo = next(e for e in events if e["type"] == "msg")
    assert echo["text"] == "hi" and echo["room"] == "dev" and echo["ref"]
    assert next(e for e in events if e["type"] == "who")["names"] == ["alice"]
    assert "pong" not in types  # the client's own end-of-input ping stays hidden


def test_send_one_message_and_exit(server: ThreadServer, connect: type[Client]) -> None:
    bob = connect("bob", rooms=["ops"])
    result = run_client(server.port, "--name", "cron", "--room", "ops", "--send", "backup done")
    assert result.returncode == 0, result.stderr
    assert bob.expect("msg", text="backup done")["room"] == "ops"
    assert result.stdout.splitlines()[-1].endswith("[ops] <cron> backup done")


def test_refused_lines_give_status_5(server: ThreadServer) -> None:
    result = run_client(server.port, "--name", "alice", input="/msg nobody hi\n/bogus\nok\n")
    assert result.returncode == 5
    assert "!! no_such_user: nobody called nobody" in result.stdout
    assert "unknown_command" in result.stderr
    assert "<alice> ok" in result.stdout  # later lines still go out


def test_name_taken_is_a_clear_error(server: ThreadServer, connect: type[Client]) -> None:
    connect("alice")
    result = run_client(server.port, "--name", "ALICE", "--send", "hi")
    assert result.returncode == 3
    assert (
        result.stderr.strip()
        == "chatclient: refused by the server: the name ALICE is taken (name_taken)"
    )


def test_connection_refused_and_bad_usage() -> None:
    probe = ThreadServer()
    port = probe.port
    probe.stop()  # nothing listens there now
    result = run_client(port, "--name", "alice", "--send", "hi")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot connect" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_client(port, "--name", "bad name!", "--send", "hi")
    assert result.returncode == 2 and "usage" in result.stderr
    result = run_client(port, "--help")
    assert result.returncode == 0 and "exit status" in result.stdout


def test_server_shutdown_mid_script_is_status_4() -> None:
    srv = ThreadServer(msg_rate=0)
    watcher = Client(srv.port)
    watcher.hello("watcher")
    proc = spawn_client(srv.port, "--name", "alice")
    try:
        proc.stdin.write("first\n")
        proc.stdin.flush()
        watcher.expect("msg", text="first")
        srv.stop()  # while the client waits for more input
        assert proc.wait(10) == 4
        assert "connection lost (shutdown)" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.close()


def test_no_backlog_hides_the_join_history(server: ThreadServer, connect: type[Client]) -> None:
    bob = connect("bob")
    bob.send({"type": "say", "text": "old news", "ref": 1})
    bob.expect("msg", text="old news")
    plain = run_client(server.port, "--name", "alice", "--send", "x")
    assert "<bob> old news" in plain.stdout
    quiet = run_client(server.port, "--name", "alice", "--no-backlog", input="y\n/history 5\n")
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stdout.splitlines()
    # Only the explicit /history prints it, after the echo of "y".
    assert [i for i, line in enumerate(lines) if "<bob> old news" in line] == [
        next(i for i, line in enumerate(lines) if "<alice> y" in line) + 1
    ]
