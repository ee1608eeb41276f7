"""Error codes of the wire contract and the exception that carries them."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every `error.code` the server sends (PROTOCOL.md sections 2, 3 and 5)."""

    # Framing: fatal, the connection is closed.
    BAD_HEADER = "bad_header"
    FRAME_TOO_LARGE = "frame_too_large"
    # Payload: the connection stays.
    BAD_UTF8 = "bad_utf8"
    BAD_JSON = "bad_json"
    UNKNOWN_TYPE = "unknown_type"
    BAD_MESSAGE = "bad_message"  # a missing or ill-typed field
    # Handshake: fatal when answering `hello`.
    HELLO_REQUIRED = "hello_required"
    NAME_TAKEN = "name_taken"
    BAD_NAME = "bad_name"
    BAD_PASSWORD = "bad_password"
    SERVER_FULL = "server_full"
    # Requests: the connection stays.
    BAD_ROOM = "bad_room"
    BAD_TEXT = "bad_text"
    TEXT_TOO_LONG = "text_too_long"
    NO_SUCH_USER = "no_such_user"
    NO_SUCH_ROOM = "no_such_room"
    NOT_IN_ROOM = "not_in_room"
    TOO_MANY_ROOMS = "too_many_rooms"
    UNKNOWN_COMMAND = "unknown_command"  # plain-text clients' `/typo`
    # The history store cannot be written or read now: nothing of the request
    # happened, and it may be tried again later (PROTOCOL.md 9.5).
    UNAVAILABLE = "unavailable"


# Codes after which the server closes the connection.
FATAL_CODES = frozenset({ErrorCode.BAD_HEADER, ErrorCode.FRAME_TOO_LARGE})


class ProtocolError(Exception):
    """The peer sent something the contract does not allow.

    Raised by the sans-I/O layer only for the peer's faults, never for ours:
    the caller turns it into an `error` reply (and a close when `fatal`).
    """

    def __init__(self, code: ErrorCode, message: str, *, ref: str | int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES
