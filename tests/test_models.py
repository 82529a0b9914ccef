"""Models beyond torchvision (inferbench.models): a tiny sweep of a timm model with random weights
and of a `python:` model of the tests' own (tests/usermodels/), both through the real `snakemake`
up to the summary; the FLOP count's convention against torchvision's published figure; and the
messages for an unknown model and for a user's module that fails to import.

The two sweeps run side by side, once for the module, on the CPU only: one resolution, batch 1,
the formats with an exporter of their own (TorchScript, ONNX), few iterations.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from inferbench.models import registry as models
from inferbench.errors import UserError
from inferbench.models.work import count_flops
from sweep import BIN, REPO, _env, snakemake, stop_forkservers

pytestmark = pytest.mark.slow

USER_MODELS = REPO / "tests" / "usermodels"  # on the jobs' PYTHONPATH, as a user's package would be
TIMM_MODEL = "timm:resnet10t"
PYTHON_MODEL = "python:spectral:build"
BACKENDS = ("pytorch", "torchscript", "onnxruntime")


def user_env() -> dict:
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(USER_MODELS), env.get("PYTHONPATH")) if p)
    return env


def sweep_config(model: str) -> dict:
    return {"model": model, "weights": None, "seed": 0, "resolutions": [32], "batch_sizes": [1],
            "precisions": ["fp32"], "devices": ["cpu"], "io_modes": ["device"],
            "backends": {b: {} for b in BACKENDS},
            "measurement": {"warmup_iters": 1, "warmup_min_s": 0, "min_iters": 3, "min_time_s": 0.02,
                            "max_time_s": 2, "rounds": 1, "num_buffers": 1, "cpu_threads": 1,
                            "pin_fastest_cpu": False},
            "results_dir": "results"}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, monkeypatch_module):
    """{timm | python: {results, summary (pandas), work (model_work.json)}}, up to the summary only
    (no tables, report or harness check: other tests cover those)."""
    monkeypatch_module.setenv("PYTHONPATH", user_env()["PYTHONPATH"])
    work = {}
    for key, model in (("timm", TIMM_MODEL), ("python", PYTHON_MODEL)):
        folder = tmp_path_factory.mktemp(f"model-{key}")
        (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep_config(model)))
        work[key] = folder
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runs = {k: pool.submit(snakemake, REPO, w, w / "sweep.yaml", "results/summary.parquet")
                    for k, w in work.items()}
            for future in runs.values():
                future.result()
        out = {}
        for key, folder in work.items():
            results = folder / "results"
            out[key] = {"results": results, "summary": pq.read_table(results / "summary.parquet").to_pandas(),
                        "work": json.loads((results / "model_work.json").read_text())}
        yield out
    finally:
        for folder in work.values():
            stop_forkservers(folder / "results")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def by_backend(summary) -> dict:
    assert set(summary["backend"]) == set(BACKENDS), summary[["backend", "status", "reason"]]
    return {b: rows.iloc[0] for b, rows in summary.groupby("backend")}


def test_a_timm_model_with_random_weights_runs_in_every_format(sweeps):
    import timm

    rows = by_backend(sweeps["timm"]["summary"])
    for backend, row in rows.items():
        assert row["status"] == "ok", f"{backend}: {row['status']}: {row['reason']}"
        assert row["throughput_ips"] > 0
        assert row["achieved_tflops"] == pytest.approx(row["throughput_ips"] * row["gflop_per_image"] / 1e3)
    record = sweeps["timm"]["work"]
    reference = timm.create_model("resnet10t", pretrained=False)
    assert record["params_m"] == pytest.approx(sum(p.numel() for p in reference.parameters()) / 1e6)
    # the input comes from timm's pretrained config of the architecture's default tag
    cfg = timm.models.get_pretrained_cfg(timm.list_pretrained("resnet10t.*")[0])
    assert (record["in_chans"], record["default_resolution"]) == (cfg.input_size[0], cfg.input_size[2])
    assert tuple(record["mean"]) == tuple(cfg.mean)


def test_a_python_model_runs_where_it_can_and_is_skipped_with_the_exporters_reason(sweeps):
    rows = by_backend(sweeps["python"]["summary"])
    for backend in ("pytorch", "torchscript"):
        assert rows[backend]["status"] == "ok", f"{backend}: {rows[backend]['reason']}"
    onnx = rows["onnxruntime"]
    assert onnx["status"] == "skipped"
    assert "torch.onnx.export" in onnx["reason"] and "aten::fft_rfft2" in onnx["reason"], onnx["reason"]
    assert pd.isna(onnx["achieved_tflops"])  # it did not run
    record = sweeps["python"]["work"]
    assert record["in_chans"] == 1 and record["default_resolution"] == 32  # what the function returned
    # FlopCounterMode counts the convolution and the linear layer, 2 FLOPs per multiply-accumulate
    # (the FFT and the mean count nothing): 1 -> 8 channels, 3x3, at 32x32; 8 -> 10
    expected_flop = 2 * (8 * 1 * 3 * 3 * 32 * 32) + 2 * (8 * 10)
    assert rows["pytorch"]["gflop_per_image"] == pytest.approx(expected_flop / 1e9)


def test_resnet18_flops_at_224_are_twice_torchvisions_published_multiply_accumulates():
    import torchvision

    published_gmac = torchvision.models.get_weight("ResNet18_Weights.IMAGENET1K_V1").meta["_ops"]  # "GFLOPS"
    model = models.build_model("resnet18", None, 0)
    gflop = count_flops(model, 3, 224) / 1e9
    # FlopCounterMode: 2 FLOPs per multiply-accumulate; torchvision's table counts one
    assert gflop / 2 == pytest.approx(published_gmac, rel=0.02)


def validate(tmp_path, model: str) -> subprocess.CompletedProcess:
    config = sweep_config(model)
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([str(BIN / "inferbench"), "validate", str(path)], capture_output=True, text=True,
                          timeout=120, env=user_env())


def assert_one_clear_message(proc):
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("error:") == 1, proc.stderr


def test_an_unknown_model_is_one_message_with_the_closest_names(tmp_path):
    proc = validate(tmp_path, "resnet181")
    assert_one_clear_message(proc)
    assert "'resnet181' is not a torchvision classification model" in proc.stderr
    closest = proc.stderr.split("Closest:", 1)[1].split(".", 1)[0]
    assert "resnet18" in [name.strip() for name in closest.split(",")], proc.stderr


def test_an_unknown_timm_model_names_the_closest_timm_models():
    with pytest.raises(UserError, match=r"Closest: .*timm:resnet10t"):
        models.check("timm:resnet10x", None)


def test_a_python_model_whose_module_fails_to_import_is_one_message_naming_module_and_error(tmp_path):
    proc = validate(tmp_path, "python:broken:build")
    assert_one_clear_message(proc)
    assert "the module 'broken' failed to import" in proc.stderr, proc.stderr
    assert "ModuleNotFoundError: No module named 'a_package_that_is_not_installed'" in proc.stderr
    assert "broken.py, line 3" in proc.stderr
