"""Aggregation trusts no shard by its file name: each must be Parquet of the shard schema whose
rows are the cell its path names, with possible values; a bad one is named, with what to do, in
one message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inferbench import cli
from inferbench.records.shard import write_shard

MODEL = "resnet18"


def _rows(backend: str, device: str, resolution: int, batch: int) -> list[dict]:
    ios = ["device"] if device == "cpu" else ["device", "host"]
    median = 1.0 + batch
    # three rounds 4% apart, the middle one at the overall median (as inferbench.measure.stats derives them)
    rounds_ips = [batch * 1000.0 / (median * f) for f in (1.02, 1.0, 0.98)]
    return [{"model": MODEL, "backend": backend, "precision": "fp32", "device": device, "resolution": resolution,
             "batch_size": batch, "io": io, "status": "ok", "reason": "", "latency_ms_median": median,
             "latency_ms_mean": median * 1.01, "latency_ms_min": median * 0.9, "latency_ms_max": median * 1.5,
             "latency_ms_p99": median * 1.4, "throughput_ips": rounds_ips[1], "round_ips": rounds_ips,
             "ips_spread_pct": 100 * (max(rounds_ips) / min(rounds_ips) - 1), "top1_agreement": 1.0,
             "max_abs_err": 2e-6, "run_id": "r"} for io in ios]


def _path(root: Path, backend: str, device: str, resolution: int, batch: int) -> Path:
    return root / "shards" / MODEL / backend / device / "fp32" / f"r{resolution}_b{batch}.parquet"


CELLS = [("pytorch", "cpu", 32, 2), ("onnxruntime", "cpu", 32, 2), ("pytorch", "cuda", 32, 4)]


@pytest.fixture()
def results(tmp_path):
    for cell in CELLS:
        write_shard(_rows(*cell), _path(tmp_path, *cell))
    return tmp_path


def _aggregate(results: Path, capsys) -> tuple[int, str]:
    shards = sorted(str(p) for p in (results / "shards").rglob("*.parquet"))
    capsys.readouterr()
    rc = cli.main(["aggregate", "--shards", *shards, "--out", str(results / "summary.parquet")])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_good_shards_aggregate(results, capsys):
    rc, out = _aggregate(results, capsys)
    assert rc == 0, out
    assert pq.read_table(results / "summary.parquet").num_rows == 4


def test_a_shard_copied_over_another_cells_shard_is_named(results, capsys):
    target = _path(results, "onnxruntime", "cpu", 32, 2)
    shutil.copy(_path(results, "pytorch", "cpu", 32, 2), target)
    rc, out = _aggregate(results, capsys)
    assert rc == 2 and not (results / "summary.parquet").exists(), out
    assert f"{target}: its rows are backend 'pytorch', but its path names backend 'onnxruntime'" in out, out
    assert "Delete each file named above and run snakemake again" in out


def test_a_shard_of_another_batch_size_is_named(results, capsys):
    target = _path(results, "pytorch", "cuda", 32, 4)
    write_shard(_rows("pytorch", "cuda", 32, 8), target)
    rc, out = _aggregate(results, capsys)
    assert rc == 2 and f"{target}: its rows are batch_size 8, but its path names batch_size 4" in out, out


def test_a_parquet_file_of_a_foreign_schema_is_named(results, capsys):
    target = _path(results, "pytorch", "cpu", 32, 2)
    pq.write_table(pa.table({"image": ["cat.png"], "label": [3]}), target)
    rc, out = _aggregate(results, capsys)
    assert rc == 2 and f"{target}: it has columns the shard schema does not know (image, label)" in out, out


def test_shard_columns_of_the_wrong_type_are_named(results, capsys):
    target = _path(results, "pytorch", "cpu", 32, 2)
    pq.write_table(pa.table({"model": [MODEL], "resolution": ["thirty-two"]}), target)
    rc, out = _aggregate(results, capsys)
    assert rc == 2 and f"{target}: its columns do not have the shard schema's types" in out, out


def test_every_bad_shard_is_named_at_once(results, capsys):
    bad = [_path(results, "pytorch", "cpu", 32, 2), _path(results, "pytorch", "cuda", 32, 4)]
    bad[0].write_bytes(b"PAR1 truncated")
    write_shard([dict(r, status="fine") for r in _rows("pytorch", "cuda", 32, 4)], bad[1])
    rc, out = _aggregate(results, capsys)
    assert rc == 2 and "2 shard file(s) cannot be trusted" in out, out
    assert f"{bad[0]}: it is not a readable Parquet file" in out
    assert f"{bad[1]}: status 'fine' is not one of ok, inaccurate, skipped, oom, error" in out


def test_a_file_outside_the_shard_layout_names_no_cell(tmp_path, capsys):
    stray = tmp_path / "part-0.parquet"
    write_shard(_rows("pytorch", "cpu", 32, 2), stray)
    capsys.readouterr()
    assert cli.main(["aggregate", "--shards", str(stray), "--out", str(tmp_path / "s.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"{stray}: its path is not shards/MODEL/BACKEND/DEVICE/PRECISION/rRES_bBATCH.parquet" in err


def test_the_command_says_it_in_one_message_without_a_traceback(results):
    target = _path(results, "onnxruntime", "cpu", 32, 2)
    pq.write_table(pa.table({"image": ["cat.png"]}), target)
    proc = subprocess.run([sys.executable, "-m", "inferbench", "aggregate", "--shards", str(target),
                           "--out", str(results / "summary.parquet")], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert proc.returncode == 2
    assert proc.stderr.startswith("inferbench aggregate: error: 1 shard file(s) cannot be trusted:"), proc.stderr
    assert "Traceback" not in proc.stderr and str(target) in proc.stderr


def _rewrite(path: Path, **values) -> None:
    """The shard with some columns set to other values, its schema kept (as pyarrow would let anyone)."""
    table = pq.read_table(path)
    for name, value in values.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), pa.array([value] * table.num_rows,
                                                                    table.schema.field(i).type))
    pq.write_table(table, path)


def test_a_shard_with_impossible_values_is_named_and_the_summary_is_kept(results, capsys):
    assert _aggregate(results, capsys)[0] == 0
    summary = (results / "summary.parquet").read_bytes()
    target = _path(results, "onnxruntime", "cpu", 32, 2)
    nan = float("nan")
    _rewrite(target, throughput_ips=-1234.5, latency_ms_median=nan, latency_ms_p99=nan, latency_ms_mean=nan,
             latency_ms_min=nan, latency_ms_max=nan, top1_agreement=7.0)
    rc, out = _aggregate(results, capsys)
    assert rc == 2 and "1 shard file(s) cannot be trusted" in out, out
    line = next(x for x in out.splitlines() if str(target) in x)
    assert "throughput_ips is -1234.5, not a finite number above zero" in line, line
    assert "latencies not finite and above zero: latency_ms_median nan, latency_ms_p99 nan" in line, line
    assert "top1_agreement is 7.0, outside [0, 1]" in line, line
    assert "Delete each file named above and run snakemake again" in out
    assert (results / "summary.parquet").read_bytes() == summary  # the finished summary is untouched


def test_a_throughput_the_latencies_do_not_give_is_named(results, capsys):
    """Within the rounds' spread of batch / median latency it is what a cell measures; twice that is not."""
    target = _path(results, "pytorch", "cpu", 32, 2)
    ok_ips = pq.read_table(target).column("throughput_ips")[0].as_py()
    _rewrite(target, throughput_ips=ok_ips * 1.04)  # at the edge of the 4% spread: still possible
    assert _aggregate(results, capsys)[0] == 0
    _rewrite(target, throughput_ips=ok_ips * 2, max_abs_err=-1.0)
    rc, out = _aggregate(results, capsys)
    assert rc == 2 and f"{target}: its values are impossible (device row: max_abs_err is -1.0, below zero)" in out, out
    _rewrite(target, throughput_ips=ok_ips * 2, max_abs_err=float("nan"))  # NaN: accuracy not measured
    rc, out = _aggregate(results, capsys)
    assert rc == 2 and "does not match batch_size / latency_ms_median = 666.667 images/s" in out, out


def test_a_row_that_did_not_run_needs_no_figures(results, capsys):
    target = _path(results, "pytorch", "cpu", 32, 2)
    write_shard([dict(r, status="error", reason="RuntimeError: boom", throughput_ips=None, latency_ms_median=None)
                 for r in _rows("pytorch", "cpu", 32, 2)], target)
    assert _aggregate(results, capsys)[0] == 0
