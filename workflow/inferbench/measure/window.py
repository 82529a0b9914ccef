"""An io mode's timed window and the trackers it stacks: what is recorded beside the latencies.

The timing loop (inferbench.measure.timing.measure) times calls and nothing else. Each tracker
reads one instrument around it, outside the clock, and hands back its own columns, so a new
measurement is a new tracker, not an edit of the loop. `run_window` calls every tracker's hooks
in the order the trackers are given:

  before_warmup()          once, before the warm-up
  before_round(index)      before each round of the timed window, outside its clock; round 0
                           comes right after the warm-up, so what it reads describes the window
  after_window(m, end)     once, right after the last timed call (`end`: time.monotonic()); m is
                           the window's Measurement
  close()                  always, last tracker first, even where the window raised
  columns()                the tracker's fields of the io mode's IoTiming (inferbench.measure.phases)

The order matters where two trackers touch the same moment: the thread is pinned before the
launch cost is read on its CPU, and the energy counter is read last before the window's clock.
"""

from __future__ import annotations

import time
from typing import Callable

from inferbench.measure.timing import Measurement, Settings, measure


class Tracker:
    """A tracker that reads nothing: each hook does nothing unless a tracker overrides it."""

    def before_warmup(self) -> None:
        pass

    def before_round(self, index: int) -> None:
        pass

    def after_window(self, m: Measurement, end: float) -> None:
        pass

    def close(self) -> None:
        pass

    def columns(self) -> dict:
        return {}


class CpuPinning(Tracker):
    """The launching thread on the host's fastest CPU (inferbench.measure.hostcpu): picked before
    the warm-up, which then warms the CPU the window starts on; picked again before the window,
    since the warm-up may have outlasted the CPU's fast spell; checked between rounds."""

    def __init__(self, pinning):
        self.pinning = pinning  # FastestCpu or NoPinning

    def before_warmup(self) -> None:
        self.pinning.pick()

    def before_round(self, index: int) -> None:
        if index == 0:
            self.pinning.pick()
        else:
            self.pinning.recheck()

    def close(self) -> None:
        self.pinning.close()  # the thread's CPUs as they were

    def columns(self) -> dict:
        return {"host_cpus": " ".join(map(str, self.pinning.picks)) or None,
                "host_cpu_speed_ratio": self.pinning.speed_ratio}


class LaunchCost(Tracker):
    """The host's cost of launching one small kernel, on the CPU the window starts on
    (inferbench.measure.gpu_clock.launch_us): a slow host is a number in the row."""

    host_launch_us: float | None = None

    def before_round(self, index: int) -> None:
        if index == 0:
            from inferbench.measure.gpu_clock import launch_us

            self.host_launch_us = launch_us()

    def columns(self) -> dict:
        return {"host_launch_us": self.host_launch_us}


class WindowEnergy(Tracker):
    """The window's energy from the GPU's energy counter, read at an update of it on each side
    (inferbench.measure.energy), else from the power samples taken during the window. Read last
    before the window's clock starts: its energy is the window's alone, without the warm-up's."""

    def __init__(self, telemetry, timed_step: Callable[[], object], images_per_step: int):
        self.telemetry, self.timed_step, self.images_per_step = telemetry, timed_step, images_per_step
        self.start = self.end = None
        self.power_from = 0
        self.j_per_image = self.watts = None

    def before_round(self, index: int) -> None:
        if index == 0:
            from inferbench.measure.energy import run_until_tick

            self.start = run_until_tick(self.telemetry.energy_mj, self.timed_step)
            sampler = self.telemetry.sampler
            self.power_from = len(sampler.power_w) if sampler else 0

    def after_window(self, m: Measurement, end: float) -> None:
        from inferbench.measure.energy import energy_or_power, run_until_tick

        # no update before the window: waiting for one after it would only cost time
        if self.start is not None:
            self.end = run_until_tick(self.telemetry.energy_mj, self.timed_step)
        sampler = self.telemetry.sampler
        power = sampler.power_w[self.power_from:] if sampler else None
        self.j_per_image, self.watts = energy_or_power(self.telemetry, self.start, self.end, len(m.latencies_ms),
                                                       m.timed_s, self.images_per_step, power)

    def columns(self) -> dict:
        return {"energy_j_per_image": self.j_per_image, "power_w_mean": self.watts}


class GpuSamples(Tracker):
    """NVML's utilisation and SM clock, from the background samples inside the window."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.busy_pct = self.clock_mhz = None

    def after_window(self, m: Measurement, end: float) -> None:
        from inferbench.measure.telemetry.gpu import busy_in_window, mean_in_window

        self.busy_pct = busy_in_window(self.sampler.busy_pct, end - m.timed_s, end)
        self.clock_mhz = mean_in_window(self.sampler.sm_clock_mhz, end - m.timed_s, end)

    def columns(self) -> dict:
        return {"gpu_busy_pct": self.busy_pct, "sm_clock_mhz_mean": self.clock_mhz}


class Enqueue(Tracker):
    """The host's time to issue each timed call, as the timer kept it (Measurement.issue_ms), and
    whether the io mode is host-bound (inferbench.measure.hostbound)."""

    def __init__(self, device: str, waits_for_gpu: str | None):
        self.device, self.waits_for_gpu = device, waits_for_gpu
        self.result = None

    def after_window(self, m: Measurement, end: float) -> None:
        import statistics

        from inferbench.measure.hostbound import enqueue_of

        median = statistics.median(m.latencies_ms) if m.latencies_ms else None
        self.result = enqueue_of(m.issue_ms, median, self.device, self.waits_for_gpu)

    def columns(self) -> dict:
        r = self.result
        return {} if r is None else {"enqueue_ms_median": r.enqueue_ms_median, "host_bound": r.host_bound,
                                     "enqueue_note": r.note}


class OtherCpuLoad(Tracker):
    """Other processes' share of the machine's CPUs from the warm-up to the window's end
    (inferbench.measure.contention)."""

    def __init__(self):
        self.load = self.percent = None

    def before_warmup(self) -> None:
        from inferbench.measure.contention import OtherLoad

        self.load = OtherLoad()

    def after_window(self, m: Measurement, end: float) -> None:
        self.percent = self.load.percent() if self.load else None

    def columns(self) -> dict:
        return {"host_other_cpu_pct": self.percent}


def describe_window(io: str, m: Measurement, stats: dict, columns: dict) -> str:
    busy, clock = columns.get("gpu_busy_pct"), columns.get("sm_clock_mhz_mean")
    launch, cpus = columns.get("host_launch_us"), columns.get("host_cpus")
    return (f"io={io}: {stats['n_iters']} iterations in {m.timed_s:.2f} s, median {stats['latency_ms_median']:.3f} ms, "
            f"p99 {stats['latency_ms_p99']:.3f} ms, cv {stats['latency_cv']:.3f}, {stats['throughput_ips']:.1f} images/s "
            f"(median of {len(stats['round_ips'])} rounds, spread {stats['ips_spread_pct']:.1f}%)"
            + (f", GPU busy {busy:.0f}%" if busy is not None else "")
            + (f", SM clock {clock:.0f} MHz" if clock is not None else "")
            + (f", host launch {launch:.1f} us" if launch is not None else "")
            + (f", on CPU {cpus}" if cpus else "")
            + (f", enqueue {columns['enqueue_ms_median']:.3f} ms" + (" (host-bound)" if columns.get("host_bound") else "")
               if columns.get("enqueue_ms_median") is not None else ""))


def run_window(step: Callable[[], object], timer, settings: Settings, trackers: list[Tracker],
               progress: Callable[[str], None] = lambda s: None) -> tuple[Measurement, dict]:
    """Warm-up and the timed window of `step`, with `trackers` around it: the Measurement and
    every tracker's columns."""
    try:
        for tracker in trackers:
            tracker.before_warmup()

        def before_round(index: int) -> None:
            for tracker in trackers:
                tracker.before_round(index)

        m = measure(step, timer, settings, progress=progress, before_round=before_round)
        end = time.monotonic()
        for tracker in trackers:
            tracker.after_window(m, end)
    finally:
        for tracker in reversed(trackers):
            tracker.close()
    columns = {}
    for tracker in trackers:
        columns.update(tracker.columns())
    return m, columns
