"""Torch-TensorRT: an engine compiled ahead of time by the export rule, loaded by the cells.

Written against Torch-TensorRT's documented dynamo API (torch_tensorrt.compile(ir="dynamo"),
torch_tensorrt.save / torch_tensorrt.load). TensorRT is in the NVIDIA PyTorch container image
(docker/Dockerfile); where it is missing, the export and the cells are recorded as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferbench.backends.base import Runner, Skip, parse_dataclass, torch_dtype

ARTIFACT_SUFFIX = ".ep"
NEEDS_BATCH_RANGE = True  # the engine is built for the sweep's batch range
REQUIRES = ("tensorrt", "torch_tensorrt")
REQUIRES_HINT = "it runs in the container image built from docker/Dockerfile"


@dataclass
class Options:
    optimization_level: int | None = None  # TensorRT builder level 0-5; None = its default
    workspace_size: int = 0  # bytes; 0 = TensorRT's default
    min_block_size: int = 5
    opt_batch: int | None = None  # the batch TensorRT tunes for; None = the sweep's largest


def parse_options(raw):
    return parse_dataclass(Options, raw)


def artifact_key(cell, options):
    # One engine per device, precision and resolution, valid for the sweep's whole batch range.
    return {"device": cell.device, "precision": cell.precision, "resolution": cell.resolution}


def unsupported(cell, options):
    if cell.device != "cuda":
        return "TensorRT runs on NVIDIA GPUs only"
    return None


def _import():
    try:
        import tensorrt  # noqa: F401
        import torch_tensorrt
    except Exception as exc:  # ImportError, or a broken install raising at import
        raise Skip(f"torch_tensorrt/TensorRT is not available here ({type(exc).__name__}: {exc}); "
                   "it runs in the container image built from docker/Dockerfile") from None
    return torch_tensorrt


def export(spec, options, out_path) -> dict:
    from inferbench.process.devices import require_device

    require_device("cuda")
    torch_tensorrt = _import()
    import torch

    dtype = torch_dtype(spec.precision)
    model = spec.build_model().to(device="cuda", dtype=dtype)
    lo, hi = min(spec.batch_sizes), max(spec.batch_sizes)
    opt = options.opt_batch or hi
    shape = lambda b: (b, 3, spec.resolution, spec.resolution)  # noqa: E731
    inputs = [torch_tensorrt.Input(min_shape=shape(lo), opt_shape=shape(opt), max_shape=shape(hi), dtype=dtype)]
    settings = {"min_block_size": options.min_block_size, "workspace_size": options.workspace_size,
                "enabled_precisions": {dtype}}
    if options.optimization_level is not None:
        settings["optimization_level"] = options.optimization_level
    trt_module = torch_tensorrt.compile(model, ir="dynamo", arg_inputs=inputs, **settings)
    example = torch.randn(shape(opt), device="cuda", dtype=dtype)
    torch_tensorrt.save(trt_module, out_path, output_format="exported_program", arg_inputs=[example])
    return {"batch_range": [lo, opt, hi], "torch_tensorrt_version": torch_tensorrt.__version__}


def load(ctx) -> Runner:
    torch_tensorrt = _import()
    if ctx.artifact_path is None:
        raise Skip("no Torch-TensorRT engine was exported")
    import torch

    module = torch_tensorrt.load(ctx.artifact_path).module()

    def run(x):
        with torch.inference_mode():
            out = module(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    return Runner(run=run, input_dtype=torch_dtype(ctx.cell.precision))
