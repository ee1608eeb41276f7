"""Coverage-guided fuzzing with atheris (optional: `make fuzz`, not part of CI).

One input drives all four parsers; any exception but ProtocolError is a crash.
Run: python tests/security/fuzz_atheris.py -max_total_time=120
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from chatserver.commands import parse_line
    from chatserver.protocol import FrameDecoder, LineDecoder, ProtocolError, parse_request


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    max_frame = fdp.ConsumeIntInRange(1, 512)
    cut = fdp.ConsumeIntInRange(0, 64)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    for decoder in (FrameDecoder(max_frame), LineDecoder(max_frame)):
        for part in (body[:cut], body[cut:]):
            for unit in decoder.feed(part):
                assert len(unit) <= max_frame
    with contextlib.suppress(ProtocolError):
        parse_request(body, 100)
    with contextlib.suppress(ProtocolError):
        parse_line(body.decode("utf-8", "replace"), 100)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
