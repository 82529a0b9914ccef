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


def cache_env(base_dir) -> dict:
    """Environment for Inductor's on-disk caches under base_dir (results/.cache/torchinductor): the
    FX graph cache and AOTAutograd cache (compiled graphs), Triton's kernels (under the same
    folder), and autotuning results, shared by every cell, worker and harness check of the
    results folder and kept for its reruns, instead of the system's temporary folder.

    Never stale: Inductor keys each entry by the graph, its inputs' shapes and layouts, its own
    configuration, the torch and Triton versions and the GPU. The folder is keyed too (torch and
    Triton versions, the container image), so that entries of another install never sit beside
    these. Only what is compiled comes from the cache, never a figure: compile_s says whether a
    cell compiled or hit the cache (fx_graph_cache_hits and _misses in its backend options).
    Variables already set in the environment are left as they are."""
    import hashlib
    import os
    from importlib import metadata
    from pathlib import Path

    facts = []
    for dist in ("torch", "triton", "pytorch-triton"):
        try:
            facts.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    facts.append(f"image={os.environ.get('INFERBENCH_CONTAINER_IMAGE', '')}")
    key = hashlib.sha256("\n".join(facts).encode()).hexdigest()[:16]
    env = {"TORCHINDUCTOR_CACHE_DIR": str(Path(base_dir).resolve() / key),
           "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}
    return {k: v for k, v in env.items() if k not in os.environ}


def fx_graph_cache_counts() -> tuple[int, int]:
    """Inductor's FX-graph cache hits and misses so far in this process (a private counter:
    zeros if a torch release moves it)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0, 0
    inductor = counters.get("inductor", {})
    return int(inductor.get("fxgraph_cache_hit", 0)), int(inductor.get("fxgraph_cache_miss", 0))
