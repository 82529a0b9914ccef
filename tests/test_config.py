"""Config validation (inferbench.sweep.config): the reference config, defaults, and bad configs.

Every bad config must give ONE UserError naming the key and what is allowed, in-process,
through `inferbench validate` and through `snakemake -n` (no job runs, no traceback).
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from inferbench.errors import UserError
from inferbench.models.torchvision import registered_classification_models
from inferbench.sweep import config as cfgmod
from sweep import BIN, REPO, TINY

REFERENCE = REPO / "config.yaml"


def _env(**extra) -> dict:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.update(extra)
    return env


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging) if the body takes longer than `seconds`."""

    def boom(*_):
        raise TimeoutError(f"took longer than {seconds} s (a download attempt?)")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def tiny() -> dict:
    return yaml.safe_load(TINY.read_text())


# ------------------------------------------------------------------ the reference config


@pytest.fixture(scope="module")
def reference():
    return cfgmod.load_config(REFERENCE)


def test_reference_config_has_292_cells(reference):
    cells = cfgmod.cells(reference)
    assert len(cells) == 292
    assert len(set(cells)) == 292
    by_device = Counter(c.device for c in cells)
    assert by_device == {"cuda": 280, "cpu": 12}
    cuda = [c for c in cells if c.device == "cuda"]
    assert {c.backend for c in cuda} == {"pytorch", "torchscript", "onnxruntime", "torch_tensorrt", "torch_compile",
                                         "pytorch_cudagraphs", "torch_compile_cudagraphs"}
    # the variants run the backends they name, with options of their own
    assert cfgmod.backend_of(reference, "pytorch_cudagraphs") == "pytorch"
    assert cfgmod.options_of(reference, "pytorch_cudagraphs") == {"cuda_graphs": True}
    assert cfgmod.backend_of(reference, "torch_compile_cudagraphs") == "torch_compile"
    assert cfgmod.options_of(reference, "torch_compile_cudagraphs")["mode"] == "reduce-overhead"
    assert {c.precision for c in cuda} == {"fp32", "fp16"}
    assert {c.batch_size for c in cuda} == {32, 40, 48, 56, 64}
    assert {c.resolution for c in cuda} == {224, 256, 384, 512}
    cpu = [c for c in cells if c.device == "cpu"]
    assert {c.backend for c in cpu} == {"pytorch", "torchscript", "onnxruntime"}
    assert {c.precision for c in cpu} == {"fp32"}
    assert {c.batch_size for c in cpu} == {32}
    assert {c.resolution for c in cpu} == {224, 256, 384, 512}


def test_reference_per_device_measurement_overrides(reference):
    cpu = cfgmod.measurement_for(reference, "cpu")
    cuda = cfgmod.measurement_for(reference, "cuda")
    assert cpu["min_iters"] == 5 and cpu["warmup_iters"] == 1 and cpu["max_time_s"] == 20
    assert cpu["max_iters"] == 2000  # not overridden: inherited from the top level
    assert cuda["min_iters"] == 50 and cuda["warmup_iters"] == 10
    assert cfgmod.io_modes_for(reference, "cuda") == ["device", "host"]
    assert cfgmod.io_modes_for(reference, "cpu") == ["device"]


def test_defaults_are_filled():
    raw = {"model": "resnet18", "resolutions": [32], "batch_sizes": [1], "precisions": ["fp32"],
           "devices": ["cpu"], "backends": {"pytorch": None}}
    before = copy.deepcopy(raw)
    c = cfgmod.load_config(raw)
    assert raw == before  # the caller's dict is not modified
    assert c["measurement"] == {"warmup_iters": 10, "warmup_min_s": 0.5, "min_iters": 30, "min_time_s": 1.0,
                                "max_iters": 2000, "max_time_s": 60, "rounds": 3, "pin_fastest_cpu": True,
                                "num_buffers": 4, "cpu_threads": None}
    assert c["io_modes"] == ["device", "host"]
    assert c["results_dir"] == "results"
    assert c["weights"] is None and c["seed"] == 0
    assert c["per_device"] == {} and c["cell_timeout_s"] == 1800
    assert c["run_id"] is None and c["container"] == "images/inferbench_0.2.0-ngc26.04.sif"  # docker/build.sh's
    # a partial measurement block keeps its values and gets the rest
    raw["measurement"] = {"min_iters": 3}
    m = cfgmod.load_config(raw)["measurement"]
    assert m["min_iters"] == 3 and m["max_iters"] == 2000 and m["num_buffers"] == 4


def test_per_device_restriction_measurement_gets_defaults_too():
    c = tiny()
    c["per_device"]["cpu"]["measurement"] = {"min_iters": 2}
    resolved = cfgmod.load_config(c)
    assert cfgmod.measurement_for(resolved, "cpu")["min_iters"] == 2


# ------------------------------------------------------------------ bad configs


def _bad(change):
    c = tiny()
    change(c)
    return c


def _set(**kw):
    def change(c):
        c.update(kw)
    return change


def _rename_batch_sizes(c):
    c["batchsizes"] = c.pop("batch_sizes")


def _per_device_stray(c):
    c["per_device"]["cpu"]["backends"] = ["pytorch", "torch_compile", "openvino"]
    c["backends"].pop("torch_compile")


# (id, change, strings the message must contain)
BAD = [
    ("wrong_key", _rename_batch_sizes, ["'batchsizes'", "allowed keys", "batch_sizes"]),
    ("wrong_type", _set(resolutions="224"), ["resolutions", "expected array", "'224'"]),
    ("empty_list", _set(batch_sizes=[]), ["batch_sizes", "empty"]),
    ("batch_zero", _set(batch_sizes=[2, 0]), ["batch_sizes[1]", "0", ">= 1"]),
    ("unknown_backend", _set(backends={"tensorflow": {}}), ["backends.tensorflow", "unknown backend", "pytorch",
                                                             "onnxruntime", "torch_compile"]),
    ("unknown_precision", _set(precisions=["fp32", "fp8"]), ["precisions[1]", "'fp8'", "fp16", "bf16"]),
    ("unknown_model", _set(model="resnet1800"), ["model", "resnet1800", "resnet18"]),
    ("unknown_backend_option", _set(backends={"pytorch": {"channel_last": True}}),
     ["backends.pytorch", "'channel_last'", "channels_last", "cuda_graphs"]),
    ("per_device_not_in_top_level", _per_device_stray,
     ["per_device.cpu.backends", "torch_compile", "openvino"]),
    ("per_device_unknown_device", _set(devices=["cuda"]), ["per_device.cpu", "not in devices"]),
    ("bad_option_type", _set(backends={"onnxruntime": {"opset": "17"}}), ["backends.onnxruntime", "opset"]),
    ("bad_option_value", _set(backends={"onnxruntime": {"cuda_provider": "rocm"}}),
     ["backends.onnxruntime", "cuda_provider", "tensorrt"]),
    # variants: a backends entry that names the backend it runs
    ("variant_of_unknown_backend", _set(backends={"pytorch": {}, "fast": {"backend": "tensorrt"}}),
     ["backends.fast.backend", "unknown backend 'tensorrt'", "torch_tensorrt"]),
    ("variant_of_a_variant", _set(backends={"pytorch": {}, "pytorch_cudagraphs": {"backend": "pytorch", "cuda_graphs": True},
                                            "pytorch_cg_nhwc": {"backend": "pytorch_cudagraphs"}}),
     ["backends.pytorch_cg_nhwc.backend", "'pytorch_cudagraphs' is a variant (of pytorch)", "backend: pytorch"]),
    ("variant_name_not_plain", _set(backends={"pytorch": {}, "PyTorch-CG": {"backend": "pytorch"}}),
     ["backends", "'PyTorch-CG'", "lower-case letters, digits and '_'"]),
    ("variant_named_like_another_backend", _set(backends={"onnxruntime": {"backend": "pytorch"}}),
     ["backends.onnxruntime", "cannot be a variant of pytorch", "name of its own"]),
    ("variant_option_of_its_backend", _set(backends={"tc": {"backend": "torch_compile", "mode": "max"}}),
     ["backends.tc", "'mode'", "reduce-overhead"]),
    ("torch_compile_backend_option_is_renamed", _set(backends={"torch_compile": {"backend": "inductor"}}),
     ["backends.torch_compile.backend", "unknown backend 'inductor'", "compile_backend"]),
]


@pytest.mark.parametrize("change,needles", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_is_one_clear_user_error(change, needles):
    with pytest.raises(UserError) as info:
        cfgmod.load_config(_bad(change))
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"
    assert "Traceback" not in message


def test_model_names_read_from_torchvisions_source_are_names_it_registers():
    import torchvision

    found = registered_classification_models()
    known = set(torchvision.models.list_models(module=torchvision.models))
    assert found <= known, f"read from the source but not registered: {sorted(found - known)}"
    # the tests' models are found without importing torchvision
    assert {"resnet18", "mobilenet_v3_small", "alexnet"} <= found


def test_loading_a_config_imports_no_torchvision():
    """Every snakemake start loads the config: importing torchvision (and so torch) there cost
    seconds of each one."""
    code = ("import sys; from inferbench.sweep.config import load_config; load_config(sys.argv[1]); "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, str(TINY)], capture_output=True, text=True, timeout=120,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_several_problems_are_reported_together():
    c = tiny()
    c["batch_sizes"] = [0]
    c["precisions"] = ["fp8"]
    with pytest.raises(UserError) as info:
        cfgmod.load_config(c)
    assert "batch_sizes[0]" in str(info.value) and "precisions[0]" in str(info.value)


def test_not_a_mapping_and_missing_file(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        cfgmod.load_config(tmp_path / "list.yaml")
    with pytest.raises(UserError, match="does not exist"):
        cfgmod.load_config(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        cfgmod.load_config(tmp_path / "broken.yaml")


def test_missing_required_key_is_named():
    c = tiny()
    del c["devices"]
    with pytest.raises(UserError, match="'devices' is a required property"):
        cfgmod.load_config(c)


# ------------------------------------------------------------------ weights: never downloaded


def test_weights_not_on_disk_is_a_clear_error_and_no_download(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_download(*a, **k):
        raise AssertionError("inferbench tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    c = tiny()
    c["weights"] = "ResNet18_Weights.IMAGENET1K_V1"
    with deadline(60), pytest.raises(UserError) as info:
        cfgmod.load_config(c)
    message = str(info.value)
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert message.startswith("weights:")
    assert str(expected) in message
    assert "never downloads" in message
    assert not expected.exists()


def test_weights_present_on_disk_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"placeholder")  # validation checks presence only
    c = tiny()
    c["weights"] = "ResNet18_Weights.IMAGENET1K_V1"
    assert cfgmod.load_config(c)["weights"] == "ResNet18_Weights.IMAGENET1K_V1"


def test_wrong_weights_name_lists_choices():
    c = tiny()
    c["weights"] = "ResNet18_Weights.IMAGENET9K"
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        cfgmod.load_config(c)


# ------------------------------------------------------------------ the same through the CLI and Snakemake


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_cli_validate_reference_prints_cell_count():
    proc = subprocess.run([str(BIN / "inferbench"), "validate", str(REFERENCE)], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("# 292 cells")


@pytest.mark.parametrize("case", ["wrong_key", "unknown_backend_option"])
def test_cli_validate_bad_config(tmp_path, case):
    change, needles = next(b[1:] for b in BAD if b[0] == case)
    path = _write(tmp_path, _bad(change))
    proc = subprocess.run([str(BIN / "inferbench"), "validate", str(path)], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1
    assert proc.stderr.startswith("inferbench validate: error: invalid config")
    for needle in needles:
        assert needle in proc.stderr


def test_cli_validate_missing_weights_does_not_hang(tmp_path):
    c = tiny()
    c["weights"] = "ResNet18_Weights.IMAGENET1K_V1"
    path = _write(tmp_path, c)
    # no network either way: a download attempt would fail or hang, both caught here
    proc = subprocess.run([str(BIN / "inferbench"), "validate", str(path)], capture_output=True, text=True,
                          timeout=120, env=_env(TORCH_HOME=str(tmp_path / "empty"), https_proxy="http://127.0.0.1:9",
                                                HTTPS_PROXY="http://127.0.0.1:9"))
    assert proc.returncode != 0
    assert "never downloads" in proc.stderr and "resnet18-f37072fd.pth" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "empty" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").exists()


def test_snakemake_dry_run_rejects_bad_config(tmp_path):
    c = _bad(_rename_batch_sizes)
    c["results_dir"] = "results-bad"
    path = _write(tmp_path, c)
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--snakefile", str(REPO / "Snakefile"), "--configfile",
                           str(path), "--cores", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=_env())
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "'batchsizes'" in out and "allowed keys" in out
    assert out.count("invalid config") == 1
    # One clear message: Snakemake prints the WorkflowError with its location
    # (`File ".../common.smk", line N, in <module>`), but no Python traceback.
    assert "Traceback (most recent call last)" not in out, out
    assert "Fix the config" in out
    # nothing ran
    assert not (tmp_path / "results-bad").exists()
    assert not (tmp_path / "results").exists()
    assert "benchmark_cell" not in out and "Job stats" not in out
