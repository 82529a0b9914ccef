"""TorchScript: traced and frozen by the export rule, optimised for inference when loaded."""

from __future__ import annotations

from dataclasses import dataclass

from inferbench.backends.base import Runner, Skip, parse_dataclass, torch_dtype
from inferbench.backends.torch_common import module_runner, place_model, resolve_channels_last, set_tf32

ARTIFACT_SUFFIX = ".ts"


@dataclass
class Options:
    optimize_for_inference: bool = True  # torch.jit.optimize_for_inference: folds conv+bn, picks kernels
    channels_last: bool | None = None
    tf32: bool = False


def parse_options(raw):
    return parse_dataclass(Options, raw)


def artifact_key(cell, options):
    # Traced on the device it will run on, in its precision and layout: frozen constants keep them.
    return {"device": cell.device, "precision": cell.precision,
            "layout": "nhwc" if resolve_channels_last(options.channels_last, cell.device) else "nchw"}


def unsupported(cell, options):
    return None


def export(spec, options, out_path) -> dict:
    import torch

    from inferbench.process.devices import require_device

    require_device(spec.device)
    model, channels_last = place_model(spec.build_model(), spec, options.channels_last, options.tf32)
    example = torch.randn(1, 3, spec.resolution, spec.resolution, device=spec.device, dtype=torch_dtype(spec.precision))
    if channels_last:
        example = example.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # not inference_mode: frozen constants must be ordinary tensors
        traced = torch.jit.trace(model, example)
        frozen = torch.jit.freeze(traced.eval())
    torch.jit.save(frozen, out_path)
    return {"traced_at_resolution": spec.resolution}


def load(ctx) -> Runner:
    import torch

    if ctx.artifact_path is None:
        raise Skip("no TorchScript artifact")
    if ctx.cell.device == "cuda":
        set_tf32(ctx.options.tf32)
        torch.backends.cudnn.benchmark = True
    module = torch.jit.load(ctx.artifact_path, map_location=ctx.cell.device).eval()
    if ctx.options.optimize_for_inference:
        module = torch.jit.optimize_for_inference(module)
    channels_last = resolve_channels_last(ctx.options.channels_last, ctx.cell.device)
    return module_runner(module, ctx.cell, channels_last, torch_dtype(ctx.cell.precision),
                         facts={"optimize_for_inference": ctx.options.optimize_for_inference})
