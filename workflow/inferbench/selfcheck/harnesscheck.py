"""The harness check: a sample of a sweep's own cells measured again by an independent bare loop
(inferbench.selfcheck.bareloop), each in a fresh process, and the two throughputs side by side.

Which cells: per device, backend and precision that ran `ok`, the most launch-bound cell (the
lowest GPU busy share; on the CPU the smallest batch of pixels), and the cells of ALWAYS whenever
the grid has them. Only io=device rows: the bare loop times the model, not host copies.
A ratio (harness over bare) outside RATIO_BAND says the harness did not measure what a plain
loop in a quiet process measures, and becomes a finding at the top of the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

RATIO_BAND = (0.95, 1.05)
COLUMNS = ["backend", "precision", "resolution", "batch_size", "io", "harness_ips", "bare_ips", "ratio",
           "device", "gpu_busy_pct", "ips_spread_pct", "harness_host_launch_us", "bare_host_launch_us",
           "bare_iters", "note"]
# The reference sweep's cells that docs/benchmarks quote: eager pytorch fp16 at 224 px batch 64, and
# the same with CUDA graph replay at batch 32, where replay gains the most over eager launches.
ALWAYS = [{"backend": "pytorch", "precision": "fp16", "device": "cuda", "resolution": 224, "batch_size": 64},
          {"backend": "pytorch_cudagraphs", "precision": "fp16", "device": "cuda", "resolution": 224, "batch_size": 32}]


def select_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows to check, one per cell (see the module's docstring)."""
    ok = summary[(summary["status"] == "ok") & (summary["io"] == "device")].copy()
    if ok.empty:
        return ok
    busy = ok["gpu_busy_pct"] if "gpu_busy_pct" in ok.columns else pd.Series(float("nan"), index=ok.index)
    # launch-bound first: low GPU busy share; without a reading (CPU), the least work per call
    ok["_order"] = busy.fillna(101.0).astype(float)
    ok["_work"] = ok["batch_size"].astype(int) * ok["resolution"].astype(int) ** 2
    picked = []
    for _, group in ok.groupby(["device", "backend", "precision"], sort=True):
        picked.append(group.sort_values(["_order", "_work"]).index[0])
    for cell in ALWAYS:
        always = ok
        for key, value in cell.items():
            always = always[always[key] == value]
        picked += list(always.index)
    return ok.loc[sorted(set(picked))].drop(columns=["_order", "_work"])


def bare_spec(row, config: dict, results_dir: Path) -> dict:
    """What the bare loop needs for this row: the backend its variant runs with the variant's
    resolved options (CUDA graphs for a variant that replays them, say), the artifact the cell
    loaded (the sweep's own export, or None) and the sweep's time minimums."""
    from inferbench.backends import load_backend
    from inferbench.sweep.config import Cell, backend_of, measurement_for, options_of

    impl = backend_of(config, row["backend"])
    options = load_backend(impl).parse_options(options_of(config, row["backend"]))
    cell = Cell(row["model"], row["backend"], row["device"], row["precision"], int(row["resolution"]), int(row["batch_size"]))
    measurement = measurement_for(config, row["device"])
    threads = int(row["num_threads"]) if pd.notna(row.get("num_threads")) else measurement.get("cpu_threads")
    return {"model": cell.model, "seed": int(config.get("seed", 0)), "backend": impl,
            "precision": cell.precision, "device": cell.device, "resolution": cell.resolution,
            "batch_size": cell.batch_size, "options": dataclasses.asdict(options),
            "artifact": _artifact(config, cell, results_dir), "threads": threads,
            "warmup_s": measurement.get("warmup_min_s", 0.0), "timed_s": measurement.get("min_time_s", 0.0)}


def _artifact(config: dict, cell, results_dir: Path) -> str | None:
    from inferbench.sweep.spec import artifact_manifest

    relative = artifact_manifest(config, cell)
    if relative is None:
        return None
    manifest = results_dir / relative
    data = json.loads(manifest.read_text())
    return str(manifest.parent / data["artifact_path"])


def run_bare(spec: dict, env: dict, timeout_s: float) -> dict:
    """One fresh interpreter per cell: nothing of the sweep's processes is in it."""
    cmd = [sys.executable, "-m", "inferbench.selfcheck.bareloop", "--spec", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"note": f"bare loop timed out after {timeout_s:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"note": f"bare loop failed (exit {done.returncode}): {last[:300]}"}
    return json.loads(lines[-1])


def check(summary: pd.DataFrame, config: dict, results_dir: Path, env: dict | None = None,
          timeout_s: float = 900.0, progress=print) -> pd.DataFrame:
    rows = []
    selected = select_cells(summary)
    for i, (_, row) in enumerate(selected.iterrows(), 1):
        name = f"{row['backend']} {row['precision']} {row['device']} {row['resolution']} px batch {row['batch_size']}"
        started = time.perf_counter()
        try:
            spec = bare_spec(row, config, results_dir)
            result = run_bare(spec, dict(env or os.environ), timeout_s)
        except (OSError, ValueError, KeyError) as exc:
            result = {"note": f"could not set up the bare loop: {exc}"}
        harness = float(row["throughput_ips"])
        bare = result.get("bare_ips")
        ratio = harness / bare if bare else None
        rows.append({"backend": row["backend"], "precision": row["precision"], "resolution": int(row["resolution"]),
                     "batch_size": int(row["batch_size"]), "io": row["io"], "harness_ips": harness,
                     "bare_ips": bare, "ratio": ratio, "device": row["device"],
                     "gpu_busy_pct": row.get("gpu_busy_pct"), "ips_spread_pct": row.get("ips_spread_pct"),
                     "harness_host_launch_us": row.get("host_launch_us"),
                     "bare_host_launch_us": result.get("bare_host_launch_us"),
                     "bare_iters": result.get("bare_iters"), "note": result.get("note", "")})
        shown = f"ratio {ratio:.3f} (harness {harness:,.0f}, bare {bare:,.0f} images/s)" if ratio else result["note"]
        progress(f"[{i}/{len(selected)}] {name}: {shown} ({time.perf_counter() - started:.1f} s)")
    return pd.DataFrame(rows, columns=COLUMNS)


def outside_band(table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ratio is outside RATIO_BAND, or that could not be checked."""
    if table.empty:
        return table
    lo, hi = RATIO_BAND
    ratio = pd.to_numeric(table["ratio"], errors="coerce")
    return table[ratio.isna() | (ratio < lo) | (ratio > hi)]


def read_table(path) -> pd.DataFrame | None:
    path = Path(path)
    if not path.is_file():
        return None
    return pd.read_csv(path)
