"""The fp32 reference logits are computed once per input and shared; a cached file is only used
for the very input it was computed from."""

import torch

from inferbench.measure.reference import compute, reference_logits
from inferbench.sweep.config import Cell
from inferbench.sweep.spec import CellSpec


def spec_for(backend: str) -> CellSpec:
    return CellSpec(cell=Cell("resnet18", backend, "cpu", "fp32", 32, 2), weights=None, seed=0, options={},
                    measurement={}, io_modes=["device"], timeout_s=60)


def batch(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_the_second_backend_reads_what_the_first_computed(tmp_path):
    x = batch(0)
    first, cached_first = reference_logits(spec_for("pytorch"), x, tmp_path)
    second, cached_second = reference_logits(spec_for("onnxruntime"), x, tmp_path)
    assert (cached_first, cached_second) == (False, True)
    assert torch.equal(first, second)
    assert torch.equal(second, compute(spec_for("pytorch"), x))


def test_another_input_under_the_same_key_is_computed_not_read(tmp_path):
    reference_logits(spec_for("pytorch"), batch(0), tmp_path)
    other = batch(1)
    logits, cached = reference_logits(spec_for("pytorch"), other, tmp_path)
    assert not cached
    assert torch.equal(logits, compute(spec_for("pytorch"), other))


def test_without_a_cache_folder_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, cached = reference_logits(spec_for("pytorch"), batch(0), None)
    assert not cached and not list(tmp_path.iterdir())


def test_computing_a_reference_leaves_the_cells_cudnn_setting_as_it_was():
    """A warm worker's next cell must keep cuDNN's search on, though the reference turns it off."""
    torch.backends.cudnn.benchmark = True
    try:
        compute(spec_for("pytorch"), batch(0))
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = False
