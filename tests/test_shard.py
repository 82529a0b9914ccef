"""Shards: one Parquet file per cell, written atomically in the shard schema, read back with the
columns an older shard lacks filled with nulls, and no column outside the schema."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inferbench.records import shard
from inferbench.records.schema import COLUMN_NAMES, SHARD_SCHEMA


def _row(**kw):
    row = {"model": "resnet18", "backend": "pytorch", "precision": "fp32", "device": "cpu", "resolution": 32,
           "batch_size": 2, "io": "device", "status": "ok", "reason": "", "n_iters": 3,
           "latency_ms_median": 1.5, "latencies_ms": [1.0, 1.5, 2.0], "num_threads": 2, "seed": 0,
           "gpu_index": None}
    row.update(kw)
    return row


def test_a_shard_reads_back_as_written_in_the_shard_schema(tmp_path):
    path = tmp_path / "a" / "b" / "r32_b2.parquet"
    rows = [_row(), _row(io="host", status="skipped", reason="no CUDA device", latencies_ms=None, n_iters=None)]
    shard.write_shard(rows, path)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert pq.read_schema(path).remove_metadata().equals(SHARD_SCHEMA)
    t = shard.read_shards([path])
    assert t.schema.equals(SHARD_SCHEMA)
    back = t.to_pylist()
    assert len(back) == 2
    for original, got in zip(rows, back):
        assert set(got) == set(COLUMN_NAMES)
        for k, v in original.items():
            assert got[k] == v, k
        assert got["export_s"] is None and got["torch_version"] is None


def test_read_shards_fills_missing_columns_with_nulls(tmp_path):
    shard.write_shard([_row()], tmp_path / "new.parquet")
    # an "older" shard: fewer columns, another order, int64 where the schema has int32
    old = pa.table({"batch_size": pa.array([4], pa.int64()), "model": ["resnet18"], "backend": ["onnxruntime"],
                    "status": ["ok"], "latency_ms_median": [2.0], "resolution": pa.array([48], pa.int64())})
    pq.write_table(old, tmp_path / "old.parquet")
    t = shard.read_shards([tmp_path / "new.parquet", tmp_path / "old.parquet"])
    assert t.schema.equals(SHARD_SCHEMA) and t.num_rows == 2
    rows = t.to_pylist()
    assert rows[1]["backend"] == "onnxruntime" and rows[1]["batch_size"] == 4 and rows[1]["resolution"] == 48
    assert rows[1]["latencies_ms"] is None and rows[1]["io"] is None and rows[1]["torch_version"] is None
    assert rows[0]["latencies_ms"] == [1.0, 1.5, 2.0]


def test_read_no_shards_is_an_empty_table():
    t = shard.read_shards([])
    assert t.num_rows == 0 and t.schema.equals(SHARD_SCHEMA)


def test_normalize_rejects_unknown_columns(tmp_path):
    full = shard.normalize({"model": "m"})
    assert list(full) == COLUMN_NAMES and full["model"] == "m" and full["status"] is None
    with pytest.raises(KeyError, match="latency_median_ms"):
        shard.normalize({"model": "m", "latency_median_ms": 1.0})
    with pytest.raises(KeyError):
        shard.write_shard([_row(bogus=1)], tmp_path / "x.parquet")
    assert not list(tmp_path.iterdir())
