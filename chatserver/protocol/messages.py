"""Message types of the contract as dataclasses, and their JSON form.

They are values: nothing changes one once it is made. They are not declared
frozen only because a frozen dataclass's ``__init__`` costs four times as
much (a ``object.__setattr__`` per field), and a ``say`` and its ``msg`` are
made once per message on the server's hottest path (docs/performance.md).

Client requests are parsed and validated by :func:`parse_request` (the
server's side) and encoded by :func:`encode` (the client's side); server
events go the other way with :func:`encode` and :func:`parse_event`. The
``TYPE`` class attribute is the wire ``type``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import jsoncodec
from .errors import ErrorCode, ProtocolError
from .framing import encode_frame
from .validation import (
    DEFAULT_MAX_TEXT,
    DEFAULT_ROOM,
    ID_MAX,
    PASSWORD_MAX_BYTES,
    SESSION_MAX_BYTES,
    check_int,
    check_name,
    check_reason,
    check_ref,
    check_room,
    check_text,
    check_token,
)

PROTO_VERSION = 1
HISTORY_MAX_LIMIT = 500
HISTORY_DEFAULT_LIMIT = 50
ROOMS_MAX_LIMIT = 500

Ref = str | int | None

# --------------------------------------------------------------------------
# Client -> server


@dataclass(slots=True)
class Hello:
    TYPE: ClassVar[str] = "hello"
    name: str
    proto: int = PROTO_VERSION
    rooms: tuple[str, ...] = (DEFAULT_ROOM,)
    since: dict[str, int] = field(default_factory=dict)
    session: str | None = None
    password: str | None = None
    ref: Ref = None


@dataclass(slots=True)
class Say:
    """``room`` None means the room most recently joined."""

    TYPE: ClassVar[str] = "say"
    text: str
    room: str | None = None
    action: bool = False  # a `/me` line; our extension, ignored by older peers
    ref: Ref = None


@dataclass(slots=True)
class Dm:
    TYPE: ClassVar[str] = "dm"
    to: str
    text: str
    action: bool = False
    ref: Ref = None


@dataclass(slots=True)
class Join:
    TYPE: ClassVar[str] = "join"
    room: str
    ref: Ref = None


@dataclass(slots=True)
class Leave:
    TYPE: ClassVar[str] = "leave"
    room: str | None = None
    reason: str | None = None
    ref: Ref = None


@dataclass(slots=True)
class Nick:
    TYPE: ClassVar[str] = "nick"
    name: str
    ref: Ref = None


@dataclass(slots=True)
class Who:
    TYPE: ClassVar[str] = "who"
    room: str | None = None
    ref: Ref = None


@dataclass(slots=True)
class Rooms:
    """The rooms after ``after`` in name order, at most ``limit`` of them."""

    TYPE: ClassVar[str] = "rooms"
    after: str | None = None
    limit: int = ROOMS_MAX_LIMIT
    ref: Ref = None


@dataclass(slots=True)
class History:
    TYPE: ClassVar[str] = "history"
    room: str | None = None
    before: int | None = None
    limit: int = HISTORY_DEFAULT_LIMIT
    ref: Ref = None


@dataclass(slots=True)
class Ping:
    TYPE: ClassVar[str] = "ping"
    ref: Ref = None


@dataclass(slots=True)
class Quit:
    TYPE: ClassVar[str] = "quit"
    reason: str | None = None
    ref: Ref = None


Request = Hello | Say | Dm | Join | Leave | Nick | Who | Rooms | History | Ping | Quit

# --------------------------------------------------------------------------
# Server -> client


@dataclass(slots=True)
class Welcome:
    TYPE: ClassVar[str] = "welcome"
    name: str
    proto: int
    server: str
    rooms: list[str]
    limits: dict[str, int]
    session: str | None = None
    motd: str | None = None
    node: str | None = None  # the process of a cluster the client is connected to (§9.5)
    ref: Ref = None


@dataclass(slots=True)
class MsgEvent:
    TYPE: ClassVar[str] = "msg"
    id: int
    ts: str
    room: str
    from_: str
    text: str
    action: bool = False
    ref: Ref = None


@dataclass(slots=True)
class DmEvent:
    TYPE: ClassVar[str] = "dm"
    id: int
    ts: str
    from_: str
    to: str
    text: str
    action: bool = False
    ref: Ref = None


@dataclass(slots=True)
class JoinEvent:
    TYPE: ClassVar[str] = "join"
    room: str
    name: str
    ts: str
    members: int | None = None  # the room's size after the join
    # The room is quiet (past --quiet-room-size): other members' joins and
    # leaves are not sent; ``who`` lists them on demand.
    quiet: bool | None = None


@dataclass(slots=True)
class LeaveEvent:
    TYPE: ClassVar[str] = "leave"
    room: str
    name: str
    ts: str
    reason: str = ""
    members: int | None = None  # the room's size after the leave


@dataclass(slots=True)
class NickEvent:
    TYPE: ClassVar[str] = "nick"
    old: str
    new: str
    ts: str


@dataclass(slots=True)
class WhoReply:
    TYPE: ClassVar[str] = "who"
    room: str
    names: list[str]
    ref: Ref = None
    away: dict[str, str] | None = None  # name -> why, for members who are away
    count: int | None = None  # len(names): the room's size
    quiet: bool | None = None  # the room is quiet (see JoinEvent.quiet)


@dataclass(slots=True)
class RoomInfo:
    name: str
    members: int


@dataclass(slots=True)
class RoomsReply:
    TYPE: ClassVar[str] = "rooms"
    rooms: list[RoomInfo]
    more: bool = False
    ref: Ref = None


@dataclass(slots=True)
class HistoryReply:
    TYPE: ClassVar[str] = "history"
    room: str
    messages: list[MsgEvent]
    more: bool
    ref: Ref = None
    gap: bool | None = None  # True when the reply cannot be proven complete (9.5)


@dataclass(slots=True)
class Pong:
    TYPE: ClassVar[str] = "pong"
    ts: str
    ref: Ref = None


@dataclass(slots=True)
class ErrorEvent:
    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    ref: Ref = None


@dataclass(slots=True)
class Bye:
    TYPE: ClassVar[str] = "bye"
    reason: str


@dataclass(slots=True)
class AwayEvent:
    """A member is away (``text`` says why) or back (``text`` empty). A type
    of version 2 (PROTOCOL.md 9.4): version-1 JSON clients are not sent it."""

    TYPE: ClassVar[str] = "away"
    name: str
    text: str
    ts: str


Event = (
    Welcome
    | MsgEvent
    | DmEvent
    | JoinEvent
    | LeaveEvent
    | NickEvent
    | WhoReply
    | RoomsReply
    | HistoryReply
    | Pong
    | ErrorEvent
    | Bye
    | AwayEvent
)

# --------------------------------------------------------------------------
# Encoding (either direction)

_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}


def _wire_fields(cls: type) -> tuple[tuple[str, str], ...]:
    """(attribute, wire key) pairs; ``from_`` is ``from`` on the wire."""
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple((f.name, f.name.rstrip("_")) for f in dataclasses.fields(cls))
        _FIELDS[cls] = names
    return names


def _msg_obj(m: MsgEvent) -> dict[str, Any]:
    """``msg`` is most of the traffic: build its object without the generic walk."""
    obj: dict[str, Any] = {
        "type": "msg",
        "id": m.id,
        "ts": m.ts,
        "room": m.room,
        "from": m.from_,
        "text": m.text,
    }
    if m.action:
        obj["action"] = True
    if m.ref is not None:
        obj["ref"] = m.ref
    return obj


def to_obj(message: Any) -> dict[str, Any]:
    """The JSON object of a message; None and False optional fields are left out."""
    if type(message) is MsgEvent:
        return _msg_obj(message)
    obj: dict[str, Any] = {"type": message.TYPE} if hasattr(message, "TYPE") else {}
    for attr, key in _wire_fields(type(message)):
        value = getattr(message, attr)
        if value is None or (value is False and key == "action"):
            continue
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            value = [to_obj(item) for item in value]
        elif isinstance(value, tuple):
            value = list(value)
        obj[key] = value
    return obj


def encode_payload(message: Any) -> bytes:
    return jsoncodec.dumps(to_obj(message))


def encode(message: Any) -> bytes:
    """A whole frame holding the message's JSON."""
    return encode_frame(encode_payload(message))


# --------------------------------------------------------------------------
# Decoding


def is_json_payload(payload: bytes) -> bool:
    """A payload whose first non-space byte is ``{`` is JSON; else plain text."""
    return payload.lstrip()[:1] == b"{"


def decode_json_object(payload: bytes) -> dict[str, Any]:
    """Bytes to a JSON object with a string ``type``, or a ProtocolError."""
    try:
        obj = jsoncodec.loads(payload)  # checks the UTF-8 too
    except (jsoncodec.DecodeError, ValueError, RecursionError):
        try:  # which of the two it was: only on the error path
            payload.decode()
        except UnicodeDecodeError:
            raise ProtocolError(ErrorCode.BAD_UTF8, "payload is not valid UTF-8") from None
        raise ProtocolError(ErrorCode.BAD_JSON, "payload is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "payload is not a JSON object")
    if not isinstance(obj.get("type"), str):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, "message has no string field 'type'", ref=_safe_ref(obj)
        )
    return obj


def _safe_ref(obj: dict[str, Any]) -> Ref:
    try:
        return check_ref(obj.get("ref"))
    except ProtocolError:
        return None


def _opt_int(obj: dict[str, Any], key: str, low: int, high: int = ID_MAX) -> int | None:
    value = obj.get(key)
    return None if value is None else check_int(value, key, low, high)


def _opt_room(obj: dict[str, Any], key: str = "room") -> str | None:
    value = obj.get(key)
    return None if value is None else check_room(value)


def _parse_hello(obj: dict[str, Any], ref: Ref, max_text: int) -> Hello:
    proto = _opt_int(obj, "proto", 1)
    rooms_value = obj.get("rooms")
    if rooms_value is None:
        rooms: tuple[str, ...] = (DEFAULT_ROOM,)
    elif isinstance(rooms_value, list):
        rooms = tuple(dict.fromkeys(check_room(r) for r in rooms_value))
    else:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'rooms' must be a list of room names")
    since_value = obj.get("since") or {}
    if not isinstance(since_value, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'since' must map room names to ids")
    since: dict[str, int] = {}
    for room, last in since_value.items():
        since[check_room(room)] = check_int(last, "since", 0)
    return Hello(
        name=check_name(obj.get("name")),
        proto=proto if proto is not None else PROTO_VERSION,
        rooms=rooms,
        since=since,
        session=check_token(obj.get("session"), "session", SESSION_MAX_BYTES),
        password=check_token(obj.get("password"), "password", PASSWORD_MAX_BYTES),
        ref=ref,
    )


def _parse_say(obj: dict[str, Any], ref: Ref, max_text: int) -> Say:
    return Say(
        text=check_text(obj.get("text"), max_text),
        room=_opt_room(obj),
        action=obj.get("action") is True,
        ref=ref,
    )


def _parse_dm(obj: dict[str, Any], ref: Ref, max_text: int) -> Dm:
    return Dm(
        to=check_name(obj.get("to")),
        text=check_text(obj.get("text"), max_text),
        action=obj.get("action") is True,
        ref=ref,
    )


def _parse_join(obj: dict[str, Any], ref: Ref, max_text: int) -> Join:
    return Join(room=check_room(obj.get("room")), ref=ref)


def _parse_leave(obj: dict[str, Any], ref: Ref, max_text: int) -> Leave:
    return Leave(room=_opt_room(obj), reason=check_reason(obj.get("reason"), max_text), ref=ref)


def _parse_nick(obj: dict[str, Any], ref: Ref, max_text: int) -> Nick:
    return Nick(name=check_name(obj.get("name")), ref=ref)


def _parse_who(obj: dict[str, Any], ref: Ref, max_text: int) -> Who:
    return Who(room=_opt_room(obj), ref=ref)


def _parse_rooms(obj: dict[str, Any], ref: Ref, max_text: int) -> Rooms:
    limit = _opt_int(obj, "limit", 1, ROOMS_MAX_LIMIT)
    return Rooms(
        after=_opt_room(obj, "after"),
        limit=ROOMS_MAX_LIMIT if limit is None else limit,
        ref=ref,
    )


def _parse_history(obj: dict[str, Any], ref: Ref, max_text: int) -> History:
    limit = _opt_int(obj, "limit", 1, HISTORY_MAX_LIMIT)
    return History(
        room=_opt_room(obj),
        before=_opt_int(obj, "before", 1),
        limit=HISTORY_DEFAULT_LIMIT if limit is None else limit,
        ref=ref,
    )


def _parse_ping(obj: dict[str, Any], ref: Ref, max_text: int) -> Ping:
    return Ping(ref=ref)


def _parse_quit(obj: dict[str, Any], ref: Ref, max_text: int) -> Quit:
    return Quit(reason=check_reason(obj.get("reason"), max_text), ref=ref)


_REQUEST_PARSERS = {
    "hello": _parse_hello,
    "say": _parse_say,
    "dm": _parse_dm,
    "join": _parse_join,
    "leave": _parse_leave,
    "nick": _parse_nick,
    "who": _parse_who,
    "rooms": _parse_rooms,
    "history": _parse_history,
    "ping": _parse_ping,
    "quit": _parse_quit,
}


def parse_request(payload: bytes, max_text: int = DEFAULT_MAX_TEXT) -> Request:
    """Validate one JSON payload from a client; a ProtocolError says what is wrong.

    The error carries the message's ``ref`` whenever that ref itself is valid,
    so that scripts can match the error to what they sent.
    """
    obj = decode_json_object(payload)
    ref = obj.get("ref")
    if ref is not None:
        ref = check_ref(ref)
    parser = _REQUEST_PARSERS.get(obj["type"])
    if parser is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown message type {obj['type'][:40]!r}", ref=ref
        )
    try:
        return parser(obj, ref, max_text)
    except ProtocolError as exc:
        exc.ref = ref
        raise


_EVENT_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (
        Welcome,
        MsgEvent,
        DmEvent,
        JoinEvent,
        LeaveEvent,
        NickEvent,
        WhoReply,
        RoomsReply,
        HistoryReply,
        Pong,
        ErrorEvent,
        Bye,
        AwayEvent,
    )
}


def _build(cls: type, obj: Any) -> Any:
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{cls.__name__} is not an object")
    kwargs = {attr: obj[key] for attr, key in _wire_fields(cls) if key in obj}
    try:
        return cls(**kwargs)
    except TypeError:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{cls.__name__} lacks a field") from None


def parse_event(payload: bytes) -> Event:
    """A server event from its JSON payload (the client's side; lenient on extras)."""
    obj = decode_json_object(payload)
    cls = _EVENT_TYPES.get(obj["type"])
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown event type {obj['type'][:40]!r}")
    if cls is HistoryReply:
        obj = dict(obj, messages=[_build(MsgEvent, m) for m in obj.get("messages") or []])
    elif cls is RoomsReply:
        obj = dict(obj, rooms=[_build(RoomInfo, r) for r in obj.get("rooms") or []])
    return _build(cls, obj)
