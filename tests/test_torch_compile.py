"""torch.compile on the CPU, for real: the `dynamic` option's checks, and that `dynamic: batch`
lets a second batch size of the same resolution come from Inductor's on-disk cache (the lever
that keeps a sweep of many batch sizes from compiling once per cell), with the cache's hits and
misses recorded in the cell's facts. Each cell compiles in its own process, as in the pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from inferbench.backends import torch_compile
from inferbench.errors import UserError

# The model is a small CNN of ResNet's parts (conv, batch norm, ReLU, a residual add, pooling, a
# linear head) rather than ResNet-18 itself: what is tested is the backend's `dynamic` option and
# Inductor's on-disk cache, and compiling ResNet-18 took ~90 s of a 2-core test run.
LOAD_ONE_CELL = textwrap.dedent("""
    import json, sys, torch
    from torch import nn
    from inferbench.backends import torch_compile
    from inferbench.backends.base import LoadContext
    from inferbench.sweep.config import Cell

    class SmallNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            x = self.stem(x)
            x = torch.relu(x + self.block(x))
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    def build_model():
        torch.manual_seed(0)
        return SmallNet().eval()

    batch, dynamic = int(sys.argv[1]), json.loads(sys.argv[2])
    cell = Cell(model="resnet18", backend="torch_compile", device="cpu", precision="fp32",
                resolution=32, batch_size=batch)
    options = torch_compile.parse_options({"dynamic": dynamic})
    runner = torch_compile.load(LoadContext(cell=cell, options=options, artifact_path=None, threads=1,
                                            build_model=build_model))
    x = torch.randn(batch, 3, 32, 32)
    with torch.inference_mode():
        out = runner.run(runner.prepare(x))
        want = build_model()(x)
    print(json.dumps(dict(runner.facts, compile_s=runner.compile_s,
                          max_abs_err=float((out - want).abs().max()))))
""")


def compile_cell(batch: int, dynamic, cache_dir) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache_dir), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", LOAD_ONE_CELL, str(batch), json.dumps(dynamic)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value", ["batches", "yes", 1])
def test_dynamic_rejects_anything_but_false_true_or_batch(value):
    with pytest.raises(UserError, match="dynamic"):
        torch_compile.parse_options({"dynamic": value})


@pytest.mark.parametrize("value", [False, True, "batch"])
def test_dynamic_accepts_false_true_and_batch(value):
    assert torch_compile.parse_options({"dynamic": value}).dynamic == value


def compile_two_batch_sizes(cache_dir) -> tuple[dict, dict]:
    return compile_cell(4, "batch", cache_dir), compile_cell(8, "batch", cache_dir)


# The two compilations keep one core busy for ~30 s: `slow`, so that they start first.


@pytest.mark.slow
def test_dynamic_batch_serves_a_second_batch_size_from_the_cache(tmp_path):
    first, second = compile_two_batch_sizes(tmp_path / "inductor")
    assert first["dynamic"] == "batch"
    assert first["fx_graph_cache_misses"] >= 1, first
    assert second["fx_graph_cache_misses"] == 0 and second["fx_graph_cache_hits"] >= 1, second
    assert second["compile_s"] < first["compile_s"]
    for facts in (first, second):  # compiled fp32 is eager fp32 to rounding
        assert facts["max_abs_err"] < 1e-3, facts


# ------------------------------------------------------------------ precompile


def test_precompile_is_an_export_that_shares_the_gpu_unless_it_autotunes():
    from inferbench.sweep.config import Cell
    from inferbench.sweep.spec import ExportSpec, export_claims_gpu

    cell = Cell("resnet18", "torch_compile", "cuda", "fp16", 224, 32)
    assert torch_compile.artifact_key(cell, torch_compile.parse_options({})) is None  # off by default
    on = torch_compile.parse_options({"precompile": True, "dynamic": "batch"})
    assert torch_compile.artifact_key(cell, on) == {"device": "cuda", "precision": "fp16", "resolution": 224}
    static = torch_compile.parse_options({"precompile": True, "dynamic": False})
    assert torch_compile.artifact_key(cell, static)["batch_size"] == 32  # one compilation per shape

    def spec(backend, device, **options):
        return ExportSpec("resnet18", None, 0, backend, {"device": device}, [32], options)

    assert not export_claims_gpu(spec("torch_compile", "cuda", precompile=True))  # side by side
    assert not export_claims_gpu(spec("torch_compile", "cuda", mode="reduce-overhead", precompile=True))
    assert export_claims_gpu(spec("torch_compile", "cuda", mode="max-autotune", precompile=True))  # times kernels
    assert export_claims_gpu(spec("torchscript", "cuda"))
    assert not export_claims_gpu(spec("torch_compile", "cpu", mode="max-autotune", precompile=True))


PRECOMPILE = textwrap.dedent("""
    import json, sys
    from inferbench.backends import torch_compile
    from inferbench.sweep.spec import ExportSpec

    exec(compile(open(sys.argv[1]).read(), "smallnet", "exec"))  # SmallNet and build_model
    ExportSpec.build_model = lambda self: build_model()
    spec = ExportSpec("resnet18", None, 0, "torch_compile", {"device": "cpu", "precision": "fp32", "resolution": 32},
                      [2, 3], {"dynamic": "batch", "precompile": True})
    print(json.dumps(torch_compile.export(spec, torch_compile.parse_options(spec.options), sys.argv[2])))
""")


@pytest.mark.slow
def test_a_precompiled_resolution_is_a_cache_hit_in_every_cell(tmp_path):
    """The export compiles at the smallest batch size into the cache; a cell of another batch
    size, in a fresh process, compiles nothing (the pipeline points both at results/.cache)."""
    cache = tmp_path / "inductor"
    model = tmp_path / "smallnet.py"
    model.write_text(LOAD_ONE_CELL.split("batch, dynamic =")[0])
    record = tmp_path / "precision-fp32.compiled.json"
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", PRECOMPILE, str(model), str(record)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    exported = json.loads(record.read_text())
    assert exported["compiled_at_batch_size"] == 2 and exported["fx_graph_cache_misses"] >= 1, exported
    cell = compile_cell(3, "batch", cache)
    assert cell["fx_graph_cache_misses"] == 0 and cell["fx_graph_cache_hits"] >= 1, cell
    assert cell["max_abs_err"] < 1e-3, cell


def test_snakemake_plans_one_precompilation_per_resolution_before_the_cells(tmp_path):
    """The real Snakemake, dry run: with `precompile: true` each resolution's compilation is an
    export job (priority, no GPU token here on the CPU) that its cells take as input."""
    import yaml

    from sweep import BIN, REPO, _env, job_blocks

    config = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    config.update(devices=["cpu"], precisions=["fp32"], batch_sizes=[2, 4], backends={"torch_compile": {"precompile": True, "dynamic": "batch"}},
                  results_dir=str(tmp_path / "results"))
    config.pop("per_device")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--snakefile", str(REPO / "Snakefile"), "--configfile",
                           str(path), "--cores", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = job_blocks(proc.stdout)
    exports = sorted(j for j in jobs["export_artifact"])
    assert len(exports) == 2 and all("priority: 100" in j for j in exports), exports
    for res in (32, 48):
        manifest = f"artifacts/resnet18/torch_compile/device-cpu_precision-fp32_resolution-{res}_dynamic-batch.json"
        assert sum(manifest in j for j in exports) == 1, exports
        cells = [j for j in jobs["benchmark_cell"] if f"/r{res}_b" in j]
        assert len(cells) == 2 and all(manifest in j.split("output:")[0] for j in cells), cells
