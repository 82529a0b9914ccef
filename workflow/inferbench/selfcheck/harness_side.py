"""The harness side of the paired harness check: one cell of the sweep, loaded once in a fresh
process with the sweep's own phases (inferbench.measure.phases), then timed block after block,
each block the cell's own io=device warm-up and timed window, when the check asks for one.

    python -m inferbench.selfcheck.harness_side --config config.resolved.yaml --results DIR
        --cell '{"model": ..., "backend": ..., ...}'

It speaks the check's line protocol on stdin and stdout (inferbench.selfcheck.harnesscheck):
prints `ready` once its libraries are imported; then for each JSON line it reads,
  {"op": "load", "env": {...}}   sets the environment (the GPU to use), loads the cell's artifact,
                                 makes the first call; answers {"load_s": ...}
  {"op": "block", "cpu": N}      pins the launching thread to CPU N (null: leaves it), times one
                                 block; answers {"ips": ..., "median_ms": ..., "host_launch_us": ...}
and exits at the end of its input. An error is answered as {"error": "..."}.

What it shares with the cell: the device set-up (threads, the cell stream, the CUDA-event timer),
the seeded inputs, the load with the cell's backend options, the first call, the NVML sampling
and clock spin-up, and time_io_mode with the cell's measurement settings. What it does not: the
choice of CPU (the check pins both sides to the same one for each pair, so the CPU's speed cancels
in their ratio) and the block's length (the cell's timed seconds, at most BLOCK_MAX_S).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time

BLOCK_MAX_S = 0.5  # the host drifts within seconds: short blocks, many pairs


def block_settings(measurement: dict):
    """The cell's measurement settings for one block: its own warm-up, iterations and rounds, at
    most BLOCK_MAX_S of timed seconds, and no CPU pinning of its own (the check pins)."""
    from inferbench.measure.timing import Settings

    settings = Settings.from_config(measurement)
    return dataclasses.replace(settings, min_time_s=min(settings.min_time_s, BLOCK_MAX_S),
                               max_time_s=max(min(settings.max_time_s, 10 * BLOCK_MAX_S), BLOCK_MAX_S),
                               pin_fastest_cpu=False)


class LoadedCell:
    """The cell loaded as a sweep's job loads it, kept for the blocks."""

    def __init__(self, config: dict, results: str, cell: dict):
        from inferbench.backends import load_backend
        from inferbench.measure.phases import (TimingContext, cell_threads, draw_inputs, first_call, load_runner,
                                               setup_device, start_telemetry)
        from inferbench.measure.telemetry.cellgpu import GpuTelemetry
        from inferbench.sweep.grid import Cell
        from inferbench.sweep.spec import artifact_manifest, cell_spec_for

        self.spec = cell_spec_for(config, Cell(**cell))
        backend = load_backend(self.spec.impl)
        options = backend.parse_options(self.spec.options)
        artifact = None
        relative = artifact_manifest(config, self.spec.cell)
        if relative is not None:
            manifest = os.path.join(results, relative)
            with open(manifest) as f:
                artifact = os.path.join(os.path.dirname(manifest), os.path.basename(json.load(f)["artifact_path"]))
        threads = cell_threads(self.spec)
        self.telemetry = GpuTelemetry() if self.spec.cell.device == "cuda" else None
        self.stack = contextlib.ExitStack()
        started = time.perf_counter()
        self.setup = setup_device(self.spec, threads, self.telemetry, self.stack)
        self.inputs = draw_inputs(self.spec, self.setup)
        start_telemetry(self.telemetry)
        self.loaded = load_runner(self.spec, backend, options, artifact, threads, self.inputs)
        first_call(self.loaded, self.setup, self.telemetry)
        self.context = TimingContext(spec=self.spec, loaded=self.loaded, inputs=self.inputs, setup=self.setup,
                                     telemetry=self.telemetry)
        self.load_s = time.perf_counter() - started
        self.settings = block_settings(self.spec.measurement)

    def block(self, cpu: int | None) -> dict:
        from inferbench.measure.phases import time_io_mode

        if cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {int(cpu)})
        timing = time_io_mode(self.context, "device", self.settings)
        return {"ips": timing.stats["throughput_ips"], "median_ms": timing.stats["latency_ms_median"],
                "iters": timing.stats["n_iters"], "host_launch_us": timing.host_launch_us,
                "enqueue_ms_median": timing.enqueue_ms_median}

    def close(self) -> None:
        if self.telemetry:
            self.telemetry.stop()
        self.stack.close()


def serve(config: dict, results: str, cell: dict, stdin=sys.stdin, stdout=sys.stdout) -> int:
    def answer(obj):
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    stdout.write("ready\n")
    stdout.flush()
    loaded = None
    try:
        for line in stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            try:
                if request["op"] == "load":
                    os.environ.update(request.get("env") or {})
                    loaded = LoadedCell(config, results, cell)
                    answer({"load_s": loaded.load_s})
                elif request["op"] == "block":
                    answer(loaded.block(request.get("cpu")))
                else:
                    answer({"error": f"unknown request {request['op']!r}"})
            except Exception as exc:  # one line back, never a hang: the check records the reason
                first = (str(exc).strip().splitlines() or [""])[0]
                answer({"error": f"{type(exc).__name__}: {first}"[:400]})
    finally:
        if loaded:
            loaded.close()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m inferbench.selfcheck.harness_side", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the sweep's resolved config")
    p.add_argument("--results", required=True, help="the sweep's results folder (its artifacts)")
    p.add_argument("--cell", required=True, help="JSON: model, backend, device, precision, resolution, batch_size")
    args = p.parse_args(argv)
    import yaml

    import torch  # noqa: F401  (imported before `ready`: the check waits for the imports, not the load)

    with open(args.config) as f:
        config = yaml.safe_load(f)
    return serve(config, args.results, json.loads(args.cell))


if __name__ == "__main__":
    sys.exit(main())
