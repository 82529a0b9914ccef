"""The GPU's ceiling: how fast it runs a dense matrix product, measured once per GPU and
precision in the sweep itself (the `gpu_peak` job), so that every GPU cell's achieved TFLOP/s
can be read as a share of what that GPU could do (`pct_of_peak`).

A square product of N x N matrices is 2 N^3 FLOPs (one multiply and one add per
multiply-accumulate, FlopCounterMode's convention, the one `gflop_per_image` uses). fp32 runs
with TF32 off, as the cells' fp32 runs: with it on, the "fp32" ceiling would be TF32's, several
times higher. fp16 and bf16 run as torch runs them by default (tensor cores, fp32 accumulation).

Each precision: warm-up until WARMUP_S has passed (the clock comes up, cuBLAS picks its kernel),
then REPS timed runs of CALLS products each, timed with CUDA events on the stream; the ceiling is
the fastest run (the most the GPU was seen to do), the median is recorded beside it.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

MATRIX_N = 8192  # large enough to fill an H100's or H200's SMs in every precision
WARMUP_S = 0.5
REPS = 5
CALLS = 10
ALWAYS = ("fp32", "fp16")  # the report's environment states both ceilings


def matmul_flop(n: int) -> int:
    return 2 * n**3


def tflops(n: int, calls: int, elapsed_ms: float) -> float:
    return matmul_flop(n) * calls / (elapsed_ms / 1e3) / 1e12


def rate_of(time_calls_ms: Callable[[int], float], n: int, reps: int = REPS, calls: int = CALLS,
            warmup_s: float = WARMUP_S, clock: Callable[[], float] = time.monotonic) -> dict:
    """The ceiling from a timer: time_calls_ms(k) runs k products and returns the milliseconds
    they took. Warm-up first (at least one run, until warmup_s has passed), then `reps` runs."""
    start = clock()
    time_calls_ms(calls)
    while clock() - start < warmup_s:
        time_calls_ms(calls)
    rates = [tflops(n, calls, time_calls_ms(calls)) for _ in range(reps)]
    return {"tflops": max(rates), "tflops_median": statistics.median(rates), "runs": len(rates)}


def precisions_to_measure(sweep_precisions) -> list[str]:
    """fp32 and fp16 always; bf16 where the sweep runs it."""
    wanted = set(ALWAYS) | set(sweep_precisions)
    return [p for p in ("fp32", "fp16", "bf16") if p in wanted]


def measure_precision(precision: str, device: str = "cuda", n: int = MATRIX_N, **rate_args) -> dict:
    """One precision's ceiling on `device` (the CPU only for tests: the CUDA events are then the
    wall clock around a synchronous call)."""
    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    saved = torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 is fp32, as in the cells
    torch.set_float32_matmul_precision("highest")
    try:
        gen = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        out = torch.empty(n, n, device=device, dtype=dtype)
        timer = cuda_timer(torch) if device == "cuda" else wall_timer()
        result = rate_of(lambda k: timer(lambda: torch.mm(a, b, out=out), k), n, **rate_args)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])
    return dict(result, matrix_n=n)


def cuda_timer(torch):
    def time_ms(fn, k: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(k):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    return time_ms


def wall_timer():
    def time_ms(fn, k: int) -> float:
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        return (time.perf_counter() - t0) * 1e3

    return time_ms


def measure_gpu(precisions, device: str = "cuda", n: int = MATRIX_N, **rate_args) -> dict:
    """{gpu_name, tflops: {precision: ceiling}, detail: {precision: {...}}} of the one visible GPU."""
    import torch

    detail = {p: measure_precision(p, device, n, **rate_args) for p in precisions}
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    return {"gpu_name": name, "tflops": {p: d["tflops"] for p, d in detail.items()}, "detail": detail}
