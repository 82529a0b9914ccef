"""What a job tells the person at Snakemake's console itself, not only its log: a full disk.

A job's output goes to its log (`> {log} 2>&1`), which lives in the results folder: when that
folder's disk is full, the log cannot be written, and Snakemake shows only "Logfile ... empty
file". So every job's shell first keeps Snakemake's stderr as descriptor 3 and names it in
INFERBENCH_CONSOLE_FD (the shell prefix in workflow/rules/common.smk). The command takes that
descriptor once, as it starts, and clears the variable, so that the processes it starts (workers,
a fork server), whose descriptor 3 is something else, never write there.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from inferbench.errors import NO_SPACE_TEXT

CONSOLE_FD_ENV = "INFERBENCH_CONSOLE_FD"

_console_fd: int | None = None


def adopt() -> None:
    """Take the console descriptor the job's shell named, if any (see the module's docstring)."""
    global _console_fd
    named = os.environ.pop(CONSOLE_FD_ENV, None)
    if _console_fd is not None or not named:
        return
    try:
        # a private, non-inheritable copy: what this process starts does not get it
        _console_fd = os.dup(int(named))
    except (ValueError, OSError):
        _console_fd = None


def say(line: str, log: bool = True) -> None:
    """One line to the job's log (stderr) and, where there is one, to Snakemake's console."""
    text = line.rstrip("\n") + "\n"
    try:
        if log:
            sys.stderr.write(text)
            sys.stderr.flush()
    except OSError:
        pass  # the log is on the full disk: the console still hears it
    if _console_fd is not None:
        try:
            os.write(_console_fd, text.encode(errors="replace"))
        except OSError:
            pass


def mount_of(path: Path) -> Path:
    """The mount point of the filesystem that holds `path` (or would, for a file not made yet)."""
    path = existing(path)
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def existing(path: Path) -> Path:
    """`path`, or its nearest folder that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def no_space_message(path: str | os.PathLike | None) -> str:
    """The disk-full message: which folder, its filesystem's free bytes, and what to do."""
    if not path:
        return (f"{NO_SPACE_TEXT}. Free space on the results folder's filesystem, or set results_dir "
                "elsewhere, then run again: finished cells are kept.")
    path = Path(os.path.abspath(path))
    folder = path if path.is_dir() else path.parent
    mount = mount_of(folder)
    try:
        free = f"{shutil.disk_usage(existing(folder)).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    return (f"{NO_SPACE_TEXT} writing {path} (folder {folder}; filesystem {mount}: {free}). "
            f"Free space on {mount}, or set results_dir elsewhere, then run again: finished cells are kept.")


def relay_no_space(output_tail, fallback_path) -> None:
    """A worker stopped by a full disk: its own line (naming the file it was writing) to the
    console, since the worker has no console of its own; else one naming `fallback_path`."""
    said = [line for line in output_tail if NO_SPACE_TEXT in line]
    if said:
        say(said[-1].strip(), log=False)  # the log has it already, from the worker
    else:
        say(f"inferbench: error: {no_space_message(fallback_path)}")


# Below this much free space a run is warned before it starts: the exported models of one model
# (an fp32 and an fp16 ONNX graph, a TorchScript file, TensorRT engines) and the compile caches
# take hundreds of MB for a ResNet-18.
LOW_SPACE_BYTES = 1 << 30


def low_space_warning(results_dir: str | os.PathLike) -> str | None:
    """A warning for a run about to start, when its results folder's filesystem is nearly full."""
    try:
        free = shutil.disk_usage(existing(Path(results_dir))).free
    except OSError:
        return None
    if free >= LOW_SPACE_BYTES:
        return None
    return (f"only {free:,} bytes free on {mount_of(Path(results_dir))}, which holds results_dir "
            f"{os.path.abspath(results_dir)}; a job that fills it stops with '{NO_SPACE_TEXT}', and once space is "
            "freed a plain rerun goes on from the finished cells.")
