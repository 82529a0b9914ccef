"""Where the model under test comes from. The config's `model:` names it, and its prefix picks
the source, one small module each:

  resnet18                          torchvision (inferbench.models.torchvision)
  timm:resnet10t                    timm, an optional extra (inferbench.models.timm)
  python:package.module:function    the user's own function (inferbench.models.python)

Every source answers the same three calls: `check(name, weights)` (one UserError naming the
problem), `build(name, weights, seed)` (an fp32 nn.Module on the CPU, in eval mode) and
`input_of(name)` (what the model takes: ModelInput). The sweep asks for a model by its name only.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from types import ModuleType

from inferbench.errors import UserError
from inferbench.models.base import ModelInput  # noqa: F401 (what callers ask of a model)

# prefix -> module; a name without a prefix is torchvision's
SOURCES = {"timm": "inferbench.models.timm", "python": "inferbench.models.python"}
DEFAULT_SOURCE = "inferbench.models.torchvision"


def split_name(model: str) -> tuple[str | None, str]:
    """('timm', 'resnet10t') for 'timm:resnet10t'; (None, 'resnet18') for a torchvision name."""
    prefix, sep, rest = model.partition(":")
    return (prefix, rest) if sep else (None, model)


def source_of(model: str) -> ModuleType:
    prefix, _ = split_name(model)
    if prefix is None:
        return importlib.import_module(DEFAULT_SOURCE)
    if prefix not in SOURCES:
        close = difflib.get_close_matches(prefix, SOURCES, n=2)
        hint = f" Did you mean {' or '.join(f'{c}:' for c in close)}?" if close else ""
        raise UserError(f"model: {model!r} has the prefix {prefix!r}, which is no model source.{hint} Use a "
                        "torchvision name (resnet18), timm:NAME or python:package.module:function.")
    return importlib.import_module(SOURCES[prefix])


def check(model: str, weights: str | None) -> None:
    """The model can be built here, with these weights, without a download; else one UserError."""
    source_of(model).check(split_name(model)[1], weights)


def build_model(model: str, weights: str | None, seed: int):
    """fp32, eval mode, on the CPU; random weights drawn from `seed` where weights is None."""
    import torch

    torch.manual_seed(seed)
    return source_of(model).build(split_name(model)[1], weights, seed).eval()


@functools.cache
def model_input(model: str) -> ModelInput:
    """What the model takes (cached: a python: model is built to ask it)."""
    return source_of(model).input_of(split_name(model)[1])
