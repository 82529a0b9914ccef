"""Warm workers (`gpu_worker: warm`), run here on the CPU: one process serves one request after
another, a killed or hanging one fails only its request, each cell records its own peaks; and a
forked child's garbage collection skips what the server imported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from inferbench import __version__
from inferbench.process import isolation
from sweep import alive, children_of, hang_args, server_pid


def _run_warm(args, lock_dir, key="0", timeout_s=120.0):
    return isolation.run_inferbench(args, timeout_s, dict(os.environ), str(lock_dir), warm_key=key)


def _warm_pids(locks: Path) -> list[int]:
    return [p for p in children_of(server_pid(locks)) if alive(p)]


def test_a_warm_worker_serves_one_request_after_another_in_one_process(server_locks, monkeypatch, capsys):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    # the fork server is up first: what is timed below is a new warm worker and its first request
    assert isolation.run_inferbench(["--version"], 120.0, dict(os.environ), str(server_locks)).ok
    capsys.readouterr()
    t0 = time.monotonic()
    assert _run_warm(["--version"], server_locks).ok
    # a new worker must not hold its first caller's output pipe (the caller would wait for its end)
    assert time.monotonic() - t0 < 8.0
    (worker,) = _warm_pids(server_locks)  # it stays, waiting for the next cell
    assert _run_warm(["--version"], server_locks).ok
    # a failing command is that request's exit code; the worker carries on
    result = _run_warm(["validate", str(server_locks / "no-such.yaml")], server_locks)
    assert result.returncode == 2 and result.signal is None and "does not exist" in result.describe()
    assert _run_warm(["--version"], server_locks).ok
    assert _warm_pids(server_locks) == [worker]
    # each request's output reached its own caller
    assert capsys.readouterr().err.count(f"inferbench {__version__}") == 3


def test_a_killed_warm_worker_fails_its_request_and_the_next_gets_a_new_one(tmp_path, server_locks, monkeypatch):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    assert _run_warm(["--version"], server_locks, key="k").ok
    before = set(_warm_pids(server_locks))
    result, done = {}, threading.Event()
    # the hang runs inside the existing worker: kill that one
    killer = threading.Thread(target=lambda: (time.sleep(1.0), [os.kill(p, signal.SIGKILL) for p in before],
                                              result.update(killed=True)))
    killer.start()
    try:
        ended = _run_warm(hang_args(tmp_path), server_locks, key="k", timeout_s=60)
    finally:
        done.set()
        killer.join()
    assert ended.signal == signal.SIGKILL and ended.stopped_from_outside
    assert ended.describe().startswith("the worker process was killed by SIGKILL from outside")
    assert _run_warm(["--version"], server_locks, key="k").ok
    assert not set(_warm_pids(server_locks)) & before, "the dead worker was reused"


def test_a_hanging_warm_request_is_killed_at_the_timeout(tmp_path, server_locks, monkeypatch):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    result = _run_warm(hang_args(tmp_path), server_locks, key="t", timeout_s=2.0)
    assert result.timed_out and result.describe() == "timed out after 2 s (cell_timeout_s)"
    assert _run_warm(["--version"], server_locks, key="t").ok


def test_cells_in_a_warm_worker_record_it_and_their_own_peaks(tmp_path, server_locks, monkeypatch):
    """A real (CPU) cell, twice in one warm worker: both measured, the second knows it came second."""
    from inferbench.sweep import config as configmod, spec as specmod

    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    config = configmod.load_config(Path(__file__).parent / "configs" / "tiny.yaml")
    cell = configmod.Cell("resnet18", "pytorch", "cpu", "fp32", 32, 2)
    spec_json = specmod.cell_spec_for(config, cell).to_json()
    rows = []
    for i in range(2):
        out = tmp_path / f"cell{i}.parquet"
        result = _run_warm(["cell", "--worker", "--spec", spec_json, "--out", str(out)], server_locks, key="cells")
        assert result.ok, result.describe()
        (row,) = pq.read_table(out).to_pylist()
        rows.append(row)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["gpu_worker"] for r in rows] == ["warm", "warm"]
    assert [r["worker_cells_before"] for r in rows] == [0, 1]
    assert all(r["host_rss_peak_mb"] and r["host_rss_peak_mb"] > 50 for r in rows)


def test_the_warm_worker_is_only_for_gpu_cells_and_the_default_keeps_specs_unchanged():
    from inferbench.sweep import config as configmod, spec as specmod

    config = configmod.load_config(Path(__file__).parent / "configs" / "tiny.yaml")
    gpu_cell = configmod.Cell("resnet18", "pytorch", "cuda", "fp16", 32, 2)
    cpu_cell = configmod.Cell("resnet18", "pytorch", "cpu", "fp32", 32, 2)
    default = specmod.cell_spec_for(config, gpu_cell)
    assert default.gpu_worker == "fresh" and "gpu_worker" not in default.to_json()
    warm_config = dict(config, gpu_worker="warm")
    warm = specmod.cell_spec_for(warm_config, gpu_cell)
    assert specmod.CellSpec.from_json(warm.to_json()).gpu_worker == "warm"
    assert specmod.cell_spec_for(warm_config, cpu_cell).to_json() == specmod.cell_spec_for(config, cpu_cell).to_json()



def test_a_forked_child_collects_garbage_without_scanning_the_servers_imports():
    """freeze_before_fork: a warm worker collects after every cell; with torch imported a full
    collection scanned ~340k objects (0.28 s on a 2-core VM) until the server froze them."""
    code = textwrap.dedent("""
        import gc, os, time, torch, torchvision
        from inferbench.process.child import freeze_before_fork

        def collect_s():
            t = time.perf_counter(); gc.collect(); return time.perf_counter() - t

        before = min(collect_s() for _ in range(2))
        freeze_before_fork()
        pid = os.fork()
        if pid == 0:
            garbage = [[] for _ in range(1000)]
            for a, b in zip(garbage, garbage[1:]):
                a.append(b); b.append(a)  # cycles: only the collector frees them
            del garbage
            after = collect_s()
            os._exit(0 if after < before / 5 and gc.get_freeze_count() > 100_000 else 1)
        _, status = os.waitpid(pid, 0)
        print(before, os.waitstatus_to_exitcode(status))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "workflow")))
    before, child_rc = out.stdout.split()
    assert child_rc == "0", (before, out.stderr[-2000:])
