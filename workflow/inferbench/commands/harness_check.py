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
    import pandas as pd
    import yaml

    from inferbench.process.devices import GpuClaim
    from inferbench.selfcheck.harnesscheck import check, outside_band, RATIO_BAND

    config = yaml.safe_load(Path(args.config).read_text())
    summary = pd.read_parquet(args.summary)

    def log(msg):
        print(f"[inferbench harness-check] {msg}", file=sys.stderr, flush=True)

    needs_gpu = ((summary["device"] == "cuda") & (summary["status"] == "ok")).any()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if needs_gpu:
        # The same claim as a timed cell: nothing else is timed on this GPU meanwhile.
        with GpuClaim(args.lock_dir) as claim:
            env.update(CUDA_VISIBLE_DEVICES=claim.gpu, CUDA_DEVICE_ORDER="PCI_BUS_ID")
            log(f"claimed GPU {claim.gpu}")
            table = check(summary, config, Path(args.results), env, progress=log)
    else:
        table = check(summary, config, Path(args.results), env, progress=log)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    off = outside_band(table)
    log(f"{len(table)} cells checked; {len(off)} outside [{RATIO_BAND[0]}, {RATIO_BAND[1]}]")
    return 0
