"""The user's own model: `python:package.module:function`, so that a model needs no code in this
project. The module must be importable where the jobs run (on PYTHONPATH, or installed).

The function is called with no arguments, after `torch.manual_seed(seed)`, and returns either
  - a torch.nn.Module, which takes 3-channel images; or
  - a mapping {"model": nn.Module, "in_chans": int, "resolution": int}, where `in_chans` (default
    3) is the input's channels and `resolution` (optional) the square size in pixels the sweep
    uses when the config gives no `resolutions`.
The module is taken as it is returned: inferbench puts it in eval mode, fp32, on the CPU, then
where and in what precision each cell runs. Its weights are the function's business:
`weights:` must be null (random initialisation is drawn from `seed`)."""

from __future__ import annotations

import functools
import importlib
import re
import traceback
from collections.abc import Mapping

from inferbench.errors import UserError
from inferbench.models.base import ModelInput, closest

FORM = "python:package.module:function"
NAME = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)")


def _parts(name: str) -> tuple[str, str]:
    match = NAME.fullmatch(name)
    if not match:
        raise UserError(f"model: 'python:{name}' is not of the form {FORM} (a dotted module path, a colon, "
                        "a function name), e.g. python:mypackage.models:build")
    return match.group(1), match.group(2)


def _function(name: str):
    module_name, function_name = _parts(name)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error its import raises is theirs to see
        where = _where(exc)
        raise UserError(f"model: python:{name}: the module {module_name!r} failed to import: "
                        f"{type(exc).__name__}: {exc}{where}. It must be importable where the jobs run "
                        "(on PYTHONPATH, or installed).") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = closest(function_name, public)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise UserError(f"model: python:{name}: the module {module_name!r} ({getattr(module, '__file__', '?')}) "
                        f"has no function {function_name!r}.{hint}")
    return function


def _where(exc: BaseException) -> str:
    """The innermost line of the user's code that raised, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({exc.filename}, line {exc.lineno})"
    return f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def _call(name: str):
    """(nn.Module, ModelInput) from the user's function, checked against the contract."""
    import torch

    function = _function(name)
    try:
        made = function()
    except Exception as exc:
        raise UserError(f"model: python:{name}() raised {type(exc).__name__}: {exc}{_where(exc)}") from None
    facts = {}
    if isinstance(made, Mapping):
        unknown = sorted(set(made) - {"model", "in_chans", "resolution"})
        if "model" not in made or unknown:
            raise UserError(f"model: python:{name}() returned a mapping with keys {sorted(made)}; it must hold "
                            "'model' (an nn.Module) and optionally 'in_chans' and 'resolution'")
        facts = {k: made[k] for k in ("in_chans", "resolution") if k in made}
        made = made["model"]
    if not isinstance(made, torch.nn.Module):
        raise UserError(f"model: python:{name}() returned {type(made).__name__}, not a torch.nn.Module (or a "
                        "mapping {'model': module, 'in_chans': C, 'resolution': R})")
    for key, value in facts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"model: python:{name}() returned {key}={value!r}; it must be a positive integer")
    return made, ModelInput(in_chans=facts.get("in_chans", 3), resolution=facts.get("resolution"))


def check(name: str, weights: str | None) -> None:
    if weights is not None:
        raise UserError(f"weights: {weights!r} with model python:{name}: the function makes its own weights; "
                        "set weights: null (random initialisation is then drawn from `seed`)")
    _function(name)


@functools.cache
def input_of(name: str) -> ModelInput:
    # the function is the only one who knows: it is called once per process to ask it
    import torch

    torch.manual_seed(0)
    return _call(name)[1]


def build(name: str, weights: str | None, seed: int):
    if weights is not None:
        check(name, weights)
    return _call(name)[0]
