"""How the full-screen app draws a line: local-time clock, nick colours, styles.

Script mode prints ``chatserver.render`` lines (UTC, the contract's form);
the app shows local time and colours instead. Every piece of network text
goes through ``chatserver.render.escape`` before it reaches the screen.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from functools import lru_cache

from chatserver.render import escape

from .state import Kind, Line

# Readable on dark and light backgrounds; no red (errors) and no grey (system lines).
NICK_COLOURS = (
    "ansigreen",
    "ansiyellow",
    "ansiblue",
    "ansimagenta",
    "ansicyan",
    "ansibrightgreen",
    "ansibrightyellow",
    "ansibrightblue",
    "ansibrightmagenta",
    "ansibrightcyan",
    "#d78700",
    "#5f87ff",
)

Fragments = list[tuple[str, str]]


def nick_colour(name: str) -> str:
    """A stable colour per nick: the same name (any case) always gets the same one."""
    return NICK_COLOURS[zlib.crc32(name.casefold().encode()) % len(NICK_COLOURS)]


def local_clock(ts: str) -> str:
    """``HH:MM`` in local time of an RFC 3339 UTC timestamp (the raw text if unparsable)."""
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return escape(ts[11:16])
    return when.astimezone().strftime("%H:%M")


def day_label(ts: str) -> str:
    """The local date of a timestamp, for the line drawn where the day changes."""
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return escape(ts[:10])
    return f"{when:%A} {when.day} {when:%B %Y}"


@lru_cache(maxsize=8192)  # every frame asks it of every line in view
def local_day(ts: str) -> str:
    """``YYYY-MM-DD`` in local time (the raw date part if unparsable): where a day line goes."""
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d")
    except ValueError:
        return ts[:10]


def line_parts(line: Line) -> tuple[Fragments, Fragments]:
    """One scrollback line as (prefix, body): wrapped rows indent under the body."""
    prefix: Fragments = [("class:clock", local_clock(line.ts) + " ")]
    nick = escape(line.nick)
    text = escape(line.text)
    body = "class:mention" if line.mention else "class:text"
    if line.kind in (Kind.MSG, Kind.OWN, Kind.DM):
        style = "class:own-nick" if line.kind is Kind.OWN else f"bold fg:{nick_colour(line.nick)}"
        prefix += [("class:punct", "<"), (style, nick), ("class:punct", "> ")]
        return prefix, [("class:own" if line.kind is Kind.OWN else body, text)]
    if line.kind is Kind.ACTION:
        prefix += [("class:action", "* "), (f"class:action fg:{nick_colour(line.nick)}", nick)]
        style = "class:action " + ("class:mention" if line.mention else "")
        return [*prefix, (style, " ")], [(style, text)]
    if line.kind is Kind.ERROR:
        return [*prefix, ("class:error", "!! ")], [("class:error", text)]
    if line.kind is Kind.GAP:
        return [*prefix, ("class:gap", "~~ ")], [("class:gap", text + " ~~")]
    return [*prefix, ("class:system", "-- ")], [("class:system", text)]


def line_fragments(line: Line) -> Fragments:
    """One scrollback line as styled fragments (no newline)."""
    prefix, body = line_parts(line)
    return prefix + body
