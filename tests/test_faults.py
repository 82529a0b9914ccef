"""Faults that must lose or falsify nothing: a worker killed from outside (real job, real SIGKILL),
an OOM kill told apart from it, crafted archives for verify, and a backend that stopped working
or vanished for compare's regression gate."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from inferbench import cli
from inferbench.process import isolation, oomwatch
from inferbench.records import archive
from inferbench.sweep.config import Cell, load_config
from inferbench.sweep.spec import cell_spec_for
from synthetic import synthetic_summary, write_summary
from sweep import TINY, children_of, cmdline, hang_args


# ------------------------------------------------------------------ a killed worker


def test_a_worker_killed_from_outside_leaves_no_shard_and_fails_its_job(tmp_path):
    """`kill -9` of a cell's worker: not out of memory, so no `oom` shard that would never rerun."""
    config = yaml.safe_load(TINY.read_text())
    config.update(model="mobilenet_v3_small", resolutions=[32], batch_sizes=[1], devices=["cpu"],
                  backends={"pytorch": {}}, per_device={})
    config["measurement"].update(min_time_s=60, max_time_s=120)  # still running when killed
    spec = cell_spec_for(load_config(config), Cell("mobilenet_v3_small", "pytorch", "cpu", "fp32", 32, 1))
    shard = tmp_path / "shards" / "r32_b1.parquet"
    job = subprocess.Popen([sys.executable, "-m", "inferbench", "cell", "--spec", spec.to_json(), "--out", str(shard),
                            "--lock-dir", str(tmp_path / "locks")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, INFERBENCH_FORKSERVER="0"))
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and job.poll() is None:
        for pid in children_of(job.pid):
            if "--worker" in cmdline(pid):
                time.sleep(1.0)  # let it get going: imports, model, its first iterations
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.05)
    out, err = job.communicate(timeout=60)
    assert killed, f"never saw the worker\n{err[-3000:]}"
    assert job.returncode == 1, err[-3000:]
    assert "killed by SIGKILL from outside" in err and "No shard written" in err, err[-3000:]
    assert not shard.exists(), "a killed cell left a shard: Snakemake would never measure it again"
    assert not shard.parent.exists() or not any(shard.parent.iterdir())  # nor the worker's temporary file


def _fake_cgroup(root: Path, oom_kills: int, limit: str = "max") -> None:
    """A memory cgroup folder for both layouts: v2 at the root, v1 under memory/ (the watch falls
    back to the mount's root when /proc/PID/cgroup's path is not under it, as in a container)."""
    (root / "memory").mkdir(parents=True, exist_ok=True)
    (root / "memory.events").write_text(f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {oom_kills}\n")
    (root / "memory.max").write_text(limit + "\n")
    (root / "memory" / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {oom_kills}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text((limit if limit != "max" else str(2**63 - 4096)) + "\n")


@pytest.mark.parametrize("kernel_counted_an_oom_kill", [True, False])
def test_a_sigkill_is_out_of_memory_only_when_the_cgroup_counted_an_oom_kill(tmp_path, monkeypatch,
                                                                            kernel_counted_an_oom_kill):
    """A real worker, a real SIGKILL; the kernel's counter is played by a file (a real OOM kill
    would take this machine's memory)."""
    monkeypatch.setenv("INFERBENCH_FORKSERVER", "0")
    cgroup = tmp_path / "cgroup"
    _fake_cgroup(cgroup, oom_kills=4)
    monkeypatch.setattr(oomwatch, "CGROUP_ROOT", cgroup)
    me = os.getpid()
    before = set(children_of(me))

    def kill_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [p for p in set(children_of(me)) - before if "hang.fifo" in cmdline(p)]
            if new:
                time.sleep(0.5)  # the watch has read the counters by now
                if kernel_counted_an_oom_kill:
                    _fake_cgroup(cgroup, oom_kills=5)
                os.kill(new[0], signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_worker)
    killer.start()
    result = isolation.run_inferbench(hang_args(tmp_path), 60, dict(os.environ), str(tmp_path / "locks"))
    killer.join()
    assert result.signal == signal.SIGKILL and not result.timed_out
    how = result.describe()
    if kernel_counted_an_oom_kill:
        assert how.startswith("out of memory: the worker process was killed by SIGKILL"), how
        assert "1 OOM kill(s) in memory cgroup" in how
        assert result.oom_killed and result.failure_status == "oom" and not result.stopped_from_outside
    else:
        assert "from outside" in how and result.stopped_from_outside and not result.oom_killed, how


def test_a_sigkill_at_the_memory_limit_is_out_of_memory_where_no_counter_is_readable(tmp_path, monkeypatch):
    cgroup = tmp_path / "cgroup"
    _fake_cgroup(cgroup, oom_kills=0, limit=str(2**20))  # 1 MiB: any Python process is at it
    # a kernel that keeps no OOM-kill counter
    (cgroup / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\n")
    (cgroup / "memory" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    monkeypatch.setattr(oomwatch, "CGROUP_ROOT", cgroup)
    child = subprocess.Popen(["sleep", "30"])
    try:
        watch = oomwatch.MemoryWatch(child.pid)
        time.sleep(0.5)
        child.kill()
        child.wait()
        watch.stop()
    finally:
        child.kill()
    assert watch.limit == 2**20 and watch.last_rss
    assert all(oomwatch.oom_kills(c) is None for c in watch.cgroups)
    assert "of the 1 MiB limit" in (watch.oom_evidence() or "")


# ------------------------------------------------------------------ verify: crafted archives


@pytest.fixture()
def good_archive(tmp_path):
    results = tmp_path / "results"
    (results / "shards").mkdir(parents=True)
    df = synthetic_summary(batch_sizes=(1,), resolutions=(224,))
    write_summary(df, results / "summary.parquet")
    (results / "report.md").write_text("# report\n")
    path, _ = archive.write_archive(results, tmp_path / "good.tar.gz", run_id="r1")
    return path


def _craft(src: Path, dst: Path, rename=None, extra: tarfile.TarInfo | None = None) -> Path:
    """Copies an archive member by member, renaming some (rename(name) -> new name) and adding one."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read()
            info.name = rename(info.name) if rename else info.name
            tout.addfile(info, io.BytesIO(data))
        if extra is not None:
            tout.addfile(extra)
    return dst


def _verify(path: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main(["verify", str(path)])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_verify_refuses_a_symlink_member(good_archive, tmp_path, capsys):
    link = tarfile.TarInfo("inferbench-r1/shards/evil.parquet")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    rc, out = _verify(_craft(good_archive, tmp_path / "link.tar.gz", extra=link), capsys)
    assert rc == 2 and "inferbench-r1/shards/evil.parquet" in out and "symbolic link" in out, out


def test_verify_refuses_a_member_moved_under_another_top_folder(good_archive, tmp_path, capsys):
    moved = _craft(good_archive, tmp_path / "moved.tar.gz",
                   rename=lambda n: n.replace("inferbench-r1/", "elsewhere/") if n.endswith("report.md") else n)
    rc, out = _verify(moved, capsys)
    assert rc == 2 and "more than one top folder" in out and "elsewhere" in out, out


def test_verify_refuses_members_all_under_a_top_folder_the_manifest_does_not_name(good_archive, tmp_path, capsys):
    renamed = _craft(good_archive, tmp_path / "renamed.tar.gz", rename=lambda n: n.replace("inferbench-r1/", "other/"))
    rc, out = _verify(renamed, capsys)
    assert rc == 2 and "under other/" in out and "inferbench-r1/" in out, out


def test_the_untouched_archive_still_verifies(good_archive, capsys):
    rc, out = _verify(good_archive, capsys)
    assert rc == 0, out


def _verify_in_process(path: Path, limit_code: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    """`inferbench verify` in a fresh process, after `limit_code` (say, a memory limit) has run."""
    code = f"import sys, resource; from inferbench import cli; {limit_code}; sys.exit(cli.main(['verify', {str(path)!r}]))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


BOMB_BYTES = 2 << 30  # of zeros, in a file of a few MB
ZEROS_CHUNK = 64 << 20


def _gzip_bomb(good: Path, dst: Path) -> Path:
    """The good archive with report.md replaced by BOMB_BYTES of zeros (its manifest, first, still
    says the small size): a tar stream whose zeros are one precompressed gzip member repeated, as
    `cat` of gzip files makes."""
    import gzip

    with tarfile.open(good) as tin:
        members = [(info, tin.extractfile(info).read()) for info in tin.getmembers()]
    head = io.BytesIO()
    with tarfile.open(fileobj=head, mode="w", format=tarfile.PAX_FORMAT) as tout:
        for info, data in members:
            if not info.name.endswith("report.md"):
                tout.addfile(info, io.BytesIO(data))
        bomb = tarfile.TarInfo(f"{members[0][0].name.split('/')[0]}/report.md")
        bomb.size = BOMB_BYTES
        tout.fileobj.write(bomb.tobuf(tarfile.PAX_FORMAT))
        head_bytes = head.getvalue()  # written up to the bomb's header; its zeros follow
        tout.fileobj = io.BytesIO()  # the closing blocks go nowhere: the zeros end the stream
    zeros = gzip.compress(bytes(ZEROS_CHUNK), compresslevel=1)
    with open(dst, "wb") as out:
        out.write(gzip.compress(head_bytes))
        for _ in range(BOMB_BYTES // ZEROS_CHUNK + 1):  # + 1: the tar's end blocks, zeros too
            out.write(zeros)
    return dst


def test_verify_refuses_a_gzip_bomb_unread_under_a_memory_limit(good_archive, tmp_path):
    """A member that claims more than its manifest entry is refused before it is read: under a
    memory limit far below its size, verify names it (exit 1, no traceback), quickly."""
    bomb = _gzip_bomb(good_archive, tmp_path / "bomb.tar.gz")
    assert bomb.stat().st_size < 16 << 20
    limit = "resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, resource.RLIM_INFINITY))"
    start = time.monotonic()
    proc = _verify_in_process(bomb, limit)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "changed: report.md" in proc.stdout, proc.stdout + proc.stderr
    assert "refused unread" in proc.stdout
    assert time.monotonic() - start < 30


def test_verify_out_of_memory_is_its_own_exit_code(good_archive, tmp_path):
    """A real MemoryError while reading (a 48 MB manifest under a limit just above what the process
    already maps): one message and exit 3, not the exit of a failed verification."""
    big = tmp_path / "big.tar.gz"
    with tarfile.open(good_archive) as tin, tarfile.open(big, "w:gz") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read()
            if info.name.endswith("MANIFEST.json"):
                data = data.rstrip(b"}") + b',"pad": "' + b" " * (48 << 20) + b'"}'
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    limit = ("import inferbench.records.archive, inferbench.commands.verify; "  # mapped before the limit
             "vm = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024; "
             "resource.setrlimit(resource.RLIMIT_AS, (vm + (40 << 20), resource.RLIM_INFINITY))")
    proc = _verify_in_process(big, limit)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "out of memory" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def _unpack(path: Path, dest: Path) -> Path:
    dest.mkdir()
    subprocess.run(["tar", "-xzf", str(path), "-C", str(dest)], check=True)
    return dest


@pytest.mark.parametrize("how", ["top folder", "dot"])
def test_verify_accepts_a_plain_tar_repack_and_names_a_changed_file(good_archive, tmp_path, capsys, how):
    """Unpacked and packed again with plain tar (folder members; a leading ./): untouched, it
    verifies; with one file changed, that file is named."""
    unpacked = _unpack(good_archive, tmp_path / "unpacked")
    # `tar -czf x -C dir inferbench-r1` writes folder members; `tar -czf x .` (in dir) a leading ./
    what = ["inferbench-r1"] if how == "top folder" else ["."]
    repacked = tmp_path / "repacked.tar.gz"
    subprocess.run(["tar", "-czf", str(repacked), "-C", str(unpacked), *what], check=True)
    listing = subprocess.run(["tar", "-tzf", str(repacked)], capture_output=True, text=True, check=True).stdout
    assert ("inferbench-r1/\n" in listing) if how == "top folder" else listing.startswith("./")
    rc, out = _verify(repacked, capsys)
    assert rc == 0, out
    report = unpacked / "inferbench-r1" / "report.md"
    report.write_text(report.read_text().upper())  # same size, other bytes
    subprocess.run(["tar", "-czf", str(repacked), "-C", str(unpacked), *what], check=True)
    rc, out = _verify(repacked, capsys)
    assert rc == 1 and "changed: report.md" in out, out


def test_verify_refuses_a_parent_folder_member_in_a_repack(good_archive, tmp_path, capsys):
    evil = tarfile.TarInfo("./inferbench-r1/../../evil.txt")
    rc, out = _verify(_craft(good_archive, tmp_path / "evil.tar.gz", extra=evil), capsys)
    assert rc == 2 and "unsafe" in out and "evil.txt" in out, out


# ------------------------------------------------------------------ compare: the regression gate


def _first_ok(df):
    return df.index[df["status"] == "ok"][0]


def test_ok_to_skipped_is_a_breakage_and_fails_the_gate(tmp_path, capsys):
    old = synthetic_summary(batch_sizes=(1,), resolutions=(224,))
    new = old.copy()
    i = _first_ok(new)
    new.loc[i, ["status", "reason"]] = ["skipped", "Torch-TensorRT is not installed"]
    write_summary(old, tmp_path / "old.parquet")
    write_summary(new, tmp_path / "new.parquet")
    capsys.readouterr()
    assert cli.main(["compare", str(tmp_path / "old.parquet"), str(tmp_path / "new.parquet"),
                     "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "1 broke (ok -> inaccurate/skipped/oom/error)" in out and "(ok -> skipped)" in out, out
    assert f"{old.loc[i, 'backend']}·{old.loc[i, 'precision']}" in out


def test_a_cell_only_in_the_old_run_is_missing_and_fails_the_gate(tmp_path, capsys):
    old = synthetic_summary(batch_sizes=(1,), resolutions=(224,))
    i = _first_ok(old)
    write_summary(old, tmp_path / "old.parquet")
    write_summary(old.drop(index=i), tmp_path / "new.parquet")
    capsys.readouterr()
    assert cli.main(["compare", str(tmp_path / "old.parquet"), str(tmp_path / "new.parquet"),
                     "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "1 missing (in OLD only)" in out and "missing: " in out, out
    # NEW holding a cell OLD lacked is no regression
    assert cli.main(["compare", str(tmp_path / "new.parquet"), str(tmp_path / "old.parquet"),
                     "--fail-on-regression"]) == 0
    assert "1 only in NEW" in capsys.readouterr().out


# ------------------------------------------------------------------ the results folder's lock


def test_the_results_folder_lock_names_its_holder_and_dies_with_it(tmp_path):
    """A process that holds the folder, another that asks for it; then `kill -9` of the holder
    frees it (the kernel releases the lock: nothing stale to clean up)."""
    from inferbench.errors import UserError
    from inferbench.sweep import runlock

    results = tmp_path / "results"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from inferbench.sweep import runlock; "
                               f"f = runlock.hold({str(results)!r}); print('held', flush=True); time.sleep(120)"],
                              cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError) as refused:
            runlock.hold(results)
        message = str(refused.value)
        assert f"results_dir {results} is in use by another inferbench run: pid {holder.pid} on host " in message
        assert f"working directory {tmp_path}" in message and " UTC" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    mine = runlock.hold(results)
    assert json.loads(runlock.lock_path(results).read_text())["pid"] == os.getpid()
    mine.close()
