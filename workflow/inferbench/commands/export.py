"""Make one artifact (TorchScript file, ONNX graph, TensorRT engine) and its manifest.

The manifest (JSON) is the rule's output and always exists: when the export cannot run here
(no CUDA, TensorRT missing) or fails, it says so, and the cells that need it record that reason.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

HELP = "export one backend artifact and write its manifest"


def add_arguments(p):
    import argparse

    p.add_argument("--spec", required=True, help="the export's JSON description (from the Snakefile)")
    p.add_argument("--out", required=True, help="the manifest to write (.json); the artifact is written beside it")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    # set by the job for its worker: when the job's process started (Unix time)
    p.add_argument("--job-started-at", type=float, default=None, help=argparse.SUPPRESS)


def job_times(started_at: float) -> dict:
    """When the export's job started and how long it took (to its manifest): the sweep's clock
    (inferbench.reporting.timebudget) places the exports before the cells from these."""
    from datetime import datetime, timezone

    return {"started_utc": datetime.fromtimestamp(started_at, timezone.utc).isoformat(timespec="seconds"),
            "job_wall_s": max(0.0, time.time() - started_at)}


def write_manifest(path: str, manifest: dict) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def run(args) -> int:
    from inferbench.backends import load_backend
    from inferbench.errors import Skip, is_no_space
    from inferbench.measure.timing import process_age_s
    from inferbench.records.artifactcheck import content_fields
    from inferbench.sweep.spec import ExportSpec

    started_at = args.job_started_at or time.time() - process_age_s()
    spec = ExportSpec.from_json(args.spec)
    backend = load_backend(spec.backend)
    artifact = str(Path(args.out).with_suffix(backend.ARTIFACT_SUFFIX))
    manifest = {"backend": spec.backend, "key": spec.key, "model": spec.model, "weights": spec.weights,
                "seed": spec.seed, "batch_sizes": spec.batch_sizes}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not args.worker:
        return run_isolated(args, manifest, spec, started_at)
    try:
        options = backend.parse_options(spec.options)
        start = time.perf_counter()
        facts = backend.export(spec, options, artifact) or {}
        manifest.update(status="ok", reason="", export_s=time.perf_counter() - start,
                        artifact_path=Path(artifact).name, facts=facts, **content_fields(artifact))
        print(f"[inferbench export] {artifact} in {manifest['export_s']:.2f} s", file=sys.stderr)
    except Skip as exc:
        manifest.update(status="skipped", reason=str(exc))
        print(f"[inferbench export] skipped: {exc}", file=sys.stderr)
    except Exception as exc:
        if is_no_space(exc):
            raise  # not the export's result (inferbench.cli says so, and its job records nothing)
        traceback.print_exc()
        manifest.update(status="error", reason=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:500])
    write_manifest(args.out, dict(manifest, **job_times(started_at)))
    from inferbench.process.isolation import exit_worker

    exit_worker(0)


def run_isolated(args, manifest: dict, spec, started_at: float) -> int:
    import contextlib

    from inferbench.errors import Skip
    from inferbench.process.compilecache import cache_env
    from inferbench.process.devices import ExportsRunning, GpuClaim
    from inferbench.process.isolation import run_inferbench
    from inferbench.sweep.spec import export_claims_gpu

    argv = ["export", "--worker", "--spec", args.spec, "--out", args.out, "--job-started-at", repr(started_at)]
    results = Path(args.out).parents[3]  # results/artifacts/MODEL/BACKEND/x.json
    lock_dir = str(results / ".locks")
    # a precompilation (torch_compile's export) fills the cache its cells compile from
    env = dict(os.environ, PYTHONUNBUFFERED="1", **cache_env(results / ".cache" / "torchinductor"))
    with contextlib.ExitStack() as stack:
        stack.enter_context(ExportsRunning(lock_dir))  # no cell starts while an export runs
        if export_claims_gpu(spec):
            # Exports run several at once (never beside a timed cell): one built on a GPU has that
            # GPU to itself, as a cell does, since a TensorRT build times its candidate kernels.
            try:
                claim = stack.enter_context(GpuClaim(lock_dir))
                env.update(CUDA_VISIBLE_DEVICES=claim.gpu, CUDA_DEVICE_ORDER="PCI_BUS_ID")
            except Skip:
                pass  # no GPU here: the export itself records that
        result = run_inferbench(argv, args.timeout, env, lock_dir)
    if result.stopped_from_outside:
        # as for a cell (commands/cell.py): a killed export leaves no manifest, so it runs again
        print(f"[inferbench export] error: {result.describe()}. No manifest written: run snakemake again.", file=sys.stderr)
        return 1
    if result.no_space:
        # as for a cell: a full disk is not the export's result, and it runs again once there is space
        from inferbench.errors import NO_SPACE_EXIT
        from inferbench.process.console import relay_no_space

        Path(args.out).unlink(missing_ok=True)
        relay_no_space(result.output_tail, args.out)
        return NO_SPACE_EXIT
    if not result.ok or not Path(args.out).exists():
        write_manifest(args.out, dict(manifest, status="error", reason=result.describe() or "the export wrote no manifest",
                                      **job_times(started_at)))
    return 0
