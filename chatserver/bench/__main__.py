"""``python -m chatserver.bench``: run the load scenarios and print the figures.

Examples::

    python -m chatserver.bench all                 # the four scenarios, a fresh server each
    python -m chatserver.bench bigroom --rate 2000 --duration 10
    python -m chatserver.bench bigroom manyrooms --sweep --json
    python -m chatserver.bench fixed --connect 127.0.0.1:5500
    python -m chatserver.bench bigroom --redis --nodes 2   # two processes sharing one Redis
    python -m chatserver.bench --compare-cluster           # single vs 1 and 2 processes + Redis
    python -m chatserver.bench storm --clients 5000        # a join storm, then a restart's
    INSPIRCD=/path/to/inspircd python -m chatserver.bench storm   # and InspIRCd's join storm
"""

from __future__ import annotations

import argparse
import ipaddress
import resource
import sys
from collections.abc import Sequence
from dataclasses import replace

from . import compare
from .launcher import raise_nofile
from .redisproc import redis_server_path
from .report import Report, dumps, machine, notes, table
from .runner import Target, measure
from .scenarios import ALL, SCENARIOS, STORM_CLIENTS
from .storm import inspircd_path, measure_storm, storm_table
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
        # A string, not ["all"]: argparse checks an empty "*" positional's
        # default against the choices as one value, and a list is none of them.
        default="all",
        choices=[*ALL, "storm", "all"],
        metavar="SCENARIO",
        help=f"any of {', '.join(ALL)}, or all (default: all of those); or storm "
        f"({STORM_CLIENTS} clients into one room at once, then after a restart; "
        "InspIRCd too when $INSPIRCD or inspircd on PATH)",
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
    c = p.add_argument_group(
        "cluster mode (a redis-server and the server processes share the server's CPU)"
    )
    c.add_argument(
        "--redis",
        action="store_true",
        help="start a redis-server (temporary directory, append-only file on) and --nodes "
        "server processes with --redis; the clients are spread over them",
    )
    c.add_argument(
        "--nodes",
        type=int,
        help="server processes in cluster mode (default 1; 2 with --compare-cluster)",
    )
    c.add_argument(
        "--redis-fsync",
        choices=("always", "everysec"),
        default="everysec",
        help="Redis's appendfsync (everysec: written at once, synced every second, as the "
        "single process's SQLite without --fsync)",
    )
    c.add_argument(
        "--compare-cluster",
        action="store_true",
        help="each scenario (default: bigroom and manyrooms) as a single process, 1 process "
        "+ Redis and --nodes processes + Redis, one after the other, and the comparison",
    )
    p.add_argument("--no-restart", action="store_true", help="storm: leave out the reconnect storm")
    p.add_argument("--no-peer", action="store_true", help="storm: leave out InspIRCd")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if isinstance(args.scenarios, str):
        args.scenarios = [args.scenarios]
    if args.compare_cluster and "all" in args.scenarios:
        names = ["bigroom", "manyrooms"]
    elif "all" in args.scenarios:
        names = list(ALL)
    else:
        names = list(dict.fromkeys(args.scenarios))
    storm = "storm" in names
    names = [n for n in names if n != "storm"]
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
    nodes = args.nodes or (2 if args.compare_cluster else 1)
    if args.nodes is not None and not (args.redis or args.compare_cluster):
        parser.error("--nodes needs --redis (or --compare-cluster)")
    if (args.redis or args.compare_cluster) and (why := _no_cluster(args, nodes)):
        parser.error(why)
    target = Target(
        connect=_connect_target(args.connect) if args.connect else None,
        pin=not args.no_pin,
        db_memory=args.db_memory,
        server_args=args.server_arg,
        workers=args.workers,
        redis=args.redis,
        nodes=nodes,
        redis_fsync=args.redis_fsync,
    )
    if args.compare_cluster:
        targets = [
            replace(target, redis=False),
            replace(target, redis=True, nodes=1),
            replace(target, redis=True, nodes=nodes),
        ]
    else:
        targets = [target]
    soft, hard = raise_nofile()
    scenarios = [SCENARIOS[n].with_overrides(**overrides) for n in names]
    storm_clients = args.clients or STORM_CLIENTS
    need = max([s.clients for s in scenarios] + ([storm_clients] if storm else [])) + 64
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
    groups: dict[str, list[Report]] = {}
    for scn in scenarios:
        for tgt in targets:
            on = f" on {tgt.label}" if tgt.redis or len(targets) > 1 else ""
            if args.sweep and not scn.idle and scn.name in SWEEP_START:
                start = args.sweep_start or SWEEP_START[scn.name]
                print(f"sweeping {scn.name}{on} from {start:,.0f} messages/s", file=sys.stderr)
                best, steps = sweep(
                    scn,
                    tgt,
                    start=start,
                    precision=args.sweep_precision,
                    repeat=max(1, args.repeat),
                    on_step=progress,
                )
                key = scn.name if len(targets) == 1 else f"{scn.name} {steps[-1].setup}"
                sweeps[key] = [r.to_json() for r in steps]
                rep = best if best is not None else steps[-1]
            else:
                print(f"running {scn.name}{on} ({scn.clients} clients)", file=sys.stderr)
                rep = measure(scn, tgt)
            reports.append(rep)
            groups.setdefault(scn.name, []).append(rep)
    summary = compare.summarize(groups) if args.compare_cluster else None
    storms = []
    if storm:
        if args.connect or args.redis:
            parser.error("storm starts (and restarts) its own single server")
        peer = None if args.no_peer else inspircd_path()
        print(
            f"running storm ({storm_clients} clients into one room"
            f"{', then a restart' if not args.no_restart else ''}"
            f"{', and InspIRCd' if peer else ''})",
            file=sys.stderr,
        )
        storms = measure_storm(
            storm_clients,
            pin=not args.no_pin,
            db_memory=args.db_memory,
            server_args=args.server_arg,
            restart=not args.no_restart,
            peer=peer,
        )
    if args.json:
        print(
            dumps(
                {"machine": machine(), "results": [r.to_json() for r in reports]}
                | ({"sweeps": sweeps} if sweeps else {})
                | ({"compare": summary} if summary is not None else {})
                | ({"storm": [r.to_json() for r in storms]} if storms else {})
            )
        )
    else:
        if reports:
            print(table(reports))
        if storms:
            print(storm_table(storms))
        extra = notes(reports)
        if extra:
            print(extra)
        if summary is not None:
            print(compare.text(summary))
    return 0


def _no_cluster(args: argparse.Namespace, nodes: int) -> str | None:
    """Why cluster mode cannot run here, or None."""
    if args.connect:
        return "--redis and --compare-cluster start their own servers: not with --connect"
    if nodes < 1:
        return "--nodes must be at least 1"
    if redis_server_path() is None:
        return "cluster mode needs redis-server on PATH (apt-get install redis-server)"
    return None


if __name__ == "__main__":
    sys.exit(main())
