"""``python -m chatserver`` / ``chatserver``: parse the arguments and run."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from .config import parse_args
    from .server import run

    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
