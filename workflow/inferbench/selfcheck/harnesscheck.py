"""The harness check: a sample of a sweep's own cells measured again, each by the harness and by
an independent bare loop (inferbench.selfcheck.bareloop) in alternation, and their ratio.

Why paired: the host's CPUs change speed within seconds (docs/method.md, "The host's CPUs are not
equally fast"), and a launch-bound cell follows them. Two measurements minutes apart compare two
hosts, so a ratio of the sweep's figure over a later bare loop cannot tell a harness error from a
host that changed. Here each sampled cell gets two fresh processes, loaded at the same time and
kept loaded: the harness side (inferbench.selfcheck.harness_side: the cell's own phases, timer
and options) and the bare side (which shares no code with the harness). Then PAIRS pairs of short
blocks, one side measuring at a time, both pinned to the same CPU for a pair (the fastest free one
when the pair starts), the order within a pair alternating (H B, B H, ...) so that a drift inside a
pair does not favour one side. The check's ratio is the median of the per-pair ratios
(harness over bare); ratio_min and ratio_max are the extremes. `sweep_ratio` is the sweep's own
figure for the cell over the paired harness figure: outside RATIO_BAND, the host (or the process)
changed between the sweep and the check, which is not a harness error.

Which cells: per device, backend and precision that ran `ok`, the most launch-bound cell (the
lowest GPU busy share; on the CPU the smallest batch of pixels), and the cells of ALWAYS whenever
the grid has them. Only io=device rows: the bare loop times the model, not host copies. A backend
the bare loop cannot build is listed as not checked, not failed.

`started_utc` and `check_s` are each cell's processes' start and its time to its end: the sweep's
clock (inferbench.reporting.timebudget) reads them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

RATIO_BAND = (0.95, 1.05)
PAIRS = 6  # at least 5; even, so that each side goes first as often
NOT_CHECKED = "not checked: no bare loop for this backend"
COLUMNS = ["backend", "precision", "resolution", "batch_size", "io", "harness_ips", "bare_ips", "ratio",
           "pairs", "ratio_min", "ratio_max", "sweep_ips", "sweep_ratio",
           "device", "gpu_busy_pct", "ips_spread_pct", "sweep_host_launch_us", "harness_host_launch_us",
           "bare_host_launch_us", "harness_host_cpus", "bare_host_cpus", "bare_iters", "note", "started_utc",
           "check_s"]
# Checked whenever the grid has them, by the backend a cell runs and its options, not by a variant's
# name, which each config chooses: eager pytorch fp16 at 224 px, batch 32 and 64, the cells that
# follow the host's speed the most in the reference sweep (docs/method.md), and the same with CUDA
# graph replay at batch 32, where replay gains the most over eager launches.
ALWAYS = [{"backend_impl": "pytorch", "cuda_graphs": False, "precision": "fp16", "device": "cuda", "resolution": 224,
           "batch_size": 32},
          {"backend_impl": "pytorch", "cuda_graphs": False, "precision": "fp16", "device": "cuda", "resolution": 224,
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
    from inferbench.sweep.grid import Cell, backend_of, measurement_for, options_of

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


def bare_supports(impl: str) -> bool:
    from inferbench.selfcheck.bareloop import BACKENDS

    return impl in BACKENDS


class Side:
    """One side's fresh process, speaking the check's line protocol (a JSON request a line, a JSON
    answer a line; see inferbench.selfcheck.harness_side). Its stderr goes to a file: a side's log
    must never fill a pipe and stall it."""

    def __init__(self, argv: list[str], env: dict):
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        from inferbench.process import lifeline

        lifeline.adopt(self.proc.pid)  # stopped with the check if its Snakemake dies mid-measurement

    def _read_line(self, timeout_s: float) -> str | None:
        box = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        return box[0] if box and box[0] else None

    def wait_ready(self, timeout_s: float) -> bool:
        return (self._read_line(timeout_s) or "").strip() == "ready"

    def send(self, request: dict) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout_s: float) -> dict:
        line = self._read_line(timeout_s)
        if line is None:
            return {"error": f"no answer ({self.last_error()})"}
        return json.loads(line)

    def ask(self, request: dict, timeout_s: float) -> dict:
        self.send(request)
        return self.receive(timeout_s)

    def last_error(self) -> str:
        if self.proc.poll() is None:
            return "timed out"
        self.log.seek(0)
        last = (self.log.read().strip().splitlines() or ["no output"])[-1]
        return f"exit {self.proc.returncode}: {last[:300]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        from inferbench.process import lifeline

        lifeline.release(self.proc.pid)
        self.log.close()


def harness_argv(row, config_path: Path, results_dir: Path) -> list[str]:
    cell = {"model": row["model"], "backend": row["backend"], "device": row["device"], "precision": row["precision"],
            "resolution": int(row["resolution"]), "batch_size": int(row["batch_size"])}
    return [sys.executable, "-m", "inferbench.selfcheck.harness_side", "--config", str(config_path),
            "--results", str(results_dir), "--cell", json.dumps(cell)]


def bare_argv(spec: dict) -> list[str]:
    return [sys.executable, "-m", "inferbench.selfcheck.bareloop", "--spec", json.dumps(spec), "--serve"]


class PairCpu:
    """The CPU both sides launch from during one pair: the fastest free one when the pair starts
    (inferbench.measure.hostcpu), claimed for the pair so that no cell on another GPU takes it. The
    coordinator's own thread goes back to its CPUs at once: it only waits while the sides measure."""

    def __init__(self, enabled: bool, near: set[int] | None = None):
        from inferbench.measure.hostcpu import can_pin

        self.enabled = enabled and can_pin()
        self.near = near or set()
        self.picker = None

    def __enter__(self) -> int | None:
        if not self.enabled:
            return None
        from inferbench.measure.hostcpu import FastestCpu

        allowed = os.sched_getaffinity(0)
        self.picker = FastestCpu(cpus=sorted(allowed & self.near) or None)
        cpu = self.picker.pick()
        os.sched_setaffinity(0, allowed)
        return cpu

    def __exit__(self, *exc) -> None:
        if self.picker:
            self.picker.close()
            self.picker = None


def _near_cpus(gpu: str | None) -> set[int]:
    """The CPUs nearest the GPU, where NVML names them (as the cells pin)."""
    try:
        from inferbench.measure.telemetry.gpu import NvmlReader

        return NvmlReader(int(gpu) if gpu and gpu.isdigit() else 0).local_cpus() or set()
    except Exception:  # no NVML, no GPU: every CPU is a candidate
        return set()


def measure_paired(row, config: dict, config_path: Path, results_dir: Path, env: dict, go: dict,
                   timeout_s: float, pairs: int = PAIRS, progress=print) -> dict:
    """Both sides of one cell started and loaded at once, then `pairs` pairs of blocks, one side at
    a time. The result's figures are the pairs' medians (see the module docstring)."""
    from inferbench.selfcheck.harness_side import block_settings

    spec = bare_spec(row, config, results_dir)
    settings = block_settings(measurement_of(config, row["device"]))
    spec.update(warmup_s=settings.warmup_min_s, timed_s=settings.min_time_s)
    sides = {"harness": Side(harness_argv(row, config_path, results_dir), env), "bare": Side(bare_argv(spec), env)}
    try:
        failed = load_sides(sides, go)
        if failed:
            return {"note": failed}
        near = _near_cpus(go.get("CUDA_VISIBLE_DEVICES")) if row["device"] == "cuda" else set()
        pin = row["device"] == "cuda" and bool(spec.get("pin_fastest_cpu", True))
        blocks, cpus, failed = run_pairs(sides, {"harness": "ips", "bare": "bare_ips"}, pairs, timeout_s, pin, near,
                                         progress)
        if failed:
            return {"note": failed}
        return paired_result(blocks["harness"], blocks["bare"], cpus)
    finally:
        for side in sides.values():
            side.stop()


def run_pairs(sides: dict, figure: dict, pairs: int, timeout_s: float, pin: bool, near: set[int],
              progress=print) -> tuple[dict, list, str]:
    """`pairs` pairs of blocks from two loaded sides ({name: Side}), one side measuring at a time,
    the first side first in even pairs and second in odd ones, both on the pair's CPU (PairCpu).
    figure: each side's throughput key in its answers. Returns (blocks by side, each pair's CPU,
    "" or why it stopped)."""
    first, second = list(sides)
    blocks: dict[str, list[dict]] = {first: [], second: []}
    cpus = []
    for i in range(pairs):
        order = (first, second) if i % 2 == 0 else (second, first)
        with PairCpu(pin, near) as cpu:
            cpus.append(cpu)
            for name in order:
                answer = sides[name].ask({"op": "block", "cpu": cpu}, timeout_s)
                if "error" in answer:
                    return blocks, cpus, f"{name} side failed in pair {i + 1}: {answer['error']}"
                blocks[name].append(answer)
        a, b = blocks[first][-1][figure[first]], blocks[second][-1][figure[second]]
        progress(f"  pair {i + 1}/{pairs} ({' '.join(order)}, CPU {cpu}): {first} {a:,.0f}, {second} {b:,.0f}, "
                 f"ratio {a / b:.3f}")
    return blocks, cpus, ""


def load_sides(sides: dict, go: dict) -> str:
    """Start-up and load of every side, the loads at the same time; "" or why a side failed."""
    for name, side in sides.items():
        if not side.wait_ready(READY_TIMEOUT_S):
            return f"{name} side did not start ({side.last_error()})"
    for side in sides.values():  # the loads overlap: only the measuring is one at a time
        side.send({"op": "load", "env": go})
    for name, side in sides.items():
        loaded = side.receive(READY_TIMEOUT_S)
        if "error" in loaded:
            return f"{name} side could not load: {loaded['error']}"
    return ""


def paired_result(harness: list[dict], bare: list[dict], cpus: list) -> dict:
    """The check's figures from the pairs' blocks: per-pair ratios harness over bare, their median
    (the check's ratio) and extremes, and each side's median figure and launch cost."""
    ratios = [h["ips"] / b["bare_ips"] for h, b in zip(harness, bare)]

    def median_of(blocks, key):
        values = [blk[key] for blk in blocks if blk.get(key) is not None]
        return statistics.median(values) if values else None

    return {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "pairs": len(ratios), "harness_ips": median_of(harness, "ips"), "bare_ips": median_of(bare, "bare_ips"),
            "harness_host_launch_us": median_of(harness, "host_launch_us"),
            "bare_host_launch_us": median_of(bare, "bare_host_launch_us"),
            "bare_iters": int(sum(blk["bare_iters"] for blk in bare)),
            "cpus": " ".join(str(c) for c in cpus if c is not None) or None}


def measurement_of(config: dict, device: str) -> dict:
    from inferbench.sweep.grid import measurement_for

    return measurement_for(config, device)


def check(summary: pd.DataFrame, config: dict, results_dir: Path, env: dict | None = None,
          timeout_s: float = 900.0, progress=print, gpus: list[str] | None = None,
          rows: dict | None = None, config_path: Path | None = None, pairs: int = PAIRS) -> pd.DataFrame:
    """gpus: the GPUs the check may measure on at once, one cell each (default: the one the
    environment makes visible). rows: filled in as each cell ends (position in the sample -> row),
    so that a caller stopped part way keeps what was measured (table_of). config_path: the
    resolved config the harness side reads (default: written from `config` into a temp file)."""
    from inferbench.sweep.grid import backend_of

    selected = select_cells(summary)
    env = dict(env or os.environ)
    gpus = gpus or [None]
    rows = {} if rows is None else rows
    items = list(enumerate(selected.iterrows(), 1))
    with tempfile.TemporaryDirectory(prefix="inferbench-check-") as scratch:
        if config_path is None:
            import yaml

            config_path = Path(scratch) / "config.resolved.yaml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        todo_cpu, todo_gpu = [], []
        for i, (_, row) in items:
            if not bare_supports(backend_of(config, row["backend"])):
                rows[i] = _row(row, {"note": NOT_CHECKED}, None, 0.0)
                progress(f"[{i}/{len(items)}] {_name(row)}: {NOT_CHECKED}")
                continue
            (todo_gpu if row["device"] == "cuda" else todo_cpu).append((i, row))
        work = (config, Path(config_path), Path(results_dir), env, timeout_s, progress, len(items), rows, pairs)
        try:
            for i, row in todo_cpu:  # alone, as CPU cells are measured
                _measure(i, row, {}, *work)
            _on_gpus(todo_gpu, gpus, work)
        except KeyboardInterrupt as exc:
            raise CheckStopped(dict(rows)) from exc
    return table_of(rows)


class CheckStopped(KeyboardInterrupt):
    """The check was interrupted; `rows` are those measured before it, not the cells it killed."""

    def __init__(self, rows: dict):
        super().__init__("harness check stopped")
        self.rows = rows


def table_of(rows: dict) -> pd.DataFrame:
    """The check's table from the rows measured so far, in the sample's order."""
    return pd.DataFrame([rows[i] for i in sorted(rows)], columns=COLUMNS)


def sample_size(summary: pd.DataFrame) -> int:
    return len(select_cells(summary))


def _on_gpus(todo, gpus, work) -> None:
    """One thread per GPU takes the next cell and measures its pairs on that GPU."""
    pending: queue.Queue = queue.Queue()
    for item in todo:
        pending.put(item)

    def serve(gpu):
        go = {} if gpu is None else {"CUDA_VISIBLE_DEVICES": gpu, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        while True:
            try:
                i, row = pending.get_nowait()
            except queue.Empty:
                return
            _measure(i, row, go, *work)

    threads = [threading.Thread(target=serve, args=(gpu,)) for gpu in gpus[:max(1, len(todo))]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _name(row) -> str:
    return f"{row['backend']} {row['precision']} {row['device']} {row['resolution']} px batch {row['batch_size']}"


def _measure(i: int, row, go: dict, config, config_path, results_dir, env, timeout_s, progress, total,
             rows, pairs) -> None:
    """Measure one cell's pairs, keep the row in rows[i], then say so (the progress line may save
    the rows)."""
    started = time.time()
    where = f" on GPU {go['CUDA_VISIBLE_DEVICES']}" if go.get("CUDA_VISIBLE_DEVICES") else ""
    progress(f"[{i}/{total}] {_name(row)}{where}: loading both sides")
    try:
        result = measure_paired(row, config, config_path, results_dir, env, go, timeout_s, pairs, progress)
    except (OSError, ValueError, KeyError) as exc:
        result = {"note": f"could not set up the check: {type(exc).__name__}: {exc}"}
    out = rows[i] = _row(row, result, started, time.time() - started)
    if out["ratio"] is not None:
        shown = (f"ratio {out['ratio']:.3f} (pairs {out['ratio_min']:.3f} to {out['ratio_max']:.3f}; harness "
                 f"{out['harness_ips']:,.0f}, bare {out['bare_ips']:,.0f} images/s; sweep/harness "
                 f"{out['sweep_ratio']:.3f})")
    else:
        shown = out["note"]
    progress(f"[{i}/{total}] {_name(row)}{where}: {shown} ({out['check_s']:.1f} s)")


def _row(row, result: dict, started: float | None, seconds: float) -> dict:
    sweep = float(row["throughput_ips"])
    harness = result.get("harness_ips")
    return {"backend": row["backend"], "precision": row["precision"], "resolution": int(row["resolution"]),
            "batch_size": int(row["batch_size"]), "io": row["io"], "harness_ips": harness,
            "bare_ips": result.get("bare_ips"), "ratio": result.get("ratio"), "pairs": result.get("pairs"),
            "ratio_min": result.get("ratio_min"), "ratio_max": result.get("ratio_max"), "sweep_ips": sweep,
            "sweep_ratio": sweep / harness if harness else None, "device": row["device"],
            "gpu_busy_pct": row.get("gpu_busy_pct"), "ips_spread_pct": row.get("ips_spread_pct"),
            "sweep_host_launch_us": row.get("host_launch_us"),
            "harness_host_launch_us": result.get("harness_host_launch_us"),
            "bare_host_launch_us": result.get("bare_host_launch_us"),
            "harness_host_cpus": result.get("cpus"), "bare_host_cpus": result.get("cpus"),
            "bare_iters": result.get("bare_iters"), "note": result.get("note", ""),
            "started_utc": (datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds")
                            if started else None),
            "check_s": seconds}


def not_checked(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of cells whose backend has no bare loop: listed, not failed."""
    if table.empty or "note" not in table.columns:
        return table.iloc[0:0]
    return table[table["note"].astype(object).fillna("").astype(str) == NOT_CHECKED]


def host_changed(table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose sweep_ratio is outside RATIO_BAND: the sweep's figure and the paired harness
    figure disagree, so the host (or the sweep's process) changed between them."""
    if table.empty or "sweep_ratio" not in table.columns:
        return table.iloc[0:0]
    lo, hi = RATIO_BAND
    ratio = pd.to_numeric(table["sweep_ratio"], errors="coerce")
    return table[ratio.notna() & ((ratio < lo) | (ratio > hi))]


def outside_band(table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose paired ratio is outside RATIO_BAND, or that failed to measure (a backend with no
    bare loop is not among them: not_checked)."""
    if table.empty:
        return table
    lo, hi = RATIO_BAND
    ratio = pd.to_numeric(table["ratio"], errors="coerce")
    skipped = table.index.isin(not_checked(table).index)
    return table[~skipped & (ratio.isna() | (ratio < lo) | (ratio > hi))]


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
