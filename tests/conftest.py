"""Fixtures shared by several test files."""

from __future__ import annotations

import shutil

import pytest

from inferbench import config as cfgmod
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


# ------------------------------------------------------------------ the SLURM run, started early

SLURM_PIPELINE_TEST = "test_slurm.py::test_real_pipeline_on_slurm_matches_a_local_run"


def pytest_collection_finish(session):
    """The SLURM test's run mostly waits for the cluster's status polls: start it as soon as the
    tests are collected, so that the tests before it use the CPUs meanwhile."""
    if session.config.option.collectonly or not any(i.nodeid.endswith(SLURM_PIPELINE_TEST) for i in session.items):
        return
    import test_slurm

    if test_slurm.SLURM_ENABLED:
        test_slurm.start_early(session.config._tmp_path_factory.mktemp("slurm-early"))


def pytest_sessionfinish(session):
    import sys

    test_slurm = sys.modules.get("test_slurm")
    if test_slurm is not None and test_slurm.EARLY:
        test_slurm.EARLY["run"].stop()
