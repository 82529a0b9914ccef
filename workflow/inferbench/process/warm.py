"""Warm GPU workers (`gpu_worker: warm`): long-lived processes, one per GPU, backend and
precision, each running the cells sent to it one after another, in one CUDA context.

Why: a fresh process per cell pays the CUDA context, cuDNN's and cuBLAS's set-up, and for
torch.compile the compiler's imports and worker pool, every time: seconds of a GPU cell, more
than its measurement at small shapes. A warm worker pays them once.
One worker per backend and precision rather than one per GPU: what a worker keeps loaded (see
below) then comes from cells of its own kind. A single worker for every cell grew in GPU memory
with each cell of another kind; one per backend and precision keeps the peaks close to fresh
processes' (the figures are in docs/method.md, "Processes").

What it gives up, and how that is kept honest:
  * Between cells (`release`) it drops torch.compile's compiled code (`torch._dynamo.reset()`),
    collects garbage, and returns the PyTorch allocator's cached blocks to the driver; the
    backend's own objects (ONNX Runtime session and arena, TorchScript module) are released by
    the cell itself. Each cell still loads, compiles and warms up its own model.
  * What stays: imported libraries, the CUDA context and the kernels loaded into it, and
    cuDNN's per-shape algorithm choices (benchmark mode): a later cell of the same shape skips
    that search, which shows in `first_run_ms`, never in the timed window (warm-up comes first).
  * Every cell uses the process's one side stream (inferbench.measure.phases.cell_stream): cuBLAS keeps
    a workspace per stream, which `release` also frees.
  * Process-wide peaks are per cell: the PyTorch allocator's peak is reset, the host RSS peak is
    reset through /proc/self/clear_refs (null where that is refused), and the NVML GPU memory
    peak is read over the cell only. That peak includes the context and what earlier cells left
    loaded, so `gpu_mem_start_mb` records the process's GPU memory when the cell began and
    `worker_cells_before` how many cells the process ran before it.
  * A crash, a hang or an out-of-memory kill still fails only its cell: the server starts a new
    worker for the next one.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import socket
import sys
import traceback

WARM_ENV = "INFERBENCH_WARM_WORKER"  # set inside a warm worker
CELLS_BEFORE_ENV = "INFERBENCH_WORKER_CELLS_BEFORE"  # cells this worker ran before the current one
IDLE_S = 300.0  # a worker with no cell for this long exits and frees its GPU context

# Variables that differ from job to job without changing what a process would measure.
_VOLATILE_ENV = {"INFERBENCH_LAUNCHED_AT", "PWD", "OLDPWD", "_", "SHLVL"}


def in_warm_worker() -> bool:
    return os.environ.get(WARM_ENV) == "1"


def cells_before() -> int:
    try:
        return int(os.environ.get(CELLS_BEFORE_ENV, "0"))
    except ValueError:
        return 0


def env_signature(env: dict) -> str:
    """A hash of the environment that a process fixes at start (CUDA_VISIBLE_DEVICES, library
    settings): a request with another signature needs another worker."""
    stable = sorted((k, v) for k, v in env.items() if k not in _VOLATILE_ENV)
    return hashlib.sha256(json.dumps(stable).encode()).hexdigest()


def serve_cells(ctrl: socket.socket, idle_s: float = IDLE_S) -> None:
    """The worker's life, in the child the fork server made: receive a request (JSON with argv,
    env, cwd, and the output pipe as a passed descriptor), run `inferbench ARGV` in this process,
    reply with how it ended (inferbench.process.result), clean up, repeat. Exits on end of file or
    after idle_s."""
    from inferbench.process.child import call_cli, detach, send_output_to, take_request
    from inferbench.process.result import ChildResult

    def let_go_of_output() -> None:
        send_output_to(os.open(os.devnull, os.O_WRONLY))  # the job's pipe closes: its reader sees the end

    detach(os.open(os.devnull, os.O_WRONLY))
    ctrl.settimeout(idle_s)
    served = 0
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctrl, 1 << 20, 1)
        except OSError:  # idle for too long (socket.timeout is an OSError), or the server is gone
            os._exit(0)
        if not msg:
            os._exit(0)
        request = json.loads(msg.decode())
        send_output_to(fds[0])  # this cell's output goes to its job's log
        take_request(request, {WARM_ENV: "1", CELLS_BEFORE_ENV: str(served)})
        code = call_cli(request["argv"])
        healthy = True
        try:
            release()
        except Exception:  # an unknown state is no place for the next cell
            traceback.print_exc()
            healthy = False
        sys.stdout.flush()
        sys.stderr.flush()
        let_go_of_output()
        served += 1
        ctrl.sendall(json.dumps(ChildResult(returncode=code).wire()).encode())
        if not healthy:
            os._exit(0)


def release() -> None:
    """What one cell leaves behind that the next must not see (see the module's docstring)."""
    torch = sys.modules.get("torch")
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None:
        dynamo.reset()  # first: the collection below then frees what its caches held
    gc.collect()  # cheap: the server froze what it had imported (child.freeze_before_fork)
    if torch is None:
        return
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
        clear_cublas = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)  # private: may move
        if clear_cublas is not None:
            clear_cublas()  # cuBLAS's workspaces are live allocations: empty_cache keeps them
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
