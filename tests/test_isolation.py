"""The isolation of a step in a child process, through the fork server and through a plain
subprocess: exit codes, signals, kills from outside and time-outs, each its own result; and a cell
job whose worker writes the whole shard."""

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
import pytest

from inferbench import __version__
from inferbench.process import forkclient, isolation
from inferbench.process.result import ChildResult, OutputTail
from sweep import children_of, hang_args, server_pid


def _run(args, lock_dir, timeout_s=120.0):
    return isolation.run_inferbench(args, timeout_s, dict(os.environ), str(lock_dir))


def test_version_through_the_fork_server(server_locks, monkeypatch, capsys):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    path = forkclient.socket_path(server_locks)
    assert path.parent == server_locks, "socket fell back to /tmp: teardown could not stop the server"
    result = _run(["--version"], server_locks)
    assert result.ok and result.describe() == ""
    assert f"inferbench {__version__}" in capsys.readouterr().err
    assert path.exists()
    server = server_pid(server_locks)
    # a second call reuses the same server
    assert _run(["--version"], server_locks).ok and server_pid(server_locks) == server
    assert "fork server unavailable" not in capsys.readouterr().err


def test_version_through_a_subprocess(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "0")
    result = _run(["--version"], tmp_path / "locks")
    assert result.ok and result.describe() == ""
    assert f"inferbench {__version__}" in capsys.readouterr().err
    assert not (tmp_path / "locks").exists()  # no server was started


def test_a_failing_command_reports_its_exit_code(server_locks, monkeypatch, capsys):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1")
    result = _run(["validate", str(server_locks / "no-such.yaml")], server_locks)
    assert (result.returncode, result.signal, result.timed_out) == (2, None, False)
    how = result.describe()
    assert how.startswith("the worker process exited with code 2") and "does not exist" in how


def _kill_child_when_it_appears(parent_pid: int, marker: str | None, exclude: set, result: dict,
                                done: threading.Event):
    """SIGKILL the first new child of `parent_pid` (whose command line has `marker`, if given)."""
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        for pid in set(children_of(parent_pid)) - exclude:
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
        assert _run(["--version"], server_locks).ok  # make sure the server is up
        parent = server_pid(server_locks)
        marker = None  # forked children keep the server's command line
    else:
        parent = os.getpid()
        marker = "hang.fifo"
    result, done = {}, threading.Event()
    killer = threading.Thread(target=_kill_child_when_it_appears,
                              args=(parent, marker, set(children_of(parent)), result, done))
    killer.start()
    try:
        ended = _run(hang_args(tmp_path), server_locks, timeout_s=60)
    finally:
        done.set()
        killer.join()
    assert result.get("killed"), "never saw the child"
    assert (ended.returncode, ended.signal, ended.timed_out) == (None, signal.SIGKILL, False)
    # no OOM kill was counted: a kill from outside, which the cell job records with no shard
    how = ended.describe()
    assert how.startswith("the worker process was killed by SIGKILL from outside"), how
    assert ended.stopped_from_outside and not ended.oom_killed and ended.failure_status == "error"


@pytest.mark.parametrize("mode", ["forkserver", "subprocess"])
def test_a_hanging_child_is_killed_at_the_timeout(tmp_path, server_locks, monkeypatch, mode):
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "1" if mode == "forkserver" else "0")
    t0 = time.monotonic()
    result = _run(hang_args(tmp_path), server_locks, timeout_s=2.0)
    assert result.timed_out and result.returncode is None and not result.stopped_from_outside
    assert result.describe() == "timed out after 2 s (cell_timeout_s)"
    assert time.monotonic() - t0 < 30
    if mode == "forkserver":
        deadline = time.monotonic() + 10
        while children_of(server_pid(server_locks)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not children_of(server_pid(server_locks)), "the timed-out child is still running"


def test_each_exit_status_is_described_for_people():
    assert ChildResult(returncode=0).describe() == ""
    assert ChildResult.timeout(10).describe() == "timed out after 10 s (cell_timeout_s)"
    assert (ChildResult(returncode=3, output_tail=("a", "b", "c", "d")).describe()
            == "the worker process exited with code 3; last output: b | c | d")
    assert ChildResult(signal=signal.SIGSEGV, output_tail=("x",)).describe().startswith("the worker process died from SIGSEGV;")
    oom = ChildResult(signal=signal.SIGKILL, oom_evidence="the kernel counted 1 OOM kill(s)")
    assert oom.describe().startswith("out of memory: the worker process was killed by SIGKILL (the kernel counted")


def test_what_a_failed_worker_records_comes_from_the_results_fields():
    killed = ChildResult(signal=signal.SIGKILL)
    assert killed.stopped_from_outside and killed.failure_status == "error"
    oom = ChildResult(signal=signal.SIGKILL, oom_evidence="its resident memory had reached the limit")
    assert oom.oom_killed and not oom.stopped_from_outside and oom.failure_status == "oom"
    # its own output saying so, as it exited: an allocation failure that escaped the cell
    printed = ChildResult(returncode=1, output_tail=("Traceback", "torch.OutOfMemoryError: CUDA out of memory."))
    assert printed.failure_status == "oom" and not printed.stopped_from_outside
    assert ChildResult(returncode=1, output_tail=("ValueError: no",)).failure_status == "error"
    assert ChildResult(signal=signal.SIGSEGV).failure_status == "error"
    timed_out = ChildResult.timeout(5)
    assert not timed_out.ok and not timed_out.stopped_from_outside and timed_out.failure_status == "error"


_ENDINGS = {
    "exit 0": ("print('done')", dict(returncode=0, signal=None, timed_out=False, ok=True), ""),
    "exit 3": ("import sys; print('bad input'); sys.exit(3)", dict(returncode=3, signal=None, timed_out=False, ok=False),
               "the worker process exited with code 3; last output: bad input"),
    "a signal": ("import os, signal; print('crashing', flush=True); os.kill(os.getpid(), signal.SIGSEGV)",
                 dict(returncode=None, signal=signal.SIGSEGV, timed_out=False, ok=False),
                 "the worker process died from SIGSEGV; last output: crashing"),
    "killed from outside": ("import os, signal; print('stopping', flush=True); os.kill(os.getpid(), signal.SIGTERM)",
                            dict(returncode=None, signal=signal.SIGTERM, timed_out=False, ok=False,
                                 stopped_from_outside=True),
                            "the worker process was killed by SIGTERM from outside (no out-of-memory kill seen); "
                            "last output: stopping"),
    "timed out": ("import time; print('waiting', flush=True); time.sleep(60)",
                  dict(returncode=None, timed_out=True, ok=False, stopped_from_outside=False),
                  "timed out after 2 s (cell_timeout_s)"),
}


@pytest.mark.parametrize("ending", list(_ENDINGS))
def test_each_way_a_child_ends_is_its_own_result(ending):
    """A real child process (a tiny Python program), run the way a cell is when the fork server is off."""
    code, fields, description = _ENDINGS[ending]
    seen = []
    t0 = time.monotonic()
    result = isolation.run_subprocess([sys.executable, "-c", code], 2.0, dict(os.environ), OutputTail(seen.append))
    assert time.monotonic() - t0 < 30
    assert {name: getattr(result, name) for name in fields} == fields
    assert result.describe() == description
    assert result.output_tail == tuple(line.strip() for line in seen) and len(seen) == 1  # passed on, and kept
    assert result.failure_status == "error"  # none of them ran out of memory


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
