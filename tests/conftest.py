"""Fixtures shared by several test files."""

from __future__ import annotations

import shutil

import pytest

from inferbench.sweep import config as cfgmod
from sweep import TINY, make_checkout, snakemake, stop_forkservers


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """The whole tiny sweep (tests/configs/tiny.yaml), run once for every test that reads it:
    {checkout, work, results, log, config}. Tests may add files next to it (variant configs,
    other results folders) but must not change what the sweep wrote."""
    base = tmp_path_factory.mktemp("pipeline")
    checkout = make_checkout(base / "checkout")
    work = base / "work"
    work.mkdir()
    shutil.copy(TINY, work / "tiny.yaml")
    results = work / "results"
    try:
        proc = snakemake(checkout, work, work / "tiny.yaml")
        locks = results / ".locks"
        # the fork server's socket must live where teardown removes it
        assert list(locks.glob("fs-*.sock")), f"no fork server socket in {locks}: {list(locks.iterdir())}"
        # nothing after the sweep needs its fork server: stop it now (and check that it stops)
        stop_forkservers(results)
        yield {"checkout": checkout, "work": work, "results": results, "log": proc.stdout + proc.stderr,
               "config": cfgmod.load_config(work / "tiny.yaml")}
    finally:
        stop_forkservers(results)


# ------------------------------------------------------------------ long waits, started early

# Tests whose work mostly waits (the SLURM run: status polls) or keeps one core busy (two
# torch.compile processes with one thread each) start that work in the background as soon as the
# tests are collected, through their module's start_early(TMP_DIR), so that the tests before them
# use the CPUs meanwhile; the test itself then collects the result (and asserts on it).
EARLY_STARTS = {
    "test_slurm.py::test_real_pipeline_on_slurm_matches_a_local_run": "test_slurm",
    "test_torch_compile.py::test_dynamic_batch_serves_a_second_batch_size_from_the_cache": "test_torch_compile",
}


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    import importlib

    for nodeid, module in EARLY_STARTS.items():
        if any(item.nodeid.endswith(nodeid) for item in session.items):
            importlib.import_module(module).start_early(session.config._tmp_path_factory.mktemp(f"early-{module}"))


def pytest_sessionfinish(session):
    import sys

    test_slurm = sys.modules.get("test_slurm")
    if test_slurm is not None and test_slurm.EARLY:  # started but never collected: leave no jobs behind
        test_slurm.EARLY["run"].stop()
