"""Timing one step repeatedly: warm-up outside the clock, then an adaptive number of timed
iterations, split into rounds.

The step is the whole unit of work of one iteration (for io=host: copy in, run, copy out).
Every iteration is timed on its own and waited for, so each latency is that of one request.

Rounds: the timed window is cut into `rounds` consecutive rounds that share the window's
minimum iterations and seconds. A round's throughput comes from its own median latency; the
cell's throughput is the median over rounds, and the spread between rounds (`spread_pct`) is
recorded, so a transient slow spell (a clock dip, a busy host) moves one round, not the figure,
and shows up as spread instead of hiding in it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable


class PerfCounterTimer:
    """CPU work: wall time of the call, which returns only when the result exists."""

    name = "perf_counter"

    def time_ms(self, step: Callable[[], object]) -> float:
        start = time.perf_counter()
        step()
        return (time.perf_counter() - start) * 1000.0


class CudaEventTimer:
    """GPU work: CUDA events recorded on the current stream around the step, then waited for.

    Events measure what the GPU did between them (launch gaps included), not when Python
    returned; synchronising on the end event makes each iteration an independent request.

    Beside it, the host's time to issue the step (from its start until it returns, before the
    wait): `last_issue_ms`. Where the issue time is close to the event time, the GPU waited for
    the host (trtexec's "enqueue time" check).
    """

    name = "cuda_event"
    measures_issue = True

    def __init__(self):
        import torch

        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self.last_issue_ms = None

    def time_ms(self, step: Callable[[], object]) -> float:
        self._start.record()
        t0 = time.perf_counter()
        step()
        self.last_issue_ms = (time.perf_counter() - t0) * 1000.0
        self._end.record()
        self._end.synchronize()
        return self._start.elapsed_time(self._end)


@dataclass
class Settings:
    warmup_iters: int = 10
    warmup_min_s: float = 0.5
    min_iters: int = 30
    min_time_s: float = 1.0
    max_iters: int = 2000
    max_time_s: float = 60.0
    rounds: int = 1
    # GPU cells: the launching thread on the host's fastest CPU (inferbench.measure.hostcpu)
    pin_fastest_cpu: bool = True

    @classmethod
    def from_config(cls, d: dict) -> "Settings":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Measurement:
    latencies_ms: list
    n_warmup: int
    timed_s: float
    stopped_by: str  # min_reached | max_iters | max_time
    warmup_s: float = 0.0
    round_sizes: list | None = None  # iterations per round, in order; None: one round
    issue_ms: list | None = None  # per timed iteration, the host's time to issue it (CUDA timer only)

    def round_latencies(self) -> list[list]:
        sizes = self.round_sizes or [len(self.latencies_ms)]
        out, start = [], 0
        for n in sizes:
            out.append(self.latencies_ms[start:start + n])
            start += n
        return [r for r in out if r]


def measure(step: Callable[[], object], timer, settings: Settings,
            progress: Callable[[str], None] = lambda s: None,
            before_round: Callable[[int], None] = lambda i: None) -> Measurement:
    """before_round(i) runs before round i of the timed window, outside the clock: after the
    warm-up for round 0 (the host's state there must describe the window, not the warm-up)."""
    # Warm-up: lazy initialisation, autotuning, allocator growth and clock ramp-up happen here.
    start = time.perf_counter()
    n_warmup = 0
    while n_warmup < settings.warmup_iters or (
        time.perf_counter() - start < settings.warmup_min_s and n_warmup < 10 * max(settings.warmup_iters, 1)
    ):
        timer.time_ms(step)
        n_warmup += 1
        if time.perf_counter() - start > settings.max_time_s:
            break
    warmup_s = time.perf_counter() - start
    progress(f"warm-up: {n_warmup} iterations in {warmup_s:.2f} s")

    rounds = max(1, int(settings.rounds))
    # The window's minimum is shared by its rounds; its maximum bounds the whole window.
    round_min_iters = -(-settings.min_iters // rounds)
    round_min_s = settings.min_time_s / rounds
    latencies, sizes = [], []
    issued = [] if getattr(timer, "measures_issue", False) else None
    start = None
    paused = 0.0  # set-up between rounds: inside the window's span, not timed
    stopped = "min_reached"
    for index in range(rounds):
        pause_start = time.perf_counter()
        before_round(index)
        if start is None:  # the window's clock (max_time_s, timed_s) starts after round 0's set-up
            start = time.perf_counter()
            next_report = start + 5.0
        else:
            paused += time.perf_counter() - pause_start
        round_start, round_first = time.perf_counter(), len(latencies)
        while True:
            latencies.append(timer.time_ms(step))
            if issued is not None:
                issued.append(timer.last_issue_ms)
            now = time.perf_counter()
            if len(latencies) >= settings.max_iters:
                stopped = "max_iters"
                break
            if now - start >= settings.max_time_s:
                stopped = "max_time"
                break
            if len(latencies) - round_first >= round_min_iters and now - round_start >= round_min_s:
                break
            if now > next_report:
                progress(f"timed {len(latencies)} iterations in {now - start:.1f} s")
                next_report = now + 5.0
        sizes.append(len(latencies) - round_first)
        if stopped != "min_reached":
            break
    return Measurement(latencies, n_warmup, time.perf_counter() - start - paused, stopped, warmup_s, sizes, issued)


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; 0.0 elsewhere): counts the interpreter's
    start and imports that a timer started in main() would miss."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5), counted after "pid (comm)"
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
