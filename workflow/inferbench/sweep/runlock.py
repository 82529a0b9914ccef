"""One run at a time per results folder.

Snakemake locks only its own working directory, so two checkouts (or two working directories)
whose configs name the same absolute `results_dir` would otherwise run side by side and overwrite
each other's shards. The first run holds an exclusive `flock` on `<results_dir>/.inferbench-run.lock`
for as long as its process lives; the kernel releases it when that process ends, however it ends
(no stale lock to clean up after a crash or `kill -9`). The file says who holds it, for the message
the second run prints.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from inferbench.errors import UserError, is_no_space
from inferbench.process.console import no_space_message

LOCK_NAME = ".inferbench-run.lock"


def lock_path(results_dir: str | Path) -> Path:
    return Path(results_dir) / LOCK_NAME


def hold(results_dir: str | Path):
    """Take the results folder for this process; returns the open lock file, which must stay open
    (referenced) for as long as the run writes there. Raises UserError naming the holder if another
    process has it."""
    path = lock_path(results_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Python opens files non-inheritable: the jobs and fork servers this run starts do not keep it.
        f = open(path, "a+")
    except OSError as exc:
        raise UserError(f"cannot write the results folder's lock file {path} ({exc.strerror}): "
                        "make results_dir writable, or give another one") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read()
        f.close()
        raise UserError(busy_message(Path(results_dir), holder)) from None
    f.seek(0)
    f.truncate()
    try:
        f.write(json.dumps(holder_info(), sort_keys=True) + "\n")
        f.flush()
    except OSError as exc:
        f.close()
        if is_no_space(exc):
            raise UserError(no_space_message(path)) from None
        raise
    return f


def held_elsewhere(results_dir: str | Path) -> bool:
    """Whether another process holds the results folder now (without taking it)."""
    try:
        with open(lock_path(results_dir), "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False  # no folder yet, or unwritable: hold() says so
    return False


def holder_info() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "cwd": os.getcwd(),
        "since_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def busy_message(results_dir: Path, holder_text: str) -> str:
    try:
        h = json.loads(holder_text)
        who = (f"pid {h['pid']} on host {h['host']}, started in working directory {h['cwd']} "
               f"at {h['since_utc']}")
    except (ValueError, KeyError, TypeError):
        who = "a process that has not written its name yet"
    return (f"results_dir {results_dir.resolve()} is in use by another inferbench run: {who}. "
            "Two runs in one results folder would overwrite each other's shards. Wait for that run to end "
            "(or stop it), or give this run another results_dir.")
