"""The harness check's choice of cells, its bare loop on a real CPU cell, and its place in the report."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from inferbench.reporting import findings
from inferbench.selfcheck import harnesscheck


def _row(backend, precision, device, res, batch, busy=None, ips=1000.0, status="ok", io="device"):
    return {"model": "resnet18", "backend": backend, "precision": precision, "device": device, "io": io,
            "resolution": res, "batch_size": batch, "status": status, "gpu_busy_pct": busy, "throughput_ips": ips,
            "num_threads": 1, "ips_spread_pct": 1.0}


def test_selection_takes_the_most_launch_bound_cell_of_each_kind_and_the_reference_cell():
    rows = [_row("pytorch", "fp16", "cuda", 224, 32, busy=55), _row("pytorch", "fp16", "cuda", 224, 64, busy=80),
            _row("pytorch", "fp16", "cuda", 512, 64, busy=99), _row("pytorch", "fp32", "cuda", 224, 32, busy=97),
            _row("pytorch", "fp32", "cuda", 512, 32, busy=99.5), _row("onnxruntime", "fp16", "cuda", 256, 40, busy=70),
            _row("onnxruntime", "fp16", "cuda", 224, 32, busy=40, status="error"),
            _row("torchscript", "fp16", "cuda", 224, 32, busy=30, io="host"),
            _row("torchscript", "fp16", "cuda", 224, 40, busy=92),
            _row("pytorch", "fp32", "cpu", 224, 32), _row("pytorch", "fp32", "cpu", 256, 32),
            _row("pytorch", "fp32", "cpu", 224, 64)]
    picked = harnesscheck.select_cells(pd.DataFrame(rows))
    got = sorted(zip(picked["backend"], picked["precision"], picked["device"], picked["resolution"], picked["batch_size"]))
    assert got == sorted([
        ("pytorch", "fp16", "cuda", 224, 32),  # least busy of its kind
        ("pytorch", "fp16", "cuda", 224, 64),  # always checked when in the grid
        ("pytorch", "fp32", "cuda", 224, 32),
        ("onnxruntime", "fp16", "cuda", 256, 40),  # the error cell and host-io rows are not candidates
        ("torchscript", "fp16", "cuda", 224, 40),
        ("pytorch", "fp32", "cpu", 224, 32),  # no busy reading: the least work per call
    ])


def test_the_cuda_graphs_reference_cell_is_found_by_its_backend_and_options_not_its_name():
    def graphs(name, batch, busy, cuda_graphs):
        return dict(_row(name, "fp16", "cuda", 224, batch, busy=busy), backend_impl="pytorch",
                    backend_options=json.dumps({"cuda_graphs": cuda_graphs}))

    rows = [graphs("replayed", 16, 20, True), graphs("replayed", 32, 90, True), graphs("replayed", 64, 95, True),
            graphs("eager_again", 32, 10, False)]
    picked = harnesscheck.select_cells(pd.DataFrame(rows))
    assert sorted(zip(picked["backend"], picked["batch_size"])) == [("eager_again", 32), ("replayed", 16),
                                                                    ("replayed", 32)]


def test_a_ratio_outside_the_band_is_a_finding_at_the_top_of_the_report():
    check = pd.DataFrame([
        {"backend": "pytorch", "precision": "fp16", "resolution": 224, "batch_size": 64, "io": "device",
         "harness_ips": 24612.0, "bare_ips": 39300.0, "ratio": 24612 / 39300, "device": "cuda", "note": "",
         "gpu_busy_pct": 61.0, "ips_spread_pct": 1.0},
        {"backend": "torchscript", "precision": "fp16", "resolution": 224, "batch_size": 64, "io": "device",
         "harness_ips": 40009.0, "bare_ips": 40500.0, "ratio": 40009 / 40500, "device": "cuda", "note": ""},
    ])
    summary = pd.DataFrame([dict(_row("pytorch", "fp16", "cuda", 224, 64, busy=61), latency_ms_median=2.6,
                                 latency_cv=0.01, reason="")])
    items = findings.derive_findings(summary, check=check)
    assert items[0].title.startswith("Harness check failed for 1 of 2 cells")
    assert "pytorch fp16 cuda 224 px b64: 0.626 (GPU busy 61%, rounds 1.0% apart)" in items[0].sentences[0]
    section = next(f for f in items if f.title == "Harness check")
    assert "Ratios from 0.626 to 0.988; 1 outside the band." in section.sentences
    passing = findings.derive_findings(summary, check=check.iloc[1:])
    assert not passing[0].title.startswith("Harness check failed")


def test_the_bare_loop_measures_a_real_cpu_cell_in_a_fresh_process():
    spec = {"model": "resnet18", "seed": 0, "backend": "pytorch", "precision": "fp32", "device": "cpu",
            "resolution": 32, "batch_size": 2, "options": {}, "artifact": None, "threads": 1,
            "warmup_s": 0.05, "timed_s": 0.2}
    proc = subprocess.run([sys.executable, "-m", "inferbench.selfcheck.bareloop", "--spec", json.dumps(spec)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["bare_iters"] >= 50 and out["bare_timer"] == "wall clock"
    assert out["bare_ips"] == pytest.approx(2 / out["bare_median_ms"] * 1000)
    assert 10 < out["bare_ips"] < 1e6


def test_the_report_puts_a_failed_check_before_everything_else(tmp_path):
    from inferbench.reporting import report

    check = pd.DataFrame([{"backend": "pytorch", "precision": "fp16", "resolution": 224, "batch_size": 64,
                           "io": "device", "harness_ips": 24612.0, "bare_ips": 39300.0, "ratio": 24612 / 39300,
                           "device": "cuda", "note": ""}])
    check.to_csv(tmp_path / "harness_check.csv", index=False)
    summary = pd.DataFrame([dict(_row("pytorch", "fp16", "cuda", 224, 64, busy=61), latency_ms_median=2.6,
                                 latency_cv=0.01, reason="", timer="cuda_event", n_warmup=10, n_iters=50,
                                 measurement="{}")])
    md = tmp_path / "report.md"
    report.write_report(summary, tmp_path / "figures", md_path=md, harness_check_path=tmp_path / "harness_check.csv")
    text = md.read_text()
    assert text.index("## Read first") < text.index("## Environment") < text.index("### Harness check\n")
    assert "Harness check failed for 1 of 1 cells" in text


def test_the_report_says_when_the_check_is_missing_or_was_stopped_part_way(tmp_path):
    from inferbench.reporting import report

    summary = pd.DataFrame([dict(_row(b, "fp16", "cuda", 224, 64, busy=61), latency_ms_median=2.6, latency_cv=0.01,
                                 reason="", timer="cuda_event", n_warmup=10, n_iters=50, measurement="{}")
                            for b in ("pytorch", "torchscript")])
    md = tmp_path / "report.md"
    csv = tmp_path / "harness_check.csv"
    report.write_report(summary, tmp_path / "figures", md_path=md, harness_check_path=csv)
    text = md.read_text()
    assert text.index("## Read first") < text.index("### No harness check") < text.index("## Environment")

    pd.DataFrame([{"backend": "pytorch", "precision": "fp16", "resolution": 224, "batch_size": 64, "io": "device",
                   "harness_ips": 39000.0, "bare_ips": 39300.0, "ratio": 39000 / 39300, "device": "cuda",
                   "note": ""}]).to_csv(harnesscheck.partial_path(csv), index=False)
    report.write_report(summary, tmp_path / "figures", md_path=md, harness_check_path=csv)
    text = md.read_text()
    assert "No harness check" not in text
    assert text.index("### Harness check not finished") < text.index("## Environment") < text.index(
        "### Harness check\n")
    assert "stopped after 1 of the 2 cells in its sample" in text


FAKE_SIDE = """
import json, sys
role = sys.argv[1]
print("ready", flush=True)
block = 0
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "load":
        print(json.dumps({"load_s": 0.0}), flush=True)
        continue
    # the host: twice as fast in every other pair, for both sides alike (pair k is each side's k-th block)
    speed = 1000.0 * (2 if block % 2 else 1)
    block += 1
    if role == "harness":
        print(json.dumps({"ips": speed, "median_ms": 1.0, "iters": 50, "host_launch_us": 5.0}), flush=True)
    else:
        print(json.dumps({"bare_ips": speed, "bare_iters": 50, "bare_host_launch_us": 6.0}), flush=True)
"""


def test_pairs_cancel_a_host_whose_speed_changes_twofold_between_pairs(tmp_path, monkeypatch):
    script = tmp_path / "side.py"
    script.write_text(FAKE_SIDE)
    monkeypatch.setattr(harnesscheck, "harness_argv", lambda *a: [sys.executable, str(script), "harness"])
    monkeypatch.setattr(harnesscheck, "bare_argv", lambda spec: [sys.executable, str(script), "bare"])
    monkeypatch.setattr(harnesscheck, "bare_spec", lambda row, config, results: {"pin_fastest_cpu": False})
    monkeypatch.setattr(harnesscheck, "measurement_of", lambda config, device: {"min_time_s": 0.1})
    # the sweep measured the cell while the host was slow: 1,000 images/s
    summary = pd.DataFrame([dict(_row("pytorch", "fp32", "cpu", 32, 2, ips=1000.0), num_threads=1)])
    config = {"model": "resnet18", "seed": 0, "backends": {"pytorch": {}, "mystery": {}}}
    table = harnesscheck.check(summary, config, tmp_path, config_path=tmp_path / "c.yaml", progress=lambda m: None)
    row = table.iloc[0]
    assert row["pairs"] == harnesscheck.PAIRS >= 5
    assert row["ratio"] == pytest.approx(1.0) and row["ratio_min"] == row["ratio_max"] == pytest.approx(1.0)
    assert harnesscheck.outside_band(table).empty  # the paired check sees no harness error...
    # ... where comparing the sweep's figure with a measurement taken at another moment would: the
    # pairs' median is 1,500, so the sweep's figure reads 0.667 of it and is reported as the host's
    assert row["harness_ips"] == pytest.approx(1500.0) and row["sweep_ratio"] == pytest.approx(1000 / 1500)
    assert list(harnesscheck.host_changed(table).index) == [0]
    assert row["harness_host_launch_us"] == 5.0 and row["bare_host_launch_us"] == 6.0


def test_a_backend_without_a_bare_loop_is_listed_as_not_checked_not_failed():
    summary = pd.DataFrame([_row("torch_tensorrt", "fp16", "cuda", 224, 32, busy=95)])
    table = harnesscheck.check(summary, {"backends": {"torch_tensorrt": {}}}, ".", config_path="c.yaml",
                               progress=lambda m: None)
    assert list(table["note"]) == [harnesscheck.NOT_CHECKED]
    assert harnesscheck.outside_band(table).empty and len(harnesscheck.not_checked(table)) == 1
    warnings, section = findings.harness_check(table, "complete")
    assert not warnings
    assert any(s.startswith("Not checked (no bare loop") and "torch_tensorrt fp16" in s for s in section.sentences)


def test_the_report_tells_a_harness_error_from_a_host_that_changed():
    base = {"backend": "pytorch", "precision": "fp16", "device": "cuda", "resolution": 224, "io": "device",
            "pairs": 6, "note": "", "sweep_host_launch_us": 9.5, "harness_host_launch_us": 6.1}
    check = pd.DataFrame([
        dict(base, batch_size=32, harness_ips=24000.0, bare_ips=24100.0, ratio=0.996, ratio_min=0.98, ratio_max=1.01,
             sweep_ips=15000.0, sweep_ratio=15000 / 24000),
        dict(base, batch_size=64, harness_ips=30000.0, bare_ips=39000.0, ratio=0.77, ratio_min=0.75, ratio_max=0.8,
             sweep_ips=30100.0, sweep_ratio=30100 / 30000)])
    warnings, _ = findings.harness_check(check, "complete")
    titles = [w.title for w in warnings]
    assert titles == ["Harness check failed for 1 of 2 cells",
                      "The host changed between the sweep and its check for 1 cells"]
    assert "pytorch fp16 cuda 224 px b64: 0.770 (pairs 0.750 to 0.800)" in warnings[0].sentences[0]
    assert "b32: sweep 15,000, paired harness 24,000" in warnings[1].sentences[0]
    assert "launch 9.5 µs in the sweep, 6.1 µs in the check" in warnings[1].sentences[0]
