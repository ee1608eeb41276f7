"""--compare-cluster: one process, 1 process + Redis, N processes + Redis, side by side.

Each scenario is measured in the three set-ups, one after the other, with the
same numbers (or swept, with --sweep). On a machine with few cores the
cluster's processes and Redis share the server's CPU, so the runs cannot
show scaling; what they measure is the cost of each part, and from it
:func:`project` estimates what N processes on N cores would carry:

- each process pays ``a`` for every message of the chat (it reads the whole
  log) and ``b`` for every delivery to its own clients: its CPU share is
  ``a·M + b·D`` (M messages/s, D its deliveries/s). The 1-process and the
  N-process runs give two such equations, solved for ``a`` and ``b``;
- Redis pays ``r(N) = r0 + r1·N`` CPU per message (appending it, and one
  read by each process), from the same two runs;
- what each process and Redis spend with nobody connected (measured for a
  second before each run: heartbeats, polls, timers) is a cost per second,
  taken off first; the rest is still spread over the messages, so measure
  near the rate the set-ups just sustain, not far below it;
- with f receivers per message, N processes on N cores carry
  ``M = 1 / (a + b·f/N)`` messages/s until Redis's one core is full at
  ``M = 1 / r(N)``: that is the ceiling, the ordered log on one core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .report import Report

PROJECT_NODES = (1, 2, 4, 8, 16)


@dataclass
class Costs:
    """CPU seconds per message and per delivery, fitted from two runs."""

    per_msg: float  # a: each process, for every message of the chat
    per_delivery: float  # b: a process, for each delivery to one of its clients
    redis_base: float  # r0: Redis, per message
    redis_per_node: float  # r1: Redis, per message and process reading it
    fanout: float  # f: receivers per message
    fitted: bool  # False: a and b could not be told apart (a = 0, b from the N run)


def _rates(rep: Report) -> tuple[float, float, float] | None:
    """(messages/s, deliveries/s of one process, CPU share of one process), averaged."""
    if not rep.node_cpu or not rep.node_delivered or rep.duration <= 0 or not rep.msgs_per_s:
        return None
    if any(c is None for c in rep.node_cpu):
        return None
    n = len(rep.node_cpu)
    # Less what the process spends with nobody connected (a cost per second).
    idle = [i or 0.0 for i in rep.node_idle_cpu or [0.0] * n]
    cpu = sum(max(0.0, (c or 0.0) - i) for c, i in zip(rep.node_cpu, idle, strict=True)) / n
    # Deliveries were counted over the send phase and the drain after it; as
    # rates they are taken over the send phase, as deliveries/s is.
    per_s = rep.deliveries_per_s / max(1, rep.delivered)
    deliveries = sum(rep.node_delivered) * per_s / n
    return rep.msgs_per_s, deliveries, cpu


def _redis_us_per_msg(rep: Report) -> float | None:
    """Redis's CPU per message, less what it spends with nobody connected."""
    if rep.redis_cpu is None or not rep.msgs_per_s:
        return None
    busy = max(0.0, rep.redis_cpu - (rep.redis_idle_cpu or 0.0))
    return busy / rep.msgs_per_s * 1e6


def fit(one: Report, many: Report) -> Costs | None:
    """The costs, from a 1-process and an N-process cluster run of one scenario."""
    r1, rn = _rates(one), _rates(many)
    if r1 is None or rn is None or not many.sent or not many.delivered:
        return None
    (m1, d1, c1), (m2, d2, c2) = r1, rn
    det = m1 * d2 - m2 * d1
    fitted = False
    a = b = 0.0
    if det:
        a = (c1 * d2 - c2 * d1) / det
        b = (m1 * c2 - m2 * c1) / det
        fitted = a >= 0 and b > 0
    if not fitted:
        a, b = 0.0, (c2 / d2 if d2 else 0.0)
    ra, rb = _redis_us_per_msg(one), _redis_us_per_msg(many)
    if ra is None or rb is None:
        return None
    n1, n2 = one.nodes or 1, many.nodes or 1
    slope = max(0.0, (rb - ra) / (n2 - n1)) if n2 != n1 else 0.0
    base = max(0.0, ra - slope * n1)
    return Costs(
        per_msg=a,
        per_delivery=b,
        redis_base=base / 1e6,
        redis_per_node=slope / 1e6,
        fanout=many.delivered / many.sent,
        fitted=fitted,
    )


def project(costs: Costs, nodes: int) -> dict[str, Any]:
    """What ``nodes`` processes on as many cores carry, and what stops them."""
    process = costs.per_msg + costs.per_delivery * costs.fanout / nodes
    redis = costs.redis_base + costs.redis_per_node * nodes
    by_processes = 1 / process if process > 0 else float("inf")
    by_redis = 1 / redis if redis > 0 else float("inf")
    msgs = min(by_processes, by_redis)
    return {
        "nodes": nodes,
        "msgs_per_s": round(msgs),
        "deliveries_per_s": round(msgs * costs.fanout),
        "limit": "redis" if by_redis < by_processes else "processes",
        "redis_ceiling_msgs_per_s": round(by_redis),
    }


def summarize(groups: dict[str, list[Report]]) -> dict[str, Any]:
    """Per scenario: each set-up's figures against the single process, and the projection."""
    out: dict[str, Any] = {}
    for scenario, reps in groups.items():
        single = next((r for r in reps if r.nodes is None), None)
        rows = []
        for r in reps:
            row = {
                "setup": r.setup,
                "rate": r.rate,
                "deliveries_per_s": r.deliveries_per_s,
                "p50_ms": r.latency_ms.get("p50"),
                "p99_ms": r.latency_ms.get("p99"),
                "loss": r.loss,
                "passed": r.passed,
                "cpu_us_per_delivery": r.cpu_us_per_delivery(),
                "redis_cpu_us_per_msg": r.redis_cpu_us_per_msg,
                "node_cpu_us_per_delivery": r.node_cpu_us_per_delivery,
            }
            if single is not None and single.deliveries_per_s and r is not single:
                row["vs_single"] = round(r.deliveries_per_s / single.deliveries_per_s, 3)
                p99, p99s = r.latency_ms.get("p99"), single.latency_ms.get("p99")
                if p99 is not None and p99s is not None:
                    row["added_p99_ms"] = round(p99 - p99s, 3)
            rows.append(row)
        entry: dict[str, Any] = {"setups": rows}
        cluster = sorted((r for r in reps if r.nodes), key=lambda r: r.nodes or 0)
        if len(cluster) >= 2:
            costs = fit(cluster[0], cluster[-1])
            if costs is not None:
                entry["costs_us"] = {
                    "process_per_msg": round(costs.per_msg * 1e6, 3),
                    "process_per_delivery": round(costs.per_delivery * 1e6, 3),
                    "redis_per_msg": round(costs.redis_base * 1e6, 3),
                    "redis_per_msg_per_process": round(costs.redis_per_node * 1e6, 3),
                    "fanout": round(costs.fanout, 1),
                    "fitted": costs.fitted,
                }
                entry["projection"] = [project(costs, n) for n in PROJECT_NODES]
        out[scenario] = entry
    return out


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def text(summary: dict[str, Any]) -> str:
    """The comparison as the lines printed under the table."""
    lines = []
    for scenario, entry in summary.items():
        lines.append(f"{scenario}:")
        for row in entry["setups"]:
            vs = f" ({row['vs_single']:.0%} of single)" if "vs_single" in row else ""
            added = f", p99 {row['added_p99_ms']:+.2f} ms" if "added_p99_ms" in row else ""
            redis = (
                f", Redis {row['redis_cpu_us_per_msg']:.1f} µs/msg"
                if row["redis_cpu_us_per_msg"] is not None
                else ""
            )
            lines.append(
                f"  {row['setup']:>6}: {_n(row['deliveries_per_s'])} deliveries/s{vs}, "
                f"p50/p99 {_n(row['p50_ms'], 2)}/{_n(row['p99_ms'], 2)} ms{added}, "
                f"loss {row['loss']:.4%}, server {_n(row['cpu_us_per_delivery'], 2)} "
                f"µs/delivery{redis}"
            )
        costs = entry.get("costs_us")
        if costs:
            how = "fitted" if costs["fitted"] else "not separable: all per delivery"
            lines.append(
                f"  costs ({how}): a process {costs['process_per_msg']:.2f} µs a message "
                f"+ {costs['process_per_delivery']:.3f} µs a delivery; Redis "
                f"{costs['redis_per_msg']:.2f} µs a message + "
                f"{costs['redis_per_msg_per_process']:.2f} per process; "
                f"{costs['fanout']:.0f} receivers a message"
            )
            proj = ", ".join(
                f"{p['nodes']}: {p['msgs_per_s']:,} msg/s = {p['deliveries_per_s']:,} "
                f"deliveries/s{' (Redis)' if p['limit'] == 'redis' else ''}"
                for p in entry["projection"]
            )
            lines.append(f"  projected, N processes on N cores + Redis on one: {proj}")
            lines.append(
                f"  ceiling: Redis's ordered log on one core, "
                f"{entry['projection'][0]['redis_ceiling_msgs_per_s']:,} msg/s with one process"
            )
    return "\n".join(lines)
