"""A timed window's energy from the GPU's cumulative energy counter, read where the counter moves.

NVML's total-energy counter moves in steps, not continuously: an H200 (driver 580) updated it
every 100 ms (measured 2026-12-02: median gap 100.0 ms, 10th to 90th percentile 98.3 to 101.8
ms, about 69 J a step under a 690 W load). A reading taken at any other moment is up to one step
old, so a 0.5 s window read at its two ends is off by up to a fifth either way: that H200, capped
at 700 W, read 650 to 780 W for such windows of a few cells.

So the window's own step runs on, untimed, at both ends until the counter moves: before the
window, until an update (the window starts right after it); after the window, until the next
one. The energy between the two updates belongs to the images run between them, which are the
window's and the few run after it to reach the update; the mean power is that energy over the
seconds between the two updates. Each end is then off by at most the part of one iteration that
straddles the update, and the two ends' errors have opposite signs. The pauses between the
window's rounds (about a millisecond each) are inside it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from inferbench.measure.celllog import log

# How long to run the step waiting for the counter to move: a few of its update periods.
TICK_WAIT_S = 0.5


@dataclass(frozen=True)
class Tick:
    """An update of the counter, as this process saw it."""

    energy_mj: int
    seen_s: float  # time.perf_counter() when the new value was read
    steps: int  # steps run before it was seen


def run_until_tick(read_energy_mj: Callable[[], int | None], run_step: Callable[[], object],
                   wait_s: float = TICK_WAIT_S, clock: Callable[[], float] = time.perf_counter) -> Tick | None:
    """Run `run_step` (one synchronised iteration) until the counter's value changes. None where
    the GPU has no counter or it did not move within wait_s: then no energy figure is better
    than one off by an unknown part of a step."""
    first = read_energy_mj()
    if first is None:
        return None
    began, steps = clock(), 0
    while True:
        run_step()
        steps += 1
        value, now = read_energy_mj(), clock()
        if value is None:
            return None
        if value != first:
            return Tick(energy_mj=value, seen_s=now, steps=steps)
        if now - began > wait_s:
            return None


def window_energy(start: Tick | None, end: Tick | None, window_steps: int,
                  images_per_step: int) -> tuple[float | None, float | None]:
    """(joules per image, mean watts) between two updates of the counter that bracket the window.
    `window_steps` are the timed iterations; the steps run after the window to reach `end` are
    counted too (those before `start` are not: they ran before the first update)."""
    if start is None or end is None or end.energy_mj <= start.energy_mj or end.seen_s <= start.seen_s:
        return None, None
    images = (window_steps + end.steps) * images_per_step
    if images <= 0:
        return None, None
    joules = (end.energy_mj - start.energy_mj) / 1000.0
    return joules / images, joules / (end.seen_s - start.seen_s)


def energy_or_power(telemetry, start: Tick | None, end: Tick | None, window_steps: int, timed_s: float,
                    images_per_step: int, power_samples_w: list | None) -> tuple[float | None, float | None]:
    """The window's (joules per image, mean watts): from the energy counter's updates around it,
    else, on a GPU without the counter, from the power samples; nothing where the counter exists
    but did not move (the log says so)."""
    from inferbench.measure.telemetry.gpu import energy_from_power_samples

    if telemetry is None:
        return None, None
    if start is not None and end is not None:
        return window_energy(start, end, window_steps, images_per_step)
    if telemetry.energy_mj() is None:  # no counter on this GPU
        return energy_from_power_samples(timed_s, window_steps * images_per_step, power_samples_w)
    log(f"energy: the GPU's energy counter did not move within {TICK_WAIT_S} s of the window's ends: "
        "no energy figure for this io mode")
    return None, None
