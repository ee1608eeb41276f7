"""Input history that survives a restart: prompt_toolkit's FileHistory, bounded and private.

The file keeps FileHistory's format (``# time`` then ``+line``), so
prompt_toolkit's own code reads and writes it; this subclass adds what a
chat client needs on top:

- lines that carry a password (``/register``, ``/passwd``, ``/unregister``,
  a room key on ``/join`` or ``/mode +k``) are never stored, on disk or in
  memory, so Up cannot bring them back on a shared screen;
- at most ``size`` entries are loaded, and the file is rewritten down to
  ``size`` when it has grown to twice that (appending stays one write);
- the file is created 0600 in a 0700 directory;
- a file that cannot be read or written is reported once through
  ``on_error`` and the history goes on in memory.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from prompt_toolkit.history import FileHistory

from .logs import _make_dirs

# Commands whose arguments are secrets (PROTOCOL.md 9.1, 9.2).
SECRET_COMMANDS = frozenset({"register", "passwd", "unregister"})


def is_secret(line: str) -> bool:
    """Whether an input line carries a password or a room key, and must not be kept."""
    if not line.startswith("/") or line.startswith("//"):
        return False  # said to the room: it went out in clear anyway
    word, _, rest = line[1:].partition(" ")
    command = word.lower()
    if command in SECRET_COMMANDS:
        return True
    args = rest.split()
    if command in ("join", "j") and len(args) > 1:
        return True  # /join ROOM KEY
    return command == "mode" and any(a.startswith("+") and "k" in a for a in args)


class ChatHistory(FileHistory):
    """``FileHistory(path)`` bounded to ``size`` entries; ``path`` None keeps it in memory."""

    def __init__(
        self,
        path: Path | None,
        size: int = 1000,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(str(path) if path is not None else os.devnull)
        self.path = path
        self.size = max(1, size)
        self.on_error = on_error
        self._failed = path is None
        self._reported = False

    # Buffer calls this on Enter (append_to_history); so does our own code.
    def append_string(self, string: str) -> None:
        if is_secret(string):
            return
        if self._loaded_strings and self._loaded_strings[0] == string:
            return  # Up, Enter: the same line again is not a new entry
        self._loaded_strings.insert(0, string)
        del self._loaded_strings[self.size :]
        self.store_string(string)

    def load_history_strings(self) -> Iterable[str]:
        if self._failed:
            return []
        try:
            newest_first = list(super().load_history_strings())
        except OSError as exc:
            self._fail(exc)
            return []
        if len(newest_first) >= 2 * self.size:
            self._rewrite(newest_first[: self.size])
        kept = [s for s in newest_first if not is_secret(s)]  # from before this rule, or by hand
        return kept[: self.size]

    def store_string(self, string: str) -> None:
        # Checked here too: a ThreadedHistory wrapper calls this, not append_string.
        if self._failed or self.path is None or is_secret(string):
            return
        entry = f"\n# {datetime.datetime.now()}\n" + "".join(
            f"+{line}\n" for line in string.split("\n")
        )
        try:
            _make_dirs(self.path.parent)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:  # one write: two clients running at once interleave whole entries
                os.write(fd, entry.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError as exc:
            self._fail(exc)

    def _rewrite(self, newest_first: list[str]) -> None:
        """Replace the file by its newest entries, atomically (a crash keeps the old one)."""
        assert self.path is not None
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = "".join(
            "\n# compacted\n" + "".join(f"+{line}\n" for line in s.split("\n"))
            for s in reversed(newest_first)
            if not is_secret(s)
        )
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
                f.write(body)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self._fail(exc, stop=False)  # appending may still work: keep it

    def _fail(self, exc: OSError, *, stop: bool = True) -> None:
        if self._failed:
            return
        self._failed = stop
        if self.on_error is not None and not self._reported:
            self._reported = True
            reason = (exc.strerror or str(exc)).lower()
            self.on_error(f"input history not saved: {reason} ({self.path})")


__all__ = ["SECRET_COMMANDS", "ChatHistory", "is_secret"]
