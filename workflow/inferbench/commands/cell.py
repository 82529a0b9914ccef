"""Measure one benchmark cell and write its shard. Always writes the shard: a cell that cannot
run is recorded as skipped / oom / error with its reason, and the sweep goes on."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HELP = "measure one cell (model x backend x precision x device x resolution x batch) into a Parquet shard"


def add_arguments(p):
    p.add_argument("--spec", required=True, help="the cell's JSON description (from the Snakefile)")
    p.add_argument("--artifact", default="", help="the export manifest (JSON) of the artifact this cell loads, if any")
    p.add_argument("--out", required=True, help="the shard to write (.parquet)")
    p.add_argument("--lock-dir", default="results/.locks", help="where GPU claim locks live")
    p.add_argument("--reference-cache", default="",
                   help="folder where cells share the fp32 reference logits of their inputs (default: none)")
    p.add_argument("--compile-cache", default="",
                   help="folder for torch.compile's on-disk caches (default: the system's temporary folder)")
    p.add_argument("--worker", action="store_true", help=argparse_hidden())
    # set by the job for its worker: when the job's process started (Unix time), its GPU wait
    p.add_argument("--job-started-at", type=float, default=None, help=argparse_hidden())
    p.add_argument("--gpu-wait-s", type=float, default=None, help=argparse_hidden())


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def base_row(spec) -> dict:
    from inferbench.records.environment import host_environment

    c = spec.cell
    row = {"model": c.model, "backend": c.backend, "backend_impl": spec.impl, "precision": c.precision, "device": c.device,
           "resolution": c.resolution, "batch_size": c.batch_size, "backend_options": json.dumps(spec.options, sort_keys=True),
           "seed": spec.seed, "weights": spec.weights or "random",
           "measurement": json.dumps(spec.measurement, sort_keys=True)}
    row.update(host_environment())
    return row


def read_artifact(path: str) -> dict | None:
    if not path:
        return None
    manifest = json.loads(Path(path).read_text())
    if manifest.get("artifact_path"):
        # relative to the manifest: results folders can move (archives, other mounts)
        manifest["artifact_path"] = str(Path(path).parent / Path(manifest["artifact_path"]).name)
    return manifest


def quick_verdict(spec, artifact, manifest_path: str = "") -> tuple[str, str] | None:
    """Reasons a cell cannot run that need no torch import: answered in milliseconds."""
    from inferbench.process.devices import cuda_device_count
    from inferbench.sweep.spec import known_skip

    reason = known_skip(spec.cell, spec.options, cuda_visible=lambda: cuda_device_count() > 0, backend=spec.impl)
    if reason:
        return "skipped", reason
    if artifact is not None and artifact.get("status") != "ok":
        return ("skipped" if artifact.get("status") == "skipped" else "error"), f"export: {artifact.get('reason')}"
    if artifact is not None:
        # never measure a file other than the one exported: a foreign model measures fast and wrong
        from inferbench.records.artifactcheck import problem, remedy

        why = problem(manifest_path, artifact)
        if why:
            return "error", f"{why}; {remedy(manifest_path, artifact)}"
    return None


def rows_with(spec, base: dict, status: str, reason: str) -> list[dict]:
    return [dict(base, io=io, status=status, reason=reason) for io in spec.io_modes]


def job_times(started_at: float, gpu_wait_s: float | None) -> dict:
    """The job's own times, for its shard. Wall-clock time, because the process that writes the
    shard (the worker) is not the one whose start began the job (the job's own process)."""
    return {"job_wall_s": max(0.0, time.time() - started_at), "gpu_wait_s": gpu_wait_s}


def run(args) -> int:
    from inferbench.measure.timing import process_age_s
    from inferbench.sweep.spec import CellSpec

    # The job's clock starts with its process: interpreter start and imports are the job's too.
    started_at = args.job_started_at or time.time() - process_age_s()
    spec = CellSpec.from_json(args.spec)
    artifact = read_artifact(args.artifact)
    if args.worker:
        from inferbench.measure.cellrun import run_cell
        from inferbench.process.isolation import exit_worker
        from inferbench.records.shard import write_shard

        rows = run_cell(spec, artifact, base_row(spec), args.reference_cache or None)
        times = job_times(started_at, args.gpu_wait_s)
        write_shard([dict(r, **times) for r in rows], args.out)
        exit_worker(0)
        return 0  # in a warm worker (inferbench.process.warm), exit_worker returns

    verdict = quick_verdict(spec, artifact, args.artifact)
    if verdict:
        from inferbench.records.shard import write_shard

        print(f"[inferbench cell] {verdict[0]}: {verdict[1]}", file=sys.stderr)
        write_shard(rows_with(spec, dict(base_row(spec), **job_times(started_at, None)), *verdict), args.out)
        return 0
    return run_isolated(args, spec, started_at)


def run_isolated(args, spec, started_at: float) -> int:
    """Run the cell in a worker process, which writes the whole shard (this job's times
    included, see job_times); this process only writes one when the worker could not.
    It imports no Parquet library on that path: ~0.5 s of every job on a 2-core VM."""
    from inferbench.process.devices import ExportsRunning, GpuClaim
    from inferbench.process.isolation import run_inferbench

    # never beside an export (the workflow starts every export first; the last may still run)
    exports_wait_s = ExportsRunning.wait(args.lock_dir)
    if exports_wait_s > 0.05:
        print(f"[inferbench cell] waited {exports_wait_s:.1f} s for the exports", file=sys.stderr, flush=True)
    tmp = f"{args.out}.worker"
    argv = ["cell", "--worker", "--spec", args.spec, "--artifact", args.artifact, "--out", tmp,
            "--reference-cache", args.reference_cache, "--job-started-at", repr(started_at)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.compile_cache:
        from inferbench.process.compilecache import cache_env

        env.update(cache_env(args.compile_cache))
    gpu_wait_s = None
    if spec.cell.device == "cuda":
        # Own one GPU for the whole cell: never two timed cells on one device.
        waiting = time.perf_counter()
        with GpuClaim(args.lock_dir) as claim:
            gpu_wait_s = time.perf_counter() - waiting + exports_wait_s
            argv += ["--gpu-wait-s", repr(gpu_wait_s)]
            env["CUDA_VISIBLE_DEVICES"] = claim.gpu
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's numbering = NVML's, for telemetry
            print(f"[inferbench cell] claimed GPU {claim.gpu}", file=sys.stderr, flush=True)
            # gpu_worker warm: a warm worker runs it (inferbench.process.warm), one per GPU, backend
            # and precision, so that what a worker keeps loaded comes from cells of its own kind
            c = spec.cell
            warm_key = f"{claim.gpu}:{c.backend}:{c.precision}" if spec.gpu_worker == "warm" else None
            result = run_inferbench(argv, spec.timeout_s, env, args.lock_dir, warm_key=warm_key)
    else:
        # CPU cells start a fresh process: forked from the server, ONNX Runtime on the CPU measured
        # slower (docs/method.md, "Processes"), an artifact of the fork that a CPU figure must not
        # include.
        result = run_inferbench(argv, spec.timeout_s, env, args.lock_dir, use_forkserver=False)
    if result.ok and Path(tmp).exists():
        os.replace(tmp, args.out)
        return 0
    Path(tmp).unlink(missing_ok=True)
    if result.no_space:
        # A full disk is not the cell's result: no shard, so the next run, with space, measures it.
        from inferbench.errors import NO_SPACE_EXIT
        from inferbench.process.console import relay_no_space

        relay_no_space(result.output_tail, args.out)
        return NO_SPACE_EXIT
    from inferbench.records.shard import write_shard

    if result.stopped_from_outside:
        # No shard for a worker someone killed (kill -9, a scheduler, a shutdown): the kill says
        # nothing about the cell, and a shard would record it as the cell's result for good, since
        # Snakemake reruns only cells whose shard is missing. Without one this job fails, the sweep
        # goes on with the other cells (keep-going), and the next run measures this cell again.
        # A real OOM kill (inferbench.process.oomwatch) is the cell's own outcome and is recorded as `oom`.
        print(f"[inferbench cell] error: {result.describe()}. No shard written: the cell was stopped, not measured; "
              "run snakemake again to measure it.", file=sys.stderr, flush=True)
        return 1
    base = dict(base_row(spec), **job_times(started_at, gpu_wait_s))
    write_shard(rows_with(spec, base, result.failure_status, result.describe() or "the worker wrote no shard"), args.out)
    return 0
