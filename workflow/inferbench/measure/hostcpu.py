"""The CPU that launches a GPU cell's work: the host's fastest at the moment, not the scheduler's pick.

A launch-bound GPU cell runs at the speed of the one host thread that launches its kernels. On a
virtual machine the CPUs are not equally fast: each vCPU runs on a physical core that other
tenants' work can share or slow, and which vCPUs are slow changes from one second to the next
(docs/method.md, "The host's CPUs are not equally fast": on one H200 machine, at the same moment,
some vCPUs ran a Python loop 1.5x to 1.8x slower than others, and pytorch fp16 batch 32 ran at
11,000 images/s on one vCPU and 24,000 on another). The guest's scheduler cannot see this and
moves the thread between vCPUs, so the same cell measured twice lands at two figures.

`FastestCpu` times a short pure-Python loop on each CPU the process may run on (the kernel
launch path is Python and driver code on that one thread) and pins the calling thread to the
fastest that no other cell's thread holds (CpuClaim): before the warm-up, and again after it,
just before the timed window. Between the window's rounds it checks that CPU again (a
millisecond) and moves to the next fastest if it has slowed: on that H200 machine the CPU under
the thread slowed between two rounds (~0.2 s apart) in about a quarter of them. It restores the
thread's CPUs when the window ends. Where every CPU runs alike (bare metal), it costs a few
milliseconds and changes nothing.

Only the calling thread moves (sched_setaffinity on thread 0); threads started while it is
pinned inherit its CPU, so nothing should start one inside the window.
"""

from __future__ import annotations

import fcntl
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOP_ADDS = 10_000  # about 0.3 ms on a fast core: long enough to see a slow one, short to scan 16
LOOP_REPEATS = 3
# A recheck keeps the CPU while it is at most this much slower than at its scan: the slow
# states measured were 1.5x and more, and a loop this short jitters by a few percent.
RECHECK_TOLERANCE = 1.15
RECHECK_TRIES = 3
# A scan times at most this many CPUs (about 20 ms), a different sample each time on a larger host
MAX_SCANNED = 16


def loop_us(adds: int = LOOP_ADDS, repeats: int = LOOP_REPEATS) -> float:
    """Median microseconds of a pure-Python loop of `adds` additions on the CPU it runs on."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        total = 0
        for i in range(adds):
            total += i
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


class CpuClaim:
    """One measuring thread per CPU on this host: an exclusive lock on a file per CPU in the
    temporary folder, held while the thread is pinned there, so that cells measured at once
    (`--resources gpu=K`) launch from CPUs of their own. A loop timed on a CPU that another
    cell's thread keeps busy can still read fast (the scheduler hands out whole time slices), so
    the scan cannot be trusted to see it. The kernel lets go of a lock when its process ends,
    crash or not. Where the folder cannot be written, nothing is claimed and nothing refused."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder or Path(tempfile.gettempdir()) / f"inferbench-cpus-{os.getuid()}")
        self.cpu, self._fd = None, None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.usable = True
        except OSError:
            self.usable = False

    def _lock(self, cpu: int) -> int | None:
        """An open, exclusively locked file descriptor for `cpu`, or None where another holds it."""
        try:
            fd = os.open(self.folder / f"cpu{cpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return -1  # cannot claim here: do not refuse the CPU either
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            os.close(fd)
            return None

    def held_elsewhere(self, cpu: int) -> bool:
        if not self.usable or cpu == self.cpu:
            return False
        fd = self._lock(cpu)
        if fd is None:
            return True
        if fd >= 0:
            os.close(fd)  # closing the descriptor lets go of its lock
        return False

    def take(self, cpu: int) -> bool:
        """Hold `cpu` (letting go of the CPU held before); False where another holds it."""
        if not self.usable or cpu == self.cpu:
            return True
        fd = self._lock(cpu)
        if fd is None:
            return False
        self.release()
        self.cpu, self._fd = cpu, (fd if fd >= 0 else None)
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self.cpu, self._fd = None, None


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


@dataclass
class FastestCpu:
    """Pin the calling thread to the fastest of `cpus` (default: the ones it may use now) on each
    pick(); restore its CPUs on close(). `time_cpu(cpu)` times the CPU the thread is on (a
    parameter for tests)."""

    cpus: list[int] | None = None
    time_cpu: object = None
    claim_dir: str | None = None  # CpuClaim's folder (default: the temporary folder's)
    picks: list[int] = field(default_factory=list)  # the CPU of each pick, in order
    speed_ratio: float | None = None  # slowest over fastest CPU at the first scan
    _fastest_us: float = 0.0
    _ranking: list = field(default_factory=list)  # the last scan's CPUs, fastest first

    def __post_init__(self):
        self._original = sorted(os.sched_getaffinity(0)) if can_pin() else None
        if self.cpus is None:
            self.cpus = list(self._original or [])
        self.time_cpu = self.time_cpu or (lambda _cpu: loop_us())
        self.claim = CpuClaim(self.claim_dir)
        self._sampler = random.Random()

    def pick(self) -> int | None:
        """Time every CPU that no other cell's thread holds, pin to the fastest and return it
        (None where threads cannot be pinned). A scan of 16 CPUs takes about 20 ms: done outside
        the timed window."""
        if not can_pin() or not self.cpus:
            return None
        free = [cpu for cpu in self.cpus if not self.claim.held_elsewhere(cpu)] or self.cpus
        if len(free) > MAX_SCANNED:  # a large host: a sample, and the CPU the thread is on
            kept = [cpu for cpu in self.picks[-1:] if cpu in free]
            free = kept + self._sampler.sample([c for c in free if c not in kept], MAX_SCANNED - len(kept))
        timings = {}
        for cpu in free:
            os.sched_setaffinity(0, {cpu})
            timings[cpu] = self.time_cpu(cpu)
        self._ranking = sorted(timings, key=timings.get)
        # the fastest that can still be claimed (another cell may have taken one since the scan)
        chosen = next((cpu for cpu in self._ranking if self.claim.take(cpu)), self._ranking[0])
        os.sched_setaffinity(0, {chosen})
        self._fastest_us = timings[chosen]
        if self.speed_ratio is None and timings[chosen] > 0:
            self.speed_ratio = max(timings.values()) / timings[chosen]
        self.picks.append(chosen)
        return chosen

    def recheck(self) -> int | None:
        """Between two rounds of a timed window, in about a millisecond: time the CPU the thread
        is on, and keep it if it is still within RECHECK_TOLERANCE of the last scan's fastest;
        else try the next CPUs of that scan's ranking (at most RECHECK_TRIES) and move to the
        first that is, and that it can claim; where none is, stay. No full scan: its pause would
        sit inside the window's energy and utilisation readings."""
        if not can_pin() or not self.picks:
            return self.pick()
        chosen = self.picks[-1]
        limit = self._fastest_us * RECHECK_TOLERANCE
        if self.time_cpu(chosen) > limit:
            for cpu in [c for c in self._ranking if c != chosen][:RECHECK_TRIES]:
                os.sched_setaffinity(0, {cpu})
                if self.time_cpu(cpu) <= limit and self.claim.take(cpu):
                    chosen = cpu
                    break
        os.sched_setaffinity(0, {chosen})
        self.picks.append(chosen)
        return chosen

    def close(self) -> None:
        self.claim.release()
        if self._original:
            os.sched_setaffinity(0, set(self._original))

    def __enter__(self) -> "FastestCpu":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def host_cpu_pinning(device: str, settings, telemetry=None):
    """The pinning policy of a cell's timed windows. GPU cells: the launching thread on the host's
    fastest CPU, among those nearest the GPU where NVML names them (`telemetry.local_cpus()`; on a
    host of two sockets, a launch from the other socket's cores crosses the link between them).
    CPU cells run on every CPU their threads may use, and are left to the scheduler, as is any
    cell whose settings (inferbench.measure.timing.Settings) turn pin_fastest_cpu off."""
    if device != "cuda" or not settings.pin_fastest_cpu or not can_pin():
        return NoPinning()
    allowed = os.sched_getaffinity(0)
    near = (telemetry.local_cpus() if telemetry else None) or set()
    return FastestCpu(cpus=sorted(allowed & near) or None)


class NoPinning:
    """The scheduler decides (measurement: pin_fastest_cpu: false, and CPU cells)."""

    picks = ()
    speed_ratio = None

    def pick(self) -> None:
        return None

    def recheck(self) -> None:
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> "NoPinning":
        return self

    def __exit__(self, *exc) -> None:
        pass
