"""WIRING test of `snakemake --cores 1 --use-singularity` -- not a test of the image.

No container runtime exists on CI (no Docker engine, no Apptainer), so this checks the wiring
only: that, after `docker/build.sh` has written the image to its default path, the REAL
Snakemake, run exactly as a user types it from a checkout (no --config: config.yaml's
`container:` names that path, profiles/default is picked up automatically), sends every
`export_artifact` and `benchmark_cell` job through `apptainer exec` with `--nv`, that image and
the environment the jobs need, and runs the aggregation/report rules on the host.

tests/fake_apptainer/ holds stand-ins, first on PATH: `apptainer` (also as `singularity`)
answers `--version`, fakes `pull`/`build` with placeholder files, records every call as one
JSON line, and runs the inner command of `apptainer exec` on the HOST with the host's Python;
`docker` answers `info` and builds nothing. What runs inside the real image (torch,
onnxruntime-gpu, /usr/local/bin/inferbench) is NOT exercised here.

Also checked: without --use-singularity, with no image built and no apptainer, the same sweep
runs everything on the host; with it but without the image, Snakemake stops with a message that
says how to build it. Run with `-s` to see the exact exec lines.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweep import REPO, TINY

STAND_INS = REPO / "tests" / "fake_apptainer"
DEFAULT = object()  # keep config.yaml's `container:`

pytestmark = pytest.mark.slow

# `inferbench SUB` of export_artifact / benchmark_cell / harness_check (its bare loops need the image's libraries)
CONTAINER_RULE_COMMANDS = ("export", "cell", "harness-check", "model-work", "gpu-peak")
HOST_RULE_COMMANDS = ("aggregate", "tables", "figures", "report", "archive")


# ---------------------------------------------------------------------------------------
# helpers


def default_image() -> str:
    """Where docker/build.sh writes the image, which config.yaml's `container:` names."""
    return yaml.safe_load((REPO / "config.yaml").read_text())["container"]


def make_checkout(dest: Path, container=DEFAULT) -> Path:
    """A scratch copy of the repository (what a user has on the GPU host) whose config.yaml is
    shrunk to a tiny sweep, so that plain `snakemake` runs it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".snakemake", "results", "images")
    dest.mkdir(parents=True)
    for name in ("Snakefile", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("workflow", "profiles", "envs", "docker"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    cfg = yaml.safe_load(TINY.read_text())
    # Keep it fast on 2 cores: one resolution, one batch, CPU only, two backends
    # (pytorch needs no artifact, onnxruntime needs one export job).
    cfg.update(
        resolutions=[32],
        batch_sizes=[2],
        precisions=["fp32"],
        devices=["cpu"],
        backends={"pytorch": {}, "onnxruntime": {}},
        per_device={"cpu": {"backends": ["pytorch", "onnxruntime"], "precisions": ["fp32"]}},
        results_dir="results",
        container=default_image() if container is DEFAULT else container,
    )
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def fake_bin(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name, source in (("apptainer", "apptainer"), ("singularity", "apptainer"), ("docker", "docker")):
        shutil.copy2(STAND_INS / source, dest / name)
        (dest / name).chmod(0o755)
    return dest


def base_env(path_prefix: list[Path]) -> dict:
    """The caller's environment minus anything that would leak into the run."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INFERBENCH_", "APPTAINER", "SINGULARITY", "SNAKEMAKE_"))
           and k not in ("PYTHONPATH", "FAKE_APPTAINER_LOG")}
    # No fork server (inferbench.process.forkserver): it would outlive the test by its idle time, and it
    # is not what this test is about.
    env["INFERBENCH_FORKSERVER"] = "0"
    python_bin = Path(sys.executable).parent  # snakemake and inferbench of this environment
    env["PATH"] = os.pathsep.join([*map(str, path_prefix), str(python_bin), "/usr/bin", "/bin"])
    return env


def snakemake_cmd(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "snakemake"
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]
    return [*head, *args]


def run_snakemake(cwd: Path, env: dict, *args: str, timeout: float = 600, check: bool = True):
    cmd = snakemake_cmd(*args)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"\n$ {shlex.join(cmd)}   (in {cwd}, {time.monotonic() - start:.1f}s, rc={proc.returncode})")
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake exited {proc.returncode}: {shlex.join(cmd)}\n"
                    f"--- stdout ---\n{proc.stdout[-5000:]}\n--- stderr ---\n{proc.stderr[-10000:]}")
    return proc


def read_calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def inner_script(call: dict) -> str:
    """The `bash -c SCRIPT` that Snakemake hands to `apptainer exec ... IMAGE`."""
    cmd = call["command"]
    assert len(cmd) == 3 and cmd[1] == "-c", cmd
    return cmd[2]


def inferbench_subcommand(script: str) -> str | None:
    words = shlex.split(script.replace(";", " ; "))
    return words[words.index("inferbench") + 1] if "inferbench" in words else None


def out_path(script: str) -> str:
    words = shlex.split(script.replace(";", " ; "))
    return words[words.index("--out") + 1]


def read_shard_rows(shard: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(shard).to_pylist()


# ---------------------------------------------------------------------------------------
# the containerised run (once per module)


@pytest.fixture(scope="module")
def apptainer_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("wiring")
    checkout = make_checkout(root / "checkout")
    bin_dir = fake_bin(root / "fakebin")
    log = root / "fake-apptainer.jsonl"
    env = base_env([bin_dir])
    env["FAKE_APPTAINER_LOG"] = str(log)
    build = subprocess.run(["bash", "docker/build.sh"], cwd=checkout, env=env, capture_output=True, text=True,
                           timeout=120)
    assert build.returncode == 0, build.stderr
    assert (checkout / default_image()).is_file(), build.stderr  # where config.yaml looks
    assert "snakemake --cores 1 --use-singularity\n" in build.stderr, build.stderr  # it says what to run next
    proc = run_snakemake(checkout, env, "--cores", "1", "--use-singularity")
    calls = read_calls(log)
    execs = [c for c in calls if c.get("subcommand") == "exec"]
    exec_lines = "\n".join(shlex.join(c["argv"]) for c in execs)
    print(f"--- {len(execs)} apptainer exec calls, exactly as Snakemake made them ---\n{exec_lines}")
    return {"checkout": checkout, "calls": calls, "execs": execs, "exec_lines": exec_lines,
            "proc": proc, "results": checkout / "results"}


def test_containerised_rules_go_through_apptainer_exec_with_nv_and_the_image(apptainer_run):
    r = apptainer_run
    lines = r["exec_lines"]
    results = r["results"]
    manifests = sorted(str(p.relative_to(r["checkout"])) for p in (results / "artifacts").rglob("*.json"))
    shards = sorted(str(p.relative_to(r["checkout"])) for p in (results / "shards").rglob("*.parquet"))
    assert manifests and len(shards) == 2, (manifests, shards)

    by_sub = {sub: sorted(out_path(inner_script(c)) for c in r["execs"]
                          if inferbench_subcommand(inner_script(c)) == sub)
              for sub in CONTAINER_RULE_COMMANDS}
    assert by_sub["export"] == manifests, f"every export_artifact job via apptainer exec:\n{lines}"
    assert by_sub["cell"] == shards, f"every benchmark_cell job via apptainer exec:\n{lines}"
    check = str((results / "harness_check.csv").relative_to(r["checkout"]))
    assert by_sub["harness-check"] == [check], f"the harness check via apptainer exec:\n{lines}"
    # the model's FLOP count builds the model as the cells do, so in the same image; no GPU here,
    # so no GPU ceiling to measure (the job runs only where the sweep has cuda cells)
    work = str((results / "model_work.json").relative_to(r["checkout"]))
    assert by_sub["model-work"] == [work], f"the model's work count via apptainer exec:\n{lines}"
    assert len(r["execs"]) == len(manifests) + len(shards) + 1 + len(by_sub["model-work"]) + len(by_sub["gpu-peak"]), \
        f"nothing else in a container:\n{lines}"

    # the built image, used in place: nothing pulled
    assert not [c for c in r["calls"] if c.get("subcommand") == "pull"]
    image = r["checkout"] / default_image()
    for call in r["execs"]:
        argv = call["argv"]
        options = call["options"]
        assert argv[1] == "exec", f"{shlex.join(argv)}\n--- all exec lines ---\n{lines}"
        assert ["--nv", None] in options, f"--nv missing: {shlex.join(argv)}\n--- all exec lines ---\n{lines}"
        assert (r["checkout"] / call["image"]).resolve() == image.resolve(), f"wrong image: {shlex.join(argv)}\n{lines}"
        assert ["--home", str(r["checkout"])] in options, shlex.join(argv)  # mounts the checkout
        assert ["--env", "PYTHONPATH=workflow"] in options, shlex.join(argv)  # the checkout's code
        assert call["cwd"] == str(r["checkout"]), call["cwd"]
        assert "--cleanenv" not in [n for n, _ in options], shlex.join(argv)


def test_aggregation_and_report_rules_run_on_the_host(apptainer_run):
    r = apptainer_run
    subs = [inferbench_subcommand(inner_script(c)) for c in r["execs"]]
    assert not set(subs) & set(HOST_RULE_COMMANDS), f"host rules inside the container:\n{r['exec_lines']}"
    assert all("printf" not in inner_script(c) for c in r["execs"]), r["exec_lines"]  # resolved_config
    results = r["results"]
    for name in ("summary.parquet", "report.html", "report.md", "tables/32.csv", "config.resolved.yaml"):
        assert (results / name).is_file(), name
    # Snakemake itself says which jobs it containerised: "Activating singularity image" per job
    activations = (r["proc"].stdout + r["proc"].stderr).count("Activating singularity image")
    assert activations == len(r["execs"]), (activations, r["exec_lines"])


def test_run_identity_reaches_the_containerised_jobs(apptainer_run):
    r = apptainer_run
    run_ids = set()
    for call in r["execs"]:
        env = call["env"]
        assert env["INFERBENCH_RUN_ID"] and env["INFERBENCH_CONFIG_SHA256"], (env, shlex.join(call["argv"]))
        assert env["INFERBENCH_CONTAINER_IMAGE"] == default_image(), (env, shlex.join(call["argv"]))
        assert env["PYTHONPATH"] == "workflow", env
        run_ids.add((env["INFERBENCH_RUN_ID"], env["INFERBENCH_CONFIG_SHA256"]))
    assert len(run_ids) == 1, run_ids
    # the Snakemake process the jobs watch (inferbench.process.lifeline), seen through the wrapper,
    # and the console each job's shell keeps, inside it (inferbench.process.console)
    runners = {call["env"]["INFERBENCH_SNAKEMAKE_PID"] for call in r["execs"]}
    assert len(runners) == 1 and re.fullmatch(r"\d+:\d+", runners.pop() or ""), runners
    assert all("exec 3>&2; export INFERBENCH_CONSOLE_FD=3;" in inner_script(c) for c in r["execs"]), r["exec_lines"]
    # PYTHONPATH=workflow is relative to the job's directory: the checkout's package
    assert (r["checkout"] / "workflow" / "inferbench" / "__init__.py").is_file()


def test_shards_record_the_container_image(apptainer_run):
    r = apptainer_run
    (run_id, sha), = {(c["env"]["INFERBENCH_RUN_ID"], c["env"]["INFERBENCH_CONFIG_SHA256"]) for c in r["execs"]}
    shards = sorted((r["results"] / "shards").rglob("*.parquet"))
    assert len(shards) == 2
    for shard in shards:
        rows = read_shard_rows(shard)
        assert rows, shard
        for row in rows:
            assert row["container_image"] == default_image(), (shard, row.get("container_image"))
            assert row["run_id"] == run_id and row["config_sha256"] == sha, (shard, row["run_id"])


# ---------------------------------------------------------------------------------------
# without --use-singularity


def test_without_use_singularity_runs_on_the_host_without_apptainer(tmp_path):
    """The default config names an image that was never built: a plain run does not need it, and
    its rows record no image (a container configured but not used is not the one they ran in)."""
    checkout = make_checkout(tmp_path / "checkout")
    assert not (checkout / default_image()).exists()
    env = base_env([])
    assert shutil.which("apptainer", path=env["PATH"]) is None, "this test needs a PATH without apptainer"
    assert shutil.which("singularity", path=env["PATH"]) is None
    # the jobs that would run in the image (exports, cells) run on the host; the rest always does
    run_snakemake(checkout, env, "--cores", "1", "--until", "benchmark_cell")
    results = checkout / "results"
    shards = sorted((results / "shards").rglob("*.parquet"))
    assert len(shards) == 2, shards
    for shard in shards:
        for row in read_shard_rows(shard):
            assert row["container_image"] is None, (shard, row["container_image"])
    assert not list((checkout / ".snakemake").rglob("*.simg")), "no image pulled"


def test_use_singularity_without_the_image_says_how_to_build_it(tmp_path):
    checkout = make_checkout(tmp_path / "checkout")
    env = base_env([fake_bin(tmp_path / "fakebin")])
    env["FAKE_APPTAINER_LOG"] = str(tmp_path / "fake-apptainer.jsonl")
    proc = run_snakemake(checkout, env, "--cores", "1", "--use-singularity", "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert default_image() in out and "docker/build.sh" in out and "--config container=" in out, out[-2000:]


def test_use_singularity_without_a_container_fails_early(tmp_path):
    checkout = make_checkout(tmp_path / "checkout", container=None)
    env = base_env([fake_bin(tmp_path / "fakebin")])
    env["FAKE_APPTAINER_LOG"] = str(tmp_path / "fake-apptainer.jsonl")
    proc = run_snakemake(checkout, env, "--cores", "1", "--use-singularity", "--dry-run", check=False)
    assert proc.returncode != 0 and "container" in (proc.stdout + proc.stderr), proc.stdout[-2000:]
