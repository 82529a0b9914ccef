"""Run a step in a child process, so that a crash, a hang or an out-of-memory kill in one cell
is recorded as that cell's failure instead of taking the sweep down.

The child is forked from the fork server (inferbench.forkserver: libraries already imported)
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

from inferbench import forkserver

# Set for the child: when (Unix time) it was launched, so that it can tell how long its own
# start took (a fork from the server, or a new interpreter and its imports).
LAUNCHED_AT_ENV = "INFERBENCH_LAUNCHED_AT"


def exit_worker(code: int = 0) -> None:
    """End an isolated worker once its result file is written, skipping the interpreter's
    teardown: with torch, torchvision and onnxruntime loaded that took 1.6 s per process on a
    2-core VM (every CPU cell and export paid it), and nothing after the atomic write needs it.
    In a warm worker (inferbench.warm) it returns instead: the process serves the next cell."""
    sys.stdout.flush()
    sys.stderr.flush()
    from inferbench.warm import in_warm_worker

    if in_warm_worker():
        return  # the warm worker goes on to its next cell
    os._exit(code)


def _describe(rc: int | None, tail, timeout_s: float) -> str:
    if rc is None:
        return f"timed out after {timeout_s:.0f} s (cell_timeout_s)"
    if rc == 0:
        return ""
    last = " | ".join(list(tail)[-3:])
    if rc < 0:
        name = signal.Signals(-rc).name
        hint = " (the kernel's OOM killer sends SIGKILL when host memory runs out)" if name == "SIGKILL" else ""
        return f"the worker process died from {name}{hint}; last output: {last}"
    return f"the worker process exited with code {rc}; last output: {last}"


def run_inferbench(args: list[str], timeout_s: float, env: dict, lock_dir: str,
                   use_forkserver: bool = True, warm_key: str | None = None) -> tuple[int | None, str]:
    """Run `inferbench ARGS` isolated, streaming its output to our stderr (the job log).
    warm_key: run it in the fork server's warm worker for that key (inferbench.warm).
    Returns (exit code, or None on timeout; a one-line description when it did not end well)."""
    tail: collections.deque = collections.deque(maxlen=15)

    def on_output(line: str) -> None:
        sys.stderr.write(line)
        sys.stderr.flush()
        if line.strip():
            tail.append(line.rstrip())

    env = dict(env, **{LAUNCHED_AT_ENV: repr(time.time())})
    if use_forkserver and forkserver.enabled():
        try:
            rc = forkserver.run(args, env, lock_dir, timeout_s, on_output, warm_key=warm_key)
            return rc, _describe(rc, tail, timeout_s)
        except (OSError, RuntimeError) as exc:
            on_output(f"[inferbench] fork server unavailable ({exc}); starting a fresh process\n")
    rc = _run_subprocess([sys.executable, "-m", "inferbench", *args], timeout_s, env, on_output)
    return rc, _describe(rc, tail, timeout_s)


def _run_subprocess(argv, timeout_s, env, on_output) -> int | None:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)

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
