"""How much of the machine other processes used while an io mode was measured.

A CPU cell's figure is the machine's share it got: on a host where other work runs, a whole cell
can slow by a third with its rounds still agreeing (their spread cannot show what slowed all of
them alike). The share of the machine's CPU time that went to other processes during the io mode
(from /proc/stat, less this process's own time) is recorded beside the figure, so that a
comparison of two runs can tell a contended cell from a changed one (inferbench.reporting.compare).
"""

from __future__ import annotations

import os
import time


def _busy_s() -> float | None:
    """Seconds of CPU time the whole machine has spent busy (not idle or waiting), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    # guest time is already counted in user: the first 8 fields are the machine's time
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    t = os.times()
    return t.user + t.system


class OtherLoad:
    """Started before an io mode and read after it: percent of the machine's CPUs that other
    processes kept busy meanwhile (None where /proc/stat cannot be read)."""

    def __init__(self):
        self.busy, self.own, self.wall = _busy_s(), _own_s(), time.monotonic()

    def percent(self) -> float | None:
        busy = _busy_s()
        wall = time.monotonic() - self.wall
        if busy is None or self.busy is None or wall <= 0:
            return None
        others = (busy - self.busy) - (_own_s() - self.own)
        return max(0.0, min(100.0, 100.0 * others / (wall * (os.cpu_count() or 1))))
