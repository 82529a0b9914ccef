"""How far a cell's outputs may be from the fp32 reference for its precision, and the verdict.

The rule: the largest absolute difference between the cell's logits and the fp32 reference
logits of the same input (`max_abs_err`) must not exceed the precision's relative tolerance times
the reference's scale, the largest absolute reference logit of the batch. Relative, because
rounding errors grow with the values a network carries: the same backend on another model, or on
weights with larger logits, has larger absolute errors and is no less right.

Top-1 agreement is reported, not gated on its own: when every logit is within `t` of the
reference, a class can only change where the reference's two best classes were closer than `2t`,
a tie the precision cannot tell apart; and on a batch of two, one such tie is 50%. A wrong model,
a broken export or NaN outputs miss the bound by orders of magnitude (docs/method.md has the
data behind each tolerance).
"""

from __future__ import annotations

import math

# max_abs_err over the largest absolute reference logit. "tf32" is an fp32 cell whose backend was
# asked to compute in TF32 (option `tf32: true`): a 10-bit mantissa, as fp16.
RELATIVE_TOLERANCE = {"fp32": 1e-4, "tf32": 1e-2, "fp16": 1e-2, "bf16": 8e-2}


def arithmetic(precision: str, tf32: bool = False) -> str:
    """The arithmetic a cell's tolerance is chosen by: its precision, or tf32 for fp32 in TF32."""
    return "tf32" if precision == "fp32" and tf32 else precision


def tolerance_abs(arith: str, reference_scale: float) -> float:
    """The largest max_abs_err a cell computing in `arith` may have against this reference."""
    return RELATIVE_TOLERANCE[arith] * reference_scale


def disagreement(arith: str, max_abs_err: float, top1_agreement: float, reference_scale: float) -> str:
    """Why the outputs disagree with the reference beyond what `arith` allows, or "" when they
    agree. A NaN or infinite error never agrees."""
    tol = tolerance_abs(arith, reference_scale)
    if math.isfinite(max_abs_err) and max_abs_err <= tol:
        return ""
    return (f"outputs disagree with the fp32 reference: top-1 agreement {100 * top1_agreement:.1f}%, "
            f"max abs err {max_abs_err:.3g}, tolerance {tol:.3g} ({RELATIVE_TOLERANCE[arith]:g} x the largest "
            f"reference logit {reference_scale:.3g}, for {arith}); check that the artifact is this model's")
