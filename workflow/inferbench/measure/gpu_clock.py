"""The GPU's and the host's state just before a measurement: clocks up, and how fast the host
launches work.

A GPU's SM clock can sit low while it idles (an H200 with no process on it reads 345 MHz,
against 1,980 MHz under load) and rise only once work arrives. Where it does, that matters
twice: cuDNN's autotuner (`cudnn.benchmark`) times its candidate kernels on the first call of
each shape and keeps its choice for the life of the process, so a candidate timed while the
clock ramps can look slower than it is; and a short timed window that starts cold is slow
itself. (On the H200 machine where this was measured, the clock stood at its maximum whenever
a process held a CUDA context, and the spin was rarely needed: `clock_spinup_s` records it.)
`spin_up` keeps the GPU busy until its clock stops rising, before loading, before the first
call and before each io mode's warm-up. It uses a spin kernel (`torch.cuda._sleep`): the GPU
reports itself busy, and the spin allocates no memory and touches no library (cuBLAS would add
its workspace to the cell's memory peaks).

A launch-bound cell (the GPU idles between kernels) is timed by the host as much as by the
GPU: `launch_us` measures the host's cost of launching one small kernel, so a slow host shows
up as a number in the row instead of as an unexplained slow cell.
"""

from __future__ import annotations

import statistics
import time

# Stop spinning when the clock is this close to the GPU's maximum, or has stopped rising.
NEAR_MAX = 0.95
CHUNK_S = 0.02
MAX_SPIN_S = 2.0
# torch.cuda._sleep counts GPU cycles: at ~2 GHz this is about CHUNK_S; at a low clock, longer
SPIN_CYCLES_PER_S = 2.0e9


def spin_up(read_clock_mhz, max_clock_mhz: float | None, max_s: float = MAX_SPIN_S) -> float:
    """Keep the GPU busy until the SM clock reaches NEAR_MAX of its maximum or stops rising (a GPU
    held at lower application clocks); returns the seconds spent (0 when the clock was already
    up). read_clock_mhz() -> MHz or None (no NVML: one chunk of load)."""
    import torch

    first = read_clock_mhz()
    if first is not None and max_clock_mhz and first >= NEAR_MAX * max_clock_mhz:
        return 0.0
    start = time.perf_counter()
    previous = first
    steady = 0
    while time.perf_counter() - start < max_s:
        # ~CHUNK_S of GPU time queued at once, then waited for: the GPU never idles in between
        torch.cuda._sleep(int(CHUNK_S * SPIN_CYCLES_PER_S))
        torch.cuda.synchronize()
        clock = read_clock_mhz()
        if clock is None:
            break  # nothing to watch: one chunk of load is all we can do
        if max_clock_mhz and clock >= NEAR_MAX * max_clock_mhz:
            break
        steady = steady + 1 if previous is not None and clock <= previous else 0
        if steady >= 3:  # 60 ms without rising: this is the clock it runs at
            break
        previous = clock
    return time.perf_counter() - start


def launch_us(launches: int = 400, repeats: int = 5) -> float:
    """Median host time, in microseconds, to launch one small kernel on the current stream
    (enqueue only; the GPU catches up after each repeat)."""
    import torch

    x = torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    per_launch = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(launches):
            x.add_(1)
        per_launch.append((time.perf_counter() - t0) / launches * 1e6)
        torch.cuda.synchronize()
    return statistics.median(per_launch)
