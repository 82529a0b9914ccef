"""Load, default and validate a sweep configuration (its cells: inferbench.sweep.grid).

Validation happens before any job starts (the Snakefile calls `load_config`), and
every problem is reported as one `UserError` naming the key, what was found and what
is allowed.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from inferbench.errors import UserError
# The grid lives in a module of its own that imports nothing: the cell jobs need it, and must not
# rerun when validation changes. Imported here too for the callers that validate and expand.
from inferbench.sweep.grid import AXES, Cell, axis_for, backend_of, cells, io_modes_for, measurement_for, options_of  # noqa: F401

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


def load_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _fill_defaults(instance: Any, schema: dict, root: dict) -> Any:
    """Fill `default` values of object properties, following local $refs."""
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = root["$defs"][name]
    if not isinstance(instance, dict) or schema.get("type") not in ("object", None):
        return instance
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            instance[key] = _fill_defaults(instance[key], sub, root)
    return instance


def _path_of(error) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (("." if parts else "") + str(p)))
    return "".join(parts) or "(top level)"


def _describe(error) -> str:
    """Turn one jsonschema error into a sentence a person can act on."""
    key = _path_of(error)
    validator = error.validator
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"unknown key(s) {', '.join(map(repr, extra))} under {key}; allowed keys: {', '.join(allowed)}"
    if validator == "required":
        return f"{key}: {error.message}"
    if validator == "enum":
        return f"{key}: {error.instance!r} is not allowed; choose one of {', '.join(map(str, error.validator_value))}"
    if validator == "type":
        want = error.validator_value
        return f"{key}: expected {want if isinstance(want, str) else ' or '.join(want)}, got {type(error.instance).__name__} {error.instance!r}"
    if validator == "minItems":
        return f"{key}: the list is empty; give at least {error.validator_value} value(s)"
    if validator in ("minimum", "exclusiveMinimum", "maximum"):
        word = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<="}[validator]
        return f"{key}: {error.instance!r} is out of range; it must be {word} {error.validator_value}"
    if validator == "uniqueItems":
        return f"{key}: values must not repeat ({error.instance!r})"
    if validator == "minProperties":
        return f"{key}: give at least one entry"
    if validator == "pattern" and "propertyNames" in error.relative_schema_path:
        return (f"{key}: the name {error.instance!r} may hold only lower-case letters, digits and '_' (it becomes "
                "part of file paths and of every row); rename it, e.g. pytorch_cudagraphs")
    return f"{key}: {error.message}"


def validate_structure(config: dict) -> dict:
    """Defaults + JSON-schema validation. Returns a new, completed config."""
    import jsonschema

    if not isinstance(config, dict):
        raise UserError(f"the config must be a mapping of keys to values, got {type(config).__name__}")
    schema = load_schema()
    config = _fill_defaults(copy.deepcopy(config), schema, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        lines = [_describe(e) for e in errors]
        raise UserError("invalid config:\n  - " + "\n  - ".join(dict.fromkeys(lines)))
    return config


def _variant_problem(config: dict, name: str, known) -> str | None:
    """What is wrong with how the entry `name` names its backend, or None."""
    block = config["backends"][name] or {}
    if "backend" not in block:
        if name in known:
            return None
        return (f"backends.{name}: unknown backend; known backends: {', '.join(known)}. For a variant of one "
                f"of them under this name, say which it uses: {name}: {{backend: pytorch, ...}}")
    impl = block["backend"]
    if not isinstance(impl, str) or impl not in known:
        other = (config["backends"].get(impl) or {}) if isinstance(impl, str) else {}
        if isinstance(impl, str) and impl in config["backends"] and isinstance(other, dict):
            return (f"backends.{name}.backend: {impl!r} is a variant (of {other.get('backend', impl)}), not a "
                    f"backend; a variant names the backend itself: backend: {other.get('backend', impl)}")
        hint = ("; torch.compile's own backend argument is the torch_compile option `compile_backend`"
                if "compile" in name or impl in ("inductor", "eager", "aot_eager", "cudagraphs") else "")
        return f"backends.{name}.backend: unknown backend {impl!r}; known backends: {', '.join(known)}{hint}"
    if name in known and impl != name:
        return (f"backends.{name}: the name of the backend {name} cannot be a variant of {impl}; give the variant "
                f"a name of its own (e.g. {impl}_{name})")
    return None


def validate_semantics(config: dict) -> None:
    """Checks a JSON schema cannot express: known backends and their options (alone and against
    the grid), subsets. (The model is checked before, by load_config: its default resolution may
    fill the grid.)"""
    from inferbench.backends import KNOWN_BACKENDS, load_backend

    problems = []
    for name in config["backends"]:
        problem = _variant_problem(config, name, KNOWN_BACKENDS)
        if problem:
            problems.append(problem)
            continue
        try:
            backend = load_backend(backend_of(config, name))
            parsed = backend.parse_options(options_of(config, name))
            if backend.check_sweep:
                backend.check_sweep(parsed, functools.partial(backend_axis, config, name))
        except UserError as exc:
            problems.append(f"backends.{name}: {exc}")
    for device, restriction in config.get("per_device", {}).items():
        if device not in config["devices"]:
            problems.append(f"per_device.{device}: '{device}' is not in devices {config['devices']}")
        for axis in AXES:
            if axis not in restriction:
                continue
            top = list(config[axis]) if axis != "backends" else list(config["backends"])
            stray = [v for v in restriction[axis] if v not in top]
            if stray:
                problems.append(f"per_device.{device}.{axis}: {stray} not in the top-level {axis} {top}")
    if problems:
        raise UserError("invalid config:\n  - " + "\n  - ".join(problems))


def backend_axis(config: dict, backend: str, device: str, axis: str) -> list:
    """A grid axis of the cells `backend` has on `device`; [] where it has none."""
    if device not in config["devices"] or backend not in axis_for(config, device, "backends"):
        return []
    return axis_for(config, device, axis)


def check_model(model: str, weights: str | None) -> None:
    """The model and its weights, as its source checks them (inferbench.models.registry)."""
    from inferbench.models import registry as models

    models.check(model, weights)


def fill_resolutions(config: dict) -> None:
    """No `resolutions`: the one the model says it was made for (inferbench.models.base.ModelInput)."""
    if "resolutions" in config:
        return
    from inferbench.models import registry as models

    resolution = models.model_input(config["model"]).resolution
    if resolution is None:
        raise UserError(f"resolutions: missing, and model {config['model']!r} names no default resolution; "
                        "give the sweep's resolutions, e.g. resolutions: [224]")
    config["resolutions"] = [resolution]


# A results_dir is written into the jobs' shell commands (quoted there too) and into
# Snakemake's file patterns, where braces are wildcards: only plain path characters pass.
RESULTS_DIR_CHARS = re.compile(r"[\w /.+,=@%:-]+")


def check_results_dir(value: str) -> None:
    """A path of plain characters: no shell metacharacters, quotes, braces or control characters."""
    if not value.strip():
        raise UserError("results_dir: the path is empty; give a folder, e.g. results")
    bad = sorted({ch for ch in value if not RESULTS_DIR_CHARS.fullmatch(ch)})
    if bad:
        shown = " ".join(repr(ch) for ch in bad)
        raise UserError(
            f"results_dir: {value!r} is not a plain path: it contains {shown}. Use only letters, digits, "
            "spaces and / . _ - + , = @ % : (no shell metacharacters, quotes, braces, wildcards or line breaks)."
        )
    if value.startswith("-"):
        raise UserError(f"results_dir: {value!r} starts with '-', which commands would read as an option; "
                        f"write ./{value} instead")
    if value != value.strip():
        raise UserError(f"results_dir: {value!r} starts or ends with a space; remove it")


def load_config(source: str | Path | dict, semantic: bool = True) -> dict:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise UserError(f"config file {path} does not exist")
        try:
            config = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise UserError(f"config file {path} is not valid YAML: {exc}") from None
    else:
        config = source
    config = validate_structure(config)
    check_results_dir(config["results_dir"])
    if semantic:
        check_model(config["model"], config.get("weights"))
        fill_resolutions(config)
        validate_semantics(config)
    return config


def config_sha256(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
