"""The summary as data: what every view of a run (tables, figures, findings, report, compare)
reads and derives from it, defined once.

A summary is one row per cell and io mode (inferbench.records.schema). This module reads it,
fills what older summaries lack, orders cells for reading, names each row's series, and adds
the derived columns: one peak-memory column, the speedup over the baseline (pytorch fp32) and
the best cell of each comparable batch. How those are shown (number formats, Markdown, HTML,
figures) belongs to the views.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from inferbench.errors import UserError
from inferbench.records import schema
from inferbench.records.efficiency import COLUMNS as EFFICIENCY_COLUMNS

# What every speedup and memory ratio is taken against: the model as written, eager PyTorch in
# full precision, before any deployment format touches it.
BASELINE = {"backend": "pytorch", "precision": "fp32"}
SPEEDUP_COLUMN = f"speedup_vs_{BASELINE['backend']}_{BASELINE['precision']}"

# Display order; names not listed sort after these, alphabetically.
BACKEND_ORDER = ["pytorch", "torchscript", "onnxruntime", "torch_compile", "torch_tensorrt"]
PRECISION_ORDER = ["fp32", "fp16", "bf16"]
DEVICE_ORDER = ["cuda", "cpu"]
IO_ORDER = ["device", "host"]

# A batch is only compared with cells that measured the same thing: same model,
# resolution, device and io mode ("host" io includes copies that "device" io does not).
COMPARABLE = ["model", "resolution", "device", "io", "batch_size"]

TIDY_COLUMNS = [
    "model", "resolution", "device", "io", "backend", "backend_impl", "precision", "batch_size", "series",
    "status", "reason", "throughput_ips", "ips_spread_pct", "latency_ms_median", "latency_ms_p99", "latency_cv",
    "memory_peak_mb", "memory_source", "energy_j_per_image", "gpu_busy_pct", "enqueue_ms_median", "host_bound",
    "max_abs_err", "top1_agreement", "gflop_per_image", "achieved_tflops", "pct_of_peak", SPEEDUP_COLUMN,
    "best_in_batch", "export_s", "load_s", "compile_s", "first_run_ms",
]

# Statuses of a cell that was timed: its figures are shown. Only "ok" is ranked, starred, a
# baseline or a finding; an "inaccurate" cell's outputs disagree with the fp32 reference, so its
# figures are not this model's.
MEASURED_STATUSES = ("ok", "inaccurate")
# Statuses of a cell that did not produce a measurement.
NOT_OK_STATUSES = tuple(s for s in schema.STATUSES if s not in MEASURED_STATUSES)


# ---------------------------------------------------------------- reading


def read_summary(path) -> pd.DataFrame:
    """The summary Parquet file, checked for the columns every reader needs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"summary not found: {path} (run `inferbench aggregate` first, or pass --summary)")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise UserError(f"cannot read {path} as Parquet: {exc}") from exc
    missing = [c for c in schema.CELL_KEY + ["status", "reason", "throughput_ips"] if c not in df.columns]
    if missing:
        raise UserError(f"{path} is not an inferbench summary: missing columns {', '.join(missing)}")
    return normalise(df)


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Fill columns later schema versions may lack, and make empty reasons empty strings."""
    df = df.copy()
    for name in schema.COLUMN_NAMES:
        if name not in df.columns:
            df[name] = None
    for name in EFFICIENCY_COLUMNS:  # summaries from before the work and ceiling columns
        if name not in df.columns:
            df[name] = float("nan")
    df["reason"] = df["reason"].fillna("").astype(str)
    # summaries from before variants: every row ran the backend it is named after
    df["backend_impl"] = df["backend_impl"].fillna(df["backend"])
    df["io"] = df["io"].fillna("device").astype(str)
    return df


# ---------------------------------------------------------------- labels and order


def _rank(values: pd.Series, order: list[str]) -> pd.Series:
    known = {name: i for i, name in enumerate(order)}
    return values.map(lambda v: (known.get(v, len(order)), str(v)))


def sort_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Cells in reading order: model, resolution, device, io, backend, precision, batch size."""
    keys = pd.DataFrame({
        "m": df["model"].astype(str),
        "r": df["resolution"],
        "d": _rank(df["device"], DEVICE_ORDER),
        "i": _rank(df["io"], IO_ORDER),
        # a variant right after the backend it runs, the backend's own entry first
        "b": _rank(df["backend_impl"].fillna(df["backend"]) if "backend_impl" in df else df["backend"], BACKEND_ORDER),
        "v": df["backend"].map(lambda name: (name not in BACKEND_ORDER, str(name))),
        "p": _rank(df["precision"], PRECISION_ORDER),
        "n": df["batch_size"],
    }, index=df.index)
    return df.loc[keys.sort_values(list(keys.columns)).index]


def series_parts(df: pd.DataFrame) -> list[str]:
    """The columns that name a line/row: io and model only when they vary, so labels stay short."""
    parts = ["backend", "precision", "device"]
    if df["io"].nunique() > 1:
        parts.append("io")
    if df["model"].nunique() > 1:
        parts.insert(0, "model")
    return parts


def with_series(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `series`, e.g. "onnxruntime·fp16·cuda" (plus "·host" when both io modes exist)."""
    df = df.copy()
    parts = series_parts(df)
    df["series"] = df[parts].astype(str).agg("·".join, axis=1) if len(df) else pd.Series(dtype=str)
    return df


# ---------------------------------------------------------------- the baseline and the ok cells


def is_baseline(df: pd.DataFrame) -> pd.Series:
    """Which rows are the baseline's backend and precision (ok or not)."""
    return (df["backend"] == BASELINE["backend"]) & (df["precision"] == BASELINE["precision"])


def ok_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The cells that produced a measurement: the only ones a figure or a finding ranks."""
    return df[(df["status"] == "ok") & df["throughput_ips"].notna()]


# ---------------------------------------------------------------- derived columns


def with_memory(df: pd.DataFrame) -> pd.DataFrame:
    """One peak-memory column: NVML GPU memory for cuda cells, host RSS for cpu cells."""
    df = df.copy()
    on_gpu = df["device"] != "cpu"
    df["memory_peak_mb"] = df["gpu_mem_peak_mb"].where(on_gpu, df["host_rss_peak_mb"]).astype(float)
    df["memory_source"] = on_gpu.map({True: "gpu", False: "host_rss"})
    return df


def with_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """Throughput over the pytorch fp32 cell with the same model, resolution, device, io and batch."""
    base = df[is_baseline(df) & (df["status"] == "ok")]
    base = base[COMPARABLE + ["throughput_ips"]].rename(columns={"throughput_ips": "_base_ips"})
    base = base.drop_duplicates(COMPARABLE)
    out = df.merge(base, on=COMPARABLE, how="left")
    out.index = df.index
    measured = out["status"].isin(MEASURED_STATUSES)
    out[SPEEDUP_COLUMN] = (out["throughput_ips"] / out["_base_ips"]).where(measured)
    return out.drop(columns="_base_ips")


def with_best(df: pd.DataFrame) -> pd.DataFrame:
    """Marks the highest-throughput ok cell of each comparable batch (per device and io)."""
    df = df.copy()
    ok = df[df["status"] == "ok"]
    best_index = ok.groupby(COMPARABLE, dropna=False)["throughput_ips"].idxmax().dropna()
    df["best_in_batch"] = df.index.isin(best_index)
    return df


def tidy_table(summary: pd.DataFrame, resolution: int | None = None) -> pd.DataFrame:
    """The long table: one row per cell, the columns people compare, in reading order."""
    df = summary if resolution is None else summary[summary["resolution"] == resolution]
    if df.empty:
        have = sorted(int(r) for r in summary["resolution"].dropna().unique())
        raise UserError(f"no cells at resolution {resolution}; the summary has {have}")
    df = with_derived(df)
    for name in EFFICIENCY_COLUMNS:  # joined by the aggregation: absent from rows read from shards alone
        if name not in df.columns:
            df[name] = float("nan")
    return df[TIDY_COLUMNS].reset_index(drop=True)


def with_derived(df: pd.DataFrame) -> pd.DataFrame:
    """Every derived column (series, memory, speedup, best in batch), cells in reading order."""
    df = with_best(with_speedup(with_memory(with_series(df.reset_index(drop=True)))))
    return sort_cells(df)


def prepared(summary: pd.DataFrame) -> pd.DataFrame:
    """A summary as the figures and findings read it: normalised, with every derived column."""
    return with_derived(normalise(summary))
