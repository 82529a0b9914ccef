"""torch.compile (Inductor). Compilation happens in `load`, timed as compile_s, never in the timed window."""

from __future__ import annotations

import time
from dataclasses import dataclass

from inferbench.backends.base import Runner, parse_dataclass, torch_dtype
from inferbench.backends.torch_common import module_runner, place_model
from inferbench.errors import UserError

ARTIFACT_SUFFIX = None
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class Options:
    mode: str = "default"  # reduce-overhead and max-autotune use CUDA graphs
    backend: str = "inductor"
    # false: specialise on the cell's exact shape (fastest kernels, one compilation per shape);
    # "batch": only the batch dimension is symbolic, so Inductor's on-disk cache serves every
    # batch size of a resolution from a few compilations (shorter sweeps, possibly slower
    # kernels: measure); true: every dimension symbolic.
    dynamic: bool | str = False
    fullgraph: bool = False
    channels_last: bool | None = None
    tf32: bool = False

    def check(self):
        if self.mode not in MODES:
            raise UserError(f"option 'mode' must be one of {', '.join(MODES)}, got {self.mode!r}")
        if isinstance(self.dynamic, str) and self.dynamic != "batch":
            raise UserError(f"option 'dynamic' must be false, true or \"batch\", got {self.dynamic!r}")


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
    # dynamic=None lets mark_dynamic below make the batch dimension, and only it, symbolic.
    compiled = torch.compile(model, mode=o.mode, backend=o.backend,
                             dynamic=None if o.dynamic == "batch" else o.dynamic, fullgraph=o.fullgraph)
    runner = module_runner(compiled, ctx.cell, channels_last, torch_dtype(ctx.cell.precision))
    # Compile now, on an input of the cell's exact shape and layout, so the timed window never
    # contains compilation. Two calls: CUDA-graph modes record on the second.
    example = torch.randn(ctx.cell.batch_size, 3, ctx.cell.resolution, ctx.cell.resolution,
                          device=ctx.cell.device, dtype=torch_dtype(ctx.cell.precision))
    example = runner.prepare(example)
    if o.dynamic == "batch":
        torch._dynamo.mark_dynamic(example, 0)
    cache_before = fx_graph_cache_counts()
    start = time.perf_counter()
    for _ in range(2):
        runner.run(example)
    if ctx.cell.device == "cuda":
        torch.cuda.synchronize()
    runner.compile_s = time.perf_counter() - start
    cache_after = fx_graph_cache_counts()
    # compile_s is only comparable between cells that compiled cold or warm alike: say which.
    runner.facts.update(mode=o.mode, dynamic=o.dynamic, torch_compile_backend=o.backend,
                        fx_graph_cache_hits=cache_after[0] - cache_before[0],
                        fx_graph_cache_misses=cache_after[1] - cache_before[1])
    return runner


def fx_graph_cache_counts() -> tuple[int, int]:
    """Inductor's FX-graph cache hits and misses so far in this process (a private counter:
    zeros if a torch release moves it)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0, 0
    inductor = counters.get("inductor", {})
    return int(inductor.get("fxgraph_cache_hit", 0)), int(inductor.get("fxgraph_cache_miss", 0))
