"""A suspected regression measured again before a gate fails on it: the cell of OLD and the cell of
NEW, each loaded in a fresh process from its own run's config and artifacts with the harness's
own phases (inferbench.selfcheck.harness_side), then timed in alternation, block by block, from the
same CPU (the pairing of inferbench.selfcheck.harnesscheck).

Why: one run holds no information about how far a second run can move. On a shared machine a
whole cell can slow by nearly 2x with its rounds agreeing (a tiny CPU sweep run twice on a busy
2-core machine: onnxruntime 32 px batch 1 at 1,325 and 709 images/s), and on a VM a launch-bound
GPU cell by 1.6x. Measured in alternation, seconds apart, both runs' cells meet the same host, so
what is left of the difference is the runs' own: their configs, their artifacts.

Only where OLD and NEW ran the same code and libraries on the same machine (ENVIRONMENT columns
equal): then everything that can differ between their cells is here to load again. Otherwise
(another commit, an upgraded image) the difference may be the code, which cannot be loaded again,
and the verdict from the rows stands.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pandas as pd

ENVIRONMENT = ("git_commit", "hostname", "python_version", "torch_version", "torchvision_version",
               "onnxruntime_version", "inferbench_version", "driver_version", "gpu_name")
CONFIRM_MARGIN = 0.05  # measured in alternation, NEW must be this much slower, in every pair


def why_not(old_dir, new_dir, old_row, new_row) -> str:
    """"" where the cell can be measured again from both runs, else the reason it cannot."""
    for folder in (old_dir, new_dir):
        folder = Path(folder)
        if not folder.is_dir() or not (folder / "config.resolved.yaml").is_file():
            return f"{folder} is not a results folder with its config (an archive or a summary cannot be rerun)"
    differ = [c for c in ENVIRONMENT if str(old_row.get(c)) != str(new_row.get(c))]
    if differ:
        return "the runs differ in " + ", ".join(differ) + ": the difference may be the code, which cannot be rerun"
    if new_row.get("device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "a CUDA cell, and no CUDA device here"
    return ""


def measure_again(row, old_dir, new_dir, pairs: int = 6, timeout_s: float = 600.0, progress=print) -> dict:
    """The cell of both runs in alternation: {"ratio": median over pairs of OLD over NEW
    throughput, "ratio_min", "ratio_max", "old_ips", "new_ips"} or {"note": why it failed}."""
    from inferbench.selfcheck.harnesscheck import Side, _near_cpus, harness_argv, load_sides, run_pairs

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sides = {"OLD": Side(harness_argv(row, Path(old_dir) / "config.resolved.yaml", Path(old_dir)), env),
             "NEW": Side(harness_argv(row, Path(new_dir) / "config.resolved.yaml", Path(new_dir)), env)}
    try:
        failed = load_sides(sides, {})
        if failed:
            return {"note": failed}
        cuda = row["device"] == "cuda"
        blocks, _, failed = run_pairs(sides, {"OLD": "ips", "NEW": "ips"}, pairs, timeout_s, cuda,
                                      _near_cpus(None) if cuda else set(), progress)
        if failed:
            return {"note": failed}
    finally:
        for side in sides.values():
            side.stop()
    ratios = [o["ips"] / n["ips"] for o, n in zip(blocks["OLD"], blocks["NEW"])]
    return {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "old_ips": statistics.median(b["ips"] for b in blocks["OLD"]),
            "new_ips": statistics.median(b["ips"] for b in blocks["NEW"])}


def confirmed(result: dict) -> bool:
    """NEW slower beyond CONFIRM_MARGIN in the median pair and slower in every pair."""
    return "ratio" in result and result["ratio"] > 1 + CONFIRM_MARGIN and result["ratio_min"] > 1.0
