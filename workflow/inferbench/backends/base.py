"""What every backend shares: option parsing, the load context, and the runner contract.

A backend module provides:
  Options                 a dataclass of its options, with defaults
  parse_options(raw)      -> Options (use `parse_dataclass`)
  artifact_key(cell, o)   -> dict of what its exported artifact depends on, or None (no export)
  ARTIFACT_SUFFIX         file suffix of the artifact, if any
  NEEDS_BATCH_RANGE       optional: True if the artifact is built for the sweep's batch sizes (a
                          TensorRT engine); its export then reruns when they change
  EXPORT_OPTIONS          optional: the options `export` reads (default: all of them); variants
                          of the backend that agree on these and on the key share one artifact
  unsupported(cell, o)    -> reason the cell cannot run (a `skipped` cell), or None
  check_sweep(o, axis)    optional: raise UserError when an option does not fit the sweep (an
                          engine's tuning batch outside its batch sizes, say); axis(device, name)
                          is a grid axis of this backend's cells on that device, [] where it has none
  REQUIRES                optional: modules it needs beyond torch, checked without importing them
  REQUIRES_HINT           optional: where to get them, appended to the skip reason
  export(spec, o, path)   -> dict of extra facts to record (only with an artifact)
  load(ctx)               -> Runner

Helpers a backend imports (torch_common, say) are found in its imports: editing one reruns the
jobs of the backends that import it (inferbench.sweep.codedeps).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from inferbench.errors import UserError


class Skip(Exception):
    """The cell cannot run here (missing library, unsupported combination): recorded as `skipped`."""


def parse_dataclass(cls, raw: dict | None):
    """Build an options dataclass from a config block, naming unknown keys and wrong types."""
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(fields)}")
    for name, value in raw.items():
        want = fields[name].type
        allowed = _allowed_types(want)
        if allowed and not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed and allowed):
            raise UserError(f"option {name!r} must be {want}, got {value!r}")
    options = cls(**raw)
    check = getattr(options, "check", None)
    if check:
        check()
    return options


def _allowed_types(annotation: str) -> tuple:
    table = {"bool": bool, "int": int, "float": (int, float), "str": str, "dict": dict, "list": list, "None": type(None)}
    out = []
    for part in str(annotation).replace(" ", "").split("|"):
        t = table.get(part)
        if t is None:
            return ()
        out.extend(t if isinstance(t, tuple) else (t,))
    return tuple(out)


def options_json(options) -> str:
    return json.dumps(dataclasses.asdict(options), sort_keys=True)


@dataclass
class LoadContext:
    """Everything a backend needs to get ready to run one cell."""

    cell: Any  # inferbench.sweep.config.Cell
    options: Any  # the backend's Options
    artifact_path: str | None
    threads: int
    build_model: Callable[[], Any]  # fp32 torch.nn.Module on the CPU, eval mode, weights loaded
    in_chans: int = 3  # the model's input channels


@dataclass
class Runner:
    """A loaded backend, ready to time.

    prepare(tensor) turns a device-resident input into what `run` takes (an ORT binding, a
    channels_last tensor, ...), outside the timed window. run(prepared) computes one batch and
    returns the output as a torch tensor on the cell's device, without waiting for the device.
    """

    run: Callable[[Any], Any]
    prepare: Callable[[Any], Any] = lambda x: x
    input_dtype: Any = None  # torch dtype the input must have
    compile_s: float | None = None
    facts: dict = field(default_factory=dict)  # resolved choices worth recording (providers, modes)
    # the device tensor inside a prepared input, which io=host copies each batch into
    staging_tensor: Callable[[Any], Any] = lambda prepared: prepared
    close: Callable[[], None] = lambda: None


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
