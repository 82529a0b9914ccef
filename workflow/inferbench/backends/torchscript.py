"""TorchScript: traced and frozen by the export rule, optimised for inference when loaded."""

from __future__ import annotations

from dataclasses import dataclass

from inferbench.backends.base import Runner, Skip, parse_dataclass, runs_eagerly, torch_dtype
from inferbench.backends.torch_common import module_runner, place_model, resolve_channels_last, set_tf32

ARTIFACT_SUFFIX = ".ts"
EXPORT_OPTIONS = ("channels_last",)  # optimize_for_inference is applied when loading


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
    example = torch.randn(1, spec.in_chans, spec.resolution, spec.resolution, device=spec.device, dtype=torch_dtype(spec.precision))
    if channels_last:
        example = example.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # not inference_mode: frozen constants must be ordinary tensors
        try:
            traced = torch.jit.trace(model, example)
        except Exception as exc:  # the model is what TorchScript cannot take: the cells say why
            if not runs_eagerly(model, example):
                raise  # the model itself fails on this input: an error of the model, not of the format
            raise Skip(f"torch.jit.trace cannot trace {spec.model}: {first_line(exc)}") from None
        check_trace_holds(spec, model, traced, channels_last)
        frozen = torch.jit.freeze(traced.eval())
    torch.jit.save(frozen, out_path)
    return {"traced_at_resolution": spec.resolution}


def check_trace_holds(spec, model, traced, channels_last: bool) -> None:
    """A trace records the operations one input took: a branch on the input's values or size is
    frozen as it went. The cells run other batches at other batch sizes, so the trace must give
    the model's own output on another input of another batch size, or the format does not hold
    this model (a `skipped` cell, with the reason)."""
    import torch

    gen = torch.Generator().manual_seed(spec.seed + 1)
    other = torch.randn(2, spec.in_chans, spec.resolution, spec.resolution, generator=gen)
    other = other.to(device=spec.device, dtype=torch_dtype(spec.precision))
    if channels_last:
        other = other.contiguous(memory_format=torch.channels_last)
    try:
        got, want = traced(other), model(other)
    except Exception as exc:
        raise Skip(f"the TorchScript trace of {spec.model} does not run at batch size 2: {first_line(exc)}") from None
    if not isinstance(got, torch.Tensor) or not isinstance(want, torch.Tensor) or got.shape != want.shape:
        raise Skip(f"the TorchScript trace of {spec.model} does not hold: on another input its output has another "
                   "shape than the model's (a branch on the input's size, frozen when traced)")
    scale = float(want.float().abs().max()) or 1.0
    tolerance = (2e-2 if spec.precision != "fp32" else 1e-4) * scale
    err = float((got.float() - want.float()).abs().max())
    if not err <= tolerance:
        raise Skip(f"the TorchScript trace of {spec.model} does not hold: on another input it differs from the model "
                   f"by {err:.3g} (the model branches on its input, which a trace freezes as it went)")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:400]


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
