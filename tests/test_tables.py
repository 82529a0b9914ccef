"""Tables: every cell shown, the best per batch marked, speedups against pytorch fp32."""

import pandas as pd
import pytest

from inferbench import cli
from inferbench.errors import UserError
from inferbench.reporting import tables
from synthetic import synthetic_summary, write_summary


@pytest.fixture(scope="module")
def summary():
    return synthetic_summary()


def test_tidy_keeps_every_cell_with_reasons(summary):
    tidy = tables.tidy_table(summary, 224)
    assert len(tidy) == (summary["resolution"] == 224).sum()
    skipped = tidy[tidy["status"] == "skipped"]
    assert len(skipped) and (skipped["reason"] != "").all()
    assert skipped["throughput_ips"].isna().all()


def test_best_cell_is_the_fastest_per_device_and_batch(summary):
    tidy = tables.tidy_table(summary, 384)
    for (device, batch), cells in tidy.groupby(["device", "batch_size"]):
        best = cells[cells["best_in_batch"]]
        assert len(best) == 1
        assert best["throughput_ips"].iloc[0] == cells["throughput_ips"].max()
    # torch_compile fp16 is the fastest synthetic GPU configuration at large batches
    big = tidy[(tidy["device"] == "cuda") & (tidy["batch_size"] == 64) & tidy["best_in_batch"]]
    assert big["series"].iloc[0] == "torch_compile·fp16·cuda"


def test_speedup_is_against_pytorch_fp32_of_same_cell(summary):
    tidy = tables.tidy_table(summary, 224)
    cell = lambda b, p: tidy[(tidy.backend == b) & (tidy.precision == p) & (tidy.device == "cuda")
                             & (tidy.batch_size == 8)].iloc[0]
    expected = cell("onnxruntime", "fp16")["throughput_ips"] / cell("pytorch", "fp32")["throughput_ips"]
    assert cell("onnxruntime", "fp16")[tables.SPEEDUP_COLUMN] == pytest.approx(expected)
    assert cell("pytorch", "fp32")[tables.SPEEDUP_COLUMN] == pytest.approx(1.0)


def test_memory_column_uses_gpu_for_cuda_and_rss_for_cpu(summary):
    tidy = tables.tidy_table(summary, 224)
    ok = tidy[tidy.status == "ok"]
    assert set(ok[ok.device == "cpu"]["memory_source"]) == {"host_rss"}
    assert ok[ok.device == "cpu"]["memory_peak_mb"].notna().all()
    assert set(ok[ok.device == "cuda"]["memory_source"]) == {"gpu"}


def test_io_appears_in_labels_only_when_both_modes_exist():
    one = tables.with_series(synthetic_summary(devices=("cuda",), batch_sizes=(1,)))
    both = tables.with_series(synthetic_summary(devices=("cuda",), batch_sizes=(1,), io_modes=("device", "host")))
    assert "pytorch·fp32·cuda" in set(one["series"])
    assert {"pytorch·fp32·cuda·device", "pytorch·fp32·cuda·host"} <= set(both["series"])


def test_cli_writes_csv_md_html(tmp_path, summary):
    write_summary(summary, tmp_path / "summary.parquet")
    rc = cli.main(["tables", "--summary", str(tmp_path / "summary.parquet"), "--resolution", "224",
                   "--csv", str(tmp_path / "t.csv"), "--md", str(tmp_path / "t.md"), "--html", str(tmp_path / "t.html")])
    assert rc == 0
    csv = pd.read_csv(tmp_path / "t.csv")
    assert set(csv["status"]) == {"ok", "skipped", "error"}
    md = (tmp_path / "t.md").read_text()
    assert "| backend·precision·device | batch 1 | batch 8 | batch 64 |" in md
    assert "★" in md and "error [a]" in md
    assert "Skipped at every batch size (torch_tensorrt not importable: TensorRT libraries are not installed)" in md
    assert "Details at 224 px" in md
    assert '<td class="best">' in (tmp_path / "t.html").read_text()


def test_unknown_resolution_is_a_user_error(summary):
    with pytest.raises(UserError, match="resolution 999"):
        tables.tidy_table(summary, 999)


def test_missing_summary_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["tables", "--summary", str(tmp_path / "nope.parquet"), "--csv", str(tmp_path / "x")]) == 2
    assert "summary not found" in capsys.readouterr().err


def test_rows_skipped_at_every_batch_collapse_into_one_line_per_reason(tmp_path):
    """On a machine without a GPU every cuda row is skipped: one line under the table says so,
    instead of rows of "skipped [a]". A row with one skipped cell among ok ones stays a row."""
    df = synthetic_summary(io_modes=("device", "host"))
    no_gpu = (df["device"] == "cuda") & (df["backend"] != "pytorch")
    df.loc[no_gpu, ["status", "reason", "throughput_ips"]] = ["skipped", "no CUDA device", None]
    one = (df["backend"] == "pytorch") & (df["device"] == "cuda") & (df["precision"] == "fp32") & (df["batch_size"] == 64)
    df.loc[one, ["status", "reason", "throughput_ips"]] = ["skipped", "one cell skipped", None]
    tidy = tables.tidy_table(df, 224)

    md = tables.to_markdown(tidy)
    overview = md.split("## Details")[0]
    lines = [ln for ln in overview.splitlines() if ln.startswith("- Skipped at every batch size (no CUDA device): ")]
    assert len(lines) == 1, overview
    assert "onnxruntime·fp16·cuda·host" in lines[0] and "torchscript·fp32·cuda·device" in lines[0]
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert not any(r.startswith("| onnxruntime·fp16·cuda") for r in rows), "collapsed rows are not table rows"
    assert "no CUDA device" not in "\n".join(rows)
    assert any(r.startswith("| pytorch·fp32·cuda·device") and "skipped [" in r for r in rows)  # partly skipped: a row
    assert "[a] skipped: one cell skipped" in md and "no CUDA device\n" not in md

    page = tables.to_html_fragment(tidy)
    assert page.count("<li>Skipped at every batch size (no CUDA device): ") == 1
    assert "<td class=\"label\">onnxruntime·fp16·cuda·host</td>" not in page

    # the CSV keeps one row per cell, with its reason
    tables.write_tables(df, 224, csv_path=tmp_path / "t.csv")
    csv = pd.read_csv(tmp_path / "t.csv")
    assert len(csv) == len(tidy) and (csv["reason"] == "no CUDA device").sum() == no_gpu[df["resolution"] == 224].sum()


def test_a_resolution_where_nothing_ran_says_so():
    df = synthetic_summary(devices=("cuda",))
    df[["status", "reason", "throughput_ips"]] = ["skipped", "no CUDA device", None]
    md = tables.to_markdown(tables.tidy_table(df, 224))
    assert tables.NOTHING_RAN in md and "Details at" not in md and "| backend" not in md
