"""The time budget: phases per cell folded over io rows, summed by device and backend."""

from __future__ import annotations

import pandas as pd
import pytest

from inferbench.reporting import findings, timebudget


def cell_rows(backend, device="cuda", batch=8, compile_s=0.0, start="2026-11-28T10:00:00+00:00"):
    common = dict(model="m", backend=backend, precision="fp16", device=device, resolution=224, batch_size=batch,
                  status="ok", timestamp_utc=start, job_wall_s=20.0 + compile_s, gpu_wait_s=1.0,
                  worker_start_s=0.5, setup_s=2.0, load_s=3.0 + compile_s, compile_s=compile_s, reference_s=1.5)
    return [dict(common, io="device", warmup_s=0.25, timed_s=1.0),
            dict(common, io="host", warmup_s=0.25, timed_s=2.0)]


def summary():
    return pd.DataFrame(cell_rows("pytorch") + cell_rows("pytorch", batch=16, start="2026-11-28T10:00:20+00:00")
                        + cell_rows("torch_compile", compile_s=10.0, start="2026-11-28T10:00:40+00:00"))


def test_per_cell_folds_io_rows_and_leaves_the_rest_as_other():
    cells = timebudget.per_cell(summary())
    assert len(cells) == 3
    one = cells[cells["backend"] == "pytorch"].iloc[0]
    assert one["timed_s"] == 3.0 and one["warmup_s"] == 0.5  # both io modes
    assert one["load"] == 3.0 and one["compile_s"] == 0.0
    # 20 - (1 + 0.5 + 2 + 3 + 0 + 0.5 + 3 + 1.5) = 8.5
    assert one["other"] == pytest.approx(8.5)
    compiled = cells[cells["backend"] == "torch_compile"].iloc[0]
    assert compiled["load"] == 3.0 and compiled["compile_s"] == 10.0 and compiled["other"] == pytest.approx(8.5)


def test_breakdown_sums_by_backend_with_a_total_that_adds_up():
    table = timebudget.breakdown(summary())
    assert list(table["backend"]) == ["pytorch", "torch_compile", "all"]
    total = table.iloc[-1]
    assert total["cells"] == 3 and total["job wall"] == 70.0 and total["compile"] == 10.0
    phases = [label for _, label in timebudget.PHASES]
    assert table[phases].sum(axis=1).tolist() == pytest.approx(table["job wall"].tolist())


def test_span_runs_from_the_first_start_to_the_last_end():
    # the last cell starts at +40 s and takes 30 s
    assert timebudget.cells_span_s(summary()) == pytest.approx(70.0)


def test_the_report_finding_names_the_largest_phases():
    item = findings.time_budget(summary())
    text = " ".join(item.sentences)
    assert "3 cells' jobs took 70 s" in text and "compile 10 s" in text
    assert "largest phases: other 26 s" in text  # 3 x 8.5 s
    assert "torch_compile on cuda costs the most: 30.0 s on average (1 cell), 10.0 s of it compiling" in text
    assert "about 70 s" in text


def test_shards_without_phases_say_so():
    old = summary().drop(columns=["job_wall_s"])
    assert timebudget.breakdown(old).empty
    assert "No cell recorded its phases" in " ".join(findings.time_budget(old).sentences)


def test_the_first_call_is_its_own_phase():
    df = summary()
    df["first_run_ms"] = 2000.0  # cuDNN's search on the first call, say
    cells = timebudget.per_cell(df)
    one = cells[cells["backend"] == "pytorch"].iloc[0]
    assert one["first_run"] == 2.0 and one["other"] == pytest.approx(6.5)


def test_the_sweep_clock_runs_from_the_first_export_to_the_last_bare_loop():
    exports = [{"started_utc": "2026-11-28T09:59:50+00:00", "job_wall_s": 5.0},
               {"started_utc": "2026-11-28T09:59:52+00:00", "job_wall_s": 4.0}]
    check = pd.DataFrame({"started_utc": ["2026-11-28T10:01:15+00:00", "2026-11-28T10:01:16+00:00"],
                          "check_s": [10.0, 19.0]})
    clock = timebudget.sweep_clock(summary(), exports, check)
    # exports 09:59:50-09:59:56, cells 10:00:00-10:01:10, bare loops 10:01:15-10:01:35
    assert clock["wall_s"] == pytest.approx(105.0) and clock["cells_span_s"] == pytest.approx(70.0)
    assert clock["serial_s"] == pytest.approx(35.0)
    assert clock["exports_s"] == pytest.approx(6.0) and clock["check_s"] == pytest.approx(20.0)
    text = " ".join(findings.time_budget(summary(), exports, check).sentences)
    assert "The sweep's clock" in text and "about 105 s" in text and "35 s of it outside the cells' span" in text
    # the cells alone: no clock beyond their span
    assert timebudget.sweep_clock(summary()) is None


def two_gpu_summary():
    """Four GPU cells on two GPUs of one host, one CPU cell, and a cell skipped before any GPU."""
    def on(gpu, uuid, start, wall, wait=1.0, backend="pytorch", batch=8):
        return [dict(r, hostname="h1", gpu_index=gpu, gpu_uuid=uuid, gpu_wait_s=wait, job_wall_s=wall)
                for r in cell_rows(backend, batch=batch, start=start)]
    rows = (on(0, "GPU-aaaaaaaa-0000", "2026-11-28T10:00:00+00:00", 21.0)            # held 10:00:00-10:00:20
            + on(0, "GPU-aaaaaaaa-0000", "2026-11-28T10:00:30+00:00", 31.0, batch=16)  # held 10:00:30-10:01:00
            + on(1, "GPU-bbbbbbbb-1111", "2026-11-28T10:00:02+00:00", 11.0, backend="torch_compile")
            + on(1, "GPU-bbbbbbbb-1111", "2026-11-28T10:00:20+00:00", 6.0, wait=0.0, backend="onnxruntime"))
    rows += [dict(r, hostname="h1", gpu_index=None, gpu_uuid=None) for r in cell_rows("pytorch", device="cpu")]
    rows += [dict(r, hostname="h1", gpu_index=None, gpu_uuid=None, status="skipped")
             for r in cell_rows("tensorrt", start="2026-11-28T09:00:00+00:00")]
    return pd.DataFrame(rows)


def test_each_gpu_has_its_busy_span_held_seconds_and_idle_share():
    check = pd.DataFrame({"started_utc": ["2026-11-28T10:01:05+00:00", "2026-11-28T10:01:06+00:00"],
                          "check_s": [10.0, 19.0]})
    spans = timebudget.gpu_spans(two_gpu_summary(), check)
    gpus = spans[spans["part"] == "cells"]
    assert list(gpus["gpu_uuid"]) == ["GPU-aaaaaaaa-0000", "GPU-bbbbbbbb-1111"]
    first, second = gpus.iloc[0], gpus.iloc[1]
    # GPU 0: 10:00:00 to 10:01:00, held 20 + 30 s of 60: idle 1/6
    assert (first["cells"], first["span_s"], first["held_s"]) == (2, 60.0, 50.0)
    assert first["idle_pct"] == pytest.approx(100 / 6)
    assert first["first_start_utc"].startswith("2026-11-28T10:00:00") and first["last_end_utc"].startswith("2026-11-28T10:01:00")
    # GPU 1: 10:00:02 to 10:00:26, held 10 + 6 s of 24
    assert (second["gpu_index"], second["span_s"], second["held_s"]) == (1, 24.0, 16.0)
    assert second["idle_pct"] == pytest.approx(100 / 3)
    # the harness check: 10:01:05 to 10:01:25, 29 s of loops
    harness = spans[spans["part"] == "harness check"].iloc[0]
    assert (harness["span_s"], harness["held_s"], harness["cells"]) == (20.0, 29.0, 2)
    item = findings.gpu_busy_spans(two_gpu_summary(), check)
    text = " ".join(item.sentences)
    assert "GPU 0 (GPU-aaaaaaaa…) on h1 60 s, its 2 cells holding it 50 s (idle 17%)" in text
    assert "GPU 1 (GPU-bbbbbbbb…) on h1 24 s, its 2 cells holding it 16 s (idle 33%)" in text
    assert "started their first cells within 2 s of each other and ended their last within 34 s" in text
    assert "The harness check: 20 s" in text
    assert len(item.table) == 3


def test_gpus_without_a_uuid_are_told_apart_by_host_and_index():
    df = two_gpu_summary()
    df["gpu_uuid"] = None
    df.loc[df["gpu_index"] == 1, "hostname"] = "h2"
    df.loc[df["gpu_index"] == 1, "gpu_index"] = 0  # index 0 of another host
    spans = timebudget.gpu_spans(df)
    assert list(zip(spans["host"], spans["gpu_index"], spans["cells"])) == [("h1", 0, 2), ("h2", 0, 2)]


def test_no_gpu_span_without_gpu_cells_or_before_the_columns():
    cpu = two_gpu_summary()
    cpu = cpu[cpu["device"] == "cpu"]
    assert findings.gpu_busy_spans(cpu) is None
    assert findings.gpu_busy_spans(summary()) is None  # shards that name no GPU
