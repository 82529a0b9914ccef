"""Which devices exist, and claiming a GPU for one timed cell.

Nothing here imports torch: the check must be instant, since a sweep on a machine without a
GPU has hundreds of cuda cells to record as skipped.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import time
from pathlib import Path

from inferbench.errors import Skip

NO_CUDA = "no CUDA device"


def cuda_device_count() -> int:
    """Devices visible to this process through the CUDA driver (honours CUDA_VISIBLE_DEVICES)."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    if libcuda.cuInit(0) != 0:
        return 0
    count = ctypes.c_int(0)
    if libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def require_device(device: str) -> None:
    if device == "cuda" and cuda_device_count() == 0:
        raise Skip(NO_CUDA)


def candidate_gpus() -> list[str]:
    """Physical GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else all."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        return [v.strip() for v in visible.split(",") if v.strip()]
    return [str(i) for i in range(cuda_device_count())]


class GpuClaim:
    """Hold an exclusive lock on one GPU while a timed cell runs on it.

    One lock file per GPU under `lock_dir`, taken with flock: the kernel releases it when the
    holder exits, crash or not, so a dead cell never leaves a GPU claimed.
    """

    def __init__(self, lock_dir: str | Path, wait_s: float = 3600.0, poll_s: float = 0.5):
        self.lock_dir = Path(lock_dir)
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.gpu: str | None = None
        self._fd: int | None = None

    def __enter__(self) -> "GpuClaim":
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        gpus = candidate_gpus()
        if not gpus:
            raise Skip(NO_CUDA)
        deadline = time.monotonic() + self.wait_s
        while True:
            for gpu in gpus:
                # per host: on a cluster the results folder (and this lock folder) is shared
                fd = os.open(self.lock_dir / f"{socket.gethostname()}-gpu{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.gpu, self._fd = gpu, fd
                return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"no free GPU among {gpus} after {self.wait_s:.0f} s (locks in {self.lock_dir})")
            time.sleep(self.poll_s)

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class ExportsRunning:
    """Exports and timed cells never overlap on a host. Every export holds this lock shared while
    it runs (`with ExportsRunning(lock_dir)`); a cell, before it claims a GPU or starts its worker,
    waits until no export holds it (`ExportsRunning.wait(lock_dir)`). The workflow starts every
    export before the first cell (priority); this covers the last exports still running when the
    first cell starts. One lock per host: on a cluster, exports on other nodes disturb no one."""

    def __init__(self, lock_dir: str | Path):
        self.path = Path(lock_dir) / f"{socket.gethostname()}-exports.lock"
        self._fd: int | None = None

    def __enter__(self) -> "ExportsRunning":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    @staticmethod
    def wait(lock_dir: str | Path) -> float:
        """Block until no export runs on this host; the seconds waited."""
        path = Path(lock_dir) / f"{socket.gethostname()}-exports.lock"
        if not path.exists():
            return 0.0
        start = time.perf_counter()
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)
        return time.perf_counter() - start
