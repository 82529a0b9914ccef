"""Host-bound, told per call: the host's time to issue one call beside the GPU's time for it.

A call whose issue (Python, the framework, the driver's launches: from the call until it returns,
before any wait) takes nearly as long as the GPU's work on it leaves the GPU waiting for the host:
its figure is the host CPU's speed, not the GPU's or the format's. trtexec draws the same line,
warning that "throughput may be bound by Enqueue Time" when the median enqueue time exceeds 0.8 of
the median GPU compute time, and pointing at CUDA graphs.

A backend whose call waits for the GPU before it returns (ONNX Runtime's run) has no issue time
to speak of: its figure is null and the row says why. On the CPU the call is the work.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

HOST_BOUND_ENQUEUE_SHARE = 0.8  # trtexec's threshold


@dataclass(frozen=True)
class Enqueue:
    enqueue_ms_median: float | None
    host_bound: bool | None
    note: str  # why there is no figure, else ""


def enqueue_of(issue_ms: list | None, latency_ms_median: float | None, device: str,
               waits_for_gpu: str | None = None) -> Enqueue:
    """The io mode's median issue time and whether it is host-bound (median issue at least
    HOST_BOUND_ENQUEUE_SHARE of the median CUDA-event time)."""
    if device != "cuda":
        return Enqueue(None, None, "a CPU cell: the call is the work")
    if waits_for_gpu:
        return Enqueue(None, None, f"no enqueue time: {waits_for_gpu}")
    values = [v for v in (issue_ms or []) if v is not None]
    if not values or not latency_ms_median:
        return Enqueue(None, None, "no enqueue time: the timer did not record one")
    median = statistics.median(values)
    return Enqueue(median, median >= HOST_BOUND_ENQUEUE_SHARE * latency_ms_median, "")
