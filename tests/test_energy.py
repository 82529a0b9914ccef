"""The timed window's energy from a counter that moves in steps (inferbench.measure.energy)."""

import pytest

from inferbench.measure import energy


class SteppedCounter:
    """A GPU drawing `watts` while steps run, whose energy counter, like NVML's, shows the energy
    only as of its last update, every `period_s`. Time advances `step_s` per step and nothing
    between steps."""

    def __init__(self, watts=700.0, period_s=0.1, step_s=0.004, phase_s=0.0):
        self.watts, self.period_s, self.step_s = watts, period_s, step_s
        self.now = phase_s

    def clock(self):
        return self.now

    def step(self):
        self.now += self.step_s

    def read_mj(self):
        updated = (self.now // self.period_s) * self.period_s
        return int(round(self.watts * updated * 1000))


def naive_j_per_image(counter, window_steps, images_per_step):
    """The old reading: the counter at the window's two ends."""
    start = counter.read_mj()
    for _ in range(window_steps):
        counter.step()
    return (counter.read_mj() - start) / 1000 / (window_steps * images_per_step)


@pytest.mark.parametrize("phase_s", [0.0, 0.013, 0.051, 0.087, 0.099])
def test_a_short_window_bracketed_by_counter_updates_reads_the_true_energy(phase_s):
    # 0.448 s of 4 ms steps of 32 images at 700 W: 0.0875 J an image, wherever the updates fall
    true_j = 700.0 * 0.004 / 32
    c = SteppedCounter(phase_s=phase_s)
    start = energy.run_until_tick(c.read_mj, c.step, clock=c.clock)
    assert start is not None and start.steps <= 0.1 / 0.004 + 1
    for _ in range(112):
        c.step()
    end = energy.run_until_tick(c.read_mj, c.step, clock=c.clock)
    j_per_image, watts = energy.window_energy(start, end, 112, 32)
    assert j_per_image == pytest.approx(true_j, rel=0.01)
    assert watts == pytest.approx(700.0, rel=0.01)


def test_the_ends_of_a_short_window_alone_are_off_by_up_to_a_counter_step():
    """What the bracketing corrects: the same 0.448 s window read at its two ends sees four or
    five of the counter's steps, by where they fall: 0.89 or 1.12 of the true energy."""
    true_j = 700.0 * 0.004 / 32
    readings = [naive_j_per_image(SteppedCounter(phase_s=p), 112, 32) / true_j for p in (0.0, 0.06)]
    assert readings == pytest.approx([0.4 / 0.448, 0.5 / 0.448], rel=0.01)


def test_no_counter_or_one_that_never_moves_gives_no_tick():
    c = SteppedCounter()
    assert energy.run_until_tick(lambda: None, c.step, clock=c.clock) is None
    steps = []
    assert energy.run_until_tick(lambda: 5_000, lambda: (steps.append(1), c.step()), wait_s=0.5,
                                 clock=c.clock) is None
    assert 0.5 / 0.004 <= len(steps) <= 0.5 / 0.004 + 2  # it gave up after wait_s, not before


def test_window_energy_needs_two_ordered_updates():
    a, b = energy.Tick(1_000, 1.0, 3), energy.Tick(71_000, 1.1, 2)
    assert energy.window_energy(a, b, 23, 32) == pytest.approx((70 / (25 * 32), 700.0))
    for start, end in ((None, b), (a, None), (b, a), (a, a)):
        assert energy.window_energy(start, end, 23, 32) == (None, None)
    assert energy.window_energy(a, b, 0, 0) == (None, None)
