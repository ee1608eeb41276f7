"""``python -m chatclient``: parse the arguments, then run the full-screen app or script mode.

Where a setting comes from, strongest first: the command line, the
environment (``$CHAT_NAME``, ``$CHATSERVER_PASSWORD``), the config file
(``--config``, else ``~/.config/chatclient/config.toml``), the defaults.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from chatserver.protocol import ProtocolError, check_name, check_room

from .config import ConfigError, FileConfig, load_config, parse_server
from .session import DEFAULT_PORT, SessionConfig
from .settings import NOTIFY_MODES, TuiSettings, default_config_file

DEFAULT_HOST = "127.0.0.1"

EXIT_CODES = """\
exit status:
  0    done (script mode: every line was sent and answered)
  1    could not connect (to any --server), or the server closed before welcoming us
  2    bad command line or config file
  3    the server refused us: name taken, bad name, wrong password, server full
  4    the connection was lost (script mode without --listen)
  5    script mode: some input line was refused (bad usage or an error reply)
  130  interrupted
"""


def _default_name(from_file: str | None = None) -> str | None:
    """$CHAT_NAME, else the config file's name, else the login name (when it is a valid name)."""
    chosen = os.environ.get("CHAT_NAME") or from_file
    try:
        return check_name(chosen or getpass.getuser())
    except (ProtocolError, OSError, KeyError):
        return None


def build_parser(file: FileConfig | None = None) -> argparse.ArgumentParser:
    """The parser, its defaults taken from the config file where it sets them."""
    file = file or FileConfig()
    session, ui = file.session, file.ui
    p = argparse.ArgumentParser(
        prog="chatclient",
        description="A terminal chat client. On a terminal it opens a full-screen chat; with "
        "a pipe on stdin (or --script) it sends each input line and prints each event.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add(
        "--config",
        metavar="FILE",
        help=f"the config file (default: {default_config_file()}, if it exists)",
    )
    add(
        "--name",
        "-n",
        default=_default_name(session.get("name")),
        help="your name (default: $CHAT_NAME, the config file's name, or $USER)",
    )
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
    add(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=session.get("tls", False),
        help="connect with TLS",
    )
    add("--cafile", metavar="FILE", help="CA certificates to verify the server with")
    add(
        "--insecure",
        action=argparse.BooleanOptionalAction,
        default=session.get("insecure", False),
        help="with --tls: do not verify the certificate",
    )
    add("--no-reconnect", action="store_true", help="exit when the connection drops")
    g = p.add_argument_group("full-screen app")
    g.add_argument(
        "--bell",
        action=argparse.BooleanOptionalAction,
        default=ui.get("bell", True),
        help="ring the terminal bell on a mention or a direct message",
    )
    g.add_argument(
        "--notify",
        choices=NOTIFY_MODES,
        default=ui.get("notify", "auto"),
        help="desktop notifications on a mention or a direct message (default: %(default)s)",
    )
    g.add_argument(
        "--highlight",
        action="append",
        metavar="WORD",
        help="a word that counts as a mention, besides your name; repeatable "
        "(replaces the config file's list)",
    )
    g.add_argument(
        "--logs",
        action=argparse.BooleanOptionalAction,
        default=ui.get("logs", True),
        help="log every pane to a file",
    )
    g.add_argument("--log-dir", metavar="DIR", help="where the logs go")
    g.add_argument(
        "--mouse",
        action=argparse.BooleanOptionalAction,
        default=ui.get("mouse", True),
        help="capture the mouse (wheel scrolling, clicks); --no-mouse leaves it to the terminal",
    )
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


def _read_config(argv: Sequence[str]) -> FileConfig:
    """The config file named by --config (first, so its values can be the defaults)."""
    pre = argparse.ArgumentParser(prog="chatclient", add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    try:
        return load_config(known.config)
    except ConfigError as exc:
        if "-h" in argv or "--help" in argv:
            return FileConfig()  # --help works even with a broken file
        print(f"chatclient: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    file = _read_config(argv)
    parser = build_parser(file)
    args = parser.parse_args(argv)
    args.file_config = file
    if args.name is None:
        parser.error("--name is required (no usable $USER)")
    # Lists from the file only when the command line names none: flags replace, never add.
    if args.room is None:
        args.room = file.session.get("rooms")
    if args.server is None and args.host is None and "servers" in file.session:
        args.server = file.session["servers"]
    if args.cafile is None and "cafile" in file.session:
        args.cafile = str(file.session["cafile"])
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
        if args.password is None and "password_file" in file.session:
            args.password_file = str(file.session["password_file"])
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                args.password = f.readline().rstrip("\r\n")
        except OSError as exc:
            parser.error(f"cannot read {args.password_file}: {exc.strerror}")
    return args


def build_settings(args: argparse.Namespace) -> TuiSettings:
    """The full-screen app's settings: the file's, then the flags over them."""
    file: FileConfig = getattr(args, "file_config", None) or FileConfig()
    known = {f.name for f in fields(TuiSettings)}
    values = {k: v for k, v in file.ui.items() if k in known}
    values.update(bell=args.bell, notify=args.notify, logs=args.logs, mouse=args.mouse)
    if args.highlight is not None:
        words = [w.strip() for w in args.highlight if w.strip()]
        values["highlight"] = tuple(dict.fromkeys(words))
    if args.log_dir is not None:
        values["log_dir"] = Path(args.log_dir).expanduser().absolute()
    return TuiSettings(**values)


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
    return run_tui(config, build_settings(args))


if __name__ == "__main__":
    sys.exit(main())
