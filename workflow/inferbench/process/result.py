"""How a child process ended, as every way of running one reports it (a child forked by the fork
server, a request to a warm worker, a plain subprocess): `ChildResult`. Callers decide on its
fields; `describe()` is the sentence recorded for people, in a shard's `reason` or a job's log."""

from __future__ import annotations

import collections
import signal as signals
from dataclasses import dataclass

from inferbench.errors import NO_SPACE_EXIT, OOM_PHRASES

# Signals by which someone outside ended the worker (a person, a scheduler, the machine shutting
# down): nothing about the cell itself. SIGKILL counts only without evidence of an OOM kill.
STOPPED_FROM_OUTSIDE = frozenset({signals.SIGKILL, signals.SIGTERM, signals.SIGINT, signals.SIGHUP})
# A description that starts with this says the kernel killed the worker for memory.
OOM_KILLED = "out of memory: "
TAIL_LINES = 15  # output lines a result keeps
DESCRIBED_LINES = 3  # of which its description quotes the last


@dataclass(frozen=True)
class ChildResult:
    returncode: int | None = None  # its exit code, when it exited on its own
    signal: int | None = None  # the signal that ended it, when one did (SIGKILL at a timeout)
    timed_out: bool = False  # it ran past timeout_s and was killed
    timeout_s: float | None = None
    oom_evidence: str | None = None  # why the kernel is believed to have killed it for memory
    output_tail: tuple[str, ...] = ()  # its last non-blank output lines

    @classmethod
    def from_returncode(cls, returncode: int, output_tail=()) -> "ChildResult":
        """From Python's convention (subprocess, os.waitstatus_to_exitcode): negative is the signal."""
        if returncode < 0:
            return cls(signal=-returncode, output_tail=tuple(output_tail))
        return cls(returncode=returncode, output_tail=tuple(output_tail))

    @classmethod
    def from_wire(cls, message: dict, output_tail=()) -> "ChildResult":
        """From the fork server's reply (see wire())."""
        return cls(returncode=message.get("exit_code"), signal=message.get("signal"), output_tail=tuple(output_tail))

    @classmethod
    def timeout(cls, timeout_s: float, output_tail=()) -> "ChildResult":
        return cls(signal=signals.SIGKILL, timed_out=True, timeout_s=timeout_s, output_tail=tuple(output_tail))

    def wire(self) -> dict:
        """The fork server's reply for a child that ended: {"exit_code": N} or {"signal": N}."""
        return {"signal": self.signal} if self.signal is not None else {"exit_code": self.returncode}

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def oom_killed(self) -> bool:
        return self.signal == signals.SIGKILL and not self.timed_out and self.oom_evidence is not None

    @property
    def stopped_from_outside(self) -> bool:
        """Ended by someone, not by its cell: a kill that was neither our timeout nor an OOM kill."""
        return self.signal in STOPPED_FROM_OUTSIDE and not self.timed_out and not self.oom_killed

    @property
    def no_space(self) -> bool:
        """It stopped because a disk was full (inferbench.cli): nothing about the cell or export."""
        return self.returncode == NO_SPACE_EXIT

    @property
    def printed_out_of_memory(self) -> bool:
        """It exited on its own after printing an allocation failure (a CUDA or host allocator's
        error that escaped the cell): its own output is the only evidence there is."""
        return bool(self.returncode) and any(
            "memoryerror" in line.lower() or any(phrase in line.lower() for phrase in OOM_PHRASES)
            for line in self._described_tail())

    @property
    def failure_status(self) -> str:
        """The status of a cell whose worker did not end well: `oom` when it ran out of memory."""
        return "oom" if self.oom_killed or self.printed_out_of_memory else "error"

    def describe(self) -> str:
        """One line for people: empty when it ended well."""
        if self.timed_out:
            return f"timed out after {self.timeout_s:.0f} s (cell_timeout_s)"
        if self.ok:
            return ""
        last = " | ".join(self._described_tail())
        if self.signal is not None:
            name = signal_name(self.signal)
            if self.oom_killed:
                return (f"{OOM_KILLED}the worker process was killed by SIGKILL ({self.oom_evidence}); "
                        f"last output: {last}")
            if self.stopped_from_outside:
                return (f"the worker process was killed by {name} from outside (no out-of-memory kill seen); "
                        f"last output: {last}")
            return f"the worker process died from {name}; last output: {last}"
        return f"the worker process exited with code {self.returncode}; last output: {last}"

    def _described_tail(self) -> tuple[str, ...]:
        return self.output_tail[-DESCRIBED_LINES:]


def signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


class OutputTail:
    """Passes a child's output on line by line and keeps its last non-blank lines for the result.
    One instance can follow several attempts (a fork server that failed, then a subprocess)."""

    def __init__(self, on_output, keep: int = TAIL_LINES):
        self.on_output = on_output
        self._lines: collections.deque = collections.deque(maxlen=keep)

    def __call__(self, line: str) -> None:
        self.on_output(line)
        if line.strip():
            self._lines.append(line.rstrip())

    def lines(self) -> tuple[str, ...]:
        return tuple(self._lines)
