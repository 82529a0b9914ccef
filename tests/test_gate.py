"""The regression gate on real runs: two runs of one tiny CPU config, back to back while another
process loads the CPU, pass `compare --fail-on-regression`; a 4x slowdown of one of their cells
does not. And the per-call host-bound flag, from the host's issue time and the GPU's time."""

import multiprocessing
import os

import pandas as pd
import pytest

from inferbench import cli
from inferbench.measure import hostbound, timing
from inferbench.reporting import compare
from sweep import make_checkout, snakemake, stop_forkservers
from synthetic import slowed, write_summary

CONFIG = """
model: mobilenet_v3_small
weights: null
seed: 0
resolutions: [32]
batch_sizes: [1]
precisions: [fp32]
devices: [cpu]
backends: {pytorch: {}, onnxruntime: ONNXRUNTIME}
measurement: {warmup_iters: 2, warmup_min_s: 0.05, min_iters: 10, min_time_s: 0.3, max_time_s: 5, num_buffers: 2,
              cpu_threads: 1}
results_dir: RESULTS
"""


def _spin(stop):
    # at the lowest priority: it takes every CPU cycle left idle (the runs see another busy
    # process, and are `contended`), without slowing the other tests of the suite beside it
    os.nice(19)
    while not stop.is_set():
        sum(range(10_000))


@pytest.mark.slow
def test_the_gate_passes_an_a_a_comparison_under_load_and_catches_real_slowdowns(tmp_path, capsys):
    checkout = make_checkout(tmp_path / "checkout")
    # r1 and r2: one config, twice; r3: the same with ONNX Runtime's graph optimisations off (a
    # real change of the onnxruntime cell, measured 2x to 4x slower on this kind of machine)
    runs = {"r1": "{}", "r2": "{}", "r3": "{graph_optimization_level: disable}"}
    stop = multiprocessing.Event()
    load = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
    load.start()  # another process on the machine, through every run
    try:
        for name, ort_options in runs.items():
            config = tmp_path / f"{name}.yaml"
            config.write_text(CONFIG.replace("RESULTS", name).replace("ONNXRUNTIME", ort_options))
            try:
                snakemake(checkout, tmp_path, config, f"{name}/summary.parquet", f"{name}/config.resolved.yaml")
            finally:
                stop_forkservers(tmp_path / name)
    finally:
        stop.set()
        load.join(5)
    r1, r2, r3 = (str(tmp_path / name) for name in runs)
    first = pd.read_parquet(tmp_path / "r1" / "summary.parquet")
    assert (first["status"] == "ok").all() and first["host_other_cpu_pct"].notna().all()

    assert cli.main(["compare", r1, r2, "--fail-on-regression"]) == 0
    out = capsys.readouterr().out
    assert "2 cells compared" in out and "0 slower" in out, out
    if "measuring again" in out:  # a cell called slower from the rows, measured again: the host's
        assert "not slower when measured again in alternation" in out, out

    assert cli.main(["compare", r1, r3, "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    ort = next(line for line in out.splitlines() if line.startswith("mobilenet_v3_small onnxruntime"))
    assert "slower" in ort and "confirmed slower when measured again in alternation" in out, out

    # one real cell of r1, four times as slow in a summary alone (which cannot be measured again):
    # beyond the contended margin (1.75x) and beyond the cell's own recorded noise, which on a
    # loaded 2-core machine can itself exceed 100% of the latency
    slow = tmp_path / "slow"
    slow.mkdir()
    write_summary(slowed(first, 4.0, first["backend"] == "pytorch"), slow / "summary.parquet")
    assert cli.main(["compare", r1, str(slow), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "1 slower" in out and "the verdict from the rows stands" in out, out


def test_host_bound_is_told_from_the_issue_time_per_call():
    assert hostbound.enqueue_of([0.9, 0.85, 0.95], 1.0, "cuda") == hostbound.Enqueue(0.9, True, "")
    assert hostbound.enqueue_of([0.2, 0.3, 0.25], 1.0, "cuda") == hostbound.Enqueue(0.25, False, "")
    assert hostbound.enqueue_of([0.79], 1.0, "cuda").host_bound is False  # trtexec's 0.8 is the line
    waits = hostbound.enqueue_of([1.0], 1.0, "cuda", waits_for_gpu="its run returns when done")
    assert waits.enqueue_ms_median is None and waits.host_bound is None and "returns when done" in waits.note
    assert hostbound.enqueue_of(None, 1.0, "cpu").note.startswith("a CPU cell")


def test_the_timed_window_keeps_each_calls_issue_time():
    class FakeCudaTimer:  # what CudaEventTimer reports: the event time, and the issue time beside it
        measures_issue = True

        def __init__(self):
            self.n = 0
            self.last_issue_ms = None

        def time_ms(self, step):
            self.n += 1
            self.last_issue_ms = 0.1 * self.n
            return 1.0

    settings = timing.Settings(warmup_iters=2, warmup_min_s=0, min_iters=6, min_time_s=0, rounds=2)
    m = timing.measure(lambda: None, FakeCudaTimer(), settings)
    assert len(m.issue_ms) == len(m.latencies_ms) == 6
    assert m.issue_ms == pytest.approx([0.1 * n for n in range(3, 9)])  # the warm-up's are not kept
    assert timing.measure(lambda: None, timing.PerfCounterTimer(), settings).issue_ms is None
