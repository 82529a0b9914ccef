"""The accuracy yardstick: fp32 eager PyTorch logits of a cell's first input batch, computed once.

Every backend of a sweep at one precision and shape is compared with the same fp32 logits of the
same input, so the first cell that needs them saves them (an atomic write) and the others read
them: computing them (building the fp32 model, its first CUDA run) took up to seconds of every
cell (docs/method.md). The file name holds everything the logits depend on; a fingerprint of the input
is stored beside them and checked on reading, so a change in how inputs are drawn can never pair
a batch with another batch's logits.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path


def reference_logits(spec, x_host, cache_dir: str | Path | None = None):
    """(fp32 logits on the CPU, whether they came from the cache)."""
    if not cache_dir:
        return compute(spec, x_host), False
    path = Path(cache_dir) / f"{cache_key(spec, x_host)}.pt"
    fp = fingerprint(x_host)
    cached = _read(path, fp)
    if cached is not None:
        return cached, True
    logits = compute(spec, x_host)
    _write(path, logits, fp)
    return logits, False


def compute(spec, x_host):
    """fp32 eager PyTorch on the cell's device, TF32 off."""
    import torch

    from inferbench.backends.torch_common import set_tf32
    from inferbench.models.registry import build_model

    device = spec.cell.device
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    if device == "cuda":
        set_tf32(False)
        # cuDNN's heuristics, not its per-shape search: the yardstick needs fp32 to rounding, not
        # the fastest algorithm, and the search costs about a second per shape (it also makes the
        # reference the same whichever worker, and whichever backend's settings, computes it)
        torch.backends.cudnn.benchmark = False
    try:
        model = build_model(spec.cell.model, spec.weights, spec.seed).to(device)
        with torch.inference_mode():
            return model(x_host.to(device=device, dtype=torch.float32)).float().cpu()
    finally:
        # a warm worker's next cell finds the process as this cell left it
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = flags


def cache_key(spec, x_host) -> str:
    import torch

    c = spec.cell
    facts = {"model": c.model, "weights": spec.weights, "seed": spec.seed, "device": c.device,
             "shape": list(x_host.shape), "input_dtype": str(x_host.dtype), "torch": torch.__version__}
    if c.device == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["cudnn"] = torch.backends.cudnn.version()
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def fingerprint(x_host) -> list[float]:
    """A few sums over the input, cheap next to hashing hundreds of MB."""
    flat = x_host.reshape(-1)
    n = min(flat.numel(), 4096)
    return [float(flat[:n].double().sum()), float(flat[-n:].double().sum()), float(flat[:: max(1, flat.numel() // n)].double().sum())]


def _read(path: Path, expected: list[float]):
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError):
        return None
    if saved.get("fingerprint") != expected:
        return None
    return saved["logits"]


def _write(path: Path, logits, fp: list[float]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    # Serialised in memory, written by Python: on a full disk torch.save's own writer raises a
    # RuntimeError that does not say why, which would be recorded as the cell's error.
    data = io.BytesIO()
    torch.save({"logits": logits, "fingerprint": fp}, data)
    try:
        tmp.write_bytes(data.getbuffer())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(tmp)) from exc  # naming the file, for the message
    os.replace(tmp, path)  # two cells racing write the same values; either file is whole
