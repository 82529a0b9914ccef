"""Compare two runs cell by cell, and call each change only when it beats the noise.

The rule (one cell, present and ok in both runs):

    change  = old throughput / new throughput - 1   (> 0: slower; throughput is the median of
              the cell's rounds, each batch / the round's median latency)
    noise_i = relative half-width of the 95% CI of run i's median latency, taken from
              - the per-iteration latencies (`latencies_ms`), by order statistics, when
                the cell kept them; else
              - the stored CI columns (`latency_ms_median_ci95_low/high`); else
              - 1.96 * 1.2533 * cv / sqrt(n_iters), the normal-theory CI of a median; else 0
    spread_i = run i's spread between its rounds (`ips_spread_pct`): how far the cell's own
              rounds, measured seconds apart, already disagreed
    limit   = max(k * sqrt(noise_old**2 + noise_new**2), spread_old, spread_new, floor)
    verdict = "slower" if ln(new/old) > ln(1 + limit), "faster" if ln(old/new) > ln(1 + limit),
              else "within noise"

k (default 2) widens the within-run CI because runs also differ by things a single run
cannot see (clocks, temperature, other tenants); the floor (default 5%, --threshold-pct)
keeps a very steady cell from calling a 1% drift a regression. The log ratio makes
"20% slower" and "20% faster" symmetric. With one round, throughput is batch / median
latency, so the change is the latency's; the latency change is shown beside it.

A cell ok in OLD and skipped, oom or error in NEW is "broke" (a backend missing after an image
upgrade is a breakage too) and counts as a regression; the other way round is "fixed". A cell
in OLD only is "missing" from NEW and counts as a regression as well: NEW did not show it still
works. A cell in NEW only is counted, not compared.
"""

from __future__ import annotations

import math
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from inferbench.errors import UserError
from inferbench.records import archive, schema
from inferbench.reporting import findings, tables

DEFAULT_K = 2.0
DEFAULT_FLOOR_PCT = 5.0
Z95 = 1.96
MEDIAN_SE_FACTOR = 1.2533  # sqrt(pi/2): SE of a normal sample's median over the SE of its mean


# ---------------------------------------------------------------- loading


def load_summary(path) -> pd.DataFrame:
    """A summary from an archive (.tar.gz), a results folder, or a summary.parquet."""
    path = Path(path)
    if path.is_dir():
        return tables.read_summary(path / archive.SUMMARY)
    if not path.exists():
        raise UserError(f"not found: {path} (give an archive .tar.gz, a results folder or a summary.parquet)")
    if path.name.endswith((".tar.gz", ".tgz", ".tar")) or tarfile.is_tarfile(path):
        return tables.normalise(archive.read_summary_from_archive(path))
    return tables.read_summary(path)


# ---------------------------------------------------------------- noise


def median_ci_rel_halfwidth_from_samples(latencies) -> float:
    """Relative half-width of the distribution-free 95% CI of the median (order statistics)."""
    x = np.sort(np.asarray(latencies, dtype=float))
    n = len(x)
    median = float(np.median(x))
    half = Z95 * math.sqrt(n) / 2.0
    lo = max(int(math.floor(n / 2 - half)), 0)
    hi = min(int(math.ceil(n / 2 + half)), n - 1)
    return float(x[hi] - x[lo]) / 2.0 / median


def relative_noise(row) -> float:
    """The cell's own uncertainty about its median latency, as a fraction of it."""
    lat = row.get("latencies_ms")
    if lat is not None and not (isinstance(lat, float) and math.isnan(lat)) and len(lat) >= 5:
        return median_ci_rel_halfwidth_from_samples(lat)
    median = row.get("latency_ms_median")
    lo, hi = row.get("latency_ms_median_ci95_low"), row.get("latency_ms_median_ci95_high")
    if pd.notna(lo) and pd.notna(hi) and pd.notna(median) and median > 0:
        return float(hi - lo) / 2.0 / float(median)
    cv, n = row.get("latency_cv"), row.get("n_iters")
    if pd.notna(cv) and pd.notna(n) and n > 0:
        return Z95 * MEDIAN_SE_FACTOR * float(cv) / math.sqrt(float(n))
    return 0.0


def verdict(change_ratio: float, limit: float) -> str:
    if math.log(change_ratio) > math.log1p(limit):
        return "slower"
    if -math.log(change_ratio) > math.log1p(limit):
        return "faster"
    return "within noise"


# ---------------------------------------------------------------- comparing


def compare(old: pd.DataFrame, new: pd.DataFrame, k: float = DEFAULT_K,
            floor_pct: float = DEFAULT_FLOOR_PCT) -> tuple[pd.DataFrame, dict]:
    """(per-cell comparison of cells ok in both, counts of everything else)."""
    key = schema.CELL_KEY
    old, new = old.drop_duplicates(key), new.drop_duplicates(key)
    both = old.merge(new, on=key, suffixes=("_old", "_new"))
    missing = old.merge(new[key], on=key, how="left", indicator=True).query("_merge == 'left_only'")
    ok_old, ok_new = both["status_old"] == "ok", both["status_new"] == "ok"
    broke = both[ok_old & ~ok_new]
    counts = {
        "missing": len(missing), "missing_cells": [_cell_name(r) for _, r in missing.iterrows()],
        "only_new": len(new) - len(both),
        "fixed": int((~ok_old & ok_new).sum()), "broke": len(broke),
        "broke_cells": [f"{_cell_name(r)} (ok -> {r['status_new']})" for _, r in broke.iterrows()],
        "not_ok_in_both": int((~ok_old & ~ok_new).sum()),
    }
    rows = [_compare_cell(r, k, floor_pct / 100.0) for _, r in both[ok_old & ok_new].iterrows()]
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return table, counts


RESULT_COLUMNS = ["cell", "old_ips", "new_ips", "throughput_change_pct", "old_median_ms", "new_median_ms",
                  "latency_change_pct", "noise_limit_pct", "verdict", "host_bound"]
HOST_BOUND_MARK = "†"


def _cell_name(row) -> str:
    return (f"{row['model']} {row['backend']}·{row['precision']}·{row['device']}·io={row['io']} "
            f"{row['resolution']}px bs{row['batch_size']}")


def _side(row, suffix: str) -> dict:
    return {c: row.get(f"{c}{suffix}") for c in
            ("latencies_ms", "latency_ms_median", "latency_ms_median_ci95_low", "latency_ms_median_ci95_high",
             "latency_cv", "n_iters")}


def round_spread(row, suffix: str) -> float:
    """The run's spread between the cell's rounds, as a fraction (0 when not recorded)."""
    value = row.get(f"ips_spread_pct{suffix}")
    return float(value) / 100.0 if value is not None and pd.notna(value) else 0.0


def _compare_cell(row, k: float, floor: float) -> dict:
    old_ms, new_ms = float(row["latency_ms_median_old"]), float(row["latency_ms_median_new"])
    noise = math.hypot(relative_noise(_side(row, "_old")), relative_noise(_side(row, "_new")))
    # A change no larger than what the cell's own rounds already disagreed by is noise too.
    limit = max(k * noise, round_spread(row, "_old"), round_spread(row, "_new"), floor)
    # Throughput is the median of the rounds: a change is judged on it, the figure users read.
    ratio = float(row["throughput_ips_old"]) / float(row["throughput_ips_new"])
    return {
        "cell": _cell_name(row),
        "old_ips": row["throughput_ips_old"], "new_ips": row["throughput_ips_new"],
        "throughput_change_pct": 100 * (row["throughput_ips_new"] / row["throughput_ips_old"] - 1),
        "old_median_ms": old_ms, "new_median_ms": new_ms,
        "latency_change_pct": 100 * (ratio - 1),
        "noise_limit_pct": 100 * limit,
        "verdict": verdict(ratio, limit),
        "host_bound": findings.is_host_bound(row.get("gpu_busy_pct_old"))
        or findings.is_host_bound(row.get("gpu_busy_pct_new")),
    }


# ---------------------------------------------------------------- printing


def format_report(table: pd.DataFrame, counts: dict) -> str:
    lines = []
    if len(table):
        shown = table.copy()
        for col in ("old_ips", "new_ips", "old_median_ms", "new_median_ms"):
            shown[col] = shown[col].map(tables.fmt_sig)
        for col in ("throughput_change_pct", "latency_change_pct"):
            shown[col] = shown[col].map(lambda x: f"{x:+.1f}%")
        shown["noise_limit_pct"] = shown["noise_limit_pct"].map(lambda x: f"±{x:.1f}%")
        shown["verdict"] = [f"{v} {HOST_BOUND_MARK}" if hb else v for v, hb in zip(shown["verdict"], shown["host_bound"])]
        shown = shown.drop(columns="host_bound")
        shown.columns = ["cell", "old img/s", "new img/s", "Δ img/s", "old median ms", "new median ms",
                         "Δ latency", "limit", "verdict"]
        lines.append(shown.to_string(index=False))
    verdicts = table["verdict"].value_counts() if len(table) else pd.Series(dtype=int)
    lines.append(f"\n{len(table)} cells compared: {int(verdicts.get('faster', 0))} faster, "
                 f"{int(verdicts.get('slower', 0))} slower, {int(verdicts.get('within noise', 0))} within noise.")
    if len(table) and table["host_bound"].any():
        changed = table[table["verdict"] != "within noise"]
        lines.append(f"{HOST_BOUND_MARK} host-bound in OLD or NEW (GPU busy below {findings.HOST_BOUND_BUSY_PCT:g}%): "
                     f"{int(table['host_bound'].sum())} cells, {int(changed['host_bound'].sum())} of the "
                     f"{len(changed)} changes. Such a cell's pace is the host's, which also varies from process "
                     "to process by more than the cell's own noise: rerun before believing its change.")
    lines.append(f"Not compared: {counts['missing']} missing (in OLD only), {counts['only_new']} only in NEW, "
                 f"{counts['not_ok_in_both']} not ok in both, {counts['fixed']} fixed (not ok -> ok), "
                 f"{counts['broke']} broke (ok -> skipped/oom/error).")
    lines += [f"broke: {name}" for name in counts["broke_cells"]]
    lines += [f"missing: {name}" for name in counts["missing_cells"]]
    return "\n".join(lines)


def has_regression(table: pd.DataFrame, counts: dict) -> bool:
    return bool((table["verdict"] == "slower").any()) or counts["broke"] > 0 or counts["missing"] > 0
