"""The real tiny sweep shared by the tests: `snakemake` on tests/configs/tiny.yaml in a scratch
checkout (a copy of this repository, so that a test may edit a backend's source there without
touching the real one); its jobs run the installed `inferbench` (the same code).

Every snakemake call costs ~10 s of start-up on machines where a SLURM client is installed but no
controller answers (the SLURM executor plugin runs `scontrol show config` on import).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"
BIN = Path(sys.executable).parent


def _env() -> dict:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1")
    env.setdefault("INFERBENCH_FORKSERVER", "1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def snakemake(checkout: Path, workdir: Path, configfile: Path, *extra: str, timeout: float = 480,
              check: bool = True, snakefile: str | None = None) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "snakemake"), "--snakefile", snakefile or str(checkout / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", "--resources=gpu=2", *extra]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=_env())
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake exited {proc.returncode}: {' '.join(cmd)}\n--- stdout ---\n{proc.stdout[-5000:]}"
                    f"\n--- stderr ---\n{proc.stderr[-10000:]}")
    return proc


def make_checkout(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", ".whl", ".snakemake", ".pytest_cache", "results", "results-*",
                                    "__pycache__", "*.egg-info", ".venv", "build")
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def forkserver_pids(locks: Path) -> list[int]:
    pids = []
    for log in locks.glob("*.sock.log"):
        pids += [int(m) for m in re.findall(r"fork server (\d+) listening", log.read_text())]
    return pids


def stop_forkservers(results: Path) -> None:
    """A fork server exits when its socket file disappears (checked every second)."""
    locks = results / ".locks"
    if not locks.exists():
        return
    pids = forkserver_pids(locks)
    shutil.rmtree(locks, ignore_errors=True)
    deadline = time.monotonic() + 15
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.3)
        alive = [p for p in pids if _alive(p)]
    assert not alive, f"fork server(s) {alive} outlived their socket in {locks}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
