"""``python -m chatclient``: parse the arguments, then run the full-screen app or script mode."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import sys
from collections.abc import Sequence

from chatserver.protocol import ProtocolError, check_name, check_room

from .session import DEFAULT_PORT, SessionConfig

DEFAULT_HOST = "127.0.0.1"

EXIT_CODES = """\
exit status:
  0    done (script mode: every line was sent and answered)
  1    could not connect (to any --server), or the server closed before welcoming us
  2    bad command line
  3    the server refused us: name taken, bad name, wrong password, server full
  4    the connection was lost (script mode without --listen)
  5    script mode: some input line was refused (bad usage or an error reply)
  130  interrupted
"""


def _default_name() -> str | None:
    try:
        name = os.environ.get("CHAT_NAME") or getpass.getuser()
        return check_name(name)
    except (ProtocolError, OSError, KeyError):
        return None


def parse_server(value: str) -> tuple[str, int | None]:
    """An argparse type: ``HOST``, ``HOST:PORT``, ``[IPV6]`` or ``[IPV6]:PORT``.

    The port is None when the value names none (``--port`` gives it, later).
    """
    if not value or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST[:PORT]")
    if "://" in value or "/" in value or "@" in value:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST[:PORT] (no URLs)")
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{value!r}: brackets hold an IPv6 address, as in [::1]:{DEFAULT_PORT}"
            ) from None
        if not bracket or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"{value!r} is not [IPV6]:PORT")
        host, port = inside, rest[1:] if rest else None
    elif value.count(":") > 1:
        raise argparse.ArgumentTypeError(
            f"{value!r}: write an IPv6 address in brackets, as in [::1]:{DEFAULT_PORT}"
        )
    else:
        host, colon, port_text = value.partition(":")
        if not host or "[" in host or "]" in host:
            raise argparse.ArgumentTypeError(f"{value!r} is not HOST[:PORT]")
        port = port_text if colon else None
    if port is None:
        return host, None
    if not port:
        raise argparse.ArgumentTypeError(f"{value!r}: no port after the colon")
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(f"{value!r}: the port must be from 1 to 65535")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chatclient",
        description="A terminal chat client. On a terminal it opens a full-screen chat; with "
        "a pipe on stdin (or --script) it sends each input line and prints each event.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--name", "-n", default=_default_name(), help="your name (default: $CHAT_NAME or $USER)")
    add("--host", help=f"server address (default: {DEFAULT_HOST}); not with --server")
    add(
        "--port",
        "-p",
        type=int,
        default=DEFAULT_PORT,
        help="server port (default: %(default)s); with --server, the port of a HOST without one",
    )
    add(
        "--server",
        action="append",
        type=parse_server,
        metavar="HOST[:PORT]",
        help="a server to connect to, [IPV6]:PORT for IPv6; repeatable: the others are "
        "tried in turn when one cannot be reached or the connection drops",
    )
    add(
        "--room",
        "-r",
        action="extend",
        nargs="+",
        metavar="ROOM",
        help="rooms to join (default: lobby); repeatable",
    )
    add(
        "--password",
        help="server password (visible in `ps`: prefer --password-file or $CHATSERVER_PASSWORD)",
    )
    add("--password-file", metavar="FILE", help="read the server password from FILE")
    add("--tls", action="store_true", help="connect with TLS")
    add("--cafile", metavar="FILE", help="CA certificates to verify the server with")
    add("--insecure", action="store_true", help="with --tls: do not verify the certificate")
    add("--no-reconnect", action="store_true", help="exit when the connection drops")
    g = p.add_argument_group("full-screen app")
    g.add_argument("--no-bell", action="store_true", help="no terminal bell on mentions")
    s = p.add_argument_group("script mode")
    s.add_argument("--script", action="store_true", help="script mode even on a terminal")
    s.add_argument("--json", action="store_true", help="print events as JSON Lines")
    s.add_argument("--listen", action="store_true", help="keep printing events until interrupted")
    s.add_argument("--send", metavar="TEXT", help="send one line, wait for its echo, exit")
    s.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    s.add_argument(
        "--no-backlog",
        action="store_true",
        help="do not print the recent history sent on joining (missed messages still are)",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.name is None:
        parser.error("--name is required (no usable $USER)")
    try:
        check_name(args.name)
        args.room = list(dict.fromkeys(check_room(r) for r in args.room or ["lobby"]))
    except ProtocolError as exc:
        parser.error(exc.message)
    if not 0 < args.port < 65536:
        parser.error("--port must be from 1 to 65535")
    if args.server and args.host is not None:
        parser.error("--host and --server do not mix: name every server with --server")
    # Every server as (host, port): the --server list, else --host and --port.
    args.servers = list(
        dict.fromkeys((host, port or args.port) for host, port in args.server or ())
    ) or [(args.host or DEFAULT_HOST, args.port)]
    args.host, args.port = args.servers[0]
    if args.password is None and not args.password_file:
        args.password = os.environ.get("CHATSERVER_PASSWORD") or None
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                args.password = f.readline().rstrip("\r\n")
        except OSError as exc:
            parser.error(f"cannot read {args.password_file}: {exc.strerror}")
    return args


def script_mode(args: argparse.Namespace) -> bool:
    if args.script or args.json or args.listen or args.send is not None:
        return True
    return not (sys.stdin.isatty() and sys.stdout.isatty())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    listen = args.listen
    config = SessionConfig(
        name=args.name,
        host=args.host,
        port=args.port,
        servers=tuple(args.servers),
        rooms=tuple(args.room),
        password=args.password,
        tls=args.tls,
        cafile=args.cafile,
        insecure=args.insecure,
    )
    if script_mode(args):
        from .script import run_script

        config.reconnect = listen and not args.no_reconnect
        config.ping_interval = 15.0 if listen else 0.0
        lines = [args.send] if args.send is not None else None
        return run_script(
            config,
            lines=lines,
            json_out=args.json,
            listen=listen,
            quiet=args.quiet,
            no_backlog=args.no_backlog,
        )
    from .tui import run_tui

    config.reconnect = not args.no_reconnect
    config.ping_interval = 10.0
    return run_tui(config, bell=not args.no_bell)


if __name__ == "__main__":
    sys.exit(main())
