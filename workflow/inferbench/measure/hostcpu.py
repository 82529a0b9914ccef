"""The CPU that launches a GPU cell's work: the host's fastest at the moment, not the scheduler's pick.

A launch-bound GPU cell runs at the speed of the one host thread that launches its kernels. On a
virtual machine the CPUs are not equally fast: each vCPU runs on a physical core that other
tenants' work can share or slow, and which vCPUs are slow changes from one second to the next
(docs/method.md, "The host's CPUs are not equally fast": on one H200 machine, at the same moment,
some vCPUs ran a Python loop 1.5x to 1.8x slower than others, and pytorch fp16 batch 32 ran at
11,000 images/s on one vCPU and 24,000 on another). The guest's scheduler cannot see this and
moves the thread between vCPUs, so the same cell measured twice lands at two figures.

`FastestCpu` times a short pure-Python loop on each CPU the process may run on (the kernel
launch path is Python and driver code on that one thread) and pins the calling thread to the
fastest before the warm-up; before each round of the timed window it checks that CPU again and
moves on only if it has slowed; it restores the thread's CPUs when the window ends. A CPU already running another cell's measuring thread
times slow (they share it) and is passed over. Where every CPU runs alike (bare metal), it
costs a few milliseconds and changes nothing.

Only the calling thread moves (sched_setaffinity on thread 0); threads started while it is
pinned inherit its CPU, so nothing should start one inside the window.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field

LOOP_ADDS = 10_000  # about 0.3 ms on a fast core: long enough to see a slow one, short to scan 16
LOOP_REPEATS = 3
# A recheck keeps the CPU while it is at most this much slower than at its scan: the slow
# states measured were 1.5x and more, and a loop this short jitters by a few percent.
RECHECK_TOLERANCE = 1.15


def loop_us(adds: int = LOOP_ADDS, repeats: int = LOOP_REPEATS) -> float:
    """Median microseconds of a pure-Python loop of `adds` additions on the CPU it runs on."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        total = 0
        for i in range(adds):
            total += i
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


@dataclass
class FastestCpu:
    """Pin the calling thread to the fastest of `cpus` (default: the ones it may use now) on each
    pick(); restore its CPUs on close(). `time_cpu(cpu)` times the CPU the thread is on (a
    parameter for tests)."""

    cpus: list[int] | None = None
    time_cpu: object = None
    picks: list[int] = field(default_factory=list)  # the CPU of each pick, in order
    speed_ratio: float | None = None  # slowest over fastest CPU at the first scan
    _fastest_us: float = 0.0

    def __post_init__(self):
        self._original = sorted(os.sched_getaffinity(0)) if can_pin() else None
        if self.cpus is None:
            self.cpus = list(self._original or [])
        self.time_cpu = self.time_cpu or (lambda _cpu: loop_us())

    def pick(self, recheck: bool = False) -> int | None:
        """Time each CPU, pin to the fastest and return it (None where threads cannot be pinned).
        recheck: first time only the CPU the thread is pinned to, and stay there if it is still
        within RECHECK_TOLERANCE of its speed at the last scan (a millisecond, not a scan)."""
        if not can_pin() or not self.cpus:
            return None
        if recheck and self.picks:
            current = self.picks[-1]
            if self.time_cpu(current) <= self._fastest_us * RECHECK_TOLERANCE:
                self.picks.append(current)
                return current
        timings = {}
        for cpu in self.cpus:
            os.sched_setaffinity(0, {cpu})
            timings[cpu] = self.time_cpu(cpu)
        fastest = min(timings, key=timings.get)
        os.sched_setaffinity(0, {fastest})
        self._fastest_us = timings[fastest]
        if self.speed_ratio is None and timings[fastest] > 0:
            self.speed_ratio = max(timings.values()) / timings[fastest]
        self.picks.append(fastest)
        return fastest

    def close(self) -> None:
        if self._original:
            os.sched_setaffinity(0, set(self._original))

    def __enter__(self) -> "FastestCpu":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NoPinning:
    """The scheduler decides (measurement: pin_fastest_cpu: false, and CPU cells)."""

    picks = ()
    speed_ratio = None

    def pick(self, recheck: bool = False) -> None:
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> "NoPinning":
        return self

    def __exit__(self, *exc) -> None:
        pass
