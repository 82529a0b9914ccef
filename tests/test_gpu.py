"""One cuda cell of each backend through the real `inferbench export` + `inferbench cell` (as the rules
run them). Needs a CUDA device: skipped without one. A backend whose library is missing here
(TensorRT, onnxruntime without its CUDA provider) is skipped, named."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from inferbench.records.schema import SHARD_SCHEMA
from inferbench.sweep import config as cfgmod
from inferbench.sweep import spec as specmod

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

BACKENDS = ["pytorch", "torchscript", "onnxruntime", "torch_tensorrt", "torch_compile"]


def _missing_library(backend: str) -> str | None:
    if backend == "torch_tensorrt" and (importlib.util.find_spec("torch_tensorrt") is None
                                        or importlib.util.find_spec("tensorrt") is None):
        return "torch_tensorrt/TensorRT not installed"
    if backend == "onnxruntime":
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime not installed"
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} has no CUDA provider (install onnxruntime-gpu)"
    return None


@pytest.fixture(scope="module")
def config():
    return cfgmod.load_config({
        "model": "resnet18", "resolutions": [64], "batch_sizes": [8], "precisions": ["fp16"], "devices": ["cuda"],
        "backends": {b: {} for b in BACKENDS},
        "measurement": {"warmup_iters": 3, "warmup_min_s": 0, "min_iters": 10, "min_time_s": 0.3, "max_time_s": 20},
        "cell_timeout_s": 900,
    })


def _inferbench(*args, timeout=900):
    env = dict(os.environ, PYTHONUNBUFFERED="1", INFERBENCH_FORKSERVER="0")
    proc = subprocess.run([sys.executable, "-m", "inferbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_cuda_cell(backend, config, tmp_path):
    missing = _missing_library(backend)
    if missing:
        pytest.skip(missing)
    (cell,) = [c for c in cfgmod.cells(config) if c.backend == backend]
    results = tmp_path / "results"
    artifact = ""
    key = specmod.artifact_key_for(config, cell)
    if key is not None:
        manifest = results / "artifacts" / cell.model / backend / f"{specmod.variant_name(key)}.json"
        _inferbench("export", "--spec", specmod.export_spec_for(config, backend, key).to_json(), "--out", str(manifest))
        m = json.loads(manifest.read_text())
        assert m["status"] == "ok", m
        artifact = str(manifest)
    out = results / "shards" / cell.model / backend / "cuda" / "fp16" / "r64_b8.parquet"
    proc = _inferbench("cell", "--spec", specmod.cell_spec_for(config, cell).to_json(), "--artifact", artifact,
                       "--out", str(out), "--lock-dir", str(results / ".locks"))
    assert pq.read_schema(out).remove_metadata().equals(SHARD_SCHEMA)
    rows = {r["io"]: r for r in pq.read_table(out).to_pylist()}
    assert set(rows) == {"device", "host"}
    log = proc.stdout + proc.stderr
    for io, r in rows.items():
        assert r["status"] == "ok", f"{io}: {r['reason']}\n{log[-4000:]}"
        assert r["timer"] == "cuda_event"
        assert r["n_iters"] >= 10 and len(r["latencies_ms"]) == r["n_iters"]
        assert 0 < r["latency_ms_min"] <= r["latency_ms_median"] <= r["latency_ms_p99"]
        assert r["gpu_mem_peak_mb"] is not None and r["gpu_mem_peak_mb"] > 0, log[-4000:]
        assert r["torch_alloc_peak_mb"] is not None and r["torch_alloc_peak_mb"] >= 0
        assert r["energy_j_per_image"] is not None and r["energy_j_per_image"] > 0
        assert r["power_w_mean"] is not None and r["power_w_mean"] > 0
        # a window shorter than NVML's utilisation period has no reading of its own
        assert r["gpu_busy_pct"] is None or 0 <= r["gpu_busy_pct"] <= 100
        assert r["gpu_name"] and r["cuda_version"] and r["sm_clock_mhz_start"]
        assert r["top1_agreement"] is not None and r["top1_agreement"] >= 0.5
        assert r["max_abs_err"] is not None and r["reference_device"] == "cuda"
    # copying the batch in and the output out costs something
    assert rows["host"]["latency_ms_median"] >= 0.5 * rows["device"]["latency_ms_median"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_tensorrt_one_engine_serves_every_batch_size(precision, tmp_path):
    """One engine per resolution and precision, exported once, then loaded by a fresh process
    per batch size: each of them runs, with the precision the cell names and TF32 off in fp32."""
    missing = _missing_library("torch_tensorrt")
    if missing:
        pytest.skip(missing)
    config = cfgmod.load_config({
        "model": "resnet18", "resolutions": [64], "batch_sizes": [4, 6, 8], "precisions": [precision],
        "devices": ["cuda"], "backends": {"torch_tensorrt": {"opt_batch": 6}},
        "measurement": {"warmup_iters": 3, "warmup_min_s": 0, "min_iters": 10, "min_time_s": 0.3, "max_time_s": 20},
        "cell_timeout_s": 900,
    })
    cells = cfgmod.cells(config)
    assert [c.batch_size for c in cells] == [4, 6, 8]
    key = specmod.artifact_key_for(config, cells[0])
    assert all(specmod.artifact_key_for(config, c) == key for c in cells), "one artifact for every batch size"
    results = tmp_path / "results"
    manifest = results / "artifacts" / "resnet18" / "torch_tensorrt" / f"{specmod.variant_name(key)}.json"
    _inferbench("export", "--spec", specmod.export_spec_for(config, "torch_tensorrt", key).to_json(),
                "--out", str(manifest))
    m = json.loads(manifest.read_text())
    assert m["status"] == "ok", m
    assert m["facts"]["batch_range"] == [4, 6, 8] and m["facts"]["batch_sizes_checked"] == [4, 6, 8]
    want_dtype = {"fp32": "float32", "fp16": "float16"}[precision]
    for c in cells:
        out = results / "shards" / "resnet18" / "torch_tensorrt" / "cuda" / precision / f"r64_b{c.batch_size}.parquet"
        proc = _inferbench("cell", "--spec", specmod.cell_spec_for(config, c).to_json(), "--artifact", str(manifest),
                           "--out", str(out), "--lock-dir", str(results / ".locks"))
        log = (proc.stdout + proc.stderr)[-4000:]
        for r in pq.read_table(out).to_pylist():
            assert r["status"] == "ok", f"batch {c.batch_size} {r['io']}: {r['reason']}\n{log}"
            assert r["top1_agreement"] is not None and r["top1_agreement"] >= 0.5
            engine = json.loads(r["backend_options"])["engine"]
            assert engine["trt_engines"] >= 1 and engine["output_dtype"] == want_dtype, engine
            assert engine["disable_tf32"] == [True], engine
