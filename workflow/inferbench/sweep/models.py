"""Build the model under test: any torchvision classification model, fp32, eval mode, on the CPU."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from inferbench.errors import UserError


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


def build_model(model: str, weights: str | None, seed: int):
    import torch
    import torchvision

    torch.manual_seed(seed)
    if weights is None:
        net = torchvision.models.get_model(model, weights=None)
    else:
        ok, message = weights_file_status(model, weights)
        if not ok:
            raise UserError(message)
        entry, _ = _weights_entry(model, weights)
        net = torchvision.models.get_model(model, weights=entry)
    return net.eval()
