"""The launching thread on the host's fastest CPU: the pick, the recheck, the restore, and the
time_io_mode wiring (energy read for the window alone)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from inferbench.measure import hostcpu

pytestmark = pytest.mark.skipif(not hostcpu.can_pin(), reason="this platform cannot pin threads")


@pytest.fixture()
def restore_affinity():
    original = os.sched_getaffinity(0)
    yield sorted(original)
    os.sched_setaffinity(0, original)


def test_pick_pins_the_thread_to_the_fastest_cpu_and_close_restores(restore_affinity, tmp_path):
    cpus = restore_affinity
    speeds = {cpu: 1000.0 - cpu for cpu in cpus}  # the highest-numbered CPU is the fastest
    timed_on = []

    def time_cpu(cpu):
        timed_on.append((cpu, os.sched_getaffinity(0)))
        return speeds[cpu]

    with hostcpu.FastestCpu(time_cpu=time_cpu, claim_dir=str(tmp_path)) as pinning:
        assert pinning.pick() == cpus[-1]
        assert os.sched_getaffinity(0) == {cpus[-1]}
        # each CPU was timed while the thread was pinned to it alone
        assert timed_on == [(cpu, {cpu}) for cpu in cpus]
        assert pinning.speed_ratio == pytest.approx(max(speeds.values()) / min(speeds.values()))
    assert os.sched_getaffinity(0) == set(cpus)


def test_recheck_stays_while_the_cpu_keeps_its_speed_and_tries_the_next_fastest_when_it_slows(restore_affinity,
                                                                                             tmp_path):
    cpus = restore_affinity
    speeds = {cpu: 500.0 + cpu for cpu in cpus}  # ranking: the lowest-numbered CPU first
    calls = []

    def time_cpu(cpu):
        calls.append(cpu)
        return speeds[cpu]

    pinning = hostcpu.FastestCpu(time_cpu=time_cpu, claim_dir=str(tmp_path))
    try:
        assert pinning.pick() == cpus[0]
        calls.clear()
        speeds[cpus[0]] = 500.0 * 1.1  # within the tolerance: one timing, no move
        assert pinning.recheck() == cpus[0]
        assert calls == [cpus[0]]
        if len(cpus) > 1:
            calls.clear()
            speeds[cpus[0]] = 900.0  # slowed: the scan's next fastest, timed once, not a new scan
            assert pinning.recheck() == cpus[1]
            assert calls == [cpus[0], cpus[1]]
            assert os.sched_getaffinity(0) == {cpus[1]}
            calls.clear()
            for cpu in cpus:
                speeds[cpu] = 2000.0  # every CPU slowed: at most RECHECK_TRIES others are timed
            pinning.recheck()
            assert len(calls) <= 1 + hostcpu.RECHECK_TRIES
        assert pinning.picks[:2] == [cpus[0], cpus[0]]
    finally:
        pinning.close()


def test_two_cells_at_once_never_launch_from_the_same_cpu(restore_affinity, tmp_path):
    """The second measuring thread passes over the CPU the first holds, however fast it reads;
    the CPU is free again once the first lets go."""
    cpus = restore_affinity
    speeds = {cpu: 1000.0 - cpu for cpu in cpus}
    first = hostcpu.FastestCpu(time_cpu=speeds.get, claim_dir=str(tmp_path))
    second = hostcpu.FastestCpu(time_cpu=speeds.get, claim_dir=str(tmp_path))
    try:
        assert first.pick() == cpus[-1]
        if len(cpus) > 1:
            assert second.pick() == cpus[-2]
        first.close()
        third = hostcpu.FastestCpu(time_cpu=speeds.get, claim_dir=str(tmp_path))
        assert third.pick() == cpus[-1]
        third.close()
    finally:
        first.close()
        second.close()


def test_a_claim_folder_that_cannot_be_written_claims_nothing_and_refuses_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    claim = hostcpu.CpuClaim(blocker / "claims")  # under a file: cannot be made
    assert not claim.usable and claim.take(0) and not claim.held_elsewhere(0)


def test_the_real_loop_picks_a_cpu_this_process_may_use(restore_affinity):
    assert hostcpu.loop_us(adds=1000, repeats=1) > 0
    with hostcpu.FastestCpu() as pinning:
        cpu = pinning.pick()
        assert cpu in restore_affinity and os.sched_getaffinity(0) == {cpu}
        assert pinning.speed_ratio >= 1.0
    assert os.sched_getaffinity(0) == set(restore_affinity)


def test_the_bare_loop_pins_with_its_own_code(restore_affinity):
    from inferbench.selfcheck import bareloop

    held = {}
    cpu, seconds = bareloop.pin_to_fastest_cpu(restore_affinity, held)
    assert cpu in restore_affinity and os.sched_getaffinity(0) == {cpu} and seconds > 0
    assert held["cpu"] == cpu
    if held["fd"] >= 0:
        os.close(held["fd"])
    os.sched_setaffinity(0, set(restore_affinity))
    pinning = bareloop.CpuPinning(True)
    pinning.scan()
    pinning.scan()  # the second scan still sees every CPU, not only the first scan's
    assert pinning.cpus == restore_affinity and len(pinning.picks) == 2
    if pinning.held.get("fd", -1) >= 0:
        os.close(pinning.held["fd"])


def _cpu_io_timing(monkeypatch, device, settings, telemetry=None, calls=None):
    """time_io_mode on a fake runner whose calls are appended to `calls`, with the device's pinning."""
    from inferbench.measure import phases, results, timing

    calls = [] if calls is None else calls
    runner = SimpleNamespace(run=lambda x: calls.append(x))
    loaded = results.Loaded(runner=runner, prepared=[1, 2], load_s=0.0, compile_s=None, backend_options="{}")
    inputs = results.Inputs(host=[1, 2], device=[1, 2])
    setup = results.DeviceSetup(device="cpu", dtype=None, timer=timing.PerfCounterTimer(), gpu_env={})
    spec = SimpleNamespace(cell=SimpleNamespace(device=device, batch_size=4), measurement={})
    if device == "cuda":  # no GPU here: the launch-cost reading is the only GPU call in the window
        monkeypatch.setattr("inferbench.measure.gpu_clock.launch_us", lambda: 7.0)
    monkeypatch.setattr(phases, "log", lambda msg: None)
    ctx = phases.TimingContext(spec=spec, loaded=loaded, inputs=inputs, setup=setup, telemetry=telemetry)
    return phases.time_io_mode(ctx, "device", settings), calls


def test_gpu_cells_record_their_cpus_and_cpu_cells_are_not_pinned(monkeypatch, restore_affinity):
    from inferbench.measure import timing

    settings = timing.Settings(warmup_iters=2, warmup_min_s=0, min_iters=3, min_time_s=0, rounds=3)
    gpu, _ = _cpu_io_timing(monkeypatch, "cuda", settings)
    # the warm-up's pick, the window's, then a recheck before each later round
    assert len(gpu.host_cpus.split()) == 4 and {int(c) for c in gpu.host_cpus.split()} <= set(restore_affinity)
    assert gpu.host_cpu_speed_ratio >= 1.0 and gpu.host_launch_us == 7.0
    assert os.sched_getaffinity(0) == set(restore_affinity)  # restored after the window
    off, _ = _cpu_io_timing(monkeypatch, "cuda", timing.Settings(**dict(vars(settings), pin_fastest_cpu=False)))
    cpu, _ = _cpu_io_timing(monkeypatch, "cpu", settings)
    for unpinned in (off, cpu):
        assert unpinned.host_cpus is None and unpinned.host_cpu_speed_ratio is None


def test_the_energy_of_an_io_mode_is_its_timed_window_alone(monkeypatch, restore_affinity):
    """The counter is read from its first update after the warm-up: a reading from before it
    charged the warm-up's energy to the window (an H200 once read 1,047 W)."""
    from inferbench.measure import timing

    class Telemetry:
        """A GPU whose energy counter adds one joule per call."""

        sampler = None
        calls: list = []

        def spin_up(self):
            return 0.0

        def energy_mj(self):
            return 1000.0 * len(self.calls)

    telemetry = Telemetry()
    settings = timing.Settings(warmup_iters=5, warmup_min_s=0, min_iters=3, min_time_s=0, rounds=1)
    t, telemetry.calls = _cpu_io_timing(monkeypatch, "cpu", settings, telemetry, calls=telemetry.calls)
    # warm-up, one call to see the counter move, the window, one call to see it move again
    assert len(telemetry.calls) == 5 + 1 + 3 + 1
    # 4 joules for the 4 calls of 4 images between the two updates; the warm-up's are not the window's
    assert t.energy_j_per_image == pytest.approx(4 / 16)


def test_nvml_cpu_affinity_words_become_cpu_numbers():
    from inferbench.measure.telemetry.gpu import cpus_from_affinity_words

    assert cpus_from_affinity_words([0b1011, 0]) == {0, 1, 3}
    assert cpus_from_affinity_words([0, 1 << 63 | 1]) == {64, 127}
    assert cpus_from_affinity_words([]) == set()


def test_gpu_cells_choose_among_the_cpus_nearest_the_gpu(restore_affinity):
    from inferbench.measure import timing

    settings = timing.Settings()
    near = SimpleNamespace(local_cpus=lambda: {restore_affinity[-1], 10_000})  # 10,000: not this process's
    assert hostcpu.host_cpu_pinning("cuda", settings, near).cpus == [restore_affinity[-1]]
    # NVML cannot say, or names none of this process's CPUs: every CPU it may use
    for unknown in (SimpleNamespace(local_cpus=lambda: None), SimpleNamespace(local_cpus=lambda: {10_000}), None):
        assert hostcpu.host_cpu_pinning("cuda", settings, unknown).cpus == restore_affinity
    assert isinstance(hostcpu.host_cpu_pinning("cpu", settings, near), hostcpu.NoPinning)


def test_a_scan_of_a_large_host_times_a_sample_and_keeps_the_current_cpu(monkeypatch, restore_affinity, tmp_path):
    cpus = restore_affinity
    monkeypatch.setattr(hostcpu, "MAX_SCANNED", 1)
    timed = []
    pinning = hostcpu.FastestCpu(time_cpu=lambda cpu: timed.append(cpu) or 100.0, claim_dir=str(tmp_path))
    try:
        first = pinning.pick()
        assert len(timed) == 1 and first in cpus
        timed.clear()
        assert pinning.pick() == first and timed == [first]  # the sample keeps the CPU it is on
    finally:
        pinning.close()


def test_host_cpus_command_times_every_cpu_in_each_pass(capsys, restore_affinity):
    from inferbench import cli

    assert cli.main(["host-cpus", "--passes", "2", "--adds", "500"]) == 0
    out = capsys.readouterr().out
    for cpu in restore_affinity:
        assert f"cpu {cpu:>3}:" in out
    assert "slowest over fastest CPU within a pass" in out
    assert os.sched_getaffinity(0) == set(restore_affinity)
    assert cli.main(["host-cpus", "--passes", "0"]) == 2
    assert "--passes and --adds must be at least 1" in capsys.readouterr().err
