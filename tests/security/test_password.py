"""The server password: right, wrong and missing, for every kind of client."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.client.conftest import ROOT
from tests.helpers import TIMEOUT, Client, LineClient, ProcessServer
from tests.server.support import assert_alive

SECRET = "correct horse battery staple"
DELAY = 0.4


@pytest.fixture
def guarded(make_server):
    return make_server(msg_rate=0, password=SECRET, password_delay=DELAY)


def test_json_client_with_the_password(guarded) -> None:
    client = Client(guarded.port)
    try:
        assert client.hello("alice", password=SECRET)["name"] == "alice"
        assert_alive(client)
    finally:
        client.close()


@pytest.mark.parametrize("given", [None, "", "wrong", SECRET + "x", SECRET.upper()])
def test_json_client_wrong_or_missing(guarded, given) -> None:
    member = Client(guarded.port)
    member.hello("member", password=SECRET)
    guesser = Client(guarded.port)
    try:
        hello = {"type": "hello", "name": "guesser", "ref": "h"}
        if given is not None:
            hello["password"] = given
        started = time.monotonic()
        guesser.send(hello)
        # The delay slows the guesser only: others are answered meanwhile.
        assert_alive(member)
        assert time.monotonic() - started < DELAY
        events = guesser.wait_closed()
        waited = time.monotonic() - started
        assert [e["type"] for e in events] == ["error"], events
        assert events[0]["code"] == "bad_password" and events[0]["ref"] == "h"
        assert waited >= DELAY * 0.9, waited
        assert "guesser" not in guarded.call(lambda: list(guarded.server.hub.users))
    finally:
        member.close()
        guesser.close()


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_line_client_pass_line(guarded, eol) -> None:
    nc = LineClient(guarded.port)
    try:
        nc.send(b"PASS " + SECRET.encode() + eol + b"carol" + eol)
        nc.expect(r"welcome, carol!")
    finally:
        nc.close()

    bad = LineClient(guarded.port)
    try:
        bad.send(b"PASS nope" + eol + b"mallory" + eol)
        bad.expect(r"!! bad_password: ")
        bad.sock.settimeout(TIMEOUT)
        while bad.sock.recv(4096):
            pass
    finally:
        bad.close()

    missing = LineClient(guarded.port)
    try:
        missing.send(b"mallory" + eol)
        missing.expect(r"!! bad_password: ")
    finally:
        missing.close()


def test_framed_plain_text_client_pass_frame(guarded) -> None:
    client = Client(guarded.port)
    try:
        client.send_frame(b"PASS " + SECRET.encode())
        client.send_frame(b"dave")
        assert b"welcome, dave!" in client.recv_payload()
    finally:
        client.close()
    bad = Client(guarded.port)
    try:
        bad.send_frame(b"PASS guess")
        bad.send_frame(b"eve")
        assert b"bad_password" in bad.recv_payload()
    finally:
        bad.close()


def test_no_password_set_ignores_a_pass_line(server) -> None:
    nc = LineClient(server.port)
    try:
        nc.send(b"PASS whatever\nfrank\n")
        nc.expect(r"welcome, frank!")
    finally:
        nc.close()


def test_password_from_the_environment_is_never_logged() -> None:
    env = {"CHATSERVER_PASSWORD": SECRET}
    proc = ProcessServer("--log-level", "DEBUG", env=env)
    try:
        good = Client(proc.port)
        good.hello("alice", password=SECRET)
        bad = Client(proc.port)
        bad.send({"type": "hello", "name": "bob", "password": "hunter2-guess"})
        bad.wait_closed()
        proc.wait_log(r"bob|wrong or missing password")
        good.send({"type": "say", "text": "done"})
        good.expect("msg", text="done")
        good.close()
    finally:
        proc.proc.terminate()
        _, rest = proc.proc.communicate(timeout=TIMEOUT)
        proc.stop()
    log = "".join(proc.log) + rest
    assert "wrong or missing password" in log
    assert SECRET not in log and "hunter2-guess" not in log


def test_real_client_with_the_password(tmp_path) -> None:
    proc = ProcessServer(env={"CHATSERVER_PASSWORD": SECRET})
    try:
        base = [sys.executable, "-m", "chatclient", "--port", str(proc.port), "--name"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CHATSERVER_PASSWORD": SECRET}
        ok = subprocess.run(
            [*base, "alice", "--send", "hi"], capture_output=True, text=True, env=env, timeout=15
        )
        assert ok.returncode == 0, ok.stderr
        pw = tmp_path / "pw"
        pw.write_text("not it\n")
        env.pop("CHATSERVER_PASSWORD")
        wrong = subprocess.run(
            [*base, "bob", "--password-file", str(pw), "--send", "hi"],
            capture_output=True,
            text=True,
            env=env,
            timeout=15,
        )
        assert wrong.returncode == 3, wrong
        assert "password" in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        proc.stop()
