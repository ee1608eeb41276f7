"""Field rules of the contract: names, room names, text, refs, timestamps."""

from __future__ import annotations

import time
from typing import Any

from .errors import ErrorCode, ProtocolError

NAME_MAX_CHARS = 32
ROOM_MAX_CHARS = 32
REF_MAX_BYTES = 64
DEFAULT_MAX_TEXT = 4096
DEFAULT_ROOM = "lobby"

_NAME_PUNCT = frozenset("_-.[]{}^|")
_ROOM_PUNCT = frozenset("_-")


def _allowed(value: str, punct: frozenset[str]) -> bool:
    return all(ch.isalnum() or ch in punct for ch in value)


def check_name(value: Any) -> str:
    """A user name as given: 1-32 letters, digits and ``_ - . [ ] { } ^ |``."""
    if not isinstance(value, str) or not 1 <= len(value) <= NAME_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_NAME, "a name is 1 to 32 characters")
    if not _allowed(value, _NAME_PUNCT):
        raise ProtocolError(
            ErrorCode.BAD_NAME, "a name has letters, digits and _ - . [ ] { } ^ | only"
        )
    return value


def name_key(name: str) -> str:
    """Names are unique and compared case-insensitively."""
    return name.casefold()


def check_room(value: Any) -> str:
    """The canonical room name: without its optional ``#``, case-folded.

    Rooms compare case-insensitively like names; folding once here means the
    wire, the hub and the history store all agree on one spelling.
    """
    if isinstance(value, str) and value.startswith("#"):
        value = value[1:]
    if not isinstance(value, str) or not 1 <= len(value) <= ROOM_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_ROOM, "a room name is 1 to 32 characters")
    if not _allowed(value, _ROOM_PUNCT):
        raise ProtocolError(ErrorCode.BAD_ROOM, "a room name has letters, digits, _ and - only")
    return value.casefold()


def check_text(value: Any, max_text: int = DEFAULT_MAX_TEXT) -> str:
    """Message text: 1 to ``max_text`` bytes of UTF-8, no NUL."""
    if not isinstance(value, str) or not value:
        raise ProtocolError(ErrorCode.BAD_TEXT, "text must be a non-empty string")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\\ud800" escape
        raise ProtocolError(ErrorCode.BAD_TEXT, "text is not valid Unicode") from None
    if size > max_text:
        raise ProtocolError(ErrorCode.TEXT_TOO_LONG, f"text is over {max_text} bytes")
    if "\x00" in value:
        raise ProtocolError(ErrorCode.BAD_TEXT, "text must not contain NUL")
    return value


def check_ref(value: Any) -> str | int | None:
    """A client's correlation tag: a string or integer of at most 64 bytes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "ref must be a string or an integer")
    try:
        size = len(value.encode()) + 2 if isinstance(value, str) else len(str(value))
    except UnicodeEncodeError:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "ref is not valid Unicode") from None
    if size > REF_MAX_BYTES:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "ref is over 64 bytes")
    return value


_ts_cache: tuple[int, str] = (-1, "")


def format_ts(t: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-24T10:00:00.123Z``."""
    global _ts_cache
    ms_total = int(t * 1000)
    sec, ms = divmod(ms_total, 1000)
    cached_sec, prefix = _ts_cache
    if sec != cached_sec:  # one strftime a second, not one a message
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _ts_cache = (sec, prefix)
    return f"{prefix}.{ms:03d}Z"


def now_ts() -> str:
    return format_ts(time.time())
