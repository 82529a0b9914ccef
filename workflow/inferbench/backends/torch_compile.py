"""torch.compile (Inductor). Compilation happens in `load`, timed as compile_s, never in the timed window.

With `precompile: true` the compilation moves out of the cells: each (device, precision,
resolution; and batch size, with `dynamic: false`) is compiled once by an export job into the
results folder's Inductor cache (inferbench.process.compilecache), all of them side by side
before the first cell, and each cell's `load` then compiles from that cache (`compile_s` is then
a cache hit, `fx_graph_cache_hits` says so; the cold compilation's seconds are the export's
`export_s`). Nothing a cell times changes: its kernels are the ones it would have compiled, and
kernels that Inductor tunes by timing them are tuned in the cell, alone (below).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from inferbench.backends.base import Runner, parse_dataclass, torch_dtype
from inferbench.backends.torch_common import module_runner, place_model
from inferbench.errors import UserError

# The artifact of a precompilation is its record; what it compiled lives in Inductor's cache.
ARTIFACT_SUFFIX = ".compiled.json"
# With `dynamic: batch` one compilation serves every batch size: it is made at the smallest.
NEEDS_BATCH_RANGE = True
# What the compilation depends on (all but `precompile` itself, which only says whether to export).
EXPORT_OPTIONS = ("mode", "compile_backend", "dynamic", "fullgraph", "channels_last", "tf32")
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class Options:
    mode: str = "default"  # reduce-overhead and max-autotune use CUDA graphs
    compile_backend: str = "inductor"  # torch.compile's `backend` argument
    # false: specialise on the cell's exact shape (fastest kernels, one compilation per shape);
    # "batch": only the batch dimension is symbolic, so Inductor's on-disk cache serves every
    # batch size of a resolution from a few compilations (shorter sweeps, possibly slower
    # kernels: measure); true: every dimension symbolic.
    dynamic: bool | str = False
    fullgraph: bool = False
    channels_last: bool | None = None
    tf32: bool = False
    # true: compile before the cells, several at once, into the results folder's cache (the
    # module's docstring); false: each warm worker compiles on its first cell of a shape.
    precompile: bool = False

    def check(self):
        if self.mode not in MODES:
            raise UserError(f"option 'mode' must be one of {', '.join(MODES)}, got {self.mode!r}")
        if isinstance(self.dynamic, str) and self.dynamic != "batch":
            raise UserError(f"option 'dynamic' must be false, true or \"batch\", got {self.dynamic!r}")


def parse_options(raw):
    return parse_dataclass(Options, raw)


def artifact_key(cell, options):
    if not options.precompile:
        return None
    key = {"device": cell.device, "precision": cell.precision, "resolution": cell.resolution}
    if options.dynamic is False:  # one compilation per shape
        key["batch_size"] = cell.batch_size
    return key


def autotunes_when_compiling(options) -> bool:
    """max-autotune times candidate kernels while it compiles and keeps the fastest in what it
    compiled: that must happen alone on the GPU, as a cell is timed."""
    return options.mode.startswith("max-autotune")


def export_shares_gpu(options) -> bool:
    """Precompilations of the other modes run side by side on one GPU (inferbench.sweep.spec)."""
    return not autotunes_when_compiling(options)


def export(spec, options, out_path) -> dict:
    """Compile as the cells of this key will (the same `load`), into Inductor's on-disk cache
    (the export job's environment points it at the results folder's); the artifact is the record."""
    import torch

    from inferbench.backends.base import LoadContext
    from inferbench.process.devices import require_device
    from inferbench.sweep.grid import Cell

    require_device(spec.device)
    if not autotunes_when_compiling(options):
        # Side by side with other precompilations, the Triton kernels that Inductor tunes by
        # timing them on their first run (reductions, say) would be timed under contention: keep
        # none of those choices, so that each cell tunes them itself, alone, on its first call.
        torch._inductor.config.autotune_local_cache = False
    batch = spec.key.get("batch_size") or min(spec.batch_sizes)
    cell = Cell(spec.model, "torch_compile", spec.device, spec.precision, spec.resolution, batch)
    runner = load(LoadContext(cell=cell, options=options, artifact_path=None, threads=torch.get_num_threads(),
                              build_model=spec.build_model, in_chans=spec.in_chans))
    facts = {"compiled_at_batch_size": batch, "compile_s": runner.compile_s,
             **{k: runner.facts[k] for k in ("fx_graph_cache_hits", "fx_graph_cache_misses")}}
    Path(out_path).write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    return facts


def unsupported(cell, options):
    if options.mode == "reduce-overhead" and cell.device != "cuda":
        # on the CPU it would compile as mode default: a second copy of that cell under another name
        return "mode reduce-overhead replays CUDA graphs, which need a CUDA device"
    return None


def load(ctx) -> Runner:
    import torch

    o = ctx.options
    model, channels_last = place_model(ctx.build_model(), ctx.cell, o.channels_last, o.tf32)
    # dynamic=None lets mark_dynamic below make the batch dimension, and only it, symbolic.
    compiled = torch.compile(model, mode=o.mode, backend=o.compile_backend,
                             dynamic=None if o.dynamic == "batch" else o.dynamic, fullgraph=o.fullgraph)
    runner = module_runner(compiled, ctx.cell, channels_last, torch_dtype(ctx.cell.precision))
    # Compile now, on an input of the cell's exact shape and layout, so the timed window never
    # contains compilation. Two calls: CUDA-graph modes record on the second.
    example = torch.randn(ctx.cell.batch_size, ctx.in_chans, ctx.cell.resolution, ctx.cell.resolution,
                          device=ctx.cell.device, dtype=torch_dtype(ctx.cell.precision))
    example = runner.prepare(example)
    if o.dynamic == "batch":
        torch._dynamo.mark_dynamic(example, 0)
    cache_before, skips_before = fx_graph_cache_counts(), cudagraph_skips()
    start = time.perf_counter()
    # beside other cells' timed windows, compile work keeps off their CPUs (ctx.compile_work)
    with ctx.compile_work() as work:
        for _ in range(2):
            runner.run(example)
        if ctx.cell.device == "cuda":
            torch.cuda.synchronize()
    runner.compile_s = time.perf_counter() - start
    runner.facts.update(work.facts())
    cache_after = fx_graph_cache_counts()
    # compile_s is only comparable between cells that compiled cold or warm alike: say which.
    runner.facts.update(mode=o.mode, dynamic=o.dynamic, torch_compile_backend=o.compile_backend,
                        fx_graph_cache_hits=cache_after[0] - cache_before[0],
                        fx_graph_cache_misses=cache_after[1] - cache_before[1])
    if o.mode in ("reduce-overhead", "max-autotune") and ctx.cell.device == "cuda":
        # Inductor falls back to launching kernels one by one when it cannot graph the model
        # (it logs why): then this cell measures no CUDA graphs, and says so. Each call is a new
        # CUDA-graph-trees iteration by its own rule (one per torch.compile invocation without a
        # pending backward), and the harness reads each output before the next call, so no
        # cudagraph_mark_step_begin() is needed (or called) between calls.
        runner.facts.update(cuda_graphs=cudagraph_skips() == skips_before,
                            cudagraph_skips=cudagraph_skips() - skips_before)
    return runner


def cudagraph_skips() -> int:
    """How many times Inductor gave up CUDA graphs in this process (a private counter: 0 if a
    torch release moves it)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0
    return int(counters.get("inductor", {}).get("cudagraph_skips", 0))


def fx_graph_cache_counts() -> tuple[int, int]:
    """Inductor's FX-graph cache hits and misses so far in this process (a private counter:
    zeros if a torch release moves it)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0, 0
    inductor = counters.get("inductor", {})
    return int(inductor.get("fxgraph_cache_hit", 0)), int(inductor.get("fxgraph_cache_miss", 0))
