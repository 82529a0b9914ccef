"""Run a step in a child process, so that a crash, a hang or an out-of-memory kill in one cell
is recorded as that cell's failure instead of taking the sweep down.

The child is forked from the fork server (inferbench.process.forkclient: libraries already
imported) when it can be, else started as a plain subprocess. Either way the caller gets a
ChildResult (inferbench.process.result) and decides on its fields.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

from inferbench.process import forkclient, lifeline
from inferbench.process.oomwatch import MemoryWatch
from inferbench.process.result import ChildResult, OutputTail

# Set for the child: when (Unix time) it was launched, so that it can tell how long its own
# start took (a fork from the server, or a new interpreter and its imports).
LAUNCHED_AT_ENV = "INFERBENCH_LAUNCHED_AT"


def exit_worker(code: int = 0) -> None:
    """End an isolated worker once its result file is written, skipping the interpreter's
    teardown: with torch, torchvision and onnxruntime loaded it takes seconds per process (every CPU
    cell and export paid it; docs/method.md), and nothing after the atomic write needs it.
    In a warm worker (inferbench.process.warm) it returns instead: the process serves the next cell."""
    sys.stdout.flush()
    sys.stderr.flush()
    from inferbench.process.warm import in_warm_worker

    if in_warm_worker():
        return  # the warm worker goes on to its next cell
    os._exit(code)


def run_inferbench(args: list[str], timeout_s: float, env: dict, lock_dir: str,
                   use_forkserver: bool = True, warm_key: str | None = None) -> ChildResult:
    """Run `inferbench ARGS` isolated, streaming its output to our stderr (the job log).
    warm_key: run it in the fork server's warm worker for that key (inferbench.process.warm).
    Returns how it ended, with the evidence of an out-of-memory kill if it was killed."""

    def to_log(line: str) -> None:
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except OSError:
            pass  # a full disk under the log: keep reading, or the worker blocks on a full pipe

    output = OutputTail(to_log)  # one tail across a failed fork-server attempt and its fallback
    env = dict(env, **{LAUNCHED_AT_ENV: repr(time.time())})
    watches: list[MemoryWatch] = []

    def watch(pid: int) -> None:
        lifeline.adopt(pid)  # stopped with this job if its Snakemake dies
        watches.append(MemoryWatch(pid))

    def with_evidence(result: ChildResult) -> ChildResult:
        for w in watches:
            w.stop()
            lifeline.release(w.pid)
        # SIGKILL is how the kernel's OOM killer ends a process, and also how anyone else may:
        # only the watch's evidence tells them apart (inferbench.process.oomwatch)
        if watches and result.signal == signal.SIGKILL and not result.timed_out:
            return dataclasses.replace(result, oom_evidence=watches[-1].oom_evidence())
        return result

    if use_forkserver and forkclient.enabled():
        try:
            return with_evidence(forkclient.run(args, env, lock_dir, timeout_s, output, warm_key=warm_key,
                                                on_start=watch))
        except (OSError, RuntimeError) as exc:
            output(f"[inferbench] fork server unavailable ({exc}); starting a fresh process\n")
    return with_evidence(run_subprocess([sys.executable, "-m", "inferbench", *args], timeout_s, env, output, watch))


def run_subprocess(argv: list[str], timeout_s: float, env: dict, output: OutputTail, on_start=None) -> ChildResult:
    """Run `argv` in a plain subprocess, its output lines to `output`; killed at timeout_s."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)
    if on_start:
        on_start(proc.pid)

    def pump():
        for line in proc.stdout:
            output(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        reader.join(timeout=5)
        return ChildResult.timeout(timeout_s, output.lines())
    reader.join(timeout=5)
    return ChildResult.from_returncode(rc, output.lines())
