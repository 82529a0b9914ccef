"""The JSON job descriptions that Snakemake rules hand to `inferbench export` and `inferbench cell`.

Each holds only its job's slice of the config, so that changing one backend's options changes
only that backend's jobs' parameters (and Snakemake reruns only those).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from inferbench.sweep.config import Cell, axis_for, io_modes_for, measurement_for


def variant_name(key: dict) -> str:
    return "_".join(f"{k}-{v}" for k, v in key.items())


@dataclass
class ExportSpec:
    model: str
    weights: str | None
    seed: int
    backend: str
    key: dict
    batch_sizes: list
    options: dict = field(default_factory=dict)

    # what the key does not fix stays None (an ONNX file serves every device, say)
    @property
    def device(self):
        return self.key.get("device", "cpu")

    @property
    def precision(self):
        return self.key.get("precision", "fp32")

    @property
    def resolution(self):
        return self.key.get("resolution", 224)

    def build_model(self):
        from inferbench.sweep.models import build_model

        return build_model(self.model, self.weights, self.seed)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ExportSpec":
        return cls(**json.loads(text))


@dataclass
class CellSpec:
    cell: Cell
    weights: str | None
    seed: int
    options: dict
    measurement: dict
    io_modes: list
    timeout_s: float
    # "fresh": a fresh process per cell; "warm": the GPU's warm worker (inferbench.process.warm).
    gpu_worker: str = "fresh"

    def to_json(self) -> str:
        d = asdict(self)
        if d["gpu_worker"] == "fresh":
            # the default leaves the job's parameters as they were: existing shards stay valid
            del d["gpu_worker"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CellSpec":
        d = json.loads(text)
        d["cell"] = Cell(**d["cell"])
        return cls(**d)


def artifact_key_for(config: dict, cell: Cell) -> dict | None:
    from inferbench.backends import load_backend

    backend = load_backend(cell.backend)
    options = backend.parse_options(config["backends"].get(cell.backend) or {})
    return backend.artifact_key(cell, options)


def known_skip(cell: Cell, raw_options: dict | None, cuda_visible, libraries: bool = True) -> str | None:
    """Why `cell` will be skipped, if that is known before anything is exported or loaded:
    the backend does not support the combination, no CUDA device is visible, or (with
    `libraries`) the backend's library is not installed. `cuda_visible` is a callable, asked
    only for CUDA cells. The cell job asks the same questions where it runs (commands/cell.py);
    the workflow asks them to leave out exports whose every cell would be skipped."""
    from inferbench.backends import load_backend, missing_library
    from inferbench.process.devices import NO_CUDA

    backend = load_backend(cell.backend)
    reason = backend.unsupported(cell, backend.parse_options(raw_options or {}))
    if reason:
        return reason
    if cell.device == "cuda" and not cuda_visible():
        return NO_CUDA
    return missing_library(cell.backend) if libraries else None


def export_spec_for(config: dict, backend: str, key: dict) -> ExportSpec:
    from inferbench.backends import load_backend

    # Only an artifact built for a batch range (a TensorRT engine) depends on the batch sizes;
    # for the others, adding a batch size must not redo the export (and rerun every cell).
    batch_sizes = []
    if getattr(load_backend(backend), "NEEDS_BATCH_RANGE", False):
        batch_sizes = sorted(axis_for(config, key.get("device", "cuda"), "batch_sizes"))
    return ExportSpec(model=config["model"], weights=config.get("weights"), seed=config["seed"], backend=backend,
                      key=key, batch_sizes=batch_sizes,
                      options=config["backends"].get(backend) or {})


def cell_spec_for(config: dict, cell: Cell) -> CellSpec:
    return CellSpec(cell=cell, weights=config.get("weights"), seed=config["seed"],
                    options=config["backends"].get(cell.backend) or {},
                    measurement=measurement_for(config, cell.device), io_modes=io_modes_for(config, cell.device),
                    timeout_s=config["cell_timeout_s"],
                    # only GPU cells have a GPU worker: CPU cells always start a fresh process
                    gpu_worker=config.get("gpu_worker", "fresh") if cell.device == "cuda" else "fresh")
