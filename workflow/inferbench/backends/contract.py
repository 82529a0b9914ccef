"""The backend contract, declared once: what a backend module provides, checked when it is loaded.

Every part is listed here with what it takes; an optional part has its default here, so nothing
else looks a part up with getattr. `check` holds a module to the contract the way pluggy holds a
plugin to its hook specifications: a required part missing, a part taking the wrong number of
arguments, a name that looks like a misspelt part (`EXPORT_OPTION`), or an EXPORT_OPTIONS entry
that is not one of its options is an error naming the module and the part, not a silent default.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from inferbench.errors import UserError


@dataclass(frozen=True)
class Part:
    name: str
    what: str  # for the error message and for a reader: what the part is
    args: tuple[str, ...] | None = None  # a callable's positional parameters; None: a value
    required: bool = True
    default: Any = None


PARTS = (
    Part("Options", "a dataclass of its options, with defaults"),
    Part("parse_options", "-> Options (use inferbench.backends.base.parse_dataclass)", ("raw",)),
    Part("artifact_key", "-> dict of what its exported artifact depends on, or None (no export)",
         ("cell", "options")),
    Part("unsupported", "-> the reason the cell cannot run (a `skipped` cell), or None", ("cell", "options")),
    Part("load", "-> inferbench.backends.base.Runner, ready to time", ("ctx",)),
    Part("ARTIFACT_SUFFIX", "the artifact's file suffix; None: the backend exports nothing", required=False),
    Part("export", "-> dict of facts to record; required with an ARTIFACT_SUFFIX", ("spec", "options", "out_path"),
         required=False),
    Part("NEEDS_BATCH_RANGE", "True: the artifact is built for the sweep's batch sizes (a TensorRT engine), "
         "so its export reruns when they change", required=False, default=False),
    Part("EXPORT_OPTIONS", "the option names `export` reads (None: all of them); variants that agree on these "
         "and on the key share one artifact", required=False),
    Part("export_shares_gpu", "-> True where an export on a GPU times nothing, so exports may share the GPU",
         ("options",), required=False),
    Part("check_sweep", "raise UserError where an option does not fit the sweep; axis(device, name) is a grid "
         "axis of this backend's cells on that device, [] where it has none", ("options", "axis"), required=False),
    Part("REQUIRES", "modules it needs beyond torch, checked without importing them", required=False, default=()),
    Part("REQUIRES_HINT", "where to get them, appended to the skip reason", required=False, default=""),
)
PART_NAMES = tuple(p.name for p in PARTS)


@dataclass(frozen=True)
class Backend:
    """A backend module that meets the contract, with every optional part filled in."""

    name: str  # its name in the config
    module: ModuleType
    Options: type
    parse_options: Callable
    artifact_key: Callable
    unsupported: Callable
    load: Callable
    ARTIFACT_SUFFIX: str | None
    export: Callable | None
    NEEDS_BATCH_RANGE: bool
    EXPORT_OPTIONS: tuple | None
    export_shares_gpu: Callable | None
    check_sweep: Callable | None
    REQUIRES: tuple
    REQUIRES_HINT: str


class ContractError(UserError):
    """A backend module that does not meet the contract."""


def _positional(fn) -> list[str] | None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]


def problems(module: ModuleType) -> list[str]:
    """Every way `module` falls short of the contract (empty: it meets it)."""
    out = []
    for part in PARTS:
        if not hasattr(module, part.name):
            if part.required:
                out.append(f"{part.name} is missing ({part.what})")
            continue
        value = getattr(module, part.name)
        if part.args is not None:
            if not callable(value):
                out.append(f"{part.name} must be a function taking ({', '.join(part.args)})")
                continue
            found = _positional(value)
            if found is not None and len(found) != len(part.args):
                out.append(f"{part.name} takes ({', '.join(found)}); the contract calls it with "
                           f"({', '.join(part.args)})")
    options = getattr(module, "Options", None)
    if options is not None and not dataclasses.is_dataclass(options):
        out.append("Options must be a dataclass")
    if getattr(module, "ARTIFACT_SUFFIX", None) is not None and not hasattr(module, "export"):
        out.append("export is missing (required with an ARTIFACT_SUFFIX: the artifact must be made)")
    names = getattr(module, "EXPORT_OPTIONS", None)
    if names is not None and options is not None and dataclasses.is_dataclass(options):
        fields = {f.name for f in dataclasses.fields(options)}
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            out.append(f"EXPORT_OPTIONS must be a tuple of option names, got {names!r}")
        else:
            unknown = [n for n in names if n not in fields]
            if unknown:
                out.append(f"EXPORT_OPTIONS names {', '.join(map(repr, unknown))}, not an option of Options "
                           f"({', '.join(sorted(fields))})")
    lowered = {n.lower(): n for n in PART_NAMES}
    for name in vars(module):
        if name.startswith("_") or name in PART_NAMES:
            continue
        close = difflib.get_close_matches(name.lower(), lowered, n=1, cutoff=0.85)
        if close:
            out.append(f"{name!r} is not a part of the contract: did you mean {lowered[close[0]]}?")
    return out


def check(name: str, module: ModuleType) -> Backend:
    """The module as a Backend, or a ContractError naming every problem."""
    found = problems(module)
    if found:
        raise ContractError(f"backend {name!r} ({module.__name__}) does not meet the backend contract "
                            "(inferbench.backends.contract):\n  - " + "\n  - ".join(found))
    return Backend(name=name, module=module, **{p.name: getattr(module, p.name, p.default) for p in PARTS})
