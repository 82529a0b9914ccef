"""Latency statistics: the summary of a cell's latencies, and the median's 95% confidence interval."""

from __future__ import annotations

import numpy as np
import pytest

from inferbench.measure import stats


def test_summary_of_known_latencies():
    data = list(range(100, 0, -1))  # 1..100 ms, given unsorted
    s = stats.summarize(data, batch_size=8)
    assert s["n_iters"] == 100
    assert s["latency_ms_mean"] == 50.5
    assert s["latency_ms_median"] == 50.5
    assert s["latency_ms_min"] == 1 and s["latency_ms_max"] == 100
    assert s["latency_ms_p90"] == pytest.approx(90.1)
    assert s["latency_ms_p99"] == pytest.approx(99.01)
    std = float(np.std(np.arange(1, 101), ddof=1))
    assert s["latency_ms_std"] == pytest.approx(std)
    assert s["latency_cv"] == pytest.approx(std / 50.5)
    # order statistics n/2 -/+ 1.96 sqrt(n)/2 = 50 -/+ 9.8: ranks 40 and 59 (0-based)
    assert (s["latency_ms_median_ci95_low"], s["latency_ms_median_ci95_high"]) == (41.0, 60.0)
    assert s["throughput_ips"] == pytest.approx(8 / 0.0505)


def test_summary_of_constant_or_single_latencies_and_of_none():
    s = stats.summarize([2.0] * 10, batch_size=4)
    assert s["latency_ms_std"] == 0 and s["latency_cv"] == 0
    assert s["latency_ms_median_ci95_low"] == s["latency_ms_median_ci95_high"] == 2.0
    assert s["throughput_ips"] == pytest.approx(2000.0)
    one = stats.summarize([5.0], batch_size=1)
    assert one["n_iters"] == 1 and one["latency_ms_std"] == 0
    assert one["latency_ms_median_ci95_low"] == one["latency_ms_median_ci95_high"] == 5.0
    with pytest.raises(ValueError):
        stats.summarize([], batch_size=1)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 10, 31, 64, 101, 500])
def test_median_ci_contains_the_median_and_narrows(n):
    rng = np.random.default_rng(n)
    a = rng.lognormal(0, 0.3, n)
    s = stats.summarize(list(a), batch_size=1)
    assert s["latency_ms_min"] <= s["latency_ms_median_ci95_low"] <= s["latency_ms_median"]
    assert s["latency_ms_median"] <= s["latency_ms_median_ci95_high"] <= s["latency_ms_max"]
    assert s["latency_ms_min"] <= s["latency_ms_median"] <= s["latency_ms_p90"] <= s["latency_ms_p99"] <= s["latency_ms_max"]
    if n >= 5:  # below that the interval is the whole sample, whatever its size
        # the same distribution, four times the calls: a narrower interval. Evenly spaced
        # quantiles of an exponential, so that the comparison is of sizes, not of luck.
        def width(size: int) -> float:
            lo, hi = stats.median_ci95(-np.log1p(-(np.arange(size) + 0.5) / size))
            return hi - lo

        assert 0 < width(4 * n) < width(n)


def test_median_ci_coverage_is_about_95_percent():
    rng = np.random.default_rng(1)
    true_median = 1.0  # lognormal(0, s) has median exp(0)
    hits = 0
    for _ in range(400):
        lo, hi = stats.median_ci95(np.sort(rng.lognormal(0, 0.5, 50)))
        hits += lo <= true_median <= hi
    assert 0.90 <= hits / 400 <= 0.995
