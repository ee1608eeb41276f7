"""Framing: the 10-byte length header, line mode, and telling them apart.

Sans-I/O: bytes go in through ``feed()``, complete payloads come out. Nothing
here raises for bad input; a fatal error is recorded in ``.error`` and every
later byte is discarded, so the caller finishes what was decoded before it,
then answers and closes.
"""

from __future__ import annotations

from enum import IntEnum

from .errors import ErrorCode, ProtocolError

HEADER_LEN = 10
DEFAULT_MAX_FRAME = 65_536
_HEADER_BYTES = frozenset(b"0123456789 ")


def encode_frame(payload: bytes) -> bytes:
    """The canonical frame: a left-justified decimal length, then the payload."""
    return b"%-10d" % len(payload) + payload


def parse_header(header: bytes) -> int | None:
    """The length in a 10-byte header, or None when the header is not valid.

    Left-justified, right-justified and zero-padded forms are all accepted:
    1 to 10 ASCII digits once the surrounding spaces are stripped.
    """
    digits = header.strip(b" ")
    if not digits or not digits.isdigit():  # bytes.isdigit() is ASCII-only
        return None
    return int(digits)


class ClientKind(IntEnum):
    """How a connection speaks; also the index of its encoded form of an event."""

    JSON = 0
    TEXT_FRAME = 1
    LINE_LF = 2
    LINE_CRLF = 3


def sniff(first_bytes: bytes) -> bool | None:
    """Is this connection framed? None while fewer than 10 bytes say nothing.

    A byte other than an ASCII digit or a space in the first ten means a
    line-mode client (netcat, telnet: IAC, CR and LF all count).
    """
    for byte in first_bytes[:HEADER_LEN]:
        if byte not in _HEADER_BYTES:
            return False
    if len(first_bytes) >= HEADER_LEN:
        return True
    return None


class FrameDecoder:
    """Splits a byte stream into frame payloads.

    An oversized or malformed header is rejected as soon as its ten bytes are
    in, before any of its payload is buffered.
    """

    __slots__ = ("_buf", "_need", "error", "max_frame")  # one per connection: keep it small

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.error: ProtocolError | None = None
        self._buf = bytearray()
        # While a frame is incomplete, _buf holds it from its header on, and
        # _need its payload length once the header is in.
        self._need: int | None = None

    @property
    def partial(self) -> bool:
        """True while a frame has begun but is not complete."""
        return bool(self._buf) and self.error is None

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the payloads they complete (keepalives included)."""
        if self.error is not None:
            return []
        buf = self._buf
        if buf:
            # A frame has begun: collect until it is complete, then parse as one.
            buf += data
            need = self._need
            if need is not None and len(buf) < HEADER_LEN + need:
                return []
            data = bytes(buf)
            buf.clear()
        # Most reads hold whole frames and nothing buffered: slice them
        # straight out of the bytes read, with no copy into the buffer first.
        out: list[bytes] = []
        pos = 0
        end = len(data)
        need = None
        while end - pos >= HEADER_LEN:
            need = parse_header(data[pos : pos + HEADER_LEN])
            if need is None:
                return self._fail(out, ErrorCode.BAD_HEADER, "frame header is not a length")
            if need > self.max_frame:
                return self._fail(
                    out,
                    ErrorCode.FRAME_TOO_LARGE,
                    f"frame of {need} bytes is over the limit of {self.max_frame}",
                )
            stop = pos + HEADER_LEN + need
            if stop > end:
                break
            out.append(data[pos + HEADER_LEN : stop])
            pos = stop
            need = None
        if pos < end:
            buf += memoryview(data)[pos:]  # the frame begun, its header included
        self._need = need
        return out

    def _fail(self, out: list[bytes], code: ErrorCode, message: str) -> list[bytes]:
        self.error = ProtocolError(code, message)
        self._buf.clear()
        self._need = None
        return out


IAC, SB, SE = 255, 250, 240
_WILL_WONT_DO_DONT = range(251, 255)


class LineDecoder:
    """Splits a line-mode stream into lines, dropping telnet negotiation.

    Lines end in LF or CR LF. A line longer than ``max_line`` bytes is fatal
    (``frame_too_large``), as an oversized frame is.
    """

    __slots__ = ("_buf", "_telnet", "error", "max_line", "saw_crlf")

    def __init__(self, max_line: int = DEFAULT_MAX_FRAME) -> None:
        self.max_line = max_line
        self.error: ProtocolError | None = None
        self.saw_crlf: bool | None = None  # how the first line ended
        self._buf = bytearray()
        self._telnet = 0  # bytes of an IAC sequence still to skip; -1 inside SB

    @property
    def partial(self) -> bool:
        return bool(self._buf) and self.error is None

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete lines, without their line ends."""
        if self.error is not None:
            return []
        if IAC in data or self._telnet:
            data = self._strip_telnet(data)
        buf = self._buf
        buf += data
        if b"\n" not in data:
            if len(buf) > self.max_line:
                self._overflow()
            return []
        *lines, rest = bytes(buf).split(b"\n")
        buf[:] = rest
        out = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
                crlf = True
            else:
                crlf = False
            if self.saw_crlf is None:
                self.saw_crlf = crlf
            if len(line) > self.max_line:
                self._overflow()
                return out
            out.append(line)
        if len(buf) > self.max_line:
            self._overflow()
        return out

    def _overflow(self) -> None:
        self.error = ProtocolError(
            ErrorCode.FRAME_TOO_LARGE, f"line over the limit of {self.max_line} bytes"
        )
        self._buf.clear()

    def _strip_telnet(self, data: bytes) -> bytes:
        """Drop IAC commands, WILL/WONT/DO/DONT options and SB ... IAC SE blocks."""
        out = bytearray()
        state = self._telnet
        # state: 0 text, 1 after IAC, 2 option byte to skip, -1 in SB, -2 in SB after IAC
        for byte in data:
            if state == 0:
                if byte == IAC:
                    state = 1
                else:
                    out.append(byte)
            elif state == 1:
                if byte in _WILL_WONT_DO_DONT:
                    state = 2
                elif byte == SB:
                    state = -1
                else:  # a two-byte command; IAC IAC (a literal 255) is not UTF-8 text anyway
                    state = 0
            elif state == 2:
                state = 0
            elif state == -1:
                if byte == IAC:
                    state = -2
            else:  # -2
                state = 0 if byte == SE else -1
        self._telnet = state
        return bytes(out)
