"""Outputs gated by accuracy: the tolerance rule on numbers (measured ones among them), and what
the views do with an `inaccurate` cell (shown, marked, never starred, ranked, a baseline or a
finding; ok -> inaccurate is a regression)."""

from __future__ import annotations

import math

import pytest

from inferbench.measure.tolerance import arithmetic, disagreement, tolerance_abs
from inferbench.reporting import compare, findings, tables
from inferbench.reporting.summary import SPEEDUP_COLUMN, normalise, prepared, tidy_table
from synthetic import synthetic_summary

# (arithmetic, max_abs_err, top-1 agreement, largest reference logit): real ok cells
MEASURED_OK = [
    ("fp16", 0.0083, 1.0, 7.4),   # the H200 record's worst fp16 cell (ResNet-18, 512 px)
    ("fp16", 0.0070, 1.0, 6.1),   # its worst at 224 px
    ("fp32", 1.0e-5, 1.0, 7.4),   # its worst fp32 cell
    ("fp32", 1.6e-6, 1.0, 1.43),  # torchscript, CPU, 32 px
    ("fp16", 1.3e-3, 1.0, 1.43),  # pytorch fp16, CPU, 32 px
]


@pytest.mark.parametrize("arith, err, top1, scale", MEASURED_OK)
def test_every_measured_ok_cell_passes_with_margin(arith, err, top1, scale):
    assert disagreement(arith, err, top1, scale) == ""
    assert disagreement(arith, 5 * err, top1, scale) == ""  # and five times its error too


@pytest.mark.parametrize("arith", ["fp32", "fp16", "bf16"])
def test_a_foreign_model_fails_by_far(arith):
    """ResNet-18's logits (largest 1.43) against another network's: top-1 0%, errors of about 2."""
    reason = disagreement(arith, 2.0, 0.0, 1.43)
    assert reason.startswith("outputs disagree with the fp32 reference: top-1 agreement 0.0%, max abs err 2, "
                             "tolerance "), reason
    assert 2.0 > 10 * tolerance_abs(arith, 1.43)


def test_the_tolerance_scales_with_the_reference():
    """The same relative error is as right on a model with ten times larger logits."""
    assert disagreement("fp16", 0.05, 1.0, 10.0) == ""
    assert disagreement("fp16", 0.05, 1.0, 1.0) != ""
    assert tolerance_abs("fp16", 10.0) == pytest.approx(10 * tolerance_abs("fp16", 1.0))


def test_precisions_are_told_apart():
    """An fp16-sized error is wrong for fp32 (TF32 leaking in), right for fp16 and for fp32 asked to use TF32."""
    assert disagreement("fp32", 6e-3, 1.0, 6.1) != ""
    assert disagreement("fp16", 6e-3, 1.0, 6.1) == ""
    assert disagreement(arithmetic("fp32", tf32=True), 6e-3, 1.0, 6.1) == ""
    assert arithmetic("fp16", tf32=True) == "fp16"
    assert tolerance_abs("bf16", 1.0) > tolerance_abs("fp16", 1.0) > tolerance_abs("fp32", 1.0)


def test_nan_or_infinite_outputs_never_pass():
    assert disagreement("fp16", math.nan, 0.0, 6.1) != ""
    assert disagreement("fp16", math.inf, 0.0, 6.1) != ""
    # logits flushed to zero by fp16 (mobilenet_v3_small, random weights): as wrong as they are small
    assert disagreement("fp16", 4.7e-10, 0.0, 4.7e-10) != ""


# ---------------------------------------------------------------- the views


@pytest.fixture(scope="module")
def summary():
    # normalised: synthetic rows lack the columns the aggregation joins in (work per image, ceilings)
    return normalise(synthetic_summary(resolutions=(224,), batch_sizes=(8,), devices=("cuda",)))


def _fastest_ok(df):
    ok = df[(df["status"] == "ok") & (df["io"] == "device")]
    return ok["throughput_ips"].idxmax()


def _inaccurate(df, index):
    out = df.copy()
    out.loc[index, "status"] = "inaccurate"
    out.loc[index, "reason"] = disagreement("fp32", 2.0, 0.0, 1.43)
    return out


def test_an_inaccurate_cell_keeps_its_figures_marked_and_is_never_starred(summary):
    i = _fastest_ok(summary)
    cell = summary.loc[i]
    df = _inaccurate(summary, i)
    tidy = tidy_table(df)
    row = tidy[(tidy["backend"] == cell["backend"]) & (tidy["precision"] == cell["precision"])
               & (tidy["io"] == "device")].iloc[0]
    assert row["throughput_ips"] == cell["throughput_ips"] and not row["best_in_batch"]
    assert tidy[tidy["io"] == "device"]["best_in_batch"].sum() == 1  # the star went to an ok cell
    md = tables.to_markdown(tidy)
    line = next(x for x in md.splitlines() if x.startswith(f"| {row['series']} |"))
    assert f"{tables.INACCURATE_MARK} {tables.fmt_sig(cell['throughput_ips'])}" in line and tables.BEST_MARK not in line
    assert "inaccurate: outputs disagree with the fp32 reference: top-1 agreement 0.0%" in md
    html = tables.to_html_fragment(tidy)
    assert 'class="inaccurate"' in html


def test_an_inaccurate_baseline_gives_no_speedups(summary):
    base = summary[(summary["backend"] == "pytorch") & (summary["precision"] == "fp32")
                   & (summary["io"] == "device")].index[0]
    tidy = tidy_table(_inaccurate(summary, base))
    device = tidy[tidy["io"] == "device"]
    assert device[SPEEDUP_COLUMN].isna().all()


def test_an_inaccurate_cell_is_named_in_no_finding_but_the_alert(summary):
    i = _fastest_ok(summary)
    cell = summary.loc[i]
    name = f"{cell['backend']}·{cell['precision']}"
    items = findings.derive_findings(_inaccurate(summary, i))
    alerts = [f for f in items if f.alert]
    assert len(alerts) == 1 and "outputs are not the model's" in alerts[0].sentences[0]
    best = next(f for f in items if f.title == "Best backend and precision per resolution")
    assert name not in " ".join(best.sentences), best.sentences
    failed = next(f for f in items if f.title.startswith("Cells that did not run"))
    assert "inaccurate" not in " ".join(failed.sentences)
    df = prepared(_inaccurate(summary, i))
    assert name not in set(findings.best_per_batch(df).table["fastest"])


def test_ok_to_inaccurate_counts_as_a_regression(summary):
    new = _inaccurate(summary, _fastest_ok(summary))
    table, counts = compare.compare(summary, new)
    assert counts["broke"] == 1 and compare.has_regression(table, counts)
    assert "(ok -> inaccurate)" in counts["broke_cells"][0]
