"""Where a sweep's time went, from the shards: each cell's job split into phases, summed by
device and backend. It answers "why did the sweep take this long" (compilation? process
starts? the measurement itself?) without a profiler, for any run that recorded the phases.

Phases of one cell's job (columns of the shard, see inferbench.records.schema):
  gpu_wait_s      waiting for a free GPU
  worker_start_s  starting the isolated worker (fork from the server, or a new interpreter)
  setup_s         CUDA context, telemetry, input buffers
  load            load_s minus compile_s: model, artifact, session
  compile_s       JIT / ahead-of-time compilation
  warmup_s        warm-up iterations, every io mode
  timed_s         the timed windows, every io mode
  reference_s     the fp32 reference run of the accuracy check
  other           the rest of job_wall_s: the job's own start, the first run, telemetry, shards
"""

from __future__ import annotations

import pandas as pd

from inferbench.records.schema import CELL_KEY

PHASES = [
    ("gpu_wait_s", "GPU wait"),
    ("worker_start_s", "worker start"),
    ("setup_s", "setup"),
    ("load", "load"),
    ("compile_s", "compile"),
    ("warmup_s", "warm-up"),
    ("timed_s", "timed"),
    ("reference_s", "reference"),
    ("other", "other"),
]
PER_IO = ("warmup_s", "timed_s")  # one value per io row; everything else is per cell
PER_CELL = ("job_wall_s", "gpu_wait_s", "worker_start_s", "setup_s", "load_s", "compile_s", "reference_s")


def per_cell(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (its io rows folded together) with every phase in seconds."""
    if "job_wall_s" not in summary.columns:
        return pd.DataFrame()
    df = summary[summary["job_wall_s"].notna()].copy()
    if df.empty:
        return pd.DataFrame()
    key = [k for k in CELL_KEY if k != "io"]
    for col in PER_CELL + PER_IO:
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0.0) if col in df.columns else 0.0
    cells = df.groupby(key, dropna=False).agg(
        {**{c: "first" for c in PER_CELL}, **{c: "sum" for c in PER_IO}, "timestamp_utc": "min"}).reset_index()
    cells["load"] = (cells["load_s"] - cells["compile_s"]).clip(lower=0.0)
    known = [p for p, _ in PHASES if p != "other"]
    cells["other"] = (cells["job_wall_s"] - cells[known].sum(axis=1)).clip(lower=0.0)
    return cells


def breakdown(summary: pd.DataFrame) -> pd.DataFrame:
    """Seconds per phase summed over the cells of each device and backend, with a total row."""
    return _breakdown(per_cell(summary))


def cells_span_s(summary: pd.DataFrame) -> float | None:
    """About how long the cells took from the first start to the last end (seconds); the
    timestamps are whole seconds and mark the worker's start, so this is good to a few seconds."""
    return _span_s(per_cell(summary))


def summarize(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The breakdown table and the sentences that read it, from one pass over the cells."""
    cells = per_cell(summary)
    table = _breakdown(cells)
    return table, _sentences(table, _span_s(cells))


def _breakdown(cells: pd.DataFrame) -> pd.DataFrame:
    if cells.empty:
        return pd.DataFrame()
    cols = ["job_wall_s"] + [p for p, _ in PHASES]
    grouped = cells.groupby(["device", "backend"])
    table = grouped[cols].sum()
    table.insert(0, "cells", grouped.size())
    total = table.sum().to_frame("all").T
    total.index = pd.MultiIndex.from_tuples([("all", "all")], names=table.index.names)
    table = pd.concat([table, total]).reset_index()
    table = table.rename(columns={"job_wall_s": "job wall", **dict(PHASES)})
    table["cells"] = table["cells"].astype(int)
    return table


def _span_s(cells: pd.DataFrame) -> float | None:
    if cells.empty:
        return None
    start = pd.to_datetime(cells["timestamp_utc"], utc=True, errors="coerce")
    if start.isna().all():
        return None
    end = start + pd.to_timedelta(cells["job_wall_s"], unit="s")
    return float((end.max() - start.min()).total_seconds())


def _sentences(table: pd.DataFrame, span: float | None) -> list[str]:
    if table.empty:
        return ["No cell recorded its phases (shards from an inferbench before the `job_wall_s` column)."]
    total = table.iloc[-1]
    wall = float(total["job wall"])
    ranked = sorted(((float(total[label]), label) for _, label in PHASES), reverse=True)
    top = ", ".join(f"{label} {sec:,.0f} s ({sec / wall:.0%})" for sec, label in ranked[:3] if wall > 0)
    out = [f"The {int(total['cells'])} cells' jobs took {wall:,.0f} s in all; the largest phases: {top}."]
    if span is not None:
        out.append(f"From the first cell's start to the last cell's end: about {span:,.0f} s "
                   "(cells in parallel overlap here; exports and aggregation are not included).")
    groups = table.iloc[:-1].copy()
    groups["per cell"] = groups["job wall"] / groups["cells"]
    worst = groups.sort_values("per cell", ascending=False).iloc[0]
    n = int(worst["cells"])
    out.append(f"Per cell, {worst['backend']} on {worst['device']} costs the most: {worst['per cell']:,.1f} s "
               f"on average ({n} cell{'s' if n != 1 else ''}), {worst['compile'] / n:,.1f} s of it compiling.")
    return out
