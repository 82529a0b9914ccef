"""How far a backend's output is from the fp32 reference logits (inferbench.measure.reference)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accuracy:
    max_abs_err: float
    mean_abs_err: float
    top1_agreement: float
    reference_device: str
    reference_s: float
    reference_scale: float  # the largest absolute reference logit: what a tolerance is relative to


def compare_logits(out, ref) -> dict:
    """The error columns of `out` against `ref` (fp32 logits on the CPU), batch along dim 0."""
    out = out.float().cpu()
    diff = (out - ref).abs()
    return {"max_abs_err": float(diff.max()), "mean_abs_err": float(diff.mean()),
            "top1_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean()),
            "reference_scale": float(ref.abs().max())}
