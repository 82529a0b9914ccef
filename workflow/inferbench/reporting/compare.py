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

A cell called slower is then measured again where both runs are results folders of the same
code on this machine (inferbench.selfcheck.confirm): OLD's and NEW's cell loaded side by side and
timed in alternation from one CPU. Only if NEW is still slower there (by 5%, in every pair) does it
stay "slower"; otherwise it is "not confirmed": the runs met different hosts.

k (default 2) widens the within-run CI because runs also differ by things a single run
cannot see (clocks, temperature, other tenants); the floor (default 5%, --threshold-pct)
keeps a very steady cell from calling a 1% drift a regression. The log ratio makes
"20% slower" and "20% faster" symmetric. With one round, throughput is batch / median
latency, so the change is the latency's; the latency change is shown beside it.

Cells whose pace is not their own get a wider limit, HOST_MARGIN (a cell is then called slower
only when OLD/NEW throughput exceeds 1 + HOST_MARGIN), with the reason printed:
    host-bound   in either run, the host's time to issue a call was at least 0.8 of the GPU's
                 time for it (or, without that figure, the GPU was busy less than 90%);
    contended    in either run, other processes used at least CONTENDED_PCT of the machine's CPU
                 time while the cell was measured (host_other_cpu_pct).
Such a cell moves with the host's CPUs, not with the code: in A/A comparisons (the same commit and
config twice, back to back, on one machine) host-bound GPU cells moved by up to 1.59x (H100,
pytorch fp16 224 px b64: 36,454 -> 22,956 images/s) and 1.53x (H200), and a contended CPU cell by
1.45x (onnxruntime fp32 32 px b1 on a shared 2-core machine, 2,643 -> 1,823), each with rounds
that agreed within a few percent. HOST_MARGIN = 0.75 passes those and still calls a 2x slowdown.

A cell ok in OLD and inaccurate, skipped, oom or error in NEW is "broke" (a backend missing after
an image upgrade, or one whose outputs no longer match the fp32 reference, is a breakage too) and
counts as a regression; the other way round is "fixed". A cell in OLD only is "missing" from NEW
and counts as a regression as well: NEW did not show it still works. A cell in NEW only is
counted, not compared.
"""

from __future__ import annotations

import math
import tarfile
from pathlib import Path

import pandas as pd

from inferbench.errors import UserError
from inferbench.records import archive, schema
from inferbench.reporting import findings, tables
from inferbench.reporting.noise import (DEFAULT_FLOOR_PCT, DEFAULT_K, median_ci_rel_halfwidth_from_samples,  # noqa: F401
                                        noise_limit, relative_noise, round_spread)
from inferbench.reporting.summary import normalise, read_summary

# ---------------------------------------------------------------- loading


def load_summary(path) -> pd.DataFrame:
    """A summary from an archive (.tar.gz), a results folder, or a summary.parquet."""
    path = Path(path)
    if path.is_dir():
        return read_summary(path / archive.SUMMARY)
    if not path.exists():
        raise UserError(f"not found: {path} (give an archive .tar.gz, a results folder or a summary.parquet)")
    if path.name.endswith((".tar.gz", ".tgz", ".tar")) or tarfile.is_tarfile(path):
        return normalise(archive.read_summary_from_archive(path))
    return read_summary(path)


# ---------------------------------------------------------------- noise


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
                  "latency_change_pct", "noise_limit_pct", "verdict", "host_bound", "contended"]
HOST_BOUND_MARK = "†"
CONTENDED_MARK = "‡"
HOST_MARGIN = 0.75  # see the module docstring: the A/A maxima were 1.45x to 1.59x
CONTENDED_PCT = 10.0


def _contended(value) -> bool:
    return value is not None and not pd.isna(value) and float(value) >= CONTENDED_PCT


def _host_bound(row, suffix: str) -> bool:
    return findings.row_host_bound({"host_bound": row.get(f"host_bound{suffix}"),
                                    "gpu_busy_pct": row.get(f"gpu_busy_pct{suffix}")})


def _cell_name(row) -> str:
    return (f"{row['model']} {row['backend']}·{row['precision']}·{row['device']}·io={row['io']} "
            f"{row['resolution']}px bs{row['batch_size']}")


def _side(row, suffix: str) -> dict:
    return {c: row.get(f"{c}{suffix}") for c in
            ("latencies_ms", "latency_ms_median", "latency_ms_median_ci95_low", "latency_ms_median_ci95_high",
             "latency_cv", "n_iters", "ips_spread_pct")}


def _compare_cell(row, k: float, floor: float) -> dict:
    old_ms, new_ms = float(row["latency_ms_median_old"]), float(row["latency_ms_median_new"])
    limit = noise_limit(_side(row, "_old"), _side(row, "_new"), k, floor)
    host_bound = _host_bound(row, "_old") or _host_bound(row, "_new")
    contended = _contended(row.get("host_other_cpu_pct_old")) or _contended(row.get("host_other_cpu_pct_new"))
    if host_bound or contended:
        limit = max(limit, HOST_MARGIN)
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
        "host_bound": host_bound, "contended": contended,
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
        shown["verdict"] = [v + (f" {HOST_BOUND_MARK}" if hb else "") + (f" {CONTENDED_MARK}" if ct else "")
                            for v, hb, ct in zip(shown["verdict"], shown["host_bound"], shown["contended"])]
        shown = shown.drop(columns=["host_bound", "contended"])
        shown.columns = ["cell", "old img/s", "new img/s", "Δ img/s", "old median ms", "new median ms",
                         "Δ latency", "limit", "verdict"]
        lines.append(shown.to_string(index=False))
    verdicts = table["verdict"].value_counts() if len(table) else pd.Series(dtype=int)
    lines.append(f"\n{len(table)} cells compared: {int(verdicts.get('faster', 0))} faster, "
                 f"{int(verdicts.get('slower', 0))} slower, {int(verdicts.get('within noise', 0))} within noise, "
                 f"{int(verdicts.get('not confirmed', 0))} not confirmed; "
                 f"{int(table['host_bound'].sum()) if len(table) else 0} host-bound, "
                 f"{int(table['contended'].sum()) if len(table) else 0} contended.")
    wide = table[table["host_bound"] | table["contended"]] if len(table) else table
    if len(wide):
        changed = wide[wide["verdict"] != "within noise"]
        lines.append(f"{HOST_BOUND_MARK} host-bound (issuing a call took at least 0.8 of the GPU's time for it, or the "
                     f"GPU was busy less than {findings.HOST_BOUND_BUSY_PCT:g}%) in OLD or NEW: "
                     f"{int(table['host_bound'].sum())} cells. {CONTENDED_MARK} contended (other processes used at "
                     f"least {CONTENDED_PCT:g}% of the machine's CPUs meanwhile) in OLD or NEW: "
                     f"{int(table['contended'].sum())} cells. Their pace is the host's, which moves from run to run "
                     f"by more than their own noise (up to 1.59x in A/A runs): they are gated only beyond "
                     f"±{100 * HOST_MARGIN:.0f}% (OLD over NEW throughput above {1 + HOST_MARGIN:g}); "
                     f"{len(changed)} of them changed beyond that.")
    lines.append(f"Not compared: {counts['missing']} missing (in OLD only), {counts['only_new']} only in NEW, "
                 f"{counts['not_ok_in_both']} not ok in both, {counts['fixed']} fixed (not ok -> ok), "
                 f"{counts['broke']} broke (ok -> inaccurate/skipped/oom/error).")
    lines += [f"broke: {name}" for name in counts["broke_cells"]]
    lines += [f"missing: {name}" for name in counts["missing_cells"]]
    return "\n".join(lines)


def confirm_slower(table: pd.DataFrame, old: pd.DataFrame, new: pd.DataFrame, old_path, new_path,
                   progress=print) -> list[str]:
    """Each cell called slower measured again, OLD and NEW in alternation (inferbench.selfcheck.
    confirm), where both runs can be loaded again; one that is not slower then becomes
    "not confirmed". Changes `table` in place; returns a line per cell saying what was found."""
    from inferbench.selfcheck import confirm

    rows_old = {_cell_name(r): r for _, r in old.drop_duplicates(schema.CELL_KEY).iterrows()}
    rows_new = {_cell_name(r): r for _, r in new.drop_duplicates(schema.CELL_KEY).iterrows()}
    lines = []
    for i in table.index[table["verdict"] == "slower"]:
        name = table.at[i, "cell"]
        reason = confirm.why_not(old_path, new_path, rows_old[name], rows_new[name])
        if reason:
            lines.append(f"{name}: not measured again ({reason}); the verdict from the rows stands")
            continue
        progress(f"measuring again, OLD and NEW in alternation: {name}")
        result = confirm.measure_again(rows_new[name], old_path, new_path, progress=progress)
        if "ratio" not in result:
            lines.append(f"{name}: could not be measured again ({result['note']}); the verdict from the rows stands")
            continue
        seen = (f"OLD over NEW {result['ratio']:.3f} (pairs {result['ratio_min']:.3f} to {result['ratio_max']:.3f}; "
                f"OLD {result['old_ips']:,.0f}, NEW {result['new_ips']:,.0f} images/s)")
        if confirm.confirmed(result):
            lines.append(f"{name}: confirmed slower when measured again in alternation: {seen}")
        else:
            table.at[i, "verdict"] = "not confirmed"
            lines.append(f"{name}: not slower when measured again in alternation: {seen}; the runs' difference "
                         "was the host's")
    return lines


def has_regression(table: pd.DataFrame, counts: dict) -> bool:
    return bool((table["verdict"] == "slower").any()) or counts["broke"] > 0 or counts["missing"] > 0
