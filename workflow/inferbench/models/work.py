"""The work a model does per image: floating-point operations and parameters, counted once per
model and resolution (the `model_work` job), never per cell.

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode on one image, fp32, on the CPU: the
model's nominal work, the same for every format (a format that fuses or skips work does not
change it), so that achieved TFLOP/s compare formats on one scale. Convention: 2 FLOPs per
multiply-accumulate (FlopCounterMode's), convolutions and matrix products only; element-wise
operations, normalisation and pooling count nothing. torchvision's weights tables ("GFLOPS",
`_ops` in a weights' meta) count multiply-accumulates, half this figure.
"""

from __future__ import annotations

CONVENTION = ("FlopCounterMode (torch.utils.flop_counter): 2 FLOPs per multiply-accumulate, convolutions and "
              "matrix products only; torchvision's GFLOPS (multiply-accumulates) are half")


def count_flops(model, in_chans: int, resolution: int) -> int:
    """FLOPs of one forward pass of one image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, in_chans, resolution, resolution)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def model_work(model_name: str, weights: str | None, seed: int, resolutions) -> dict:
    """{model, params_m, in_chans, ..., gflop_per_image: {resolution: GFLOP or None}, errors} for
    the sweep's record. A resolution the model cannot take (too small for its pooling, say) has no
    count and its error in `errors`: its cells fail on their own, the other resolutions' figures
    stand. A model that cannot be built leaves every count out, with the reason."""
    from inferbench.models import registry as models

    try:
        facts = models.model_input(model_name)
        model = models.build_model(model_name, weights, seed)
    except Exception as exc:  # a user's model may raise anything; its cells report it themselves
        return {"model": model_name, "params_m": None, "flop_convention": CONVENTION, "gflop_per_image": {},
                "errors": {"model": f"{type(exc).__name__}: {exc}"}}
    counts, errors = {}, {}
    for r in sorted(resolutions):
        try:
            counts[str(r)] = count_flops(model, facts.in_chans, r) / 1e9
        except Exception as exc:  # as above: the forward pass of a user's model at this size
            counts[str(r)] = None
            errors[str(r)] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return {"model": model_name, "params_m": count_params(model) / 1e6, "in_chans": facts.in_chans,
            "default_resolution": facts.resolution, "mean": facts.mean, "std": facts.std,
            "flop_convention": CONVENTION, "gflop_per_image": counts, "errors": errors}
