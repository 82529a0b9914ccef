"""Bare timing loops for `inferbench crosscheck`, which times a cell with the harness and with
these in one process, on the harness's own loaded model (the sweep's harness check runs its bare
loop in a process of its own: inferbench.selfcheck.bareloop). The simplest correct loops: CUDA
events around each call on the current stream; for ONNX Runtime, a session of its own with the
CUDA provider's defaults, timed by the wall clock around run and synchronise."""

from __future__ import annotations

import time


def bare_torch_loop(fn, x, iters: int, warmup: int = 20) -> list[float]:
    import torch

    for _ in range(warmup):
        fn(x)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iters):
        start.record()
        fn(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def bare_ort_loop(artifact: str, x, precision: str, iters: int, warmup: int = 20) -> list[float]:
    """ONNX Runtime on its own, as its documentation shows it: a session with the CUDA provider's
    defaults, I/O bound to GPU tensors, timed by the wall clock around run + synchronize."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from inferbench.selfcheck.bareloop import onnx_at_input_size

    session = ort.InferenceSession(onnx_at_input_size(artifact, x), providers=["CUDAExecutionProvider"])
    elem = np.float16 if precision == "fp16" else np.float32
    out = torch.empty((x.shape[0], session.get_outputs()[0].shape[1]), device="cuda", dtype=x.dtype)
    binding = session.io_binding()
    binding.bind_input("input", "cuda", 0, elem, tuple(x.shape), x.data_ptr())
    binding.bind_output("logits", "cuda", 0, elem, tuple(out.shape), out.data_ptr())
    for _ in range(warmup):
        session.run_with_iobinding(binding)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        session.run_with_iobinding(binding)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times
