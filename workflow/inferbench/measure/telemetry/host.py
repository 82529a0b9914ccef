"""Host memory of this process."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def rss_peak_mb() -> float:
    """Peak resident set size of this process, as tracked by the kernel (exact, no sampling):
    since the last `reset_rss_peak`, or since the process began."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1024.0 if sys.platform != "darwin" else peak / (1024.0 * 1024.0)


def reset_rss_peak() -> bool:
    """Start the peak afresh (Linux: writing 5 to /proc/self/clear_refs resets VmHWM), for a
    process that runs several cells. False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
