"""Events as one line of text each: the form plain-text and line-mode clients see.

Sans-I/O and shared with ``chatclient`` (script mode prints the same lines).
Text from other users never reaches a terminal raw: every control character
and every bidirectional override is shown escaped.
"""

from __future__ import annotations

from .protocol import (
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


def escape(text: str) -> str:
    """Make text safe to write to a terminal: controls become visible escapes."""
    if text.isprintable():  # the common case, checked in C: Cc, Cf, Zl, Zp all fail it
        return text
    return text.translate(_ESCAPES)


def clock(ts: str) -> str:
    """``HH:MM:SS`` of an RFC 3339 timestamp (UTC, as on the wire)."""
    return ts[11:19] if len(ts) >= 19 else ts


def render_msg(msg: MsgEvent) -> str:
    if msg.action:
        return f"{clock(msg.ts)} [{msg.room}] * {msg.from_} {escape(msg.text)}"
    return f"{clock(msg.ts)} [{msg.room}] <{msg.from_}> {escape(msg.text)}"


def render(event: Event, me: str = "") -> list[str]:
    """The lines for one event as seen by the user called ``me``.

    Only direct messages depend on the viewer (``->`` sent, ``<-`` received).
    """
    if isinstance(event, MsgEvent):
        return [render_msg(event)]
    if isinstance(event, DmEvent):
        text = f"* {event.from_} {escape(event.text)}" if event.action else escape(event.text)
        if event.from_.casefold() == me.casefold():
            return [f"{clock(event.ts)} -> {event.to}: {text}"]
        return [f"{clock(event.ts)} <- {event.from_}: {text}"]
    now = clock(getattr(event, "ts", "") or now_ts())
    if isinstance(event, JoinEvent):
        return [f"{now} -- {event.name} joined {event.room}"]
    if isinstance(event, LeaveEvent):
        reason = f" ({escape(event.reason)})" if event.reason else ""
        return [f"{now} -- {event.name} left {event.room}{reason}"]
    if isinstance(event, NickEvent):
        return [f"{now} -- {event.old} is now known as {event.new}"]
    if isinstance(event, HistoryReply):
        return [render_msg(m) for m in event.messages]
    if isinstance(event, WhoReply):
        return [f"{now} -- {event.room}: {' '.join(event.names) or '(nobody)'}"]
    if isinstance(event, RoomsReply):
        listing = ", ".join(f"{r.name} ({r.members})" for r in event.rooms) or "none"
        return [f"{now} -- rooms: {listing}"]
    if isinstance(event, Welcome):
        rooms = ", ".join(event.rooms) or "no room"
        lines = [f"{now} -- welcome, {event.name}! you are in {rooms}. /help lists the commands"]
        if event.motd:
            lines.append(f"{now} -- {escape(event.motd)}")
        return lines
    if isinstance(event, Pong):
        return [f"{now} -- pong"]
    if isinstance(event, ErrorEvent):
        return [f"{now} !! {event.code}: {escape(event.message)}"]
    if isinstance(event, Bye):
        return [f"{now} -- bye ({event.reason})"]
    return []
