"""Host memory of this process."""

from __future__ import annotations

import resource
import sys


def rss_peak_mb() -> float:
    """Peak resident set size of this process so far, as tracked by the kernel (exact, no sampling)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1024.0 if sys.platform != "darwin" else peak / (1024.0 * 1024.0)
