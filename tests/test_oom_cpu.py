"""An allocation failure on the CPU is `oom`, as one on the GPU is: torch's CPU allocator and
Python's MemoryError, raised for real, in the cell and in a worker that died of one."""

import subprocess
import sys

import pytest
import torch

from inferbench.measure.cellrun import failure
from inferbench.process.result import ChildResult

HUGE_BYTES = 1 << 60  # more than any machine has: the allocator refuses at once, nothing is touched


def _raised(action) -> BaseException:
    with pytest.raises(BaseException) as info:
        action()
    return info.value


def test_torch_cpu_allocator_failure_is_oom():
    exc = _raised(lambda: torch.empty(HUGE_BYTES, dtype=torch.uint8))
    assert "can't allocate memory" in str(exc)
    assert failure(exc)[0] == "oom"


def test_memory_error_is_oom():
    exc = _raised(lambda: bytearray(HUGE_BYTES))
    assert isinstance(exc, MemoryError)
    assert failure(exc)[0] == "oom"


def test_a_worker_that_died_of_a_cpu_allocation_failure_is_oom():
    for code in (f"import torch; torch.empty({HUGE_BYTES}, dtype=torch.uint8)", f"bytearray({HUGE_BYTES})"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        result = ChildResult(returncode=proc.returncode, output_tail=tuple(proc.stderr.strip().splitlines()[-15:]))
        assert result.failure_status == "oom", proc.stderr[-500:]
