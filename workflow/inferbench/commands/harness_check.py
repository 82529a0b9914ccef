"""Check the harness against independent bare loops in fresh processes (inferbench.selfcheck.harnesscheck)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HELP = "measure a sample of the sweep's cells again with a bare loop in fresh processes; write the ratios"


def add_arguments(p):
    p.add_argument("--summary", required=True, help="the sweep's summary.parquet")
    p.add_argument("--config", required=True, help="the sweep's resolved config (config.resolved.yaml)")
    p.add_argument("--results", required=True, help="the sweep's results folder (for its exported artifacts)")
    p.add_argument("--lock-dir", required=True, help="where GPU claim locks live (the cells' own)")
    p.add_argument("--out", required=True, help="CSV to write")


def run(args) -> int:
    import contextlib

    import pandas as pd
    import yaml

    from inferbench.process.compilecache import cache_env
    from inferbench.process.devices import GpuClaim, candidate_gpus
    from inferbench.selfcheck.harnesscheck import check, outside_band, RATIO_BAND

    config = yaml.safe_load(Path(args.config).read_text())
    summary = pd.read_parquet(args.summary)

    def log(msg):
        print(f"[inferbench harness-check] {msg}", file=sys.stderr, flush=True)

    needs_gpu = ((summary["device"] == "cuda") & (summary["status"] == "ok")).any()
    # the cells' compile caches: a torch_compile bare loop compiles what its cell compiled
    env = dict(os.environ, PYTHONUNBUFFERED="1", **cache_env(Path(args.results) / ".cache" / "torchinductor"))
    if needs_gpu:
        # The same claim as a timed cell: nothing else is timed on these GPUs meanwhile. As many
        # GPUs as the run was given GPU tokens (INFERBENCH_GPU_TOKENS, set by the workflow), so
        # that no cell is timed on any of them meanwhile; the bare loops measure one at a time.
        want = max(1, int(os.environ.get("INFERBENCH_GPU_TOKENS") or 1))
        with contextlib.ExitStack() as stack:
            claims = [stack.enter_context(GpuClaim(args.lock_dir))]
            for _ in range(want - 1):
                if len(claims) >= len(candidate_gpus()):
                    break
                claims.append(stack.enter_context(GpuClaim(args.lock_dir)))
            gpus = [c.gpu for c in claims]
            log(f"claimed GPU {', '.join(gpus)}")
            table = check(summary, config, Path(args.results), env, progress=log, gpus=gpus)
    else:
        table = check(summary, config, Path(args.results), env, progress=log)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    off = outside_band(table)
    log(f"{len(table)} cells checked; {len(off)} outside [{RATIO_BAND[0]}, {RATIO_BAND[1]}]")
    return 0
