"""Realistic synthetic summaries that conform to `schema.SHARD_SCHEMA`.

Tests for tables, figures, report, archive and compare build their input here, so
they run in seconds without torch or a GPU. Timing columns are derived from drawn
per-iteration latencies exactly as a real cell would derive them, so noise-aware
code sees consistent medians, CIs and cvs.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from inferbench.records import schema

MODEL = "resnet50"
BACKENDS = ("pytorch", "torchscript", "onnxruntime", "torch_tensorrt", "torch_compile")
PRECISIONS = ("fp32", "fp16", "bf16")

# Relative speed per image (lower is faster): roughly the shape of real H200 numbers.
BACKEND_COST = {"pytorch": 1.0, "torchscript": 0.9, "onnxruntime": 0.95, "torch_tensorrt": 0.5, "torch_compile": 0.7}
PRECISION_COST = {"fp32": 1.0, "fp16": 0.55, "bf16": 0.6}
GPU_IMAGE_MS_224 = 0.05  # fp32 eager resnet50 per image at 224 px, saturated
CPU_IMAGE_MS_224 = 8.0
LAUNCH_MS = {"cuda": 1.5, "cpu": 2.0}
HOST_COPY_FACTOR = 1.35  # io=host adds the copies to the timed window
GPU_MEMORY_LIMIT_MB = 15_000.0  # a small card, so the largest pytorch fp32 cell runs out

SKIP_REASONS = {
    "torch_tensorrt": "torch_tensorrt not importable: TensorRT libraries are not installed",
    "cpu_half": "fp16/bf16 on cpu is not a supported configuration",
    "onnxruntime_bf16": "onnxruntime CUDA execution provider has no bf16 Conv kernel",
}
ERROR_REASON = "InductorError: bf16 convolution lowering failed (synthetic)"


def _stats_from_latencies(lat_ms: np.ndarray, batch_size: int, rounds: int = 3) -> dict:
    """The timing columns a real cell derives from its iterations, timed in `rounds` rounds."""
    from inferbench.measure.stats import summarize

    lat = [float(x) for x in lat_ms]
    cuts = np.array_split(np.arange(len(lat)), rounds)
    out = summarize(lat, batch_size, [[lat[i] for i in idx] for idx in cuts if len(idx)])
    return dict(out, timed_s=sum(lat) / 1000.0, latencies_ms=lat)


def _outcome(backend: str, precision: str, device: str) -> tuple[str, str]:
    if backend == "torch_tensorrt":
        return "skipped", SKIP_REASONS["torch_tensorrt"]
    if device == "cpu" and precision != "fp32":
        return "skipped", SKIP_REASONS["cpu_half"]
    if backend == "onnxruntime" and precision == "bf16":
        return "skipped", SKIP_REASONS["onnxruntime_bf16"]
    if backend == "torch_compile" and precision == "bf16":
        return "error", ERROR_REASON
    return "ok", ""


def _environment(run_id: str) -> dict:
    return {
        "run_id": run_id,
        "timestamp_utc": "2026-11-28T12:00:00Z",
        "hostname": "h200-node-1",
        "cpu_model": "Intel Xeon Platinum 8480+",
        "num_threads": 16,
        "python_version": "3.12.3",
        "torch_version": "2.11.0+cu130",
        "torchvision_version": "0.26.0",
        "onnx_version": "1.19.0",
        "onnxruntime_version": "1.31.1",
        "inferbench_version": "0.1.0",
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "config_sha256": "f" * 64,
        "container_image": "ghcr.io/example/inferbench:0.1.0",
        "gpu_name": "NVIDIA H200",
        "gpu_uuid": "GPU-00000000-1111-2222-3333-444444444444",
        "gpu_index": 0,
        "driver_version": "580.65.06",
        "cuda_version": "13.0",
        "cudnn_version": "91200",
        "torch_tensorrt_version": None,
        "tensorrt_version": None,
        "seed": 0,
        "weights": "random",
        "measurement": json.dumps({"n_warmup": 10, "n_iters": 50, "timer": "cuda_event"}),
    }


def _cell_row(rng, key: dict, run_id: str, n_iters: int, noisy: bool, jitter_rel: float) -> dict:
    row = schema.empty_row()
    row.update(key)
    row.update(_environment(run_id))
    backend, precision, device = key["backend"], key["precision"], key["device"]
    bs, res = key["batch_size"], key["resolution"]
    row["backend_options"] = json.dumps({"channels_last": True})
    row["status"], row["reason"] = _outcome(backend, precision, device)
    row["timer"] = "cuda_event" if device == "cuda" else "perf_counter"
    row["n_warmup"] = 10
    if device == "cpu":
        row["gpu_name"] = None
    pixels_rel = (res / 224.0) ** 2
    activation_mb = 0.012 * bs * res * res / 1000.0 * PRECISION_COST[precision] * 100
    gpu_mem_mb = 400.0 + activation_mb * (1.0 if backend != "pytorch" else 1.6)
    if device == "cuda" and row["status"] == "ok" and gpu_mem_mb > GPU_MEMORY_LIMIT_MB:
        row["status"], row["reason"] = "oom", f"CUDA out of memory: tried to allocate {gpu_mem_mb:.0f} MB"
    if row["status"] != "ok":
        return row
    per_image_ms = (GPU_IMAGE_MS_224 if device == "cuda" else CPU_IMAGE_MS_224) * pixels_rel
    per_image_ms *= BACKEND_COST[backend] * PRECISION_COST[precision]
    median_ms = LAUNCH_MS[device] + bs * per_image_ms
    if key["io"] == "host":
        median_ms *= HOST_COPY_FACTOR
    median_ms *= 1.0 + rng.normal(0.0, jitter_rel)  # run-to-run drift
    cv = 0.15 if noisy else 0.01
    lat = median_ms * rng.lognormal(0.0, cv, size=n_iters)
    row.update(_stats_from_latencies(lat, bs))
    row["load_s"] = 1.2
    row["compile_s"] = 20.0 if backend == "torch_compile" else 0.0
    row["first_run_ms"] = median_ms * 40
    # the job's phases (per cell, except warmup_s); job_wall_s leaves 1 s of "other"
    row.update(gpu_wait_s=0.0 if device == "cuda" else None, worker_start_s=0.3, setup_s=0.8,
               warmup_s=0.2, reference_s=0.5)
    row["job_wall_s"] = 0.3 + 0.8 + row["load_s"] + 2 * (0.2 + 1.0) + 0.5 + 1.0  # two io modes of <= 1 s
    row["export_s"] = 3.0 if backend in ("onnxruntime", "torchscript") else None
    row["host_rss_peak_mb"] = 2500.0 + 0.2 * activation_mb
    row["gpu_mem_peak_mb"] = gpu_mem_mb if device == "cuda" else None
    row["torch_alloc_peak_mb"] = gpu_mem_mb * 0.8 if device == "cuda" and backend != "onnxruntime" else None
    if device == "cuda":
        row["power_w_mean"] = 450.0 * PRECISION_COST[precision] ** 0.3
        row["energy_j_per_image"] = row["power_w_mean"] / row["throughput_ips"]
        row["sm_clock_mhz_start"], row["sm_clock_mhz_end"] = 1980.0, 1965.0
        row["gpu_temp_c_start"], row["gpu_temp_c_end"] = 41.0, 55.0
        row["throttle_reasons_start"] = row["throttle_reasons_end"] = "none"
        # batch 1 at the small resolution cannot keep a GPU busy: the host launches too slowly
        row["gpu_busy_pct"] = 62.0 if (key["batch_size"], key["resolution"]) == (1, 224) else 99.0
    half = precision != "fp32"
    row["max_abs_err"] = 0.0 if (backend, precision) == ("pytorch", "fp32") else (2e-2 if half else 3e-5)
    row["mean_abs_err"] = row["max_abs_err"] / 10
    row["top1_agreement"] = 1.0 if not half else (0.98 if precision == "bf16" else 0.995)
    row["reference_device"] = device
    return row


def cell_keys(resolutions=(224, 384), batch_sizes=(1, 8, 64), devices=("cuda", "cpu"), io_modes=("device",)):
    """Every cell of a sweep, in a stable order."""
    keys = []
    for device in devices:
        for backend in BACKENDS:
            for precision in PRECISIONS:
                for io in io_modes:
                    for res in resolutions:
                        for bs in batch_sizes:
                            keys.append(dict(model=MODEL, backend=backend, precision=precision, device=device,
                                             io=io, resolution=res, batch_size=bs))
    return keys


def synthetic_summary(seed: int = 0, run_id: str = "run-a", n_iters: int = 50, jitter_rel: float = 0.005,
                      noisy_cells: int = 1, **sweep) -> pd.DataFrame:
    """A summary with ok, skipped, oom, error and noisy cells; same seed -> same frame."""
    rng = np.random.default_rng(seed)
    rows = []
    noisy_left = noisy_cells
    for key in cell_keys(**sweep):
        is_noisy = noisy_left > 0 and key["backend"] == "torchscript" and key["precision"] == "fp32" \
            and key["device"] == "cuda" and key["batch_size"] == 1
        noisy_left -= int(is_noisy)
        rows.append(_cell_row(rng, key, run_id, n_iters, is_noisy, jitter_rel))
    return conform(pd.DataFrame(rows, columns=schema.COLUMN_NAMES))


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Round-trip through Arrow with SHARD_SCHEMA, so dtypes match a real summary."""
    table = pa.Table.from_pandas(df[schema.COLUMN_NAMES], schema=schema.SHARD_SCHEMA, preserve_index=False)
    return table.to_pandas()


def write_summary(df: pd.DataFrame, path) -> None:
    table = pa.Table.from_pandas(df[schema.COLUMN_NAMES], schema=schema.SHARD_SCHEMA, preserve_index=False)
    import pyarrow.parquet as pq

    pq.write_table(table, path)


# The columns of a cell's timing that are times (latency order statistics and their spread)
LATENCY_COLUMNS = ("latency_ms_mean", "latency_ms_median", "latency_ms_p90", "latency_ms_p99", "latency_ms_min",
                   "latency_ms_max", "latency_ms_std", "latency_ms_median_ci95_low", "latency_ms_median_ci95_high",
                   "timed_s")


def slowed(df: pd.DataFrame, factor: float, mask=None) -> pd.DataFrame:
    """Every ok cell (or those in `mask`) with every latency multiplied by `factor`: each time
    column scaled by it, each throughput (the rounds' and their median) divided by it; the relative
    figures (cv, the rounds' spread) stay. Scaled, not recomputed: a real cell's rounds need not
    be equal thirds of its iterations, so recomputing them would change more than the factor."""
    out = df.copy()
    mask = (out["status"] == "ok") if mask is None else (mask & (out["status"] == "ok"))
    for idx in out.index[mask]:
        out.at[idx, "latencies_ms"] = [float(x) * factor for x in out.at[idx, "latencies_ms"]]
        for col in LATENCY_COLUMNS:
            out.at[idx, col] = float(out.at[idx, col]) * factor
        out.at[idx, "throughput_ips"] = float(out.at[idx, "throughput_ips"]) / factor
        out.at[idx, "round_ips"] = [float(x) / factor for x in out.at[idx, "round_ips"]]
    return conform(out)


# A GPU's measured ceilings (TFLOP/s, dense matrix products) and the model's work at 224 px, of the
# order of an H200's and a small CNN's, so that every synthetic GPU cell lies below its ceiling
CEILINGS_TFLOPS = {"fp32": 60.0, "fp16": 800.0, "bf16": 780.0}
GFLOP_PER_IMAGE_224 = 1.0


def with_efficiency(df: pd.DataFrame, ceilings: dict | None = CEILINGS_TFLOPS) -> pd.DataFrame:
    """The summary with the work and ceiling columns the aggregation joins (inferbench.records.
    efficiency), from a model_work record (FLOPs growing with the pixels) and a gpu_peak record of
    the synthetic GPU; ceilings=None: a CPU-only run's record, with no GPU."""
    from inferbench.records import efficiency

    env = _environment("")
    resolutions = sorted(int(r) for r in df["resolution"].unique())
    work = {"params_m": 11.7, "gflop_per_image": {str(r): GFLOP_PER_IMAGE_224 * (r / 224) ** 2 for r in resolutions}}
    gpus = [{"gpu_index": env["gpu_index"], "gpu_name": env["gpu_name"], "tflops": ceilings}] if ceilings else []
    peak = {"hostname": env["hostname"], "gpus": gpus}
    return efficiency.add_columns(pa.Table.from_pandas(df, preserve_index=False), work, peak).to_pandas()
