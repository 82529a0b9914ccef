"""A cell's compilation beside other cells' timed windows (`--resources gpu=K`, K > 1): kept off
the CPUs that other cells' measuring threads hold, its worker processes at a lower priority.

torch.compile compiles in the calling thread (Dynamo's tracing, Inductor's lowering), in a pool of
compile worker processes, and in whatever subprocesses those start (the C++ compiler, Triton's
autotuning in a subprocess under max-autotune). In torch 2.11 and 2.14 the pool is a sidecar
process (`torch/_inductor/compile_worker`, Inductor's default `worker_start_method: subprocess`)
started with `subprocess.Popen` on the process's first compilation, holding
`compile_threads` forked workers (TORCHINDUCTOR_COMPILE_THREADS, which the workflow sets to
cores / K; by default one per CPU the process may use, at most 32). The sidecar lives as long as
the process (a warm worker's whole life); after 60 s without a job it lets its workers go and
forks new ones on the next compilation. By default it would spread over every CPU of the host,
the CPU a timed cell launches from included: on two GPUs, torch.compile cells took a median of
13.2 s against 7.2 s on one, compilation competing for the CPU, and the timed windows beside them
shared their CPU with it.

While a cell compiles, CompileGuard looks every POLL_S at the CPUs that other cells' measuring
threads hold (inferbench.measure.hostcpu.CpuClaim: one lock file per CPU, held while a thread is
pinned there), and
  * takes them out of the CPUs of the compiling thread, of the threads it starts meanwhile, and of
    every thread of every process below this one (the sidecar, its workers, compilers);
  * sets those processes' threads to COMPILE_NICE (only ever raising it).
A poll, because Inductor starts its pool with no hook to start it otherwise, and because another
cell may claim a CPU while this one compiles. A process inherits its parent's CPUs and niceness
when it is forked, so once the sidecar is set, the workers it forks start set.

What each part does, and where it does nothing:
  * The CPUs: a thread never runs where another cell measures. This is the part that holds on any
    Linux scheduler.
  * The niceness: among the threads of one scheduling group, compile workers yield to the rest.
    Where the kernel groups threads by session (`/proc/sys/kernel/sched_autogroup_enabled`, the
    default of most distributions), niceness orders threads within one session only, and every
    cell worker is a session of its own (inferbench.process.child.detach): then it does not rank
    compile workers below another cell's threads. Which applied is recorded (`compile_autogroup`).
  * The compiling thread itself keeps its priority: an unprivileged process cannot lower its
    niceness again (RLIMIT_NICE is 0 by default), and that thread measures later.
When the guard ends, the threads of this process get their CPUs back; processes below it (the
idle sidecar) keep the last setting until the next compilation's guard updates it.

Off where one cell runs at a time (one GPU token, a CPU cell): nothing else is measured beside the
compilation then, and every CPU shortens it, so such a sweep compiles and measures as without it.
The choice is recorded in the backend's facts (`compile_guard` and the rest: `facts()`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from inferbench.backends.base import CompileWork
from inferbench.measure.hostcpu import CpuClaim, can_pin

COMPILE_NICE = 10  # a share of about a tenth against a thread at 0, where niceness applies
POLL_S = 0.05  # how long a newly claimed CPU may still run compile work, at most (plus one poll's work)
TOKENS_ENV = "INFERBENCH_GPU_TOKENS"  # set by the workflow: how many GPU cells run at once


def several_at_once(device: str, env=None) -> bool:
    """Whether a cell's compilation may run beside another cell's timed window: a GPU cell of a
    run given more than one GPU token."""
    env = os.environ if env is None else env
    try:
        tokens = int(env.get(TOKENS_ENV) or 1)
    except ValueError:
        tokens = 1
    return device == "cuda" and tokens > 1


def compile_guard_for(device: str, claim_dir: str | None = None) -> "CompileGuard":
    return CompileGuard(active=several_at_once(device) and can_pin(), claim_dir=claim_dir)


class CompileGuard(CompileWork):
    """`with guard:` around a backend's compilation (see the module's docstring); `facts()` after."""

    def __init__(self, active: bool, claim_dir: str | None = None, nice: int = COMPILE_NICE,
                 poll_s: float = POLL_S):
        self.active, self.nice, self.poll_s = active, nice, poll_s
        self.claim = CpuClaim(claim_dir) if active else None
        self.withheld: set[int] = set()  # every CPU withheld from compile work at some poll
        self.fewest_cpus: int | None = None  # the fewest CPUs compile work was left at any poll
        self.reniced: set[int] = set()  # processes below this one whose threads were reniced
        self._original: dict[int, set[int]] = {}  # this process's threads: their CPUs before
        self._applied: dict[int, frozenset[int]] = {}  # each thread: the CPUs it was last given
        self.poll_errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "CompileGuard":
        if not self.active:
            return self
        self._caller = threading.get_native_id()
        self._allowed = set(os.sched_getaffinity(0))
        self._threads_before = set(_tasks(os.getpid())) - {self._caller}
        self._poll_safely()  # before the first compile work: the sidecar starts from a thread already set
        self._thread = threading.Thread(target=self._run, name="inferbench-compile-guard", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.active:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for tid, cpus in self._original.items():
            _set_cpus(tid, cpus)

    def _run(self) -> None:
        self._threads_before.add(threading.get_native_id())  # the guard's own thread is no compile work
        while not self._stop.wait(self.poll_s):
            self._poll_safely()

    def _poll_safely(self) -> None:
        # A guard that cannot look (a process gone between two reads, /proc unreadable) leaves
        # compile work as it is for that poll; it never fails the cell it guards.
        try:
            self.poll()
        except (OSError, ValueError) as exc:
            self.poll_errors.append(f"{type(exc).__name__}: {exc}")

    def poll(self) -> None:
        """Once: the CPUs held elsewhere now, taken out of every compile thread's CPUs."""
        held = {cpu for cpu in self._allowed if self.claim.held_elsewhere(cpu)}
        # every CPU held: compilation must still run somewhere (niceness is then all there is)
        free = frozenset(self._allowed - held) or frozenset(self._allowed)
        self.withheld |= self._allowed - free
        self.fewest_cpus = len(free) if self.fewest_cpus is None else min(self.fewest_cpus, len(free))
        me = os.getpid()
        own = [self._caller] + [t for t in _tasks(me) if t not in self._threads_before and t != self._caller]
        for tid in own:
            self._original.setdefault(tid, self._allowed)  # the caller's CPUs, which new threads inherited
            self._give(tid, free)
        for pid in descendants(me):
            self.reniced.add(pid)
            for tid in _tasks(pid):
                _raise_nice(tid, self.nice)
                self._give(tid, free)

    def _give(self, tid: int, cpus: frozenset[int]) -> None:
        if self._applied.get(tid) != cpus and _set_cpus(tid, cpus):
            self._applied[tid] = cpus

    def facts(self) -> dict:
        if not self.active:
            return {"compile_guard": "off"}
        return {"compile_guard": "on", "compile_nice": self.nice, "compile_cpus_withheld": sorted(self.withheld),
                "compile_cpus_fewest": self.fewest_cpus, "compile_processes": len(self.reniced),
                "compile_autogroup": autogroup_enabled(),
                **({"compile_guard_errors": self.poll_errors[:3]} if self.poll_errors else {})}


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from the kernel's list of each thread's children (a breadth-first
    walk); where the kernel keeps no such list, from every process's parent."""
    if not Path(f"/proc/{pid}/task/{pid}/children").exists():
        return _descendants_by_parent(pid)
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for tid in _tasks(parent):
            try:
                children = Path(f"/proc/{parent}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.append(child)
                    todo.append(child)
    return found


def _descendants_by_parent(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # the field after the command's closing parenthesis: state, then the parent's pid
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found.append(child)
                todo.append(child)
    return found


def _tasks(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:  # gone meanwhile
        return []


def _set_cpus(tid: int, cpus) -> bool:
    try:
        os.sched_setaffinity(tid, cpus)
        return True
    except OSError:  # the thread ended meanwhile, or its CPUs are not ours to set
        return False


def _raise_nice(tid: int, nice: int) -> None:
    # On Linux PRIO_PROCESS with a thread id sets that one thread: each thread is set on its own.
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        pass


def autogroup_enabled() -> bool | None:
    """Whether the kernel schedules by session (niceness then ranks threads within one only)."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None
