"""The figures as a fixed-width table (like the server bench's), and the medians of runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace

from .runner import Result

HEAD = (
    "client",
    "run",
    "scenario",
    "lines",
    "keys",
    "p50 ms",
    "p95",
    "max",
    "CPU %",
    "secs",
    "sent",
    "drawn",
    "catch-up ms",
    "srv %",
    "bench %",
    "other %",
)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _row(r: Result, label: str) -> tuple[str, ...]:
    lat = r.key_ms
    keys = "-" if not r.keys else f"{r.keys_shown}/{r.keys}"
    return (
        label,
        str(r.run) if r.run else "median",
        r.scenario,
        _num(r.pane_lines),
        keys,
        _num(lat.get("p50"), 1),
        _num(lat.get("p95"), 1),
        _num(lat.get("max"), 1),
        _num(r.cpu, 1),
        _num(r.seconds, 1),
        _num(r.sent) if r.sent else "-",
        _num(r.drawn) if r.sent else "-",
        _num(r.catch_up_ms, 0),
        _num(r.server_cpu, 1),
        _num(r.bench_cpu, 1),
        _num(r.other_cpu, 1),
    )


def labels(results: Sequence[Result]) -> dict[str, str]:
    """Short names for the client checkouts: their last path component, or the whole
    path where two share one."""
    paths = list(dict.fromkeys(r.client for r in results))
    short = {p: p.rstrip("/").rsplit("/", 1)[-1] or p for p in paths}
    if len(set(short.values())) < len(short):
        return {p: p for p in paths}
    return short


def table(results: Sequence[Result], label_width: int = 0) -> str:
    """One line per result; columns at least 7 wide, so that lines printed one at a
    time (progress) line up under a header printed alone."""
    names = labels(results)
    rows = [HEAD, *(_row(r, names[r.client]) for r in results)]
    widths = [max(7, *(len(row[i]) for row in rows)) for i in range(len(HEAD))]
    widths[0] = max(widths[0], label_width)
    lines = []
    for k, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def medians(results: Sequence[Result]) -> list[Result]:
    """Per client and scenario, each figure's median over the runs (run 0)."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.client, r.scenario), []).append(r)
    out = []
    for runs in groups.values():
        first = runs[0]
        out.append(
            replace(
                first,
                run=0,
                pane_lines=round(statistics.median(r.pane_lines for r in runs)),
                keys=round(statistics.median(r.keys for r in runs)),
                keys_shown=round(statistics.median(r.keys_shown for r in runs)),
                key_ms={q: _median([r.key_ms.get(q) for r in runs]) for q in ("p50", "p95", "max")},
                cpu=_median([r.cpu for r in runs]),
                seconds=_median([r.seconds for r in runs]) or 0.0,
                sent=round(statistics.median(r.sent for r in runs)),
                drawn=None
                if any(r.drawn is None for r in runs)
                else round(statistics.median(r.drawn or 0 for r in runs)),
                catch_up_ms=_median([r.catch_up_ms for r in runs]),
                server_cpu=_median([r.server_cpu for r in runs]),
                bench_cpu=_median([r.bench_cpu for r in runs]),
                other_cpu=_median([r.other_cpu for r in runs]),
            )
        )
    return out


NOISY = 25.0  # % of a core used by other processes that makes a figure suspect


def notes(results: Sequence[Result]) -> str:
    """Warnings the table has no room for: other work on the machine, keys never shown."""
    out = []
    names = labels(results)
    for r in results:
        where = f"{names[r.client]} run {r.run} {r.scenario}"
        if r.other_cpu is not None and r.other_cpu > NOISY:
            out.append(
                f"WARNING {where}: other processes used {r.other_cpu:.0f}% of a core "
                "meanwhile; the latencies (and CPU figures) are skewed"
            )
        if r.keys_shown < r.keys:
            out.append(f"{where}: {r.keys - r.keys_shown} of {r.keys} keys never showed")
        if r.sent and r.drawn != r.sent:
            out.append(f"{where}: the last message never showed; {r.drawn} of {r.sent} did")
    return "\n".join(out)
