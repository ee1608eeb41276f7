"""``python -m chatclient.bench``: the full-screen client's key-to-screen latency and CPU.

Examples::

    python -m chatclient.bench                    # all: keys, busy, hidden on 10 000 lines
    python -m chatclient.bench keys --lines 800 --keys 80
    python -m chatclient.bench --runs 3 --client-path /tmp/old-client --client-path .
    python -m chatclient.bench busy --rate 500 --duration 20 --json

Each run starts a fresh ``python -m chatserver`` (``--db :memory:``, no rate
limit), the client in a pseudo-terminal and a feeder connection, fills the
client's room with ``--lines`` messages, then runs the scenarios in order.
With several ``--client-path``, the runs alternate between the checkouts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from chatserver.bench.report import machine

from .report import labels, medians, notes, table
from .runner import HERE, SCENARIOS, BenchError, Config, Result, client_module, measure


def _size(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", value)
    if not match or int(match[1]) < 40 or int(match[2]) < 8:
        raise argparse.ArgumentTypeError(f"{value!r} is not COLSxROWS (at least 40x8)")
    return int(match[1]), int(match[2])


def _checkout(value: str) -> Path:
    path = Path(value).resolve()
    if not (path / "chatclient" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"{value}: no chatclient package there")
    return path


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m chatclient.bench",
        description="Benchmark of the full-screen client in a pseudo-terminal: key-to-screen "
        "latency and the client's CPU with a full pane, with a busy room shown, and hidden.",
    )
    add = p.add_argument
    add(
        "scenarios",
        nargs="*",
        default="all",  # a string: argparse checks an empty "*" default as one value
        choices=[*SCENARIOS, "all"],
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS)} (run in that order), or all (default)",
    )
    add("--lines", type=int, default=d.lines, help="messages in the pane first (%(default)s)")
    add("--keys", type=int, default=d.keys, help="keys typed in keys (%(default)s)")
    add("--key-rate", type=float, default=d.key_rate, help="keys/s typed (%(default)s)")
    add("--rate", type=float, default=d.rate, help="messages/s in busy, hidden (%(default)s)")
    add("--duration", type=float, default=d.duration, help="seconds of busy, hidden (%(default)s)")
    add("--size", type=_size, default=(d.cols, d.rows), metavar="COLSxROWS", help="(120x32)")
    add(
        "--client-path",
        action="append",
        type=_checkout,
        metavar="DIR",
        help="a checkout whose client to run (first on its PYTHONPATH); repeatable: the runs "
        f"alternate between them (default: this one, {HERE})",
    )
    add("--runs", type=int, default=1, help="runs per client; with more, medians (%(default)s)")
    add("--timeout", type=float, default=d.timeout, help="s to wait for a message drawn")
    add("--no-pin", action="store_true", help="do not give the client a CPU of its own")
    add("--json", action="store_true", help="print JSON instead of the table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chosen = [args.scenarios] if isinstance(args.scenarios, str) else args.scenarios
    scenarios = list(SCENARIOS) if "all" in chosen else [s for s in SCENARIOS if s in chosen]
    if min(args.lines, args.keys) < 0 or min(args.key_rate, args.rate, args.duration) <= 0:
        print("chatclient.bench: counts must be >= 0, rates and durations > 0", file=sys.stderr)
        return 2
    cfg = Config(
        lines=args.lines,
        keys=args.keys,
        key_rate=args.key_rate,
        rate=args.rate,
        duration=args.duration,
        cols=args.size[0],
        rows=args.size[1],
        pin=not args.no_pin,
        timeout=args.timeout,
    )
    paths = args.client_path or [HERE]
    results: list[Result] = []

    width = max(len(n) for n in labels([Result("", str(p), 0, 0) for p in paths]).values())

    def progress(r: Result) -> None:
        if not args.json:
            print(table([r], width).splitlines()[-1], file=sys.stderr, flush=True)

    try:
        modules = {str(p): client_module(p) for p in paths}
        if not args.json:
            for path, module in modules.items():
                print(f"client {path}: imports {module}", file=sys.stderr)
            print(table([], width), file=sys.stderr)
        for run in range(1, args.runs + 1):
            for path in paths:
                results += measure(cfg, scenarios, path, run, progress)
    except BenchError as exc:
        first, _, screen = str(exc).partition("\n")
        print(f"chatclient.bench: {first}", file=sys.stderr)
        if screen:
            print(f"the client's last screen:\n{screen}", file=sys.stderr)
        return 1
    summary = medians(results) if args.runs > 1 else []
    if args.json:
        payload = {
            "machine": machine() | {"pinned": cfg.pin and len(os.sched_getaffinity(0)) > 1},
            "config": vars(cfg),
            "clients": modules,
            "results": [r.to_json() for r in results],
            "medians": [r.to_json() for r in summary],
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(table(results))
    if warnings := notes(results):
        print(warnings)
    if summary:
        print(f"\nmedians of {args.runs} runs:")
        print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
