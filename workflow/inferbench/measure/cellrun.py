"""Measure one cell in this process: its phases (inferbench.measure.phases) in order, its rows
built from what they found (inferbench.measure.rows).

Order matters for honest numbers:
  1. NVML's baseline is read before this process creates a CUDA context;
  2. load (and compile) outside any timed window, recorded as load_s / compile_s;
  3. the first call, cold, timed on its own;
  4. per io mode: warm-up, then the adaptive timed loop; the energy counter is read at its
     first update before the window and its first after (inferbench.measure.energy);
  5. memory peaks are read before the fp32 reference model exists (it would inflate them);
  6. accuracy: the backend's output on buffer 0 against fp32 eager PyTorch on the same input
     (inferbench.measure.reference: computed once per input and shared by the cells that use it);
     outputs beyond the precision's tolerance (inferbench.measure.tolerance) make the cell
     `inaccurate`: its figures are kept, but they are not a measurement of this model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback

from inferbench.backends import load_backend
from inferbench.backends.base import options_json
from inferbench.errors import OOM_PHRASES, Skip, is_no_space
from inferbench.measure.celllog import log
from inferbench.measure.phases import (TimingContext, begin_worker, check_accuracy, draw_inputs, first_call, load_runner,
                                       read_peaks, setup_device, start_telemetry, time_io_mode, worker_started)
from inferbench.measure.rows import CellRows
from inferbench.measure.telemetry.cellgpu import GpuTelemetry
from inferbench.measure.timing import Settings
from inferbench.measure.tolerance import arithmetic, disagreement
from inferbench.sweep.spec import CellSpec


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    return "outofmemory" in text.replace(" ", "") or any(phrase in text for phrase in OOM_PHRASES)


def describe(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def failure(exc: BaseException) -> tuple[str, str]:
    """(status, reason) of a cell or io mode that raised. A full disk is none: it goes on up (to
    inferbench.cli), and the cell, recorded nowhere, is measured by the next run."""
    if is_no_space(exc):
        raise exc
    log(traceback.format_exc())
    return ("oom" if is_oom(exc) else "error"), describe(exc)


def run_cell(spec: CellSpec, artifact: dict | None, base_row: dict, reference_cache: str | None = None) -> list[dict]:
    """Returns one row per io mode. Never raises for a cell-level failure: it becomes the status.
    reference_cache: a folder where the fp32 reference logits are shared between cells."""
    log.restart()
    c = spec.cell
    backend = load_backend(spec.impl)
    options = backend.parse_options(spec.options)
    worker = begin_worker(spec)
    rows = CellRows(base_row, list(spec.io_modes), worker, options_json(options), (artifact or {}).get("export_s"))
    telemetry = GpuTelemetry() if c.device == "cuda" else None
    stack = contextlib.ExitStack()
    try:
        rows.started = worker_started()
        rows.device = setup = setup_device(spec, worker.threads, telemetry, stack)
        inputs = draw_inputs(spec, setup)
        gpu_start = start_telemetry(telemetry)
        log(f"loading {c.backend} ({options_json(options)})")
        rows.setup_s = time.perf_counter() - rows.started.at - gpu_start.spinup_s
        rows.load = loaded = load_runner(spec, backend, options, (artifact or {}).get("artifact_path"),
                                         worker.threads, inputs)
        rows.first_run_ms = first_call(loaded, setup, telemetry)
        settings = Settings.from_config(spec.measurement)
        timing = TimingContext(spec=spec, loaded=loaded, inputs=inputs, setup=setup, telemetry=telemetry)
        warmed = False
        for io in spec.io_modes:
            try:
                # warmup_min_s is there for what a cell warms once: autotuners, lazy set-up, the
                # allocator, the clock. Once one io mode has warmed up and been timed without
                # error, the next has only its own path to warm (for io=host, the copies between
                # pinned and device buffers): its warmup_iters calls, without the time floor.
                mode_settings = dataclasses.replace(settings, warmup_min_s=0.0) if warmed else settings
                rows.timings[io] = time_io_mode(timing, io, mode_settings)
                warmed = True
            except Skip:
                raise
            except Exception as exc:  # one io mode failing keeps the other's figures
                rows.fail_io(io, *failure(exc))
        rows.peaks = read_peaks(c.device, worker, telemetry, gpu_start)
        rows.accuracy = a = check_accuracy(spec, loaded, inputs, reference_cache)
        arith = arithmetic(c.precision, bool(getattr(options, "tf32", False)))
        wrong = disagreement(arith, a.max_abs_err, a.top1_agreement, a.reference_scale)
        log(wrong or "done")
        return rows.rows("inaccurate", wrong) if wrong else rows.rows("ok", "")
    except Skip as exc:
        return rows.rows("skipped", str(exc))
    except Exception as exc:
        return rows.rows(*failure(exc))
    finally:
        stack.close()
        if telemetry:
            telemetry.stop()
