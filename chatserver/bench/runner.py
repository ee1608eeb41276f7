"""One measurement: a fresh server (or --connect), the load, and the server's side of it."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from .calibrate import loopback_write_us
from .launcher import (
    SERVER_CPU,
    ServerProcess,
    affinity_kept,
    busy_cpus,
    can_pin,
    cpu_busy_seconds,
    generator_cpus,
    pin_self,
)
from .loadgen import Hooks, LoadResult, run_load
from .redisproc import RedisProcess
from .report import Report, build
from .scenarios import Scenario


@dataclass
class Target:
    """Where the load goes: a server we start per measurement, or one already running.

    With ``redis`` (cluster mode) each measurement starts its own redis-server
    and ``nodes`` server processes on it, and the clients are spread over them.
    """

    connect: tuple[str, int] | None = None
    pin: bool = True
    db_memory: bool = False
    server_args: list[str] = field(default_factory=list)
    workers: int | None = None  # default: one per CPU the generator may use
    redis: bool = False
    nodes: int = 1
    redis_fsync: str = "everysec"  # appendfsync: what SQLite without --fsync does

    @property
    def label(self) -> str:
        """single, or 1 process + Redis, 2 processes + Redis, ..."""
        if not self.redis:
            return "single"
        return f"{self.nodes} process{'es' if self.nodes > 1 else ''} + Redis"


class _ServerHooks(Hooks):
    """The server side's CPU, memory and the machine's busy time at the measured moments."""

    def __init__(self, servers: list[ServerProcess], redis: RedisProcess | None = None) -> None:
        self.servers = servers
        self.redis = redis
        self.cpu0: list[float | None] = []
        self.cpu1: list[float | None] = []
        self.rss: list[int | None] = []
        self.redis_cpu0 = self.redis_cpu1 = None
        self.machine0 = self.machine1 = 0.0

    def before_start(self) -> None:
        self.cpu0 = [s.cpu_seconds() for s in self.servers]
        if self.redis is not None:
            self.redis_cpu0 = self.redis.cpu_seconds()
        self.machine0 = cpu_busy_seconds()

    def at_end(self) -> None:
        self.cpu1 = [s.cpu_seconds() for s in self.servers]
        if self.redis is not None:
            self.redis_cpu1 = self.redis.cpu_seconds()
        self.machine1 = cpu_busy_seconds()
        self.rss = [s.rss_kib() for s in self.servers]

    def while_held(self) -> None:
        self.rss = [s.rss_kib() for s in self.servers]


BUSY_WARN = 0.15  # a CPU busier than this before the run makes the figures suspect


def measure(scn: Scenario, target: Target) -> Report:
    busy = {cpu: b for cpu, b in busy_cpus().items() if b > BUSY_WARN}
    # What a loopback write costs right now, on the CPUs the run will use.
    pin = target.pin and can_pin()
    write_us = loopback_write_us(
        [SERVER_CPU] if pin else None, generator_cpus(True) if pin else None
    )
    # The coordinator keeps off the server's CPU during a run; it must get all
    # its CPUs back after it, or the next run (a sweep's next step) would
    # start its server on the generator's CPU, unpinned.
    with affinity_kept():
        rep = _measure(scn, target)
    if busy:
        rep.machine_busy = busy
    rep.loopback_write_us = write_us
    return rep


def _measure(scn: Scenario, target: Target) -> Report:
    if target.connect is not None:
        host, port = target.connect
        # Start your server with ``taskset -c 0``: the generator keeps off CPU 0.
        cpus = generator_cpus(pinned=target.pin and can_pin())
        pin_self(cpus)
        load = run_load(scn, host, port, workers=_workers(target, cpus), cpus=cpus)
        return build(scn, load)
    with contextlib.ExitStack() as stack:
        redis = None
        args = list(target.server_args)
        if target.redis:
            # Redis shares the server's CPU with the server processes: the
            # generator keeps its own, as in single-process mode.
            redis = RedisProcess(
                fsync=target.redis_fsync, cpus=[SERVER_CPU] if target.pin and can_pin() else None
            )
            stack.callback(redis.stop)
        servers: list[ServerProcess] = []
        for k in range(target.nodes if target.redis else 1):
            extra = args + (["--redis", redis.url, "--node", f"n{k + 1}"] if redis else [])
            server = ServerProcess(extra, pin=target.pin, db_memory=target.db_memory)
            stack.callback(server.stop)
            servers.append(server)
        return _measure_servers(scn, target, servers, redis)


def _measure_servers(
    scn: Scenario, target: Target, servers: list[ServerProcess], redis: RedisProcess | None
) -> Report:
    first = servers[0]
    cpus = generator_cpus(first.pinned)
    if first.pinned:
        pin_self(cpus)  # the coordinator stays off the server's CPU too
    rss_before = _sum([s.rss_kib() for s in servers])
    idle = _idle_cpu(servers, redis) if redis is not None else None
    hooks = _ServerHooks(servers, redis)
    load = run_load(
        scn,
        first.host,
        first.port,
        workers=_workers(target, cpus),
        cpus=cpus,
        hooks=hooks,
        ports=[s.port for s in servers] if redis is not None else None,
    )
    rep = build(scn, load)
    rep.server_command = first.command
    rep.server_rss_kib = _sum(hooks.rss)
    rep.server_rss_before_kib = rss_before
    if scn.idle and rep.server_rss_kib is not None and rss_before is not None and load.ready:
        rep.rss_per_conn_kib = round((rep.server_rss_kib - rss_before) / load.ready, 2)
    spent = [
        None if a is None or b is None else b - a
        for a, b in zip(hooks.cpu0, hooks.cpu1, strict=True)
    ]
    total = _sum(spent)
    redis_s = None
    if redis is not None and hooks.redis_cpu0 is not None and hooks.redis_cpu1 is not None:
        redis_s = hooks.redis_cpu1 - hooks.redis_cpu0
    if total is not None and scn.duration > 0:
        rep.server_cpu = round(total / scn.duration, 3)
        # Whatever else kept the CPUs busy: other processes, or kernel work
        # (loopback TCP in softirq) charged to neither process.
        machine = (hooks.machine1 - hooks.machine0) / scn.duration
        ours = rep.server_cpu + (rep.gen_cpu or 0) + (redis_s or 0) / scn.duration
        rep.other_cpu = round(max(0.0, machine - ours), 3)
    if redis is not None:
        _cluster_figures(rep, scn, target, load, spent, redis, redis_s)
        if idle is not None:
            rep.node_idle_cpu, rep.redis_idle_cpu = idle
    exited = [s for s in servers if s.proc.poll() is not None]
    if exited:
        rep.first_error = rep.first_error or f"server exited: {exited[0].log_tail(5)}"
    if redis is not None and not redis.alive():
        rep.first_error = rep.first_error or "redis-server exited: " + "".join(redis.log[-5:])
    return rep


def _cluster_figures(
    rep: Report,
    scn: Scenario,
    target: Target,
    load: LoadResult,
    spent: list[float | None],
    redis: RedisProcess,
    redis_s: float | None,
) -> None:
    """Redis's CPU per message, each process's CPU per delivery (its own clients')."""
    rep.nodes = target.nodes
    rep.redis_fsync = target.redis_fsync
    rep.redis_command = redis.command_line
    rep.redis_rss_kib = redis.rss_kib()
    rep.node_delivered = load.node_delivered
    if scn.duration > 0:
        rep.node_cpu = [None if s is None else round(s / scn.duration, 3) for s in spent]
        if redis_s is not None:
            rep.redis_cpu = round(redis_s / scn.duration, 3)
    if redis_s is not None and load.sent:
        rep.redis_cpu_us_per_msg = round(redis_s / load.sent * 1e6, 3)
    rep.node_cpu_us_per_delivery = [
        None if s is None or not d else round(s / d * 1e6, 3)
        for s, d in zip(spent, load.node_delivered, strict=False)
    ]
    total = _sum(spent)
    if total is not None and load.delivered:
        rep.server_cpu_us_per_delivery = round(total / load.delivered * 1e6, 3)


IDLE_WINDOW = 1.0  # seconds of measuring what the cluster costs with nobody connected


def _idle_cpu(
    servers: list[ServerProcess], redis: RedisProcess
) -> tuple[list[float | None], float | None]:
    """Each process's and Redis's CPU share with no client at all (heartbeats, polls,
    timers): a cost per second, not per message, which the comparison takes off."""
    before = [s.cpu_seconds() for s in servers], redis.cpu_seconds()
    time.sleep(IDLE_WINDOW)  # a measuring window, not synchronisation
    after = [s.cpu_seconds() for s in servers], redis.cpu_seconds()

    def share(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round((b - a) / IDLE_WINDOW, 3)

    nodes = [share(a, b) for a, b in zip(before[0], after[0], strict=True)]
    return nodes, share(before[1], after[1])


def _sum(values: list[float | None] | list[int | None]) -> Any:
    """The sum, or None when there is nothing or something is unknown."""
    if not values or any(v is None for v in values):
        return None
    return sum(values)  # type: ignore[arg-type]


def _workers(target: Target, cpus: list[int]) -> int:
    return target.workers or max(1, len(cpus))
