"""Export only what will run: on a machine without a GPU, the real Snakemake plans no export
whose every cell would be skipped, and those cells still write a `skipped` shard with the reason
(read from the shared tiny sweep, which started from an empty folder). Runs on the CPU; skipped
where a CUDA device is visible (then those exports are needed)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from inferbench.process.devices import NO_CUDA, cuda_device_count
from inferbench.sweep.config import Cell
from inferbench.sweep.spec import known_skip
from sweep import job_blocks


def cell(backend, device="cuda", precision="fp16"):
    return Cell("resnet18", backend, device, precision, 32, 2)


def test_known_skip_names_the_reason(monkeypatch):
    assert known_skip(cell("pytorch", "cpu", "fp32"), {}, cuda_visible=lambda: False) is None
    assert known_skip(cell("onnxruntime"), {}, cuda_visible=lambda: False) == NO_CUDA
    assert known_skip(cell("onnxruntime"), {}, cuda_visible=lambda: True) is None
    assert "GPUs only" in known_skip(cell("torch_tensorrt", "cpu"), {}, cuda_visible=lambda: True)  # unsupported
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    reason = known_skip(cell("torch_tensorrt"), {}, cuda_visible=lambda: True)
    assert reason.startswith("tensorrt") and "not installed here" in reason and "docker/Dockerfile" in reason
    # in the container the host's libraries say nothing: only the machine's facts count
    assert known_skip(cell("torch_tensorrt"), {}, cuda_visible=lambda: True, libraries=False) is None


@pytest.mark.skipif(cuda_device_count() > 0, reason="a CUDA device is visible: the cuda exports are needed")
def test_no_gpu_no_cuda_exports_and_cells_still_record_why(tiny_sweep):
    # The shared tiny sweep started from an empty folder: its log lists every job it planned.
    jobs = job_blocks(tiny_sweep["log"])
    planned = "\n".join(block for blocks in jobs.values() for block in blocks)
    exports = sorted(set(re.findall(r"artifacts/resnet18/(\S+)\.json", planned)))
    # tiny.yaml: cpu cells are fp32 pytorch/pytorch_cudagraphs/torchscript/onnxruntime at 32 and 48 px
    # (the variant exports nothing); the rest is cuda
    # one ONNX file serves both resolutions
    assert exports == ["onnxruntime/precision-fp32_opset-17",
                       "torchscript/device-cpu_precision-fp32_layout-nchw"], planned[-3000:]
    # every export before every cell: exports come first (priority) and need no more than a cell
    exports_jobs, cells = jobs["export_artifact"], jobs["benchmark_cell"]
    assert len(exports_jobs) == 2 and all("priority: 100" in j for j in exports_jobs)
    assert len(cells) == 32 and not any("priority:" in j for j in cells)
    # the exports' record for the report, which no cell waits for
    record = jobs["exports_done"]
    assert len(record) == 1 and all(f"artifacts/resnet18/{e}.json" in record[0] for e in exports)
    assert not any("exports.json" in j.split("output:")[0] for j in cells)

    # a cuda cell whose artifact was left out: its job ran all the same and said why
    shard = "results/shards/resnet18/onnxruntime/cuda/fp16/r32_b2.parquet"
    (job,) = [j for j in cells if f"output: {shard}" in j]
    assert "artifacts/" not in job.split("output:")[0], job
    rows = pq.read_table(tiny_sweep["work"] / shard).to_pylist()
    assert rows and {(r["status"], r["reason"]) for r in rows} == {("skipped", NO_CUDA)}
    made = sorted(str(p.relative_to(tiny_sweep["results"] / "artifacts" / "resnet18"))[:-len(".json")]
                  for p in (tiny_sweep["results"] / "artifacts").rglob("*.json"))
    assert made == exports, "nothing exported for the cuda cells"


def test_a_cell_waits_for_the_exports_still_running(tmp_path):
    """An export holds the host's exports lock shared while it runs; a cell waits until none does."""
    import time

    from inferbench.process.devices import ExportsRunning

    assert ExportsRunning.wait(tmp_path) == 0.0  # no export has run here
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from inferbench.process.devices import ExportsRunning\n"
        f"with ExportsRunning({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(1.0)")],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        waited = ExportsRunning.wait(tmp_path)
        assert waited > 0.3 and time.perf_counter() - start > 0.3
        assert holder.wait(timeout=10) == 0
    finally:
        holder.kill()
    with ExportsRunning(tmp_path), ExportsRunning(tmp_path):  # exports run several at once
        pass
