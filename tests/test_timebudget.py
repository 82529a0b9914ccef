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
