# Config -> validated config, the list of cells, and the path helpers. Every other rule file
# stays declarative.
import functools
import json
import os
import re
import sys

import yaml
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from inferbench.errors import UserError

# Source files whose change must rerun a job. The `code` trigger does not see imported modules, so
# every job lists them as `code` inputs, read from the imports by job_code: the modules its command
# runs, and for an export or a cell also its own backend's module (never another backend's).
from inferbench.sweep.codedeps import job_code
from inferbench.sweep.config import Cell, axis_for, backend_of, cells, config_sha256, load_config, options_of
from inferbench.sweep.spec import (artifact_key_for, artifact_manifest, cell_spec_for, export_claims_gpu,
                                   export_spec_for, known_skip)

try:
    _resolved = load_config(dict(config))
except UserError as _exc:
    raise WorkflowError(f"{_exc}\nFix the config (see README.md, 'Configuration', and workflow/schemas/config.schema.yaml) and run again.")
config.clear()
config.update(_resolved)

RESULTS = config["results_dir"].rstrip("/")
CELLS = cells(config)
PKG = Path(workflow.basedir).resolve() / "workflow" / "inferbench"  # absolute: jobs may run in another folder
# Jobs run this checkout's package (`python -m inferbench`) with whatever environment runs them:
# the host's venv, --use-conda's env (CONDA_ENV), or the image (where the profile sets the same).
_inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
os.environ.update(PYTHONPATH=os.pathsep.join([str(PKG.parent)] + _inherited))
CONDA_ENV = str(Path(workflow.basedir).resolve() / "envs" / "inferbench-cpu.yaml")

# One identity for the sweep: `run_id` from the config, else the model and the config's hash, so
# that resuming or rerunning the same sweep keeps its name. Jobs inherit it through the environment
# (not a parameter: a new label must not make Snakemake rerun finished cells).
CONFIG_SHA256 = config_sha256({k: v for k, v in config.items() if k != "run_id"})
# (a timm: or python: name's colons are no part of a file name)
RUN_ID = config.get("run_id") or f"{re.sub(r'[^A-Za-z0-9._-]+', '-', config['model'])}-{CONFIG_SHA256[:12]}"
os.environ["INFERBENCH_RUN_ID"] = RUN_ID
os.environ["INFERBENCH_CONFIG_SHA256"] = CONFIG_SHA256
from inferbench.records.environment import git_commit

os.environ.setdefault("INFERBENCH_GIT_COMMIT", git_commit(Path(workflow.basedir)) or "unknown")


# Every job's shell keeps Snakemake's stderr as descriptor 3, for the one line a job must say there
# when its log cannot be written (a full disk: inferbench.process.console).
shell.prefix("set -euo pipefail; exec 3>&2; export INFERBENCH_CONSOLE_FD=3; ")
# The process that runs the jobs, named to them: a job whose Snakemake has died stops
# (inferbench.process.lifeline). Read by every process that reads this file, so on a cluster
# node it is that node's Snakemake, not the submitting one (whose name the job may inherit).
from inferbench.process import lifeline

os.environ[lifeline.RUNNER_ENV] = lifeline.this_process()


# Passed to every job, also on a cluster where jobs start in a fresh environment.
envvars:
    "INFERBENCH_RUN_ID",
    "INFERBENCH_CONFIG_SHA256",
    "INFERBENCH_GIT_COMMIT",
RESOLVED_CONFIG_YAML = yaml.safe_dump(config, sort_keys=False)


# One run at a time per results folder, also across checkouts (Snakemake's own lock covers only
# its working directory). Taken when jobs are about to run (not for dry runs or --summary), by the
# main Snakemake process, and held until it exits.
onstart:
    from inferbench.sweep import runlock

    try:
        RESULTS_LOCK.append(runlock.hold(RESULTS))
    except UserError as _exc:
        raise WorkflowError(str(_exc))
    from inferbench.process.console import low_space_warning

    _warning = low_space_warning(RESULTS)
    if _warning:
        print(f"inferbench: warning: {_warning}", file=sys.stderr)


RESULTS_LOCK = []  # the open lock file: kept referenced for the life of the run

# Does this run put the export and benchmark jobs in the image (--use-singularity, --use-apptainer,
# --sdm apptainer)? Without it Snakemake ignores `container:` and runs them on the host.
from snakemake.settings.types import DeploymentMethod

_deployment = getattr(getattr(workflow, "deployment_settings", None), "deployment_method", None) or ()
IN_CONTAINER = DeploymentMethod.APPTAINER in _deployment
BUILD_HINT = ("Build the image with `bash docker/build.sh` (needs Docker and Apptainer; it writes "
              "images/inferbench_<version>.sif, the default `container:`), or point `container:` at an image: "
              "--config container=/path/to/inferbench.sif or container=docker://REGISTRY/inferbench:TAG.")
if IN_CONTAINER and not config.get("container"):
    raise WorkflowError(
        "--use-singularity (--use-apptainer) is on, but the config has `container: null`, so the export and "
        f"benchmark jobs would run on the host. {BUILD_HINT} Or leave out --use-singularity."
    )
if IN_CONTAINER and "://" not in config["container"] and not os.path.isfile(config["container"]):
    raise WorkflowError(
        f"--use-singularity (--use-apptainer) is on, but the image {config['container']} (`container:` in the "
        f"config) does not exist (looked in {os.getcwd()}). {BUILD_HINT}"
    )
# The image the jobs run in, recorded in every shard; none when they run on the host.
if IN_CONTAINER:
    os.environ.update(INFERBENCH_CONTAINER_IMAGE=config["container"])
else:
    os.environ.pop("INFERBENCH_CONTAINER_IMAGE", None)


def all_cores():
    """Every core Snakemake was given: a CPU cell or an export then runs alone, never beside a
    timed cell (GPU cells take one core each)."""
    try:
        return workflow.cores
    except Exception:  # a dry run without --cores
        return 1


def gpu_tokens():
    """The `gpu` tokens this run was given (--resources gpu=K): how many GPU cells run at once."""
    try:
        value = workflow.global_resources.get("gpu")
        return int(getattr(value, "value", value) or 0)
    except Exception:
        return 0


# The harness check measures on as many GPUs as the run has tokens (environment: reruns nothing).
os.environ.update(INFERBENCH_GPU_TOKENS=str(max(1, gpu_tokens())))

# With K GPU cells at once, Inductor's compile workers of one cell share the host with the other
# K-1 cells (timed or compiling): each compilation gets its share of the cores, not all of them
# (by default it starts one worker per core). With one GPU nothing runs beside a compilation, and
# all cores shorten it. Set in the environment (not a parameter): the GPU count reruns nothing.
if gpu_tokens() > 1:
    try:
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, workflow.cores // gpu_tokens())))
    except Exception:  # a dry run without --cores
        pass


def shard_path(cell):
    return (f"{RESULTS}/shards/{cell.model}/{cell.backend}/{cell.device}/{cell.precision}/"
            f"r{cell.resolution}_b{cell.batch_size}.parquet")


def cell_of(wc):
    return Cell(wc.model, wc.backend, wc.device, wc.precision, int(wc.resolution), int(wc.batch))


# artifact manifest path -> ExportSpec, for every artifact some cell needs. Variants of one
# backend whose export options agree map to one manifest (under the backend's name): one export.
EXPORTS = {}
CELL_ARTIFACT = {}
for _cell in CELLS:
    _manifest = artifact_manifest(config, _cell)
    if _manifest is None:
        continue
    _manifest = f"{RESULTS}/{_manifest}"
    EXPORTS[_manifest] = export_spec_for(config, _cell.backend, artifact_key_for(config, _cell))
    CELL_ARTIFACT[_cell] = _manifest


def drop_stale_manifests():
    """An artifact changed or damaged since its export (a foreign file put in its place, a truncated
    copy) is exported again: its manifest goes, so the export reruns, and so do the shards of the
    cells that load it, which cannot tell which file they measured (Snakemake does not remake a
    missing input of an output that is up to date, so the shards must go for the export to run).
    Only by a run that may write here: not a dry run (which says what a run would do), not a job's
    own process, not while another run holds the folder (which refuses this one)."""
    from inferbench.records.artifactcheck import stale_manifests
    from inferbench.sweep import runlock

    if not workflow.is_main_process or workflow.touch:
        return
    stale = stale_manifests([m for m in EXPORTS if os.path.exists(m)])
    if not stale or runlock.held_elsewhere(RESULTS):
        return
    for _path, _why in stale:
        if workflow.dryrun:
            print(f"inferbench: {_why}; a run will export it again", file=sys.stderr)
        else:
            _shards = [shard_path(c) for c, m in CELL_ARTIFACT.items() if m == _path and os.path.exists(shard_path(c))]
            print(f"inferbench: {_why}; exporting it again, and measuring again the {len(_shards)} cell(s) "
                  "that load it", file=sys.stderr)
            for _shard in _shards:
                os.remove(_shard)
            os.remove(_path)


drop_stale_manifests()


def export_gpu_tokens(wc):
    """1 for an export that has a GPU to itself (inferbench.sweep.spec.export_claims_gpu), else 0."""
    return 1 if export_claims_gpu(EXPORTS[f"{RESULTS}/artifacts/{wc.model}/{wc.backend}/{wc.artifact}.json"]) else 0


def export_spec(wc):
    return EXPORTS[f"{RESULTS}/artifacts/{wc.model}/{wc.backend}/{wc.artifact}.json"].to_json()


# Export only what will run. An artifact is left out when the cell that loads it will be skipped
# for a reason known now, on the machine the jobs run on: then the cell job records the same
# reason without it (commands/cell.py asks the same questions). Decided when the DAG is built,
# not when this file is read, because only then is the executor known.
@functools.cache
def pruning():
    """None: export everything. Else whether facts about the Python environment (is TensorRT
    installed?) may prune too, besides facts about the machine (is a CUDA device visible?)."""
    if not workflow.local_exec or workflow.remote_exec:
        # a cluster: the DAG is built on a login node, the jobs run on other (GPU) nodes
        return None
    # In the image, the host's Python libraries say nothing; its GPUs are the job's (--nv).
    return {"libraries": not IN_CONTAINER}


@functools.cache
def cuda_visible():
    from inferbench.process.devices import cuda_device_count

    return cuda_device_count() > 0


def will_skip(cell):
    how = pruning()
    if how is None:
        return None
    return known_skip(cell, options_of(config, cell.backend), cuda_visible, libraries=how["libraries"],
                      backend=backend_of(config, cell.backend))


EXPORTS_RECORD = f"{RESULTS}/exports.json"


def loaded_manifests():
    """The export manifests some cell will load (those left out for a known skip are not made)."""
    return sorted({CELL_ARTIFACT[c] for c in CELLS if c in CELL_ARTIFACT and not will_skip(c)})


def cell_inputs(wc):
    cell = cell_of(wc)
    # a variant's cells run its backend's module
    inputs = {"code": job_code("cell", backend_of(config, cell.backend))}
    if cell in CELL_ARTIFACT and not will_skip(cell):
        inputs["artifact"] = CELL_ARTIFACT[cell]
    return inputs


def all_shards():
    return [shard_path(c) for c in CELLS]


# The sweep's two records beside the shards (workflow/rules/work.smk): the model's work per image,
# and the GPUs' ceilings, measured only where the sweep has GPU cells.
MODEL_WORK = f"{RESULTS}/model_work.json"
GPU_PEAK = f"{RESULTS}/gpu_peak.json"


def work_records():
    records = {"model_work": MODEL_WORK}
    if any(c.device == "cuda" for c in CELLS):
        records["gpu_peak"] = GPU_PEAK
    return records


OVERALL_FIGURES = ("speedup_heatmap", "throughput_vs_memory", "scaling")


def table_targets():
    return [f"{RESULTS}/tables/{r}.{ext}" for r in config["resolutions"] for ext in ("csv", "md", "html")]


def figure_targets():
    per_resolution = [f"{RESULTS}/figures/{name}{r}.png" for r in config["resolutions"]
                      for name in ("", "latency_", "gpu_memory_")]
    return per_resolution + [f"{RESULTS}/figures/{name}.png" for name in OVERALL_FIGURES]


def archive_path():
    return f"{RESULTS}/archive/inferbench-{RUN_ID}.tar.gz"


def report_targets():
    return [f"{RESULTS}/report.html", f"{RESULTS}/report.md", archive_path()]


def all_targets():
    # Every shard is a target of its own, not only an input of the summary: Snakemake does not look
    # for the missing inputs of an output that is up to date, so a deleted shard would otherwise
    # never be measured again ("Nothing to be done"). As a target it is, and being newer than the
    # summary it then redoes the summary and everything made from it.
    return all_shards() + [f"{RESULTS}/summary.parquet"] + table_targets() + figure_targets() + report_targets()
