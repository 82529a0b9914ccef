"""The results folder under real Snakemake, run as the README says (`snakemake --cores all` in a
checkout whose config.yaml is a two-cell sweep): README's command to redo one backend, two
checkouts sharing one absolute results_dir, and a shard copied over another's.

The checkout's path has a space in it and results_dir is absolute, so every job's shell command
carries that space: an unquoted placeholder would break the sweep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sweep import REPO, TINY, _env, make_checkout, stop_forkservers

pytestmark = pytest.mark.slow

MODEL = "mobilenet_v3_small"


def two_cell_config(results: Path) -> dict:
    """One CPU cell that really runs (pytorch) and one skipped at once (torch_compile, no GPU)."""
    c = yaml.safe_load(TINY.read_text())
    c.update(model=MODEL, resolutions=[32], batch_sizes=[1], precisions=["fp32"], devices=["cpu", "cuda"],
             backends={"pytorch": {}, "torch_compile": {}}, per_device={"cpu": {"backends": ["pytorch"]}},
             results_dir=str(results))
    c["measurement"].update(warmup_min_s=0.0, min_iters=3, min_time_s=0.0, max_time_s=2)
    return c


def checkout_with_config(dest: Path, results: Path) -> Path:
    make_checkout(dest)
    (dest / "config.yaml").write_text(yaml.safe_dump(two_cell_config(results), sort_keys=False))
    return dest


def shell(command: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=_env())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    base = tmp_path_factory.mktemp("results folder") / "two checkouts"
    results = base / "first checkout" / "results"
    first = checkout_with_config(base / "first checkout", results)
    try:
        # the cells and their summary; README's command below then makes the rest (tables, figures,
        # report, archive), which the sweep would have made here, in one go
        proc = shell("snakemake --cores all --until aggregate", first)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        yield {"base": base, "first": first, "results": results}
    finally:
        stop_forkservers(results)


def shards(results: Path, backend: str) -> list[Path]:
    return sorted((results / "shards" / MODEL / backend).rglob("*.parquet"))


def readme_redo_command(model: str, backend: str) -> str:
    """README's command to redo one backend, for this sweep's model and backend."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Rerunning part of a sweep"):]
    section = section[:section.index("\n## ", 1)]
    match = re.search(r"`(rm -r results/shards/[^/`\s]+/[^/`\s]+ && snakemake [^`]+)`", section)
    assert match, "README's 'Rerunning part of a sweep' no longer shows `rm -r results/shards/MODEL/BACKEND && ...`"
    return re.sub(r"results/shards/[^/\s]+/[^/\s]+", f"results/shards/{model}/{backend}", match.group(1))


@pytest.fixture(scope="module")
def rerun(sweep):
    """README's command redoing torch_compile in the first checkout; while it holds the results
    folder (frozen with SIGSTOP right after taking it), a second checkout whose config names the
    same absolute results_dir tries to run."""
    first, results = sweep["first"], sweep["results"]
    second = checkout_with_config(sweep["base"] / "second checkout", results)
    kept = {p: p.stat().st_mtime_ns for p in shards(results, "pytorch")}
    summary_before = (results / "summary.parquet").stat().st_mtime_ns
    lock = results / ".inferbench-run.lock"
    lock.unlink(missing_ok=True)
    command = readme_redo_command(MODEL, "torch_compile")
    started = time.time()
    holder = subprocess.Popen(["bash", "-c", command], cwd=first, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env(), start_new_session=True)
    try:
        info = None
        deadline = time.monotonic() + 240
        while info is None and time.monotonic() < deadline and holder.poll() is None:
            try:
                info = json.loads(lock.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
        assert info, f"the run never took the results folder: {holder.communicate()}"
        os.killpg(holder.pid, signal.SIGSTOP)
        try:
            intruder = shell("snakemake --cores all", second)
        finally:
            os.killpg(holder.pid, signal.SIGCONT)
        out, err = holder.communicate(timeout=300)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
    return {"command": command, "returncode": holder.returncode, "log": out + err, "started": started,
            "kept": kept, "summary_before": summary_before, "holder": info, "intruder": intruder,
            "second": second}


def test_readme_command_redoes_one_backend_and_the_summary(sweep, rerun):
    results = sweep["results"]
    assert rerun["returncode"] == 0, rerun["log"][-5000:]
    assert "Nothing to be done" not in rerun["log"]
    redone = shards(results, "torch_compile")
    assert len(redone) == 1 and redone[0].stat().st_mtime > rerun["started"]
    # the other backend was not measured again
    assert {p: p.stat().st_mtime_ns for p in shards(results, "pytorch")} == rerun["kept"]
    # the summary was remade from the shards on disk: the new rows, each cell once
    assert (results / "summary.parquet").stat().st_mtime_ns > rerun["summary_before"]
    summary = pq.read_table(results / "summary.parquet").to_pandas()
    rows = {p: pq.read_table(p).to_pandas() for p in shards(results, "pytorch") + redone}
    assert len(summary) == sum(len(r) for r in rows.values()) == 3 + 2  # pytorch cpu + cuda (2 io), torch_compile cuda
    assert not summary.duplicated(["backend", "device", "io"]).any()
    assert set(summary.query("backend == 'torch_compile'")["timestamp_utc"]) == set(rows[redone[0]]["timestamp_utc"])


def test_a_second_checkout_cannot_run_in_a_results_folder_in_use(sweep, rerun):
    intruder, holder = rerun["intruder"], rerun["holder"]
    out = intruder.stdout + intruder.stderr
    assert intruder.returncode != 0, out[-3000:]
    assert f"results_dir {sweep['results']} is in use by another inferbench run" in out, out[-3000:]
    # it names who holds it: the first checkout's Snakemake, on this host, since when
    assert f"pid {holder['pid']} on host {holder['host']}" in out
    assert f"working directory {sweep['first']}" in out and holder["since_utc"] in out
    # it stopped before running any job
    assert "localrule benchmark_cell:" not in out


def test_a_shard_copied_over_another_stops_the_sweep_with_one_message(sweep, rerun):
    results = sweep["results"]
    (source,) = shards(results, "pytorch")[:1]
    (target,) = shards(results, "torch_compile")
    shutil.copy(source, target)
    proc = shell("snakemake --cores all", sweep["first"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert f"{target.relative_to(sweep['first'])}" in out or str(target) in out, out[-5000:]
    assert "holds another cell's results" in out and "Delete each file named above" in out, out[-5000:]
    assert "Traceback" not in out
