"""A job does not outlive the Snakemake that runs it.

After `kill -9` of Snakemake its jobs would go on (they are reparented, nothing tells them), while
the results folder's lock (inferbench.sweep.runlock), held by Snakemake's process, is already
free: a new run could then measure beside a cell of the old one. So Snakemake names itself to its
jobs (INFERBENCH_SNAKEMAKE_PID, set when the Snakefile is read: its pid and the process's start
time, so that a pid the kernel hands to another process later does not pass for it), and every
`inferbench` command it runs, and every worker such a command starts, watches that process twice a
second. Once it is gone, the process kills the workers it started and itself (SIGKILL: a worker
killed from outside writes no shard, inferbench.process.result.STOPPED_FROM_OUTSIDE), so the next
run measures that cell again.

A watch rather than the other two ways: PR_SET_PDEATHSIG fires on the death of the parent, which
for a job is its shell (and, in the image, Apptainer's starter), not Snakemake; and a lock handed
down to the jobs would refuse a new run for as long as a cell runs that nobody will record. Apptainer shares the
host's PID namespace by default, so a job in the image sees Snakemake's process too. Where it
cannot (another PID namespace, a cluster node), the named process is not there when the watch
starts, and nothing is watched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

RUNNER_ENV = "INFERBENCH_SNAKEMAKE_PID"
POLL_S = 0.5  # a cell whose Snakemake died stops within about this, plus the kill

_children: set[int] = set()  # workers this process started, stopped with it
_children_lock = threading.Lock()


def identity(pid: int) -> str | None:
    """`PID:START` (START: when it started, in clock ticks since boot) while the process runs; None
    once it has ended (a zombie has ended). Without /proc (not Linux): the pid alone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return str(pid)
    except OSError:
        return None
    # fields after the command name, which may hold spaces and parentheses: 3 (state) onwards
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return f"{pid}:{fields[19]}"  # field 22, starttime


def this_process() -> str:
    """What Snakemake puts in RUNNER_ENV for its jobs."""
    return identity(os.getpid()) or str(os.getpid())


def adopt(pid: int) -> None:
    """A worker this process started: killed with it if the run ends."""
    with _children_lock:
        _children.add(pid)


def release(pid: int) -> None:
    with _children_lock:
        _children.discard(pid)


@contextlib.contextmanager
def watching():
    """Watch the Snakemake process named in the environment for as long as the block runs (a warm
    worker runs one block per cell). Nothing to watch: no Snakemake, or not visible from here."""
    named = os.environ.get(RUNNER_ENV, "")
    try:
        pid = int(named.split(":")[0])
    except ValueError:
        pid = None
    if pid is None or identity(pid) != named:
        yield
        return
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(pid, named, done), name="inferbench-lifeline", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


def _watch(pid: int, named: str, done: threading.Event) -> None:
    while not done.wait(POLL_S):
        if identity(pid) != named:
            _end(pid)


def _end(pid: int) -> None:
    try:
        print(f"[inferbench] snakemake (pid {pid}) has ended: stopping this job and its workers unfinished; "
              "nothing is recorded for it, and the next run does it again.", file=sys.stderr, flush=True)
    except OSError:
        pass
    with _children_lock:
        children = sorted(_children)
    for child in children:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
