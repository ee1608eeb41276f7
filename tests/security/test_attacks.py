"""Hostile clients against a real server process: each attack fails, bystanders carry on.

Every test checks the attacker's outcome and that an ordinary client in the
same room still sends and receives with its round trip in the same range as
before the attack (a generous bound: this is not a benchmark).
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from chatserver.protocol import encode_frame
from tests.helpers import TIMEOUT, Client, LineClient, ProcessServer, read_to_eof

pytestmark = pytest.mark.timeout(90)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def round_trip(client: Client, pair: Client, n: int = 15) -> float:
    """Median seconds for a message from ``client`` to reach ``pair``."""
    times = []
    for i in range(n):
        tag = f"rt-{time.monotonic_ns()}-{i}"
        started = time.perf_counter()
        client.send({"type": "say", "text": tag})
        pair.expect("msg", text=tag)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@contextmanager
def bystanders(port: int) -> Iterator[tuple[Client, Client, float]]:
    """Two ordinary clients in the lobby and their round trip before the attack."""
    a, b = Client(port), Client(port)
    a.hello("bystander-a")
    b.hello("bystander-b")
    a.expect("join", name="bystander-b")
    baseline = round_trip(a, b)
    try:
        yield a, b, baseline
    finally:
        a.close()
        b.close()


def assert_unharmed(a: Client, b: Client, baseline: float) -> None:
    during = round_trip(a, b)
    assert during < max(0.05, 20 * baseline), (during, baseline)


def test_connection_flood_is_refused_and_recovers() -> None:
    proc = ProcessServer("--max-clients", "30", "--msg-rate", "0")
    try:
        with bystanders(proc.port) as (a, b, baseline):
            flood = []
            for i in range(60):
                s = socket.create_connection(("127.0.0.1", proc.port), timeout=TIMEOUT)
                s.sendall(encode_frame(b'{"type": "hello", "name": "f%d"}' % i))
                flood.append(s)
            refused = 0
            for s in flood[28:]:  # 2 bystanders + 28 flooders fill the 30
                data = read_to_eof(s)
                assert b'"server_full"' in data, data
                refused += 1
            assert refused == 32
            assert_unharmed(a, b, baseline)
            for s in flood:
                s.close()
            # The count recovers: new clients are welcome again.
            deadline = time.monotonic() + TIMEOUT
            while True:
                c = Client(proc.port)
                c.send({"type": "hello", "name": "after"})
                event = c.recv()
                c.close()
                if event["type"] == "welcome":
                    break
                assert time.monotonic() < deadline, event
            assert_unharmed(a, b, baseline)
    finally:
        proc.stop()


def test_slowloris_and_silent_connections_are_closed_at_their_deadlines() -> None:
    proc = ProcessServer("--frame-timeout", "1", "--hello-timeout", "1.5", "--msg-rate", "0")
    try:
        with bystanders(proc.port) as (a, b, baseline):
            dribblers = [socket.create_connection(("127.0.0.1", proc.port)) for _ in range(20)]
            silent = [socket.create_connection(("127.0.0.1", proc.port)) for _ in range(20)]
            stop = threading.Event()

            def dribble() -> None:
                # One header byte at a time, slower than the frame deadline allows.
                for byte in b"0000000100":
                    for s in dribblers:
                        with suppress(OSError):
                            s.send(bytes([byte]))
                    if stop.wait(0.3):
                        return

            feeder = threading.Thread(target=dribble, daemon=True)
            feeder.start()
            started = time.monotonic()
            for s in dribblers:
                assert read_to_eof(s).endswith(b'{"type":"bye","reason":"idle"}')
            for s in silent:
                assert read_to_eof(s) == b""
            elapsed = time.monotonic() - started
            assert 1.0 <= elapsed < 6, elapsed
            stop.set()
            feeder.join(TIMEOUT)
            assert_unharmed(a, b, baseline)
            for s in dribblers + silent:
                s.close()
    finally:
        proc.stop()


def test_a_ten_digit_length_is_refused_before_any_payload() -> None:
    proc = ProcessServer()
    try:
        with bystanders(proc.port) as (a, b, baseline):
            s = socket.create_connection(("127.0.0.1", proc.port), timeout=TIMEOUT)
            s.sendall(b"9999999999")
            data = read_to_eof(s)
            assert b'"frame_too_large"' in data and data.endswith(
                b'{"type":"bye","reason":"protocol_error"}'
            )
            s.close()
            assert_unharmed(a, b, baseline)
    finally:
        proc.stop()


def test_a_hundred_megabytes_of_garbage_is_cut_off_early() -> None:
    proc = ProcessServer()
    try:
        with bystanders(proc.port) as (a, b, baseline):
            before = rss_kib(proc.proc.pid)
            s = socket.create_connection(("127.0.0.1", proc.port), timeout=TIMEOUT)
            junk = os.urandom(1 << 20)
            sent = 0
            try:
                while sent < 100 << 20:
                    s.sendall(junk)
                    sent += len(junk)
            except OSError:
                pass  # reset or broken pipe: the server hung up
            assert sent < 100 << 20, "the server read 100 MB of garbage"
            read_to_eof(s)
            s.close()
            assert rss_kib(proc.proc.pid) - before < 16 * 1024
            assert_unharmed(a, b, baseline)
    finally:
        proc.stop()


def test_a_million_tiny_frames_keep_memory_bounded() -> None:
    # The reading that hurts most: a registered client sending a million
    # one-byte frames that are each a request to answer (a bad_json error):
    # with the default rate limit the server stops reading it, and TCP
    # pushes back instead of the server's memory growing.
    proc = ProcessServer()
    try:
        with bystanders(proc.port) as (a, b, baseline):
            before = rss_kib(proc.proc.pid)
            s = socket.create_connection(("127.0.0.1", proc.port), timeout=TIMEOUT)
            s.sendall(encode_frame(b'{"type": "hello", "name": "tiny"}'))
            blob = encode_frame(b"x") * 100_000
            s.setblocking(False)
            sent = 0
            deadline = time.monotonic() + 3
            while sent < 10 * len(blob) and time.monotonic() < deadline:
                try:
                    sent += s.send(blob[sent % len(blob) :])
                except BlockingIOError:
                    time.sleep(0.01)  # pacing the attacker, not synchronising
            assert sent < 10 * len(blob), "the server read a million frames in 3 s"
            assert rss_kib(proc.proc.pid) - before < 16 * 1024
            assert_unharmed(a, b, baseline)
            s.close()
    finally:
        proc.stop()


# Every C0 control but NUL (refused: bad_text) and LF, DEL, and every C1 control.
CONTROLS = "".join(chr(c) for c in [*range(1, 10), *range(11, 32), 127, *range(0x80, 0xA0)])
SEQUENCES = [
    "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "\x1b]0;pwned\x07",  # set the window title
    "\x1b[31mred",  # colour
    "\x1b[6n",  # ask the terminal to answer (a reply injection)
    "\u202eevil\u202c",  # right-to-left override
    "\u2066iso\u2069",
]


def test_terminal_injection_arrives_escaped_at_text_clients() -> None:
    proc = ProcessServer("--msg-rate", "0")
    try:
        sender = Client(proc.port)
        sender.hello("sender")
        line = LineClient(proc.port)
        line.send(b"liner\n")
        line.expect(r"welcome, liner")
        framed = Client(proc.port)
        framed.send_frame(b"framer")
        assert b"welcome, framer" in framed.recv_payload()
        texts = [f"c{CONTROLS}d", *SEQUENCES]
        for i, text in enumerate(texts):
            sender.send({"type": "say", "text": f"<{i}>{text}", "ref": i})
            sender.expect("msg", ref=i)
        for i in range(len(texts)):
            got = line.expect(rf"<{i}>")
            body = got.rstrip("\r\n")
            assert all(ch.isprintable() for ch in body), repr(body)
            payload = framed.recv_payload()
            while f"<{i}>".encode() not in payload:
                payload = framed.recv_payload()
            assert all(ch.isprintable() for ch in payload.decode()), repr(payload)
        sender.send({"type": "say", "text": "nul\x00", "ref": "nul"})
        assert sender.expect("error", ref="nul")["code"] == "bad_text"
        # Names and rooms cannot carry them at all.
        bad = Client(proc.port)
        bad.send({"type": "hello", "name": "x\x1b[2J"})
        assert bad.recv()["code"] == "bad_name"
        sender.send({"type": "join", "room": "r\x1b]0;t\x07", "ref": "j"})
        assert sender.expect("error", ref="j")["code"] == "bad_room"
        for c in (sender, framed, bad):
            c.close()
        line.close()
    finally:
        proc.stop()
