"""The JSON job descriptions that Snakemake rules hand to `inferbench export` and `inferbench cell`.

Each holds only its job's slice of the config, so that changing one backend's options changes
only that backend's jobs' parameters (and Snakemake reruns only those).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from inferbench.sweep.grid import Cell, axis_for, backend_of, io_modes_for, measurement_for, options_of


def artifact_name(key: dict) -> str:
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
    in_chans: int = 3  # the model's input channels (inferbench.models.base.ModelInput)

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
        from inferbench.models.registry import build_model

        return build_model(self.model, self.weights, self.seed)

    def to_json(self) -> str:
        d = asdict(self)
        if d["in_chans"] == 3:  # the default leaves existing exports' parameters as they were
            del d["in_chans"]
        return json.dumps(d, sort_keys=True)

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
    # the backend a variant runs (cell.backend is the variant's name); None: cell.backend itself
    backend_impl: str | None = None
    in_chans: int = 3  # the model's input channels (inferbench.models.base.ModelInput)

    @property
    def impl(self) -> str:
        return self.backend_impl or self.cell.backend

    def to_json(self) -> str:
        d = asdict(self)
        # defaults leave the job's parameters as they were: existing shards stay valid
        if d["gpu_worker"] == "fresh":
            del d["gpu_worker"]
        if d["backend_impl"] in (None, self.cell.backend):
            del d["backend_impl"]
        if d["in_chans"] == 3:
            del d["in_chans"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CellSpec":
        d = json.loads(text)
        d["cell"] = Cell(**d["cell"])
        return cls(**d)


def export_options(backend, options) -> dict:
    """The options the backend's export reads (its EXPORT_OPTIONS; all of them if it does not
    say), resolved: variants whose export options and artifact key agree share one artifact."""
    import dataclasses

    values = dataclasses.asdict(options)
    names = backend.EXPORT_OPTIONS
    return values if names is None else {k: v for k, v in values.items() if k in names}


def artifact_key_for(config: dict, cell: Cell) -> dict | None:
    """What the cell's artifact depends on: the backend's key, plus the export options it does not
    fix that differ from their defaults (so that a variant that changes one gets its own file)."""
    from inferbench.backends import load_backend

    backend = load_backend(backend_of(config, cell.backend))
    options = backend.parse_options(options_of(config, cell.backend))
    key = backend.artifact_key(cell, options)
    if key is None:
        return None
    defaults = export_options(backend, backend.parse_options({}))
    extra = {k: v for k, v in export_options(backend, options).items() if k not in key and v != defaults[k]}
    if not all(_plain(v) for v in extra.values()):
        # a value that would not make a plain file name: its hash does
        import hashlib

        extra = {"options": hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:12]}
    return {**key, **extra}


def _plain(value) -> bool:
    return isinstance(value, (bool, int, float, str)) and str(value).replace("-", "").replace(".", "").replace(
        "_", "").isalnum()


def artifact_manifest(config: dict, cell: Cell) -> str | None:
    """The manifest of the artifact the cell loads, relative to the results folder, or None.
    Under the backend's name, not the variant's: variants share what they can."""
    key = artifact_key_for(config, cell)
    if key is None:
        return None
    return f"artifacts/{cell.model}/{backend_of(config, cell.backend)}/{artifact_name(key)}.json"


def known_skip(cell: Cell, raw_options: dict | None, cuda_visible, libraries: bool = True,
               backend: str | None = None) -> str | None:
    """Why `cell` will be skipped, if that is known before anything is exported or loaded:
    the backend does not support the combination, no CUDA device is visible, or (with
    `libraries`) the backend's library is not installed. `cuda_visible` is a callable, asked
    only for CUDA cells. The cell job asks the same questions where it runs (commands/cell.py);
    the workflow asks them to leave out exports whose every cell would be skipped. `backend`:
    the backend a variant runs (default: the cell's own)."""
    from inferbench.backends import load_backend, missing_library
    from inferbench.process.devices import NO_CUDA

    backend = backend or cell.backend
    module = load_backend(backend)
    reason = module.unsupported(cell, module.parse_options(raw_options or {}))
    if reason:
        return reason
    if cell.device == "cuda" and not cuda_visible():
        return NO_CUDA
    return missing_library(backend) if libraries else None


def export_spec_for(config: dict, variant: str, key: dict) -> ExportSpec:
    """The export job of the artifact with `key`, for the `backends:` entry `variant`. Only the
    options its export reads: variants that differ elsewhere make the same job, hence one export."""
    from inferbench.backends import load_backend

    backend = backend_of(config, variant)
    module = load_backend(backend)
    # Only an artifact built for a batch range (a TensorRT engine) depends on the batch sizes;
    # for the others, adding a batch size must not redo the export (and rerun every cell).
    batch_sizes = []
    if module.NEEDS_BATCH_RANGE:
        batch_sizes = sorted(axis_for(config, key.get("device", "cuda"), "batch_sizes"))
    options = export_options(module, module.parse_options(options_of(config, variant)))
    return ExportSpec(model=config["model"], weights=config.get("weights"), seed=config["seed"], backend=backend,
                      key=key, batch_sizes=batch_sizes, options=options, in_chans=model_in_chans(config))


def export_claims_gpu(spec: ExportSpec) -> bool:
    """Whether the export has a GPU to itself (a GPU token, and the GPU's claim): one built on a GPU
    does, since it may time candidate kernels there (a TensorRT build), unless its backend says
    its exports share the GPU (export_shares_gpu(options): torch.compile's precompilations that
    time nothing). Exports never run beside a timed cell either way (ExportsRunning)."""
    from inferbench.backends import load_backend

    if spec.device != "cuda":
        return False
    module = load_backend(spec.backend)
    shares = module.export_shares_gpu
    return not (shares and shares(module.parse_options(spec.options)))


def cell_spec_for(config: dict, cell: Cell) -> CellSpec:
    return CellSpec(cell=cell, weights=config.get("weights"), seed=config["seed"],
                    options=options_of(config, cell.backend),
                    measurement=measurement_for(config, cell.device), io_modes=io_modes_for(config, cell.device),
                    timeout_s=config["cell_timeout_s"],
                    # only GPU cells have a GPU worker: CPU cells always start a fresh process
                    gpu_worker=config.get("gpu_worker", "fresh") if cell.device == "cuda" else "fresh",
                    backend_impl=backend_of(config, cell.backend), in_chans=model_in_chans(config))


def model_in_chans(config: dict) -> int:
    """The channels of the sweep's model input: known when the sweep is planned, so that every
    job draws its inputs without building the model first."""
    from inferbench.models.registry import model_input

    return model_input(config["model"]).in_chans
