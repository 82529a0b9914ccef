"""How far apart two measurements of a cell must be before the difference is not noise: the rule
`inferbench compare` applies to two runs (inferbench.reporting.compare, whose docstring states it),
and the report's first finding to the best cell and its runner-up.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

DEFAULT_K = 2.0
DEFAULT_FLOOR_PCT = 5.0
Z95 = 1.96
MEDIAN_SE_FACTOR = 1.2533  # sqrt(pi/2): SE of a normal sample's median over the SE of its mean


def median_ci_rel_halfwidth_from_samples(latencies) -> float:
    """Relative half-width of the distribution-free 95% CI of the median (order statistics)."""
    x = np.sort(np.asarray(latencies, dtype=float))
    n = len(x)
    median = float(np.median(x))
    half = Z95 * math.sqrt(n) / 2.0
    lo = max(int(math.floor(n / 2 - half)), 0)
    hi = min(int(math.ceil(n / 2 + half)), n - 1)
    return float(x[hi] - x[lo]) / 2.0 / median


def relative_noise(row) -> float:
    """The cell's own uncertainty about its median latency, as a fraction of it."""
    lat = row.get("latencies_ms")
    if lat is not None and not (isinstance(lat, float) and math.isnan(lat)) and len(lat) >= 5:
        return median_ci_rel_halfwidth_from_samples(lat)
    median = row.get("latency_ms_median")
    lo, hi = row.get("latency_ms_median_ci95_low"), row.get("latency_ms_median_ci95_high")
    if pd.notna(lo) and pd.notna(hi) and pd.notna(median) and median > 0:
        return float(hi - lo) / 2.0 / float(median)
    cv, n = row.get("latency_cv"), row.get("n_iters")
    if pd.notna(cv) and pd.notna(n) and n > 0:
        return Z95 * MEDIAN_SE_FACTOR * float(cv) / math.sqrt(float(n))
    return 0.0


def round_spread(row, suffix: str) -> float:
    """The run's spread between the cell's rounds, as a fraction (0 when not recorded)."""
    value = row.get(f"ips_spread_pct{suffix}")
    return float(value) / 100.0 if value is not None and pd.notna(value) else 0.0


def noise_limit(a, b, k: float = DEFAULT_K, floor: float = DEFAULT_FLOOR_PCT / 100.0) -> float:
    """The smallest relative difference between measurements a and b (rows with a cell's noise
    columns) that is not noise (k times their combined CI, either's round spread, the floor)."""
    noise = math.hypot(relative_noise(a), relative_noise(b))
    # A change no larger than what the cell's own rounds already disagreed by is noise too.
    return max(k * noise, round_spread(a, ""), round_spread(b, ""), floor)
