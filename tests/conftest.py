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
