"""The row builder: a cell's phase results become one shard row per io mode."""

from __future__ import annotations

import json

from inferbench.measure.accuracy import Accuracy
from inferbench.measure.results import IoTiming, Peaks, Started, Worker
from inferbench.measure.rows import CellRows
from inferbench.measure.stats import summarize
from inferbench.measure.timing import Measurement
from inferbench.records.schema import COLUMN_NAMES


def _rows(**phases) -> CellRows:
    rows = CellRows({"model": "resnet18", "backend_options": "{}", "measurement": "{}"}, ["device", "host"],
                    Worker(threads=2, warm=True, cells_before=3, rss_peak_known=True), '{"a": 1}', 1.5)
    for name, value in phases.items():
        setattr(rows, name, value)
    return rows


def _timing(io: str) -> IoTiming:
    m = Measurement([1.0, 2.0, 3.0], n_warmup=5, timed_s=0.006, stopped_by="min_reached", warmup_s=0.01)
    return IoTiming(io=io, timer="perf_counter", measurement=m, stats=summarize(m.latencies_ms, 2, m.round_latencies()),
                    settings_json=json.dumps({"stopped_by": "min_reached"}))


def test_every_column_is_in_the_shard_schema_and_cell_facts_are_on_every_row():
    rows = _rows(started=Started(at=0.0, worker_start_s=0.2), setup_s=0.3, first_run_ms=9.0,
                 timings={"device": _timing("device"), "host": _timing("host")},
                 peaks=Peaks(100.0, None, None, None, None, {}, {}),
                 accuracy=Accuracy(0.1, 0.01, 1.0, "cpu", 0.5, 6.0)).rows("ok", "")
    assert [r["io"] for r in rows] == ["device", "host"]
    for r in rows:
        assert set(r) <= set(COLUMN_NAMES)
        assert (r["status"], r["gpu_worker"], r["worker_cells_before"], r["num_threads"]) == ("ok", "warm", 3, 2)
        assert (r["worker_start_s"], r["setup_s"], r["first_run_ms"], r["top1_agreement"]) == (0.2, 0.3, 9.0, 1.0)
        assert r["measurement"] == '{"stopped_by": "min_reached"}' and r["n_iters"] == 3


def test_a_failed_io_mode_keeps_its_reason_and_the_other_its_figures():
    rows = _rows(first_run_ms=9.0, timings={"device": _timing("device")})
    rows.fail_io("host", "oom", "OutOfMemoryError: CUDA out of memory")
    device, host = rows.rows("ok", "")
    assert (device["status"], device["first_run_ms"], device["n_iters"]) == ("ok", 9.0, 3)
    assert (host["status"], host["reason"]) == ("oom", "OutOfMemoryError: CUDA out of memory")
    assert "first_run_ms" not in host and "n_iters" not in host


def test_a_cell_that_failed_early_records_what_it_had():
    (row, _) = _rows().rows("skipped", "no CUDA device")
    assert (row["status"], row["reason"], row["backend_options"], row["export_s"]) == \
        ("skipped", "no CUDA device", '{"a": 1}', 1.5)
    assert "load_s" not in row and "setup_s" not in row
