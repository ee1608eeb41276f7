"""The benchmark's scenarios: who connects, which rooms, how fast they send.

Every number is a field so the command line can change it; the defaults are
the ones issue 5 measures peers with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Scenario:
    name: str
    clients: int
    room_size: int  # clients per room; rooms = clients / room_size
    senders: int  # how many clients send (the first ones of each room, spread evenly)
    rate: float  # messages/s in total, open loop (0: nobody sends, as in idle)
    size: int = 100  # bytes of message text
    duration: float = 5.0  # seconds of sending
    sample: int = 10  # receivers whose frames are parsed for latency (0: all)
    drain: float = 5.0  # seconds to wait for the last deliveries
    # How often the receivers that only count are read (ms). Reading every socket
    # as soon as bytes arrive costs Python a call per server write; on loopback
    # it also moves the receive side's kernel work onto the generator's CPU and
    # makes reader and writer contend for each socket (docs/performance.md).
    read_ms: float = 5.0
    idle: bool = False  # connect, hold, measure the server's memory; no traffic
    target: str = ""  # the target, for the report

    @property
    def rooms(self) -> int:
        return max(1, self.clients // self.room_size)

    def room_of(self, client: int) -> int:
        return client % self.rooms

    def node_of(self, client: int, nodes: int) -> int:
        """Which of ``nodes`` server processes a client connects to (cluster mode).

        Round robin over each room's members (client i is member i // rooms of
        its room), so every room has members on every process; round robin
        over all clients would put whole rooms on one process whenever the
        number of rooms is a multiple of the number of processes.
        """
        return (client // self.rooms) % nodes

    def is_sender(self, client: int) -> bool:
        # Clients i, i + rooms, ... share room i % rooms, so the first senders/rooms
        # "rows" are senders and every room gets its share.
        return client < self.senders

    def with_overrides(self, **changes: Any) -> Scenario:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


SCENARIOS: dict[str, Scenario] = {
    "bigroom": Scenario(
        "bigroom",
        clients=500,
        room_size=500,
        senders=500,
        rate=4800,  # x 499 receivers = 2.4 M deliveries/s, the target
        sample=10,
        target=">= 2.4 M deliveries/s",
    ),
    "manyrooms": Scenario(
        "manyrooms",
        clients=1000,
        room_size=10,
        senders=1000,
        rate=36_000,
        sample=20,
        target=">= 36 000 messages/s",
    ),
    "fixed": Scenario(
        "fixed",
        clients=200,
        room_size=200,
        senders=200,
        rate=100,
        sample=20,
        target="p99 <= 3 ms",
    ),
    "idle": Scenario(
        "idle",
        clients=5000,
        # Spread over rooms of 10; idle-room holds them all in one.
        room_size=10,
        senders=0,
        rate=0,
        duration=2.0,  # the hold before memory is read
        sample=0,
        idle=True,
        target="<= 6 KiB RSS per connection",
    ),
}

SCENARIOS["idle-room"] = replace(
    SCENARIOS["idle"],
    name="idle-room",
    # All 5 000 in one room: past --quiet-room-size its joins are not told to
    # everyone, so filling it is no longer a quadratic join storm.
    room_size=5000,
)

ALL = ("bigroom", "manyrooms", "fixed", "idle", "idle-room")
# Not in `all`: it starts its own servers (and restarts one), with its own figures.
STORM_CLIENTS = 5000

# The pass mark of a sweep step (issue 5): nothing lost and p99 within this.
SWEEP_P99_MS = 50.0
