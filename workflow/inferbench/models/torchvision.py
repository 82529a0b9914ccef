"""torchvision classification models, by the names `torchvision.models.list_models` gives.

Weights come only from the torch hub cache: inferbench never downloads (an offline machine must
not hang, and a sweep must not depend on a server)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

from inferbench.errors import UserError
from inferbench.models.base import ModelInput, unknown_name_message


def check(name: str, weights: str | None) -> None:
    # Every snakemake start checks the model: a name found in torchvision's source needs no import
    # of torchvision (which imports torch: seconds of each start); any other name is looked up in
    # the registry itself.
    if name not in registered_classification_models():
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            raise UserError(unknown_name_message(
                "torchvision classification", name, known,
                "See torchvision.models.list_models(module=torchvision.models); for another source, write "
                "timm:NAME or python:package.module:function."))
    if weights is not None:
        ok, message = weights_file_status(name, weights)
        if not ok:
            raise UserError(f"weights: {message}")


def input_of(name: str) -> ModelInput:
    # torchvision's classifiers take RGB; their weights are evaluated at 224 px (their transforms)
    return ModelInput(in_chans=3, resolution=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def build(name: str, weights: str | None, seed: int):
    import torchvision

    if weights is None:
        return torchvision.models.get_model(name, weights=None)
    ok, message = weights_file_status(name, weights)
    if not ok:
        raise UserError(message)
    entry, _ = _weights_entry(name, weights)
    return torchvision.models.get_model(name, weights=entry)


def registered_classification_models() -> set[str]:
    """The names torchvision's classification modules register with a bare `@register_model()`,
    read from their source without importing torchvision: what `list_models(module=
    torchvision.models)` lists, or part of it (tests/test_config.py checks that it lists no more)."""
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return set()
    names = set()
    for source in sorted(Path(spec.submodule_search_locations[0], "models").glob("*.py")):
        lines = source.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if line != "@register_model()":
                continue
            builder = next((rest for rest in lines[i + 1:] if rest.startswith("def ")), "")
            match = re.match(r"def (\w+)\(", builder)
            if match:
                names.add(match.group(1))
    return names


def _weights_entry(model: str, weights: str):
    from torchvision.models import get_model_weights

    enum = get_model_weights(model)
    member = weights.split(".")[-1]
    if member not in enum.__members__:
        choices = ", ".join(f"{enum.__name__}.{m}" for m in enum.__members__)
        return None, f"{weights!r} is not a weights name of {model}; choose one of {choices}, or null for random weights"
    return enum[member], None


def weights_path(entry) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(entry.url).path)


def weights_file_status(model: str, weights: str) -> tuple[bool, str]:
    """Is the weights file on disk? inferbench never downloads (offline machines must not hang)."""
    entry, problem = _weights_entry(model, weights)
    if problem:
        return False, problem
    path = weights_path(entry)
    if not path.exists():
        return False, (f"{weights} needs the file {path}, which is not on disk, and inferbench never downloads. "
                       f"Copy it there (TORCH_HOME moves the cache) or set weights: null for random weights.")
    return True, str(path)
