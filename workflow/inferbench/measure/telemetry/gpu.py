"""GPU telemetry through NVML, sampled in a background thread over a cell.

NVML sees the memory of every framework in the process (PyTorch's allocator, ONNX Runtime's
arena, TensorRT's engines and the CUDA context), which the PyTorch allocator's own counters do not.

The bookkeeping (`MemoryTrace`, `energy_from_power_samples`, `throttle_names`) works on plain readings so it
can be tested on a machine without a GPU; `NvmlReader` is the only part that talks to the driver.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

# NVML's clocks-event (throttle) reason bits, by name.
THROTTLE_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def throttle_names(mask: int | None) -> str | None:
    if mask is None:
        return None
    names = [name for bit, name in THROTTLE_BITS.items() if mask & bit]
    return ",".join(names) if names else "none"


@dataclass
class MemoryTrace:
    """Samples of GPU memory in MiB. `process_mb` is this process's own use (None where NVML
    cannot attribute memory to processes, as inside some containers); `device_mb` is the whole
    device's use, relative to `baseline_device_mb` read before this process touched the GPU."""

    baseline_device_mb: float | None = None
    process_mb: list = field(default_factory=list)
    device_mb: list = field(default_factory=list)

    def add(self, process_mb: float | None, device_mb: float | None) -> None:
        if process_mb is not None:
            self.process_mb.append(process_mb)
        if device_mb is not None:
            self.device_mb.append(device_mb)

    def start(self) -> float | None:
        """The first reading, by the same method as `peak`: what the process held as the cell began."""
        if self.process_mb:
            return self.process_mb[0]
        if self.device_mb and self.baseline_device_mb is not None:
            return max(0.0, self.device_mb[0] - self.baseline_device_mb)
        return None

    def peak(self) -> tuple[float | None, str | None]:
        """(peak MiB, method). Per-process figures win; otherwise the device's growth over the
        baseline, which is this process's use when the cell owns the GPU (it does: see devices.GpuClaim)."""
        if self.process_mb:
            return max(self.process_mb), "nvml_process"
        if self.device_mb and self.baseline_device_mb is not None:
            return max(0.0, max(self.device_mb) - self.baseline_device_mb), "nvml_device_delta"
        return None, None


def energy_from_power_samples(seconds: float, images: int,
                              power_samples_w: list | None) -> tuple[float | None, float | None]:
    """(joules per image, mean watts) over a timed window, for a GPU without NVML's energy
    counter (which inferbench.measure.energy reads where there is one): the mean of the power
    samples taken during the window, times the window."""
    if seconds <= 0 or images <= 0 or not power_samples_w:
        return None, None
    watts = sum(power_samples_w) / len(power_samples_w)
    return watts * seconds / images, watts


class NvmlReader:
    """Readings of one GPU for this process. Raises RuntimeError if NVML is unusable."""

    def __init__(self, gpu: int | str = 0):
        """`gpu`: NVML's index, or a UUID (`GPU-...`, `MIG-...`) as CUDA_VISIBLE_DEVICES may name it."""
        try:
            import pynvml
        except ImportError as exc:
            raise RuntimeError("nvidia-ml-py (pynvml) is not installed") from exc
        self.nvml = pynvml
        try:
            pynvml.nvmlInit()
            if isinstance(gpu, str) and not gpu.isdigit():
                self.handle = pynvml.nvmlDeviceGetHandleByUUID(gpu)
            else:
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(int(gpu))
        except pynvml.NVMLError as exc:
            raise RuntimeError(f"NVML unavailable: {exc}") from exc
        self.pid = os.getpid()

    def _try(self, fn, *args):
        try:
            return fn(*args)
        except self.nvml.NVMLError:
            return None

    def static_info(self) -> dict:
        n = self.nvml
        cuda = self._try(n.nvmlSystemGetCudaDriverVersion)
        return {
            "gpu_name": self._try(n.nvmlDeviceGetName, self.handle),
            "gpu_uuid": self._try(n.nvmlDeviceGetUUID, self.handle),
            "gpu_index": self._try(n.nvmlDeviceGetIndex, self.handle),
            "driver_version": self._try(n.nvmlSystemGetDriverVersion),
            "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
        }

    def process_mb(self) -> float | None:
        procs = self._try(self.nvml.nvmlDeviceGetComputeRunningProcesses, self.handle) or []
        for p in procs:
            if p.pid == self.pid and p.usedGpuMemory is not None:
                return p.usedGpuMemory / 2**20
        return None

    def device_mb(self) -> float | None:
        info = self._try(self.nvml.nvmlDeviceGetMemoryInfo, self.handle)
        return info.used / 2**20 if info else None

    def energy_mj(self) -> int | None:
        return self._try(self.nvml.nvmlDeviceGetTotalEnergyConsumption, self.handle)

    def power_w(self) -> float | None:
        mw = self._try(self.nvml.nvmlDeviceGetPowerUsage, self.handle)
        return mw / 1000.0 if mw is not None else None

    def busy_pct(self) -> float | None:
        """NVML's GPU utilisation: the share of its last sample period (1/6 s to 1 s, by GPU) in
        which a kernel was running. Below 100 while a loop runs flat out means gaps between
        kernels: the host, not the GPU, sets the pace."""
        rates = self._try(self.nvml.nvmlDeviceGetUtilizationRates, self.handle)
        return float(rates.gpu) if rates is not None else None

    def sm_clock_mhz(self) -> float | None:
        return self._try(self.nvml.nvmlDeviceGetClockInfo, self.handle, self.nvml.NVML_CLOCK_SM)

    def max_sm_clock_mhz(self) -> float | None:
        return self._try(self.nvml.nvmlDeviceGetMaxClockInfo, self.handle, self.nvml.NVML_CLOCK_SM)

    def local_cpus(self) -> set[int] | None:
        """The CPUs nearest the GPU (its NUMA node's, from NVML), or None where NVML cannot say."""
        words = self._try(self.nvml.nvmlDeviceGetCpuAffinity, self.handle, -(-(os.cpu_count() or 1) // 64))
        return cpus_from_affinity_words(words) if words is not None else None

    def state(self) -> dict:
        """SM clock, temperature and throttle reasons: read at the start and end of a cell."""
        n = self.nvml
        reasons_fn = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or n.nvmlDeviceGetCurrentClocksThrottleReasons
        return {
            "sm_clock_mhz": self._try(n.nvmlDeviceGetClockInfo, self.handle, n.NVML_CLOCK_SM),
            "temp_c": self._try(n.nvmlDeviceGetTemperature, self.handle, n.NVML_TEMPERATURE_GPU),
            "throttle_reasons": throttle_names(self._try(reasons_fn, self.handle)),
        }


def cpus_from_affinity_words(words) -> set[int]:
    """NVML's CPU affinity, 64-bit words lowest first, as CPU numbers."""
    return {64 * j + i for j, word in enumerate(words) for i in range(64) if int(word) >> i & 1}


# NVML averages utilisation over its own sample period (1/6 s on recent GPUs): a reading taken
# sooner than this after a window opened also covers time before it.
BUSY_SETTLE_S = 0.17


def busy_in_window(samples: list, start: float, end: float) -> float | None:
    """Mean of the (monotonic time, percent) utilisation samples that describe [start, end]."""
    inside = [pct for t, pct in samples if start + BUSY_SETTLE_S <= t <= end]
    return sum(inside) / len(inside) if inside else None


def mean_in_window(samples: list, start: float, end: float) -> float | None:
    """Mean of the (monotonic time, value) instantaneous readings taken inside [start, end]."""
    inside = [v for t, v in samples if start <= t <= end]
    return sum(inside) / len(inside) if inside else None


class GpuSampler:
    """Background sampling of memory, power and utilisation while a cell runs."""

    def __init__(self, reader, interval_s: float = 0.02):
        self.reader = reader
        self.interval_s = interval_s
        self.trace = MemoryTrace(baseline_device_mb=reader.device_mb())
        self.power_w: list = []
        self.busy_pct: list = []
        self.sm_clock_mhz: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)

    def sample_once(self) -> None:
        self.trace.add(self.reader.process_mb(), self.reader.device_mb())
        w = self.reader.power_w()
        if w is not None:
            self.power_w.append(w)
        busy = self.reader.busy_pct()
        if busy is not None:
            self.busy_pct.append((time.monotonic(), busy))
        clock = self.reader.sm_clock_mhz()
        if clock is not None:
            self.sm_clock_mhz.append((time.monotonic(), clock))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval_s)

    def start(self) -> "GpuSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample_once()  # a last reading, so a short cell still has one
