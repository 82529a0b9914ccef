"""Variants: one backend under several names with different options (`pytorch_cudagraphs:
{backend: pytorch, cuda_graphs: true}`). The name is what paths, rows and reports show; the
backend is the code that runs; variants that agree on export options share one artifact.

What reruns when a variant is added or edited is checked on the real workflow in test_pipeline.py
(test_a_new_or_edited_variant_runs_only_its_own_cells); a variant's skipped CPU cells are in the
shared tiny sweep.
"""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from inferbench.records.shardcheck import read_checked
from inferbench.reporting import findings
from inferbench.selfcheck import harnesscheck
from inferbench.sweep import config as cfgmod
from inferbench.sweep import spec as specmod
from inferbench.sweep.config import Cell

from sweep import BIN, TINY, _env


def _config(**backends) -> dict:
    c = yaml.safe_load(TINY.read_text())
    c["backends"] = backends
    c["per_device"] = {}
    return cfgmod.load_config(c)


# ------------------------------------------------------------------ artifacts and job specs


def test_variants_share_an_artifact_unless_an_option_their_export_reads_differs():
    config = _config(onnxruntime={}, onnxruntime_basic={"backend": "onnxruntime", "graph_optimization_level": "basic"},
                     onnxruntime_o18={"backend": "onnxruntime", "opset": 18},
                     torchscript={}, torchscript_plain={"backend": "torchscript", "optimize_for_inference": False},
                     torch_tensorrt={}, torch_tensorrt_o5={"backend": "torch_tensorrt", "optimization_level": 5},
                     pytorch={}, pytorch_cudagraphs={"backend": "pytorch", "cuda_graphs": True})

    def artifact(name, device="cuda"):
        cell = Cell("resnet18", name, device, "fp16", 48, 4)
        key = specmod.artifact_key_for(config, cell)
        return specmod.artifact_manifest(config, cell), key and specmod.export_spec_for(config, name, key).to_json()

    # one export job (same manifest, same spec) for variants that differ only in how they run it
    assert artifact("onnxruntime_basic") == artifact("onnxruntime")
    assert artifact("onnxruntime")[0] == "artifacts/resnet18/onnxruntime/precision-fp16_opset-17.json"
    assert artifact("torchscript_plain") == artifact("torchscript")
    # an option the export reads makes an artifact of its own, under the backend's name
    assert artifact("onnxruntime_o18")[0] == "artifacts/resnet18/onnxruntime/precision-fp16_opset-18.json"
    trt, trt5 = artifact("torch_tensorrt")[0], artifact("torch_tensorrt_o5")[0]
    assert trt == "artifacts/resnet18/torch_tensorrt/device-cuda_precision-fp16_resolution-48.json"
    assert trt5 == trt.replace(".json", "_optimization_level-5.json")
    # the export job holds only the options its export reads
    assert json.loads(artifact("onnxruntime")[1])["options"] == {"opset": 17, "share_across_resolutions": True}
    assert json.loads(artifact("onnxruntime")[1])["backend"] == "onnxruntime"
    assert artifact("pytorch_cudagraphs") == (None, None)


def test_a_variants_cell_job_names_the_backend_it_runs_and_a_plain_backends_job_is_unchanged():
    config = _config(pytorch={}, pytorch_cudagraphs={"backend": "pytorch", "cuda_graphs": True})
    variant = specmod.cell_spec_for(config, Cell("resnet18", "pytorch_cudagraphs", "cuda", "fp16", 32, 2))
    assert variant.impl == "pytorch" and variant.options == {"cuda_graphs": True}
    assert specmod.CellSpec.from_json(variant.to_json()).impl == "pytorch"
    # a backend's own entry writes no backend_impl: its job's parameters, and so its shards, stay valid
    plain = specmod.cell_spec_for(config, Cell("resnet18", "pytorch", "cuda", "fp16", 32, 2)).to_json()
    assert "backend_impl" not in json.loads(plain)


def test_cuda_graph_variants_are_skipped_on_the_cpu_with_the_reason():
    cpu = Cell("resnet18", "some_variant", "cpu", "fp32", 32, 2)
    assert specmod.known_skip(cpu, {"cuda_graphs": True}, lambda: False, backend="pytorch") == \
        "CUDA graphs need a CUDA device"
    assert "CUDA graphs" in specmod.known_skip(cpu, {"mode": "reduce-overhead"}, lambda: False, backend="torch_compile")
    assert specmod.known_skip(cpu, {"mode": "default"}, lambda: False, backend="torch_compile") is None


# ------------------------------------------------------------------ rows and shards


def test_a_variants_cpu_cell_measures_its_own_options_on_the_shared_artifact(tiny_sweep, tmp_path):
    """A real cell: onnxruntime's ONNX file from the tiny sweep, run with the variant's session option."""
    config = dict(tiny_sweep["config"])
    config["backends"] = dict(config["backends"], onnxruntime_basic={"backend": "onnxruntime",
                                                                      "graph_optimization_level": "basic"})
    cell = Cell("resnet18", "onnxruntime_basic", "cpu", "fp32", 32, 2)
    manifest = tiny_sweep["results"] / specmod.artifact_manifest(config, cell)
    assert manifest.is_file()  # exported by the sweep for onnxruntime itself
    out = tmp_path / "shards" / "resnet18" / "onnxruntime_basic" / "cpu" / "fp32" / "r32_b2.parquet"
    proc = subprocess.run([str(BIN / "inferbench"), "cell", "--spec", specmod.cell_spec_for(config, cell).to_json(),
                           f"--artifact={manifest}", "--lock-dir", str(tmp_path / "locks"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = read_checked([out]).to_pylist()  # the path names the variant, and so do the rows
    assert row["status"] == "ok", row["reason"]
    assert (row["backend"], row["backend_impl"]) == ("onnxruntime_basic", "onnxruntime")
    assert json.loads(row["backend_options"])["graph_optimization_level"] == "basic"
    assert row["throughput_ips"] > 0 and row["top1_agreement"] == 1.0 and row["export_s"] > 0


def test_shards_from_before_variants_read_with_their_backend_as_backend_impl(tmp_path):
    path = tmp_path / "shards" / "resnet18" / "onnxruntime" / "cpu" / "fp32" / "r32_b2.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"model": ["resnet18"], "backend": ["onnxruntime"], "device": ["cpu"],
                             "precision": ["fp32"], "resolution": [32], "batch_size": [2], "io": ["device"],
                             "status": ["skipped"], "reason": ["no CUDA device"]}), path)
    (row,) = read_checked([path]).to_pylist()
    assert row["backend_impl"] == "onnxruntime"


# ------------------------------------------------------------------ harness check and report


def test_the_harness_check_runs_the_variants_configuration_and_always_checks_cuda_graph_replay():
    config = cfgmod.load_config(TINY)
    row = {"model": "resnet18", "backend": "pytorch_cudagraphs", "device": "cuda", "precision": "fp16",
           "resolution": 224, "batch_size": 32, "num_threads": 1}
    spec = harnesscheck.bare_spec(row, config, results_dir=None)
    assert spec["backend"] == "pytorch" and spec["options"]["cuda_graphs"] is True and spec["artifact"] is None
    rows = [dict(row, backend=backend, backend_impl="pytorch", backend_options=json.dumps({"cuda_graphs": graphs}),
                 io="device", status="ok", throughput_ips=1000.0, gpu_busy_pct=busy, batch_size=batch)
            for backend, graphs in (("pytorch_cudagraphs", True), ("pytorch", False))
            for batch, busy in ((32, 99.0), (64, 50.0))]
    picked = harnesscheck.select_cells(pd.DataFrame(rows))
    # each kind's least busy cell (batch 64), and always: eager pytorch fp16 224 px batch 32 and 64,
    # CUDA graph replay at batch 32, known by the options the cell ran with
    assert sorted(zip(picked["backend"], picked["batch_size"])) == [
        ("pytorch", 32), ("pytorch", 64), ("pytorch_cudagraphs", 32), ("pytorch_cudagraphs", 64)]


def _cell(backend, precision, resolution, ips, spread=1.0, device="cuda", io="device", impl=None):
    return {"model": "resnet18", "backend": backend, "backend_impl": impl or backend.split("_cudagraphs")[0],
            "precision": precision, "device": device, "io": io, "resolution": resolution, "batch_size": 32,
            "status": "ok", "reason": "", "throughput_ips": float(ips), "ips_spread_pct": spread,
            "latency_ms_median": 32_000.0 / ips}


def test_the_first_finding_names_the_best_variant_per_resolution_and_whether_its_lead_beats_the_noise():
    summary = pd.DataFrame([
        # 224 px: a 2.6% lead, under the 5% floor of `inferbench compare`
        _cell("pytorch", "fp32", 224, 10_000), _cell("pytorch_cudagraphs", "fp16", 224, 40_000),
        _cell("torch_compile", "fp16", 224, 39_000),
        _cell("pytorch", "fp16", 224, 90_000, io="host"),  # io=host is not the question
        _cell("onnxruntime", "fp32", 224, 99_000, device="cpu"),  # nor the CPU, when a GPU ran
        # 384 px: a 50% lead, beyond the noise
        _cell("pytorch", "fp32", 384, 2_000), _cell("pytorch_cudagraphs", "fp16", 384, 6_000),
        _cell("torch_compile", "fp16", 384, 4_000),
        # 512 px: an 11% lead, but the runner-up's own rounds were 12% apart
        _cell("pytorch", "fp32", 512, 1_000), _cell("pytorch_cudagraphs", "fp16", 512, 5_000, spread=2.0),
        _cell("torch_compile", "fp16", 512, 4_500, spread=12.0),
    ])
    first = findings.derive_findings(summary)[0]
    assert first.title.startswith("Best backend and precision per resolution")
    table = first.table.set_index("resolution")
    assert (table["best"] == "pytorch_cudagraphs·fp16").all() and (table["device"] == "cuda").all()
    assert table.loc[224, "speedup_vs_pytorch_fp32"] == 4.0 and table.loc[384, "speedup_vs_pytorch_fp32"] == 3.0
    assert (table["runner_up"] == "torch_compile·fp16").all()
    assert list(table["verdict"]) == ["within noise", "beyond noise", "within noise"]
    assert list(table["noise_limit_pct"]) == [5.0, 5.0, 12.0]
    text = " ".join(first.sentences)
    assert "At 224 px on cuda, pytorch_cudagraphs·fp16 is fastest" in text and "4.00× pytorch fp32" in text
    assert "not told apart" in first.sentences[0] and "beyond the noise limit" in first.sentences[1]
    # a CPU-only sweep answers for the CPU
    cpu = findings.derive_findings(pd.DataFrame([_cell("pytorch", "fp32", 224, 100, device="cpu"),
                                                 _cell("onnxruntime", "fp32", 224, 300, device="cpu")]))[0]
    assert cpu.table.iloc[0]["best"] == "onnxruntime·fp32" and cpu.table.iloc[0]["device"] == "cpu"
