"""The server's settings: their defaults, and the command line that sets them."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import __version__
from .protocol import DEFAULT_MAX_FRAME, DEFAULT_MAX_TEXT
from .sqlite_history import default_db_path

DEFAULT_PORT = 5500


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_frame: int = DEFAULT_MAX_FRAME
    max_text: int = DEFAULT_MAX_TEXT
    msg_rate: float = 20.0  # messages per second per connection; 0 = no limit
    msg_burst: int = 40
    sendq: int = 1 << 20  # unsent bytes for one client before `bye slow_consumer`
    max_clients: int = 10_000
    max_per_ip: int = 64  # loopback is exempt
    max_handshakes: int = 64  # TLS handshakes in progress at once; later ones wait their turn
    hello_timeout: float = 10.0
    frame_timeout: float = 30.0
    max_rooms: int = 50  # rooms per connection
    db: str = ":memory:"  # the command line's default is default_db_path()
    fsync: bool = False  # commits survive power loss, not only a crash
    history_max: int = 10_000  # messages kept per room
    history_days: float | None = None  # and none older than this
    password: str | None = field(default=None, repr=False)  # never printed, never logged
    password_delay: float = 1.0  # seconds before a wrong password is answered
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_port: int | None = None  # 5501 when a certificate is given
    replay: int = 50  # messages replayed on join (--replay; --backlog is its old name)
    listen_backlog: int = 4096  # connections the kernel queues before we accept them
    quiet_room_size: int = 500  # past this many members a room sends no join/leave notices
    resume_max: int = 1000  # messages a resume replays per room; past that, the newest and `more`
    motd: str | None = None
    name_grace: float = 60.0  # seconds a dropped user's name is kept for its session token
    log_level: str = "INFO"
    loop: str = "auto"
    shutdown_timeout: float = 4.0
    close_linger: float = 10.0  # how long a closed client may take to read its last bytes
    redis: str | None = None  # cluster mode: the shared log and names live in this Redis
    node: str | None = None  # welcome.node; the host name and port by default
    node_timeout: float = 15.0  # a process silent this long is taken for dead (cluster)
    redis_prefix: str = "chat"  # the Redis keys' prefix: one Redis may hold several chats
    redis_keep: int = 100_000  # log entries Redis keeps (older ones are in each archive)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(
        prog="chatserver",
        description="A chat server: rooms, direct messages and history over one TCP port "
        "for framed JSON, framed plain-text and line-mode (netcat/telnet) clients.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Exit status: 0 stopped cleanly, 1 cannot listen, 2 usage error, "
        "3 the history database cannot be used, 4 the TLS certificate or key cannot be used, "
        "5 --redis cannot be reached.",
    )
    add = p.add_argument
    add("--host", default=d.host, help="address to listen on (0.0.0.0 exposes it to the network)")
    add("--port", type=int, default=d.port, help="TCP port (0 picks a free one)")
    add("--max-frame", type=_positive_int, default=d.max_frame, help="largest frame, bytes")
    add("--max-text", type=_positive_int, default=d.max_text, help="longest message text, bytes")
    add("--msg-rate", type=_non_negative, default=d.msg_rate, help="messages/s per client; 0: none")
    add("--msg-burst", type=_positive_int, default=d.msg_burst, help="messages a client may burst")
    add("--sendq", type=_positive_int, default=d.sendq, help="unsent bytes before a client is cut")
    add("--max-clients", type=_positive_int, default=d.max_clients, help="connections in all")
    add("--max-per-ip", type=_positive_int, default=d.max_per_ip, help="connections per address")
    add(
        "--max-handshakes",
        type=_positive_int,
        default=d.max_handshakes,
        help="TLS handshakes in progress at once (later ones wait, within --hello-timeout)",
    )
    add("--hello-timeout", type=_non_negative, default=d.hello_timeout, help="seconds to say hello")
    add("--frame-timeout", type=_non_negative, default=d.frame_timeout, help="seconds per frame")
    add(
        "--password-file",
        metavar="FILE",
        help="clients must give the password in FILE's first line "
        "(or set CHATSERVER_PASSWORD; never on the command line, where ps shows it)",
    )
    add("--tls-cert", metavar="FILE", help="TLS certificate chain (PEM): also listen with TLS")
    add("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    add("--tls-port", type=int, help="TLS port (default 5501 with --tls-cert; 0 picks one)")
    add("--max-rooms", type=_positive_int, default=d.max_rooms, help="rooms one client may join")
    add(
        "--db",
        default=str(default_db_path()),
        help="SQLite file for history (created with its folder); :memory: keeps none on disk",
    )
    add("--fsync", action="store_true", help="commits survive power loss, not just a crash")
    add("--history-max", type=_positive_int, default=d.history_max, help="messages kept a room")
    add(
        "--history-days",
        type=_positive_float,
        default=d.history_days,
        help="also forget messages older than this many days",
    )
    add(
        "--replay",
        "--backlog",  # its old name, kept: beside --listen-backlog it read as the socket's
        dest="replay",
        type=int,
        default=d.replay,
        help="messages replayed to a joiner (--backlog is an old name for it)",
    )
    add(
        "--listen-backlog",
        type=_positive_int,
        default=d.listen_backlog,
        help="connections the kernel queues for accepting (capped by net.core.somaxconn): "
        "a reconnect storm waits there instead of being refused",
    )
    add(
        "--quiet-room-size",
        type=_non_negative_int,
        default=d.quiet_room_size,
        help="a room with more members than this sends no join/leave notices "
        "(who lists them on demand); 0: every room sends them",
    )
    add(
        "--resume-max",
        type=_positive_int,
        default=d.resume_max,
        help="messages a resume replays per room (the newest; the client pages the rest)",
    )
    add("--motd", default=d.motd, help="message of the day sent with welcome")
    add(
        "--name-grace",
        type=_non_negative,
        default=d.name_grace,
        help="seconds a dropped client's name and rooms are kept for it to come back; 0: none",
    )
    add(
        "--log-level",
        default=d.log_level,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log detail (stderr); message text only at DEBUG",
    )
    add(
        "--loop",
        default=d.loop,
        choices=["auto", "asyncio", "uvloop"],
        help="event loop: auto uses uvloop when installed",
    )
    add(
        "--redis",
        metavar="URL",
        default=os.environ.get("CHATSERVER_REDIS") or None,
        help="cluster mode: share one chat with every server on this Redis "
        "(redis://host:port/db; or $CHATSERVER_REDIS); needs chatserver[cluster]",
    )
    add(
        "--redis-prefix",
        default=d.redis_prefix,
        help="prefix of this chat's Redis keys (several chats may share one Redis)",
    )
    add("--node", metavar="NAME", help="this process's name in the cluster (default: host:port)")
    add(
        "--node-timeout",
        type=_positive_float,
        default=d.node_timeout,
        help="seconds after which a silent server is taken for dead and its users freed",
    )
    add(
        "--redis-keep",
        type=_positive_int,
        default=d.redis_keep,
        help="log entries kept in Redis (older history is in each server's --db)",
    )
    add("--version", action="version", version=f"chatserver {__version__}")
    return p


DEFAULT_TLS_PORT = 5501


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    parser = build_parser()
    ns = parser.parse_args(argv)
    settings = Settings(**{k: v for k, v in vars(ns).items() if k in Settings.__dataclass_fields__})
    settings.password = read_password(parser, ns.password_file)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if settings.tls_cert and settings.tls_port is None:
        settings.tls_port = DEFAULT_TLS_PORT
    if settings.tls_port is not None and not settings.tls_cert:
        parser.error("--tls-port needs --tls-cert and --tls-key")
    if settings.redis is not None and not settings.redis.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        parser.error(f"--redis {settings.redis}: expected redis://HOST:PORT/DB")
    if settings.node is not None and not (
        0 < len(settings.node) <= 64 and settings.node.isprintable()
    ):
        parser.error("--node: 1 to 64 printable characters")
    return settings


def read_password(parser: argparse.ArgumentParser, path: str | None) -> str | None:
    """The server password: the first line of --password-file, else $CHATSERVER_PASSWORD."""
    if path is None:
        return os.environ.get("CHATSERVER_PASSWORD") or None
    try:
        with open(path, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"cannot read --password-file {path}: {getattr(exc, 'strerror', exc)}")
    if not password:
        parser.error(f"--password-file {path}: the first line is empty")
    return password
