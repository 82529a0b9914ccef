"""The harness check: a sample of a sweep's own cells measured again by an independent bare loop
(inferbench.selfcheck.bareloop), each in a fresh process, and the two throughputs side by side.

Which cells: per device, backend and precision that ran `ok`, the most launch-bound cell (the
lowest GPU busy share; on the CPU the smallest batch of pixels), and the cells of ALWAYS whenever
the grid has them. Only io=device rows: the bare loop times the model, not host copies.
A ratio (harness over bare) outside RATIO_BAND says the harness did not measure what a plain
loop in a quiet process measures, and becomes a finding at the top of the report.

Each bare loop is a fresh interpreter, started when its turn comes and measured as soon as it
has imported its libraries, one at a time (a CPU bare loop, as a GPU one). Not started ahead:
loops started ahead in a batch and measured in turn read slower than loops started one at a
time (docs/method.md, "The harness check", has the figures).
`started_utc` and `check_s` are each bare loop's process start and its time to its end: the
sweep's clock (inferbench.reporting.timebudget) reads them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

RATIO_BAND = (0.95, 1.05)
COLUMNS = ["backend", "precision", "resolution", "batch_size", "io", "harness_ips", "bare_ips", "ratio",
           "device", "gpu_busy_pct", "ips_spread_pct", "harness_host_launch_us", "bare_host_launch_us",
           "harness_host_cpus", "bare_host_cpus", "bare_iters", "note", "started_utc", "check_s"]
# The reference sweep's cells that docs/benchmarks quote: eager pytorch fp16 at 224 px batch 64, and
# the same with CUDA graph replay at batch 32, where replay gains the most over eager launches. By
# the backend a cell runs and its options, not by a variant's name, which each config chooses.
ALWAYS = [{"backend_impl": "pytorch", "cuda_graphs": False, "precision": "fp16", "device": "cuda", "resolution": 224,
           "batch_size": 64},
          {"backend_impl": "pytorch", "cuda_graphs": True, "precision": "fp16", "device": "cuda", "resolution": 224,
           "batch_size": 32}]


def _replays_cuda_graphs(options_json) -> bool:
    try:
        return json.loads(options_json).get("cuda_graphs") is True
    except (TypeError, ValueError, AttributeError):
        return False


def select_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows to check, one per cell (see the module's docstring)."""
    ok = summary[(summary["status"] == "ok") & (summary["io"] == "device")].copy()
    if ok.empty:
        return ok
    busy = ok["gpu_busy_pct"] if "gpu_busy_pct" in ok.columns else pd.Series(float("nan"), index=ok.index)
    # launch-bound first: low GPU busy share; without a reading (CPU), the least work per call
    ok["_order"] = busy.fillna(101.0).astype(float)
    ok["_work"] = ok["batch_size"].astype(int) * ok["resolution"].astype(int) ** 2
    ok["cuda_graphs"] = ok["backend_options"].map(_replays_cuda_graphs) if "backend_options" in ok.columns else False
    if "backend_impl" not in ok.columns:
        ok["backend_impl"] = ok["backend"]
    picked = []
    for _, group in ok.groupby(["device", "backend", "precision"], sort=True):
        picked.append(group.sort_values(["_order", "_work"]).index[0])
    for cell in ALWAYS:
        always = ok
        for key, value in cell.items():
            always = always[always[key] == value]
        picked += list(always.index)
    return ok.loc[sorted(set(picked))].drop(columns=["_order", "_work", "cuda_graphs"])


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
            "warmup_s": measurement.get("warmup_min_s", 0.0), "timed_s": measurement.get("min_time_s", 0.0),
            "pin_fastest_cpu": measurement.get("pin_fastest_cpu", True)}


def _artifact(config: dict, cell, results_dir: Path) -> str | None:
    from inferbench.sweep.spec import artifact_manifest

    relative = artifact_manifest(config, cell)
    if relative is None:
        return None
    manifest = results_dir / relative
    data = json.loads(manifest.read_text())
    return str(manifest.parent / data["artifact_path"])


READY_TIMEOUT_S = 600.0
BATCH = 1  # bare loops alive at once: one (see the module docstring for why)


class BareLoop:
    """One bare loop's fresh process, started with `--wait` (inferbench.selfcheck.bareloop)."""

    def __init__(self, spec: dict, env: dict):
        self.started = time.time()
        self.proc = subprocess.Popen([sys.executable, "-m", "inferbench.selfcheck.bareloop", "--spec", json.dumps(spec), "--wait"],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.ready = False

    def wait_ready(self, timeout_s: float) -> None:
        """Until it has imported its libraries (or died trying)."""
        box = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        self.ready = bool(box) and box[0].strip() == "ready"
        if not self.ready and self.proc.poll() is None:
            self.proc.kill()

    def run(self, env: dict, timeout_s: float) -> dict:
        if not self.ready:
            return self._failed("it did not start")
        try:
            out, err = self.proc.communicate(json.dumps(env) + "\n", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return {"note": f"bare loop timed out after {timeout_s:.0f} s"}
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            last = (err.strip().splitlines() or ["no output"])[-1]
            return {"note": f"bare loop failed (exit {self.proc.returncode}): {last[:300]}"}
        return json.loads(lines[-1])

    def _failed(self, why: str) -> dict:
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            err = ""
        last = ((err or "").strip().splitlines() or ["no output"])[-1]
        return {"note": f"bare loop failed ({why}, exit {self.proc.returncode}): {last[:300]}"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run_bare(spec: dict, env: dict, timeout_s: float) -> dict:
    """One bare loop in a fresh interpreter, started and measured now."""
    loop = BareLoop(spec, env)
    try:
        loop.wait_ready(READY_TIMEOUT_S)
        return loop.run({}, timeout_s)
    finally:
        loop.stop()


def check(summary: pd.DataFrame, config: dict, results_dir: Path, env: dict | None = None,
          timeout_s: float = 900.0, progress=print, gpus: list[str] | None = None,
          rows: dict | None = None) -> pd.DataFrame:
    """gpus: the GPUs the check may measure on at once, one bare loop each (default: the one the
    environment makes visible). rows: filled in as each bare loop ends (position in the sample ->
    row), so that a caller stopped part way keeps what was measured (table_of)."""
    selected = select_cells(summary)
    env = dict(env or os.environ)
    gpus = gpus or [None]
    rows = {} if rows is None else rows
    items = list(enumerate(selected.iterrows(), 1))
    for first in range(0, len(items), BATCH):
        batch = items[first:first + BATCH]
        loops = {}
        try:
            for i, (_, row) in batch:
                try:
                    loops[i] = BareLoop(bare_spec(row, config, results_dir), env)
                except (OSError, ValueError, KeyError) as exc:
                    rows[i] = _row(row, {"note": f"could not set up the bare loop: {exc}"}, None, 0.0)
            for loop in loops.values():  # every import done before the first measurement
                loop.wait_ready(READY_TIMEOUT_S)
            on_cpu = [(i, row) for i, (_, row) in batch if i in loops and row["device"] != "cuda"]
            on_gpu = [(i, row) for i, (_, row) in batch if i in loops and row["device"] == "cuda"]
            for i, row in on_cpu:  # alone, as CPU cells are measured
                _measure(loops[i], row, {}, timeout_s, progress, i, len(items), rows)
            _on_gpus(on_gpu, loops, gpus, timeout_s, progress, len(items), rows)
        except KeyboardInterrupt as exc:
            raise CheckStopped(dict(rows)) from exc  # taken before the loops are killed below
        finally:
            for loop in loops.values():
                loop.stop()
    return table_of(rows)


class CheckStopped(KeyboardInterrupt):
    """The check was interrupted; `rows` are those measured before it, not the loops it killed."""

    def __init__(self, rows: dict):
        super().__init__("harness check stopped")
        self.rows = rows


def table_of(rows: dict) -> pd.DataFrame:
    """The check's table from the rows measured so far, in the sample's order."""
    return pd.DataFrame([rows[i] for i in sorted(rows)], columns=COLUMNS)


def sample_size(summary: pd.DataFrame) -> int:
    return len(select_cells(summary))


def _on_gpus(todo, loops, gpus, timeout_s, progress, total, rows) -> None:
    """One thread per GPU takes the next bare loop and lets it measure on that GPU."""
    work: queue.Queue = queue.Queue()
    for item in todo:
        work.put(item)

    def serve(gpu):
        go = {} if gpu is None else {"CUDA_VISIBLE_DEVICES": gpu, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        while True:
            try:
                i, row = work.get_nowait()
            except queue.Empty:
                return
            _measure(loops[i], row, go, timeout_s, progress, i, total, rows)

    threads = [threading.Thread(target=serve, args=(gpu,)) for gpu in gpus[:max(1, len(todo))]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _measure(loop: BareLoop, row, go: dict, timeout_s: float, progress, i: int, total: int, rows: dict) -> None:
    """Measure, keep the row in rows[i], then say so (the progress line may save the rows)."""
    result = loop.run(go, timeout_s)
    out = rows[i] = _row(row, result, loop.started, time.time() - loop.started)
    name = f"{row['backend']} {row['precision']} {row['device']} {row['resolution']} px batch {row['batch_size']}"
    ratio, bare = out["ratio"], out["bare_ips"]
    shown = f"ratio {ratio:.3f} (harness {out['harness_ips']:,.0f}, bare {bare:,.0f} images/s)" if ratio else out["note"]
    where = f" on GPU {go['CUDA_VISIBLE_DEVICES']}" if go.get("CUDA_VISIBLE_DEVICES") else ""
    progress(f"[{i}/{total}] {name}{where}: {shown} ({out['check_s']:.1f} s from its process's start)")


def _row(row, result: dict, started: float | None, seconds: float) -> dict:
    harness = float(row["throughput_ips"])
    bare = result.get("bare_ips")
    return {"backend": row["backend"], "precision": row["precision"], "resolution": int(row["resolution"]),
            "batch_size": int(row["batch_size"]), "io": row["io"], "harness_ips": harness,
            "bare_ips": bare, "ratio": harness / bare if bare else None, "device": row["device"],
            "gpu_busy_pct": row.get("gpu_busy_pct"), "ips_spread_pct": row.get("ips_spread_pct"),
            "harness_host_launch_us": row.get("host_launch_us"),
            "bare_host_launch_us": result.get("bare_host_launch_us"),
            "harness_host_cpus": row.get("host_cpus"), "bare_host_cpus": result.get("bare_host_cpus"),
            "bare_iters": result.get("bare_iters"), "note": result.get("note", ""),
            "started_utc": (datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds")
                            if started else None),
            "check_s": seconds}


def outside_band(table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ratio is outside RATIO_BAND, or that could not be checked."""
    if table.empty:
        return table
    lo, hi = RATIO_BAND
    ratio = pd.to_numeric(table["ratio"], errors="coerce")
    return table[ratio.isna() | (ratio < lo) | (ratio > hi)]


def partial_path(out) -> Path:
    """Where an unfinished check keeps the rows it measured: beside its CSV, under a name no rule
    claims, so that a check stopped part way (Ctrl-C, a time limit) loses none of them."""
    out = Path(out)
    return out.with_name(f"{out.stem}.partial{out.suffix}")


def read_check(path) -> tuple[pd.DataFrame | None, str]:
    """The check at path and its state: "complete", "partial" (only the rows of a check that was
    stopped, from partial_path) or "missing"."""
    table = read_table(path)
    if table is not None:
        return table, "complete"
    table = read_table(partial_path(path))
    return (table, "partial") if table is not None else (None, "missing")


def read_table(path) -> pd.DataFrame | None:
    path = Path(path)
    if not path.is_file():
        return None
    return pd.read_csv(path)
