"""What each phase of a cell (inferbench.measure.phases) hands the next, and the shard's rows
(inferbench.measure.rows) are built from: small typed results, kept apart from the code that
measures them so that the rows need neither torch nor the phases to be read or tested."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferbench.measure.timing import Measurement


@dataclass(frozen=True)
class Worker:
    """The process the cell runs in."""

    threads: int
    warm: bool  # a warm worker (inferbench.process.warm), not a fresh process
    cells_before: int  # cells that warm worker ran before this one
    rss_peak_known: bool  # False where the host peak could not restart with the cell


@dataclass(frozen=True)
class Started:
    """Where the worker's start ends and the cell's set-up begins."""

    at: float  # perf_counter
    worker_start_s: float | None  # from the job's launch to here; None when not launched by a job


@dataclass(frozen=True)
class DeviceSetup:
    """The device the cell runs on, and how its calls are timed there."""

    device: str
    dtype: Any  # torch dtype of the cell's precision
    timer: Any  # CudaEventTimer | PerfCounterTimer
    gpu_env: dict  # the GPU's environment columns; empty on the CPU


@dataclass(frozen=True)
class Inputs:
    host: list  # on the host (pinned on a GPU cell): io=host copies these in; the reference uses [0]
    device: list  # where the model runs: io=device feeds these


@dataclass(frozen=True)
class GpuStart:
    """The GPU's state when the cell's sampling began, and the spin-up before loading."""

    state: dict  # NVML: SM clock, temperature, throttle reasons
    spinup_s: float


@dataclass
class Loaded:
    """The backend's runner, ready, with the inputs in its own form. Mutable on purpose: close()
    lets go of the runner, so that the backend is freed before the reference model is built."""

    runner: Any
    prepared: list | None
    load_s: float
    compile_s: float | None
    backend_options: str  # JSON: the options and what the backend chose (runner.facts)

    def close(self) -> None:
        self.runner.close()
        self.runner = self.prepared = None


@dataclass(frozen=True)
class IoTiming:
    """One io mode's warm-up and timed window, and what the telemetry saw during the window."""

    io: str
    timer: str
    measurement: Measurement
    stats: dict  # inferbench.measure.stats.summarize: the latency and throughput columns
    settings_json: str  # the measurement settings in force, with what stopped the window
    energy_j_per_image: float | None = None
    power_w_mean: float | None = None
    gpu_busy_pct: float | None = None
    sm_clock_mhz_mean: float | None = None
    host_launch_us: float | None = None
    host_cpus: str | None = None  # the CPU the launching thread was pinned to: warm-up, then each round
    host_cpu_speed_ratio: float | None = None  # the host's slowest CPU over its fastest, at the first scan
    enqueue_ms_median: float | None = None  # the host's time to issue one call (inferbench.measure.hostbound)
    host_bound: bool | None = None
    enqueue_note: str = ""
    host_other_cpu_pct: float | None = None  # other processes' share of the machine meanwhile


@dataclass(frozen=True)
class Peaks:
    """Memory peaks and the GPU's state at the start and the end of the cell's timing."""

    host_rss_peak_mb: float | None
    gpu_mem_peak_mb: float | None
    gpu_mem_start_mb: float | None
    torch_alloc_peak_mb: float | None
    clock_spinup_s: float | None  # every spin-up of the cell; None without GPU telemetry
    start: dict  # NVML state when sampling began
    end: dict  # NVML state after the last io mode
