"""Events as one line of text each: the form plain-text and line-mode clients see.

Sans-I/O and shared with ``chatclient`` (script mode prints the same lines).
Text from other users never reaches a terminal raw: every control character
and every bidirectional override is shown escaped.
"""

from __future__ import annotations

from .protocol import (
    AwayEvent,
    Bye,
    DmEvent,
    ErrorEvent,
    Event,
    HistoryReply,
    JoinEvent,
    LeaveEvent,
    MsgEvent,
    NickEvent,
    Pong,
    RoomsReply,
    Welcome,
    WhoReply,
    now_ts,
)


def _escape_table() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    table.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x1B: "\\e"})
    # Bidi embeddings/overrides/isolates and line/paragraph separators can
    # reorder or break what the reader sees ("Trojan Source").
    for c in (
        0x061C,
        0x200E,
        0x200F,
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ):
        table[c] = f"\\u{c:04x}"
    return table


_ESCAPES = _escape_table()
# Format characters that only shape their neighbours: the zero-width joiner
# and non-joiner (emoji sequences such as a family, Persian, Indic scripts),
# the soft hyphen, and the tag characters of flag emoji (a subdivision flag
# is a black flag, tags, and a cancel tag). Escaping them breaks text.
SHAPING = frozenset({"\u00ad", "\u200c", "\u200d", *map(chr, range(0xE0020, 0xE0080))})


def escape(text: object) -> str:
    """Make text safe to write to a terminal: controls become visible escapes.

    Every field that came over the network goes through here, names and rooms
    too: the server validates them, but a client must not trust the server.
    """
    if type(text) is not str:
        text = "" if text is None else str(text)
    if text.isprintable():  # the common case, checked in C: Cc, Cf, Zl, Zp all fail it
        return text
    text = text.translate(_ESCAPES)
    if text.isprintable():
        return text
    # Whatever else is not printable (other format characters, unassigned
    # code points, surrogates) is shown by number too, but for the few that
    # only join or shape what is around them and hide nothing.
    return "".join(
        ch if ch.isprintable() or ch in SHAPING else f"\\u{{{ord(ch):04x}}}" for ch in text
    )


def clock(ts: object) -> str:
    """``HH:MM:SS`` of an RFC 3339 timestamp (UTC, as on the wire)."""
    ts = escape(ts)
    return ts[11:19] if len(ts) >= 19 else ts


def render_msg(msg: MsgEvent) -> str:
    e = escape
    if msg.action:
        return f"{clock(msg.ts)} [{e(msg.room)}] * {e(msg.from_)} {e(msg.text)}"
    return f"{clock(msg.ts)} [{e(msg.room)}] <{e(msg.from_)}> {e(msg.text)}"


def render(event: Event, me: str = "") -> list[str]:
    """The lines for one event as seen by the user called ``me``.

    Only direct messages depend on the viewer (``->`` sent, ``<-`` received).
    """
    e = escape
    if isinstance(event, MsgEvent):
        return [render_msg(event)]
    if isinstance(event, DmEvent):
        text = f"* {e(event.from_)} {e(event.text)}" if event.action else e(event.text)
        if e(event.from_).casefold() == me.casefold():
            return [f"{clock(event.ts)} -> {e(event.to)}: {text}"]
        return [f"{clock(event.ts)} <- {e(event.from_)}: {text}"]
    now = clock(getattr(event, "ts", "") or now_ts())
    if isinstance(event, JoinEvent):
        if event.quiet:  # the last join its members see, or the joiner's own
            return [
                f"{now} -- {e(event.name)} joined {e(event.room)} ({event.members} members: "
                "a quiet room, joins and leaves are not shown; /who lists them)"
            ]
        return [f"{now} -- {e(event.name)} joined {e(event.room)}"]
    if isinstance(event, LeaveEvent):
        reason = f" ({e(event.reason)})" if event.reason else ""
        return [f"{now} -- {e(event.name)} left {e(event.room)}{reason}"]
    if isinstance(event, NickEvent):
        return [f"{now} -- {e(event.old)} is now known as {e(event.new)}"]
    if isinstance(event, HistoryReply):
        lines = [render_msg(m) for m in event.messages if isinstance(m, MsgEvent)]
        if event.gap:  # PROTOCOL 9.5: the server cannot prove this is all
            lines.insert(0, f"{now} -- {e(event.room)}: some messages may be missing")
        return lines
    if isinstance(event, AwayEvent):
        if event.text:
            return [f"{now} -- {e(event.name)} is away ({e(event.text)})"]
        return [f"{now} -- {e(event.name)} is back"]
    if isinstance(event, WhoReply):
        away = event.away or {}
        names = " ".join(e(n) + (" (away)" if n in away else "") for n in event.names or ())
        count = f" ({event.count} members)" if event.quiet else ""
        return [f"{now} -- {e(event.room)}{count}: {names or '(nobody)'}"]
    if isinstance(event, RoomsReply):
        listing = ", ".join(f"{e(r.name)} ({e(r.members)})" for r in event.rooms) or "none"
        return [f"{now} -- rooms: {listing}"]
    if isinstance(event, Welcome):
        rooms = ", ".join(e(r) for r in event.rooms or ()) or "no room"
        lines = [f"{now} -- welcome, {e(event.name)}! you are in {rooms}. /help lists the commands"]
        if event.motd:
            lines.append(f"{now} -- {e(event.motd)}")
        return lines
    if isinstance(event, Pong):
        return [f"{now} -- pong"]
    if isinstance(event, ErrorEvent):
        return [f"{now} !! {e(event.code)}: {e(event.message)}"]
    if isinstance(event, Bye):
        return [f"{now} -- bye ({e(event.reason)})"]
    return []
