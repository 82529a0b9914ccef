"""Torch-TensorRT without TensorRT: everything around the library calls.

The backend turns a cell's precision, resolution, the sweep's batch sizes and its options into
the arguments of torch_tensorrt.compile and torch_tensorrt.save (`plan_export`), branching on
the library's version (`library_features`). Those are pure and tested here for fp32, fp16 and
bf16, one and several batch sizes, and each version branch; so are the check of what the
library reports it built, the opt_batch check of the config, and the skip where TensorRT is
missing. export() and load() run end to end on the CPU against a stand-in for the library (see
"the glue" below). tests/test_gpu.py runs the real library where it is installed.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest

from inferbench.backends import torch_tensorrt_backend as trt
from inferbench.backends.base import LoadContext, Skip
from inferbench.errors import UserError
from inferbench.sweep import config as cfgmod
from inferbench.sweep.config import Cell

PRECISIONS = ["fp32", "fp16", "bf16"]
# (version, use_explicit_typing is an option, save keeps a dynamic batch)
VERSIONS = [
    ("2.10.0", True, False),
    ("2.11.0a0", True, False),  # NGC 26.02 and 26.03
    ("2.11.0a0+nv26.03", True, False),
    ("2.11.0", True, True),
    ("2.12.0a0", True, True),  # NGC 26.04
    ("2.12.1", True, True),
    ("2.13.0", False, True),  # strong typing always; the option is gone
    ("3.0.0rc1", False, True),
]


def plan(precision="fp16", batch_sizes=(32, 40, 64), version="2.12.0a0", **options):
    return trt.plan_export(precision, 224, batch_sizes, trt.parse_options(options), trt.library_features(version))


@pytest.mark.parametrize("text,want", [("2.11.0a0", (2, 11, True)), ("2.11.0", (2, 11, False)),
                                       ("2.11.0a0+eb65b36", (2, 11, True)), ("2.12.0.dev20260401", (2, 12, True)),
                                       ("2.12.1+cu130", (2, 12, False)), ("2.13", (2, 13, False)),
                                       ("2.12.0rc2", (2, 12, True))])
def test_parse_version(text, want):
    assert trt.parse_version(text) == want


@pytest.mark.parametrize("version,explicit_option,dynamic_save", VERSIONS)
def test_library_features_per_version(version, explicit_option, dynamic_save):
    f = trt.library_features(version)
    assert (f.explicit_typing_option, f.dynamic_batch_save) == (explicit_option, dynamic_save)


@pytest.mark.parametrize("version", ["2.9.0", "1.4.0", "not-a-version"])
def test_unsupported_library_version_is_a_skip_naming_it(version):
    with pytest.raises(Skip, match=version):
        trt.library_features(version)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("version,explicit_option,dynamic_save", VERSIONS)
def test_plan_one_batch_size(precision, version, explicit_option, dynamic_save):
    p = plan(precision, [48], version)
    assert p.min_shape == p.opt_shape == p.max_shape == (48, 3, 224, 224)
    assert p.batch_sizes == (48,) and p.batch_range == [48, 48, 48]
    # strong typing: the model's dtype sets the precision, never enabled_precisions
    assert "enabled_precisions" not in p.compile_kwargs
    assert p.compile_kwargs.get("use_explicit_typing") is (True if explicit_option else None)
    assert p.compile_kwargs["disable_tf32"] is True
    # one batch size needs no dynamic save: every version can save it
    assert p.save_with_input is dynamic_save and p.save_extra_files is dynamic_save


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("version,explicit_option,dynamic_save", VERSIONS)
def test_plan_several_batch_sizes(precision, version, explicit_option, dynamic_save):
    if not dynamic_save:
        with pytest.raises(Skip) as info:
            plan(precision, [64, 32, 48], version)
        message = str(info.value)
        assert version in message and "[32, 48, 64]" in message and "docker/Dockerfile" in message
        return
    p = plan(precision, [64, 32, 48, 32], version)
    assert (p.min_shape, p.opt_shape, p.max_shape) == ((32, 3, 224, 224), (64, 3, 224, 224), (64, 3, 224, 224))
    assert p.batch_sizes == (32, 48, 64), "every batch size is run through the saved program"
    assert p.save_with_input and p.save_extra_files
    assert p.precision == precision and "enabled_precisions" not in p.compile_kwargs
    assert p.compile_kwargs == dict({"min_block_size": 5, "workspace_size": 0, "disable_tf32": True},
                                    **({"use_explicit_typing": True} if explicit_option else {}))


def test_plan_options():
    p = plan("fp32", [32, 64], opt_batch=40, tf32=True, optimization_level=3, workspace_size=1 << 30,
             min_block_size=1)
    assert p.opt_shape == (40, 3, 224, 224) and p.batch_range == [32, 40, 64]
    assert p.compile_kwargs == {"min_block_size": 1, "workspace_size": 1 << 30, "disable_tf32": False,
                                "optimization_level": 3, "use_explicit_typing": True}
    assert "optimization_level" not in plan("fp32").compile_kwargs


def test_plan_refuses_an_opt_batch_outside_the_batch_sizes():
    with pytest.raises(UserError, match="'opt_batch' is 16, outside the cuda batch sizes 32 to 64"):
        plan("fp16", [32, 64], opt_batch=16)
    with pytest.raises(UserError, match="batch sizes"):
        plan("fp16", [])


# ----------------------------------------------------------------------------- the materialised call


class FakeInput:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def test_library_inputs_dynamic_save_gets_the_input():
    torch = pytest.importorskip("torch")
    fake = types.SimpleNamespace(Input=FakeInput)
    compile_input, save_input = trt.library_inputs(plan("bf16", [32, 64], opt_batch=48), fake, "cpu")
    assert save_input is compile_input
    assert compile_input.kwargs == {"min_shape": (32, 3, 224, 224), "opt_shape": (48, 3, 224, 224),
                                    "max_shape": (64, 3, 224, 224), "dtype": torch.bfloat16}


def test_library_inputs_fixed_save_gets_an_example_tensor():
    torch = pytest.importorskip("torch")
    fake = types.SimpleNamespace(Input=FakeInput)
    compile_input, save_input = trt.library_inputs(plan("fp16", [8], "2.11.0a0"), fake, "cpu")
    assert compile_input.kwargs["dtype"] is torch.float16
    assert isinstance(save_input, torch.Tensor) and save_input.shape == (8, 3, 224, 224)
    assert save_input.dtype is torch.float16


# ----------------------------------------------------------------------------- the engine report


def report(**change):
    return dict({"trt_engines": 1, "use_explicit_typing": [True], "disable_tf32": [True], "output_dtype": "float16"},
                **change)


def test_engine_report_read_from_the_compiled_module():
    torch = pytest.importorskip("torch")

    class TorchTensorRTModule(torch.nn.Module):  # named as the library's engine module
        def __init__(self, **settings):
            super().__init__()
            self.settings = types.SimpleNamespace(**settings)

    compiled = torch.nn.Sequential(TorchTensorRTModule(use_explicit_typing=True, disable_tf32=True),
                                   torch.nn.ReLU(), TorchTensorRTModule(use_explicit_typing=True, disable_tf32=True))
    got = trt.engine_report(compiled, torch.zeros(2, 10, dtype=torch.float16))
    assert got == report(trt_engines=2)
    # 2.13 has no use_explicit_typing setting: reported as unknown, not as weak typing
    compiled = torch.nn.Sequential(TorchTensorRTModule(disable_tf32=False))
    assert trt.engine_report(compiled, torch.zeros(1)) == report(use_explicit_typing=None, disable_tf32=[False],
                                                                output_dtype="float32")


def test_engine_report_accepted_when_it_is_what_was_asked():
    trt.check_engine_report(report(), plan("fp16"))
    trt.check_engine_report(report(output_dtype="float32"), plan("fp32"))
    trt.check_engine_report(report(output_dtype="bfloat16", use_explicit_typing=None), plan("bf16", version="2.13.0"))
    trt.check_engine_report(report(output_dtype="float32", disable_tf32=[False]), plan("fp32", tf32=True))


@pytest.mark.parametrize("change,precision,needle", [
    ({"trt_engines": 0}, "fp16", "no TensorRT engine"),
    ({"use_explicit_typing": [False]}, "fp16", "not strong typing"),
    ({"disable_tf32": [False], "output_dtype": "float32"}, "fp32", "disable_tf32=[False], asked True"),
    ({"output_dtype": "float32"}, "fp16", "float32 logits, the cell is fp16"),
    ({"output_dtype": "float16"}, "bf16", "float16 logits, the cell is bf16"),
])
def test_engine_report_refused_when_it_is_not(change, precision, needle):
    with pytest.raises(RuntimeError) as info:
        trt.check_engine_report(report(**change), plan(precision))
    message = str(info.value)
    assert message.startswith("Torch-TensorRT did not build the engine asked for: ") and needle in message, message


# ----------------------------------------------------------------------------- options and the config


@pytest.mark.parametrize("raw,needle", [({"opt_batch": 0}, "'opt_batch' must be a batch size"),
                                        ({"optimization_level": 6}, "'optimization_level' must be 0 to 5"),
                                        ({"min_block_size": 0}, "'min_block_size'"),
                                        ({"workspace_size": -1}, "'workspace_size'"),
                                        ({"tf32": "yes"}, "'tf32' must be bool")])
def test_bad_options(raw, needle):
    with pytest.raises(UserError, match=needle):
        trt.parse_options(raw)


def sweep(**change):
    config = {"model": "resnet18", "resolutions": [64], "batch_sizes": [32, 48, 64], "precisions": ["fp16"],
              "devices": ["cuda"], "backends": {"torch_tensorrt": {"opt_batch": 48}}}
    config.update(change)
    return config


def test_config_accepts_opt_batch_inside_the_batch_sizes():
    assert len(cfgmod.cells(cfgmod.load_config(sweep()))) == 3


def test_config_names_opt_batch_outside_the_batch_sizes():
    with pytest.raises(UserError) as info:
        cfgmod.load_config(sweep(backends={"torch_tensorrt": {"opt_batch": 128}}))
    message = str(info.value)
    for needle in ("backends.torch_tensorrt", "'opt_batch' is 128", "32 to 64", "between 32 and 64"):
        assert needle in message, message


def test_config_checks_opt_batch_against_the_cuda_batch_sizes():
    # the engine is built for the cuda cells' batch sizes, after per_device restrictions
    config = sweep(devices=["cuda", "cpu"], batch_sizes=[8, 32, 64],
                   per_device={"cuda": {"batch_sizes": [32, 64]}}, backends={"torch_tensorrt": {"opt_batch": 8}})
    with pytest.raises(UserError, match="outside the cuda batch sizes 32 to 64"):
        cfgmod.load_config(config)
    # no cuda cells of this backend: there is no engine to tune
    config["per_device"]["cuda"] = {"backends": ["pytorch"]}
    config["backends"]["pytorch"] = {}
    cfgmod.load_config(config)


# ----------------------------------------------------------------------------- where TensorRT is missing


@pytest.fixture
def no_tensorrt(monkeypatch):
    # None in sys.modules makes `import tensorrt` raise ImportError, installed or not
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_missing_tensorrt_skips_the_cell_with_the_reason(no_tensorrt):
    cell = Cell(model="resnet18", backend="torch_tensorrt", device="cuda", precision="fp16", resolution=64,
                batch_size=32)
    ctx = LoadContext(cell=cell, options=trt.parse_options({}), artifact_path="engine.ep", threads=1,
                      build_model=lambda: None)
    with pytest.raises(Skip) as info:
        trt.load(ctx)
    message = str(info.value)
    assert "torch_tensorrt/TensorRT is not available here" in message and "tensorrt" in message.split("(")[1]
    assert "docker/Dockerfile" in message


def test_missing_tensorrt_skips_the_export_with_the_reason(no_tensorrt, monkeypatch):
    from inferbench.process import devices
    from inferbench.sweep.spec import ExportSpec

    monkeypatch.setattr(devices, "require_device", lambda device: None)  # as on a GPU machine
    spec = ExportSpec(model="resnet18", weights=None, seed=0, backend="torch_tensorrt",
                      key={"device": "cuda", "precision": "fp16", "resolution": 64}, batch_sizes=[32, 64])
    with pytest.raises(Skip, match=r"torch_tensorrt/TensorRT is not available here .*docker/Dockerfile"):
        trt.export(spec, trt.parse_options({}), "never-written.ep")


# ----------------------------------------------------------------------------- the glue, with a stand-in library
#
# export() and load() run on the CPU against a stand-in for torch_tensorrt: compile() returns the
# model inside an engine module named as the library's, save() exports it with torch.export (with
# the dynamic batch of the Input, as from 2.11.0, or fixed to the example's batch, as before), and
# load() is torch.export.load. What is tested is the backend's side: the arguments it passes, the
# engine report it writes into the artifact and reads back, and its run of every batch size.


class TorchTensorRTModule:  # the name the engine report looks for; made an nn.Module below
    pass


def fake_module(name):
    # with a spec, as an imported module has: torch asks importlib.util.find_spec about some names
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return module


def stand_in_library(version: str, keeps_batch: bool = True):
    torch = pytest.importorskip("torch")

    class Engine(torch.nn.Module):
        def __init__(self, model, settings):
            super().__init__()
            self.model, self.settings = model, settings

        def forward(self, x):
            return self.model(x)

    Engine.__name__ = TorchTensorRTModule.__name__

    class Compiled(torch.nn.Module):
        def __init__(self, engine):
            super().__init__()
            self.engine = engine

        def forward(self, x):
            return self.engine(x)

    lib = fake_module("torch_tensorrt")
    lib.__version__ = version
    lib.calls = []

    class Input:
        def __init__(self, *, min_shape, opt_shape, max_shape, dtype):
            self.min_shape, self.opt_shape, self.max_shape, self.dtype = min_shape, opt_shape, max_shape, dtype

    def compile(model, *, ir, arg_inputs, **kwargs):
        lib.calls.append(("compile", ir, arg_inputs, kwargs))
        settings = types.SimpleNamespace(disable_tf32=kwargs["disable_tf32"],
                                         use_explicit_typing=kwargs.get("use_explicit_typing", True))
        return Compiled(Engine(model, settings))

    def save(module, path, *, output_format, arg_inputs, **kwargs):
        lib.calls.append(("save", output_format, arg_inputs, kwargs))
        (given,) = arg_inputs
        if isinstance(given, Input):
            example = torch.randn(given.opt_shape, dtype=given.dtype)
            batch = torch.export.Dim("batch", min=given.min_shape[0], max=given.max_shape[0])
            dynamic = ({0: batch},) if keeps_batch else None
        else:
            example, dynamic = given, None
        program = torch.export.export(module, (example,), dynamic_shapes=dynamic)
        torch.export.save(program, path, extra_files=kwargs.get("extra_files"))

    def load(path, **kwargs):
        lib.calls.append(("load", path, kwargs))
        return torch.export.load(path, **kwargs)

    lib.Input, lib.compile, lib.save, lib.load = Input, compile, save, load
    return lib


def small_net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10)).eval()


@pytest.fixture
def on_the_cpu(monkeypatch):
    from inferbench.process import devices

    monkeypatch.setattr(devices, "require_device", lambda device: None)
    monkeypatch.setattr(trt, "DEVICE", "cpu")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_module("tensorrt"))

    def use(lib):
        monkeypatch.setitem(sys.modules, "torch_tensorrt", lib)
        return lib

    return use


def export_spec(precision, batch_sizes):
    return types.SimpleNamespace(precision=precision, resolution=8, batch_sizes=batch_sizes, build_model=small_net,
                                 in_chans=3)


def load_ctx(path, precision, batch):
    cell = Cell(model="resnet18", backend="torch_tensorrt", device="cuda", precision=precision, resolution=8,
                batch_size=batch)
    return LoadContext(cell=cell, options=trt.parse_options({}), artifact_path=str(path), threads=1,
                       build_model=small_net)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_export_and_load_one_engine_for_every_batch_size(precision, on_the_cpu, tmp_path):
    torch = pytest.importorskip("torch")
    lib = on_the_cpu(stand_in_library("2.12.0a0"))
    path = tmp_path / "engine.ep"
    facts = trt.export(export_spec(precision, [4, 2, 3]), trt.parse_options({"opt_batch": 3}), str(path))
    (_, ir, (compile_input,), compile_kwargs), (_, fmt, (save_input,), save_kwargs) = lib.calls[:2]
    assert ir == "dynamo" and fmt == "exported_program"
    assert save_input is compile_input, "save() gets the Input, so the batch stays dynamic"
    assert (compile_input.min_shape, compile_input.opt_shape, compile_input.max_shape) == (
        (2, 3, 8, 8), (3, 3, 8, 8), (4, 3, 8, 8))
    assert compile_input.dtype is trt.torch_dtype(precision)
    assert compile_kwargs == {"min_block_size": 5, "workspace_size": 0, "disable_tf32": True,
                              "use_explicit_typing": True}
    want = {"trt_engines": 1, "use_explicit_typing": [True], "disable_tf32": [True],
            "output_dtype": {"fp32": "float32", "bf16": "bfloat16"}[precision]}
    assert facts["engine"] == want and facts["batch_sizes_checked"] == [2, 3, 4]
    assert facts["batch_range"] == [2, 3, 4] and facts["torch_tensorrt_version"] == "2.12.0a0"
    assert "extra_files" in save_kwargs
    runner = trt.load(load_ctx(path, precision, 3))
    assert runner.facts == {"torch_tensorrt_version": "2.12.0a0", "engine": want}
    out = runner.run(torch.randn(3, 3, 8, 8, dtype=trt.torch_dtype(precision)))
    assert out.shape == (3, 10) and out.dtype is trt.torch_dtype(precision)


def test_export_fails_when_the_saved_program_is_fixed_to_one_batch(on_the_cpu, tmp_path):
    # a save that drops the dynamic batch, as the 2.11.0a0 builds do with tensors
    on_the_cpu(stand_in_library("2.12.0a0", keeps_batch=False))
    with pytest.raises(RuntimeError, match=r"does not run batch size 2 of \[2, 4\]"):
        trt.export(export_spec("fp32", [2, 4]), trt.parse_options({}), str(tmp_path / "engine.ep"))


def test_export_with_an_older_library_and_one_batch_size(on_the_cpu, tmp_path):
    torch = pytest.importorskip("torch")
    lib = on_the_cpu(stand_in_library("2.11.0a0"))
    path = tmp_path / "engine.ep"
    facts = trt.export(export_spec("fp32", [4]), trt.parse_options({}), str(path))
    (_, _, (save_input,), save_kwargs) = lib.calls[1]
    assert isinstance(save_input, torch.Tensor) and save_input.shape == (4, 3, 8, 8)
    assert save_kwargs == {}, "this save() takes no extra_files"
    assert facts["batch_sizes_checked"] == [4]
    runner = trt.load(load_ctx(path, "fp32", 4))
    assert lib.calls[-1][2] == {} and runner.facts == {"torch_tensorrt_version": "2.11.0a0"}
    assert runner.run(torch.randn(4, 3, 8, 8)).shape == (4, 10)
