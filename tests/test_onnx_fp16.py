"""The ONNX export through the real code path (`inferbench export`, as the export rule runs it):
an fp16 export is a real half-precision graph, the batch axis is dynamic, ONNX Runtime (CPU) runs it,
and it agrees with the fp32 PyTorch model. The fp32 export is all fp32."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import onnx
import pytest

from inferbench.sweep import config as cfgmod
from inferbench.sweep import spec as specmod
from sweep import BIN

RESOLUTION = 32
FLOATING = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def _config() -> dict:
    return cfgmod.load_config({"model": "resnet18", "resolutions": [RESOLUTION], "batch_sizes": [2],
                               "precisions": ["fp32", "fp16"], "devices": ["cpu"], "backends": {"onnxruntime": {}}})


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{precision: (manifest dict, onnx path)}, both exported side by side by `inferbench export`."""
    config = _config()
    results = tmp_path_factory.mktemp("onnx") / "results"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               INFERBENCH_FORKSERVER="0")  # plain subprocesses: no server to clean up
    procs = {}
    for cell in cfgmod.cells(config):
        key = specmod.artifact_key_for(config, cell)
        spec = specmod.export_spec_for(config, "onnxruntime", key)
        out = results / "artifacts" / "resnet18" / "onnxruntime" / f"{specmod.artifact_name(key)}.json"
        cmd = [str(BIN / "inferbench"), "export", "--spec", spec.to_json(), "--out", str(out), "--timeout", "300"]
        procs[cell.precision] = (out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                       text=True, env=env))
    done = {}
    for precision, (out, proc) in procs.items():
        log, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, log
        manifest = json.loads(out.read_text())
        done[precision] = (manifest, out.parent / manifest.get("artifact_path", "missing"), log)
    return done


def _elem(value_info) -> int:
    return value_info.type.tensor_type.elem_type


def _batch_dim(value_info):
    return value_info.type.tensor_type.shape.dim[0]


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_manifest_is_ok(exports, precision):
    manifest, path, log = exports[precision]
    assert manifest["status"] == "ok", (manifest, log)
    assert manifest["reason"] == ""
    assert manifest["export_s"] > 0
    assert manifest["artifact_path"] == path.name and path.suffix == ".onnx"
    assert manifest["artifact_bytes"] == path.stat().st_size > 1_000_000
    assert manifest["key"] == {"precision": precision, "opset": 17}  # one file serves every resolution
    assert manifest["batch_sizes"] == []  # an ONNX file serves every batch size
    want = "FLOAT16" if precision == "fp16" else "FLOAT"
    assert manifest["facts"] == {"onnx_initializer_dtypes": [want], "onnx_input_dtype": want,
                                 "onnx_spatial_size": "symbolic, pinned at load"}


def test_fp16_graph_is_half_precision_throughout(exports):
    _, path, _ = exports["fp16"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    graph = model.graph
    floating = [t for t in graph.initializer if t.data_type in FLOATING]
    assert len(floating) >= 21  # every conv (batch norm folded in) and the fc layer
    bad = [(t.name, onnx.TensorProto.DataType.Name(t.data_type)) for t in floating
           if t.data_type != onnx.TensorProto.FLOAT16]
    assert not bad, bad
    assert [_elem(i) for i in graph.input] == [onnx.TensorProto.FLOAT16]
    assert [_elem(o) for o in graph.output] == [onnx.TensorProto.FLOAT16]
    # no casts to or from fp32, no fp32 constants: the graph computes in fp16, not around an fp32 core
    assert not [n for n in graph.node if n.op_type == "Cast"]
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                assert not (a.t and a.t.data_type == onnx.TensorProto.FLOAT), n


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_file_has_symbolic_batch_and_size_and_the_load_pins_the_size(exports, precision):
    from inferbench.backends.onnxruntime_backend import _pinned_model

    graph = onnx.load(str(exports[precision][1])).graph
    for value in (graph.input[0], graph.output[0]):
        dim = _batch_dim(value)
        assert dim.dim_param and not dim.HasField("dim_value"), value
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3 and all(d.dim_param and not d.HasField("dim_value") for d in dims[2:])
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 1000
    # what the session is made from: the batch stays symbolic, the size is the cell's
    pinned = onnx.load_from_string(_pinned_model(str(exports[precision][1]), RESOLUTION)).graph.input[0]
    pinned_dims = pinned.type.tensor_type.shape.dim
    assert pinned_dims[0].dim_param and [d.dim_value for d in pinned_dims[1:]] == [3, RESOLUTION, RESOLUTION]


def test_one_file_per_resolution_when_not_shared():
    from inferbench.backends import load_backend
    from inferbench.sweep.config import Cell

    backend = load_backend("onnxruntime")
    cell = Cell("resnet18", "onnxruntime", "cuda", "fp16", 384, 32)
    assert backend.artifact_key(cell, backend.parse_options({})) == {"precision": "fp16", "opset": 17}
    assert backend.artifact_key(cell, backend.parse_options({"share_across_resolutions": False})) == {
        "precision": "fp16", "resolution": 384, "opset": 17}


class _SizeBakedModel:
    """Stands in for a model whose traced graph keeps the example's width as a constant."""

    def __init__(self):
        import torch

        class Net(torch.nn.Module):
            def forward(self, x):
                return x.mean((2, 3)) * float(int(x.shape[-1]))  # int(): a constant in the trace

        self.net = Net().eval()


def test_a_graph_that_depends_on_the_input_size_is_refused(tmp_path):
    from inferbench.backends import onnxruntime_backend as ort_backend
    from inferbench.backends.base import Skip

    class Spec:
        model, precision, resolution, in_chans = "size_baked", "fp32", 32, 3

        def build_model(self):
            return _SizeBakedModel().net

    # its cells are skipped with the reason, which says what to change
    with pytest.raises(Skip, match="depends on the input size.*share_across_resolutions: false"):
        ort_backend.export(Spec(), ort_backend.parse_options({}), str(tmp_path / "m.onnx"))
    # with one file per resolution the same model exports
    facts = ort_backend.export(Spec(), ort_backend.parse_options({"share_across_resolutions": False}),
                               str(tmp_path / "m32.onnx"))
    assert facts["onnx_spatial_size"] == "fixed"


def test_fp32_graph_is_all_fp32(exports):
    graph = onnx.load(str(exports["fp32"][1])).graph
    floating = [t for t in graph.initializer if t.data_type in FLOATING]
    assert floating and all(t.data_type == onnx.TensorProto.FLOAT for t in floating)
    assert _elem(graph.input[0]) == _elem(graph.output[0]) == onnx.TensorProto.FLOAT


@pytest.fixture(scope="module")
def reference_model():
    from inferbench.models.registry import build_model

    return build_model("resnet18", None, 0)  # the same seed the export used


def _session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("precision,dtype,min_agreement,max_err",
                         [("fp16", np.float16, 0.75, 0.05), ("fp32", np.float32, 1.0, 1e-3)])
def test_onnxruntime_runs_any_batch_and_agrees_with_fp32_torch(exports, reference_model, precision, dtype,
                                                               min_agreement, max_err):
    import torch

    session = _session(exports[precision][1])
    rng = np.random.default_rng(0)
    agree, total = 0, 0
    for batch in (2, 3, 8):
        x = rng.standard_normal((batch, 3, RESOLUTION, RESOLUTION)).astype(dtype)
        (out,) = session.run(None, {"input": x})
        assert out.dtype == dtype and out.shape == (batch, 1000)
        assert np.isfinite(out).all()
        with torch.inference_mode():
            ref = reference_model(torch.from_numpy(x.astype(np.float32))).numpy()
        # logits of a randomly initialised net are close together: compare against their spread
        err = np.abs(out.astype(np.float32) - ref).max() / (np.abs(ref).max() + 1e-12)
        assert err < max_err, f"batch {batch}: relative max error {err}"
        agree += int((out.astype(np.float32).argmax(1) == ref.argmax(1)).sum())
        total += batch
    assert agree / total >= min_agreement, f"{agree}/{total} argmax agree"


def test_runner_loads_the_fp16_artifact_like_a_cell(exports):
    """The cell's load path (backend.load on the CPU provider) takes the fp16 file and returns fp16 output."""
    import torch

    from inferbench.backends import load_backend
    from inferbench.backends.base import LoadContext
    from inferbench.sweep.config import Cell

    backend = load_backend("onnxruntime")
    cell = Cell("resnet18", "onnxruntime", "cpu", "fp16", RESOLUTION, 2)
    runner = backend.load(LoadContext(cell=cell, options=backend.parse_options({}),
                                      artifact_path=str(exports["fp16"][1]), threads=2, build_model=None))
    assert runner.facts["providers"] == ["CPUExecutionProvider"]
    assert runner.input_dtype == torch.float16
    out = runner.run(runner.prepare(torch.randn(2, 3, RESOLUTION, RESOLUTION).half()))
    assert out.dtype == torch.float16 and tuple(out.shape) == (2, 1000)
