"""torch.compile (Inductor). Compilation happens in `load`, timed as compile_s, never in the timed window."""

from __future__ import annotations

import time
from dataclasses import dataclass

from inferbench.backends.base import Runner, parse_dataclass, torch_dtype
from inferbench.backends.torch_common import module_runner, place_model
from inferbench.errors import UserError

USES_TORCH_COMMON = True
ARTIFACT_SUFFIX = None
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class Options:
    mode: str = "default"  # reduce-overhead and max-autotune use CUDA graphs
    backend: str = "inductor"
    dynamic: bool = False  # each cell has one shape: specialise on it
    fullgraph: bool = False
    channels_last: bool | None = None
    tf32: bool = False

    def check(self):
        if self.mode not in MODES:
            raise UserError(f"option 'mode' must be one of {', '.join(MODES)}, got {self.mode!r}")


def parse_options(raw):
    return parse_dataclass(Options, raw)


def artifact_key(cell, options):
    return None


def unsupported(cell, options):
    return None


def load(ctx) -> Runner:
    import torch

    o = ctx.options
    model, channels_last = place_model(ctx.build_model(), ctx.cell, o.channels_last, o.tf32)
    compiled = torch.compile(model, mode=o.mode, backend=o.backend, dynamic=o.dynamic, fullgraph=o.fullgraph)
    runner = module_runner(compiled, ctx.cell, channels_last, torch_dtype(ctx.cell.precision))
    # Compile now, on an input of the cell's exact shape and layout, so the timed window never
    # contains compilation. Two calls: CUDA-graph modes record on the second.
    example = torch.randn(ctx.cell.batch_size, 3, ctx.cell.resolution, ctx.cell.resolution,
                          device=ctx.cell.device, dtype=torch_dtype(ctx.cell.precision))
    example = runner.prepare(example)
    start = time.perf_counter()
    for _ in range(2):
        runner.run(example)
    if ctx.cell.device == "cuda":
        torch.cuda.synchronize()
    runner.compile_s = time.perf_counter() - start
    runner.facts.update(mode=o.mode, dynamic=o.dynamic, torch_compile_backend=o.backend)
    return runner
