"""The shard schema: one row per benchmark cell, defined once.

The writer (`shard.write_shard`) and every reader (aggregation, report, archive,
compare) use these definitions. Later work may add columns; it never renames them.
Units are in the names (`_ms`, `_mb`, `_s`, `_ips`, `_j`, `_w`, `_mhz`, `_c`).
"""

from __future__ import annotations

import pyarrow as pa

IDENTITY = [
    ("model", pa.string()),
    ("backend", pa.string()),
    ("precision", pa.string()),
    ("device", pa.string()),
    ("resolution", pa.int32()),
    ("batch_size", pa.int32()),
    # "device": the input is already where the model runs when the clock starts;
    # "host": a (pinned) host batch is copied in and the output copied back inside the timed window.
    ("io", pa.string()),
    ("backend_options", pa.string()),  # JSON text of every choice the backend made
    # The backend a variant runs; `backend` is the variant's name (config `backends:` key). Null
    # in shards written before variants existed: there it equals `backend` (see with_backend_impl).
    ("backend_impl", pa.string()),
]

OUTCOME = [
    # ok | inaccurate (measured, but its outputs disagree with the fp32 reference beyond its
    # precision's tolerance: inferbench.measure.tolerance) | skipped | oom | error
    ("status", pa.string()),
    ("reason", pa.string()),  # human text; empty when ok
]

TIMING = [
    ("timer", pa.string()),  # perf_counter | cuda_event
    ("n_warmup", pa.int32()),
    ("n_iters", pa.int32()),
    ("latency_ms_mean", pa.float64()),
    ("latency_ms_median", pa.float64()),
    ("latency_ms_p90", pa.float64()),
    ("latency_ms_p99", pa.float64()),
    ("latency_ms_min", pa.float64()),
    ("latency_ms_max", pa.float64()),
    ("latency_ms_std", pa.float64()),
    ("latency_cv", pa.float64()),  # std / mean: the cell's own noise
    ("latency_ms_median_ci95_low", pa.float64()),  # bootstrap-free order-statistic CI of the median
    ("latency_ms_median_ci95_high", pa.float64()),
    ("throughput_ips", pa.float64()),  # images per second: the median of the rounds' throughputs
    ("round_ips", pa.list_(pa.float64())),  # each round's throughput, from its own median latency
    ("ips_spread_pct", pa.float64()),  # max over min of round_ips, minus 1, in percent
    ("timed_s", pa.float64()),  # wall time of the timed window
    ("latencies_ms", pa.list_(pa.float64())),  # every timed iteration
]

COSTS = [
    ("export_s", pa.float64()),  # time to make the artifact (export rule), null when none
    ("load_s", pa.float64()),  # load/prepare the artifact or model in the cell
    ("compile_s", pa.float64()),  # ahead-of-time or JIT compilation, never timed
    ("first_run_ms", pa.float64()),  # the first call, cold
    # running the GPU flat out until its SM clock was up, before loading and before the first call
    # (cuDNN's autotuner times its candidates there: at an idling clock it picks wrong)
    ("clock_spinup_s", pa.float64()),
    # Where a cell's wall time goes (see inferbench.reporting.timebudget). Per cell, equal on its io rows,
    # except warmup_s, which is per io mode like timed_s.
    ("job_wall_s", pa.float64()),  # the cell's job, from its process start to its shard
    ("gpu_wait_s", pa.float64()),  # waiting for a free GPU (another job held it)
    ("worker_start_s", pa.float64()),  # starting the isolated worker: fork or new process, imports
    ("setup_s", pa.float64()),  # in the worker before loading: CUDA context, telemetry, inputs
    ("warmup_s", pa.float64()),  # this io mode's warm-up iterations
    ("reference_s", pa.float64()),  # the fp32 reference run for the accuracy check
    # fresh: a fresh process; warm: the GPU's warm worker (inferbench.process.warm), which had run
    # worker_cells_before cells before this one
    ("gpu_worker", pa.string()),
    ("worker_cells_before", pa.int32()),
]

MEMORY = [
    ("host_rss_peak_mb", pa.float64()),
    ("gpu_mem_peak_mb", pa.float64()),  # process GPU memory from NVML: sees every framework
    # the process's GPU memory when the cell's sampling began (context, inputs; in a warm worker
    # also what earlier cells left loaded)
    ("gpu_mem_start_mb", pa.float64()),
    ("torch_alloc_peak_mb", pa.float64()),  # PyTorch caching allocator peak, where it applies
]

ENERGY = [
    ("energy_j_per_image", pa.float64()),
    ("power_w_mean", pa.float64()),
    ("gpu_busy_pct", pa.float64()),  # NVML utilisation over the io mode: below ~90, the host sets the pace
    ("sm_clock_mhz_mean", pa.float64()),  # NVML SM clock, mean over the io mode's timed window
    # the host's speed just before the timed window: its cost of launching one small kernel
    ("host_launch_us", pa.float64()),
    # GPU io modes: the host's time to issue one call (until it returns, before the wait), median
    # over the timed calls, and host_bound: at least 0.8 x the median CUDA-event time
    # (inferbench.measure.hostbound). Null, with enqueue_note saying why, where the call waits for
    # the GPU before it returns, and on the CPU.
    ("enqueue_ms_median", pa.float64()),
    ("host_bound", pa.bool_()),
    ("enqueue_note", pa.string()),
    # percent of the machine's CPU time that other processes used during the io mode
    # (inferbench.measure.contention): a contended cell moves with the other work
    ("host_other_cpu_pct", pa.float64()),
    # GPU cells: the CPU the launching thread was pinned to, for the warm-up and each round (the
    # host's fastest then: inferbench.measure.hostcpu), and how uneven the host's CPUs were at the
    # first scan (slowest over fastest; 1.0: all alike). Null where nothing was pinned.
    ("host_cpus", pa.string()),
    ("host_cpu_speed_ratio", pa.float64()),
    ("sm_clock_mhz_start", pa.float64()),
    ("sm_clock_mhz_end", pa.float64()),
    ("gpu_temp_c_start", pa.float64()),
    ("gpu_temp_c_end", pa.float64()),
    ("throttle_reasons_start", pa.string()),
    ("throttle_reasons_end", pa.string()),
]

ACCURACY = [
    ("max_abs_err", pa.float64()),  # against the fp32 pytorch output on the same input
    ("mean_abs_err", pa.float64()),
    ("top1_agreement", pa.float64()),  # fraction of images whose argmax matches the reference
    ("reference_device", pa.string()),
]

ENVIRONMENT = [
    ("run_id", pa.string()),
    ("timestamp_utc", pa.string()),
    ("hostname", pa.string()),
    ("cpu_model", pa.string()),
    ("num_threads", pa.int32()),
    ("python_version", pa.string()),
    ("torch_version", pa.string()),
    ("torchvision_version", pa.string()),
    ("onnx_version", pa.string()),
    ("onnxruntime_version", pa.string()),
    ("inferbench_version", pa.string()),
    ("git_commit", pa.string()),
    ("config_sha256", pa.string()),
    ("container_image", pa.string()),
    ("gpu_name", pa.string()),
    # The GPU the cell ran on: NVML's UUID (one GPU across hosts and runs: the report's per-GPU busy
    # spans group by it) and its NVML index on its host. Null on the CPU.
    ("gpu_uuid", pa.string()),
    ("gpu_index", pa.int32()),
    ("driver_version", pa.string()),
    ("cuda_version", pa.string()),
    ("cudnn_version", pa.string()),
    ("torch_tensorrt_version", pa.string()),
    ("tensorrt_version", pa.string()),
    ("seed", pa.int64()),
    ("weights", pa.string()),
    ("measurement", pa.string()),  # JSON text of the measurement settings in force
]

COLUMNS = IDENTITY + OUTCOME + TIMING + COSTS + MEMORY + ENERGY + ACCURACY + ENVIRONMENT
SHARD_SCHEMA = pa.schema([pa.field(name, typ) for name, typ in COLUMNS])
COLUMN_NAMES = [name for name, _ in COLUMNS]

# The columns that identify a cell: two rows with equal keys measured the same thing.
CELL_KEY = ["model", "backend", "precision", "device", "io", "resolution", "batch_size"]

STATUSES = ("ok", "inaccurate", "skipped", "oom", "error")


def with_backend_impl(table: pa.Table) -> pa.Table:
    """Fill a null `backend_impl` with `backend`: a row that names none ran its own backend."""
    import pyarrow.compute as pc

    i = table.schema.get_field_index("backend_impl")
    filled = pc.coalesce(table.column("backend_impl"), table.column("backend"))
    return table.set_column(i, table.schema.field(i), filled)


def empty_row() -> dict:
    """A row with every column present and null, to be filled by the cell runner."""
    return {name: None for name in COLUMN_NAMES}
