"""Was a worker that died from SIGKILL killed for memory, or by someone?

SIGKILL is what the kernel's OOM killer sends, but also `kill -9`, a batch scheduler or a
watchdog. Only the first is the cell's own outcome (`oom`), so it is told apart by evidence:

- the OOM-kill counter of the worker's memory cgroup (`oom_kill` in cgroup v2's memory.events,
  or in cgroup v1's memory.oom_control) rose while the worker ran; the kernel counts every OOM
  kill there, for a cgroup's limit and for the whole machine running out alike; or
- the worker's last sampled resident memory had reached its memory limit (the cgroup's, else
  the machine's), for systems whose counters cannot be read.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
NEAR_LIMIT = 0.9  # last RSS at or above this share of the limit counts as out of memory
SAMPLE_S = 0.2
NO_LIMIT_V1 = 1 << 60  # cgroup v1 writes "no limit" as a huge number


def memory_cgroup_dirs(pid: int | str = "self") -> list[Path]:
    """The memory cgroup folder(s) of a process. Inside a container the path in /proc/PID/cgroup
    may not exist under the mount, whose root is then the container's own cgroup."""
    dirs = []
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return dirs
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            base = CGROUP_ROOT
        elif "memory" in controllers.split(","):  # cgroup v1
            base = CGROUP_ROOT / "memory"
        else:
            continue
        full = base / path.lstrip("/")
        for candidate in (full, base):
            if (candidate / "memory.events").is_file() or (candidate / "memory.oom_control").is_file():
                dirs.append(candidate)
                break
    return dirs


def _field(path: Path, name: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def oom_kills(cgroup: Path) -> int | None:
    """The kernel's count of processes OOM-killed in this cgroup (and below), or None."""
    count = _field(cgroup / "memory.events", "oom_kill")
    return count if count is not None else _field(cgroup / "memory.oom_control", "oom_kill")


def memory_limit_bytes(cgroups: list[Path]) -> int | None:
    """The tightest limit on the process: its cgroups' and the machine's memory."""
    limits = []
    for cgroup in cgroups:
        for name in ("memory.max", "memory.limit_in_bytes"):
            try:
                text = (cgroup / name).read_text().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < NO_LIMIT_V1:
                limits.append(int(text))
    total_kb = _field_kb(Path("/proc/meminfo"), "MemTotal:")
    if total_kb:
        limits.append(total_kb * 1024)
    return min(limits) if limits else None


def _field_kb(path: Path, name: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MemoryWatch:
    """Watches one process from its start: its cgroups' OOM-kill counters, and its RSS."""

    def __init__(self, pid: int):
        self.pid = pid
        self.cgroups = memory_cgroup_dirs(pid) or memory_cgroup_dirs()
        self.kills_before = {c: oom_kills(c) for c in self.cgroups}
        self.limit = memory_limit_bytes(self.cgroups)
        self.last_rss: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = rss_bytes(self.pid)
            if rss is None:
                return  # gone (or not ours to read)
            self.last_rss = rss
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def oom_evidence(self) -> str | None:
        """Why we believe the process was killed for memory, or None."""
        for cgroup, before in self.kills_before.items():
            after = oom_kills(cgroup)
            if before is not None and after is not None and after > before:
                return f"the kernel counted {after - before} OOM kill(s) in memory cgroup {cgroup} while it ran"
        if self.limit and self.last_rss and self.last_rss >= NEAR_LIMIT * self.limit:
            return (f"its resident memory had reached {self.last_rss / 2**20:.0f} MiB of the "
                    f"{self.limit / 2**20:.0f} MiB limit")
        return None
