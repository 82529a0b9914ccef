"""What every backend shares: option parsing, the load context, and the runner contract.

A backend module provides the parts that inferbench.backends.contract declares (Options,
parse_options, artifact_key, unsupported, load, and optional ones with defaults there), and is
checked against them when it is loaded.

Helpers a backend imports (torch_common, say) are found in its imports: editing one reruns the
jobs of the backends that import it (inferbench.sweep.codedeps).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from inferbench.errors import Skip, UserError  # noqa: F401 (backends raise Skip from here)


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


class CompileWork:
    """How a backend runs its compilation: `with ctx.compile_work() as work:` around it, then
    `runner.facts.update(work.facts())`. This one changes nothing; a cell measured beside others
    gets one that keeps the compilation off their CPUs (inferbench.measure.compileguard)."""

    def __enter__(self) -> "CompileWork":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def facts(self) -> dict:
        return {}


@dataclass
class LoadContext:
    """Everything a backend needs to get ready to run one cell."""

    cell: Any  # inferbench.sweep.grid.Cell
    options: Any  # the backend's Options
    artifact_path: str | None
    threads: int
    build_model: Callable[[], Any]  # fp32 torch.nn.Module on the CPU, eval mode, weights loaded
    compile_work: Callable[[], CompileWork] = CompileWork  # see CompileWork
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
    # why `run` waits for the device before it returns, where it does (then the host's time to
    # issue a call says nothing: inferbench.measure.hostbound); None: it returns once queued
    waits_for_gpu: str | None = None


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def runs_eagerly(model, example) -> bool:
    """Whether the model as written takes this input (an export that fails where the model runs
    is the format's limit; where the model fails too, the model's error)."""
    import torch

    try:
        with torch.no_grad():
            model(example)
        return True
    except Exception:  # whatever the model raises: the caller re-raises the export's own error
        return False
