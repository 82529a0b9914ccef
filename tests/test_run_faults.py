"""Faults of the run around the cells, with the real workflow: a results folder on a full disk
(a real small filesystem), and `kill -9` of Snakemake in the middle of a cell (a real signal)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from sweep import BIN, REPO, TINY, _env, alive, cmdline, snakemake

pytestmark = pytest.mark.slow

CELL = "shards/mobilenet_v3_small/pytorch/cpu/fp32/r32_b1.parquet"


def one_cell_config(path: Path, results: Path, backends: dict | None = None, **measurement) -> Path:
    """One CPU cell of a small model, no export: the least a run can be."""
    config = yaml.safe_load(TINY.read_text())
    config.update(model="mobilenet_v3_small", resolutions=[32], batch_sizes=[1], devices=["cpu"],
                  backends=backends or {"pytorch": {}}, per_device={}, results_dir=str(results))
    config["measurement"].update(dict(min_time_s=0.1, num_buffers=1), **measurement)
    path.write_text(yaml.safe_dump(config))
    return path


# ------------------------------------------------------------------ a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs, mounted for the test and unmounted after it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """A file that takes all of `disk` but `leave_bytes`."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * (free - leave_bytes))
    return filler


def test_a_full_disk_is_named_on_the_console_and_a_rerun_after_freeing_space_finishes(small_disk, tmp_path):
    results = small_disk / "results"
    # a cell that is skipped on the CPU, recorded in a second by its job itself: the least that
    # writes a shard (a measured cell's worker fails alike, and its job relays its line)
    config = one_cell_config(tmp_path / "one.yaml", results, {"graphs": {"backend": "pytorch", "cuda_graphs": True}})
    # two pages: the run's lock and the job's log fit, the cell's shard does not
    filler = fill(small_disk, leave_bytes=2 * 4096)
    shard = results / CELL.replace("/pytorch/", "/graphs/")
    proc = snakemake(REPO, tmp_path, config, str(shard), check=False)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0, console[-3000:]
    said = [line for line in console.splitlines() if line.startswith("inferbench cell: error: No space left on device")]
    assert said, console[-5000:]
    assert f" writing {shard.parent}/" in said[0] and f"(folder {shard.parent}; " in said[0], said[0]
    assert f"; filesystem {small_disk}: " in said[0] and " bytes free). Free space on " in said[0], said[0]
    assert "or set results_dir elsewhere, then run again" in said[0]
    assert "Traceback" not in console, console[-5000:]
    assert not shard.exists() and not list(shard.parent.glob("*.parquet*")), "a cell stopped by a full disk left a file"

    filler.unlink()
    proc = snakemake(REPO, tmp_path, config, str(shard))
    import pyarrow.parquet as pq

    assert set(pq.read_table(shard).column("status").to_pylist()) == {"skipped"}


# ------------------------------------------------------------------ kill -9 of Snakemake


def processes_naming(marker: str) -> list[int]:
    """Live processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and marker in cmdline(int(entry.name)):
            if alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_a_cell_stops_within_seconds_of_a_kill_9_of_its_snakemake_and_a_new_run_finishes(tmp_path):
    results = tmp_path / "results"
    slow = one_cell_config(tmp_path / "slow.yaml", results, min_time_s=120, max_time_s=240)
    shard = results / CELL
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(slow), "--cores", "2", "--resources=gpu=2", str(shard)]
    run = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            workers = [p for p in processes_naming(str(results)) if "--worker" in cmdline(p)]
            if workers:
                break
            time.sleep(0.2)
        assert workers, f"the cell's worker never started (snakemake exited {run.poll()})"
        assert len(processes_naming(str(results))) >= 2  # the job and its worker (and the job's shell)
        time.sleep(0.5)  # the worker under way
        run.send_signal(signal.SIGKILL)
        run.wait()
        killed_at = time.monotonic()
        while processes_naming(str(results)) and time.monotonic() - killed_at < 10:
            time.sleep(0.2)
        left = {p: cmdline(p)[:200] for p in processes_naming(str(results))}
        assert not left, f"still running 10 s after kill -9 of their snakemake: {left}"
    finally:
        for pid in processes_naming(str(results)):
            os.kill(pid, signal.SIGKILL)
    assert not shard.exists()

    # (Snakemake's own lock on its working folder outlives a kill -9, until `snakemake --unlock`:
    # the results folder's, which a new run takes, must not)
    quick = one_cell_config(tmp_path / "quick.yaml", results)
    snakemake(REPO, tmp_path, quick, str(shard), "--nolock")
    assert shard.exists()
