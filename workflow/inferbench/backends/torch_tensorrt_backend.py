"""Torch-TensorRT: an engine compiled ahead of time by the export rule, loaded by the cells.

One artifact per device, precision and resolution: an ExportedProgram holding a TensorRT engine
built for the sweep's batch range (min, opt, max) and saved with a symbolic batch dimension, so
that every batch size of the range runs from the same file. The export loads the saved file
back and runs every batch size of the sweep through it before it reports success.

What the library does differs between versions; `library_features` and `plan_export` hold
every such difference as plain data, so they are tested without TensorRT. They follow
Torch-TensorRT's own sources (py/torch_tensorrt/ of releases 2.10.0, 2.11.0, 2.12.1, 2.13.0):
  * From 2.10, strong typing (use_explicit_typing) is on by default (dynamo/_defaults.py), and
    dynamo/_compiler.py compile() raises an AssertionError when enabled_precisions holds anything
    but fp32. The engine's precision is then the model's own dtype and the Input dtype, so
    enabled_precisions is never passed. 2.13 removes both options: strong typing always.
  * disable_tf32 defaults to False there: an fp32 engine would compute in TF32.
  * torch_tensorrt.save retraces the compiled module with torch.export.export. Up to 2.11.0a0
    (the NGC 26.02 and 26.03 builds; 2.10.0 read) it takes only tensors and passes no dynamic
    shapes, so the saved program is guarded to the example's batch size. From 2.11.0 it takes
    torch_tensorrt.Input objects and derives the dynamic batch dimension from their min and max
    (get_dynamic_shapes_args in dynamo/_tracer.py), and it stores extra_files.
TensorRT is in the NVIDIA PyTorch container image (docker/Dockerfile); where it is missing, the
export and the cells are recorded as skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from inferbench.backends.base import Runner, Skip, parse_dataclass, torch_dtype
from inferbench.errors import UserError

ARTIFACT_SUFFIX = ".ep"
NEEDS_BATCH_RANGE = True  # the engine is built for the sweep's batch range
REQUIRES = ("tensorrt", "torch_tensorrt")
REQUIRES_HINT = "it runs in the container image built from docker/Dockerfile"
OLDEST_VERSION = (2, 10)  # the oldest release whose sources this module follows
REPORT_FILE = "inferbench_engine.json"  # the engine report, saved inside the artifact
DEVICE = "cuda"  # TensorRT engines run on NVIDIA GPUs only (tests of the glue point it elsewhere)


@dataclass
class Options:
    optimization_level: int | None = None  # TensorRT builder level 0-5; None = its default
    workspace_size: int = 0  # bytes; 0 = TensorRT's default
    min_block_size: int = 5
    opt_batch: int | None = None  # the batch TensorRT tunes for; None = the sweep's largest
    tf32: bool = False  # fp32 engines compute in real fp32 unless this is set

    def check(self):
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise UserError(f"option 'optimization_level' must be 0 to 5 or null, got {self.optimization_level}")
        if self.workspace_size < 0:
            raise UserError(f"option 'workspace_size' must be 0 (TensorRT's default) or more bytes, "
                            f"got {self.workspace_size}")
        if self.min_block_size < 1:
            raise UserError(f"option 'min_block_size' must be 1 or more, got {self.min_block_size}")
        if self.opt_batch is not None and self.opt_batch < 1:
            raise UserError(f"option 'opt_batch' must be a batch size (1 or more) or null, got {self.opt_batch}")


def parse_options(raw):
    return parse_dataclass(Options, raw)


def opt_batch_problem(opt_batch: int | None, batch_sizes) -> str | None:
    """Why `opt_batch` cannot tune an engine built for `batch_sizes`, or None.
    TensorRT needs min <= opt <= max in an optimisation profile."""
    if opt_batch is None or not batch_sizes:
        return None
    lo, hi = min(batch_sizes), max(batch_sizes)
    if lo <= opt_batch <= hi:
        return None
    return (f"option 'opt_batch' is {opt_batch}, outside the cuda batch sizes {lo} to {hi} that the engine "
            f"is built for; set it between {lo} and {hi}, or remove it to tune for the largest ({hi})")


def check_sweep(options, axis):
    problem = opt_batch_problem(options.opt_batch, axis("cuda", "batch_sizes"))
    if problem:
        raise UserError(problem)


def artifact_key(cell, options):
    # One engine per device, precision and resolution, valid for the sweep's whole batch range.
    return {"device": cell.device, "precision": cell.precision, "resolution": cell.resolution}


def unsupported(cell, options):
    if cell.device != "cuda":
        return "TensorRT runs on NVIDIA GPUs only"
    return None


# ----------------------------------------------------------------------------- version branches


def parse_version(text: str) -> tuple[int, int, bool]:
    """'2.11.0a0+nv26.02' -> (2, 11, True): major, minor, and whether it is a pre-release."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.\d+)*(\S*)", str(text))
    if not match:
        raise Skip(f"cannot read Torch-TensorRT's version {text!r}")
    local = match.group(3).split("+", 1)[0]
    return int(match.group(1)), int(match.group(2)), bool(re.match(r"\.?(a|b|rc|dev)", local))


@dataclass(frozen=True)
class LibraryFeatures:
    version: str
    explicit_typing_option: bool  # compile() has use_explicit_typing (2.10 to 2.12)
    dynamic_batch_save: bool  # save() takes Input objects, keeps their batch range, and extra_files


def library_features(version: str) -> LibraryFeatures:
    major, minor, pre = parse_version(version)
    if (major, minor) < OLDEST_VERSION:
        raise Skip(f"Torch-TensorRT {version} is older than {'.'.join(map(str, OLDEST_VERSION))}, the oldest "
                   "release this backend follows; use the container image built from docker/Dockerfile")
    return LibraryFeatures(version=version, explicit_typing_option=(major, minor) < (2, 13),
                           # 2.11.0 final has the fixed save; the 2.11.0a0 builds do not
                           dynamic_batch_save=(major, minor) > (2, 11) or ((major, minor) == (2, 11) and not pre))


@dataclass(frozen=True)
class ExportPlan:
    """Everything the export passes to Torch-TensorRT, as plain data."""

    precision: str
    min_shape: tuple
    opt_shape: tuple
    max_shape: tuple
    compile_kwargs: dict  # besides the module, ir="dynamo" and arg_inputs
    save_with_input: bool  # save() gets the Input (dynamic batch) rather than an example tensor
    save_extra_files: bool  # the engine report goes inside the artifact
    batch_sizes: tuple  # every one is run through the saved program before the export succeeds

    @property
    def batch_range(self) -> list[int]:
        return [self.min_shape[0], self.opt_shape[0], self.max_shape[0]]


def plan_export(precision: str, resolution: int, batch_sizes, options: Options,
                features: LibraryFeatures, in_chans: int = 3) -> ExportPlan:
    batch_sizes = tuple(sorted(set(batch_sizes)))
    if not batch_sizes:
        raise UserError("the Torch-TensorRT export needs the sweep's cuda batch sizes; none were given")
    problem = opt_batch_problem(options.opt_batch, batch_sizes)
    if problem:
        raise UserError(problem)
    if len(batch_sizes) > 1 and not features.dynamic_batch_save:
        raise Skip(f"Torch-TensorRT {features.version} saves a program fixed to one batch size (its save() "
                   f"takes no Input objects before 2.11.0), so one engine cannot serve batch sizes "
                   f"{list(batch_sizes)}; use the container image built from docker/Dockerfile, or sweep one "
                   "batch size")
    lo, hi = batch_sizes[0], batch_sizes[-1]
    opt = options.opt_batch or hi
    shape = lambda b: (b, in_chans, resolution, resolution)  # noqa: E731
    compile_kwargs = {"min_block_size": options.min_block_size, "workspace_size": options.workspace_size,
                      "disable_tf32": not options.tf32}
    if options.optimization_level is not None:
        compile_kwargs["optimization_level"] = options.optimization_level
    if features.explicit_typing_option:
        # Already the default; said here so that no other default can turn fp16 into weak typing.
        compile_kwargs["use_explicit_typing"] = True
    return ExportPlan(precision=precision, min_shape=shape(lo), opt_shape=shape(opt), max_shape=shape(hi),
                      compile_kwargs=compile_kwargs, save_with_input=features.dynamic_batch_save,
                      save_extra_files=features.dynamic_batch_save, batch_sizes=batch_sizes)


# ----------------------------------------------------------------------------- the engine report


def engine_report(compiled, output) -> dict:
    """What Torch-TensorRT says it built: its engine modules and their compilation settings,
    and the dtype of the logits the compiled module returned."""
    engines = [m for _, m in compiled.named_modules() if type(m).__name__.endswith("TorchTensorRTModule")]
    settings = [getattr(m, "settings", None) for m in engines]

    def values(name):
        found = {getattr(s, name) for s in settings if s is not None and hasattr(s, name)}
        return sorted(found) if found else None

    return {"trt_engines": len(engines), "use_explicit_typing": values("use_explicit_typing"),
            "disable_tf32": values("disable_tf32"), "output_dtype": str(output.dtype).replace("torch.", "")}


def check_engine_report(report: dict, plan: ExportPlan) -> None:
    """Refuse an engine that is not what the cell claims to measure."""
    want_dtype = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[plan.precision]
    problems = []
    if report["trt_engines"] == 0:
        problems.append("the compiled module holds no TensorRT engine (every operator ran in PyTorch; "
                        "a smaller min_block_size may help)")
    if plan.compile_kwargs.get("use_explicit_typing") and report["use_explicit_typing"] not in (None, [True]):
        problems.append(f"the engines report use_explicit_typing={report['use_explicit_typing']}, not strong typing")
    want_tf32 = plan.compile_kwargs["disable_tf32"]
    if report["disable_tf32"] not in (None, [want_tf32]):
        problems.append(f"the engines report disable_tf32={report['disable_tf32']}, asked {want_tf32}")
    if report["output_dtype"] != want_dtype:
        problems.append(f"the engine returns {report['output_dtype']} logits, the cell is {plan.precision}")
    if problems:
        raise RuntimeError("Torch-TensorRT did not build the engine asked for: " + "; ".join(problems))


# ----------------------------------------------------------------------------- the library calls


def _import():
    try:
        import tensorrt  # noqa: F401
        import torch_tensorrt
    except Exception as exc:  # ImportError, or a broken install raising at import
        raise Skip(f"torch_tensorrt/TensorRT is not available here ({type(exc).__name__}: {exc}); "
                   "it runs in the container image built from docker/Dockerfile") from None
    return torch_tensorrt


def library_inputs(plan: ExportPlan, torch_tensorrt, device: str):
    """(the Input for compile(), what save() gets as arg_inputs[0])."""
    import torch

    dtype = torch_dtype(plan.precision)
    spec = torch_tensorrt.Input(min_shape=plan.min_shape, opt_shape=plan.opt_shape, max_shape=plan.max_shape,
                                dtype=dtype)
    if plan.save_with_input:
        return spec, spec
    return spec, torch.randn(plan.opt_shape, device=device, dtype=dtype)


def export(spec, options, out_path) -> dict:
    from inferbench.process.devices import require_device

    require_device(DEVICE)
    torch_tensorrt = _import()
    import torch

    plan = plan_export(spec.precision, spec.resolution, spec.batch_sizes, options,
                       library_features(torch_tensorrt.__version__), in_chans=spec.in_chans)
    dtype = torch_dtype(spec.precision)
    # Strong typing: the model's own dtype and the Input dtype set the engine's precision.
    model = spec.build_model().to(device=DEVICE, dtype=dtype)
    compile_input, save_input = library_inputs(plan, torch_tensorrt, DEVICE)
    trt_module = torch_tensorrt.compile(model, ir="dynamo", arg_inputs=[compile_input], **plan.compile_kwargs)
    with torch.inference_mode():
        output = trt_module(torch.randn(plan.opt_shape, device=DEVICE, dtype=dtype))
    report = engine_report(trt_module, output[0] if isinstance(output, (tuple, list)) else output)
    check_engine_report(report, plan)
    extra = {"extra_files": {REPORT_FILE: json.dumps(report, sort_keys=True)}} if plan.save_extra_files else {}
    torch_tensorrt.save(trt_module, out_path, output_format="exported_program", arg_inputs=[save_input], **extra)
    del trt_module, model
    _run_every_batch(torch_tensorrt, out_path, plan)
    return {"batch_range": plan.batch_range, "torch_tensorrt_version": torch_tensorrt.__version__,
            "engine": report, "batch_sizes_checked": list(plan.batch_sizes)}


def _run_every_batch(torch_tensorrt, path: str, plan: ExportPlan) -> None:
    """Load the saved program as a cell will and run each batch size of the sweep through it:
    a program guarded to one batch size fails here, at export, not in every other cell."""
    import torch

    module = torch_tensorrt.load(path).module()
    for batch in plan.batch_sizes:
        x = torch.randn((batch, *plan.opt_shape[1:]), device=DEVICE, dtype=torch_dtype(plan.precision))
        try:
            with torch.inference_mode():
                out = module(x)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeError(f"the saved Torch-TensorRT program does not run batch size {batch} of "
                               f"{list(plan.batch_sizes)}: {first}") from exc
        out = out[0] if isinstance(out, (tuple, list)) else out
        if out.shape[0] != batch:
            raise RuntimeError(f"the saved Torch-TensorRT program returned {out.shape[0]} rows for batch size {batch}")


def load(ctx) -> Runner:
    torch_tensorrt = _import()
    if ctx.artifact_path is None:
        raise Skip("no Torch-TensorRT engine was exported")
    import torch

    features = library_features(torch_tensorrt.__version__)
    extra = {REPORT_FILE: ""}
    program = (torch_tensorrt.load(ctx.artifact_path, extra_files=extra) if features.dynamic_batch_save
               else torch_tensorrt.load(ctx.artifact_path))
    module = program.module()
    facts = {"torch_tensorrt_version": torch_tensorrt.__version__}
    if extra[REPORT_FILE]:
        facts["engine"] = json.loads(extra[REPORT_FILE])

    def run(x):
        with torch.inference_mode():
            out = module(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    return Runner(run=run, input_dtype=torch_dtype(ctx.cell.precision), facts=facts)
