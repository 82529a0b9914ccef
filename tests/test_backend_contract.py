"""Every known backend meets the backend contract (inferbench.backends.contract), and the check
names what a module lacks or misspells instead of filling in a default."""

from __future__ import annotations

import dataclasses
import types

import pytest

from inferbench.backends import KNOWN_BACKENDS, contract, load_backend
from inferbench.errors import UserError


def _module(name: str) -> types.ModuleType:
    return load_backend(name).module


def _copy(module: types.ModuleType, drop: str | None = None, **extra) -> types.ModuleType:
    """A stand-in for `module` without the part `drop`, with `extra` names added."""
    copy = types.ModuleType(module.__name__)
    copy.__dict__.update({k: v for k, v in vars(module).items() if k != drop}, **extra)
    return copy


@pytest.mark.parametrize("name", list(KNOWN_BACKENDS))
def test_every_known_backend_meets_the_contract(name):
    backend = load_backend(name)
    assert contract.problems(backend.module) == []
    assert isinstance(backend.parse_options({}), backend.Options)  # every option has its default
    for part in contract.PARTS:  # an optional part left out takes the contract's default
        assert getattr(backend, part.name) is getattr(backend.module, part.name, part.default)
    if backend.ARTIFACT_SUFFIX is not None:
        assert backend.export is not None


@pytest.mark.parametrize("name", list(KNOWN_BACKENDS))
@pytest.mark.parametrize("part", [p.name for p in contract.PARTS if p.required])
def test_a_module_missing_a_required_part_is_refused_by_name(name, part):
    with pytest.raises(contract.ContractError, match=f"{part} is missing"):
        contract.check(name, _copy(_module(name), drop=part))


def test_a_misspelt_part_or_export_option_is_an_error_not_all_options():
    onnx = _module("onnxruntime")
    with pytest.raises(UserError, match="'EXPORT_OPTION' is not a part of the contract: did you mean EXPORT_OPTIONS"):
        contract.check("onnxruntime", _copy(onnx, drop="EXPORT_OPTIONS", EXPORT_OPTION=("opset",)))
    with pytest.raises(UserError, match="EXPORT_OPTIONS names 'opst', not an option of Options"):
        contract.check("onnxruntime", _copy(onnx, EXPORT_OPTIONS=("opst",)))
    with pytest.raises(UserError, match="EXPORT_OPTIONS must be a tuple of option names"):
        contract.check("onnxruntime", _copy(onnx, EXPORT_OPTIONS="opset"))
    # export_shares_gpu is part of the contract: a misspelling of it is named too
    compile_ = _module("torch_compile")
    with pytest.raises(UserError, match="did you mean export_shares_gpu"):
        contract.check("torch_compile", _copy(compile_, drop="export_shares_gpu",
                                              export_share_gpu=compile_.export_shares_gpu))


def test_a_part_with_the_wrong_arguments_or_an_artifact_without_an_export_is_refused():
    eager = _module("pytorch")
    with pytest.raises(UserError, match=r"unsupported takes \(cell\); the contract calls it with \(cell, options\)"):
        contract.check("pytorch", _copy(eager, unsupported=lambda cell: None))
    with pytest.raises(UserError, match="export is missing"):
        contract.check("pytorch", _copy(eager, ARTIFACT_SUFFIX=".pt"))
    with pytest.raises(UserError, match="Options must be a dataclass"):
        contract.check("pytorch", _copy(eager, Options=dict))
    assert dataclasses.is_dataclass(eager.Options)
