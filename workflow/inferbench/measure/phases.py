"""The phases of measuring one cell, each a function that hands the next what it needs.

inferbench.measure.cellrun runs them in order for a cell; `inferbench crosscheck` runs the same
set-up, input drawing, load and timing for its harness side. Each phase returns a small typed
result; inferbench.measure.rows turns those results into the shard's rows.

  begin_worker    before torch is imported: threads, warm-worker facts, host peak restarted
  worker_started  torch imported: where the worker's start ends
  setup_device    threads, the CUDA device, the cell stream, the timer
  draw_inputs     the seeded input batches, on the host and on the device
  start_telemetry NVML sampling on, the GPU clock brought up before loading
  load_runner     the backend loads (and compiles) its artifact; inputs in the backend's form
  first_call      the first, cold call, timed on its own
  time_io_mode    warm-up and the timed window of one io mode, with its energy and utilisation
  read_peaks      memory peaks and the GPU's end state
  check_accuracy  the backend's output against fp32 eager PyTorch
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from inferbench.backends.base import LoadContext, Skip, options_json, torch_dtype
from inferbench.measure.timing import CudaEventTimer, Measurement, PerfCounterTimer, Settings, measure
from inferbench.sweep.spec import CellSpec


class CellLog:
    """Progress on stderr, stamped with seconds since the cell began: shows where a cell's time
    goes (imports, load, timing). Restarted per cell, since a warm worker runs many."""

    def __init__(self):
        self.t0 = time.monotonic()

    def restart(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        print(f"[inferbench cell +{time.monotonic() - self.t0:6.2f}s] {msg}", file=sys.stderr, flush=True)


log = CellLog()


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cell_threads(spec: CellSpec) -> int:
    return spec.measurement.get("cpu_threads") or default_threads()


class GpuTelemetry:
    """NVML readings for the cell, or nothing at all where NVML is unusable (recorded as nulls).

    Created before the process's CUDA context: NVML's memory baseline must not include it."""

    def __init__(self):
        from inferbench.measure.telemetry.gpu import GpuSampler, NvmlReader

        self.spinup_s = 0.0  # every spin-up of the cell, summed (clock_spinup_s)
        try:
            self.reader = NvmlReader(nvml_index_for_visible_gpu())
        except RuntimeError as exc:
            log(f"no GPU telemetry: {exc}")
            self.reader = None
            self.sampler = None
            return
        self.sampler = GpuSampler(self.reader)

    def start(self):
        if self.sampler:
            self.sampler.start()

    def info(self) -> dict:
        return self.reader.static_info() if self.reader else {}

    def state(self) -> dict:
        return self.reader.state() if self.reader else {}

    def energy_mj(self):
        return self.reader.energy_mj() if self.reader else None

    def local_cpus(self) -> set[int] | None:
        return self.reader.local_cpus() if self.reader else None

    def spin_up(self) -> float:
        """Bring the SM clock up (see inferbench.measure.gpu_clock); seconds spent."""
        from inferbench.measure.gpu_clock import spin_up

        if not self.reader:
            spent = spin_up(lambda: None, None)
        else:
            spent = spin_up(self.reader.sm_clock_mhz, self.reader.max_sm_clock_mhz())
        self.spinup_s += spent
        return spent

    def stop(self):
        if self.sampler:
            self.sampler.stop()


def nvml_index_for_visible_gpu() -> int:
    """NVML ignores CUDA_VISIBLE_DEVICES: map the cell's one visible GPU to its NVML index."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(visible) if visible.isdigit() else 0


@functools.cache
def cell_stream():
    """The process's side stream for cells. One per process, not per cell: in a warm worker,
    libraries keep per-stream state (cuBLAS a workspace per stream) that would pile up."""
    import torch

    return torch.cuda.Stream()


# --- set-up ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Worker:
    """The process the cell runs in."""

    threads: int
    warm: bool  # a warm worker (inferbench.process.warm), not a fresh process
    cells_before: int  # cells that warm worker ran before this one
    rss_peak_known: bool  # False where the host peak could not restart with the cell


def begin_worker(spec: CellSpec) -> Worker:
    """First, before torch is imported and before any memory the cell allocates: in a warm
    worker the process-wide host peak must restart with the cell, or it is unknown."""
    from inferbench.measure.telemetry.host import reset_rss_peak
    from inferbench.process.warm import cells_before, in_warm_worker

    warm = in_warm_worker()
    return Worker(threads=cell_threads(spec), warm=warm, cells_before=cells_before() if warm else 0,
                  rss_peak_known=reset_rss_peak() if warm else True)


@dataclass(frozen=True)
class Started:
    """Where the worker's start ends and the cell's set-up begins."""

    at: float  # perf_counter
    worker_start_s: float | None  # from the job's launch to here; None when not launched by a job


def worker_started() -> Started:
    """After importing torch: a fresh process has imported it here, a forked one had it, so this
    is where the worker's start ends whichever way it began."""
    import torch

    from inferbench.process.isolation import LAUNCHED_AT_ENV

    log(f"torch {torch.__version__} imported")
    at = time.perf_counter()
    launched_at = os.environ.get(LAUNCHED_AT_ENV)
    return Started(at=at, worker_start_s=max(0.0, time.time() - float(launched_at)) if launched_at else None)


@dataclass(frozen=True)
class DeviceSetup:
    """The device the cell runs on, and how its calls are timed there."""

    device: str
    dtype: Any  # torch dtype of the cell's precision
    timer: Any  # CudaEventTimer | PerfCounterTimer
    gpu_env: dict  # the GPU's environment columns; empty on the CPU


def setup_device(spec: CellSpec, threads: int, telemetry: GpuTelemetry | None, stack) -> DeviceSetup:
    """Before the inputs and the load, so that both happen on the stream the timing uses. The
    cell stream stays entered (on `stack`) until the cell ends."""
    import torch

    c = spec.cell
    torch.set_num_threads(threads)
    gpu_env = {}
    if c.device == "cuda":
        if not torch.cuda.is_available():
            raise Skip("no CUDA device")
        from inferbench.records.environment import torch_cuda_environment

        info = telemetry.info() if telemetry else {}
        gpu_env = dict(torch_cuda_environment(), **{k: v for k, v in info.items() if k != "cuda_driver_version"})
        gpu_env["gpu_index"] = nvml_index_for_visible_gpu()
        gpu_env["gpu_name"] = gpu_env.get("gpu_name") or torch.cuda.get_device_name(0)
        # One side stream for the whole cell: every backend (ORT included, see its
        # user_compute_stream) and every copy runs on it, and the CUDA events are recorded on it.
        stack.enter_context(torch.cuda.stream(cell_stream()))
    timer = CudaEventTimer() if c.device == "cuda" else PerfCounterTimer()
    return DeviceSetup(device=c.device, dtype=torch_dtype(c.precision), timer=timer, gpu_env=gpu_env)


@dataclass(frozen=True)
class Inputs:
    host: list  # on the host (pinned on a GPU cell): io=host copies these in; the reference uses [0]
    device: list  # where the model runs: io=device feeds these


def draw_inputs(spec: CellSpec, setup: DeviceSetup) -> Inputs:
    """Random batches drawn from the seed, after the device set-up and before the load.

    On the CPU from the CPU generator (identical on every machine). On a GPU from the GPU's
    generator, then copied to pinned host memory for io=host: four fp32 batches of 64 x 512 px
    from the CPU generator took ~1.1 s of every such cell on the H200 host. Those values depend on
    the GPU model and torch release; the accuracy reference is computed from the same batch.
    """
    import torch

    c = spec.cell
    count = spec.measurement.get("num_buffers", 4)
    dtype = setup.dtype
    shape = (c.batch_size, spec.in_chans, c.resolution, c.resolution)
    if setup.device == "cuda":
        gen = torch.Generator(device="cuda").manual_seed(spec.seed)
        # drawn in the cell's dtype: no fp32 temporary to inflate the memory peaks
        on_device = [torch.randn(shape, generator=gen, device="cuda", dtype=dtype) for _ in range(count)]
        host = [torch.empty(shape, dtype=dtype, pin_memory=True) for _ in range(count)]
        for h, d in zip(host, on_device):
            h.copy_(d)
        torch.cuda.synchronize()
        return Inputs(host=host, device=on_device)
    gen = torch.Generator().manual_seed(spec.seed)
    host = [torch.randn(shape, generator=gen).to(dtype) for _ in range(count)]
    return Inputs(host=host, device=host)


@dataclass(frozen=True)
class GpuStart:
    """The GPU's state when the cell's sampling began, and the spin-up before loading."""

    state: dict  # NVML: SM clock, temperature, throttle reasons
    spinup_s: float


def start_telemetry(telemetry: GpuTelemetry | None) -> GpuStart:
    """After the inputs (their memory belongs to the cell's start) and before loading, whose
    compilers autotune at the clock they find: an idling clock makes them pick wrong."""
    if not telemetry:
        return GpuStart(state={}, spinup_s=0.0)
    telemetry.start()
    state = telemetry.state()
    return GpuStart(state=state, spinup_s=telemetry.spin_up())


# --- load -----------------------------------------------------------------------------------

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


def load_runner(spec: CellSpec, backend, options, artifact_path: str | None, threads: int,
                inputs: Inputs) -> Loaded:
    """After the device set-up, the inputs and the clock's spin-up, outside any timed window:
    loading and compiling are recorded as load_s and compile_s, never timed as calls."""
    c = spec.cell
    t0 = time.perf_counter()
    runner = backend.load(LoadContext(cell=c, options=options, artifact_path=artifact_path,
                                      threads=threads, build_model=lambda: _build(spec), in_chans=spec.in_chans))
    load_s = time.perf_counter() - t0
    facts = dict(json.loads(options_json(options)), **runner.facts)
    log(f"loaded in {load_s:.2f} s" + (f" (compile {runner.compile_s:.2f} s)" if runner.compile_s else ""))
    return Loaded(runner=runner, prepared=[runner.prepare(x) for x in inputs.device], load_s=load_s,
                  compile_s=runner.compile_s, backend_options=json.dumps(facts, sort_keys=True))


def _build(spec: CellSpec):
    from inferbench.models import build_model

    return build_model(spec.cell.model, spec.weights, spec.seed)


# --- warm-up --------------------------------------------------------------------------------

def first_call(loaded: Loaded, setup: DeviceSetup, telemetry: GpuTelemetry | None) -> float:
    """The first, cold call (lazy initialisation, autotuning), timed on its own before any io
    mode's warm-up, so that no timed window and no warm-up count pays for it. Milliseconds."""
    if telemetry:  # loading may have left the GPU idle long enough to clock down
        telemetry.spin_up()
    runner, prepared = loaded.runner, loaded.prepared
    return setup.timer.time_ms(lambda: runner.run(prepared[0]))


# --- timed ----------------------------------------------------------------------------------

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


def io_step(io: str, loaded: Loaded, inputs: Inputs, device: str) -> Callable[[], None]:
    """One iteration of an io mode: the whole unit of work a timed call measures."""
    runner, prepared = loaded.runner, loaded.prepared
    if io == "device" or device == "cpu":
        step_index = [0]

        def step():
            i = step_index[0] = (step_index[0] + 1) % len(prepared)
            runner.run(prepared[i])

        return step
    import torch

    # io=host: a pinned host batch is copied in, the model runs, the output is copied back
    # to pinned host memory, all inside the timed window: what a service pays per request.
    staged = runner.prepare(inputs.device[0].clone())
    staging = runner.staging_tensor(staged)
    probe = runner.run(staged)
    host_out = torch.empty(probe.shape, dtype=probe.dtype, pin_memory=True)
    step_index = [0]

    def step():
        i = step_index[0] = (step_index[0] + 1) % len(inputs.host)
        staging.copy_(inputs.host[i], non_blocking=True)
        host_out.copy_(runner.run(staged), non_blocking=True)

    return step


def host_cpu_pinning(device: str, settings: Settings, telemetry: GpuTelemetry | None = None):
    """GPU cells: the launching thread on the host's fastest CPU (inferbench.measure.hostcpu),
    among those nearest the GPU where NVML names them (on a host of two sockets, a launch from
    the other socket's cores crosses the link between them). CPU cells run on every CPU their
    threads may use, and are left to the scheduler."""
    from inferbench.measure.hostcpu import FastestCpu, NoPinning, can_pin

    if device != "cuda" or not settings.pin_fastest_cpu or not can_pin():
        return NoPinning()
    allowed = os.sched_getaffinity(0)
    near = (telemetry.local_cpus() if telemetry else None) or set()
    return FastestCpu(cpus=sorted(allowed & near) or None)


def time_io_mode(io: str, spec: CellSpec, loaded: Loaded, inputs: Inputs, setup: DeviceSetup,
                 settings: Settings, telemetry: GpuTelemetry | None) -> IoTiming:
    """After the first call, per io mode: the clock brought up again, then warm-up and the
    adaptive timed window (inferbench.measure.timing.measure), with the energy counter and the
    NVML samples read around the window only."""
    from inferbench.measure.energy import run_until_tick
    from inferbench.measure.stats import summarize
    from inferbench.measure.telemetry.gpu import busy_in_window, mean_in_window

    c = spec.cell
    if telemetry:
        telemetry.spin_up()
    step = io_step(io, loaded, inputs, c.device)
    log(f"io={io}: warm-up and timing (min {settings.min_iters} iterations, {settings.min_time_s} s)")
    sampler = telemetry.sampler if telemetry else None
    host, window = {}, {}
    with host_cpu_pinning(c.device, settings, telemetry) as pinning:
        pinning.pick()  # before the warm-up, which then warms the CPU the window starts on

        def before_round(index: int) -> None:
            if index > 0:
                pinning.recheck()
                return
            pinning.pick()  # the warm-up may have outlasted the CPU's fast spell
            if c.device == "cuda":
                from inferbench.measure.gpu_clock import launch_us

                host["host_launch_us"] = launch_us()
            # last before the window's clock starts: its energy is the window's alone, without
            # the warm-up's (which once made an H200 read 1,047 W), from an update of the
            # counter on (inferbench.measure.energy)
            window["energy_start"] = run_until_tick(telemetry.energy_mj, timed_step) if telemetry else None
            window["power_from"] = len(sampler.power_w) if sampler else 0

        def timed_step():  # one iteration, waited for, outside the window's clock
            setup.timer.time_ms(step)

        m = measure(step, setup.timer, settings, progress=log, before_round=before_round)
        window_end = time.monotonic()
        # no update before the window: waiting for one after it would only cost time
        energy_end = run_until_tick(telemetry.energy_mj, timed_step) if window["energy_start"] else None
    host_cpus = " ".join(map(str, pinning.picks)) or None
    stats = summarize(m.latencies_ms, c.batch_size, m.round_latencies())
    power = sampler.power_w[window["power_from"]:] if sampler else None
    busy = busy_in_window(sampler.busy_pct, window_end - m.timed_s, window_end) if sampler else None
    clock = mean_in_window(sampler.sm_clock_mhz, window_end - m.timed_s, window_end) if sampler else None
    j_per_image, watts = window_energy_or_power(telemetry, window["energy_start"], energy_end, m, c.batch_size,
                                                power)
    log(f"io={io}: {stats['n_iters']} iterations in {m.timed_s:.2f} s, median {stats['latency_ms_median']:.3f} ms, "
        f"p99 {stats['latency_ms_p99']:.3f} ms, cv {stats['latency_cv']:.3f}, {stats['throughput_ips']:.1f} images/s "
        f"(median of {len(stats['round_ips'])} rounds, spread {stats['ips_spread_pct']:.1f}%)"
        + (f", GPU busy {busy:.0f}%" if busy is not None else "")
        + (f", SM clock {clock:.0f} MHz" if clock is not None else "")
        + (f", host launch {host['host_launch_us']:.1f} us" if "host_launch_us" in host else "")
        + (f", on CPU {host_cpus}" if host_cpus else ""))
    return IoTiming(io=io, timer=setup.timer.name, measurement=m, stats=stats,
                    # the settings in force for this row: a later io mode warms up without the time floor
                    settings_json=json.dumps(dict(spec.measurement, warmup_min_s=settings.warmup_min_s,
                                                  stopped_by=m.stopped_by), sort_keys=True),
                    energy_j_per_image=j_per_image, power_w_mean=watts, gpu_busy_pct=busy, sm_clock_mhz_mean=clock,
                    host_launch_us=host.get("host_launch_us"),
                    host_cpus=host_cpus, host_cpu_speed_ratio=pinning.speed_ratio)


def window_energy_or_power(telemetry, start, end, m, batch_size, power_samples_w):
    """The window's (joules per image, mean watts): from the energy counter's updates around it,
    else, on a GPU without the counter, from the power samples; nothing where the counter exists
    but did not move (the log says so)."""
    from inferbench.measure.energy import TICK_WAIT_S, window_energy
    from inferbench.measure.telemetry.gpu import energy_from_power_samples

    if telemetry is None:
        return None, None
    if start is not None and end is not None:
        return window_energy(start, end, len(m.latencies_ms), batch_size)
    if telemetry.energy_mj() is None:  # no counter on this GPU
        return energy_from_power_samples(m.timed_s, len(m.latencies_ms) * batch_size, power_samples_w)
    log(f"energy: the GPU's energy counter did not move within {TICK_WAIT_S} s of the window's ends: "
        "no energy figure for this io mode")
    return None, None


# --- memory and the GPU's end state ---------------------------------------------------------

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


def read_peaks(device: str, worker: Worker, telemetry: GpuTelemetry | None, gpu_start: GpuStart) -> Peaks:
    """After the last io mode and before the accuracy check: the fp32 reference model would add
    its own memory to the peaks. Stops the sampling."""
    from inferbench.measure.telemetry.host import rss_peak_mb

    end = telemetry.state() if telemetry else {}
    if telemetry:
        telemetry.stop()
    gpu_peak = gpu_start_mb = torch_peak = None
    if telemetry and telemetry.sampler:
        gpu_peak, method = telemetry.sampler.trace.peak()
        gpu_start_mb = telemetry.sampler.trace.start()
        log(f"GPU memory peak {gpu_peak} MiB ({method}; {gpu_start_mb} MiB at the start)")
    if device == "cuda":
        import torch

        torch_peak = torch.cuda.max_memory_allocated() / 2**20
    return Peaks(host_rss_peak_mb=rss_peak_mb() if worker.rss_peak_known else None, gpu_mem_peak_mb=gpu_peak,
                 gpu_mem_start_mb=gpu_start_mb, torch_alloc_peak_mb=torch_peak,
                 clock_spinup_s=telemetry.spinup_s if telemetry else None, start=gpu_start.state, end=end)


# --- accuracy -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Accuracy:
    max_abs_err: float
    mean_abs_err: float
    top1_agreement: float
    reference_device: str
    reference_s: float


def compare_logits(out, ref) -> dict:
    out = out.float().cpu()
    diff = (out - ref).abs()
    return {"max_abs_err": float(diff.max()), "mean_abs_err": float(diff.mean()),
            "top1_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean())}


def check_accuracy(spec: CellSpec, loaded: Loaded, inputs: Inputs, reference_cache: str | None) -> Accuracy:
    """Last: the backend's output on buffer 0 against fp32 eager PyTorch on the same input
    (inferbench.measure.reference: computed once per input and shared by the cells that use it).
    Closes the runner first, so that the backend is freed before the reference model is built."""
    from inferbench.measure.reference import reference_logits

    out = loaded.runner.run(loaded.prepared[0])
    if spec.cell.device == "cuda":
        import torch

        torch.cuda.synchronize()
    out = out.float().cpu().clone()
    loaded.close()
    log("accuracy check against fp32 eager PyTorch")
    t0 = time.perf_counter()
    ref, cached = reference_logits(spec, inputs.host[0], reference_cache)
    log("fp32 reference " + ("read from the cache" if cached else "computed"))
    return Accuracy(**compare_logits(out, ref), reference_device=spec.cell.device, reference_s=time.perf_counter() - t0)
