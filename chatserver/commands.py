"""Input lines (``hello``, ``/join dev``, ``/msg bob hi``) to protocol requests.

Shared by line-mode and framed plain-text clients on the server and by the
client's script mode, so a line means the same thing wherever it is typed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import (
    DEFAULT_MAX_TEXT,
    HISTORY_MAX_LIMIT,
    Dm,
    ErrorCode,
    History,
    Join,
    Leave,
    Nick,
    ProtocolError,
    Quit,
    Request,
    Rooms,
    Say,
    Who,
    check_name,
    check_reason,
    check_room,
    check_text,
)


@dataclass(frozen=True, slots=True)
class ShowHelp:
    """``/help``: answered locally with :data:`HELP_LINES`, nothing is sent."""


HELP_LINES = (
    "commands:",
    "  TEXT               say TEXT to the current room (//TEXT says /TEXT)",
    "  /join ROOM         join ROOM (created if new) and make it current",
    "  /leave [ROOM [WHY]] leave ROOM, or the current room, saying WHY",
    "  /msg NAME TEXT     send a direct message",
    "  /me ACTION         say an action: * you ACTION",
    "  /nick NAME         change your name",
    "  /who [ROOM]        list who is in ROOM, or the current room",
    "  /rooms             list every room and its member count",
    "  /history [N]       show the last N messages of the current room",
    "  /help              this list",
    "  /quit [REASON]     leave the chat",
)

COMMANDS = ("join", "leave", "msg", "me", "nick", "who", "rooms", "history", "help", "quit")
_ALIASES = {"j": "join", "part": "leave", "query": "msg", "names": "who", "exit": "quit"}


def _usage(text: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, f"usage: {text}")


def parse_line(line: str, max_text: int = DEFAULT_MAX_TEXT) -> Request | ShowHelp | None:
    """One input line as a request; None for a blank line.

    Raises ProtocolError for an unknown command, bad usage or a bad field.
    """
    if not line.strip():
        return None
    if line == "{quit}":  # the seed's quit word, kept for old plain-text clients
        return Quit()
    if not line.startswith("/") or line.startswith("//"):
        return Say(text=check_text(line[1:] if line.startswith("//") else line, max_text))
    word, _, rest = line[1:].partition(" ")
    command = _ALIASES.get(word.lower(), word.lower())
    rest = rest.strip()
    if command == "join":
        if not rest:
            raise _usage("/join ROOM")
        return Join(room=check_room(rest.split()[0]))
    if command == "leave":
        room, _, reason = rest.partition(" ")
        return Leave(
            room=check_room(room) if room else None, reason=check_reason(reason.strip(), max_text)
        )
    if command == "msg":
        name, _, text = rest.partition(" ")
        if not name or not text.strip():
            raise _usage("/msg NAME TEXT")
        return Dm(to=check_name(name), text=check_text(text, max_text))
    if command == "me":
        if not rest:
            raise _usage("/me ACTION")
        return Say(text=check_text(rest, max_text), action=True)
    if command == "nick":
        if not rest:
            raise _usage("/nick NAME")
        return Nick(name=check_name(rest))
    if command == "who":
        return Who(room=check_room(rest.split()[0]) if rest else None)
    if command == "rooms":
        return Rooms()
    if command == "history":
        if not rest:
            return History()
        # Few ASCII digits: isdigit() takes "²", which int() refuses, and int()
        # refuses 4 301 digits.
        if not (rest.isascii() and rest.isdigit() and len(rest) <= 3) or not (
            1 <= int(rest) <= HISTORY_MAX_LIMIT
        ):
            raise _usage(f"/history [N], N from 1 to {HISTORY_MAX_LIMIT}")
        return History(limit=int(rest))
    if command == "help":
        return ShowHelp()
    if command == "quit":
        return Quit(reason=check_reason(rest, max_text))
    raise ProtocolError(
        ErrorCode.UNKNOWN_COMMAND, f"no command /{word[:32]}; /help lists the commands"
    )
