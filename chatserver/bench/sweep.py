"""--sweep: the highest rate a server sustains, by doubling then bisecting.

Sustained means nothing lost, nobody cut off and p99 latency within
``SWEEP_P99_MS``. Every step gets a fresh server (see :func:`runner.measure`),
so one overloaded step cannot leave a backlog for the next.
"""

from __future__ import annotations

from collections.abc import Callable

from .report import Report
from .runner import Target, measure
from .scenarios import Scenario

MAX_STEPS = 20


def sweep(
    scn: Scenario,
    target: Target,
    *,
    start: float,
    precision: float = 0.1,
    repeat: int = 1,
    on_step: Callable[[Report], None] | None = None,
) -> tuple[Report | None, list[Report]]:
    """Return the best passing step (None if even the lowest rate failed) and every step.

    With ``repeat`` > 1 each step is measured that many times (a fresh server
    each) and judged by the run with the median p99: on a noisy machine one
    stall must not decide a step.
    """
    steps: list[Report] = []

    def step(rate: float) -> Report:
        runs = [measure(scn.with_overrides(rate=round(rate, 1)), target) for _ in range(repeat)]
        runs.sort(key=_p99)
        rep = runs[len(runs) // 2]
        steps.append(rep)
        if on_step is not None:
            on_step(rep)
        return rep

    best: Report | None = None
    low, high = 0.0, 0.0  # highest rate that passed, lowest that failed
    rate = start
    # Up by doubling (or down by halving when the start rate already fails).
    while len(steps) < MAX_STEPS:
        rep = step(rate)
        if rep.passed:
            best, low = rep, rate
            if high:
                break
            rate *= 2
        else:
            high = rate
            if low:
                break
            rate /= 2
            if rate < 1:
                return None, steps
    # Then bisect until the bracket is within the precision.
    while best is not None and high and high / low > 1 + precision and len(steps) < MAX_STEPS:
        mid = (low + high) / 2
        rep = step(mid)
        if rep.passed:
            best, low = rep, mid
        else:
            high = mid
    return best, steps


def _p99(rep: Report) -> float:
    p99 = rep.latency_ms.get("p99")
    return float("inf") if p99 is None else p99
