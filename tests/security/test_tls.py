"""TLS end to end: certificates from trustme, a real server, real clients."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from chatserver.protocol import encode_frame
from tests.client.conftest import run_client
from tests.helpers import TIMEOUT, Client, ThreadServer, read_to_eof
from tests.server.support import assert_alive


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
