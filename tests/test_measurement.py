"""Fast unit tests of the measurement machinery, no GPU: statistics, the timing loop, GPU telemetry
bookkeeping from recorded readings, shards, GPU claims, and the isolation of a step in a child
process (through the fork server and through a plain subprocess)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inferbench import __version__
from inferbench.backends.base import Skip
from inferbench.measure import stats, timing
from inferbench.measure.telemetry import gpu
from inferbench.process import devices, forkserver, isolation
from inferbench.records import shard
from inferbench.records.schema import COLUMN_NAMES, SHARD_SCHEMA

# ------------------------------------------------------------------ stats


def test_summarize_known_data():
    data = list(range(100, 0, -1))  # 1..100 ms, given unsorted
    s = stats.summarize(data, batch_size=8)
    assert s["n_iters"] == 100
    assert s["latency_ms_mean"] == 50.5
    assert s["latency_ms_median"] == 50.5
    assert s["latency_ms_min"] == 1 and s["latency_ms_max"] == 100
    assert s["latency_ms_p90"] == pytest.approx(90.1)
    assert s["latency_ms_p99"] == pytest.approx(99.01)
    std = float(np.std(np.arange(1, 101), ddof=1))
    assert s["latency_ms_std"] == pytest.approx(std)
    assert s["latency_cv"] == pytest.approx(std / 50.5)
    # order statistics n/2 -/+ 1.96 sqrt(n)/2 = 50 -/+ 9.8: ranks 40 and 59 (0-based)
    assert (s["latency_ms_median_ci95_low"], s["latency_ms_median_ci95_high"]) == (41.0, 60.0)
    assert s["throughput_ips"] == pytest.approx(8 / 0.0505)


def test_summarize_constant_and_single():
    s = stats.summarize([2.0] * 10, batch_size=4)
    assert s["latency_ms_std"] == 0 and s["latency_cv"] == 0
    assert s["latency_ms_median_ci95_low"] == s["latency_ms_median_ci95_high"] == 2.0
    assert s["throughput_ips"] == pytest.approx(2000.0)
    one = stats.summarize([5.0], batch_size=1)
    assert one["n_iters"] == 1 and one["latency_ms_std"] == 0
    assert one["latency_ms_median_ci95_low"] == one["latency_ms_median_ci95_high"] == 5.0
    with pytest.raises(ValueError):
        stats.summarize([], batch_size=1)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 10, 31, 64, 101, 500])
def test_median_ci_contains_the_median_and_narrows(n):
    rng = np.random.default_rng(n)
    a = rng.lognormal(0, 0.3, n)
    s = stats.summarize(list(a), batch_size=1)
    assert s["latency_ms_min"] <= s["latency_ms_median_ci95_low"] <= s["latency_ms_median"]
    assert s["latency_ms_median"] <= s["latency_ms_median_ci95_high"] <= s["latency_ms_max"]
    assert s["latency_ms_min"] <= s["latency_ms_median"] <= s["latency_ms_p90"] <= s["latency_ms_p99"] <= s["latency_ms_max"]


def test_median_ci_coverage_is_about_95_percent():
    rng = np.random.default_rng(1)
    true_median = 1.0  # lognormal(0, s) has median exp(0)
    hits = 0
    for _ in range(400):
        lo, hi = stats.median_ci95(np.sort(rng.lognormal(0, 0.5, 50)))
        hits += lo <= true_median <= hi
    assert 0.90 <= hits / 400 <= 0.995


# ------------------------------------------------------------------ timing


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class FakeTimer:
    """Each step 'takes' `dt` seconds of the fake clock."""

    name = "fake"

    def __init__(self, clock, dt):
        self.clock, self.dt, self.calls = clock, dt, 0

    def time_ms(self, step):
        step()
        self.calls += 1
        self.clock.t += self.dt
        return self.dt * 1000.0


@pytest.fixture()
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", c)
    return c


def _measure(clock, dt, **settings):
    steps = []
    timer = FakeTimer(clock, dt)
    messages = []
    m = timing.measure(lambda: steps.append(1), timer, timing.Settings(**settings), progress=messages.append)
    assert len(steps) == timer.calls == m.n_warmup + len(m.latencies_ms)
    return m, messages


def test_measure_counts_warmup_and_timed_iterations(clock):
    m, messages = _measure(clock, 0.01, warmup_iters=3, warmup_min_s=0, min_iters=5, min_time_s=0,
                           max_iters=100, max_time_s=60)
    assert m.n_warmup == 3
    assert m.latencies_ms == [10.0] * 5
    assert m.stopped_by == "min_reached"
    assert m.timed_s == pytest.approx(0.05)
    assert messages and messages[0].startswith("warm-up: 3 iterations")


def test_measure_min_time_keeps_timing_after_min_iters(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=0, warmup_min_s=0, min_iters=2, min_time_s=1.0, max_iters=100,
                    max_time_s=60)
    assert m.n_warmup == 0
    assert len(m.latencies_ms) == 4 and m.stopped_by == "min_reached"


def test_measure_min_iters_wins_over_min_time(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=0, warmup_min_s=0, min_iters=7, min_time_s=0.5, max_iters=100,
                    max_time_s=60)
    assert len(m.latencies_ms) == 7 and m.stopped_by == "min_reached"


def test_measure_max_iters_caps(clock):
    m, _ = _measure(clock, 0.01, warmup_iters=1, warmup_min_s=0, min_iters=50, min_time_s=0, max_iters=7,
                    max_time_s=60)
    assert len(m.latencies_ms) == 7 and m.stopped_by == "max_iters"


def test_measure_max_time_stops_before_min_iters(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=0, warmup_min_s=0, min_iters=1000, min_time_s=0, max_iters=2000,
                    max_time_s=1.0)
    assert len(m.latencies_ms) == 4 and m.stopped_by == "max_time"
    assert m.timed_s == pytest.approx(1.0)


def test_measure_warmup_min_time_and_its_cap(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=1, warmup_min_s=1.0, min_iters=1, min_time_s=0, max_iters=10,
                    max_time_s=60)
    assert m.n_warmup == 4  # until 1 s has passed
    m, _ = _measure(clock, 0.25, warmup_iters=2, warmup_min_s=100, min_iters=1, min_time_s=0, max_iters=10,
                    max_time_s=60)
    assert m.n_warmup == 20  # capped at 10 x warmup_iters


def test_measure_warmup_gives_up_after_max_time(clock):
    m, _ = _measure(clock, 0.25, warmup_iters=100, warmup_min_s=0, min_iters=1, min_time_s=0, max_iters=10,
                    max_time_s=1.0)
    assert m.n_warmup == 5  # first check past 1 s
    assert len(m.latencies_ms) == 1


def test_settings_from_config_ignores_other_keys():
    s = timing.Settings.from_config({"warmup_iters": 2, "min_iters": 9, "num_buffers": 4, "cpu_threads": None})
    assert (s.warmup_iters, s.min_iters, s.max_iters) == (2, 9, 2000)


def test_perf_counter_timer_times_the_step():
    ms = timing.PerfCounterTimer().time_ms(lambda: time.sleep(0.02))
    assert 19 <= ms < 1000


# ------------------------------------------------------------------ GPU telemetry bookkeeping


def test_memory_trace_peak():
    t = gpu.MemoryTrace(baseline_device_mb=1000.0)
    assert t.peak() == (None, None)
    t.add(None, 1500.0)
    t.add(None, 1800.0)
    t.add(None, None)
    assert t.peak() == (800.0, "nvml_device_delta")
    t.add(300.0, 1900.0)
    t.add(650.0, None)
    assert t.peak() == (650.0, "nvml_process")  # process figures win
    t2 = gpu.MemoryTrace(baseline_device_mb=2000.0)
    t2.add(None, 1500.0)  # another process freed memory meanwhile: never negative
    assert t2.peak() == (0.0, "nvml_device_delta")
    t3 = gpu.MemoryTrace(baseline_device_mb=None)
    t3.add(None, 1500.0)
    assert t3.peak() == (None, None)  # no baseline: no delta


def test_memory_trace_start_uses_the_method_of_the_peak():
    t = gpu.MemoryTrace(baseline_device_mb=1000.0)
    assert t.start() is None
    t.add(None, 1500.0)
    t.add(None, 1800.0)
    assert t.start() == 500.0  # the device's growth at the first reading
    t.add(300.0, 1900.0)
    t.add(650.0, None)
    assert t.start() == 300.0  # the process's own first reading, as peak() prefers it


def test_energy_window():
    # counter: 10 J over 2 s for 100 images
    assert gpu.energy_window(5_000, 15_000, 2.0, 100) == pytest.approx((0.1, 5.0))
    # the counter wins over samples
    assert gpu.energy_window(5_000, 15_000, 2.0, 100, [300.0]) == pytest.approx((0.1, 5.0))
    # no counter: mean power x window
    assert gpu.energy_window(None, None, 2.0, 100, [100.0, 200.0]) == pytest.approx((3.0, 150.0))
    assert gpu.energy_window(5_000, None, 2.0, 100, [100.0]) == pytest.approx((2.0, 100.0))
    # a counter that went backwards (reset / wrap) falls back to samples, or nothing
    assert gpu.energy_window(15_000, 5_000, 2.0, 100, [50.0]) == pytest.approx((1.0, 50.0))
    assert gpu.energy_window(15_000, 5_000, 2.0, 100) == (None, None)
    # bad windows
    assert gpu.energy_window(5_000, 15_000, 0.0, 100) == (None, None)
    assert gpu.energy_window(5_000, 15_000, -1.0, 100) == (None, None)
    assert gpu.energy_window(5_000, 15_000, 2.0, 0) == (None, None)
    assert gpu.energy_window(None, None, 2.0, 100, []) == (None, None)
    assert gpu.energy_window(None, None, 2.0, 100, None) == (None, None)


def test_throttle_names():
    assert gpu.throttle_names(None) is None
    assert gpu.throttle_names(0) == "none"
    assert gpu.throttle_names(0x1) == "gpu_idle"
    assert gpu.throttle_names(0x4 | 0x40) == "sw_power_cap,hw_thermal_slowdown"
    assert gpu.throttle_names(0x1FF).split(",") == list(gpu.THROTTLE_BITS.values())


class FakeReader:
    """Recorded readings, served in order (the last one repeats)."""

    def __init__(self, device_mb, process_mb, power_w, busy_pct=(None,)):
        self.device = list(device_mb)
        self.process = list(process_mb)
        self.power = list(power_w)
        self.busy = list(busy_pct)
        self.lock = threading.Lock()
        self.calls = 0

    @staticmethod
    def _next(seq):
        return seq.pop(0) if len(seq) > 1 else seq[0]

    def device_mb(self):
        with self.lock:
            self.calls += 1
            return self._next(self.device)

    def process_mb(self):
        with self.lock:
            return self._next(self.process)

    def power_w(self):
        with self.lock:
            return self._next(self.power)

    def busy_pct(self):
        with self.lock:
            return self._next(self.busy)

    def sm_clock_mhz(self):
        return 1980.0


def test_gpu_sampler_reads_baseline_then_samples_until_stopped():
    reader = FakeReader(device_mb=[1000.0, 1200.0, 1700.0, 1500.0], process_mb=[None], power_w=[250.0, None, 300.0])
    sampler = gpu.GpuSampler(reader, interval_s=0.001)
    assert sampler.trace.baseline_device_mb == 1000.0  # read at construction, before any work
    assert reader.calls == 1 and sampler.power_w == []
    sampler.start()
    deadline = time.monotonic() + 5
    while len(sampler.trace.device_mb) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    sampler.stop()
    assert not sampler._thread.is_alive()
    n = len(sampler.trace.device_mb)
    assert n >= 5
    assert sampler.trace.device_mb[:3] == [1200.0, 1700.0, 1500.0]
    assert 250.0 in sampler.power_w and 300.0 in sampler.power_w and None not in sampler.power_w
    assert sampler.trace.peak() == (700.0, "nvml_device_delta")
    time.sleep(0.02)
    assert len(sampler.trace.device_mb) == n  # nothing samples after stop()


def test_gpu_busy_is_the_mean_of_the_readings_that_describe_the_window():
    # (monotonic s, %): a reading describes the NVML period before it, so the first
    # BUSY_SETTLE_S of the window is skipped (it still covers the time before the window)
    samples = [(9.9, 10.0), (10.05, 20.0), (10.2, 80.0), (10.4, 90.0), (10.6, 100.0), (11.2, 0.0)]
    assert gpu.busy_in_window(samples, 10.0, 10.6) == 90.0
    assert gpu.busy_in_window(samples, 10.0, 10.1) is None  # too short for a reading of its own
    reader = FakeReader(device_mb=[1.0], process_mb=[None], power_w=[None], busy_pct=[None, 55.0])
    sampler = gpu.GpuSampler(reader, interval_s=0.001)
    sampler.sample_once()
    sampler.sample_once()
    assert [pct for _, pct in sampler.busy_pct] == [55.0]  # an unavailable reading is skipped


def test_gpu_sampler_stop_without_start_takes_one_reading():
    reader = FakeReader(device_mb=[500.0, 900.0], process_mb=[120.0], power_w=[None])
    sampler = gpu.GpuSampler(reader, interval_s=0.001)
    sampler._stop.set()
    sampler.sample_once()
    assert sampler.trace.peak() == (120.0, "nvml_process")
    assert sampler.power_w == []


# ------------------------------------------------------------------ shards


def _row(**kw):
    row = {"model": "resnet18", "backend": "pytorch", "precision": "fp32", "device": "cpu", "resolution": 32,
           "batch_size": 2, "io": "device", "status": "ok", "reason": "", "n_iters": 3,
           "latency_ms_median": 1.5, "latencies_ms": [1.0, 1.5, 2.0], "num_threads": 2, "seed": 0,
           "gpu_index": None}
    row.update(kw)
    return row


def test_shard_roundtrip(tmp_path):
    path = tmp_path / "a" / "b" / "r32_b2.parquet"
    rows = [_row(), _row(io="host", status="skipped", reason="no CUDA device", latencies_ms=None, n_iters=None)]
    shard.write_shard(rows, path)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert pq.read_schema(path).remove_metadata().equals(SHARD_SCHEMA)
    t = shard.read_shards([path])
    assert t.schema.equals(SHARD_SCHEMA)
    back = t.to_pylist()
    assert len(back) == 2
    for original, got in zip(rows, back):
        assert set(got) == set(COLUMN_NAMES)
        for k, v in original.items():
            assert got[k] == v, k
        assert got["export_s"] is None and got["torch_version"] is None


def test_read_shards_fills_missing_columns_with_nulls(tmp_path):
    shard.write_shard([_row()], tmp_path / "new.parquet")
    # an "older" shard: fewer columns, another order, int64 where the schema has int32
    old = pa.table({"batch_size": pa.array([4], pa.int64()), "model": ["resnet18"], "backend": ["onnxruntime"],
                    "status": ["ok"], "latency_ms_median": [2.0], "resolution": pa.array([48], pa.int64())})
    pq.write_table(old, tmp_path / "old.parquet")
    t = shard.read_shards([tmp_path / "new.parquet", tmp_path / "old.parquet"])
    assert t.schema.equals(SHARD_SCHEMA) and t.num_rows == 2
    rows = t.to_pylist()
    assert rows[1]["backend"] == "onnxruntime" and rows[1]["batch_size"] == 4 and rows[1]["resolution"] == 48
    assert rows[1]["latencies_ms"] is None and rows[1]["io"] is None and rows[1]["torch_version"] is None
    assert rows[0]["latencies_ms"] == [1.0, 1.5, 2.0]


def test_read_no_shards_is_an_empty_table():
    t = shard.read_shards([])
    assert t.num_rows == 0 and t.schema.equals(SHARD_SCHEMA)


def test_normalize_rejects_unknown_columns(tmp_path):
    full = shard.normalize({"model": "m"})
    assert list(full) == COLUMN_NAMES and full["model"] == "m" and full["status"] is None
    with pytest.raises(KeyError, match="latency_median_ms"):
        shard.normalize({"model": "m", "latency_median_ms": 1.0})
    with pytest.raises(KeyError):
        shard.write_shard([_row(bogus=1)], tmp_path / "x.parquet")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ GPU claims


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


# ------------------------------------------------------------------ isolation: fork server and subprocess


def _children_of(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def server_locks(tmp_path_factory):
    """A lock dir for one fork server; teardown removes it, which makes the server exit."""
    locks = tmp_path_factory.mktemp("fs") / "locks"
    yield locks
    pids = []
    for log in locks.glob("*.sock.log"):
        pids += [int(p) for p in re.findall(r"fork server (\d+) listening", log.read_text())]
    shutil.rmtree(locks, ignore_errors=True)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), f"fork server {pids} outlived its socket"


def _server_pid(locks: Path) -> int:
    (log,) = locks.glob("*.sock.log")
    return int(re.findall(r"fork server (\d+) listening", log.read_text())[-1])


def _run(args, lock_dir, timeout_s=120.0):
    return isolation.run_inferbench(args, timeout_s, dict(os.environ), str(lock_dir))


def test_version_through_the_fork_server(server_locks, monkeypatch, capsys):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    path = forkserver.socket_path(server_locks)
    assert path.parent == server_locks, "socket fell back to /tmp: teardown could not stop the server"
    rc, how = _run(["--version"], server_locks)
    assert (rc, how) == (0, "")
    assert f"inferbench {__version__}" in capsys.readouterr().err
    assert path.exists()
    server = _server_pid(server_locks)
    # a second call reuses the same server
    rc, _ = _run(["--version"], server_locks)
    assert rc == 0 and _server_pid(server_locks) == server
    assert "fork server unavailable" not in capsys.readouterr().err


def test_version_through_a_subprocess(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "0")
    rc, how = _run(["--version"], tmp_path / "locks")
    assert (rc, how) == (0, "")
    assert f"inferbench {__version__}" in capsys.readouterr().err
    assert not (tmp_path / "locks").exists()  # no server was started


def test_a_failing_command_reports_its_exit_code(server_locks, monkeypatch, capsys):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    rc, how = _run(["validate", str(server_locks / "no-such.yaml")], server_locks)
    assert rc == 2
    assert how.startswith("the worker process exited with code 2") and "does not exist" in how


def _hang_args(tmp_path: Path) -> list[str]:
    """`inferbench validate FIFO` blocks forever opening a FIFO nobody writes."""
    fifo = tmp_path / "hang.fifo"
    os.mkfifo(fifo)
    return ["validate", str(fifo)]


def _kill_child_when_it_appears(parent_pid: int, marker: str | None, exclude: set, result: dict,
                                done: threading.Event):
    """SIGKILL the first new child of `parent_pid` (whose command line has `marker`, if given)."""
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        for pid in set(_children_of(parent_pid)) - exclude:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker is None or marker in cmdline:
                os.kill(pid, signal.SIGKILL)
                result["killed"] = pid
                return
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["forkserver", "subprocess"])
def test_a_child_killed_by_a_signal_is_reported(tmp_path, server_locks, monkeypatch, mode):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1" if mode == "forkserver" else "0")
    if mode == "forkserver":
        assert _run(["--version"], server_locks)[0] == 0  # make sure the server is up
        parent = _server_pid(server_locks)
        marker = None  # forked children keep the server's command line
    else:
        parent = os.getpid()
        marker = "hang.fifo"
    result, done = {}, threading.Event()
    killer = threading.Thread(target=_kill_child_when_it_appears,
                              args=(parent, marker, set(_children_of(parent)), result, done))
    killer.start()
    try:
        rc, how = _run(_hang_args(tmp_path), server_locks, timeout_s=60)
    finally:
        done.set()
        killer.join()
    assert result.get("killed"), "never saw the child"
    assert rc == -signal.SIGKILL
    # no OOM kill was counted: a kill from outside, which the cell job records with no shard
    assert how.startswith("the worker process was killed by SIGKILL from outside"), how
    assert isolation.stopped_from_outside(rc, how) and isolation.failure_status(rc, how) == "error"


@pytest.mark.parametrize("mode", ["forkserver", "subprocess"])
def test_a_hanging_child_is_killed_at_the_timeout(tmp_path, server_locks, monkeypatch, mode):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1" if mode == "forkserver" else "0")
    t0 = time.monotonic()
    rc, how = _run(_hang_args(tmp_path), server_locks, timeout_s=2.0)
    assert rc is None
    assert how == "timed out after 2 s (cell_timeout_s)"
    assert time.monotonic() - t0 < 30
    if mode == "forkserver":
        deadline = time.monotonic() + 10
        while _children_of(_server_pid(server_locks)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _children_of(_server_pid(server_locks)), "the timed-out child is still running"


def test_describe_exit_statuses():
    assert isolation._describe(0, [], 10) == ""
    assert isolation._describe(None, [], 10) == "timed out after 10 s (cell_timeout_s)"
    assert isolation._describe(3, ["a", "b", "c", "d"], 10) == "the worker process exited with code 3; last output: b | c | d"
    assert isolation._describe(-signal.SIGSEGV, ["x"], 10).startswith("the worker process died from SIGSEGV;")


# ------------------------------------------------------------------ the warm worker (gpu_worker: warm)


def _run_warm(args, lock_dir, key="0", timeout_s=120.0):
    return isolation.run_inferbench(args, timeout_s, dict(os.environ), str(lock_dir), warm_key=key)


def _warm_pids(locks: Path) -> list[int]:
    return [p for p in _children_of(_server_pid(locks)) if _alive(p)]


def test_a_warm_worker_serves_one_request_after_another_in_one_process(server_locks, monkeypatch, capsys):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    t0 = time.monotonic()
    assert _run_warm(["--version"], server_locks) == (0, "")
    # a new worker must not hold its first caller's output pipe (the caller would wait for its end)
    assert time.monotonic() - t0 < 8.0
    (worker,) = _warm_pids(server_locks)  # it stays, waiting for the next cell
    assert _run_warm(["--version"], server_locks) == (0, "")
    # a failing command is that request's exit code; the worker carries on
    rc, how = _run_warm(["validate", str(server_locks / "no-such.yaml")], server_locks)
    assert rc == 2 and "does not exist" in how
    assert _run_warm(["--version"], server_locks) == (0, "")
    assert _warm_pids(server_locks) == [worker]
    # each request's output reached its own caller
    assert capsys.readouterr().err.count(f"inferbench {__version__}") == 3


def test_a_killed_warm_worker_fails_its_request_and_the_next_gets_a_new_one(tmp_path, server_locks, monkeypatch):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    assert _run_warm(["--version"], server_locks, key="k")[0] == 0
    before = set(_warm_pids(server_locks))
    result, done = {}, threading.Event()
    # the hang runs inside the existing worker: kill that one
    killer = threading.Thread(target=lambda: (time.sleep(1.0), [os.kill(p, signal.SIGKILL) for p in before],
                                              result.update(killed=True)))
    killer.start()
    try:
        rc, how = _run_warm(_hang_args(tmp_path), server_locks, key="k", timeout_s=60)
    finally:
        done.set()
        killer.join()
    assert rc == -signal.SIGKILL and how.startswith("the worker process was killed by SIGKILL from outside")
    assert _run_warm(["--version"], server_locks, key="k")[0] == 0
    assert not set(_warm_pids(server_locks)) & before, "the dead worker was reused"


def test_a_hanging_warm_request_is_killed_at_the_timeout(tmp_path, server_locks, monkeypatch):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    rc, how = _run_warm(_hang_args(tmp_path), server_locks, key="t", timeout_s=2.0)
    assert rc is None and how == "timed out after 2 s (cell_timeout_s)"
    assert _run_warm(["--version"], server_locks, key="t")[0] == 0


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
        rc, how = _run_warm(["cell", "--worker", "--spec", spec_json, "--out", str(out)], server_locks, key="cells")
        assert (rc, how) == (0, "")
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


def test_rss_peak_can_restart(tmp_path):
    from inferbench.measure.telemetry import host

    big = bytearray(200 * 2**20)
    big[:: 4096] = b"x" * len(big[:: 4096])
    before = host.rss_peak_mb()
    del big
    if not host.reset_rss_peak():
        pytest.skip("this kernel refuses /proc/self/clear_refs")
    assert host.rss_peak_mb() < before - 150


def test_a_forked_child_collects_garbage_without_scanning_the_servers_imports():
    """freeze_before_fork: a warm worker collects after every cell; with torch imported a full
    collection scanned ~340k objects (0.28 s on a 2-core VM) until the server froze them."""
    code = textwrap.dedent("""
        import gc, os, time, torch, torchvision
        from inferbench.process.forkserver import freeze_before_fork

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


def test_a_job_whose_worker_wrote_the_shard_imports_no_parquet_library(tmp_path):
    """The job (Snakemake's process) only claims, waits and renames: importing pyarrow (and the
    pandas it pulls in on first use) cost ~0.5 s of every job on a 2-core VM. The worker writes
    the whole shard, the job's own times included."""
    from inferbench.sweep import config as configmod, spec as specmod

    config = configmod.load_config(Path(__file__).parent / "configs" / "tiny.yaml")
    cell = configmod.Cell("resnet18", "pytorch", "cpu", "fp32", 32, 2)
    out = tmp_path / "cell.parquet"
    code = textwrap.dedent("""
        import atexit, sys
        atexit.register(lambda: print("parquet libraries in the job:", sorted(m for m in ("pyarrow", "pandas") if m in sys.modules)))
        from inferbench.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code, "cell", "--spec", specmod.cell_spec_for(config, cell).to_json(),
                           "--out", str(out), "--lock-dir", str(tmp_path / "locks")],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "workflow")))
    elapsed = time.time() - t0
    assert "parquet libraries in the job: []" in proc.stdout, (proc.stdout, proc.stderr[-3000:])
    (row,) = pq.read_table(out).to_pylist()
    assert row["status"] == "ok" and row["gpu_wait_s"] is None
    phases = sum(row[k] for k in ("worker_start_s", "setup_s", "load_s", "warmup_s", "timed_s", "reference_s"))
    assert phases <= row["job_wall_s"] <= elapsed
    assert not list(tmp_path.glob("*.worker"))
