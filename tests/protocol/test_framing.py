"""The sans-I/O framing layer: headers, the frame decoder, line mode, sniffing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatserver.protocol import (
    ErrorCode,
    FrameDecoder,
    LineDecoder,
    encode_frame,
    parse_header,
    sniff,
)

# ---------------------------------------------------------------------------
# Headers


@pytest.mark.parametrize(
    ("header", "length"),
    [
        (b"5         ", 5),  # canonical left-justified
        (b"         5", 5),  # right-justified
        (b"0000000005", 5),  # zero-padded
        (b"   5      ", 5),  # centred: spaces stripped at both ends
        (b"0         ", 0),  # keepalive
        (b"9999999999", 9_999_999_999),  # ten digits
    ],
)
def test_header_accepted(header: bytes, length: int) -> None:
    assert parse_header(header) == length


@pytest.mark.parametrize(
    "header",
    [
        b"+5        ",  # sign
        b"-5        ",
        b"1 2       ",  # inner space
        b"5\t        ",  # tab
        b"5\r        ",  # CR
        b"5\n        ",  # LF
        b"5\x00        ",  # NUL
        b"          ",  # all spaces
        "\u0665".encode().ljust(10),  # ARABIC-INDIC DIGIT FIVE: not ASCII
        "\uff15".encode().ljust(10),  # FULLWIDTH DIGIT FIVE
        b"\xb2".ljust(10),  # superscript two in Latin-1
        b"5e3       ",
        b"0x10      ",
    ],
)
def test_header_refused(header: bytes) -> None:
    assert len(header) == 10
    assert parse_header(header) is None
    decoder = FrameDecoder()
    assert decoder.feed(header + b"hello") == []
    assert decoder.error is not None and decoder.error.code is ErrorCode.BAD_HEADER
    assert decoder.error.fatal


@pytest.mark.parametrize("header", [b"5         ", b"         5", b"0000000005"])
def test_decoder_accepts_every_header_form(header: bytes) -> None:
    assert FrameDecoder().feed(header + b"hello" + encode_frame(b"x")) == [b"hello", b"x"]


def test_encoder_writes_canonical_left_justified_form() -> None:
    assert encode_frame(b"hello") == b"5         hello"
    assert encode_frame(b"") == b"0         "
    assert encode_frame(b"x" * 1234)[:10] == b"1234      "
    assert encode_frame("é".encode()) == b"2         \xc3\xa9"  # length in bytes


# ---------------------------------------------------------------------------
# Size limit


def test_exactly_max_frame_is_accepted() -> None:
    decoder = FrameDecoder(max_frame=100)
    assert decoder.feed(encode_frame(b"a" * 100)) == [b"a" * 100]
    assert decoder.error is None


def test_max_frame_plus_one_refused_before_payload() -> None:
    decoder = FrameDecoder(max_frame=100)
    # Only the header: the error must be known before any payload byte is in.
    assert decoder.feed(b"101       ") == []
    assert decoder.error is not None and decoder.error.code is ErrorCode.FRAME_TOO_LARGE
    assert not decoder.partial
    assert decoder.feed(b"a" * 101) == []  # discarded from now on


def test_oversized_ten_digit_header_is_refused_at_once() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"9999999999") == []
    assert decoder.error.code is ErrorCode.FRAME_TOO_LARGE


def test_frames_before_an_error_are_returned() -> None:
    decoder = FrameDecoder(max_frame=10)
    assert decoder.feed(encode_frame(b"ok") + b"+1        x") == [b"ok"]
    assert decoder.error.code is ErrorCode.BAD_HEADER


# ---------------------------------------------------------------------------
# Streams


def test_keepalive_frames() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"") * 3 + encode_frame(b"a")) == [b"", b"", b"", b"a"]
    assert not decoder.partial


def test_partial_flag() -> None:
    decoder = FrameDecoder()
    assert not decoder.partial
    decoder.feed(b"5     ")
    assert decoder.partial
    decoder.feed(b"    hel")
    assert decoder.partial
    assert decoder.feed(b"lo") == [b"hello"]
    assert not decoder.partial


STREAM_PAYLOADS = [b"hello", b"", "h\u00e9llo w\u00f6rld \U0001f600".encode(), b"{}", b"x" * 300]
STREAM = b"".join(encode_frame(p) for p in STREAM_PAYLOADS) + b"         3abc0000000002hi"
STREAM_EXPECTED = [*STREAM_PAYLOADS, b"abc", b"hi"]


def test_stream_split_at_every_offset() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])
        assert got == STREAM_EXPECTED, cut
        assert decoder.error is None and not decoder.partial


def test_stream_split_at_every_pair_of_offsets() -> None:
    stream = b"".join(encode_frame(p) for p in (b"ab", b"", b"cdef"))
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            decoder = FrameDecoder()
            got = decoder.feed(stream[:i]) + decoder.feed(stream[i:j]) + decoder.feed(stream[j:])
            assert got == [b"ab", b"", b"cdef"], (i, j)


def test_stream_byte_by_byte() -> None:
    decoder = FrameDecoder()
    got: list[bytes] = []
    for i in range(len(STREAM)):
        got += decoder.feed(STREAM[i : i + 1])
    assert got == STREAM_EXPECTED


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_roundtrip(payloads: list[bytes]) -> None:
    decoder = FrameDecoder(max_frame=300)
    assert decoder.feed(b"".join(encode_frame(p) for p in payloads)) == payloads
    assert decoder.error is None and not decoder.partial


@given(st.lists(st.binary(max_size=100), max_size=10), st.lists(st.integers(0, 2000), max_size=8))
def test_roundtrip_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    decoder = FrameDecoder(max_frame=100)
    got: list[bytes] = []
    for a, b in itertools.pairwise(bounds):
        got += decoder.feed(stream[a:b])
    assert got == payloads


@given(st.binary(min_size=10, max_size=10))
def test_any_header_either_parses_or_is_refused(header: bytes) -> None:
    decoder = FrameDecoder(max_frame=1 << 40)
    decoder.feed(header)
    digits = header.strip(b" ")
    valid = bool(digits) and all(48 <= b <= 57 for b in digits)
    assert (decoder.error is None) == valid
    if valid:
        assert parse_header(header) == int(digits)


# ---------------------------------------------------------------------------
# Sniffing


@pytest.mark.parametrize(
    ("first", "framed"),
    [
        (b"5         hello", True),
        (b"         5", True),
        (b"0000000005", True),
        (b"12345", None),  # not enough to tell
        (b"", None),
        (b"alice\n", False),
        (b"12\r\n", False),
        (b"\r\n", False),
        (b"\xff\xfd\x18", False),  # telnet IAC DO
        (b"1234567890x", True),  # only the first ten count
    ],
)
def test_sniff(first: bytes, framed: bool | None) -> None:
    assert sniff(first) is framed


# ---------------------------------------------------------------------------
# Line mode


def test_lines_lf_and_crlf() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b"alice\r\nhello\nthere\r") == [b"alice", b"hello"]
    assert decoder.saw_crlf is True
    assert decoder.partial
    assert decoder.feed(b"\n") == [b"there"]


def test_line_end_of_first_line_is_remembered() -> None:
    decoder = LineDecoder()
    decoder.feed(b"alice\nbob\r\n")
    assert decoder.saw_crlf is False


def test_telnet_negotiation_is_dropped() -> None:
    iac_do_echo = b"\xff\xfd\x01"
    iac_will_ttype = b"\xff\xfb\x18"
    iac_sb_naws = b"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0"
    iac_nop = b"\xff\xf1"
    stream = iac_do_echo + iac_will_ttype + iac_sb_naws + b"ali" + iac_nop + b"ce\r\nhi\n"
    for cut in range(len(stream) + 1):
        decoder = LineDecoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == [b"alice", b"hi"], cut


def test_line_too_long() -> None:
    decoder = LineDecoder(max_line=10)
    assert decoder.feed(b"a" * 10 + b"\n") == [b"a" * 10]
    assert decoder.feed(b"b" * 11) == []
    assert decoder.error.code is ErrorCode.FRAME_TOO_LARGE
    assert decoder.feed(b"\nok\n") == []
