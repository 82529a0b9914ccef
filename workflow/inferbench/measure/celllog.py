"""A cell's progress on stderr, stamped with seconds since the cell began: shows where a cell's
time goes (imports, load, timing) without a profiler."""

from __future__ import annotations

import sys
import time


class CellLog:
    """Restarted per cell, since a warm worker runs many."""

    def __init__(self):
        self.t0 = time.monotonic()

    def restart(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        print(f"[inferbench cell +{time.monotonic() - self.t0:6.2f}s] {msg}", file=sys.stderr, flush=True)


log = CellLog()
