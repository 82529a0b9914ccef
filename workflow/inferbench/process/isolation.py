"""Run a step in a child process, so that a crash, a hang or an out-of-memory kill in one cell
is recorded as that cell's failure instead of taking the sweep down.

The child is forked from the fork server (inferbench.process.forkserver: libraries already imported)
when it can be, else started as a plain subprocess.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time

from inferbench.process import forkserver
from inferbench.process.oomwatch import MemoryWatch

# Set for the child: when (Unix time) it was launched, so that it can tell how long its own
# start took (a fork from the server, or a new interpreter and its imports).
LAUNCHED_AT_ENV = "INFERBENCH_LAUNCHED_AT"


def exit_worker(code: int = 0) -> None:
    """End an isolated worker once its result file is written, skipping the interpreter's
    teardown: with torch, torchvision and onnxruntime loaded that took 1.6 s per process on a
    2-core VM (every CPU cell and export paid it), and nothing after the atomic write needs it.
    In a warm worker (inferbench.process.warm) it returns instead: the process serves the next cell."""
    sys.stdout.flush()
    sys.stderr.flush()
    from inferbench.process.warm import in_warm_worker

    if in_warm_worker():
        return  # the warm worker goes on to its next cell
    os._exit(code)


# A description that starts with this says the kernel killed the worker for memory.
OOM_KILLED = "out of memory: "
# Signals by which someone outside ended the worker (a person, a scheduler, the machine shutting
# down): nothing about the cell itself. SIGKILL counts only without evidence of an OOM kill.
STOPPED_FROM_OUTSIDE = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _describe(rc: int | None, tail, timeout_s: float, oom_evidence: str | None = None) -> str:
    if rc is None:
        return f"timed out after {timeout_s:.0f} s (cell_timeout_s)"
    if rc == 0:
        return ""
    last = " | ".join(list(tail)[-3:])
    if rc < 0:
        name = signal.Signals(-rc).name
        if name == "SIGKILL" and oom_evidence:
            return f"{OOM_KILLED}the worker process was killed by SIGKILL ({oom_evidence}); last output: {last}"
        if -rc in STOPPED_FROM_OUTSIDE:
            return (f"the worker process was killed by {name} from outside (no out-of-memory kill seen); "
                    f"last output: {last}")
        return f"the worker process died from {name}; last output: {last}"
    return f"the worker process exited with code {rc}; last output: {last}"


def stopped_from_outside(rc: int | None, how: str) -> bool:
    """The worker was ended by someone, not by its cell: a kill that was no OOM kill."""
    return rc is not None and rc < 0 and -rc in STOPPED_FROM_OUTSIDE and not how.startswith(OOM_KILLED)


def failure_status(rc: int | None, how: str) -> str:
    """A failed worker's cell status: `oom` when it ran out of memory, else `error`."""
    if how.startswith(OOM_KILLED):
        return "oom"
    # a worker that exited on its own after printing an allocation failure
    return "oom" if rc is not None and rc > 0 and "out of memory" in how.lower() else "error"


def run_inferbench(args: list[str], timeout_s: float, env: dict, lock_dir: str,
                   use_forkserver: bool = True, warm_key: str | None = None) -> tuple[int | None, str]:
    """Run `inferbench ARGS` isolated, streaming its output to our stderr (the job log).
    warm_key: run it in the fork server's warm worker for that key (inferbench.process.warm).
    Returns (exit code, or None on timeout; a one-line description when it did not end well)."""
    tail: collections.deque = collections.deque(maxlen=15)

    def on_output(line: str) -> None:
        sys.stderr.write(line)
        sys.stderr.flush()
        if line.strip():
            tail.append(line.rstrip())

    env = dict(env, **{LAUNCHED_AT_ENV: repr(time.time())})
    watches: list[MemoryWatch] = []

    def watch(pid: int) -> None:
        watches.append(MemoryWatch(pid))

    def outcome(rc: int | None) -> tuple[int | None, str]:
        for w in watches:
            w.stop()
        evidence = watches[-1].oom_evidence() if watches and rc == -signal.SIGKILL else None
        return rc, _describe(rc, tail, timeout_s, evidence)

    if use_forkserver and forkserver.enabled():
        try:
            return outcome(forkserver.run(args, env, lock_dir, timeout_s, on_output, warm_key=warm_key,
                                          on_start=watch))
        except (OSError, RuntimeError) as exc:
            on_output(f"[inferbench] fork server unavailable ({exc}); starting a fresh process\n")
    return outcome(_run_subprocess([sys.executable, "-m", "inferbench", *args], timeout_s, env, on_output, watch))


def _run_subprocess(argv, timeout_s, env, on_output, on_start) -> int | None:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)
    on_start(proc.pid)

    def pump():
        for line in proc.stdout:
            on_output(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    reader.join(timeout=5)
    return rc
