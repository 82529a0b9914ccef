"""Measure one cell in this process: load the backend, time every io mode, check accuracy.

Order matters for honest numbers:
  1. NVML's baseline is read before this process creates a CUDA context;
  2. load (and compile) outside any timed window, recorded as load_s / compile_s;
  3. per io mode: warm-up, then the adaptive timed loop, with the energy counter read around it;
  4. memory peaks are read before the fp32 reference model exists (it would inflate them);
  5. accuracy: the backend's output on buffer 0 against fp32 eager PyTorch on the same input
     (inferbench.measure.reference: computed once per input and shared by the cells that use it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
import time
import traceback

from inferbench.backends import load_backend
from inferbench.backends.base import LoadContext, Skip, options_json, torch_dtype
from inferbench.measure.reference import reference_logits
from inferbench.measure.telemetry.host import reset_rss_peak, rss_peak_mb
from inferbench.measure.timing import CudaEventTimer, PerfCounterTimer, Settings, measure
from inferbench.process.isolation import LAUNCHED_AT_ENV
from inferbench.process.warm import cells_before, in_warm_worker
from inferbench.sweep.spec import CellSpec


_T0 = time.monotonic()


def log(msg: str) -> None:
    # seconds since this worker started: shows where a cell's time goes (imports, load, timing)
    print(f"[inferbench cell +{time.monotonic() - _T0:6.2f}s] {msg}", file=sys.stderr, flush=True)


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "outofmemory" in text.replace(" ", "") or "out of memory" in text or "failed to allocate memory" in text


def describe(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


class GpuTelemetry:
    """NVML readings for the cell, or nothing at all where NVML is unusable (recorded as nulls)."""

    def __init__(self):
        from inferbench.measure.telemetry.gpu import GpuSampler, NvmlReader

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

    def spin_up(self) -> float:
        """Bring the SM clock up (see inferbench.measure.gpu_clock); seconds spent."""
        from inferbench.measure.gpu_clock import spin_up

        if not self.reader:
            return spin_up(lambda: None, None)
        return spin_up(self.reader.sm_clock_mhz, self.reader.max_sm_clock_mhz())

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


def make_inputs(spec: CellSpec, dtype, device: str, count: int):
    """Random batches drawn from the seed: (host batches, batches on the device).

    On the CPU from the CPU generator (identical on every machine). On a GPU from the GPU's
    generator, then copied to pinned host memory for io=host: four fp32 batches of 64 x 512 px
    from the CPU generator took ~1.1 s of every such cell on the H200 host. Those values depend on
    the GPU model and torch release; the accuracy reference is computed from the same batch.
    """
    import torch

    c = spec.cell
    shape = (c.batch_size, 3, c.resolution, c.resolution)
    if device == "cuda":
        gen = torch.Generator(device="cuda").manual_seed(spec.seed)
        # drawn in the cell's dtype: no fp32 temporary to inflate the memory peaks
        on_device = [torch.randn(shape, generator=gen, device="cuda", dtype=dtype) for _ in range(count)]
        host = [torch.empty(shape, dtype=dtype, pin_memory=True) for _ in range(count)]
        for h, d in zip(host, on_device):
            h.copy_(d)
        torch.cuda.synchronize()
        return host, on_device
    gen = torch.Generator().manual_seed(spec.seed)
    host = [torch.randn(shape, generator=gen).to(dtype) for _ in range(count)]
    return host, host


def accuracy(out, ref) -> dict:
    out = out.float().cpu()
    diff = (out - ref).abs()
    return {"max_abs_err": float(diff.max()), "mean_abs_err": float(diff.mean()),
            "top1_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean())}


def run_cell(spec: CellSpec, artifact: dict | None, base_row: dict, reference_cache: str | None = None) -> list[dict]:
    """Returns one row per io mode. Never raises for a cell-level failure: it becomes the status.
    reference_cache: a folder where the fp32 reference logits are shared between cells."""
    global _T0
    _T0 = time.monotonic()  # the log's clock: per cell, also in a warm worker
    c = spec.cell
    backend = load_backend(c.backend)
    options = backend.parse_options(spec.options)
    threads = spec.measurement.get("cpu_threads") or default_threads()
    warm = in_warm_worker()
    # In a warm worker the process-wide host peak must restart with the cell, or it is unknown.
    rss_peak_known = reset_rss_peak() if warm else True
    base_row = dict(base_row, backend_options=options_json(options), num_threads=threads,
                    export_s=(artifact or {}).get("export_s"),
                    gpu_worker="warm" if warm else "fresh", worker_cells_before=cells_before() if warm else 0)
    rows = {io: dict(base_row, io=io) for io in spec.io_modes}

    def finish(status: str, reason: str) -> list[dict]:
        for r in rows.values():
            if r.get("status") is None:
                r.update(status=status, reason=reason)
        return list(rows.values())

    telemetry = GpuTelemetry() if c.device == "cuda" else None
    stack = contextlib.ExitStack()
    try:
        import torch

        log(f"torch {torch.__version__} imported")
        # The worker's start ends here: a fresh process has imported torch, a forked one had it.
        entered = time.perf_counter()
        launched_at = os.environ.get(LAUNCHED_AT_ENV)
        if launched_at:
            for r in rows.values():
                r["worker_start_s"] = max(0.0, time.time() - float(launched_at))
        torch.set_num_threads(threads)
        if c.device == "cuda":
            if not torch.cuda.is_available():
                raise Skip("no CUDA device")
            from inferbench.records.environment import torch_cuda_environment

            base_env = dict(torch_cuda_environment(), **{k: v for k, v in telemetry.info().items() if k != "cuda_driver_version"})
            base_env["gpu_index"] = nvml_index_for_visible_gpu()
            base_env["gpu_name"] = base_env.get("gpu_name") or torch.cuda.get_device_name(0)
            # One side stream for the whole cell: every backend (ORT included, see its
            # user_compute_stream) and every copy runs on it, and the CUDA events are recorded on it.
            stack.enter_context(torch.cuda.stream(cell_stream()))
            for r in rows.values():
                r.update(base_env)
        dtype = torch_dtype(c.precision)
        host_inputs, device_inputs = make_inputs(spec, dtype, c.device, spec.measurement.get("num_buffers", 4))

        if telemetry:
            telemetry.start()
        start_state = telemetry.state() if telemetry else {}
        spinup_s = telemetry.spin_up() if telemetry else 0.0  # compilers autotune during load too
        log(f"loading {c.backend} ({options_json(options)})")
        t0 = time.perf_counter()
        for r in rows.values():
            r["setup_s"] = t0 - entered - spinup_s
        runner = backend.load(LoadContext(cell=c, options=options, artifact_path=(artifact or {}).get("artifact_path"),
                                          threads=threads, build_model=lambda: _build(spec)))
        load_s = time.perf_counter() - t0
        facts = dict(json.loads(options_json(options)), **runner.facts)
        for r in rows.values():
            r.update(load_s=load_s, compile_s=runner.compile_s, backend_options=json.dumps(facts, sort_keys=True))
        log(f"loaded in {load_s:.2f} s" + (f" (compile {runner.compile_s:.2f} s)" if runner.compile_s else ""))

        timer = CudaEventTimer() if c.device == "cuda" else PerfCounterTimer()
        prepared = [runner.prepare(x) for x in device_inputs]
        if telemetry:  # loading may have left the GPU idle long enough to clock down
            spinup_s += telemetry.spin_up()
        first_run_ms = timer.time_ms(lambda: runner.run(prepared[0]))
        settings = Settings.from_config(spec.measurement)
        warmed = False
        for io in spec.io_modes:
            try:
                if telemetry:
                    spinup_s += telemetry.spin_up()
                # warmup_min_s is there for what a cell warms once: autotuners, lazy set-up, the
                # allocator, the clock. Once one io mode has warmed up and been timed without
                # error, the next has only its own path to warm (for io=host, the copies between
                # pinned and device buffers): its warmup_iters calls, without the time floor.
                mode_settings = dataclasses.replace(settings, warmup_min_s=0.0) if warmed else settings
                _measure_io(io, rows[io], runner, prepared, host_inputs, device_inputs, timer, mode_settings,
                            telemetry, spec)
                rows[io]["first_run_ms"] = first_run_ms
                warmed = True
            except Exception as exc:  # one io mode failing keeps the other's figures
                if isinstance(exc, Skip):
                    raise
                log(traceback.format_exc())
                rows[io].update(status="oom" if is_oom(exc) else "error", reason=describe(exc))

        # Peaks now, before the reference model adds its own memory.
        end_state = telemetry.state() if telemetry else {}
        if telemetry:
            telemetry.stop()
        memory = {"host_rss_peak_mb": rss_peak_mb() if rss_peak_known else None}
        if telemetry and telemetry.sampler:
            memory["gpu_mem_peak_mb"], method = telemetry.sampler.trace.peak()
            memory["gpu_mem_start_mb"] = telemetry.sampler.trace.start()
            log(f"GPU memory peak {memory['gpu_mem_peak_mb']} MiB ({method}; {memory['gpu_mem_start_mb']} MiB at the start)")
        if c.device == "cuda":
            memory["torch_alloc_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        for r in rows.values():
            r.update(memory, clock_spinup_s=spinup_s if telemetry else None)
            r.update(sm_clock_mhz_start=start_state.get("sm_clock_mhz"), sm_clock_mhz_end=end_state.get("sm_clock_mhz"),
                     gpu_temp_c_start=start_state.get("temp_c"), gpu_temp_c_end=end_state.get("temp_c"),
                     throttle_reasons_start=start_state.get("throttle_reasons"),
                     throttle_reasons_end=end_state.get("throttle_reasons"))

        out = runner.run(prepared[0])
        if c.device == "cuda":
            torch.cuda.synchronize()
        out = out.float().cpu().clone()
        runner.close()
        runner = prepared = None  # free the backend before the reference model is built
        log("accuracy check against fp32 eager PyTorch")
        t0 = time.perf_counter()
        ref, cached = reference_logits(spec, host_inputs[0], reference_cache)
        log("fp32 reference " + ("read from the cache" if cached else "computed"))
        acc = dict(accuracy(out, ref), reference_device=c.device, reference_s=time.perf_counter() - t0)
        for r in rows.values():
            r.update(acc)
        log("done")
        return finish("ok", "")
    except Skip as exc:
        return finish("skipped", str(exc))
    except Exception as exc:
        log(traceback.format_exc())
        return finish("oom" if is_oom(exc) else "error", describe(exc))
    finally:
        stack.close()
        if telemetry:
            telemetry.stop()


def _build(spec: CellSpec):
    from inferbench.sweep.models import build_model

    return build_model(spec.cell.model, spec.weights, spec.seed)


def _measure_io(io, row, runner, prepared, host_inputs, device_inputs, timer, settings, telemetry, spec):
    """Time one io mode and fill its row."""
    from inferbench.measure.stats import summarize
    from inferbench.measure.telemetry.gpu import busy_in_window, energy_window, mean_in_window

    c = spec.cell
    if io == "device" or c.device == "cpu":
        step_index = [0]

        def step():
            i = step_index[0] = (step_index[0] + 1) % len(prepared)
            runner.run(prepared[i])
    else:
        import torch

        # io=host: a pinned host batch is copied in, the model runs, the output is copied back
        # to pinned host memory, all inside the timed window: what a service pays per request.
        staged = runner.prepare(device_inputs[0].clone())
        staging = runner.staging_tensor(staged)
        probe = runner.run(staged)
        host_out = torch.empty(probe.shape, dtype=probe.dtype, pin_memory=True)
        step_index = [0]

        def step():
            i = step_index[0] = (step_index[0] + 1) % len(host_inputs)
            staging.copy_(host_inputs[i], non_blocking=True)
            host_out.copy_(runner.run(staged), non_blocking=True)

    log(f"io={io}: warm-up and timing (min {settings.min_iters} iterations, {settings.min_time_s} s)")
    energy_start = telemetry.energy_mj() if telemetry else None
    sampler = telemetry.sampler if telemetry else None
    power_before = len(sampler.power_w) if sampler else 0
    host = {}

    def read_host_speed():
        if c.device == "cuda":
            from inferbench.measure.gpu_clock import launch_us

            host["host_launch_us"] = launch_us()

    m = measure(step, timer, settings, progress=log, before_window=read_host_speed)
    window_end = time.monotonic()
    energy_end = telemetry.energy_mj() if telemetry else None
    stats = summarize(m.latencies_ms, c.batch_size, m.round_latencies())
    power = sampler.power_w[power_before:] if sampler else None
    busy = busy_in_window(sampler.busy_pct, window_end - m.timed_s, window_end) if sampler else None
    clock = mean_in_window(sampler.sm_clock_mhz, window_end - m.timed_s, window_end) if sampler else None
    images = len(m.latencies_ms) * c.batch_size
    j_per_image, watts = energy_window(energy_start, energy_end, m.timed_s, images, power) if telemetry else (None, None)
    row.update(stats, timer=timer.name, n_warmup=m.n_warmup, warmup_s=m.warmup_s, timed_s=m.timed_s, latencies_ms=m.latencies_ms,
               energy_j_per_image=j_per_image, power_w_mean=watts, gpu_busy_pct=busy, sm_clock_mhz_mean=clock,
               host_launch_us=host.get("host_launch_us"),
               # the settings in force for this row: a later io mode warms up without the time floor
               measurement=json.dumps(dict(spec.measurement, warmup_min_s=settings.warmup_min_s, stopped_by=m.stopped_by),
                                      sort_keys=True))
    log(f"io={io}: {stats['n_iters']} iterations in {m.timed_s:.2f} s, median {stats['latency_ms_median']:.3f} ms, "
        f"p99 {stats['latency_ms_p99']:.3f} ms, cv {stats['latency_cv']:.3f}, {stats['throughput_ips']:.1f} images/s "
        f"(median of {len(stats['round_ips'])} rounds, spread {stats['ips_spread_pct']:.1f}%)"
        + (f", GPU busy {busy:.0f}%" if busy is not None else "")
        + (f", SM clock {clock:.0f} MHz" if clock is not None else "")
        + (f", host launch {host['host_launch_us']:.1f} us" if "host_launch_us" in host else ""))
