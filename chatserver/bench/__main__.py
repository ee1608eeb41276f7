"""``python -m chatserver.bench``: run the load scenarios and print the figures.

Examples::

    python -m chatserver.bench all                 # the four scenarios, a fresh server each
    python -m chatserver.bench bigroom --rate 2000 --duration 10
    python -m chatserver.bench bigroom manyrooms --sweep --json
    python -m chatserver.bench fixed --connect 127.0.0.1:5500
"""

from __future__ import annotations

import argparse
import ipaddress
import resource
import sys
from collections.abc import Sequence

from .launcher import raise_nofile
from .report import Report, dumps, machine, notes, table
from .runner import Target, measure
from .scenarios import ALL, SCENARIOS
from .sweep import sweep

# Where a sweep starts (messages/s): well below what any server here sustains.
SWEEP_START = {"bigroom": 250.0, "manyrooms": 2000.0}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m chatserver.bench",
        description="Open-loop load benchmark for chatserver: simulated clients over real "
        "loopback sockets; reports deliveries/s, loss, latency and the server's memory.",
    )
    add = p.add_argument
    add(
        "scenarios",
        nargs="*",
        default=["all"],
        choices=[*ALL, "all"],
        metavar="SCENARIO",
        help=f"any of {', '.join(ALL)}, or all (default)",
    )
    g = p.add_argument_group("scenario numbers (override each scenario's default)")
    g.add_argument("--clients", type=int, help="simulated clients")
    g.add_argument("--room-size", type=int, help="clients per room")
    g.add_argument("--senders", type=int, help="clients that send")
    g.add_argument("--rate", type=float, help="messages/s in total, open loop")
    g.add_argument("--size", type=int, help="bytes of text per message")
    g.add_argument("--duration", type=float, help="seconds of sending (idle: of holding)")
    g.add_argument("--sample", type=int, help="receivers that measure latency (0: all)")
    g.add_argument("--drain", type=float, help="seconds to wait for the last deliveries")
    g.add_argument(
        "--read-ms", type=float, help="read the non-sample receivers every N ms (default 5)"
    )
    s = p.add_argument_group("sweep")
    s.add_argument(
        "--sweep",
        action="store_true",
        help="bigroom/manyrooms: find the highest rate with no loss and p99 <= 50 ms",
    )
    s.add_argument("--sweep-start", type=float, help="first rate of the sweep, messages/s")
    s.add_argument("--sweep-precision", type=float, default=0.1, help="stop bisecting within")
    s.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each sweep step N times and judge it by the median p99 (noisy machines)",
    )
    t = p.add_argument_group("server")
    t.add_argument("--connect", metavar="HOST:PORT", help="load a running server (loopback)")
    t.add_argument(
        "--no-pin",
        action="store_true",
        help="no CPU pinning (default: server on CPU 0, generator on the rest)",
    )
    t.add_argument("--db-memory", action="store_true", help="server history in :memory:")
    t.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the server (repeat; e.g. --server-arg=--loop=asyncio)",
    )
    t.add_argument("--workers", type=int, help="generator processes (default: one per CPU)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def _connect_target(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError
    except ValueError:
        raise SystemExit(f"--connect: {host} is not a loopback address") from None
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = list(ALL) if "all" in args.scenarios else list(dict.fromkeys(args.scenarios))
    overrides = {
        "clients": args.clients,
        "room_size": args.room_size,
        "senders": args.senders,
        "rate": args.rate,
        "size": args.size,
        "duration": args.duration,
        "sample": args.sample,
        "drain": args.drain,
        "read_ms": args.read_ms,
    }
    target = Target(
        connect=_connect_target(args.connect) if args.connect else None,
        pin=not args.no_pin,
        db_memory=args.db_memory,
        server_args=args.server_arg,
        workers=args.workers,
    )
    soft, hard = raise_nofile()
    scenarios = [SCENARIOS[n].with_overrides(**overrides) for n in names]
    need = max(s.clients for s in scenarios) + 64
    if soft != resource.RLIM_INFINITY and soft < need:
        print(
            f"the open-files limit is {soft} (hard {hard}); {need} descriptors are needed "
            "for the clients and as many for the server: raise it (ulimit -Hn, "
            "limits.conf) or pass --clients",
            file=sys.stderr,
        )
        return 2

    def progress(rep: Report) -> None:
        p99 = rep.latency_ms.get("p99")
        print(
            f"  {rep.scenario} rate {rep.rate:,.0f}/s: {rep.deliveries_per_s:,.0f} deliveries/s, "
            f"loss {rep.loss:.4%}, p99 {p99} ms -> {'pass' if rep.passed else 'fail'}"
            f" (loopback write {rep.loopback_write_us} µs)",
            file=sys.stderr,
        )

    reports: list[Report] = []
    sweeps: dict[str, list[dict[str, object]]] = {}
    for scn in scenarios:
        if args.sweep and not scn.idle and scn.name in SWEEP_START:
            start = args.sweep_start or SWEEP_START[scn.name]
            print(f"sweeping {scn.name} from {start:,.0f} messages/s", file=sys.stderr)
            best, steps = sweep(
                scn,
                target,
                start=start,
                precision=args.sweep_precision,
                repeat=max(1, args.repeat),
                on_step=progress,
            )
            sweeps[scn.name] = [r.to_json() for r in steps]
            reports.append(best if best is not None else steps[-1])
        else:
            print(f"running {scn.name} ({scn.clients} clients)", file=sys.stderr)
            reports.append(measure(scn, target))
    if args.json:
        print(
            dumps(
                {"machine": machine(), "results": [r.to_json() for r in reports]}
                | ({"sweeps": sweeps} if sweeps else {})
            )
        )
    else:
        print(table(reports))
        extra = notes(reports)
        if extra:
            print(extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
