"""An independent bare timing loop for one cell, run in a fresh process by the harness check.

It shares no code with the harness's runners, timers or statistics: it builds the model or
session itself with torch, torchvision and onnxruntime, in the configuration the cell's
backend options describe, and times it with the simplest correct loop. If the harness (its
warm workers, rounds, input rotation, telemetry thread, process reuse) changed what it measures,
the two disagree.

    python -m inferbench.selfcheck.bareloop --spec '{"backend": "pytorch", ...}'   prints one JSON line

The loop: on a GPU, the clock is brought up first, and the thread is pinned to the host's fastest
CPU before the warm-up and again before the timed calls (where the sweep's cells are too) (cuDNN's autotuner times its candidates on the
first call; see inferbench.measure.gpu_clock for why), then at least WARMUP_ITERS calls of warm-up, then
at least TIMED_ITERS calls, each timed on its own (the seconds, at least the sweep's own
warm-up and timed minimums, and on a GPU at least GPU_WARMUP_S and GPU_TIMED_S):
CUDA events around the call and a synchronise after it (ONNX Runtime on its own stream: the wall
clock around run and synchronise); on the CPU, the wall clock. Throughput is batch / median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass

WARMUP_ITERS, TIMED_ITERS = 10, 50
GPU_WARMUP_S, GPU_TIMED_S = 0.5, 1.0
CLOCK_UP_S = 0.5


def _torch_model(spec, torch, torchvision):
    torch.manual_seed(spec["seed"])
    model = torchvision.models.get_model(spec["model"], weights=None).eval()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[spec["precision"]]
    return model.to(spec["device"], dtype), dtype


def _channels_last(options, device) -> bool:
    value = options.get("channels_last")
    return device == "cuda" if value is None else bool(value)


def _set_cuda_flags(torch, options):
    tf32 = bool(options.get("tf32", False))
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def build_torch(spec, x):
    """pytorch, torchscript and torch_compile: a callable on x and the (possibly NHWC) input."""
    import torch
    import torchvision

    options, device, backend = spec["options"], spec["device"], spec["backend"]
    if device == "cuda":
        _set_cuda_flags(torch, options)
    nhwc = _channels_last(options, device)
    if backend == "torchscript":
        model = torch.jit.load(spec["artifact"], map_location=device).eval()
        if options.get("optimize_for_inference", True):
            model = torch.jit.optimize_for_inference(model)
    else:
        model, _ = _torch_model(spec, torch, torchvision)
        if nhwc:
            model = model.to(memory_format=torch.channels_last)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    if backend == "torch_compile":
        dynamic = options.get("dynamic", False)
        model = torch.compile(model, mode=options.get("mode", "default"),
                              backend=options.get("compile_backend", "inductor"),
                              dynamic=None if dynamic == "batch" else dynamic, fullgraph=options.get("fullgraph", False))
        if dynamic == "batch":
            torch._dynamo.mark_dynamic(x, 0)
    if backend == "pytorch" and options.get("cuda_graphs"):
        return _graphed(torch, model, x), x

    def call(inp):
        with torch.inference_mode():
            return model(inp)

    return call, x


def _graphed(torch, model, x):
    static_in = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode():
        for _ in range(3):
            model(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        out = model(static_in)

    def call(inp):
        static_in.copy_(inp)
        graph.replay()
        return out

    return call


def onnx_at_input_size(path: str, x):
    """The ONNX model with a symbolic height and width fixed to the input's, as the cell's session
    is made (bytes), or the path when the file's size is already fixed."""
    import onnx

    model = onnx.load(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if not (dims[2].dim_param or dims[3].dim_param):
        return path
    dims[2].dim_value, dims[3].dim_value = x.shape[2], x.shape[3]
    return model.SerializeToString()


def build_onnxruntime(spec, x):
    """An ONNX Runtime session with the cell's provider options; on CUDA with I/O bound to GPU tensors."""
    import numpy as np
    import onnxruntime as ort
    import torch

    model = onnx_at_input_size(spec["artifact"], x)
    options = spec["options"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = spec.get("threads") or 0
    so.inter_op_num_threads = 1
    level = options.get("graph_optimization_level", "all")
    so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    if spec["device"] == "cpu":
        session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        feed = {"input": x.numpy()}
        return (lambda _inp: session.run(None, feed)), x
    cuda = {"device_id": "0"}
    if spec["precision"] == "fp32":
        cuda["use_tf32"] = "0"
    cuda.update({k: str(v) for k, v in (options.get("cuda_provider_options") or {}).items()})
    session = ort.InferenceSession(model, so, providers=[("CUDAExecutionProvider", cuda)])
    if "CUDAExecutionProvider" not in session.get_providers():
        raise RuntimeError(f"ONNX Runtime has no CUDA provider here: {session.get_providers()}")
    elem = np.float16 if spec["precision"] == "fp16" else np.float32
    out = torch.empty((x.shape[0], session.get_outputs()[0].shape[1]), device="cuda", dtype=x.dtype)
    binding = session.io_binding()
    binding.bind_input("input", "cuda", 0, elem, tuple(x.shape), x.data_ptr())
    binding.bind_output("logits", "cuda", 0, elem, tuple(out.shape), out.data_ptr())

    def call(_inp):
        session.run_with_iobinding(binding)
        torch.cuda.synchronize()
        return out

    return call, x


def clock_up(torch, seconds: float = CLOCK_UP_S) -> None:
    """Keep the GPU busy for a moment, so that the first call (cuDNN's autotuning) and the
    warm-up run at the GPU's working clock, not its idle one."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        torch.cuda._sleep(20_000_000)
        torch.cuda.synchronize()


def host_launch_us(torch, launches: int = 400) -> float:
    """The host's cost of enqueuing one small kernel (median of 5 batches), just before the
    timed loop: a launch-bound cell moves with it. Written again rather than imported from
    inferbench.measure.gpu_clock: the bare loop shares no code with the harness it checks."""
    x = torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    costs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(launches):
            x.add_(1)
        costs.append((time.perf_counter() - t0) / launches * 1e6)
        torch.cuda.synchronize()
    return statistics.median(costs)


def python_loop_s() -> float:
    """Median seconds of a short pure-Python loop on the CPU this thread is on."""
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(10_000):
            total += i
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def gpu_local_cpus() -> set[int]:
    """The CPUs nearest the GPU this process uses, from NVML (empty where it cannot say)."""
    import os

    try:
        import pynvml

        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)
        words = pynvml.nvmlDeviceGetCpuAffinity(handle, -(-(os.cpu_count() or 1) // 64))
    except Exception:  # no NVML, no GPU, an older driver: every CPU is a candidate
        return set()
    return {64 * j + i for j, word in enumerate(words) for i in range(64) if int(word) >> i & 1}


def claim_cpu(cpu: int):
    """An exclusive lock on the CPU's file in the folder where the sweep's cells claim theirs
    (the same protocol as inferbench.measure.hostcpu.CpuClaim, written again): bare loops on
    several GPUs at once launch from CPUs of their own. An open descriptor holding the lock,
    -1 where nothing can be claimed here, None where another process holds the CPU."""
    import fcntl
    import os
    import tempfile

    folder = os.path.join(tempfile.gettempdir(), f"inferbench-cpus-{os.getuid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, f"cpu{cpu}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def pin_to_fastest_cpu(cpus: list[int], held: dict | None = None) -> tuple[int, float]:
    """Pin this thread to the one of `cpus` that runs a short Python loop fastest right now and
    that no other process has claimed, as the sweep's GPU cells do with
    measurement.pin_fastest_cpu (the vCPUs of a virtual machine are not equally fast, and
    launch-bound cells follow the one they run on); returns it and its loop's seconds. `held`
    keeps the claim ({"cpu", "fd"}), let go of when the thread moves. Written again rather than
    imported from inferbench.measure.hostcpu: the bare loop shares no code with the harness."""
    import os

    held = {} if held is None else held
    costs = {}
    for cpu in cpus:
        os.sched_setaffinity(0, {cpu})
        costs[cpu] = python_loop_s()
    chosen = min(costs, key=costs.get)
    for cpu in sorted(costs, key=costs.get):
        fd = held.get("fd") if cpu == held.get("cpu") else claim_cpu(cpu)
        if fd is not None:
            if cpu != held.get("cpu") and held.get("fd", -1) >= 0:
                os.close(held["fd"])
            held.update(cpu=cpu, fd=fd)
            chosen = cpu
            break
    os.sched_setaffinity(0, {chosen})
    return chosen, costs[chosen]


class CpuPinning:
    """The thread on the fastest CPU: scanned before the warm-up and before the timed calls, and
    checked every RECHECK_S during them; a CPU that slowed by more than SLOWED is left for the
    fastest again (the scan's pause falls between two timed calls, outside both)."""

    RECHECK_S, SLOWED = 0.2, 1.15

    def __init__(self, enabled: bool):
        import os

        self.cpus = sorted(os.sched_getaffinity(0)) if enabled and hasattr(os, "sched_setaffinity") else []
        near = sorted(set(self.cpus) & gpu_local_cpus())
        self.cpus = near or self.cpus  # as the cells do: the CPUs nearest the GPU, where NVML names them
        self.picks, self.best_s, self.checked_at, self.held = [], 0.0, 0.0, {}

    def scan(self) -> None:
        if self.cpus:
            cpu, self.best_s = pin_to_fastest_cpu(self.cpus, self.held)
            self.picks.append(cpu)
            self.checked_at = time.perf_counter()

    def check(self) -> None:
        if self.cpus and time.perf_counter() - self.checked_at >= self.RECHECK_S:
            if python_loop_s() > self.best_s * self.SLOWED:
                self.scan()
            self.checked_at = time.perf_counter()


@dataclass(frozen=True)
class Loop:
    """What the bare loop timed, and where."""

    times_ms: list  # each timed call's milliseconds, in order
    host_launch_us: float | None  # a small kernel's launch cost before the timed calls (GPU only)
    cpus: list  # the CPU of each scan, in order (empty where the thread was not pinned)


def time_loop(call, x, device: str, wall_clock: bool, warmup_s: float, timed_s: float,
              pin: bool = False) -> Loop:
    import torch

    def once_ms() -> float:
        if device == "cuda" and not wall_clock:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call(x)
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        call(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1000.0

    pinning = CpuPinning(pin)
    pinning.scan()
    began, n = time.perf_counter(), 0
    while n < WARMUP_ITERS or time.perf_counter() - began < warmup_s:
        once_ms()
        n += 1
    pinning.scan()
    launch_us = host_launch_us(torch) if device == "cuda" else None
    times, began = [], time.perf_counter()
    while len(times) < TIMED_ITERS or time.perf_counter() - began < timed_s:
        times.append(once_ms())
        pinning.check()
    return Loop(times_ms=times, host_launch_us=launch_us, cpus=pinning.picks)


def measure(spec: dict) -> dict:
    import torch

    device, batch, res = spec["device"], spec["batch_size"], spec["resolution"]
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[spec["precision"]]
    if device == "cuda":
        clock_up(torch)
        gen = torch.Generator(device="cuda").manual_seed(spec["seed"])
        x = torch.randn(batch, 3, res, res, generator=gen, device="cuda", dtype=dtype)
    else:
        torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
        x = torch.randn(batch, 3, res, res, generator=torch.Generator().manual_seed(spec["seed"])).to(dtype)
    started = time.perf_counter()
    if spec["backend"] == "onnxruntime":
        call, x = build_onnxruntime(spec, x)
        wall_clock = True  # ORT runs on its own stream: events on ours would not bracket it
    elif spec["backend"] in ("pytorch", "torchscript", "torch_compile"):
        call, x = build_torch(spec, x)
        wall_clock = False
    else:
        raise RuntimeError(f"no bare loop for backend {spec['backend']!r}")
    call(x)  # first call: compilation, autotuning
    if device == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - started
    warmup_s, timed_s = float(spec.get("warmup_s", 0.0)), float(spec.get("timed_s", 0.0))
    if device == "cuda":
        warmup_s, timed_s = max(warmup_s, GPU_WARMUP_S), max(timed_s, GPU_TIMED_S)
    loop = time_loop(call, x, device, wall_clock, warmup_s, timed_s,
                     pin=device == "cuda" and bool(spec.get("pin_fastest_cpu", True)))
    times = loop.times_ms
    median_ms = statistics.median(times)
    return {"bare_ips": batch / median_ms * 1000.0, "bare_median_ms": median_ms, "bare_iters": len(times),
            "bare_p99_ms": sorted(times)[min(len(times) - 1, int(0.99 * len(times)))],
            "bare_timer": "wall clock" if (wall_clock or device == "cpu") else "cuda events",
            "bare_load_s": load_s, "torch_version": torch.__version__,
            "bare_host_launch_us": loop.host_launch_us,
            "bare_host_cpus": " ".join(str(c) for c in loop.cpus if c is not None) or None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m inferbench.selfcheck.bareloop", description=__doc__.splitlines()[0])
    p.add_argument("--spec", required=True, help="JSON: model, seed, backend, precision, device, resolution, "
                                                 "batch_size, options, artifact (path or null), threads, "
                                                 "warmup_s, timed_s")
    p.add_argument("--wait", action="store_true",
                   help="import the libraries, print 'ready', then wait for one line on stdin (JSON: "
                        "environment variables to set, such as CUDA_VISIBLE_DEVICES) before measuring")
    args = p.parse_args(argv)
    spec = json.loads(args.spec)
    if args.wait:
        # The harness check starts a bare loop, waits for its imports, then sends the go (with the
        # GPU to use). Nothing touches a GPU or a thread pool before the go.
        import numpy  # noqa: F401
        import torch  # noqa: F401
        import torchvision  # noqa: F401

        if spec["backend"] == "onnxruntime":
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        print("ready", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # nothing to measure after all
        import os

        os.environ.update(json.loads(line))
    print(json.dumps(measure(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
