"""Findings derived from a summary: what a reader should take away, computed, never typed in.

Each function looks at one question (who is fastest, what does half precision buy,
who needs the least memory, what does it cost in accuracy, which numbers are noisy,
what did not run) and returns a `Finding`: sentences plus the table behind them.
"""

from __future__ import annotations

import json

import math
from dataclasses import dataclass, field

import pandas as pd

from inferbench.reporting import timebudget
from inferbench.reporting.summary import (COMPARABLE, NOT_OK_STATUSES, SPEEDUP_COLUMN, is_baseline, ok_cells,
                                          prepared)

DEFAULT_CV_THRESHOLD = 0.05  # std/mean above 5%: the median still holds, but compare with care
# A timed loop keeps a GPU busy near 100% unless the host cannot launch kernels fast enough.
HOST_BOUND_BUSY_PCT = 90.0
DEFAULT_TOP1_THRESHOLD = 0.99  # below 99% top-1 agreement a precision change is visible to users
HALF_PRECISIONS = ("fp16", "bf16")


@dataclass
class Finding:
    title: str
    sentences: list[str]
    table: pd.DataFrame | None = field(default=None)
    alert: bool = False  # shown at the very top of the report: read this before any figure


def short_name(row) -> str:
    """backend·precision (device and io are said by the group the row is in)."""
    return f"{row['backend']}·{row['precision']}"


def group_name(device: str, io: str, multi_io: bool) -> str:
    return f"{device}, io={io}" if multi_io else device


# ---------------------------------------------------------------- fastest


def best_per_resolution(df: pd.DataFrame) -> Finding:
    """The sweep's question, per resolution: which backend (or variant) and precision is fastest
    on the model alone (io=device), on the GPU when any GPU cell ran, by how much over pytorch
    fp32, and whether its lead over the best other backend·precision beats the noise by the
    rule `inferbench compare` applies to two runs (inferbench.reporting.noise)."""
    from inferbench.reporting.noise import noise_limit

    ok = ok_cells(df)
    ok = ok[ok["io"] == "device"]
    device = "cuda" if (ok["device"] == "cuda").any() else "cpu"
    ok = ok[ok["device"] == device]
    title = "Best backend and precision per resolution"
    if ok.empty:
        return Finding(title, ["No cell ran successfully with io=device, so nothing is best."])
    rows, sentences = [], []
    for resolution, cells in ok.groupby("resolution", sort=True):
        ranked = cells.sort_values("throughput_ips", ascending=False)
        first = ranked.iloc[0]
        # the runner-up is another backend·precision, not the winner at another batch size
        others = ranked[(ranked["backend"] != first["backend"]) | (ranked["precision"] != first["precision"])]
        second = others.iloc[0] if len(others) else None
        speedup = first.get(SPEEDUP_COLUMN)
        row = {"resolution": int(resolution), "device": device, "best": short_name(first),
               "batch_size": int(first["batch_size"]), "throughput_ips": round(float(first["throughput_ips"]), 1),
               "speedup_vs_pytorch_fp32": round(float(speedup), 2) if pd.notna(speedup) else None,
               "runner_up": "", "runner_up_batch_size": None, "runner_up_ips": None, "lead_pct": None,
               "noise_limit_pct": None, "verdict": "no other backend·precision ran"}
        text = (f"At {resolution} px on {device}, {short_name(first)} is fastest: {first['throughput_ips']:,.0f} "
                f"images/s at batch {int(first['batch_size'])}")
        text += (f", {speedup:.2f}× pytorch fp32 at that batch" if pd.notna(speedup) else
                 ", with no ok pytorch fp32 cell at that batch to compare with")
        if second is not None:
            lead = float(first["throughput_ips"]) / float(second["throughput_ips"]) - 1
            limit = noise_limit(first, second)
            beyond = math.log1p(lead) > math.log1p(limit)
            row.update(runner_up=short_name(second), runner_up_batch_size=int(second["batch_size"]),
                       runner_up_ips=round(float(second["throughput_ips"]), 1), lead_pct=round(100 * lead, 1),
                       noise_limit_pct=round(100 * limit, 1), verdict="beyond noise" if beyond else "within noise")
            text += (f". Its lead over {short_name(second)} (batch {int(second['batch_size'])}) is "
                     f"{100 * lead:.1f}%, " + ("beyond" if beyond else "within") + f" the noise limit of "
                     f"{100 * limit:.1f}%" + ("" if beyond else ": the two are not told apart"))
        rows.append(row)
        sentences.append(text + ".")
    return Finding(title, sentences, pd.DataFrame(rows))


def best_per_batch(df: pd.DataFrame) -> Finding:
    ok = ok_cells(df)
    title = "Fastest backend and precision per resolution and batch size"
    if ok.empty:
        return Finding(title, ["No cell ran successfully, so nothing is fastest."])
    rows = []
    for keys, cells in ok.groupby(COMPARABLE, sort=False):
        ranked = cells.sort_values("throughput_ips", ascending=False)
        first = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        rows.append({
            **dict(zip(COMPARABLE, keys)),
            "fastest": short_name(first),
            "throughput_ips": round(float(first["throughput_ips"]), 1),
            "runner_up": short_name(second) if second is not None else "",
            "margin_pct": round(100 * (first["throughput_ips"] / second["throughput_ips"] - 1), 1)
            if second is not None else None,
        })
    table = pd.DataFrame(rows)
    multi_io = table["io"].nunique() > 1
    sentences = []
    for (device, io), part in table.groupby(["device", "io"], sort=False):
        wins = part["fastest"].value_counts()
        leader, n = wins.index[0], int(wins.iloc[0])
        text = f"On {group_name(device, io, multi_io)}, {leader} is fastest in {n} of {len(part)} resolution×batch cells"
        others = [f"{name} in {int(k)}" for name, k in wins.iloc[1:].items()]
        close = part[part["margin_pct"].notna() & (part["margin_pct"] < 3)]
        text += ("; " + ", ".join(others) if others else "") + "."
        if len(close):
            text += f" In {len(close)} of them the lead over the runner-up is under 3%, within typical run-to-run drift."
        sentences.append(text)
    return Finding(title, sentences, table)


# ---------------------------------------------------------------- half precision


def half_precision_speedup(df: pd.DataFrame) -> Finding:
    """Throughput of fp16/bf16 over fp32 of the same backend, device, io, resolution and batch."""
    title = "What half precision buys: speedup over fp32 of the same backend"
    ok = ok_cells(df)
    match = ["model", "backend", "device", "io", "resolution", "batch_size"]
    fp32 = ok[ok["precision"] == "fp32"][match + ["throughput_ips"]].rename(columns={"throughput_ips": "fp32_ips"})
    half = ok[ok["precision"].isin(HALF_PRECISIONS)].merge(fp32, on=match)
    if half.empty:
        return Finding(title, ["No backend has both an ok fp32 cell and an ok fp16/bf16 cell to compare."])
    half = half.assign(ratio=half["throughput_ips"] / half["fp32_ips"])
    table = (half.groupby(["backend", "precision", "device", "io"], sort=False)["ratio"]
             .agg(median_speedup="median", min_speedup="min", max_speedup="max", cells="count")
             .round(3).reset_index())
    multi_io = table["io"].nunique() > 1
    sentences = [
        f"{r.backend}·{r.precision} on {group_name(r.device, r.io, multi_io)}: {r.median_speedup:.2f}× fp32 "
        f"(median of {r.cells} cells, range {r.min_speedup:.2f}–{r.max_speedup:.2f}×)"
        for r in table.sort_values("median_speedup", ascending=False).itertuples()
    ]
    return Finding(title, sentences, table)


# ---------------------------------------------------------------- memory


def memory_ranking(df: pd.DataFrame) -> Finding:
    """Ranks series by peak memory relative to pytorch fp32 in the same cell (so batch size cancels)."""
    title = "Memory ranking (peak memory relative to pytorch fp32 in the same cell)"
    ok = ok_cells(df)
    ok = ok[ok["memory_peak_mb"].notna()]
    base = ok[is_baseline(ok)]
    base = base[COMPARABLE + ["memory_peak_mb"]].rename(columns={"memory_peak_mb": "base_mb"})
    rel = ok.merge(base, on=COMPARABLE, how="left")
    if rel.empty:
        return Finding(title, ["No ok cell recorded peak memory."])
    rel = rel.assign(ratio=rel["memory_peak_mb"] / rel["base_mb"])
    table = (rel.groupby(["device", "series", "memory_source"], sort=False)
             .agg(median_ratio_to_pytorch_fp32=("ratio", "median"), max_peak_mb=("memory_peak_mb", "max"),
                  cells=("memory_peak_mb", "count"))
             .round(3).reset_index().sort_values(["device", "median_ratio_to_pytorch_fp32", "max_peak_mb"]))
    sentences = []
    for device, part in table.groupby("device", sort=False):
        ranked = part.dropna(subset=["median_ratio_to_pytorch_fp32"])
        what = "GPU memory" if (part["memory_source"] == "gpu").all() else "host RSS"
        if ranked.empty:
            sentences.append(f"On {device}: no pytorch fp32 baseline to rank {what} against.")
            continue
        order = ", ".join(f"{r.series} {r.median_ratio_to_pytorch_fp32:.2f}×" for r in ranked.itertuples())
        sentences.append(f"On {device}, {what} from least to most: {order}.")
    return Finding(title, sentences, table)


# ---------------------------------------------------------------- accuracy


def accuracy_losses(df: pd.DataFrame, top1_threshold: float = DEFAULT_TOP1_THRESHOLD) -> Finding:
    """Worst top-1 agreement and largest max_abs_err per series against the fp32 reference."""
    title = "Accuracy against the fp32 pytorch reference"
    ok = ok_cells(df)
    ok = ok[~is_baseline(ok)]
    ok = ok[ok["top1_agreement"].notna() | ok["max_abs_err"].notna()]
    if ok.empty:
        return Finding(title, ["No ok cell recorded accuracy against the reference."])
    table = (ok.groupby(["series", "precision"], sort=False)
             .agg(worst_top1_agreement=("top1_agreement", "min"), worst_max_abs_err=("max_abs_err", "max"),
                  cells=("status", "count"))
             .reset_index().sort_values("worst_top1_agreement"))
    below = table[table["worst_top1_agreement"] < top1_threshold]
    sentences = []
    for precision in ("fp16", "bf16", "fp32"):
        part = table[table["precision"] == precision]
        if part.empty:
            continue
        worst = part.iloc[0]
        sentences.append(f"{precision}: top-1 agreement at worst {100 * worst['worst_top1_agreement']:.2f}% "
                         f"({worst['series']}); max_abs_err up to {part['worst_max_abs_err'].max():.1e}.")
    if below.empty:
        sentences.append(f"Every series keeps top-1 agreement at or above {100 * top1_threshold:.0f}%.")
    else:
        names = ", ".join(below["series"])
        sentences.append(f"Below {100 * top1_threshold:.0f}% top-1 agreement somewhere: {names}.")
    return Finding(title, sentences, table)


def inaccurate_cells(df: pd.DataFrame) -> Finding | None:
    """Cells whose outputs disagree with the fp32 reference beyond their precision's tolerance
    (inferbench.measure.tolerance): read before any figure, since none of theirs is the model's.
    None when there are none."""
    bad = df[df["status"] == "inaccurate"]
    if bad.empty:
        return None
    cols = [c for c in ("series", "resolution", "batch_size", "top1_agreement", "max_abs_err", "reason")
            if c in bad.columns]
    table = bad[cols].drop_duplicates(["series", "resolution", "batch_size"]).round(6).reset_index(drop=True)
    names = "; ".join(f"{r.series} at {r.resolution} px, batch {r.batch_size}: {r.reason}" for r in table.itertuples())
    count = f"{len(table)} cell" + ("s" if len(table) > 1 else "")
    return Finding(f"Outputs that disagree with the fp32 reference in {count}", [
        f"These cells ran, but their outputs are not the model's: {names}. Their figures are in the tables, "
        "marked, and left out of every ranking, speedup baseline, figure and finding. A wrong artifact is the usual "
        "cause: delete it and run snakemake again, which exports it again and measures its cells again."],
        table, alert=True)


# ---------------------------------------------------------------- noise


def noisy_cells(df: pd.DataFrame, cv_threshold: float = DEFAULT_CV_THRESHOLD) -> Finding:
    title = f"Noisy cells (latency cv above {100 * cv_threshold:g}%)"
    ok = ok_cells(df)
    noisy = ok[ok["latency_cv"] > cv_threshold]
    if noisy.empty:
        measured = ok["latency_cv"].notna().sum()
        return Finding(title, [f"None of {measured} ok cells has a latency cv above {100 * cv_threshold:g}%."])
    table = noisy[["series", "resolution", "batch_size", "latency_cv", "latency_ms_median", "latency_ms_p99"]]
    table = table.sort_values("latency_cv", ascending=False).round(4).reset_index(drop=True)
    sentences = [f"{len(noisy)} of {len(ok)} ok cells vary by more than {100 * cv_threshold:g}% (std/mean) "
                 f"between iterations; compare them with care. Worst: {table.iloc[0]['series']} at "
                 f"{table.iloc[0]['resolution']} px, batch {table.iloc[0]['batch_size']}, "
                 f"cv {100 * table.iloc[0]['latency_cv']:.1f}%."]
    return Finding(title, sentences, table)


def is_host_bound(busy_pct) -> bool:
    """The GPU sat idle between kernels during the timed window: the pace was the host's."""
    return busy_pct is not None and not pd.isna(busy_pct) and float(busy_pct) < HOST_BOUND_BUSY_PCT


def row_host_bound(row) -> bool:
    """Host-bound, told per call where the call's issue time was measured (host_bound), else by
    the GPU's busy share over the window."""
    flag = row.get("host_bound")
    if flag is not None and not pd.isna(flag):
        return bool(flag)
    return is_host_bound(row.get("gpu_busy_pct"))


def graph_variants(ok: pd.DataFrame) -> dict[str, list[str]]:
    """Per backend a sweep runs, its variants that replay CUDA graphs (their recorded options say
    `cuda_graphs: true`): what removes the host's launches from a host-bound cell."""
    out: dict[str, list[str]] = {}
    for (impl, backend), rows in ok.groupby(["backend_impl", "backend"], sort=False):
        options = rows["backend_options"].dropna()
        if any(json.loads(o).get("cuda_graphs") is True for o in options if str(o).startswith("{")):
            out.setdefault(impl, []).append(backend)
    return out


def host_bound_cells(df: pd.DataFrame) -> Finding | None:
    """GPU cells whose host could not keep up: the host's time to issue a call was at least 0.8 of
    the GPU's time for it (or, without that figure, the GPU sat idle part of the window). None when
    no GPU cell has either reading (a CPU-only sweep, or NVML unavailable)."""
    title = "Host-bound GPU cells (issuing a call took at least 0.8 of the GPU's time for it)"
    ok = ok_cells(df)
    gpu = ok[ok["device"] == "cuda"] if "device" in ok.columns else ok.iloc[0:0]
    known = gpu[gpu["host_bound"].notna() | gpu["gpu_busy_pct"].notna()] if len(gpu) else gpu
    if known.empty:
        return None
    bound = known[known.apply(row_host_bound, axis=1)]
    if bound.empty:
        return Finding(title, [f"None of the {len(known)} GPU cells measured was host-bound: their figures are "
                               "the GPU's."])
    cols = [c for c in ("series", "resolution", "batch_size", "enqueue_ms_median", "latency_ms_median",
                        "gpu_busy_pct", "host_launch_us") if c in bound.columns]
    table = bound[cols].sort_values(["series", "resolution", "batch_size"]).round(3).reset_index(drop=True)
    graphs = graph_variants(ok)
    remedies = []
    for impl in dict.fromkeys(bound["backend_impl"]):
        if bound[bound["backend_impl"] == impl]["backend"].isin(graphs.get(impl, [])).all():
            continue
        if graphs.get(impl):
            remedies.append(f"{impl}: the sweep's {', '.join(graphs[impl])} replays CUDA graphs")
        else:
            remedies.append(f"{impl}: no variant of this sweep replays CUDA graphs")
    sentences = [f"{len(bound)} of {len(known)} GPU cells were host-bound: their throughput is how fast this host "
                 "issues the calls, so it moves with the CPU, its load and the process, and says little about the "
                 "GPU or the format. Larger batches or CUDA graphs take the host out of the loop."]
    if remedies:
        sentences.append("Variants that remove the launches: " + "; ".join(remedies) + ".")
    return Finding(title, sentences, table)


def round_spread(df: pd.DataFrame, limit_pct: float = 5.0) -> Finding | None:
    """How far apart each cell's rounds were: the part of a figure a rerun may move."""
    ok = ok_cells(df)
    if "ips_spread_pct" not in ok.columns or ok["ips_spread_pct"].notna().sum() == 0:
        return None
    measured = ok[ok["ips_spread_pct"].notna()]
    title = f"Spread between rounds (cells whose rounds differed by more than {limit_pct:g}%)"
    wide = measured[measured["ips_spread_pct"] > limit_pct]
    median = measured["ips_spread_pct"].median()
    if wide.empty:
        return Finding(title, [f"All {len(measured)} cells' rounds agreed within {limit_pct:g}% "
                               f"(median spread {median:.1f}%)."])
    cols = [c for c in ("series", "resolution", "batch_size", "throughput_ips", "ips_spread_pct", "gpu_busy_pct",
                        "sm_clock_mhz_mean", "host_launch_us", "host_cpus") if c in wide.columns]
    table = wide[cols].sort_values("ips_spread_pct", ascending=False).round(1).reset_index(drop=True)
    return Finding(title, [f"{len(wide)} of {len(measured)} cells had rounds more than {limit_pct:g}% apart "
                           f"(median spread over all cells {median:.1f}%). Their throughput is the median round; "
                           "treat differences within their spread as noise."], table)


def _context(r) -> str:
    """What the row says about why a check may differ: a launch-bound GPU, rounds far apart."""
    parts = []
    busy, spread = getattr(r, "gpu_busy_pct", None), getattr(r, "ips_spread_pct", None)
    if busy is not None and pd.notna(busy) and is_host_bound(busy):
        parts.append(f"GPU busy {busy:.0f}%")
    if spread is not None and pd.notna(spread):
        parts.append(f"rounds {spread:.1f}% apart")
    return f" ({', '.join(parts)})" if parts else ""


def harness_check(check: pd.DataFrame | None, state: str | None = None,
                  sample: int | None = None) -> tuple[list[Finding], Finding | None]:
    """(warnings for the top of the report, the section "Harness check" or None).
    state: "complete", "partial" (a check stopped after some of its `sample` cells) or "missing"
    (the report was asked for a check that is not there); None: the caller has no check to give."""
    from inferbench.selfcheck.harnesscheck import RATIO_BAND, host_changed, not_checked, outside_band

    if state == "missing":
        return [Finding("No harness check", [
            "This run has no harness_check.csv: its figures were not measured again by an independent "
            "bare loop. Run the sweep to its end (snakemake makes the check before the report)."],
            alert=True)], None
    if check is None:
        return [], None
    lo, hi = RATIO_BAND
    title = "Harness check"
    if check.empty and state != "partial":
        return [], Finding(title, ["No cell ran ok, so none was checked."])
    warnings = []
    if state == "partial":
        warnings.append(Finding("Harness check not finished", [
            f"The harness check was stopped after {len(check)} of the {sample} cells in its sample "
            "(its rows are from harness_check.partial.csv); the other cells were not measured again."],
            alert=True))
    if check.empty:
        return warnings, None
    off, skipped, moved = outside_band(check), not_checked(check), host_changed(check)
    ratios = pd.to_numeric(check["ratio"], errors="coerce").dropna()
    paired = "pairs" in check.columns and pd.to_numeric(check["pairs"], errors="coerce").notna().any()
    how = ("each by the harness (the cell's own phases) and by an independent bare loop, in alternation, in two "
           "fresh processes launching from the same CPU (inferbench.selfcheck.harnesscheck). Ratio = the median "
           "over the pairs of harness over bare throughput" if paired else
           "each by an independent bare loop in a fresh process. Ratio = harness over bare throughput")
    sentences = [f"{len(check) - len(skipped)} of the sweep's cells were measured again, {how}; within "
                 f"[{lo}, {hi}] the harness measured what a plain loop measures."]
    if len(ratios):
        sentences.append(f"Ratios from {ratios.min():.3f} to {ratios.max():.3f}; {len(off)} outside the band.")
    if len(skipped):
        sentences.append(f"Not checked (no bare loop for the backend; not a failure): "
                         + ", ".join(_check_name(r) for r in skipped.itertuples()) + ".")
    section = Finding(title, sentences, check.round(3))
    if not off.empty:
        names = "; ".join(_check_name(r) + ": " + (f"{r.ratio:.3f}" if pd.notna(r.ratio) else str(r.note))
                          + _pair_range(r) + _context(r) for r in off.itertuples())
        warnings.append(Finding(f"Harness check failed for {len(off)} of {len(check) - len(skipped)} cells", [
            f"The harness and an independent bare loop, measured in alternation, disagreed beyond [{lo}, {hi}] "
            f"on these cells: {names}. That is the harness's problem, not the host's: do not rank backends on "
            "these cells until it is found; see \"Harness check\" below."], off.round(3), alert=True))
    if not moved.empty:
        names = "; ".join(f"{_check_name(r)}: sweep {r.sweep_ips:,.0f}, paired harness {r.harness_ips:,.0f} "
                          f"images/s ({r.sweep_ratio:.3f}; launch {_us(r.sweep_host_launch_us)} in the sweep, "
                          f"{_us(r.harness_host_launch_us)} in the check)" for r in moved.itertuples())
        warnings.append(Finding(f"The host changed between the sweep and its check for {len(moved)} cells", [
            f"The sweep's own figure is outside [{lo}, {hi}] of what the same harness measured in the check: "
            f"{names}. The harness agreed with the bare loop there, so the difference is the host's (its CPUs' "
            "speed, its load) or the sweep's process: such a figure is only as good as the host was at that "
            "moment."], moved.round(3), alert=True))
    return warnings, section


def _check_name(r) -> str:
    return f"{r.backend} {r.precision} {r.device} {r.resolution} px b{r.batch_size}"


def _pair_range(r) -> str:
    lo, hi = getattr(r, "ratio_min", None), getattr(r, "ratio_max", None)
    return f" (pairs {lo:.3f} to {hi:.3f})" if lo is not None and pd.notna(lo) and pd.notna(hi) else ""


def _us(value) -> str:
    return f"{value:.1f} µs" if value is not None and pd.notna(value) else "not measured"


# ---------------------------------------------------------------- share of the GPU


def share_of_peak(df: pd.DataFrame) -> Finding | None:
    """Per resolution, the fastest GPU cell (io=device) in TFLOP/s and as a share of its GPU's
    measured ceiling at its precision (inferbench.records.efficiency): None where no cell has one
    (a CPU-only run, or a summary from before the ceiling was measured)."""
    if "pct_of_peak" not in df.columns:
        return None
    ok = ok_cells(df)
    ok = ok[(ok["device"] == "cuda") & (ok["io"] == "device") & ok["pct_of_peak"].notna()]
    if ok.empty:
        return None
    rows, sentences = [], []
    for resolution, cells in ok.groupby("resolution", sort=True):
        best = cells.loc[cells["throughput_ips"].idxmax()]
        rows.append({"resolution": int(resolution), "best": short_name(best), "batch_size": int(best["batch_size"]),
                     "throughput_ips": round(float(best["throughput_ips"]), 1),
                     "gflop_per_image": round(float(best["gflop_per_image"]), 3),
                     "achieved_tflops": round(float(best["achieved_tflops"]), 1),
                     "peak_tflops": round(float(best["peak_tflops"]), 1),
                     "pct_of_peak": round(float(best["pct_of_peak"]), 1)})
        sentences.append(
            f"At {resolution} px, the fastest GPU cell, {short_name(best)} at batch {int(best['batch_size'])} "
            f"({best['throughput_ips']:,.0f} images/s × {best['gflop_per_image']:.3g} GFLOP per image), does "
            f"{best['achieved_tflops']:.1f} TFLOP/s: {best['pct_of_peak']:.1f}% of the "
            f"{best['precision']} peak measured on its GPU ({best['peak_tflops']:.1f} TFLOP/s).")
    top = ok.loc[ok["pct_of_peak"].idxmax()]
    sentences.append(f"The highest share of any GPU cell: {top['pct_of_peak']:.1f}% ({short_name(top)}, "
                     f"{int(top['resolution'])} px, batch {int(top['batch_size'])}).")
    sentences.append("FLOPs count 2 per multiply-accumulate, convolutions and matrix products only "
                     "(FlopCounterMode); the peak is a dense matrix product of the same precision, fp32 without "
                     "TF32, measured in this sweep.")
    return Finding("Share of the GPU's measured peak", sentences, pd.DataFrame(rows))


# ---------------------------------------------------------------- what did not run


def failures_by_reason(df: pd.DataFrame) -> Finding:
    title = "Cells that did not run, by reason"
    bad = df[df["status"].isin(NOT_OK_STATUSES)]
    if bad.empty:
        return Finding(title, [f"All {len(df)} cells ran."])
    rows = []
    for (status, reason), cells in bad.groupby(["status", "reason"], sort=False):
        rows.append({"status": status, "reason": reason or "no reason recorded", "cells": len(cells),
                     "series": ", ".join(dict.fromkeys(cells["series"]))})
    table = pd.DataFrame(rows).sort_values(["status", "cells"], ascending=[True, False]).reset_index(drop=True)
    counts = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
    sentences = [f"{len(bad)} of {len(df)} cells did not produce a measurement ({counts})."]
    sentences += [f"{r.status} ×{r.cells}: {r.reason}" for r in table.itertuples()]
    return Finding(title, sentences, table)


def derive_findings(summary: pd.DataFrame, cv_threshold: float = DEFAULT_CV_THRESHOLD,
                    top1_threshold: float = DEFAULT_TOP1_THRESHOLD, check: pd.DataFrame | None = None,
                    exports: list[dict] | None = None, check_state: str | None = None) -> list[Finding]:
    """check: the harness check's table (inferbench.selfcheck.harnesscheck), when the run made one,
    and check_state its state (harnesscheck.read_check); exports: the run's export records
    (exports.json), for the sweep's clock."""
    from inferbench.selfcheck.harnesscheck import sample_size

    df = prepared(summary)
    sample = sample_size(summary) if check_state == "partial" else None
    warnings, check_section = harness_check(check, check_state, sample)
    items = [
        *warnings,
        inaccurate_cells(df),
        best_per_resolution(df),
        best_per_batch(df),
        share_of_peak(df),
        half_precision_speedup(df),
        memory_ranking(df),
        accuracy_losses(df, top1_threshold),
        noisy_cells(df, cv_threshold),
        host_bound_cells(df),
        round_spread(df),
        check_section,
        failures_by_reason(df),
        time_budget(summary, exports, check),
        gpu_busy_spans(summary, check),
    ]
    return [f for f in items if f is not None]


def gpu_busy_spans(summary: pd.DataFrame, check: pd.DataFrame | None = None) -> Finding | None:
    """Where the time went, per GPU: None where no cell names the GPU it ran on."""
    spans = timebudget.gpu_spans(summary, check)
    if not (spans["part"] == "cells").any():
        return None
    return Finding("Where the time went: each GPU's busy span", timebudget.gpu_span_sentences(spans),
                   spans.round({"span_s": 1, "held_s": 1, "idle_pct": 1}))


def time_budget(summary: pd.DataFrame, exports: list[dict] | None = None, check: pd.DataFrame | None = None) -> Finding:
    table, sentences = timebudget.summarize(summary, exports, check)
    return Finding("Where the time went (seconds, summed over cells)", sentences,
                   table.round(1) if not table.empty else None)
