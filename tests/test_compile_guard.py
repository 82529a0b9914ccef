"""Compilation beside other cells' timed windows: compile work (the compiling thread, the threads it
starts, every process below it) keeps off the CPUs that other cells' measuring threads hold, its
processes reniced; off with one cell at a time. Real processes and real CPU claims, no compiler:
a shell and its child stand in for Inductor's sidecar and its workers."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from inferbench.backends.base import CompileWork, LoadContext
from inferbench.measure import compileguard
from inferbench.measure.hostcpu import CpuClaim, can_pin

pytestmark = pytest.mark.skipif(not can_pin() or len(os.sched_getaffinity(0)) < 2,
                                reason="needs two CPUs this process may pin threads to")


@pytest.fixture()
def cpus():
    original = os.sched_getaffinity(0)
    yield sorted(original)
    os.sched_setaffinity(0, original)


def start_workers() -> tuple[subprocess.Popen, list[int]]:
    """A process that starts another (as the sidecar forks its workers), both asleep; their pids,
    read from /proc here rather than by the code under test."""
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    assert wait_for(lambda: children.read_text().split()), "the shell started no child"
    return proc, [proc.pid, int(children.read_text().split()[0])]


def state(pid: int) -> tuple[int, set[int]]:
    return os.getpriority(os.PRIO_PROCESS, pid), os.sched_getaffinity(pid)


def wait_for(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_compile_work_keeps_off_the_cpus_other_cells_measure_on(cpus, tmp_path):
    measuring = CpuClaim(str(tmp_path))  # another cell's launching thread
    assert measuring.take(cpus[-1])
    later = CpuClaim(str(tmp_path))
    proc = None
    try:
        with compileguard.CompileGuard(active=True, claim_dir=str(tmp_path), poll_s=0.01) as guard:
            assert cpus[-1] not in os.sched_getaffinity(0)  # the compiling thread, from the start
            started_inside = {}
            t = threading.Thread(target=lambda: started_inside.setdefault("tid", threading.get_native_id()))
            t.start()
            t.join()
            proc, workers = start_workers()
            free = set(cpus) - {cpus[-1]}
            assert wait_for(lambda: all(state(p) == (compileguard.COMPILE_NICE, free) for p in workers)), \
                {p: state(p) for p in workers}
            # a cell claims a CPU while this one compiles: compile work leaves it within a few polls
            if len(cpus) > 2:
                assert later.take(cpus[0])
                assert wait_for(lambda: all(cpus[0] not in state(p)[1] for p in workers))
                assert cpus[0] not in os.sched_getaffinity(0)
        assert os.sched_getaffinity(0) == set(cpus)  # the compiling thread gets its CPUs back
        facts = guard.facts()
        assert facts["compile_guard"] == "on" and facts["compile_nice"] == compileguard.COMPILE_NICE
        assert cpus[-1] in facts["compile_cpus_withheld"] and facts["compile_processes"] >= 2
        assert facts["compile_cpus_fewest"] == len(cpus) - (2 if len(cpus) > 2 else 1)
    finally:
        measuring.release()
        later.release()
        if proc:
            proc.kill()
            proc.wait()


def test_one_cell_at_a_time_leaves_compile_work_as_it_is(cpus, tmp_path):
    measuring = CpuClaim(str(tmp_path))
    assert measuring.take(cpus[-1])
    try:
        with compileguard.CompileGuard(active=False, claim_dir=str(tmp_path), poll_s=0.01) as guard:
            proc, workers = start_workers()
            time.sleep(0.1)
            assert all(state(p) == (os.getpriority(os.PRIO_PROCESS, 0), set(cpus)) for p in workers)
            assert os.sched_getaffinity(0) == set(cpus)
        proc.kill()
        proc.wait()
        assert guard.facts() == {"compile_guard": "off"}
    finally:
        measuring.release()


@pytest.mark.parametrize("device, tokens, on", [("cuda", "2", True), ("cuda", "8", True), ("cuda", "1", False),
                                                ("cuda", None, False), ("cuda", "x", False), ("cpu", "4", False)])
def test_the_guard_is_on_for_gpu_cells_of_a_run_with_several_gpu_tokens(device, tokens, on):
    env = {} if tokens is None else {compileguard.TOKENS_ENV: tokens}
    assert compileguard.several_at_once(device, env) is on


def test_torch_compile_compiles_inside_the_cells_compile_work_and_records_it(monkeypatch):
    import torch

    from inferbench.backends import torch_compile
    from inferbench.sweep.grid import Cell

    calls = []

    class Work(CompileWork):
        inside = False

        def __enter__(self):
            Work.inside = True
            return self

        def __exit__(self, *exc):
            Work.inside = False

        def facts(self):
            return {"compile_guard": "on", "compile_nice": 10}

    def fake_compile(model, **kwargs):
        def run(x):
            calls.append(Work.inside)
            return model(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    # Inductor's counters need torch._dynamo (2 s to import): not what is tested here
    monkeypatch.setattr(torch_compile, "fx_graph_cache_counts", lambda: (0, 0))
    monkeypatch.setattr(torch_compile, "cudagraph_skips", lambda: 0)
    cell = Cell(model="m", backend="torch_compile", device="cpu", precision="fp32", resolution=8, batch_size=2)
    ctx = LoadContext(cell=cell, options=torch_compile.parse_options({}), artifact_path=None, threads=1,
                      build_model=lambda: torch.nn.Conv2d(3, 4, 3).eval(), compile_work=Work)
    runner = torch_compile.load(ctx)
    assert calls == [True, True]  # both compiling calls, inside
    assert runner.facts["compile_guard"] == "on" and runner.facts["compile_nice"] == 10
    runner.run(runner.prepare(torch.randn(2, 3, 8, 8)))
    assert calls[-1] is False  # a timed call is never inside


def test_the_cells_load_gets_a_guard_that_is_off_on_one_gpu(monkeypatch):
    from inferbench.backends import torch_compile
    from inferbench.measure import phases

    seen = {}
    options = torch_compile.parse_options({})

    def load(ctx):
        seen["work"] = ctx.compile_work()
        return SimpleNamespace(facts={}, compile_s=None, prepare=lambda x: x)

    monkeypatch.delenv(compileguard.TOKENS_ENV, raising=False)
    spec = SimpleNamespace(cell=SimpleNamespace(device="cuda"), in_chans=3)
    phases.load_runner(spec, SimpleNamespace(load=load), options, None, 1, SimpleNamespace(device=[]))
    assert isinstance(seen["work"], compileguard.CompileGuard) and not seen["work"].active
    monkeypatch.setenv(compileguard.TOKENS_ENV, "2")
    phases.load_runner(spec, SimpleNamespace(load=load), options, None, 1, SimpleNamespace(device=[]))
    assert seen["work"].active
