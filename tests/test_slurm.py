"""Run Snakemake through the SLURM executor on a real (single-node) SLURM cluster.

The SLURM tests are skipped unless INFERBENCH_SLURM=1 is set and `sinfo` is on PATH.
Locally / in CI:

    bash .ci/slurm/start.sh                      # installs + starts slurmctld/slurmd/munged
    INFERBENCH_SLURM=1 pytest -m slurm tests/test_slurm.py
    bash .ci/slurm/stop.sh

They need `snakemake-executor-plugin-slurm` (tested: 2.8.0 with snakemake 9.27.1)
in the Python environment that runs pytest; the SLURM jobs run that same Python
(sbatch --export=ALL), so the cluster node must see the same environment -- true on
the single-node test cluster.

`run_pipeline_on_slurm()` is the entry point for running the real pipeline
(<repo>/Snakefile) on the cluster; see its docstring. The test runs the fewest jobs of the tiny
sweep that take every path to the cluster, and matches them with the session's local tiny sweep.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweep import REPO, TINY, stop_forkservers

PROFILES = REPO / "profiles"
# The profile the tests use: profiles/slurm with the GPU request switched off.
TEST_PROFILE = PROFILES / "slurm-cpu"

SLURM_ENABLED = os.environ.get("INFERBENCH_SLURM") == "1" and shutil.which("sinfo") is not None

needs_slurm = pytest.mark.skipif(
    not SLURM_ENABLED,
    reason="needs a SLURM cluster: run .ci/slurm/start.sh and set INFERBENCH_SLURM=1",
)


class SnakemakeRun:
    """`python -m snakemake ARGS` in CWD, started at once; `wait()` fails the test with its
    output on error. Its output is read in a thread, so that it may run beside other tests."""

    def __init__(self, args: list[str], cwd: Path):
        self.cmd = [sys.executable, "-m", "snakemake", *args]
        self.proc = subprocess.Popen(self.cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._pool = concurrent.futures.ThreadPoolExecutor(1)
        self._output = self._pool.submit(self.proc.communicate)
        self._pool.shutdown(wait=False)

    def wait(self, timeout: float) -> subprocess.CompletedProcess:
        try:
            stdout, stderr = self._output.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            self.stop()
            stdout, stderr = self._output.result()
            pytest.fail(f"snakemake timed out after {timeout}s: {self.cmd}\n{stdout}\n{stderr}")
        if self.proc.returncode != 0:
            pytest.fail(
                f"snakemake exited {self.proc.returncode}: {' '.join(self.cmd)}\n"
                f"--- stdout ---\n{stdout[-5000:]}\n--- stderr ---\n{stderr[-10000:]}"
            )
        return subprocess.CompletedProcess(self.cmd, self.proc.returncode, stdout, stderr)

    def stop(self) -> None:
        """Stop snakemake if it still runs, and leave no SLURM jobs queued behind it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            subprocess.run(["scancel", "--user", _user()], check=False)


def _user() -> str:
    import getpass

    return getpass.getuser()


def run_pipeline_on_slurm(
    workdir: str | os.PathLike,
    configfile: str | os.PathLike,
    *,
    profile: str | os.PathLike = TEST_PROFILE,
    cores: int | None = None,
    extra_args: tuple[str, ...] = (),
    timeout: float = 1800,
) -> subprocess.CompletedProcess:
    """Run the real pipeline <repo>/Snakefile on SLURM, every rule as a SLURM job.
    (`start_pipeline_on_slurm` takes the same arguments but TIMEOUT, starts the same run and
    returns at once: its `wait(TIMEOUT)` returns what this does.)

    Calls, with WORKDIR as the current directory (the plugin writes its job logs to
    ./.snakemake/slurm_logs/rule_<name>/<wildcards>/<jobid>.log):

        python -m snakemake --snakefile <repo>/Snakefile --directory WORKDIR
            --configfile CONFIGFILE --profile <repo>/profiles/slurm-cpu
            [--cores CORES] [EXTRA_ARGS...]

    `--profile` selects `executor: slurm` and the resources (profiles/slurm-cpu: no
    GPU, sized for the 2-CPU test node; pass profile=REPO / "profiles/slurm" on a
    real GPU cluster).

    No `--cores` by default, on purpose: Snakemake caps every rule's threads at
    --cores even when the jobs run on SLURM, and the profiles derive
    `--cpus-per-task` from threads, so `--cores 1` would give every SLURM job one CPU
    (verified: a `threads: 2` rule was submitted with --cpus-per-task=1). With the
    slurm executor and no --cores, threads are not capped; parallelism is bounded by
    the profile's `jobs:`. Pass cores=N only to cap threads on purpose.

    Fails the calling test with snakemake's output if it exits non-zero, otherwise
    returns the CompletedProcess. Needs a running cluster (.ci/slurm/start.sh); call
    it from a test decorated with @needs_slurm and @pytest.mark.slurm, e.g.

        @pytest.mark.slurm
        @needs_slurm
        def test_pipeline_on_slurm(tmp_path):
            cfg = tmp_path / "config.yaml"; cfg.write_text(...)  # a tiny matrix
            run_pipeline_on_slurm(tmp_path, cfg)
            assert (tmp_path / "results" / ...).exists()
    """
    return start_pipeline_on_slurm(workdir, configfile, profile=profile, cores=cores,
                                   extra_args=extra_args).wait(timeout)


def start_pipeline_on_slurm(
    workdir: str | os.PathLike,
    configfile: str | os.PathLike,
    *,
    profile: str | os.PathLike = TEST_PROFILE,
    cores: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> SnakemakeRun:
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(Path(configfile).resolve()),
        "--profile", str(profile),
        *(["--cores", str(cores)] if cores is not None else []),
        *extra_args,
    ]
    return SnakemakeRun(args, cwd=workdir)


def _job_cpus(jobid: str) -> int:
    """CPUs SLURM allocated to a job (squeue keeps finished jobs for MinJobAge)."""
    sq = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", jobid, "-o", "%C"],
        capture_output=True, text=True, check=True,
    )
    return int(sq.stdout.strip())


def _job_state(jobid: str) -> str:
    """Final state of a SLURM job: from sacct where accounting exists, else squeue."""
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", jobid, "-o", "State"],
        capture_output=True, text=True,
    )
    if sacct.returncode == 0 and sacct.stdout.strip():
        return sacct.stdout.split()[0]
    # No slurmdbd (our test cluster): squeue keeps finished jobs for MinJobAge.
    sq = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", jobid, "-o", "%T"],
        capture_output=True, text=True, check=True,
    )
    return sq.stdout.strip()


def _load(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def test_slurm_profiles_stay_in_step():
    """profiles/slurm-cpu must differ from profiles/slurm only where it is meant to."""
    gpu, cpu = _load("slurm"), _load("slurm-cpu")
    assert gpu["executor"] == cpu["executor"] == "slurm"
    # Same settings apart from the test-cluster-only ones.
    test_only = {"slurm-status-command", "slurm-init-seconds-before-status-checks"}
    assert set(cpu) - test_only == set(gpu)
    for key in ("retries", "printshellcmds", "keep-going", "slurm-keep-successful-logs"):
        assert cpu[key] == gpu[key], key
    assert cpu["slurm-status-command"] == "squeue"
    # Same resource names, the same rules with the same resource names.
    assert set(cpu["default-resources"]) == set(gpu["default-resources"])
    assert set(cpu["set-resources"]) == set(gpu["set-resources"]) == {
        "export_artifact", "benchmark_cell", "aggregate", "tables",
        "figures_per_resolution", "figures_overall", "report", "archive",
    }
    for rule, res in gpu["set-resources"].items():
        assert set(cpu["set-resources"][rule]) == set(res), rule
    # The one intended difference in kind: a GPU on the real cluster, none on the test one.
    assert gpu["set-resources"]["benchmark_cell"]["gpu"] == 1
    assert cpu["set-resources"]["benchmark_cell"]["gpu"] == 0
    assert set(cpu["set-threads"]) == set(gpu["set-threads"])
    assert gpu["default-resources"]["cpus_per_task"] == cpu["default-resources"]["cpus_per_task"] == "threads"
    # Everything in slurm-cpu fits the 2-CPU test node.
    assert all(n <= 2 for n in cpu["set-threads"].values())
    for rule, res in cpu["set-resources"].items():
        assert "cpus_per_task" not in res, f"{rule}: set its CPUs with set-threads"
        assert res["mem_mb"] <= 4000, rule


def _job_field(jobid: str, fmt: str) -> str:
    """One squeue field of a (finished) job: squeue keeps finished jobs for MinJobAge."""
    sq = subprocess.run(["squeue", "-h", "--states=all", "-j", jobid, "-o", fmt],
                        capture_output=True, text=True, check=True)
    return sq.stdout.strip()


# Columns that must not depend on where a cell ran (timings, hosts and job ids may).
STABLE_COLUMNS = ["model", "backend", "precision", "device", "io", "resolution", "batch_size", "status", "reason",
                  "backend_options", "top1_agreement", "run_id", "config_sha256", "torch_version",
                  "onnxruntime_version", "inferbench_version", "seed", "weights", "timer"]

# The real pipeline on SLURM, on the tiny config, for the fewest jobs that take every path to the
# cluster: an export (2 CPUs), the cell that loads its artifact (2 CPUs, after the export: the
# executor tracks completion across jobs), and a rule without set-threads (1 CPU). The local run
# to match is the session's tiny sweep (tests/conftest.py): same config, same cell.
SHARD = "results/shards/resnet18/onnxruntime/cpu/fp32/r32_b2.parquet"
RESOLVED = "results/config.resolved.yaml"
# Most of that run is waiting for the cluster's status polls, so the tiny sweep (tests/conftest.py)
# starts it before its own local run (start_early), and the test collects it: {workdir, run}.
EARLY: dict = {}


def start_early(workdir: Path) -> None:
    if SLURM_ENABLED:
        EARLY.update(workdir=workdir, run=start_pipeline_on_slurm(workdir, TINY, extra_args=(SHARD, RESOLVED)))


@pytest.mark.slurm
@needs_slurm
def test_real_pipeline_on_slurm_matches_a_local_run(tmp_path, tiny_sweep):
    import pandas as pd

    if EARLY:
        work, proc = EARLY["workdir"], EARLY["run"].wait(timeout=1800)
    else:
        work = tmp_path / "slurm"
        proc = run_pipeline_on_slurm(work, TINY, extra_args=(SHARD, RESOLVED))
    stop_forkservers(work / "results")  # the jobs' fork server: nothing else will use it
    log = proc.stdout + proc.stderr

    on_slurm = pd.read_parquet(work / SHARD)
    here = pd.read_parquet(tiny_sweep["work"] / SHARD)
    assert len(on_slurm) == len(here) == 1
    assert (on_slurm.status == "ok").all(), on_slurm[["backend", "status", "reason"]]
    pd.testing.assert_frame_equal(on_slurm[STABLE_COLUMNS], here[STABLE_COLUMNS])
    assert (on_slurm.max_abs_err - here.max_abs_err).abs().max() < 1e-4
    assert (work / RESOLVED).read_text() == (tiny_sweep["work"] / RESOLVED).read_text()

    # every job ran as a SLURM job: the plugin kept one log per job, named by its SLURM job id,
    # Snakemake said it submitted it, and SLURM says it completed
    logs = work / ".snakemake" / "slurm_logs"
    host = socket.gethostname().split(".")[0]
    jobids = {}
    for rule, cpus in (("export_artifact", 2), ("benchmark_cell", 2), ("resolved_config", 1)):
        job_logs = list((logs / f"rule_{rule}").rglob("*.log"))
        assert len(job_logs) == 1, sorted(logs.rglob("*.log"))
        jobid = job_logs[0].stem
        assert jobid.isdigit(), job_logs
        jobids[rule] = jobid
        assert f"submitted with SLURM jobid {jobid} " in log, log[-3000:]
        assert _job_state(jobid) == "COMPLETED"
        # ... on the cluster's (only) node
        assert _job_field(jobid, "%N") == host
        # the rule's threads (set-threads for exports and cells, 1 otherwise) are the CPUs SLURM
        # allocated (cpus_per_task: threads in the profile) and the threads the job ran the rule
        # with (Snakemake prints `threads: N` in the job's log when N > 1)
        assert _job_cpus(jobid) == cpus, rule
        threads = re.findall(r"^\s+threads: (\d+)$", job_logs[0].read_text(), re.M)
        assert (set(threads) == {str(cpus)}) if cpus > 1 else not threads, (rule, threads)
    assert len(set(jobids.values())) == 3
    # the cell's job started only after the export's job had ended
    export_end = _job_field(jobids["export_artifact"], "%e")
    assert _job_field(jobids["benchmark_cell"], "%S") >= export_end
    # and the cell was measured inside it, on that node
    assert on_slurm.hostname[0].split(".")[0] == host
