"""Field rules of the contract: names, room names, text, refs, ids, timestamps.

Names and room names follow Unicode's own rules rather than tables of ours:
UTS #39 (through ICU's spoof checker: the confusable skeleton, the
characters recommended for identifiers, the mixed-script restriction level)
and the PRECIS username profile of RFC 8265 (``precis-i18n``).
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import icu
from precis_i18n import get_profile

from .errors import ErrorCode, ProtocolError

NAME_MAX_CHARS = 32
ROOM_MAX_CHARS = 32
# A spelling can be longer than the name it stands for: up to 4 code points
# compose into one (a letter and three accents, conjoining jamo). Longer
# input is refused before any normalisation work.
SPELLING_MAX_CHARS = 4 * max(NAME_MAX_CHARS, ROOM_MAX_CHARS)
REF_MAX_BYTES = 64
SESSION_MAX_BYTES = 256  # the server's tokens are 32 characters
PASSWORD_MAX_BYTES = 1024
ID_MAX = 2**53  # ids are below 2^53 (PROTOCOL 9.5); SQLite and JSON peers stop at 2^63
DEFAULT_MAX_TEXT = 4096
DEFAULT_ROOM = "lobby"

# NFKC_Casefold folds case and compatibility forms in one step and, unlike
# casefold() after NFKC, is closed: folding a folded string changes nothing.
_fold = icu.Normalizer2.getNFKCCasefoldInstance().normalize
_INVISIBLE = icu.UnicodeSet("[:Default_Ignorable_Code_Point:]")
_INVISIBLE.freeze()
_MARKS = frozenset({"Mn", "Mc"})
_USERNAME = get_profile("UsernameCasePreserved")


def _spoof_checker(punct: str) -> icu.SpoofChecker:
    """UTS #39 checks: characters with Identifier_Status=Allowed (and our
    punctuation), one script or a CJK mix ("highly restrictive"), one digit
    system, no repeated combining mark."""
    checker = icu.SpoofChecker()
    allowed = icu.UnicodeSet()  # a copy of the (frozen) recommended set would stay frozen
    allowed.addAll(checker.getRecommendedUnicodeSet())
    for ch in punct:
        allowed.add(ch)
    allowed.freeze()
    checker.setAllowedUnicodeSet(allowed)
    checker.setRestrictionLevel(icu.URestrictionLevel.HIGHLY_RESTRICTIVE)
    checks = icu.USpoofChecks
    checker.setChecks(
        checks.CHAR_LIMIT | checks.RESTRICTION_LEVEL | checks.MIXED_NUMBERS | checks.INVISIBLE
    )
    return checker


@dataclass(frozen=True, slots=True)
class _Rules:
    what: str
    code: ErrorCode
    punct: str
    checker: icu.SpoofChecker


def _rules(what: str, code: ErrorCode, punct: str) -> _Rules:
    return _Rules(what, code, punct, _spoof_checker(punct))


_NAME = _rules("name", ErrorCode.BAD_NAME, "_-.[]{}^|")
_ROOM = _rules("room name", ErrorCode.BAD_ROOM, "_-")


def _refuse_invisible(value: str, code: ErrorCode, what: str) -> None:
    # Hangul fillers, zero-width spaces and joiners, variation selectors, soft
    # hyphens: `alice\u3164` renders as `alice`.
    if _INVISIBLE.containsSome(value):
        raise ProtocolError(code, f"a {what} must not contain invisible characters")


def _check_identifier(value: str, rules: _Rules) -> None:
    """The rules names and room names share, on their normalised form."""
    code, what = rules.code, rules.what
    for i, ch in enumerate(value):
        # Combining marks (Devanagari or Tamil vowel signs) belong to the letter
        # before them; never first, where they would sit on what precedes the name.
        if not (
            ch.isalnum() or ch in rules.punct or (i > 0 and unicodedata.category(ch) in _MARKS)
        ):
            shown = " ".join(rules.punct)
            raise ProtocolError(code, f"a {what} has letters, digits and {shown} only")
    if value.isascii():
        return  # ASCII letters, digits and our punctuation pass all that follows
    try:
        _USERNAME.enforce(value)
    except UnicodeError as exc:  # precis-i18n says why: DISALLOWED/bidi_rule, ...
        raise ProtocolError(
            code, f"a {what} breaks the username rules of RFC 8265 ({exc.reason})"
        ) from None
    failed = rules.checker.check(value)
    if not failed:
        return
    checks = icu.USpoofChecks
    if failed & checks.CHAR_LIMIT:
        allowed = rules.checker.getAllowedUnicodeSet()
        odd = next(ch for ch in value if not allowed.contains(ch))
        raise ProtocolError(
            code, f"a {what} has a character not used in names: U+{ord(odd):04X} (UTS #39)"
        )
    if failed & checks.RESTRICTION_LEVEL:
        scripts = sorted({_script(ch) for ch in value} - {"Common", "Inherited"})
        raise ProtocolError(code, f"a {what} mixes scripts ({', '.join(scripts)}): use one")
    if failed & checks.MIXED_NUMBERS:
        raise ProtocolError(code, f"a {what} mixes digits of different systems")
    raise ProtocolError(code, f"a {what} repeats a combining mark")


def _script(ch: str) -> str:
    return icu.Script.getScript(ch).getName()


def check_name(value: Any) -> str:
    """A user name as shown: NFKC-normalised, 1-32 letters, digits and
    ``_ - . [ ] { } ^ |``, nothing invisible, one script (UTS #39), a valid
    RFC 8265 username. Two names are the same name when their
    :func:`name_key` is."""
    if not isinstance(value, str) or not value:
        raise ProtocolError(ErrorCode.BAD_NAME, "a name is 1 to 32 characters")
    return _check_name(value)


@lru_cache(maxsize=4096)  # dm checks its `to` per message; errors are not cached
def _check_name(value: str) -> str:
    if len(value) > SPELLING_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_NAME, "a name is 1 to 32 characters")
    _refuse_invisible(value, ErrorCode.BAD_NAME, "name")
    # Fullwidth, ligature and "mathematical" forms become the plain letters
    # they look like, so fullwidth `alice` is shown as `alice`.
    name = unicodedata.normalize("NFKC", value)
    if not 1 <= len(name) <= NAME_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_NAME, "a name is 1 to 32 characters")
    _refuse_invisible(name, ErrorCode.BAD_NAME, "name")
    _check_identifier(name, _NAME)
    return name


@lru_cache(maxsize=8192)  # the hub keys users by it on every dm
def name_key(name: str) -> str:
    """What makes two names the same name: their UTS #39 confusable skeleton,
    whatever their case.

    Names compare case-insensitively, so every case spelling of a name must
    hold its key: `aIice` (capital i) looks like `alice`, and `alIce` is
    `alice` in other capitals. The skeleton is taken of the folded name in capitals
    (where I and l, 0 and O meet), then folding and skeleton alternate until
    neither changes anything (two more rounds at most for any character of
    Unicode 15). So `ALICE`, `a|ice`, `al1ce`, `alice` with a dotless i, and
    `aiice` too, are all one name; as are `B0B` and `bob`, `rn` and `m`.
    """
    key = _fold(_NAME.checker.getSkeleton(0, _fold(name).upper()))
    for _ in range(4):
        again = _fold(_NAME.checker.getSkeleton(0, key))
        if again == key:
            break
        key = again
    return key


_room_cache: dict[str, str] = {}  # spelling -> canonical name, for the per-message path


def check_room(value: Any) -> str:
    """The canonical room name: without its optional ``#``, NFKC_Casefolded.

    Rooms compare case-insensitively like names; folding once here means the
    wire, the hub and the history store all agree on one spelling. The bound
    and every rule apply to that canonical form, so a room accepted in one
    spelling is accepted in all of them, the canonical one included.
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
    if not isinstance(value, str) or not 1 <= len(value) <= SPELLING_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_ROOM, "a room name is 1 to 32 characters")
    _refuse_invisible(value, ErrorCode.BAD_ROOM, "room name")
    room = _fold(value)
    if not 1 <= len(room) <= ROOM_MAX_CHARS:
        raise ProtocolError(ErrorCode.BAD_ROOM, "a room name is 1 to 32 characters")
    _check_identifier(room, _ROOM)
    return room


def check_text(value: Any, max_text: int = DEFAULT_MAX_TEXT, what: str = "text") -> str:
    """Message text: 1 to ``max_text`` bytes of UTF-8, no NUL."""
    if not isinstance(value, str) or not value:
        raise ProtocolError(ErrorCode.BAD_TEXT, f"{what} must be a non-empty string")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\\ud800" escape
        raise ProtocolError(ErrorCode.BAD_TEXT, f"{what} is not valid Unicode") from None
    if size > max_text:
        raise ProtocolError(ErrorCode.TEXT_TOO_LONG, f"{what} is over {max_text} bytes")
    if "\x00" in value:
        raise ProtocolError(ErrorCode.BAD_TEXT, f"{what} must not contain NUL")
    return value


def check_reason(value: Any, max_text: int = DEFAULT_MAX_TEXT, key: str = "reason") -> str | None:
    """An optional free text (a leave or quit reason): bound and rules of ``text``
    (max_text is "the bound of every other free text", PROTOCOL section 5); empty
    is none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' must be a string")
    return check_text(value, max_text, key)


def check_token(value: Any, key: str, max_bytes: int) -> str | None:
    """An optional opaque string (a session token, a password): valid Unicode,
    at most ``max_bytes`` of UTF-8, so that nothing unbounded is kept or compared."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' must be a string")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' is not valid Unicode") from None
    if size > max_bytes:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' is over {max_bytes} bytes")
    return value


def check_int(value: Any, key: str, low: int, high: int = ID_MAX) -> int:
    """An integer field within bounds (ids stay below 2^53: no OverflowError
    further down, in SQLite or in a JSON peer)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"'{key}' must be an integer from {low} to {high}"
        )
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
