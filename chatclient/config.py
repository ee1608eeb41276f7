"""The config file, ``~/.config/chatclient/config.toml`` (``$XDG_CONFIG_HOME``, ``--config``).

Read with ``tomllib`` and checked whole before anything runs: an unknown key,
a wrong type, a bad colour, key or server is one :class:`ConfigError` naming
the file and the key (``__main__`` prints it on one line, exit status 2).
Values come out ready for use: servers as (host, port or None), rooms
canonical, paths absolute, keys as prompt_toolkit key tuples. The command
line wins over all of it; see ``__main__.parse_args``.

``docs/chatclient.example.toml`` shows every key.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompt_toolkit.keys import ALL_KEYS
from prompt_toolkit.styles import Style

from chatserver.protocol import ProtocolError, check_name, check_room

from .session import DEFAULT_PORT
from .settings import DEFAULT_KEYS, KEY_ACTIONS, NOTIFY_MODES, KeySequence, default_config_file

HIGHLIGHT_MAX = 100  # words; each is one alternative of the mention regex
WORD_MAX = 64


class ConfigError(Exception):
    """A config file that cannot be used: which file, which key, why."""

    def __init__(self, path: Path | str, key: str | None, message: str) -> None:
        self.path, self.key, self.message = str(path), key, message
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class FileConfig:
    """What a config file says; keys it does not set are absent, not defaulted."""

    path: Path | None = None  # the file read; None when the default file does not exist
    session: dict[str, Any] = field(default_factory=dict)  # name, servers, rooms, tls, ...
    ui: dict[str, Any] = field(default_factory=dict)  # TuiSettings keyword arguments


# ---------------------------------------------------------------- servers


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


# ---------------------------------------------------------------- keys

# Human names (lower case) -> prompt_toolkit's. Tab, Enter and Backspace are
# the control characters terminals send for them.
_NAMED_KEYS = {
    "pageup": "pageup",
    "pgup": "pageup",
    "pagedown": "pagedown",
    "pgdn": "pagedown",
    "home": "home",
    "end": "end",
    "insert": "insert",
    "ins": "insert",
    "delete": "delete",
    "del": "delete",
    "up": "up",
    "down": "down",
    "left": "left",
    "right": "right",
    "tab": "c-i",
    "enter": "c-m",
    "return": "c-m",
    "backspace": "c-h",
    "escape": "escape",
    "esc": "escape",
    "space": " ",
    "backtab": "s-tab",
    **{f"f{n}": f"f{n}" for n in range(1, 25)},
}
_MODIFIERS = {
    "ctrl": "ctrl",
    "control": "ctrl",
    "c": "ctrl",
    "alt": "alt",
    "meta": "alt",
    "m": "alt",
    "shift": "shift",
    "s": "shift",
}
_VALID_KEYS = frozenset(ALL_KEYS) - {k for k in ALL_KEYS if k.startswith("<")}


def _parse_key(token: str) -> list[str]:
    """One key with modifiers (``Alt-J``, ``Ctrl-PageUp``, ``c-n``) as prompt_toolkit names."""
    mods: set[str] = set()
    rest = token
    while "-" in rest[:-1]:  # "Alt--" is Alt and the minus key
        head, _, tail = rest.partition("-")
        mod = _MODIFIERS.get(head.lower())
        if mod is None or not tail:
            break
        mods.add(mod)
        rest = tail
    if len(rest) == 1:
        base = rest
    else:
        named = _NAMED_KEYS.get(rest.lower())
        if named is None:
            raise ValueError(f"unknown key {rest!r} in {token!r}")
        base = named
    ctrl, shift = "ctrl" in mods, "shift" in mods
    if len(base) == 1 and base.isalpha() and base.isascii():
        if ctrl:
            if shift:
                raise ValueError(f"{token!r}: terminals send Ctrl-Shift-letter as Ctrl-letter")
            key = f"c-{base.lower()}"
        else:
            # "Alt-A" means the A key, as people say it; Shift-A is the capital.
            key = base.upper() if shift else base.lower()
    elif base == "c-i" and shift and not ctrl:
        key = "s-tab"
    elif ctrl or shift:
        if len(base) == 1 and shift and not ctrl:
            raise ValueError(f"{token!r}: write the character Shift gives instead")
        prefix = ("c-" if ctrl else "") + ("s-" if shift else "")
        key = prefix + ("@" if base == " " else base)
        if key not in _VALID_KEYS:
            raise ValueError(f"{token!r}: terminals cannot send that combination")
    else:
        key = base
    if len(key) > 1 and key not in _VALID_KEYS:
        raise ValueError(f"{token!r}: terminals cannot send that combination")
    return ["escape", key] if "alt" in mods else [key]


def parse_key_spec(spec: str) -> KeySequence:
    """``"Alt-J"`` -> ``("escape", "j")``; keys of a sequence are separated by spaces.

    Modifiers: Ctrl- (C-), Alt- (Meta-, M-), Shift- (S-), any case; keys: a
    character, F1-F24, PageUp, PageDown, Home, End, Insert, Delete, Up, Down,
    Left, Right, Tab, Enter, Backspace, Escape, Space, or a prompt_toolkit
    name (``c-n``, ``s-tab``). An empty spec is no key at all (the action is
    unbound). Raises ValueError saying what is wrong.
    """
    if not isinstance(spec, str):
        raise ValueError('a key is a string such as "Alt-J" or "Ctrl-X Ctrl-C"')
    keys: list[str] = []
    for token in spec.split():
        keys.extend(_parse_key(token))
    if keys and len(keys[0]) == 1 and keys[0] != " ":
        # A plain character first would make that character impossible to type.
        raise ValueError(f"{spec!r} starts with a plain character: add Ctrl- or Alt-")
    if keys == [" "]:
        raise ValueError(f"{spec!r}: Space alone would stop you typing spaces")
    return tuple(keys)


_KEY_WORDS = {"pageup": "PageUp", "pagedown": "PageDown", "s-tab": "Shift-Tab", " ": "Space"}


def format_key_sequence(keys: KeySequence) -> str:
    """The human spelling of a key tuple, for help text: ``("escape", "j")`` -> ``Alt-J``."""
    out: list[str] = []
    alt = False
    for key in keys:
        if key == "escape" and not alt:
            alt = True
            continue
        if key in _KEY_WORDS:
            word = _KEY_WORDS[key]
        elif key.startswith("c-"):
            word = "Ctrl-" + key[2:].capitalize().replace("S-", "Shift-")
        elif key.startswith("s-"):
            word = "Shift-" + key[2:].capitalize()
        elif len(key) == 1:
            word = key.upper() if key.isalpha() and key.islower() else key
        else:
            word = key.capitalize() if not key.startswith("f") else key.upper()
        out.append(("Alt-" if alt else "") + word)
        alt = False
    if alt:
        out.append("Escape")
    return " ".join(out)


# ---------------------------------------------------------------- values


Check = Callable[[str, Any], Any]


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), f"a {type(value).__name__}"
    )


class _Reader:
    """Checks one file's values; every error names the file and the dotted key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sections: dict[str, Mapping[str, Any]] = {}  # table -> its keys, for hints

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, key, message)

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_type_name(value)}")
        return value

    def number(self, key: str, value: Any, low: float = 0, high: float = 86400) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.error(key, f"expected a number, got {_type_name(value)}")
        if not low <= value <= high:
            raise self.error(key, f"must be from {low:g} to {high:g}")
        return float(value)

    def integer(self, key: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_type_name(value)}")
        if not low <= value <= high:
            raise self.error(key, f"must be from {low} to {high}")
        return value

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_type_name(value)}")
        if not value.isprintable():
            raise self.error(key, "must not contain control characters")
        return value

    def strings(self, key: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of strings, got {_type_name(value)}")
        return [self.string(f"{key}[{i}]", item) for i, item in enumerate(value)]

    def path_value(self, key: str, value: Any) -> Path:
        text = self.string(key, value)
        if not text:
            raise self.error(key, "must not be empty")
        # Relative paths are relative to the config file, not to wherever we start.
        return (self.path.parent / Path(text).expanduser()).absolute()

    def table(self, prefix: str, value: Any, checks: Mapping[str, Check]) -> None:
        if not isinstance(value, dict):
            raise self.error(prefix, f"expected a table ([{prefix}]), got {_type_name(value)}")
        for key, item in value.items():
            dotted = f"{prefix}.{key}" if prefix else key
            check = checks.get(key)
            if check is None:
                raise self.error(dotted, self.unknown(key, checks, prefix))
            check(dotted, item)

    def unknown(self, key: str, known: Mapping[str, Any], table: str = "") -> str:
        if key == "password":
            return (
                "a password in clear in the config file is not supported: write it alone "
                "in a file only you can read and name that file with password_file"
            )
        home = next((table for table, keys in self.sections.items() if key in keys), None)
        if home is not None and home != table:
            return f"unknown key here: it belongs in the [{home}] table"
        close = difflib.get_close_matches(key, list(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key{hint}; docs/chatclient.example.toml lists every key"


def _check_hex(style: str) -> None:
    """prompt_toolkit takes ``#zzzzzz`` here and fails only when it draws: check the digits."""
    for word in style.split():
        colour = word.split(":", 1)[1] if word.startswith(("fg:", "bg:")) else word
        digits = colour[1:]
        if colour.startswith("#") and not (
            len(digits) in (3, 6) and all(c in "0123456789abcdefABCDEF" for c in digits)
        ):
            raise ValueError(f"{colour!r} is not #RGB or #RRGGBB")


def _style_classes() -> frozenset[str]:
    """The style classes the app draws with: tui.STYLE's, plus the unstyled ones."""
    from .tui import STYLE  # here: tui imports prompt_toolkit's whole Application

    rules = STYLE.style_rules if isinstance(STYLE, Style) else list(dict(STYLE).items())
    return frozenset(name for names, _ in rules for name in names.split()) | {"text", "input"}


def load_config(path: Path | str | None = None) -> FileConfig:
    """Read and check a config file: ``path`` (must exist), else the default one (may not)."""
    explicit = path is not None
    file = Path(path) if path is not None else default_config_file()
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        if not explicit:
            return FileConfig()
        raise ConfigError(file, None, "no such file") from None
    except OSError as exc:
        raise ConfigError(file, None, f"cannot read it: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, None, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, None, f"not valid TOML: {exc}") from None
    return _read(_Reader(file), doc)


def _read(r: _Reader, doc: dict[str, Any]) -> FileConfig:
    session: dict[str, Any] = {}
    ui: dict[str, Any] = {}

    def put(out: dict[str, Any], name: str, convert: Check) -> Check:
        def check(key: str, value: Any) -> None:
            out[name] = convert(key, value)

        return check

    def name(key: str, value: Any) -> str:
        try:
            return check_name(r.string(key, value))
        except ProtocolError as exc:
            raise r.error(key, exc.message) from None

    def servers(key: str, value: Any) -> list[tuple[str, int | None]]:
        found = []
        for i, item in enumerate(r.strings(key, value)):
            try:
                found.append(parse_server(item))
            except argparse.ArgumentTypeError as exc:
                raise r.error(f"{key}[{i}]", str(exc)) from None
        if not found:
            raise r.error(key, "name at least one server, or leave the key out")
        return found

    def rooms(key: str, value: Any) -> list[str]:
        found = []
        for i, item in enumerate(r.strings(key, value)):
            try:
                found.append(check_room(item))
            except ProtocolError as exc:
                raise r.error(f"{key}[{i}]", exc.message) from None
        return list(dict.fromkeys(found))

    def notify(key: str, value: Any) -> str:
        mode = r.string(key, value)
        if mode not in NOTIFY_MODES:
            raise r.error(key, f"expected one of {', '.join(NOTIFY_MODES)}; got {mode!r}")
        return mode

    def highlight(key: str, value: Any) -> tuple[str, ...]:
        words = r.strings(key, value)
        if len(words) > HIGHLIGHT_MAX:
            raise r.error(key, f"at most {HIGHLIGHT_MAX} words")
        for i, word in enumerate(words):
            if not word.strip() or len(word) > WORD_MAX:
                raise r.error(f"{key}[{i}]", f"a word is 1 to {WORD_MAX} characters")
        return tuple(dict.fromkeys(w.strip() for w in words))

    top: dict[str, Check] = {
        "name": put(session, "name", name),
        "servers": put(session, "servers", servers),
        "rooms": put(session, "rooms", rooms),
        "password_file": put(session, "password_file", r.path_value),
        "tls": put(session, "tls", r.boolean),
        "cafile": put(session, "cafile", r.path_value),
        "insecure": put(session, "insecure", r.boolean),
        "ui": lambda key, value: r.table(key, value, ui_checks),
        "logs": lambda key, value: r.table(key, value, logs_checks),
        "history": lambda key, value: r.table(key, value, history_checks),
        "colours": lambda key, value: colours(key, value),
        "keys": lambda key, value: keys(key, value),
    }
    ui_checks: dict[str, Check] = {
        "bell": put(ui, "bell", r.boolean),
        "bell_interval": put(ui, "bell_interval", r.number),
        "notify": put(ui, "notify", notify),
        "notify_interval": put(ui, "notify_interval", r.number),
        "highlight": put(ui, "highlight", highlight),
        "mouse": put(ui, "mouse", r.boolean),
        "members": put(ui, "members", r.boolean),
        "smart_filter": put(ui, "smart_filter", r.boolean),
        "smart_filter_minutes": put(
            ui, "smart_filter_minutes", lambda k, v: r.number(k, v, 0, 7 * 1440)
        ),
        "scrollback": put(ui, "scrollback", lambda k, v: r.integer(k, v, 100, 1_000_000)),
    }
    logs_checks: dict[str, Check] = {
        "enabled": put(ui, "logs", r.boolean),
        "dir": put(ui, "log_dir", r.path_value),
    }
    history: dict[str, Any] = {}
    history_checks: dict[str, Check] = {
        "save": put(history, "save", r.boolean),
        "file": put(history, "file", r.path_value),
        "size": put(history, "size", lambda k, v: r.integer(k, v, 1, 100_000)),
    }

    def colours(prefix: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise r.error(prefix, f"expected a table ([{prefix}]), got {_type_name(value)}")
        known = _style_classes()
        found: dict[str, str] = {}
        for cls, style in value.items():
            key = f"{prefix}.{cls}"
            if cls not in known:
                close = difflib.get_close_matches(cls, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise r.error(key, f"no such style class{hint}; known: {', '.join(sorted(known))}")
            text = r.string(key, style)
            try:
                Style([(cls, text)])  # parses now: a bad colour name or word raises here
                _check_hex(text)
            except (ValueError, AssertionError) as exc:
                raise r.error(key, f"bad style {text!r}: {exc}") from None
            found[cls] = text
        ui["colours"] = found

    def keys(prefix: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise r.error(prefix, f"expected a table ([{prefix}]), got {_type_name(value)}")
        bound = dict(DEFAULT_KEYS)
        for action, spec in value.items():
            key = f"{prefix}.{action}"
            if action not in KEY_ACTIONS:
                close = difflib.get_close_matches(action, KEY_ACTIONS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise r.error(key, f"no such action{hint}; actions: {', '.join(KEY_ACTIONS)}")
            try:
                bound[action] = parse_key_spec(spec)
            except ValueError as exc:
                raise r.error(key, str(exc)) from None
        by_keys: dict[KeySequence, str] = {}
        for action, seq in bound.items():
            if not seq:
                continue
            other = by_keys.setdefault(seq, action)
            if other != action:
                who = action if action in value else other
                raise r.error(
                    f"{prefix}.{who}",
                    f"{format_key_sequence(seq)} is bound to both {other} and {action}",
                )
        ui["keys"] = bound

    r.sections = {"ui": ui_checks, "logs": logs_checks, "history": history_checks}
    r.table("", doc, top)
    if history:
        if history.get("save", True):
            if "file" in history:
                ui["history_file"] = history["file"]
        else:
            ui["history_file"] = None
        if "size" in history:
            ui["history_size"] = history["size"]
    return FileConfig(path=r.path, session=session, ui=ui)


__all__ = [
    "ConfigError",
    "FileConfig",
    "format_key_sequence",
    "load_config",
    "parse_key_spec",
    "parse_server",
]
