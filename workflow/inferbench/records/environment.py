"""What a result needs to be reproduced: software versions, host, GPU, driver, run identity."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from inferbench import __version__


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(repo: Path | None = None) -> str | None:
    """The checkout's commit, with "+dirty" when tracked files differ from it; None outside git.
    The Snakefile sets INFERBENCH_GIT_COMMIT once for every job (a container may have no git)."""
    if os.environ.get("INFERBENCH_GIT_COMMIT"):
        return os.environ["INFERBENCH_GIT_COMMIT"]
    cwd = repo or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        commit = head.stdout.strip()
        if head.returncode != 0 or len(commit) != 40:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def software_versions() -> dict:
    """Versions from package metadata: cheap, no heavy import."""
    ort = _version("onnxruntime-gpu") or _version("onnxruntime")
    return {
        "python_version": platform.python_version(),
        "torch_version": _version("torch"),
        "torchvision_version": _version("torchvision"),
        "onnx_version": _version("onnx"),
        "onnxruntime_version": ort,
        "torch_tensorrt_version": _version("torch-tensorrt") or _version("torch_tensorrt"),
        "tensorrt_version": _version("tensorrt") or _version("tensorrt-cu13") or _version("tensorrt-cu12"),
        "inferbench_version": __version__,
    }


def run_identity() -> dict:
    """Set once per sweep by the Snakefile (environment variables are inherited by every job)."""
    return {
        "run_id": os.environ.get("INFERBENCH_RUN_ID") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        "config_sha256": os.environ.get("INFERBENCH_CONFIG_SHA256"),
        # apptainer/singularity set these inside a container
        "container_image": os.environ.get("INFERBENCH_CONTAINER_IMAGE") or os.environ.get("APPTAINER_CONTAINER")
        or os.environ.get("SINGULARITY_CONTAINER"),
    }


def host_environment() -> dict:
    env = {
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "git_commit": git_commit(),
    }
    env.update(software_versions())
    env.update(run_identity())
    return env


def torch_cuda_environment() -> dict:
    """CUDA runtime and cuDNN as PyTorch sees them (call only where torch is imported)."""
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"cuda_version": torch.version.cuda, "cudnn_version": str(cudnn) if cudnn else None}
