"""Tables: every cell shown, the best per batch marked, speedups against pytorch fp32."""

import pandas as pd
import pytest

from inferbench import cli, tables
from inferbench.errors import UserError
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
    assert "★" in md and "skipped [" in md and "TensorRT libraries are not installed" in md
    assert "Details at 224 px" in md
    assert '<td class="best">' in (tmp_path / "t.html").read_text()


def test_unknown_resolution_is_a_user_error(summary):
    with pytest.raises(UserError, match="resolution 999"):
        tables.tidy_table(summary, 999)


def test_missing_summary_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["tables", "--summary", str(tmp_path / "nope.parquet"), "--csv", str(tmp_path / "x")]) == 2
    assert "summary not found" in capsys.readouterr().err
