"""GPU claims: one timed cell per GPU, through lock files that a killed holder releases; no GPU is
a skip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from inferbench.errors import Skip
from inferbench.process import devices


@pytest.fixture()
def two_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")


def test_two_claims_get_different_gpus_and_a_third_waits(tmp_path, two_gpus):
    locks = tmp_path / "locks"
    with devices.GpuClaim(locks, wait_s=5) as a, devices.GpuClaim(locks, wait_s=5) as b:
        assert {a.gpu, b.gpu} == {"0", "1"}
        (lock_file,) = locks.glob(f"*gpu{a.gpu}.lock")  # gpuN.lock, or HOST-gpuN.lock
        assert lock_file.read_text().strip() == str(os.getpid())
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="no free GPU"):
            with devices.GpuClaim(locks, wait_s=0.3, poll_s=0.05):
                pass
        assert 0.25 <= time.monotonic() - t0 < 5
    # released on exit: both free again
    with devices.GpuClaim(locks, wait_s=0.3, poll_s=0.05) as c, devices.GpuClaim(locks, wait_s=0.3, poll_s=0.05) as d:
        assert {c.gpu, d.gpu} == {"0", "1"}


def test_a_waiting_claim_gets_the_gpu_when_it_is_released(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    locks = tmp_path / "locks"
    holder = devices.GpuClaim(locks).__enter__()
    threading.Timer(0.3, holder.__exit__, args=(None, None, None)).start()
    with devices.GpuClaim(locks, wait_s=5, poll_s=0.05) as c:
        assert c.gpu == "3"


def test_a_claim_is_released_when_its_holder_is_killed(tmp_path):
    locks = tmp_path / "locks"
    code = ("import sys, time\nfrom inferbench.process.devices import GpuClaim\n"
            f"c = GpuClaim({str(locks)!r}).__enter__()\nprint('claimed', c.gpu, flush=True)\ntime.sleep(120)\n")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="0")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().split() == ["claimed", "0"]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CUDA_VISIBLE_DEVICES", "0")
            with pytest.raises(TimeoutError):
                devices.GpuClaim(locks, wait_s=0.2, poll_s=0.05).__enter__()
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            with devices.GpuClaim(locks, wait_s=2, poll_s=0.05) as c:
                assert c.gpu == "0"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_no_gpu_is_a_skip(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 0)
    assert devices.candidate_gpus() == []
    with pytest.raises(Skip, match=devices.NO_CUDA):
        devices.GpuClaim(tmp_path).__enter__()
    with pytest.raises(Skip):
        devices.require_device("cuda")
    devices.require_device("cpu")
