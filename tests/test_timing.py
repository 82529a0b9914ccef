"""The timing loop, on a fake clock: warm-up outside the clock, then timed iterations until the
minimums are reached or a cap stops it; and the real clock's timer."""

from __future__ import annotations

import time

import pytest

from inferbench.measure import timing


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class FakeTimer:
    """Each step 'takes' `dt` seconds of the fake clock."""

    name = "fake"

    def __init__(self, clock, dt):
        self.clock, self.dt, self.calls = clock, dt, 0

    def time_ms(self, step):
        step()
        self.calls += 1
        self.clock.t += self.dt
        return self.dt * 1000.0


@pytest.fixture()
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", c)
    return c


def _measure(clock, dt, **settings):
    steps = []
    timer = FakeTimer(clock, dt)
    messages = []
    m = timing.measure(lambda: steps.append(1), timer, timing.Settings(**settings), progress=messages.append)
    assert len(steps) == timer.calls == m.n_warmup + len(m.latencies_ms)
    return m, messages


def test_measure_counts_warmup_and_timed_iterations(clock):
    m, messages = _measure(clock, 0.01, warmup_iters=3, warmup_min_s=0, min_iters=5, min_time_s=0,
                           max_iters=100, max_time_s=60)
    assert m.n_warmup == 3
    assert m.latencies_ms == [10.0] * 5
    assert m.stopped_by == "min_reached"
    assert m.timed_s == pytest.approx(0.05)
    assert messages and messages[0].startswith("warm-up: 3 iterations")


def test_measure_min_time_keeps_timing_after_min_iters(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=0, warmup_min_s=0, min_iters=2, min_time_s=1.0, max_iters=100,
                    max_time_s=60)
    assert m.n_warmup == 0
    assert len(m.latencies_ms) == 4 and m.stopped_by == "min_reached"


def test_measure_min_iters_wins_over_min_time(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=0, warmup_min_s=0, min_iters=7, min_time_s=0.5, max_iters=100,
                    max_time_s=60)
    assert len(m.latencies_ms) == 7 and m.stopped_by == "min_reached"


def test_measure_stops_at_max_iters(clock):
    m, _ = _measure(clock, 0.01, warmup_iters=1, warmup_min_s=0, min_iters=50, min_time_s=0, max_iters=7,
                    max_time_s=60)
    assert len(m.latencies_ms) == 7 and m.stopped_by == "max_iters"


def test_measure_max_time_stops_before_min_iters(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=0, warmup_min_s=0, min_iters=1000, min_time_s=0, max_iters=2000,
                    max_time_s=1.0)
    assert len(m.latencies_ms) == 4 and m.stopped_by == "max_time"
    assert m.timed_s == pytest.approx(1.0)


def test_measure_warms_up_for_warmup_min_s_at_most_ten_times_warmup_iters(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=1, warmup_min_s=1.0, min_iters=1, min_time_s=0, max_iters=10,
                    max_time_s=60)
    assert m.n_warmup == 4  # until 1 s has passed
    m, _ = _measure(clock, 0.25, warmup_iters=2, warmup_min_s=100, min_iters=1, min_time_s=0, max_iters=10,
                    max_time_s=60)
    assert m.n_warmup == 20  # capped at 10 x warmup_iters


def test_measure_warmup_gives_up_after_max_time(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=100, warmup_min_s=0, min_iters=1, min_time_s=0, max_iters=10,
                    max_time_s=1.0)
    assert m.n_warmup == 5  # first check past 1 s
    assert len(m.latencies_ms) == 1


def test_settings_from_config_ignores_other_keys():
    s = timing.Settings.from_config({"warmup_iters": 2, "min_iters": 9, "num_buffers": 4, "cpu_threads": None})
    assert (s.warmup_iters, s.min_iters, s.max_iters) == (2, 9, 2000)


def test_the_perf_counter_timer_times_the_step():
    ms = timing.PerfCounterTimer().time_ms(lambda: time.sleep(0.02))
    assert 19 <= ms < 1000


def test_before_round_runs_after_the_warm_up_and_before_each_round_outside_the_clock(clock):
    events = []
    timer = FakeTimer(clock, 0.01)

    def before_round(index):
        events.append(("round", index, timer.calls))
        clock.t += 5.0  # set-up between rounds is not timed

    m = timing.measure(lambda: None, timer, timing.Settings(warmup_iters=4, warmup_min_s=0, min_iters=6,
                                                            min_time_s=0, rounds=3, max_time_s=60),
                       before_round=before_round)
    # round 0's set-up after all 4 warm-up calls, each later one after its round's 2 calls
    assert events == [("round", 0, 4), ("round", 1, 6), ("round", 2, 8)]
    assert m.round_sizes == [2, 2, 2]
    assert m.warmup_s == pytest.approx(0.04)
    # the window's clock starts after round 0's set-up, and the set-ups between rounds are not timed
    assert m.timed_s == pytest.approx(0.06)
