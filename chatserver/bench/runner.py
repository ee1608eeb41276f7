"""One measurement: a fresh server (or --connect), the load, and the server's side of it."""

from __future__ import annotations

from dataclasses import dataclass, field

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
from .loadgen import Hooks, run_load
from .report import Report, build
from .scenarios import Scenario


@dataclass
class Target:
    """Where the load goes: a server we start per measurement, or one already running."""

    connect: tuple[str, int] | None = None
    pin: bool = True
    db_memory: bool = False
    server_args: list[str] = field(default_factory=list)
    workers: int | None = None  # default: one per CPU the generator may use


class _ServerHooks(Hooks):
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.cpu0: float | None = None
        self.cpu1: float | None = None
        self.rss: int | None = None

        self.machine0 = self.machine1 = 0.0

    def before_start(self) -> None:
        self.cpu0 = self.server.cpu_seconds()
        self.machine0 = cpu_busy_seconds()

    def at_end(self) -> None:
        self.cpu1 = self.server.cpu_seconds()
        self.machine1 = cpu_busy_seconds()
        self.rss = self.server.rss_kib()

    def while_held(self) -> None:
        self.rss = self.server.rss_kib()


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
    with ServerProcess(target.server_args, pin=target.pin, db_memory=target.db_memory) as server:
        cpus = generator_cpus(server.pinned)
        if server.pinned:
            pin_self(cpus)  # the coordinator stays off the server's CPU too
        rss_before = server.rss_kib()
        hooks = _ServerHooks(server)
        load = run_load(
            scn, server.host, server.port, workers=_workers(target, cpus), cpus=cpus, hooks=hooks
        )
        rep = build(scn, load)
        rep.server_command = server.command
        rep.server_rss_kib = hooks.rss
        rep.server_rss_before_kib = rss_before
        if scn.idle and hooks.rss is not None and rss_before is not None and load.ready:
            rep.rss_per_conn_kib = round((hooks.rss - rss_before) / load.ready, 2)
        if hooks.cpu0 is not None and hooks.cpu1 is not None and scn.duration > 0:
            rep.server_cpu = round((hooks.cpu1 - hooks.cpu0) / scn.duration, 3)
            # Whatever else kept the CPUs busy: other processes, or kernel work
            # (loopback TCP in softirq) charged to neither process.
            machine = (hooks.machine1 - hooks.machine0) / scn.duration
            rep.other_cpu = round(max(0.0, machine - rep.server_cpu - (rep.gen_cpu or 0)), 3)
        if server.proc.poll() is not None:
            rep.first_error = rep.first_error or f"server exited: {server.log_tail(5)}"
        return rep


def _workers(target: Target, cpus: list[int]) -> int:
    return target.workers or max(1, len(cpus))
