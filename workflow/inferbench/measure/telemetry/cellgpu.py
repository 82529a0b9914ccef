"""A cell's GPU telemetry: the NVML reader and its background sampler, or nothing at all where
NVML is unusable (the columns are then recorded as nulls), behind one object that the cell's
phases ask without checking which."""

from __future__ import annotations

import os

from inferbench.measure.celllog import log


class GpuTelemetry:
    """Created before the process's CUDA context: NVML's memory baseline must not include it."""

    def __init__(self):
        from inferbench.measure.telemetry.gpu import GpuSampler, NvmlReader

        self.spinup_s = 0.0  # every spin-up of the cell, summed (clock_spinup_s)
        try:
            self.reader = NvmlReader(visible_gpu())
        except RuntimeError as exc:
            log(f"no GPU telemetry: {exc}")
            self.reader = None
            self.sampler = None
            return
        self.sampler = GpuSampler(self.reader)

    def start(self):
        if self.sampler:
            self.sampler.start()

    def info(self) -> dict:
        return self.reader.static_info() if self.reader else {}

    def state(self) -> dict:
        return self.reader.state() if self.reader else {}

    def energy_mj(self):
        return self.reader.energy_mj() if self.reader else None

    def local_cpus(self) -> set[int] | None:
        return self.reader.local_cpus() if self.reader else None

    def spin_up(self) -> float:
        """Bring the SM clock up (see inferbench.measure.gpu_clock); seconds spent."""
        from inferbench.measure.gpu_clock import spin_up

        if not self.reader:
            spent = spin_up(lambda: None, None)
        else:
            spent = spin_up(self.reader.sm_clock_mhz, self.reader.max_sm_clock_mhz())
        self.spinup_s += spent
        return spent

    def stop(self):
        if self.sampler:
            self.sampler.stop()


def visible_gpu() -> str:
    """The cell's one visible GPU as CUDA_VISIBLE_DEVICES names it (NVML ignores that variable):
    an index in NVML's order (the cell job sets CUDA_DEVICE_ORDER=PCI_BUS_ID, CUDA's numbering then
    being NVML's), or a UUID where the GPUs were given by UUID. "0" where it is unset."""
    return os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"


def nvml_index_for_visible_gpu() -> int | None:
    """The visible GPU's NVML index where CUDA_VISIBLE_DEVICES names it by index; None for a UUID
    (NVML then says the index: NvmlReader.static_info)."""
    visible = visible_gpu()
    return int(visible) if visible.isdigit() else None
