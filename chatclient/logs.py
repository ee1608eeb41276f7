"""Pane logs on disk: one plain-text file per pane, like irssi's and WeeChat's.

``<log_dir>/<server>/<pane>.log``, e.g. ``127.0.0.1_5500/lobby.log`` and
``127.0.0.1_5500/@bob.log``, in local time with the date::

    --- log opened 2026-12-02 10:00:00 (lobby on 127.0.0.1:5500)
    2026-12-02 10:02:03 <bob> hello
    2026-12-02 10:02:05 * bob waves
    2026-12-02 10:03:00 -- carol joined lobby

No message is logged twice. Within one run, a line with an id is written
only when its (ts, id) is later than the last one written to that pane:
``/history`` answers and the replay after a reconnect are older. Across
runs, the replay on joining repeats what the last run logged; those lines
are recognised by their text in the file's last MiB, read when the pane's log
is first used (the file holds no ids, so that people can read it). A message
counts as "the same" when its whole rendered line (time to the second,
nick, text) is: the one false match is the same person saying the same
thing twice in the same second across a restart, and then it is logged once.

A log that cannot be written (read-only directory, disk full) is reported
once through ``on_error`` and stops; the app goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from chatserver.render import escape

TAIL_BYTES = 1 << 20  # of an existing log read at open: what a rejoin's replay can repeat
NAME_MAX_BYTES = 200  # below every file system's 255, with room for ".log"
_SAFE_ASCII = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class LogLine(Protocol):
    """What a log needs of a pane line (``chatclient.state.Line``)."""

    @property
    def kind(self) -> str: ...
    @property
    def ts(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def nick(self) -> str: ...


def safe_name(key: str) -> str:
    """A pane key as a file name: case-folded, one file per pane, safe for any name.

    Lower-case ASCII letters, digits, ``-`` and ``_`` stay, as do letters and
    digits of other scripts (a Cyrillic room keeps a readable file name);
    ``@`` may start the name (DM panes), ``.`` may appear after the first
    character. Everything else, ``%`` included, becomes ``%XX`` per UTF-8
    byte, so two different keys never share a file. A name too long for a
    file system is cut and ends in a hash of the whole.
    """
    out: list[str] = []
    for i, ch in enumerate(key.casefold()):
        keep = (
            ch in _SAFE_ASCII
            or (not ch.isascii() and ch.isalnum() and ch.isprintable())
            or (ch == "@" and i == 0)
            or (ch == "." and i > 0)
        )
        out.append(ch if keep else "".join(f"%{b:02X}" for b in ch.encode("utf-8", "replace")))
    name = "".join(out) or "%"  # every escape is %XX, so a lone % is nobody else's
    if len(name.encode()) > NAME_MAX_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        cut = name.encode()[: NAME_MAX_BYTES - 17].decode("utf-8", "ignore")
        name = f"{cut}~{digest}"
    return name


def server_dir_name(label: str) -> str:
    """``127.0.0.1:5500`` -> ``127.0.0.1_5500``, ``[::1]:5500`` -> ``__1_5500``."""
    return safe_name(label.replace("[", "").replace("]", "").replace(":", "_"))


def local_stamp(ts: str) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in local time of an RFC 3339 timestamp (unparsable: escaped)."""
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return escape(ts)[:19] or "????-??-?? ??:??:??"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_line(line: LogLine) -> str:
    """One log line, no newline; every piece of network text escaped."""
    kind = str(getattr(line.kind, "value", line.kind))
    nick, text = escape(line.nick), escape(line.text)
    if kind in ("msg", "own", "dm"):
        body = f"<{nick}> {text}"
    elif kind == "action":
        body = f"* {nick} {text}"
    elif kind == "error":
        body = f"!! {text}"
    elif kind == "gap":
        body = f"~~ {text}"
    else:
        body = f"-- {text}"
    return f"{local_stamp(line.ts)} {body}"


def _order_key(line: Any) -> tuple[datetime, int] | None:
    ident = getattr(line, "id", None)
    if not isinstance(ident, int):
        return None
    try:
        when = datetime.fromisoformat(str(line.ts).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when, ident)


def _make_dirs(path: Path) -> None:
    """mkdir -p, each directory we create private (0700): logs are other people's words."""
    missing: list[Path] = []
    for parent in (path, *path.parents):
        if parent.is_dir():
            break
        missing.append(parent)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)


@dataclass
class _PaneLog:
    path: Path
    file: TextIO | None = None
    tail: set[str] = field(default_factory=set)  # lines of the file's last MiB
    last: tuple[datetime, int] | None = None  # (ts, id) of the newest message written or seen
    failed: bool = False


class PaneLogs:
    """The logs of one server's panes. Not thread-safe: call it from the event loop."""

    def __init__(
        self,
        log_dir: Path,
        server_label: str,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.server_label = server_label
        self.dir = Path(log_dir) / server_dir_name(server_label)
        self.on_error = on_error
        self._panes: dict[str, _PaneLog] = {}

    def path(self, pane_key: str) -> Path:
        return self.dir / f"{safe_name(pane_key)}.log"

    def log(self, pane_key: str, title: str, line: Any) -> None:
        """Append one pane line (kind, ts, text, nick, id) unless it was logged already."""
        pane = self._panes.get(pane_key)
        if pane is None:
            pane = self._panes[pane_key] = self._load(pane_key, title)
        if pane.failed:
            return
        text = format_line(line)
        if getattr(line, "id", None) is not None:  # a message: it may be a replay
            key = _order_key(line)
            if key is not None:
                if pane.last is not None and key <= pane.last:
                    return  # older than what this pane has logged: /history or a replay
                pane.last = key
            if text in pane.tail:
                return  # the last run logged it; the rejoin replayed it
        try:
            if pane.file is None:
                pane.file = self._open(pane.path)
                opened = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
                where = escape(f"{title} on {self.server_label}")
                pane.file.write(f"--- log opened {opened} ({where})\n")
            pane.file.write(text + "\n")
        except (OSError, ValueError) as exc:
            self._fail(pane, title, exc)

    def close(self) -> None:
        for pane in self._panes.values():
            self._close(pane)
        self._panes.clear()

    def forget(self, pane_key: str) -> None:
        """Close one pane's file (the pane was closed); it reopens if the pane comes back."""
        pane = self._panes.pop(pane_key, None)
        if pane is not None:
            self._close(pane)

    # ------------------------------------------------------------- internals

    def _load(self, pane_key: str, title: str) -> _PaneLog:
        pane = _PaneLog(self.path(pane_key))
        try:
            # Non-blocking: a FIFO put where the log goes must not hang the app.
            fd = os.open(pane.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return pane  # a device or a pipe: nothing to read back
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - TAIL_BYTES))
                data = f.read(TAIL_BYTES)
        except FileNotFoundError:
            return pane
        except OSError as exc:
            self._fail(pane, title, exc)
            return pane
        lines = data.decode("utf-8", "replace").split("\n")
        if len(data) == TAIL_BYTES and lines:
            lines = lines[1:]  # the first one is cut
        pane.tail = set(lines)
        return pane

    def _open(self, path: Path) -> TextIO:
        _make_dirs(path.parent)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(path, flags, 0o600)
        # Line-buffered: a crash loses nothing, and a full disk shows at once.
        return os.fdopen(fd, "a", encoding="utf-8", errors="replace", newline="\n", buffering=1)

    def _fail(self, pane: _PaneLog, title: str, exc: Exception) -> None:
        pane.failed = True
        self._close(pane)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if self.on_error is not None:
            self.on_error(f"log of {title} stopped: {reason.lower()} ({pane.path})")

    @staticmethod
    def _close(pane: _PaneLog) -> None:
        file, pane.file = pane.file, None
        if file is not None:
            with contextlib.suppress(OSError, ValueError):
                file.close()


__all__ = ["PaneLogs", "format_line", "local_stamp", "safe_name", "server_dir_name"]
