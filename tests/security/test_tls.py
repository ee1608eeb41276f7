"""TLS end to end: certificates from trustme, a real server, real clients."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import selectors
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from chatserver.protocol import encode_frame
from tests.client.conftest import run_client
from tests.helpers import TIMEOUT, Client, ProcessServer, ThreadServer, read_to_eof
from tests.security.support import LOOPS, outside_address, welcomed
from tests.server.support import assert_alive, assert_room_carries_on


class TLSClient(Client):
    """The framed JSON test client, over TLS."""

    def __init__(self, port: int, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> None:
        super().__init__(port, host)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def certs(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(paths["cert"]), append=True)
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return paths


@pytest.fixture
def tls_server(certs: dict[str, Path]) -> Iterator[ThreadServer]:
    srv = ThreadServer(
        msg_rate=0, tls_cert=str(certs["cert"]), tls_key=str(certs["key"]), tls_port=0
    )
    yield srv
    srv.stop()


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def tls_port(srv: ThreadServer) -> int:
    assert srv.server.tls_address is not None
    return srv.server.tls_address[1]


def test_tls_and_plain_clients_share_rooms(tls_server: ThreadServer, client_ctx) -> None:
    secure = TLSClient(tls_port(tls_server), client_ctx)
    plain = Client(tls_server.port)
    try:
        assert secure.hello("secure")["name"] == "secure"
        version = secure.sock.version()  # type: ignore[attr-defined]
        assert version in ("TLSv1.2", "TLSv1.3")
        plain.hello("plain")
        secure.expect("join", name="plain")
        secure.send({"type": "say", "text": "over tls", "ref": 1})
        assert plain.expect("msg", text="over tls")["from"] == "secure"
        plain.send({"type": "say", "text": "in clear"})
        assert secure.expect("msg", text="in clear")["from"] == "plain"
    finally:
        secure.close()
        plain.close()


def test_plain_bytes_to_the_tls_port_are_closed_cleanly(
    tls_server: ThreadServer, client_ctx
) -> None:
    secure = TLSClient(tls_port(tls_server), client_ctx)
    secure.hello("secure")
    raw = socket.create_connection(("127.0.0.1", tls_port(tls_server)), timeout=TIMEOUT)
    try:
        raw.sendall(encode_frame(b'{"type": "hello", "name": "sneaky"}'))
        # The handshake fails: the server answers (a TLS alert at most) and
        # closes; the read ends with EOF or a reset, never a timeout.
        assert b"welcome" not in read_to_eof(raw)
        assert_alive(secure)
        assert "sneaky" not in tls_server.call(lambda: list(tls_server.server.hub.users))
    finally:
        raw.close()
        secure.close()


def test_real_client_over_tls_verifies_the_certificate(
    tls_server: ThreadServer, certs: dict[str, Path], client_ctx
) -> None:
    watcher = TLSClient(tls_port(tls_server), client_ctx)
    watcher.hello("watcher")
    port = tls_port(tls_server)
    ok = run_client(port, "--name", "alice", "--tls", "--cafile", str(certs["ca"]), "--send", "hi")
    assert ok.returncode == 0, ok.stderr
    assert watcher.expect("msg", text="hi")["from"] == "alice"

    # Without our CA the certificate is not trusted: a clear line, no traceback.
    refused = run_client(port, "--name", "bob", "--tls", "--send", "hi")
    assert refused.returncode == 1, refused
    assert "certificate" in refused.stderr.lower(), refused.stderr
    assert "Traceback" not in refused.stderr
    # --insecure skips verification (the user said so).
    insecure = run_client(port, "--name", "carol", "--tls", "--insecure", "--send", "yo")
    assert insecure.returncode == 0, insecure.stderr
    assert watcher.expect("msg", text="yo")["from"] == "carol"
    watcher.close()


def test_a_wrong_hostname_is_refused(
    ca: trustme.CA, tmp_path: Path, certs: dict[str, Path]
) -> None:
    other = ca.issue_cert("chat.example.org")
    cert, key = tmp_path / "other.pem", tmp_path / "other.key"
    other.cert_chain_pems[0].write_to_path(str(cert))
    other.private_key_pem.write_to_path(str(key))
    srv = ThreadServer(tls_cert=str(cert), tls_key=str(key), tls_port=0)
    try:
        result = run_client(
            tls_port(srv), "--name", "alice", "--tls", "--cafile", str(certs["ca"]), "--send", "x"
        )
        assert result.returncode == 1, result
        assert "certificate" in result.stderr.lower() and "Traceback" not in result.stderr
    finally:
        srv.stop()


def test_unusable_certificate_stops_start_up(tmp_path: Path, certs: dict[str, Path]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for cert, key in ((junk, certs["key"]), (tmp_path / "missing.pem", certs["key"])):
        cmd = [sys.executable, "-m", "chatserver", "--port", "0", "--db", ":memory:"]
        result = subprocess.run(
            [*cmd, "--tls-cert", str(cert), "--tls-key", str(key)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=os.environ,
        )
        assert result.returncode == 4, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, lines
        assert str(cert) in lines[0] or cert.name in lines[0], lines[0]


# -- Handshakes against the limits (issue 12): a real server process each.

RSS_BOUND_KIB = 24 * 1024  # before: +50 KiB per unfinished handshake, +100 MiB for 2 000


def _tls_args(certs: dict[str, Path]) -> tuple[str, ...]:
    return ("--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]), "--tls-port", "0")


def _tls_port_of(server: ProcessServer) -> int:
    for line in server.log:
        if match := re.search(r"TLS on \S+:(\d+)", line):
            return int(match.group(1))
    raise AssertionError(f"no TLS port in the log: {server.log}")


def _flood_size() -> int:
    """Far more connections than --max-clients, as many as this process may open."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(500, min(2000, soft - 300))


def _raw(host: str, port: int, n: int) -> list[socket.socket]:
    """TCP connections that never start a handshake."""
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection((host, port), timeout=TIMEOUT))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(TIMEOUT)


def _log_lines(server: ProcessServer, pattern: str) -> list[str]:
    return [line for line in list(server.log) if re.search(pattern, line)]


def test_unfinished_handshakes_count_per_address_from_accept(
    start_server, bystanders, certs: dict[str, Path], client_ctx
) -> None:
    """Issue 12: one client held 9 906 unfinished TCP connections to the TLS
    port past --max-per-ip 5; now the sixth is closed at once, before any TLS."""
    addr = outside_address()
    if addr is None:
        pytest.skip("no non-loopback address to connect from")
    args = ("--host", "0.0.0.0", "--max-clients", "100", "--max-per-ip", "5")
    server = start_server(*args, "--hello-timeout", "30", *_tls_args(certs))
    port = _tls_port_of(server)
    users = bystanders(server.port)  # over loopback: exempt from the per-address limit
    baseline = users.baseline()
    rss0 = server.rss_kib()

    flood = _raw(addr, port, _flood_size())
    try:
        # Accepted in order: five are counted and wait; the rest get an EOF.
        for sock in flood[5:25] + flood[-20:]:
            assert read_to_eof(sock) == b""
        assert all(_still_open(sock) for sock in flood[:5])
        assert server.rss_kib() - rss0 < RSS_BOUND_KIB, (server.rss_kib(), rss0)
        users.assert_unhurt(baseline)
        # Newcomers, TLS and plain, get in and chat meanwhile.
        secure = TLSClient(port, client_ctx)
        secure.hello("secure")
        plain = Client(server.port)
        plain.hello("plain")
        assert_room_carries_on(secure, plain)
        secure.close()
        plain.close()
        # One line for the flood, not one a connection (and no traceback).
        assert len(_log_lines(server, "closed at once")) <= 2, server.log
        assert not _log_lines(server, "Traceback|ERROR")
    finally:
        for sock in flood:
            sock.close()
    # Its count goes back to zero: five again from that address, not a sixth.
    again = [
        welcomed(port, addr, f"again{i}", lambda p, h: TLSClient(p, client_ctx, h))
        for i in range(5)
    ]
    with pytest.raises(OSError):
        TLSClient(port, client_ctx, addr).hello("sixth")
    users.assert_unhurt(baseline)
    for c in again:
        c.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_unfinished_handshakes_past_max_clients(
    start_server, bystanders, certs: dict[str, Path], client_ctx, loop: str
) -> None:
    """From loopback (no per-address limit) the total holds: past --max-clients
    a connection to the TLS port is closed at once; memory stays flat."""
    limit = 50
    server = start_server(
        "--loop", loop, "--max-clients", str(limit), "--hello-timeout", "30", *_tls_args(certs)
    )
    port = _tls_port_of(server)
    users = bystanders(server.port)
    secure = TLSClient(port, client_ctx)
    secure.hello("secure")
    users.alice.expect("join", name="secure")
    baseline = users.baseline()
    rss0 = server.rss_kib()

    flood = _raw("127.0.0.1", port, _flood_size())
    try:
        free = limit - 3
        for sock in flood[free : free + 20] + flood[-20:]:
            assert read_to_eof(sock) == b""
        assert all(_still_open(sock) for sock in flood[:free])
        assert server.rss_kib() - rss0 < RSS_BOUND_KIB, (server.rss_kib(), rss0)
        users.assert_unhurt(baseline)
        secure.send({"type": "say", "text": "over tls"})
        assert users.bob.expect("msg", text="over tls")["from"] == "secure"
        assert len(_log_lines(server, "closed at once")) <= 2, server.log
        assert not _log_lines(server, "Traceback|ERROR")
    finally:
        for sock in flood:
            sock.close()
    # The count is back to the three users: exactly limit - 3 more fit.
    newcomers = [welcomed(server.port, "127.0.0.1", f"new{i}") for i in range(limit - 3)]
    extra = Client(server.port)
    extra.send({"type": "hello", "name": "onetoomany"})
    events = extra.wait_closed()
    assert [(e["type"], e.get("code")) for e in events] == [("error", "server_full")], events
    users.assert_unhurt(baseline)
    for c in (*newcomers, extra, secure):
        c.close()


def _client_hello(ctx: ssl.SSLContext) -> bytes:
    """A client's first handshake flight, made without a socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("loop", LOOPS)
def test_handshakes_in_progress_are_capped(
    start_server, bystanders, certs: dict[str, Path], client_ctx, loop: str
) -> None:
    """--max-handshakes 2: of 16 clients that send a ClientHello and never
    finish, at most two are answered at a time; the others wait their turn."""
    cap = 2
    server = start_server(
        "--loop", loop, "--max-handshakes", str(cap), "--hello-timeout", "30", *_tls_args(certs)
    )
    port = _tls_port_of(server)
    users = bystanders(server.port)
    baseline = users.baseline()
    socks = _raw("127.0.0.1", port, 16)
    selector = selectors.DefaultSelector()
    try:
        for sock in socks:
            sock.sendall(_client_hello(client_ctx))
            selector.register(sock, selectors.EVENT_READ)
        # A socket the server answered holds a handshake slot until we close it;
        # close them one at a time and the next in line is answered.
        answered: set[socket.socket] = set()
        while len(answered) < len(socks):
            ready = selector.select(TIMEOUT)
            assert ready, f"stuck with {len(answered)} of {len(socks)} answered"
            for key, _ in ready:
                selector.unregister(key.fileobj)
                answered.add(key.fileobj)  # type: ignore[arg-type]
            holding = [s for s in answered if s.fileno() != -1]
            assert len(holding) <= cap, len(holding)
            users.assert_unhurt(baseline, n=1)
            holding[0].close()
        # A full handshake still goes through afterwards.
        secure = TLSClient(port, client_ctx)
        secure.hello("secure")
        secure.close()
    finally:
        selector.close()
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_stalled_handshake_ends_at_the_hello_deadline(
    start_server, certs: dict[str, Path], client_ctx, loop: str
) -> None:
    """--max-handshakes 1 --hello-timeout 1: a client that stalls in its
    handshake holds the slot until the deadline (the TLS layer aborts it), and
    one waiting behind it is closed at its own deadline, unanswered."""
    server = start_server(
        "--loop", loop, "--max-handshakes", "1", "--hello-timeout", "1", *_tls_args(certs)
    )
    port = _tls_port_of(server)
    stalled, waiting = _raw("127.0.0.1", port, 2)
    try:
        start = time.monotonic()
        stalled.sendall(_client_hello(client_ctx))
        assert stalled.recv(1)  # its ServerHello: the slot is taken
        waiting.sendall(_client_hello(client_ctx))
        read_to_eof(stalled)
        assert read_to_eof(waiting) == b""
        assert 0.8 < time.monotonic() - start < 3
        deadline = time.monotonic() + TIMEOUT
        while len(_log_lines(server, r"no TLS handshake within 1.0s")) < 2:
            assert time.monotonic() < deadline, server.log
            time.sleep(0.05)
        secure = TLSClient(port, client_ctx)  # the slot is free again
        secure.hello("secure")
        secure.close()
    finally:
        stalled.close()
        waiting.close()
