"""timm models: `timm:NAME`, any name `timm.list_models()` gives (a pretrained tag may follow:
`timm:resnet10t.c3_in1k`). The model's pretrained config gives its input (channels, size,
normalisation). timm is an optional extra: `pip install .[timm]`.

`weights: null` is random weights from `seed`; `weights: pretrained` loads the tag's weights from
the local caches only (the Hugging Face hub cache, or torch hub's for weights timm fetches by
URL): inferbench never downloads."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from urllib.parse import urlparse

from inferbench.errors import UserError
from inferbench.models.base import ModelInput, unknown_name_message

MISSING = ("model: {model!r} needs timm, which is not installed here. Install it with `pip install .[timm]` "
           "(or `pip install timm`), in the environment the jobs run in.")
WEIGHTS = ("pretrained",)
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _timm(name: str):
    if importlib.util.find_spec("timm") is None:
        raise UserError(MISSING.format(model=f"timm:{name}"))
    import timm

    return timm


def check(name: str, weights: str | None) -> None:
    timm = _timm(name)
    arch = name.partition(".")[0]
    if not timm.is_model(arch):
        raise UserError(unknown_name_message("timm", f"timm:{name}", [f"timm:{m}" for m in timm.list_models()],
                                             "See timm.list_models()."))
    if weights is None:
        return
    if weights not in WEIGHTS:
        raise UserError(f"weights: {weights!r} is not a weights name for timm:{name}; use `pretrained` (its "
                        "pretrained tag's weights, from the local cache) or null for random weights")
    _cached_weights(timm, name)


def input_of(name: str) -> ModelInput:
    cfg = _pretrained_cfg(_timm(name), name)
    if cfg is None:
        return ModelInput()
    chans, _, width = cfg.input_size
    return ModelInput(in_chans=int(chans), resolution=int(width), mean=tuple(cfg.mean), std=tuple(cfg.std))


def build(name: str, weights: str | None, seed: int):
    timm = _timm(name)
    if weights is None:
        return timm.create_model(name, pretrained=False)
    # timm loads a `file` in the pretrained config before any hub or URL: no download is tried
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(_cached_weights(timm, name))})


def _pretrained_cfg(timm, name: str):
    from timm.models import get_pretrained_cfg

    arch, _, tag = name.partition(".")
    if tag:
        return get_pretrained_cfg(name)
    # a bare architecture: its default tag, the one create_model(pretrained=True) takes
    tags = timm.list_pretrained(f"{arch}.*")
    return get_pretrained_cfg(tags[0]) if tags else get_pretrained_cfg(arch)


def _cached_weights(timm, name: str) -> Path:
    cfg = _pretrained_cfg(timm, name)
    if cfg is None:
        raise UserError(f"weights: timm:{name} has no pretrained weights; set weights: null for random weights")
    looked = []
    if cfg.hf_hub_id and importlib.util.find_spec("huggingface_hub"):
        from huggingface_hub import try_to_load_from_cache

        for filename in ([cfg.hf_hub_filename] if cfg.hf_hub_filename else HUB_FILES):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
        looked.append(f"the Hugging Face hub cache ({cfg.hf_hub_id})")
    if cfg.url:
        import torch

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if path.is_file():
            return path
        looked.append(str(path))
    raise UserError(f"weights: the pretrained weights of timm:{name} are not on disk (looked in "
                    f"{' and '.join(looked) or 'nowhere: its config names no file'}), and inferbench never downloads. "
                    "Fetch them once where a network is allowed (timm.create_model(NAME, pretrained=True)), or set "
                    "weights: null for random weights.")
