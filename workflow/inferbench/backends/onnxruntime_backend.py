"""ONNX Runtime: the exported ONNX graph (fp32, or a real fp16 graph) on the CPU or CUDA provider.

On CUDA the input and output are bound to GPU-resident torch tensors (I/O binding), so the
timed window holds no numpy round trip. ORT runs on its own CUDA stream by default (option
`cuda_stream`), and each run waits for the cell's stream before it and synchronises the device
after it, so the harness's CUDA events bracket its kernels; `cuda_stream: cell` runs it on the
cell's torch stream instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferbench.backends.base import Runner, Skip, parse_dataclass, runs_eagerly, torch_dtype
from inferbench.errors import UserError

ARTIFACT_SUFFIX = ".onnx"
EXPORT_OPTIONS = ("opset", "share_across_resolutions")  # the rest is how a session runs the file
PROVIDERS = ("cuda", "tensorrt")
OPT_LEVELS = ("disable", "basic", "extended", "all")
REQUIRES = ("onnxruntime",)
REQUIRES_HINT = "pip install onnxruntime (CPU) or onnxruntime-gpu"


@dataclass
class Options:
    opset: int = 17
    cuda_provider: str = "cuda"  # or "tensorrt": ORT's TensorRT provider, detected by creating a session
    cuda_provider_options: dict = field(default_factory=lambda: {"cudnn_conv_algo_search": "EXHAUSTIVE"})
    graph_optimization_level: str = "all"
    io_binding: bool = True  # bind GPU buffers; False times the numpy path (copies included)
    # "own": ORT runs on its own CUDA stream, as its documentation shows (each run is followed by a
    # device synchronise, so the CUDA events still bracket it); "cell": ORT runs on the cell's torch
    # stream (user_compute_stream), which measured slower (docs/method.md, "The timed loop").
    cuda_stream: str = "own"
    # True: one file per precision serves every resolution. It is exported with a symbolic height
    # and width, and the load pins them to the cell's resolution, so ORT plans for a fixed size
    # exactly as it would with a file per resolution. False: one file per resolution, for models
    # whose exported graph depends on the input size (the export checks, and says so).
    share_across_resolutions: bool = True

    def check(self):
        if self.cuda_provider not in PROVIDERS:
            raise UserError(f"option 'cuda_provider' must be one of {', '.join(PROVIDERS)}, got {self.cuda_provider!r}")
        if self.cuda_stream not in ("own", "cell"):
            raise UserError(f"option 'cuda_stream' must be 'own' or 'cell', got {self.cuda_stream!r}")
        if self.graph_optimization_level not in OPT_LEVELS:
            raise UserError(f"option 'graph_optimization_level' must be one of {', '.join(OPT_LEVELS)}")


def parse_options(raw):
    return parse_dataclass(Options, raw)


def artifact_key(cell, options):
    # The batch axis is always symbolic; the spatial size only when one file serves every resolution.
    if options.share_across_resolutions:
        return {"precision": cell.precision, "opset": options.opset}
    return {"precision": cell.precision, "resolution": cell.resolution, "opset": options.opset}


def unsupported(cell, options):
    if cell.precision == "bf16":
        return "inferbench does not export bf16 ONNX graphs (fp16 is the half precision for ONNX Runtime)"
    return None


def export(spec, options, out_path) -> dict:
    """Export with a dynamic batch axis (and height and width, if shared across resolutions).
    fp16 exports the half-precision model itself, so every initializer, the input and the output
    are float16 (a graph that computes in fp16)."""
    import onnx

    shared = options.share_across_resolutions
    _export_onnx(spec, options, out_path, spec.resolution, spatial_dynamic=shared)
    if shared:
        _check_size_independent(spec, options, out_path)
    graph = onnx.load(out_path).graph
    return {"onnx_initializer_dtypes": sorted({onnx.TensorProto.DataType.Name(t.data_type) for t in graph.initializer}),
            "onnx_input_dtype": onnx.TensorProto.DataType.Name(graph.input[0].type.tensor_type.elem_type),
            "onnx_spatial_size": "symbolic, pinned at load" if shared else "fixed"}


def _export_onnx(spec, options, out_path, resolution: int, spatial_dynamic: bool) -> None:
    import warnings

    import torch

    model = spec.build_model().to(dtype=torch_dtype(spec.precision))
    example = torch.randn(1, spec.in_chans, resolution, resolution, dtype=torch_dtype(spec.precision))
    input_axes = {0: "batch", 2: "height", 3: "width"} if spatial_dynamic else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        try:
            torch.onnx.export(
                model, (example,), out_path, dynamo=False, opset_version=options.opset,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": input_axes, "logits": {0: "batch"}},
            )
        except Exception as exc:  # what ONNX cannot take of this model: its cells are skipped, with why
            if not runs_eagerly(model, example):
                raise  # the model itself fails on this input: an error of the model, not of the format
            text = str(exc).strip()
            raise Skip(f"torch.onnx.export (opset {options.opset}) cannot export {spec.model}: {type(exc).__name__}: "
                       f"{text.splitlines()[0] if text else ''}"[:500]) from None


def _check_size_independent(spec, options, out_path) -> None:
    """A traced graph can bake the example's size into constants (a reshape, a position
    embedding). Export again from a different size: the graphs must be the same node for node,
    or the shared file would compute something else at other resolutions."""
    import os
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        other = os.path.join(tmp, "other.onnx")
        advice = "set `share_across_resolutions: false` under backends.onnxruntime"
        try:
            _export_onnx(spec, options, other, spec.resolution + 32, spatial_dynamic=True)
        except Exception as exc:
            raise Skip(f"{spec.model!r} could not be exported at a second input size to check that one "
                       f"ONNX file serves every resolution ({type(exc).__name__}: {exc}); {advice}") from None
        nodes = lambda path: [n.SerializeToString() for n in onnx.load(path).graph.node]  # noqa: E731
        if nodes(out_path) != nodes(other):
            raise Skip(f"the ONNX graph of {spec.model!r} depends on the input size, so one file cannot "
                       f"serve every resolution; {advice}")


def _pinned_model(path: str, resolution: int) -> bytes | str:
    """The model with its symbolic height and width fixed to the cell's resolution (as bytes), or
    the path itself when the file already has a fixed size."""
    import onnx

    model = onnx.load(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if not any(d.dim_param for d in dims[2:]):
        return path
    for d in dims[2:]:
        d.dim_value = resolution  # setting the value clears dim_param (a oneof)
    return model.SerializeToString()


def _session_options(threads: int, level: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    return so


def _cuda_providers(ctx):
    import torch

    o = ctx.options
    cuda_opts = {"device_id": str(torch.cuda.current_device())}
    if ctx.cell.precision == "fp32":
        # fp32 means fp32 (ORT allows TF32 by default). Not for fp16: there it disables the
        # tensor-op math mode, cuDNN finds no plan and falls back to slow kernels (measured: -33%).
        cuda_opts["use_tf32"] = "0"
    if o.cuda_stream == "cell":
        # Run on the cell's (PyTorch's current) stream: the harness's CUDA events then bracket
        # ORT's kernels, and io=host copies are ordered before the run that reads them.
        cuda_opts["user_compute_stream"] = str(torch.cuda.current_stream().cuda_stream)
    cuda_opts.update({k: str(v) for k, v in o.cuda_provider_options.items()})
    providers = [("CUDAExecutionProvider", cuda_opts)]
    if o.cuda_provider == "tensorrt":
        trt = {"device_id": cuda_opts["device_id"], "trt_fp16_enable": str(ctx.cell.precision == "fp16")}
        providers.insert(0, ("TensorrtExecutionProvider", trt))
    return providers


def load(ctx) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError:
        raise Skip("onnxruntime is not installed") from None
    if ctx.artifact_path is None:
        raise Skip("no ONNX artifact")
    import torch

    cell, o = ctx.cell, ctx.options
    so = _session_options(ctx.threads, o.graph_optimization_level)
    model = _pinned_model(ctx.artifact_path, cell.resolution)
    if cell.device == "cpu":
        session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        return Runner(run=lambda x: torch.from_numpy(session.run(None, {"input": x})[0]),
                      prepare=lambda t: t.cpu().numpy(), input_dtype=torch_dtype(cell.precision),
                      facts={"providers": session.get_providers()})
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skip(f"this onnxruntime ({ort.__version__}) has no CUDA provider: install onnxruntime-gpu")
    providers = _cuda_providers(ctx)
    try:
        session = ort.InferenceSession(model, so, providers=providers)
    except Exception as exc:
        if "use_tf32" not in str(exc):
            raise
        # an onnxruntime too old to know the option: it then has no TF32 path to turn off either
        providers[-1][1].pop("use_tf32")
        session = ort.InferenceSession(model, so, providers=providers)
    active = session.get_providers()
    if o.cuda_provider == "tensorrt" and "TensorrtExecutionProvider" not in active:
        # The wheel lists the TensorRT provider even when TensorRT's libraries are absent;
        # only a created session tells.
        raise Skip("ONNX Runtime's TensorRT provider could not be created (TensorRT libraries missing)")
    if "CUDAExecutionProvider" not in active:
        raise Skip(f"ONNX Runtime fell back to {active}: the CUDA provider failed to load (see the cell log)")
    facts = {"providers": active, "io_binding": o.io_binding,
             "cuda_provider_options": {k: v for k, v in providers[-1][1].items() if k != "user_compute_stream"}}
    if not o.io_binding:
        return Runner(run=lambda x: torch.from_numpy(session.run(None, {"input": x})[0]),
                      prepare=lambda t: t.cpu().numpy(), input_dtype=torch_dtype(cell.precision), facts=facts,
                      waits_for_gpu=WAITS_FOR_GPU)
    return _bound_runner(session, cell, facts, own_stream=o.cuda_stream == "own")


# ONNX Runtime's run returns when its outputs are ready (on its own stream the runner also waits
# for it), so the host's time to issue a call is the call's whole time
WAITS_FOR_GPU = "ONNX Runtime's run returns only when its kernels are done"


def _bound_runner(session, cell, facts, own_stream: bool) -> Runner:
    import torch

    dtype = torch_dtype(cell.precision)
    elem = {torch.float32: "float32", torch.float16: "float16"}[dtype]
    classes = session.get_outputs()[0].shape[1]
    import numpy as np

    def prepare(x):
        # One binding per input buffer, made once: input and output stay on the GPU.
        x = x.contiguous()
        out = torch.empty((x.shape[0], classes), device=x.device, dtype=dtype)
        binding = session.io_binding()
        binding.bind_input("input", "cuda", x.device.index or 0, np.dtype(elem), tuple(x.shape), x.data_ptr())
        binding.bind_output("logits", "cuda", x.device.index or 0, np.dtype(elem), tuple(out.shape), out.data_ptr())
        return (binding, out, x)  # keep x alive: the binding holds its pointer

    def run(prepared):
        binding, out, _ = prepared
        if own_stream:
            # ORT's stream does not see work queued on ours: let the input (an io=host copy) land
            # first, and return only when ORT's kernels are done, so the events bracket all of it.
            torch.cuda.current_stream().synchronize()
            session.run_with_iobinding(binding)
            torch.cuda.synchronize()
        else:
            session.run_with_iobinding(binding)
        return out

    return Runner(run=run, prepare=prepare, input_dtype=dtype, facts=facts, staging_tensor=lambda p: p[2],
                  waits_for_gpu=WAITS_FOR_GPU)
