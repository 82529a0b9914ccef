"""The phases of measuring one cell, each a function that hands the next what it needs.

inferbench.measure.cellrun runs them in order (the harness check's side too); each returns a
typed result (measure.results) that measure.rows turns into the shard's rows. What is read beside
the clock lives apart: telemetry (measure.telemetry), a window's trackers (measure.window), the
error against the reference (measure.accuracy).

  begin_worker    before torch is imported: threads, warm-worker facts, host peak restarted
  worker_started  torch imported: where the worker's start ends
  setup_device    threads, the CUDA device, the cell stream, the timer
  draw_inputs     the seeded input batches, on the host and on the device
  start_telemetry NVML sampling on, the GPU clock brought up before loading
  load_runner     the backend loads (and compiles) its artifact; inputs in the backend's form
  first_call      the first, cold call, timed on its own
  time_io_mode    warm-up and the timed window of one io mode, with the trackers around it
  read_peaks      memory peaks and the GPU's end state
  check_accuracy  the backend's output against fp32 eager PyTorch
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

from inferbench.backends.base import LoadContext, options_json, torch_dtype
from inferbench.errors import Skip
from inferbench.measure.accuracy import Accuracy, compare_logits
from inferbench.measure.celllog import log
from inferbench.measure.compileguard import compile_guard_for
from inferbench.measure.results import DeviceSetup, GpuStart, Inputs, IoTiming, Loaded, Peaks, Started, Worker
from inferbench.measure.telemetry.cellgpu import GpuTelemetry, nvml_index_for_visible_gpu
from inferbench.measure.timing import CudaEventTimer, PerfCounterTimer, Settings
from inferbench.models.registry import build_model
from inferbench.sweep.spec import CellSpec


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cell_threads(spec: CellSpec) -> int:
    return spec.measurement.get("cpu_threads") or default_threads()


@functools.cache
def cell_stream():
    """The process's side stream for cells. One per process, not per cell: in a warm worker,
    libraries keep per-stream state (cuBLAS a workspace per stream) that would pile up."""
    import torch

    return torch.cuda.Stream()


# --- set-up ---------------------------------------------------------------------------------

def begin_worker(spec: CellSpec) -> Worker:
    """First, before torch is imported and before any memory the cell allocates: in a warm
    worker the process-wide host peak must restart with the cell, or it is unknown."""
    from inferbench.measure.telemetry.host import reset_rss_peak
    from inferbench.process.warm import cells_before, in_warm_worker

    warm = in_warm_worker()
    return Worker(threads=cell_threads(spec), warm=warm, cells_before=cells_before() if warm else 0,
                  rss_peak_known=reset_rss_peak() if warm else True)


def worker_started() -> Started:
    """After importing torch: a fresh process has imported it here, a forked one had it, so this
    is where the worker's start ends whichever way it began."""
    import torch

    from inferbench.process.isolation import LAUNCHED_AT_ENV

    log(f"torch {torch.__version__} imported")
    at = time.perf_counter()
    launched_at = os.environ.get(LAUNCHED_AT_ENV)
    return Started(at=at, worker_start_s=max(0.0, time.time() - float(launched_at)) if launched_at else None)


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
        # gpu_uuid and gpu_index from NVML: which GPU of the host the cell ran on, whatever
        # CUDA_VISIBLE_DEVICES calls it (the per-GPU busy spans of the report group by them)
        if gpu_env.get("gpu_index") is None:
            gpu_env["gpu_index"] = nvml_index_for_visible_gpu()
        gpu_env["gpu_name"] = gpu_env.get("gpu_name") or torch.cuda.get_device_name(0)
        # One side stream for the whole cell: the torch backends and every copy run on it, and the
        # CUDA events are recorded on it (ORT, on its own stream by default, is synchronised with
        # it around each run: inferbench.backends.onnxruntime_backend).
        stack.enter_context(torch.cuda.stream(cell_stream()))
    timer = CudaEventTimer() if c.device == "cuda" else PerfCounterTimer()
    return DeviceSetup(device=c.device, dtype=torch_dtype(c.precision), timer=timer, gpu_env=gpu_env)


def draw_inputs(spec: CellSpec, setup: DeviceSetup) -> Inputs:
    """Random batches drawn from the seed, after the device set-up and before the load.

    On the CPU from the CPU generator (identical on every machine). On a GPU from the GPU's
    generator, then copied to pinned host memory for io=host: the CPU generator took a visible
    share of every large cell (docs/method.md). Those values depend on the GPU model and torch
    release; the accuracy reference is computed from the same batch.
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


def start_telemetry(telemetry: GpuTelemetry | None) -> GpuStart:
    """After the inputs (their memory belongs to the cell's start) and before loading, whose
    compilers autotune at the clock they find: an idling clock makes them pick wrong."""
    if not telemetry:
        return GpuStart(state={}, spinup_s=0.0)
    telemetry.start()
    state = telemetry.state()
    return GpuStart(state=state, spinup_s=telemetry.spin_up())


# --- load -----------------------------------------------------------------------------------

def load_runner(spec: CellSpec, backend, options, artifact_path: str | None, threads: int,
                inputs: Inputs) -> Loaded:
    """After the device set-up, the inputs and the clock's spin-up, outside any timed window:
    loading and compiling are recorded as load_s and compile_s, never timed as calls."""
    c = spec.cell
    t0 = time.perf_counter()
    build = lambda: build_model(c.model, spec.weights, spec.seed)  # noqa: E731 (built only if the backend needs it)
    runner = backend.load(LoadContext(cell=c, options=options, artifact_path=artifact_path, threads=threads,
                                      build_model=build, compile_work=lambda: compile_guard_for(c.device),
                                      in_chans=spec.in_chans))
    load_s = time.perf_counter() - t0
    facts = dict(json.loads(options_json(options)), **runner.facts)
    log(f"loaded in {load_s:.2f} s" + (f" (compile {runner.compile_s:.2f} s)" if runner.compile_s else ""))
    return Loaded(runner=runner, prepared=[runner.prepare(x) for x in inputs.device], load_s=load_s,
                  compile_s=runner.compile_s, backend_options=json.dumps(facts, sort_keys=True))


# --- warm-up --------------------------------------------------------------------------------

def first_call(loaded: Loaded, setup: DeviceSetup, telemetry: GpuTelemetry | None) -> float:
    """The first, cold call (lazy initialisation, autotuning), timed on its own before any io
    mode's warm-up, so that no timed window and no warm-up count pays for it. Milliseconds."""
    if telemetry:  # loading may have left the GPU idle long enough to clock down
        telemetry.spin_up()
    runner, prepared = loaded.runner, loaded.prepared
    return setup.timer.time_ms(lambda: runner.run(prepared[0]))


# --- timed ----------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class TimingContext:
    """What every io mode's timing of a cell works with, from the phases before it."""

    spec: CellSpec
    loaded: Loaded
    inputs: Inputs
    setup: DeviceSetup
    telemetry: GpuTelemetry | None


def time_io_mode(ctx: TimingContext, io: str, settings: Settings) -> IoTiming:
    """After the first call, per io mode: the clock brought up again, then warm-up and the
    adaptive timed window (inferbench.measure.timing.measure), with the trackers of
    inferbench.measure.window around it: CPU pinning, the launch cost, energy, NVML's samples."""
    from inferbench.measure.hostcpu import host_cpu_pinning
    from inferbench.measure.stats import summarize
    from inferbench.measure.window import (CpuPinning, Enqueue, GpuSamples, LaunchCost, OtherCpuLoad, WindowEnergy,
                                           describe_window, run_window)

    c, timer, telemetry = ctx.spec.cell, ctx.setup.timer, ctx.telemetry
    if telemetry:
        telemetry.spin_up()
    step = io_step(io, ctx.loaded, ctx.inputs, c.device)
    log(f"io={io}: warm-up and timing (min {settings.min_iters} iterations, {settings.min_time_s} s)")
    trackers = [OtherCpuLoad(), CpuPinning(host_cpu_pinning(c.device, settings, telemetry)),
                Enqueue(c.device, getattr(ctx.loaded.runner, "waits_for_gpu", None))]
    if c.device == "cuda":
        trackers.append(LaunchCost())
    if telemetry:
        # one iteration, waited for, outside the window's clock: run until the counter moves
        trackers.append(WindowEnergy(telemetry, lambda: timer.time_ms(step), c.batch_size))
        if telemetry.sampler:
            trackers.append(GpuSamples(telemetry.sampler))
    m, columns = run_window(step, timer, settings, trackers, progress=log)
    stats = summarize(m.latencies_ms, c.batch_size, m.round_latencies())
    log(describe_window(io, m, stats, columns))
    return IoTiming(io=io, timer=timer.name, measurement=m, stats=stats,
                    # the settings in force for this row: a later io mode warms up without the time floor
                    settings_json=json.dumps(dict(ctx.spec.measurement, warmup_min_s=settings.warmup_min_s,
                                                  stopped_by=m.stopped_by), sort_keys=True),
                    **columns)


# --- memory and the GPU's end state ---------------------------------------------------------

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

def check_accuracy(spec: CellSpec, loaded: Loaded, inputs: Inputs, reference_cache: str | None) -> Accuracy:
    """Last: the backend's output on buffer 0 against fp32 eager PyTorch on the same input
    (inferbench.measure.reference: computed once per input and shared by the cells that use it).
    Closes the runner first, so that the backend is freed before the reference model is built."""
    from inferbench.measure.reference import reference_logits

    out = loaded.runner.run(loaded.prepared[0])
    if spec.cell.device == "cuda":
        import torch

        torch.cuda.synchronize()  # every stream: a backend may run on its own (ONNX Runtime)
    out = out.float().cpu().clone()
    loaded.close()
    log("accuracy check against fp32 eager PyTorch")
    t0 = time.perf_counter()
    ref, cached = reference_logits(spec, inputs.host[0], reference_cache)
    log("fp32 reference " + ("read from the cache" if cached else "computed"))
    return Accuracy(**compare_logits(out, ref), reference_device=spec.cell.device, reference_s=time.perf_counter() - t0)
