"""Where a sweep's time went, from the shards: each cell's job split into phases, summed by
device and backend. It answers "why did the sweep take this long" (compilation? process
starts? the measurement itself?) without a profiler, for any run that recorded the phases.

Phases of one cell's job (columns of the shard, see inferbench.records.schema):
  gpu_wait_s      waiting for a free GPU
  worker_start_s  starting the isolated worker (fork from the server, or a new interpreter)
  setup_s         CUDA context, telemetry, input buffers
  load            load_s minus compile_s: model, artifact, session
  compile_s       JIT / ahead-of-time compilation
  first_run       the first call (first_run_ms): cuDNN's per-shape algorithm search
                  (`cudnn.benchmark`), ONNX Runtime's convolution search (EXHAUSTIVE); in the
                  H200 record most of what was otherwise "other" (pytorch and torchscript fp32)
  warmup_s        warm-up iterations, every io mode
  timed_s         the timed windows, every io mode
  reference_s     the fp32 reference run of the accuracy check
  other           the rest of job_wall_s: the job's own start, telemetry, io=host buffers, shards

And the sweep's own clock (`sweep_clock`): from the first job's start (an export or a cell) to
the last end among exports, cells and the harness check's bare loops, and the part of it outside
the cells' span (exports, the harness check, and gaps between jobs inside the span), from the
shards' timestamps, the exports' record (exports.json) and the harness check's table. Snakemake's
start (building the DAG) and the tables, figures, report and archive come after or before those
and are not in it.

And each GPU's busy span (`gpu_spans`): per GPU (by `gpu_uuid`, else host and `gpu_index`), from
its first cell's start to its last cell's end, the seconds its cells held it, and the idle share
in between, with the harness check's span beside them. A cell holds its GPU from its claim to
its shard: `job_wall_s` minus `gpu_wait_s`, from `timestamp_utc` (taken in the worker, after the
claim). That includes the job's own interpreter start before the claim, under a second, and the
timestamps are whole seconds: good to about a second per cell. Cells that never reached a GPU
(skipped before the worker, or whose worker wrote no shard) name none and are not counted.
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
    ("first_run", "first call"),
    ("warmup_s", "warm-up"),
    ("timed_s", "timed"),
    ("reference_s", "reference"),
    ("other", "other"),
]
PER_IO = ("warmup_s", "timed_s")  # one value per io row; everything else is per cell
PER_CELL = ("job_wall_s", "gpu_wait_s", "worker_start_s", "setup_s", "load_s", "compile_s", "first_run_ms",
            "reference_s")
GPU_OF_CELL = ("hostname", "gpu_uuid", "gpu_index")  # where a cell ran, for the per-GPU spans
SPAN_COLUMNS = ["part", "host", "gpu_index", "gpu_uuid", "cells", "first_start_utc", "last_end_utc", "span_s",
                "held_s", "idle_pct"]


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
    where = {c: "first" for c in GPU_OF_CELL if c in df.columns}
    cells = df.groupby(key, dropna=False).agg(
        {**{c: "first" for c in PER_CELL}, **{c: "sum" for c in PER_IO}, "timestamp_utc": "min", **where}).reset_index()
    cells["load"] = (cells["load_s"] - cells["compile_s"]).clip(lower=0.0)
    cells["first_run"] = cells["first_run_ms"] / 1000.0
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


def summarize(summary: pd.DataFrame, exports: list[dict] | None = None,
              check: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The breakdown table and the sentences that read it, from one pass over the cells; with the
    exports' record and the harness check's table, the sweep's clock too."""
    cells = per_cell(summary)
    table = _breakdown(cells)
    sentences = _sentences(table, _span_s(cells))
    clock = _clock(cells, exports, check)
    if clock and table is not None and not table.empty:
        sentences.append(_clock_sentence(clock))
    return table, sentences


def sweep_clock(summary: pd.DataFrame, exports: list[dict] | None = None,
                check: pd.DataFrame | None = None) -> dict | None:
    """The sweep's wall time from its jobs' own records (seconds; see the module's docstring):
    wall_s, cells_span_s, serial_s (wall_s minus the cells' span), exports_s (first export's
    start to the last one's end), check_s (the harness check's bare loops, start to end)."""
    return _clock(per_cell(summary), exports, check)


def gpu_spans(summary: pd.DataFrame, check: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each GPU's busy span (see the module's docstring): a row per GPU (part "cells"), ordered by
    host and index, then one for the harness check's bare loops (part "harness check", its
    `held_s` the loops' seconds summed, over however many GPUs it used). Empty where no cell
    names its GPU (a CPU-only sweep, or shards from before those columns)."""
    cells = per_cell(summary)
    if cells.empty or not {"gpu_uuid", "gpu_index"} & set(cells.columns):
        return pd.DataFrame(columns=SPAN_COLUMNS)
    for col in GPU_OF_CELL:
        if col not in cells.columns:
            cells[col] = None
    on_gpu = cells[(cells["device"] == "cuda") & (cells["gpu_uuid"].notna() | cells["gpu_index"].notna())].copy()
    on_gpu["start"] = pd.to_datetime(on_gpu["timestamp_utc"], utc=True, errors="coerce")
    on_gpu = on_gpu[on_gpu["start"].notna()]
    if on_gpu.empty:
        return pd.DataFrame(columns=SPAN_COLUMNS)
    on_gpu["held_s"] = (on_gpu["job_wall_s"] - on_gpu["gpu_wait_s"]).clip(lower=0.0)
    on_gpu["end"] = on_gpu["start"] + pd.to_timedelta(on_gpu["held_s"], unit="s")
    # A UUID is one GPU on any host; an index only on its own host.
    on_gpu["gpu"] = [u if isinstance(u, str) and u else f"{h}#{i}"
                     for u, h, i in zip(on_gpu["gpu_uuid"], on_gpu["hostname"], on_gpu["gpu_index"])]
    rows = []
    for _, g in on_gpu.groupby("gpu", sort=False):
        first, last = g["start"].min(), g["end"].max()
        rows.append(_span_row("cells", g["hostname"].dropna().iloc[0] if g["hostname"].notna().any() else None,
                              _first(g["gpu_index"]), _first(g["gpu_uuid"]), len(g), first, last,
                              float(g["held_s"].sum())))
    rows.sort(key=lambda r: (str(r["host"]), r["gpu_index"] if r["gpu_index"] is not None else -1, str(r["gpu_uuid"])))
    span = None
    if check is not None and not check.empty and "started_utc" in check.columns:
        span = _intervals(check["started_utc"], check["check_s"])
    if span is not None:
        loops_s = float(pd.to_numeric(check["check_s"], errors="coerce").fillna(0.0).sum())
        row = _span_row("harness check", None, None, None, len(check), span[0], span[1], loops_s)
        row["idle_pct"] = None  # its loops run on several GPUs at once, and the table names none
        rows.append(row)
    return pd.DataFrame(rows, columns=SPAN_COLUMNS)


def _first(values: pd.Series):
    known = values.dropna()
    if known.empty:
        return None
    value = known.iloc[0]
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _span_row(part, host, index, uuid, cells, first, last, held_s) -> dict:
    span_s = float((last - first).total_seconds())
    idle = max(0.0, 1.0 - held_s / span_s) * 100.0 if span_s > 0 else 0.0
    return {"part": part, "host": host, "gpu_index": index, "gpu_uuid": uuid, "cells": int(cells),
            "first_start_utc": first.isoformat(timespec="seconds"),
            "last_end_utc": last.isoformat(timespec="seconds"), "span_s": span_s,
            "held_s": held_s, "idle_pct": idle}


def gpu_span_sentences(spans: pd.DataFrame) -> list[str]:
    """What the per-GPU table says: each GPU's span and idle share, how far apart the GPUs
    finished, and the harness check's span."""
    gpus = spans[spans["part"] == "cells"]
    if gpus.empty:
        return []
    each = "; ".join(f"{_gpu_name(r)} {r['span_s']:,.0f} s, its {int(r['cells'])} cells holding it "
                     f"{r['held_s']:,.0f} s (idle {r['idle_pct']:.0f}%)" for _, r in gpus.iterrows())
    out = [f"Each GPU from its first cell's start to its last cell's end: {each}."]
    if len(gpus) > 1:
        ends = pd.to_datetime(gpus["last_end_utc"], utc=True)
        starts = pd.to_datetime(gpus["first_start_utc"], utc=True)
        out.append(f"The GPUs started their first cells within {(starts.max() - starts.min()).total_seconds():,.0f} s "
                   f"of each other and ended their last within {(ends.max() - ends.min()).total_seconds():,.0f} s; "
                   "a GPU idle at the end waited for the others' last cells.")
    check = spans[spans["part"] == "harness check"]
    if not check.empty:
        c = check.iloc[0]
        out.append(f"The harness check: {c['span_s']:,.0f} s from its first bare loop's start to its last one's end "
                   f"({int(c['cells'])} cells, {c['held_s']:,.0f} s of loops summed).")
    return out


def _gpu_name(row) -> str:
    index = row["gpu_index"]
    name = f"GPU {int(index)}" if index is not None and not pd.isna(index) else "GPU"
    uuid = row["gpu_uuid"]
    if isinstance(uuid, str) and uuid:
        name += f" ({uuid[:12]}…)"
    host = row["host"]
    return f"{name} on {host}" if isinstance(host, str) and host else name


def _intervals(starts, seconds) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    start = pd.to_datetime(pd.Series(list(starts), dtype=object), utc=True, errors="coerce")
    secs = pd.to_numeric(pd.Series(list(seconds), dtype=object), errors="coerce").fillna(0.0)
    ok = start.notna()
    if not ok.any():
        return None
    end = start[ok] + pd.to_timedelta(secs[ok].to_numpy(), unit="s")
    return start[ok].min(), end.max()


def _clock(cells: pd.DataFrame, exports: list[dict] | None, check: pd.DataFrame | None) -> dict | None:
    spans = {}
    if not cells.empty:
        spans["cells"] = _intervals(cells["timestamp_utc"], cells["job_wall_s"])
    if exports:
        spans["exports"] = _intervals([e.get("started_utc") for e in exports], [e.get("job_wall_s") for e in exports])
    if check is not None and not check.empty and "started_utc" in check.columns:
        spans["check"] = _intervals(check["started_utc"], check["check_s"])
    spans = {k: v for k, v in spans.items() if v is not None}
    if "cells" not in spans or len(spans) < 2:
        return None  # the cells alone: their span is already said
    first = min(v[0] for v in spans.values())
    last = max(v[1] for v in spans.values())
    seconds = {k: float((v[1] - v[0]).total_seconds()) for k, v in spans.items()}
    wall = float((last - first).total_seconds())
    return {"wall_s": wall, "cells_span_s": seconds["cells"], "serial_s": wall - seconds["cells"],
            "exports_s": seconds.get("exports"), "check_s": seconds.get("check"),
            "first_start_utc": first.isoformat(), "last_end_utc": last.isoformat()}


def _clock_sentence(clock: dict) -> str:
    parts = [f"the cells {clock['cells_span_s']:,.0f} s"]
    if clock.get("exports_s") is not None:
        parts.insert(0, f"the exports {clock['exports_s']:,.0f} s")
    if clock.get("check_s") is not None:
        parts.append(f"the harness check {clock['check_s']:,.0f} s")
    return (f"The sweep's clock, from its first job's start to its last measurement's end: about "
            f"{clock['wall_s']:,.0f} s ({', '.join(parts)}, each from its first start to its last end); "
            f"{clock['serial_s']:,.0f} s of it outside the cells' span. Building the DAG before, and the "
            "tables, figures, report and archive after, are not included.")


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
