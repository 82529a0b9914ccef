"""Run a step in a child process, so that a crash, a hang or an out-of-memory kill in one cell
is recorded as that cell's failure instead of taking the sweep down."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import threading


def run_child(argv: list[str], timeout_s: float, env: dict | None = None) -> tuple[int | None, str]:
    """Run `argv`, streaming its output to our stderr (the job log). Returns (exit code or None on
    timeout, a one-line description of how it ended when it did not end well)."""
    tail: collections.deque = collections.deque(maxlen=15)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)

    def pump():
        for line in proc.stdout:
            sys.stderr.write(line)
            sys.stderr.flush()
            if line.strip():
                tail.append(line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        reader.join(timeout=5)
        return None, f"timed out after {timeout_s:.0f} s (cell_timeout_s)"
    reader.join(timeout=5)
    if rc == 0:
        return 0, ""
    if rc < 0:
        name = signal.Signals(-rc).name
        hint = " (the kernel's OOM killer sends SIGKILL when host memory runs out)" if name == "SIGKILL" else ""
        return rc, f"the worker process died from {name}{hint}; last output: {' | '.join(list(tail)[-3:])}"
    return rc, f"the worker process exited with code {rc}; last output: {' | '.join(list(tail)[-3:])}"
