"""A real server process: SIGTERM, SIGINT and SIGHUP shut it down in order."""

from __future__ import annotations

import signal
import time

import pytest

from chatserver.protocol import encode_frame
from tests.helpers import Client, LineClient, ProcessServer
from tests.server.support import assert_closed


# SIGHUP too (issue 12): a closed terminal or ssh session used to kill the
# server without a word to its clients.
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_graceful_shutdown(sig):
    proc = ProcessServer()
    clients = []
    try:
        alice = Client(proc.port)
        clients.append(alice)
        alice.hello("alice", rooms=["lobby", "dev"])
        bob = Client(proc.port)
        clients.append(bob)
        bob.hello("bob")
        nc = LineClient(proc.port)
        clients.append(nc)
        nc.send(b"carol\r\n")
        nc.expect("welcome, carol")
        idle = Client(proc.port)  # connected, hello not said yet
        clients.append(idle)
        alice.expect("join", name="carol")
        proc.wait_log(r"carol: hello")

        started = time.monotonic()
        proc.proc.send_signal(sig)
        for client in (alice, bob):
            events = assert_closed(client, "shutdown")
            # Nobody is told of the others' leaving: everyone is going.
            assert not [e for e in events if e["type"] in ("leave", "error")], events
        assert nc.expect(r"-- bye \(shutdown\)").endswith("\r\n")
        assert idle.wait_closed() == []
        assert proc.wait_exit(5) == 0
        assert time.monotonic() - started < 5
        log = "".join(proc.log)
        assert "Traceback" not in log and "ERROR" not in log, log
        assert f"shutting down on {sig.name}" in log and "stopped" in log
        # Text of messages never reaches the log above DEBUG.
    finally:
        for client in clients:
            client.close()
        proc.stop()


def test_log_lines_and_no_message_text():
    proc = ProcessServer()
    try:
        alice = Client(proc.port)
        alice.hello("alice")
        alice.send({"type": "say", "text": "top secret words"})
        alice.expect("msg")
        alice.send_raw(b"+1        ")  # a bad header: logged with the peer address
        alice.wait_closed()
        proc.wait_log(r"127\.0\.0\.1:\d+ .*disconnect")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(5) == 0
        log = "".join(proc.log)
        assert "top secret" not in log
        assert "Traceback" not in log
        assert "bad_header" in log
    finally:
        proc.stop()


def test_shutdown_while_a_client_is_throttled():
    """A client paused for its rate must not wake up into a half torn-down hub."""
    proc = ProcessServer("--msg-rate", "4", "--msg-burst", "1")
    try:
        alice = Client(proc.port)
        alice.hello("alice")
        alice.send_raw(b"".join(encode_frame(b'{"type":"say","text":"t"}') for _ in range(3)))
        alice.expect("msg")  # the first goes through; reading now pauses for 0.25 s
        proc.proc.send_signal(signal.SIGTERM)
        events = assert_closed(alice, "shutdown")
        assert not [e for e in events if e["type"] == "error"], events
        assert proc.wait_exit(5) == 0
        log = "".join(proc.log)
        assert "Traceback" not in log and "internal error" not in log, log
    finally:
        proc.stop()


def test_sighup_is_ignored_under_nohup():
    """Started with SIGHUP ignored (``nohup``), the server keeps ignoring it."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # inherited by the child
    try:
        proc = ProcessServer()
    finally:
        signal.signal(signal.SIGHUP, previous)
    try:
        alice = Client(proc.port)
        alice.hello("alice")
        proc.proc.send_signal(signal.SIGHUP)  # discarded by the kernel: ignored
        proc.proc.send_signal(signal.SIGTERM)
        assert_closed(alice, "shutdown")
        assert proc.wait_exit(5) == 0
        log = "".join(proc.log)
        assert "shutting down on SIGTERM" in log and "SIGHUP" not in log, log
        alice.close()
    finally:
        proc.stop()
