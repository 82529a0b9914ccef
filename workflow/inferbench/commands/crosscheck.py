"""Cross-check the harness against a bare timing loop, in one process, for one cell.

The harness (rotation of input buffers, adaptive iteration count, telemetry threads, per-io
bookkeeping) must not change what it measures. This times the same loaded model twice:
through `inferbench.measure.timing.measure` exactly as a cell does, and with the simplest correct loop
(CUDA events around each call, or the wall clock around call + synchronize for ONNX Runtime
with its own session and default stream), then prints both and their ratio.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HELP = "time one cell with the harness and with a bare loop in the same process; print both and the ratio"


def add_arguments(p):
    p.add_argument("--config", default="config.yaml", help="config whose model, seed and backend options to use")
    p.add_argument("--backend", required=True)
    p.add_argument("--precision", default="fp16")
    p.add_argument("--device", default="cuda")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=200, help="timed iterations of the bare loop")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", dest="overrides",
                   help="override one of the backend's options from the config (value in YAML), "
                        "e.g. --set dynamic=false; repeatable")
    p.add_argument("--telemetry", action="store_true",
                   help="sample NVML in the background during the harness's timing, as a cell does "
                        "(shows whether the sampling slows the model down)")
    p.add_argument("--json", metavar="PATH", help="append the result as one JSON line here")


def backend_options(config: dict, backend: str, overrides: list[str]) -> dict:
    """The config's options for the backend, with each OPTION=VALUE applied on top."""
    import yaml

    from inferbench.errors import UserError

    options = dict(config["backends"].get(backend) or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes OPTION=VALUE (e.g. --set dynamic=false), got {item!r}")
        options[key.strip()] = yaml.safe_load(value)
    return options


def _artifact(config, cell, backend, options) -> str | None:
    """The sweep's own artifact if it was exported, else a fresh export into a temp folder."""
    from inferbench.sweep.spec import export_spec_for, variant_name

    key = backend.artifact_key(cell, options)
    if key is None:
        return None
    manifest = Path(config["results_dir"]) / "artifacts" / cell.model / cell.backend / f"{variant_name(key)}.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("status") == "ok":
            return str(manifest.parent / data["artifact_path"])
    out = str(Path(tempfile.mkdtemp(prefix="inferbench-crosscheck-")) / f"artifact{backend.ARTIFACT_SUFFIX}")
    backend.export(export_spec_for(config, cell.backend, key), options, out)
    return out


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


def run(args) -> int:
    import torch

    from inferbench.backends import load_backend
    from inferbench.backends.base import LoadContext, options_json, torch_dtype
    from inferbench.errors import UserError
    from inferbench.measure.cellrun import GpuTelemetry, default_threads
    from inferbench.measure.timing import CudaEventTimer, Settings, measure
    from inferbench.sweep.config import Cell, load_config, measurement_for
    from inferbench.sweep.models import build_model

    if args.device != "cuda" or not torch.cuda.is_available():
        raise UserError("crosscheck compares CUDA timings: it needs --device cuda and a CUDA device")
    config = load_config(args.config)
    if args.backend not in config["backends"]:
        raise UserError(f"--backend {args.backend!r} is not in {args.config}'s backends: {', '.join(config['backends'])}")
    cell = Cell(config["model"], args.backend, args.device, args.precision, args.resolution, args.batch)
    backend = load_backend(args.backend)
    options = backend.parse_options(backend_options(config, args.backend, args.overrides))
    reason = backend.unsupported(cell, options)
    if reason:
        raise UserError(f"this cell cannot run: {reason}")
    artifact = _artifact(config, cell, backend, options)
    load_started = time.perf_counter()
    runner = backend.load(LoadContext(cell=cell, options=options, artifact_path=artifact, threads=default_threads(),
                                      build_model=lambda: build_model(config["model"], config.get("weights"), config["seed"])))
    load_s = time.perf_counter() - load_started
    gen = torch.Generator().manual_seed(config["seed"])
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=gen).to("cuda", torch_dtype(args.precision))
    prepared = [runner.prepare(x.clone()) for _ in range(measurement_for(config, "cuda").get("num_buffers", 4))]

    counter = [0]

    def step():
        counter[0] = (counter[0] + 1) % len(prepared)
        runner.run(prepared[counter[0]])

    telemetry = GpuTelemetry() if args.telemetry else None
    if telemetry:
        telemetry.start()
    try:
        harness = measure(step, CudaEventTimer(), Settings.from_config(measurement_for(config, "cuda")))
    finally:
        if telemetry:
            telemetry.stop()
    if args.backend == "onnxruntime" and options.io_binding:
        bare = bare_ort_loop(artifact, x, args.precision, args.iters)
        bare_kind = "ONNX Runtime session with default provider options, wall clock around run + synchronize"
    else:
        bare = bare_torch_loop(runner.run, prepared[0], args.iters)
        bare_kind = "CUDA events around each call of the loaded model"
    h_ms, b_ms = statistics.median(harness.latencies_ms), statistics.median(bare)
    result = {"backend": args.backend, "precision": args.precision, "resolution": args.resolution, "batch": args.batch,
              "harness_median_ms": h_ms, "harness_ips": args.batch / h_ms * 1000, "harness_iters": len(harness.latencies_ms),
              "bare_median_ms": b_ms, "bare_ips": args.batch / b_ms * 1000, "bare_iters": len(bare),
              "harness_over_bare_throughput": b_ms / h_ms, "bare_loop": bare_kind,
              "backend_options": options_json(options), "facts": dict(runner.facts),
              "load_s": load_s, "compile_s": runner.compile_s, "harness_with_nvml_sampling": bool(args.telemetry),
              "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    print(f"{args.backend} {args.precision} {args.resolution}px batch {args.batch} on {result['gpu']}")
    print(f"  options: {result['backend_options']}; loaded in {load_s:.1f} s"
          + (f" (compile {runner.compile_s:.1f} s)" if runner.compile_s else ""))
    print(f"  harness{' (NVML sampled beside it)' if args.telemetry else ''}: median {h_ms:.3f} ms  {result['harness_ips']:,.0f} images/s  ({len(harness.latencies_ms)} iterations)")
    print(f"  bare:    median {b_ms:.3f} ms  {result['bare_ips']:,.0f} images/s  ({len(bare)} iterations; {bare_kind})")
    print(f"  harness/bare throughput ratio: {result['harness_over_bare_throughput']:.3f}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0
