"""Cross-check the harness against a bare timing loop, in one process, for one cell.

The harness (rotation of input buffers, adaptive iteration count, rounds, telemetry threads)
must not change what it measures. This times one loaded model twice and prints both and their
ratio.

The harness side runs a cell's own phases (inferbench.measure.phases), so it shares with a cell:
the device set-up (CPU threads, the cell's CUDA stream, the CUDA-event timer), the inputs (the
same seeded batches, drawn on the GPU, `num_buffers` of them), the load with the config's backend
options (and --set), the first call, and the io=device warm-up and timed window with its rounds
and statistics (time_io_mode). It does not share: the worker process (this runs in the command's
own process, with no fork server, warm worker or GPU claim), NVML unless --telemetry (without it
there is no sampler and no clock spin-up before the first call and the timing), io=host, the
memory peaks and the accuracy check; it writes no shard.

The bare side is the simplest correct loop: CUDA events around each call of the same loaded
model on the first input buffer, on the same stream; for ONNX Runtime with io_binding, a session
of its own with the CUDA provider's defaults and its own stream, timed by the wall clock around
run + synchronize. For a check that shares no code with the harness, in fresh processes, see
inferbench.selfcheck.bareloop (the sweep's harness check).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

HELP = "time one cell with the harness and with a bare loop in the same process; print both and the ratio"


def add_arguments(p):
    p.add_argument("--config", default="config.yaml", help="config whose model, seed and backend options to use")
    p.add_argument("--backend", required=True, help="a name under the config's backends: a backend or a variant")
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
    """The config's options for the backend (or variant), with each OPTION=VALUE applied on top."""
    import yaml

    from inferbench.sweep.config import options_of
    from inferbench.errors import UserError

    options = options_of(config, backend)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes OPTION=VALUE (e.g. --set dynamic=false), got {item!r}")
        options[key.strip()] = yaml.safe_load(value)
    return options


def _artifact(config, cell, backend, options) -> str | None:
    """The sweep's own artifact if it was exported, else a fresh export into a temp folder.
    `config` has the --set overrides in the cell's backends entry: they may change the artifact."""
    from inferbench.sweep.spec import artifact_key_for, artifact_manifest, export_spec_for

    relative = artifact_manifest(config, cell)
    if relative is None:
        return None
    manifest = Path(config["results_dir"]) / relative
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("status") == "ok":
            return str(manifest.parent / data["artifact_path"])
    out = str(Path(tempfile.mkdtemp(prefix="inferbench-crosscheck-")) / f"artifact{backend.ARTIFACT_SUFFIX}")
    backend.export(export_spec_for(config, cell.backend, artifact_key_for(config, cell)), options, out)
    return out


def cell_to_check(args):
    """(spec, backend, parsed options) of the cell the arguments name, or a UserError saying why
    it cannot be checked."""
    import dataclasses

    import torch

    from inferbench.backends import load_backend
    from inferbench.errors import UserError
    from inferbench.sweep.config import Cell, backend_of, load_config
    from inferbench.sweep.spec import cell_spec_for

    if args.device != "cuda" or not torch.cuda.is_available():
        raise UserError("crosscheck compares CUDA timings: it needs --device cuda and a CUDA device")
    config = load_config(args.config)
    if args.backend not in config["backends"]:
        raise UserError(f"--backend {args.backend!r} is not in {args.config}'s backends: {', '.join(config['backends'])}")
    cell = Cell(config["model"], args.backend, args.device, args.precision, args.resolution, args.batch)
    impl = backend_of(config, args.backend)
    backend = load_backend(impl)
    raw_options = backend_options(config, args.backend, args.overrides)
    options = backend.parse_options(raw_options)
    reason = backend.unsupported(cell, options)
    if reason:
        raise UserError(f"this cell cannot run: {reason}")
    # the --set overrides may change the artifact: it is looked up (or exported) with them
    config = dict(config, backends=dict(config["backends"], **{args.backend: dict(raw_options, backend=impl)}))
    return config, dataclasses.replace(cell_spec_for(config, cell), options=raw_options), backend, options


def run(args) -> int:
    import contextlib

    import torch

    from inferbench.backends.base import options_json
    from inferbench.measure.phases import (TimingContext, cell_threads, draw_inputs, first_call, load_runner,
                                           setup_device, time_io_mode)
    from inferbench.measure.telemetry.cellgpu import GpuTelemetry
    from inferbench.measure.timing import Settings

    config, spec, backend, options = cell_to_check(args)
    artifact = _artifact(config, spec.cell, backend, options)
    threads = cell_threads(spec)
    telemetry = GpuTelemetry() if args.telemetry else None
    with contextlib.ExitStack() as stack:
        setup = setup_device(spec, threads, telemetry, stack)
        inputs = draw_inputs(spec, setup)
        loaded = load_runner(spec, backend, options, artifact, threads, inputs)
        if telemetry:
            telemetry.start()
        try:
            first_call(loaded, setup, telemetry)
            timing = TimingContext(spec=spec, loaded=loaded, inputs=inputs, setup=setup, telemetry=telemetry)
            harness = time_io_mode(timing, "device", Settings.from_config(spec.measurement)).measurement
        finally:
            if telemetry:
                telemetry.stop()
        # still on the cell stream: the bare loop's events bracket the same stream the runner uses
        from inferbench.selfcheck.inprocess import bare_ort_loop, bare_torch_loop

        if spec.impl == "onnxruntime" and options.io_binding:
            bare = bare_ort_loop(artifact, inputs.device[0], args.precision, args.iters)
            bare_kind = "ONNX Runtime session with default provider options, wall clock around run + synchronize"
        else:
            bare = bare_torch_loop(loaded.runner.run, loaded.prepared[0], args.iters)
            bare_kind = "CUDA events around each call of the loaded model"
    runner, load_s = loaded.runner, loaded.load_s
    h_ms, b_ms = statistics.median(harness.latencies_ms), statistics.median(bare)
    result = {"backend": args.backend, "precision": args.precision, "resolution": args.resolution, "batch": args.batch,
              "harness_median_ms": h_ms, "harness_ips": args.batch / h_ms * 1000, "harness_iters": len(harness.latencies_ms),
              "bare_median_ms": b_ms, "bare_ips": args.batch / b_ms * 1000, "bare_iters": len(bare),
              "harness_over_bare_throughput": b_ms / h_ms, "bare_loop": bare_kind,
              "backend_options": options_json(options), "facts": dict(runner.facts),
              "load_s": load_s, "compile_s": runner.compile_s, "harness_with_nvml_sampling": bool(args.telemetry),
              "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    print_result(result, args)
    sys.stdout.flush()
    return 0


def print_result(result: dict, args) -> None:
    """Both timings and their ratio for a person; --json appends the result for a machine."""
    h_ms, b_ms, load_s, compile_s = result["harness_median_ms"], result["bare_median_ms"], result["load_s"], result["compile_s"]
    print(f"{args.backend} {args.precision} {args.resolution}px batch {args.batch} on {result['gpu']}")
    print(f"  options: {result['backend_options']}; loaded in {load_s:.1f} s"
          + (f" (compile {compile_s:.1f} s)" if compile_s else ""))
    print(f"  harness{' (NVML sampled beside it)' if args.telemetry else ''}: median {h_ms:.3f} ms  {result['harness_ips']:,.0f} images/s  ({result['harness_iters']} iterations)")
    print(f"  bare:    median {b_ms:.3f} ms  {result['bare_ips']:,.0f} images/s  ({result['bare_iters']} iterations; {result['bare_loop']})")
    print(f"  harness/bare throughput ratio: {result['harness_over_bare_throughput']:.3f}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")
