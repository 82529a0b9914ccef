"""Measure each GPU's ceiling (a dense matrix product per precision, inferbench.measure.peak)
into a JSON record that the aggregation reads: once per sweep, each GPU claimed as a cell claims
it, so that nothing else runs on it meanwhile. Without a CUDA device the record says so."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

HELP = "measure each GPU's dense matrix-product rate per precision (the sweep's ceiling)"


def add_arguments(p):
    import argparse

    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16"], help="the sweep's GPU precisions")
    p.add_argument("--lock-dir", default="results/.locks", help="where GPU claim locks live")
    p.add_argument("--out", required=True, help="the record to write (.json)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one GPU's measurement may take")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def run(args) -> int:
    from inferbench.measure.peak import precisions_to_measure

    precisions = precisions_to_measure(args.precisions)
    if args.worker:
        from inferbench.measure.peak import measure_gpu

        print(json.dumps(measure_gpu(precisions)))
        return 0
    from inferbench.process.devices import NO_CUDA, ExportsRunning, candidate_gpus, cuda_device_count

    record = {"hostname": socket.gethostname(), "precisions": precisions, "gpus": []}
    if cuda_device_count() == 0:
        record["reason"] = NO_CUDA
    else:
        ExportsRunning.wait(args.lock_dir)  # never beside an export (a TensorRT build times kernels)
        for gpu in candidate_gpus():
            record["gpus"].append(measure_one(gpu, precisions, args))
    write_json(args.out, record)
    print(f"[inferbench gpu-peak] {json.dumps(record)}", file=sys.stderr)
    return 0


def measure_one(gpu: str, precisions: list[str], args) -> dict:
    """One GPU, claimed for the measurement, in a process of its own that sees only it."""
    entry = {"gpu_index": int(gpu) if gpu.isdigit() else None, "gpu": gpu}
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpu, CUDA_DEVICE_ORDER="PCI_BUS_ID", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "inferbench", "gpu-peak", "--worker", "--out", "-", "--precisions", *precisions]
    try:
        with claim_of(gpu, args.lock_dir):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return dict(entry, error=f"the measurement took longer than {args.timeout:.0f} s")
    sys.stderr.write(proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(entry, error=f"the measurement failed (exit {proc.returncode}): {tail}"[:500])
    return dict(entry, **json.loads(lines[-1]))


@contextlib.contextmanager
def claim_of(gpu: str, lock_dir: str):
    """The claim of this one GPU (GpuClaim takes one of the visible GPUs), waiting while a cell holds it."""
    from inferbench.process.devices import GpuClaim

    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        claim = GpuClaim(lock_dir).__enter__()
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    try:
        yield claim
    finally:
        claim.__exit__(None, None, None)


def write_json(path: str, record: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
