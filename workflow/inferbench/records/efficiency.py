"""How much of the GPU each cell uses: the summary's work and ceiling columns, joined from the
sweep's two records (the model's work per image, inferbench.models.work; the GPUs' measured
ceilings, inferbench.measure.peak) when the shards are gathered.

  gflop_per_image   the model's FLOPs per image at the row's resolution, in GFLOP (2 per
                    multiply-accumulate: inferbench.models.work.CONVENTION)
  params_m          the model's parameters, in millions
  achieved_tflops   throughput_ips x gflop_per_image / 1000, for every cell that ran
  peak_tflops       the measured ceiling of the row's GPU at the row's precision (GPU rows)
  pct_of_peak       achieved_tflops over peak_tflops, in percent
  gpu_peak_tflops_{fp32,fp16,bf16}  the row's GPU's measured ceilings, for the environment
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from inferbench.errors import UserError

PEAK_PRECISIONS = ("fp32", "fp16", "bf16")
COLUMNS = ["gflop_per_image", "params_m", "achieved_tflops", "peak_tflops", "pct_of_peak"] + [
    f"gpu_peak_tflops_{p}" for p in PEAK_PRECISIONS]


def read_record(path) -> dict | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path} ({exc}); delete it and run snakemake again") from None


def ceilings_of(peak: dict | None, hostname, gpu_index, gpu_name) -> dict:
    """{precision: TFLOP/s} of the row's GPU: the same host and index, else a GPU of the same name
    (a cluster's cells ran on other nodes than the measurement)."""
    gpus = [g for g in (peak or {}).get("gpus", []) if g.get("tflops")]
    host = (peak or {}).get("hostname")
    for g in gpus:
        if host == hostname and g.get("gpu_index") == gpu_index:
            return g["tflops"]
    same_name = [g for g in gpus if gpu_name and g.get("gpu_name") == gpu_name]
    return same_name[0]["tflops"] if same_name else {}


def add_columns(table: pa.Table, work: dict | None, peak: dict | None) -> pa.Table:
    rows = table.select([c for c in ("resolution", "device", "precision", "status", "throughput_ips", "hostname",
                                     "gpu_index", "gpu_name") if c in table.column_names]).to_pylist()
    per_resolution = (work or {}).get("gflop_per_image", {})
    out = {c: [] for c in COLUMNS}
    for row in rows:
        gflop = per_resolution.get(str(row["resolution"]))
        ips = row.get("throughput_ips")
        achieved = ips * gflop / 1e3 if row["status"] == "ok" and ips is not None and gflop is not None else None
        ceilings = ceilings_of(peak, row.get("hostname"), row.get("gpu_index"), row.get("gpu_name")) \
            if row["device"] == "cuda" else {}
        ceiling = ceilings.get(row["precision"])
        out["gflop_per_image"].append(gflop)
        out["params_m"].append((work or {}).get("params_m"))
        out["achieved_tflops"].append(achieved)
        out["peak_tflops"].append(ceiling)
        out["pct_of_peak"].append(100.0 * achieved / ceiling if achieved is not None and ceiling else None)
        for p in PEAK_PRECISIONS:
            out[f"gpu_peak_tflops_{p}"].append(ceilings.get(p))
    for name in COLUMNS:
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(pa.field(name, pa.float64()), pa.array(out[name], type=pa.float64()))
    return table
