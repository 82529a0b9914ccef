"""Timing one step repeatedly: warm-up outside the clock, then an adaptive number of timed iterations.

The step is the whole unit of work of one iteration (for io=host: copy in, run, copy out).
Every iteration is timed on its own and waited for, so each latency is that of one request.
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
    """

    name = "cuda_event"

    def __init__(self):
        import torch

        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def time_ms(self, step: Callable[[], object]) -> float:
        self._start.record()
        step()
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


def measure(step: Callable[[], object], timer, settings: Settings,
            progress: Callable[[str], None] = lambda s: None) -> Measurement:
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

    latencies = []
    start = time.perf_counter()
    next_report = start + 5.0
    while True:
        latencies.append(timer.time_ms(step))
        now = time.perf_counter()
        elapsed = now - start
        if len(latencies) >= settings.max_iters:
            stopped = "max_iters"
            break
        if elapsed >= settings.max_time_s:
            stopped = "max_time"
            break
        if len(latencies) >= settings.min_iters and elapsed >= settings.min_time_s:
            stopped = "min_reached"
            break
        if now > next_report:
            progress(f"timed {len(latencies)} iterations in {elapsed:.1f} s")
            next_report = now + 5.0
    return Measurement(latencies, n_warmup, time.perf_counter() - start, stopped, warmup_s)


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
