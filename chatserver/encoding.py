"""An event as the bytes one kind of client receives.

JSON clients get a frame of JSON; plain-text clients get the rendered line(s),
framed or ended with the line end they use themselves.
"""

from __future__ import annotations

from .protocol import ClientKind, Event, encode, encode_frame
from .render import render


def encode_event(event: Event, kind: ClientKind, me: str = "") -> bytes:
    """Encode once per kind; fan-out appends the same bytes to every outbox."""
    if kind is ClientKind.JSON:
        return encode(event)
    lines = render(event, me)
    if kind is ClientKind.TEXT_FRAME:
        return b"".join(encode_frame(line.encode()) for line in lines)
    eol = "\r\n" if kind is ClientKind.LINE_CRLF else "\n"
    return "".join(line + eol for line in lines).encode()


def encode_lines(lines: list[str] | tuple[str, ...], kind: ClientKind) -> bytes:
    """Local text (``/help``) for a plain-text client."""
    if kind is ClientKind.TEXT_FRAME:
        return b"".join(encode_frame(line.encode()) for line in lines)
    eol = "\r\n" if kind is ClientKind.LINE_CRLF else "\n"
    return "".join(line + eol for line in lines).encode()
