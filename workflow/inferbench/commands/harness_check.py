"""Check the harness against independent bare loops in fresh processes (inferbench.selfcheck.harnesscheck)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

HELP = ("measure a sample of the sweep's cells again, the harness and an independent bare loop in alternation, "
        "each in a fresh process; write the ratios")


def add_arguments(p):
    p.add_argument("--summary", required=True, help="the sweep's summary.parquet")
    p.add_argument("--config", required=True, help="the sweep's resolved config (config.resolved.yaml)")
    p.add_argument("--results", required=True, help="the sweep's results folder (for its exported artifacts)")
    p.add_argument("--lock-dir", required=True, help="where GPU claim locks live (the cells' own)")
    p.add_argument("--out", required=True, help="CSV to write")


def _stop_on_sigterm():
    """A scheduler or Snakemake ends a job with SIGTERM: stop as on Ctrl-C, keeping the rows."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)


def run(args) -> int:
    import pandas as pd
    import yaml

    from inferbench.selfcheck.harnesscheck import (outside_band, partial_path, RATIO_BAND, sample_size,
                                                   table_of)

    config = yaml.safe_load(Path(args.config).read_text())
    summary = pd.read_parquet(args.summary)

    def log(msg):
        print(f"[inferbench harness-check] {msg}", file=sys.stderr, flush=True)

    partial = partial_path(args.out)
    partial.parent.mkdir(parents=True, exist_ok=True)
    rows: dict = {}
    stopped, saving = [], threading.Lock()

    def save(measured):
        table_of(measured).to_csv(partial, index=False)

    def keep(msg):  # each bare loop's line, then the rows so far on disk
        log(msg)
        with saving:
            if not stopped:  # after a stop, a loop it killed is not a measurement
                save(dict(rows))

    _stop_on_sigterm()
    try:
        table = _check(args, config, summary, rows, keep, log)
    except KeyboardInterrupt as exc:
        rows = getattr(exc, "rows", rows)  # CheckStopped: as they were before any loop was killed
        with saving:
            stopped.append(True)
            save(rows)
        log(f"stopped after {len(rows)} of {sample_size(summary)} cells; the rows measured are in {partial} "
            "(the check is not complete, so no harness_check.csv: run the sweep again to measure it whole)")
        return 130
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    partial.unlink(missing_ok=True)
    off = outside_band(table)
    log(f"{len(table)} cells checked; {len(off)} outside [{RATIO_BAND[0]}, {RATIO_BAND[1]}]")
    return 0


def _check(args, config, summary, rows, progress, log):
    import contextlib

    from inferbench.process.compilecache import cache_env
    from inferbench.process.devices import GpuClaim, candidate_gpus
    from inferbench.selfcheck.harnesscheck import check

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
            return check(summary, config, Path(args.results), env, progress=progress, gpus=gpus, rows=rows,
                         config_path=Path(args.config))
    return check(summary, config, Path(args.results), env, progress=progress, rows=rows, config_path=Path(args.config))
