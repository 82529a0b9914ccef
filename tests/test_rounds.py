"""Rounds: the timed window split into rounds, throughput as the median round, and the spread
between rounds (ips_spread_pct) recorded and used by compare as noise."""

import pandas as pd
import pytest

from inferbench.measure import stats, timing
from inferbench.reporting import compare


class StepClock:
    """A fake perf_counter that advances by the latency of each step, taken from a script."""

    def __init__(self, latencies_s):
        self.t = 100.0
        self.script = list(latencies_s)

    def __call__(self):
        return self.t


class ScriptedTimer:
    name = "scripted"

    def __init__(self, clock):
        self.clock = clock

    def time_ms(self, step):
        step()
        dt = self.clock.script.pop(0) if len(self.clock.script) > 1 else self.clock.script[0]
        self.clock.t += dt
        return dt * 1000.0


def test_rounds_share_the_window_minimum_and_are_recorded_in_order(monkeypatch):
    clock = StepClock([0.01] * 1000)
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    settings = timing.Settings(warmup_iters=0, warmup_min_s=0, min_iters=9, min_time_s=0.3, max_iters=1000,
                               max_time_s=60, rounds=3)
    m = timing.measure(lambda: None, ScriptedTimer(clock), settings)
    # each round: at least ceil(9/3)=3 iterations and 0.1 s -> 10 iterations of 10 ms
    assert m.round_sizes == [10, 10, 10]
    assert [len(r) for r in m.round_latencies()] == [10, 10, 10]
    assert m.stopped_by == "min_reached"


def test_max_iters_ends_the_window_inside_a_round(monkeypatch):
    clock = StepClock([0.01] * 1000)
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    settings = timing.Settings(warmup_iters=0, warmup_min_s=0, min_iters=30, min_time_s=0, max_iters=25,
                               max_time_s=60, rounds=3)
    m = timing.measure(lambda: None, ScriptedTimer(clock), settings)
    assert m.stopped_by == "max_iters"
    assert sum(m.round_sizes) == 25 and m.round_sizes[:2] == [10, 10]


def test_throughput_is_the_median_round_and_the_spread_is_max_over_min():
    # batch 10: rounds at 10 ms, 20 ms (a slow spell) and 10.5 ms median latency
    rounds = [[10.0] * 5, [20.0] * 5, [10.5] * 5]
    s = stats.summarize(sum(rounds, []), 10, rounds)
    assert s["round_ips"] == pytest.approx([1000.0, 500.0, 10 / 0.0105])
    assert s["throughput_ips"] == pytest.approx(10 / 0.0105)  # the slow round does not move the figure
    assert s["ips_spread_pct"] == pytest.approx(100.0)  # 1000 / 500 - 1
    one = stats.summarize([10.0] * 5, 10)
    assert one["round_ips"] == [1000.0] and one["ips_spread_pct"] == 0.0
    assert one["throughput_ips"] == pytest.approx(10 / 0.010)


def _run(ips, spread, n=200, latency_ms=10.0):
    lat = [latency_ms] * n
    return pd.DataFrame([{"model": "m", "backend": "pytorch", "precision": "fp16", "device": "cuda", "io": "device",
                          "resolution": 224, "batch_size": 32, "status": "ok", "throughput_ips": ips,
                          "latency_ms_median": 32 / ips * 1000, "latencies_ms": lat, "ips_spread_pct": spread,
                          "gpu_busy_pct": 95.0}])


def test_compare_treats_a_change_within_the_rounds_spread_as_noise():
    old = _run(20000.0, spread=12.0)
    # 9% slower: beyond the 5% floor and the (tiny) within-round CI, but inside old's 12% spread
    table, _ = compare.compare(old, _run(20000.0 / 1.09, spread=1.0))
    assert table.iloc[0]["verdict"] == "within noise"
    assert table.iloc[0]["noise_limit_pct"] == pytest.approx(12.0)
    # the same change with steady rounds on both sides is a regression
    table, _ = compare.compare(_run(20000.0, spread=1.0), _run(20000.0 / 1.09, spread=1.0))
    assert table.iloc[0]["verdict"] == "slower"
