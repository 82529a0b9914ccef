"""Fixtures shared by several test files, and how the tests are shared out between pytest-xdist's
workers (pyproject.toml runs two: `-n 2 --dist loadfile`)."""

from __future__ import annotations

import importlib
import shutil

import pytest

from inferbench.sweep import config as cfgmod
from sweep import TINY, make_checkout, snakemake, stop_forkserver, stop_forkservers

# The SLURM test's run is mostly waiting for the cluster's status polls: the tiny sweep starts it
# (test_slurm.start_early) before its own local run, and the test collects it.
SLURM_TEST = ("test_slurm", "test_real_pipeline_on_slurm_matches_a_local_run")


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, request):
    """The whole tiny sweep (tests/configs/tiny.yaml), run once for every test that reads it:
    {checkout, work, results, log, config}. Tests may add files next to it (variant configs,
    other results folders) but must not change what the sweep wrote."""
    if any((item.module.__name__, item.name) == SLURM_TEST for item in request.session.items):
        importlib.import_module("test_slurm").start_early(tmp_path_factory.mktemp("early-slurm"))
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


@pytest.fixture(scope="module")
def server_locks(tmp_path_factory):
    """A lock folder for one fork server, shared by a module's tests; teardown removes it, which
    makes the server exit (and checks that it does)."""
    locks = tmp_path_factory.mktemp("fs") / "locks"
    yield locks
    stop_forkserver(locks)


# ------------------------------------------------------------------ two workers

# pyproject.toml runs the tests in two pytest-xdist workers, a test file at a time (--dist
# loadfile), so that each file's module fixtures are made once. The tiny sweep is made once for
# the files that read it: they go to one worker as one unit (with the GPU tests, which then never
# run beside the sweep's GPU cells). Files that run the real workflow (`slow`) start first, the
# tiny sweep's before all, and the quick files fill the other worker around them. (Not xdist's own
# `xdist_group` marks: with pytest 9.2 its loadgroup no longer groups, silently.)
SWEEP_FILES = {"test_pipeline.py", "test_code_inputs.py", "test_export_pruning.py", "test_variants.py",
               "test_slurm.py", "test_gpu.py"}
SWEEP_UNIT = "the tiny sweep's files"


def _unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return SWEEP_UNIT if path.rsplit("/", 1)[-1] in SWEEP_FILES else path


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SweepFilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return SweepFilesTogether(config, log)


def pytest_collection_modifyitems(config, items):
    stray = [item.nodeid for item in items if "tiny_sweep" in item.fixturenames
             and item.path.name not in SWEEP_FILES]
    if stray:
        raise pytest.UsageError(f"{stray} read the tiny sweep: add their files to SWEEP_FILES in tests/conftest.py")
    slow = {_unit(item.nodeid) for item in items if item.get_closest_marker("slow")}

    def rank(item):
        unit = _unit(item.nodeid)
        if unit == SWEEP_UNIT:
            return 0 if "tiny_sweep" in item.fixturenames else 1
        return 2 if unit in slow else 3

    items.sort(key=rank)  # stable: each file keeps its own order


def pytest_sessionfinish(session):
    import sys

    test_slurm = sys.modules.get("test_slurm")
    if test_slurm is not None and test_slurm.EARLY:  # started but never collected: leave no jobs behind
        test_slurm.EARLY["run"].stop()
