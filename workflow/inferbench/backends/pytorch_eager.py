"""PyTorch eager: the model as written, the reference every other backend is compared with."""

from __future__ import annotations

from dataclasses import dataclass

from inferbench.backends.base import Runner, parse_dataclass, torch_dtype

from inferbench.backends.torch_common import module_runner, place_model

ARTIFACT_SUFFIX = None


@dataclass
class Options:
    channels_last: bool | None = None  # None: on for cuda (tensor cores want NHWC), off for cpu
    cuda_graphs: bool = False  # replay one captured CUDA graph per batch: removes launch overhead
    tf32: bool = False  # fp32 cells compute in real fp32 unless this is set


def parse_options(raw):
    return parse_dataclass(Options, raw)


def artifact_key(cell, options):
    return None


def unsupported(cell, options):
    if options.cuda_graphs and cell.device != "cuda":
        return "CUDA graphs need a CUDA device"
    return None


def load(ctx) -> Runner:
    model, channels_last = place_model(ctx.build_model(), ctx.cell, ctx.options.channels_last, ctx.options.tf32)
    return module_runner(model, ctx.cell, channels_last, torch_dtype(ctx.cell.precision), ctx.options.cuda_graphs)
