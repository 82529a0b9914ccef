"""Telemetry beside the clock: GPU memory, energy, throttle reasons and utilisation bookkeeping from
recorded readings (no GPU needed), and the host's RSS peak."""

from __future__ import annotations

import threading
import time

import pytest

from inferbench.measure.telemetry import gpu


def test_the_memory_peak_prefers_process_readings_and_is_never_negative():
    t = gpu.MemoryTrace(baseline_device_mb=1000.0)
    assert t.peak() == (None, None)
    t.add(None, 1500.0)
    t.add(None, 1800.0)
    t.add(None, None)
    assert t.peak() == (800.0, "nvml_device_delta")
    t.add(300.0, 1900.0)
    t.add(650.0, None)
    assert t.peak() == (650.0, "nvml_process")  # process figures win
    t2 = gpu.MemoryTrace(baseline_device_mb=2000.0)
    t2.add(None, 1500.0)  # another process freed memory meanwhile: never negative
    assert t2.peak() == (0.0, "nvml_device_delta")
    t3 = gpu.MemoryTrace(baseline_device_mb=None)
    t3.add(None, 1500.0)
    assert t3.peak() == (None, None)  # no baseline: no delta


def test_memory_trace_start_uses_the_method_of_the_peak():
    t = gpu.MemoryTrace(baseline_device_mb=1000.0)
    assert t.start() is None
    t.add(None, 1500.0)
    t.add(None, 1800.0)
    assert t.start() == 500.0  # the device's growth at the first reading
    t.add(300.0, 1900.0)
    t.add(650.0, None)
    assert t.start() == 300.0  # the process's own first reading, as peak() prefers it


def test_without_an_energy_counter_energy_is_mean_power_times_the_window():
    assert gpu.energy_from_power_samples(2.0, 100, [100.0, 200.0]) == pytest.approx((3.0, 150.0))
    for seconds, images, samples in ((0.0, 100, [100.0]), (-1.0, 100, [100.0]), (2.0, 0, [100.0]),
                                     (2.0, 100, []), (2.0, 100, None)):
        assert gpu.energy_from_power_samples(seconds, images, samples) == (None, None)


def test_throttle_reason_bits_are_named():
    assert gpu.throttle_names(None) is None
    assert gpu.throttle_names(0) == "none"
    assert gpu.throttle_names(0x1) == "gpu_idle"
    assert gpu.throttle_names(0x4 | 0x40) == "sw_power_cap,hw_thermal_slowdown"
    assert gpu.throttle_names(0x1FF).split(",") == list(gpu.THROTTLE_BITS.values())


class FakeReader:
    """Recorded readings, served in order (the last one repeats)."""

    def __init__(self, device_mb, process_mb, power_w, busy_pct=(None,)):
        self.device = list(device_mb)
        self.process = list(process_mb)
        self.power = list(power_w)
        self.busy = list(busy_pct)
        self.lock = threading.Lock()
        self.calls = 0

    @staticmethod
    def _next(seq):
        return seq.pop(0) if len(seq) > 1 else seq[0]

    def device_mb(self):
        with self.lock:
            self.calls += 1
            return self._next(self.device)

    def process_mb(self):
        with self.lock:
            return self._next(self.process)

    def power_w(self):
        with self.lock:
            return self._next(self.power)

    def busy_pct(self):
        with self.lock:
            return self._next(self.busy)

    def sm_clock_mhz(self):
        return 1980.0


def test_gpu_sampler_reads_baseline_then_samples_until_stopped():
    reader = FakeReader(device_mb=[1000.0, 1200.0, 1700.0, 1500.0], process_mb=[None], power_w=[250.0, None, 300.0])
    sampler = gpu.GpuSampler(reader, interval_s=0.001)
    assert sampler.trace.baseline_device_mb == 1000.0  # read at construction, before any work
    assert reader.calls == 1 and sampler.power_w == []
    sampler.start()
    deadline = time.monotonic() + 5
    while len(sampler.trace.device_mb) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    sampler.stop()
    assert not sampler._thread.is_alive()
    n = len(sampler.trace.device_mb)
    assert n >= 5
    assert sampler.trace.device_mb[:3] == [1200.0, 1700.0, 1500.0]
    assert 250.0 in sampler.power_w and 300.0 in sampler.power_w and None not in sampler.power_w
    assert sampler.trace.peak() == (700.0, "nvml_device_delta")
    time.sleep(0.02)
    assert len(sampler.trace.device_mb) == n  # nothing samples after stop()


def test_gpu_busy_is_the_mean_of_the_readings_that_describe_the_window():
    # (monotonic s, %): a reading describes the NVML period before it, so the first
    # BUSY_SETTLE_S of the window is skipped (it still covers the time before the window)
    samples = [(9.9, 10.0), (10.05, 20.0), (10.2, 80.0), (10.4, 90.0), (10.6, 100.0), (11.2, 0.0)]
    assert gpu.busy_in_window(samples, 10.0, 10.6) == 90.0
    assert gpu.busy_in_window(samples, 10.0, 10.1) is None  # too short for a reading of its own
    reader = FakeReader(device_mb=[1.0], process_mb=[None], power_w=[None], busy_pct=[None, 55.0])
    sampler = gpu.GpuSampler(reader, interval_s=0.001)
    sampler.sample_once()
    sampler.sample_once()
    assert [pct for _, pct in sampler.busy_pct] == [55.0]  # an unavailable reading is skipped


def test_gpu_sampler_stop_without_start_takes_one_reading():
    reader = FakeReader(device_mb=[500.0, 900.0], process_mb=[120.0], power_w=[None])
    sampler = gpu.GpuSampler(reader, interval_s=0.001)
    sampler._stop.set()
    sampler.sample_once()
    assert sampler.trace.peak() == (120.0, "nvml_process")
    assert sampler.power_w == []



def test_the_host_rss_peak_can_restart(tmp_path):
    from inferbench.measure.telemetry import host

    big = bytearray(200 * 2**20)
    big[:: 4096] = b"x" * len(big[:: 4096])
    before = host.rss_peak_mb()
    del big
    if not host.reset_rss_peak():
        pytest.skip("this kernel refuses /proc/self/clear_refs")
    assert host.rss_peak_mb() < before - 150


class FakeNvml:
    """pynvml for two GPUs, enough for NvmlReader's identity readings."""

    class NVMLError(Exception):
        pass

    UUIDS = ["GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-1111-1111-1111-111111111111"]

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return self.UUIDS.index(uuid)

    def nvmlDeviceGetUUID(self, handle):
        return self.UUIDS[handle]

    def nvmlDeviceGetIndex(self, handle):
        return handle

    def nvmlDeviceGetName(self, handle):
        return "NVIDIA H100"

    def nvmlSystemGetDriverVersion(self):
        return "580.00"

    def nvmlSystemGetCudaDriverVersion(self):
        return 13000


@pytest.mark.parametrize("visible", ["1", "GPU-bbbbbbbb-1111-1111-1111-111111111111", "1,0"])
def test_the_cell_records_the_uuid_and_index_of_the_gpu_it_was_given(monkeypatch, visible):
    """Whether CUDA_VISIBLE_DEVICES names the GPU by index or by UUID, the row's gpu_uuid and
    gpu_index are that GPU's, not the host's first."""
    import sys

    from inferbench.measure.telemetry.cellgpu import GpuTelemetry

    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr(gpu, "GpuSampler", lambda reader: None)
    info = GpuTelemetry().info()
    assert (info["gpu_uuid"], info["gpu_index"]) == (FakeNvml.UUIDS[1], 1)
