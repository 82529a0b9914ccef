"""Summary statistics of per-iteration latencies."""

from __future__ import annotations

import math

import numpy as np


def median_ci95(sorted_ms: np.ndarray) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median from order statistics
    (normal approximation to the binomial): ranks n/2 -/+ 1.96 sqrt(n)/2."""
    n = len(sorted_ms)
    half_width = 1.96 * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half_width)))
    hi = min(n - 1, int(math.ceil(n / 2 + half_width)) - 1)
    return float(sorted_ms[lo]), float(sorted_ms[max(lo, hi)])


def round_throughputs(rounds_ms: list[list[float]], batch_size: int) -> list[float]:
    """Images per second of each round, from the round's own median latency."""
    return [batch_size / (float(np.median(r)) / 1000.0) for r in rounds_ms if len(r) and np.median(r) > 0]


def spread_pct(values: list[float]) -> float | None:
    """max over min, minus 1, in percent: how far apart the rounds were (0 for one round)."""
    if not values or min(values) <= 0:
        return None
    return (max(values) / min(values) - 1.0) * 100.0


def summarize(latencies_ms: list[float], batch_size: int, rounds_ms: list[list[float]] | None = None) -> dict:
    """Latency statistics over every timed iteration. Throughput: the median of the rounds'
    throughputs (with one round, batch / median latency), with their spread."""
    if not latencies_ms:
        raise ValueError("no timed iterations")
    a = np.sort(np.asarray(latencies_ms, dtype=np.float64))
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    median = float(np.median(a))
    lo, hi = median_ci95(a)
    per_round = round_throughputs(rounds_ms or [latencies_ms], batch_size)
    return {
        "n_iters": len(a),
        "latency_ms_mean": mean,
        "latency_ms_median": median,
        "latency_ms_p90": float(np.percentile(a, 90)),
        "latency_ms_p99": float(np.percentile(a, 99)),
        "latency_ms_min": float(a[0]),
        "latency_ms_max": float(a[-1]),
        "latency_ms_std": std,
        "latency_cv": std / mean if mean > 0 else None,
        "latency_ms_median_ci95_low": lo,
        "latency_ms_median_ci95_high": hi,
        "throughput_ips": float(np.median(per_round)) if per_round else None,
        "round_ips": per_round,
        "ips_spread_pct": spread_pct(per_round),
    }
