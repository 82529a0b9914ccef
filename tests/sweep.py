"""Helpers shared by the tests: the real tiny sweep (`snakemake` on tests/configs/tiny.yaml in a
scratch checkout, a copy of this repository, so that a test may edit a backend's source there
without touching the real one; its jobs run the installed `inferbench`, the same code), reading
Snakemake's log, and the processes a run leaves (fork servers, workers).

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


def job_blocks(log: str) -> dict[str, list[str]]:
    """Each job Snakemake planned or ran, as its log describes it (`rule NAME:` in a dry run,
    `localrule NAME:` in a run, and the indented lines below it), by rule."""
    blocks: dict[str, list[str]] = {}
    lines = log.splitlines()
    for i, line in enumerate(lines):
        header = re.fullmatch(r"(?:local)?rule (\w+):", line)
        if header is None:
            continue
        body = [line]
        for following in lines[i + 1:]:
            if not following.startswith("    "):
                break
            body.append(following)
        blocks.setdefault(header.group(1), []).append("\n".join(body))
    return blocks


# ------------------------------------------------------------------ processes


def children_of(pid: int) -> list[int]:
    """The child processes of `pid` (from /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running, and not a zombie (a zombie is dead for our purposes)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def hang_args(folder: Path) -> list[str]:
    """`inferbench validate FIFO` blocks forever opening a FIFO nobody writes."""
    fifo = folder / "hang.fifo"
    os.mkfifo(fifo)
    return ["validate", str(fifo)]


def forkserver_pids(locks: Path) -> list[int]:
    pids = []
    for log in locks.glob("*.sock.log"):
        pids += [int(m) for m in re.findall(r"fork server (\d+) listening", log.read_text())]
    return pids


def server_pid(locks: Path) -> int:
    """The fork server that serves the lock folder `locks` now."""
    (log,) = locks.glob("*.sock.log")
    return int(re.findall(r"fork server (\d+) listening", log.read_text())[-1])


def stop_forkserver(locks: Path) -> None:
    """A fork server exits when its socket file disappears (checked every second): remove the lock
    folder that holds it, and check that every server it had stops."""
    if not locks.exists():
        return
    pids = forkserver_pids(locks)
    shutil.rmtree(locks, ignore_errors=True)
    deadline = time.monotonic() + 15
    running = pids
    while running and time.monotonic() < deadline:
        time.sleep(0.3)
        running = [p for p in pids if alive(p)]
    assert not running, f"fork server(s) {running} outlived their socket in {locks}"


def stop_forkservers(results: Path) -> None:
    """Stop the fork servers of a results folder (their sockets live in results/.locks)."""
    stop_forkserver(results / ".locks")
