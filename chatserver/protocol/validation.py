"""Field rules of the contract: names, room names, text, refs, timestamps."""

from __future__ import annotations

import time
import unicodedata
from functools import lru_cache
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
    """A user name, NFKC-normalised: 1-32 letters, digits and ``_ - . [ ] { } ^ |``,
    the letters from one script (see :func:`check_script`)."""
    if not isinstance(value, str) or not 1 <= len(value) <= NAME_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_NAME, "a name is 1 to 32 characters")
    # Fullwidth, ligature and "mathematical" forms become the plain letters
    # they look like, so fullwidth `alice` is `alice` (and taken if alice is here).
    value = unicodedata.normalize("NFKC", value)
    if not 1 <= len(value) <= NAME_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_NAME, "a name is 1 to 32 characters")
    if not _allowed(value, _NAME_PUNCT):
        raise ProtocolError(
            ErrorCode.BAD_NAME, "a name has letters, digits and _ - . [ ] { } ^ | only"
        )
    check_script(value, ErrorCode.BAD_NAME, "name")
    return value


def name_key(name: str) -> str:
    """Names are unique and compared case-insensitively (after NFKC, in check_name)."""
    return name.casefold()


# UTS #39 "highly restrictive": one script, or Latin with Han and the scripts
# written beside it in Japanese, Chinese or Korean.
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


@lru_cache(maxsize=4096)
def _script(ch: str) -> str | None:
    """A letter's script, read off its Unicode name; None for anything not a letter."""
    if not ch.isalpha():
        return None
    if ch.isascii():
        return "LATIN"
    word = unicodedata.name(ch, "?").split(" ", 1)[0]
    if word == "CJK":
        return "HAN"
    if word in ("MODIFIER", "COMBINING"):
        return None
    return word


def check_script(value: str, code: ErrorCode, what: str) -> None:
    """Refuse a mix of scripts that can imitate another word: a Cyrillic `a`
    (U+0430) in an otherwise Latin `alice` passes for `alice` on every screen."""
    if value.isascii():
        return
    scripts = {s for s in map(_script, value) if s is not None}
    if len(scripts) <= 1 or any(scripts <= mix for mix in _SCRIPT_MIXES):
        return
    raise ProtocolError(
        code, f"a {what} mixes scripts ({', '.join(sorted(scripts)).lower()}): use one"
    )


_room_cache: dict[str, str] = {}  # spelling -> canonical name, for the per-message path


def check_room(value: Any) -> str:
    """The canonical room name: without its optional ``#``, case-folded.

    Rooms compare case-insensitively like names; folding once here means the
    wire, the hub and the history store all agree on one spelling.
    """
    if type(value) is str:
        cached = _room_cache.get(value)
        if cached is not None:
            return cached
    room = _check_room(value)
    if len(_room_cache) >= 4096:  # bounded: a client cannot grow it without limit
        _room_cache.clear()
    _room_cache[value] = room
    return room


def _check_room(value: Any) -> str:
    if isinstance(value, str) and value.startswith("#"):
        value = value[1:]
    if not isinstance(value, str) or not 1 <= len(value) <= ROOM_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_ROOM, "a room name is 1 to 32 characters")
    value = unicodedata.normalize("NFKC", value)
    if not 1 <= len(value) <= ROOM_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_ROOM, "a room name is 1 to 32 characters")
    if not _allowed(value, _ROOM_PUNCT):
        raise ProtocolError(ErrorCode.BAD_ROOM, "a room name has letters, digits, _ and - only")
    check_script(value, ErrorCode.BAD_ROOM, "room name")
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


_sec_cache: list[Any] = [-1, ""]  # second -> "YYYY-MM-DDTHH:MM:SS"
_ms_cache: list[Any] = [-1, ""]  # millisecond -> the whole timestamp


def format_ts(t: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-24T10:00:00.123Z``."""
    ms_total = int(t * 1000)
    if ms_total == _ms_cache[0]:  # under load many events share a millisecond
        return _ms_cache[1]
    sec, ms = divmod(ms_total, 1000)
    if sec != _sec_cache[0]:  # one strftime a second, not one an event
        _sec_cache[:] = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    ts = f"{_sec_cache[1]}.{ms:03d}Z"
    _ms_cache[:] = ms_total, ts
    return ts


def now_ts() -> str:
    return format_ts(time.time())
