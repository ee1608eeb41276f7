"""One measurement's figures: computed from the generator's counts, printed as a table or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .loadgen import LoadResult
from .scenarios import SWEEP_P99_MS, Scenario

QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))


@dataclass
class Report:
    scenario: str
    clients: int
    rooms: int
    senders: int
    rate: float  # offered messages/s
    size: int
    duration: float
    ready: int
    failed: int
    setup_s: float
    sent: int = 0
    expected: int = 0
    delivered: int = 0
    loss: float = 0.0  # fraction of expected deliveries that never came
    msgs_per_s: float = 0.0
    deliveries_per_s: float = 0.0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    latency_samples: int = 0
    cut_slow_consumer: int = 0
    cut_eof: int = 0
    server_rss_kib: int | None = None
    server_rss_before_kib: int | None = None
    rss_per_conn_kib: float | None = None
    server_cpu: float | None = None  # share of one CPU during the send phase
    gen_cpu: float | None = None  # the generator's, summed over its workers
    other_cpu: float | None = None  # CPUs busy with neither (other processes, softirq)
    gen_late_sends: int = 0  # messages sent > 1 ms after their scheduled time
    gen_late_max_ms: float = 0.0
    first_error: str = ""
    machine_busy: dict[int, float] | None = None  # CPUs already busy before the run
    loopback_write_us: float | None = None  # one 100-byte loopback send, just before the run
    server_command: list[str] | None = None
    passed: bool | None = None  # nothing lost and p99 within the sweep's bound
    target: str = ""
    # Cluster mode only (--redis): left out of the JSON of a single process.
    nodes: int | None = None  # server processes, sharing one chat through Redis
    redis_fsync: str | None = None  # appendfsync of the benchmark's redis-server
    redis_cpu: float | None = None  # share of one CPU during the send phase
    redis_cpu_us_per_msg: float | None = None  # Redis CPU time per message sent
    redis_rss_kib: int | None = None
    node_cpu: list[float | None] | None = None  # each process's share of one CPU
    node_delivered: list[int] | None = None  # deliveries to each process's clients
    node_cpu_us_per_delivery: list[float | None] | None = None  # each process's own
    server_cpu_us_per_delivery: float | None = None  # all processes' CPU / all deliveries
    redis_command: list[str] | None = None
    # The same shares with nobody connected, measured for 1 s before the run:
    # a cost per second (heartbeats, polls, timers), not per message.
    node_idle_cpu: list[float | None] | None = None
    redis_idle_cpu: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.nodes is None:
            for name in CLUSTER_FIELDS:
                del out[name]
        return out

    @property
    def setup(self) -> str:
        """single, 1+R, 2+R, ...: what served the load."""
        return "single" if self.nodes is None else f"{self.nodes}+R"

    def cpu_us_per_delivery(self) -> float | None:
        """The server side's CPU time per delivery (all processes; Redis not counted)."""
        if self.server_cpu_us_per_delivery is not None:
            return self.server_cpu_us_per_delivery
        if self.server_cpu is None or not self.delivered:
            return None
        return round(self.server_cpu * self.duration / self.delivered * 1e6, 3)


CLUSTER_FIELDS = (
    "nodes",
    "redis_fsync",
    "redis_cpu",
    "redis_cpu_us_per_msg",
    "redis_rss_kib",
    "node_cpu",
    "node_delivered",
    "node_cpu_us_per_delivery",
    "server_cpu_us_per_delivery",
    "redis_command",
    "node_idle_cpu",
    "redis_idle_cpu",
)


def build(scn: Scenario, load: LoadResult) -> Report:
    rep = Report(
        scenario=scn.name,
        clients=scn.clients,
        rooms=scn.rooms,
        senders=min(scn.senders, scn.clients),
        rate=scn.rate,
        size=scn.size,
        duration=scn.duration,
        ready=load.ready,
        failed=load.failed,
        setup_s=round(load.setup_s, 3),
        first_error=load.first_error,
        target=scn.target,
    )
    if scn.idle:
        rep.cut_eof = load.cut_eof
        rep.cut_slow_consumer = load.cut_slow
        return rep
    rep.sent = load.sent
    rep.expected = load.expected
    rep.delivered = load.delivered
    rep.loss = 1.0 - load.delivered / load.expected if load.expected else 0.0
    if load.send_s > 0:
        rep.msgs_per_s = round(load.sent / load.send_s, 1)
        rep.deliveries_per_s = round(load.delivered / load.send_s, 1)
        rep.gen_cpu = round(load.gen_cpu_s / load.send_s, 3)
    rep.latency_ms = percentiles(load.latencies_ns)
    rep.latency_samples = len(load.latencies_ns)
    rep.cut_slow_consumer = load.cut_slow
    rep.cut_eof = load.cut_eof
    rep.gen_late_sends = load.late
    rep.gen_late_max_ms = round(load.late_max_ns / 1e6, 3)
    p99 = rep.latency_ms.get("p99")
    rep.passed = (
        load.failed == 0
        and rep.delivered >= rep.expected
        and rep.cut_slow_consumer + rep.cut_eof == 0
        and p99 is not None
        and p99 <= SWEEP_P99_MS
    )
    return rep


def percentiles(samples_ns: list[int]) -> dict[str, float | None]:
    if not samples_ns:
        return {name: None for name, _ in QUANTILES} | {"max": None}
    ordered = sorted(samples_ns)
    n = len(ordered)
    out: dict[str, float | None] = {
        name: round(ordered[min(n - 1, int(q * n))] / 1e6, 3) for name, q in QUANTILES
    }
    out["max"] = round(ordered[-1] / 1e6, 3)
    return out


# ---------------------------------------------------------------------------
# Output


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(reports: list[Report]) -> str:
    """A fixed-width summary, one line per measurement."""
    head = (
        "scenario",
        "clients",
        "rooms",
        "rate/s",
        "sent",
        "delivered",
        "loss",
        "msgs/s",
        "deliv/s",
        "p50 ms",
        "p90",
        "p99",
        "p99.9",
        "max",
        "cut",
        "RSS KiB",
        "KiB/conn",
        "srv CPU",
        "gen CPU",
        "other",
        "ok",
        "write µs",  # one loopback send, measured just before the run
    )
    cluster = any(r.nodes is not None for r in reports)
    if cluster:
        head += ("setup", "redis CPU", "redis µs/msg", "srv µs/deliv")
    rows = [head]
    for r in reports:
        lat = r.latency_ms
        extra: tuple[str, ...] = ()
        if cluster:
            extra = (
                r.setup,
                "-" if r.redis_cpu is None else f"{r.redis_cpu:.0%}",
                _num(r.redis_cpu_us_per_msg, 1),
                _num(r.cpu_us_per_delivery(), 2),
            )
        rows.append(
            (
                r.scenario,
                _num(r.ready) + ("" if not r.failed else f" ({r.failed} failed)"),
                _num(r.rooms),
                _num(r.rate),
                _num(r.sent),
                _num(r.delivered),
                f"{r.loss:.4%}" if r.expected else "-",
                _num(r.msgs_per_s),
                _num(r.deliveries_per_s),
                _num(lat.get("p50"), 2),
                _num(lat.get("p90"), 2),
                _num(lat.get("p99"), 2),
                _num(lat.get("p999"), 2),
                _num(lat.get("max"), 2),
                _num(r.cut_slow_consumer + r.cut_eof),
                _num(r.server_rss_kib),
                _num(r.rss_per_conn_kib, 2),
                "-" if r.server_cpu is None else f"{r.server_cpu:.0%}",
                "-" if r.gen_cpu is None else f"{r.gen_cpu:.0%}",
                "-" if r.other_cpu is None else f"{r.other_cpu:.0%}",
                "-" if r.passed is None else ("yes" if r.passed else "NO"),
                _num(r.loopback_write_us, 1),
                *extra,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for k, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def notes(reports: list[Report]) -> str:
    """What the table has no column for: errors, cut-offs, a generator falling behind."""
    out = []
    for r in reports:
        if r.failed:
            out.append(f"{r.scenario}: {r.failed} clients failed to connect: {r.first_error}")
        if r.cut_slow_consumer or r.cut_eof:
            out.append(
                f"{r.scenario}: cut off during the run: {r.cut_slow_consumer} slow_consumer, "
                f"{r.cut_eof} closed"
            )
        if r.machine_busy:
            cpus = ", ".join(f"CPU {c} {b:.0%}" for c, b in r.machine_busy.items())
            out.append(f"{r.scenario}: WARNING the machine was busy before the run ({cpus})")
        if r.gen_late_sends:
            out.append(
                f"{r.scenario}: the generator sent {r.gen_late_sends} messages > 1 ms late "
                f"(worst {r.gen_late_max_ms} ms); they still carry their scheduled time"
            )
    return "\n".join(out)


def dumps(payload: Any) -> str:
    return json.dumps(payload, indent=2)


def machine() -> dict[str, Any]:
    """What a figure was measured on."""
    import os
    import platform

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor()
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for mod in ("uvloop", "orjson"):
        try:
            info[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            info[mod] = None
    return info
