"""A cell's shard rows, built in one place from what its phases found.

The phases (inferbench.measure.phases) hand back typed results (inferbench.measure.results); CellRows keeps them and writes one
row per io mode, with the columns of inferbench.records.schema.SHARD_SCHEMA (not imported here: a
cell's worker needs no Arrow library to measure). A phase that did not run leaves its columns
out, so a cell that failed half-way still records what it had measured, and the reason.

Most facts are the cell's and equal on its io rows; the timing columns, first_run_ms and a
failure of one io mode are that io mode's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferbench.measure.accuracy import Accuracy
from inferbench.measure.results import DeviceSetup, IoTiming, Loaded, Peaks, Started, Worker


@dataclass
class CellRows:
    base: dict  # identity, host environment and settings columns, from the job
    io_modes: list
    worker: Worker
    backend_options: str  # JSON of the parsed options; replaced by the loaded backend's facts
    export_s: float | None
    started: Started | None = None
    device: DeviceSetup | None = None
    setup_s: float | None = None
    load: Loaded | None = None
    first_run_ms: float | None = None
    timings: dict[str, IoTiming] = field(default_factory=dict)
    peaks: Peaks | None = None
    accuracy: Accuracy | None = None
    io_outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # io -> (status, reason)

    def fail_io(self, io: str, status: str, reason: str) -> None:
        """One io mode failed; the others keep their figures."""
        self.io_outcomes[io] = (status, reason)

    def cell_columns(self) -> dict:
        """The columns equal on every io row, from the phases that ran."""
        w = self.worker
        cols = {"backend_options": self.backend_options, "num_threads": w.threads, "export_s": self.export_s,
                "gpu_worker": "warm" if w.warm else "fresh", "worker_cells_before": w.cells_before}
        if self.started and self.started.worker_start_s is not None:
            cols["worker_start_s"] = self.started.worker_start_s
        if self.device:
            cols.update(self.device.gpu_env)
        if self.setup_s is not None:
            cols["setup_s"] = self.setup_s
        if self.load:
            cols.update(load_s=self.load.load_s, compile_s=self.load.compile_s,
                        backend_options=self.load.backend_options)
        if self.peaks:
            p = self.peaks
            cols.update(host_rss_peak_mb=p.host_rss_peak_mb, gpu_mem_peak_mb=p.gpu_mem_peak_mb,
                        gpu_mem_start_mb=p.gpu_mem_start_mb, torch_alloc_peak_mb=p.torch_alloc_peak_mb,
                        clock_spinup_s=p.clock_spinup_s,
                        sm_clock_mhz_start=p.start.get("sm_clock_mhz"), sm_clock_mhz_end=p.end.get("sm_clock_mhz"),
                        gpu_temp_c_start=p.start.get("temp_c"), gpu_temp_c_end=p.end.get("temp_c"),
                        throttle_reasons_start=p.start.get("throttle_reasons"),
                        throttle_reasons_end=p.end.get("throttle_reasons"))
        if self.accuracy:
            a = self.accuracy
            cols.update(max_abs_err=a.max_abs_err, mean_abs_err=a.mean_abs_err, top1_agreement=a.top1_agreement,
                        reference_device=a.reference_device, reference_s=a.reference_s)
        return cols

    def io_columns(self, io: str) -> dict:
        """The columns of one io mode: its timing, and the first call's time where it was timed."""
        t = self.timings.get(io)
        if t is None:
            return {}
        m = t.measurement
        return dict(t.stats, timer=t.timer, n_warmup=m.n_warmup, warmup_s=m.warmup_s, timed_s=m.timed_s,
                    latencies_ms=m.latencies_ms, energy_j_per_image=t.energy_j_per_image, power_w_mean=t.power_w_mean,
                    gpu_busy_pct=t.gpu_busy_pct, sm_clock_mhz_mean=t.sm_clock_mhz_mean,
                    host_launch_us=t.host_launch_us, host_cpus=t.host_cpus,
                    host_cpu_speed_ratio=t.host_cpu_speed_ratio, measurement=t.settings_json,
                    enqueue_ms_median=t.enqueue_ms_median, host_bound=t.host_bound, enqueue_note=t.enqueue_note,
                    host_other_cpu_pct=t.host_other_cpu_pct,
                    first_run_ms=self.first_run_ms)

    def rows(self, status: str, reason: str) -> list[dict]:
        """One row per io mode; status and reason go to every io mode that did not fail on its own."""
        cell = self.cell_columns()
        out = []
        for io in self.io_modes:
            io_status, io_reason = self.io_outcomes.get(io, (status, reason))
            row = dict(self.base, io=io)
            row.update(cell)
            row.update(self.io_columns(io))
            row.update(status=io_status, reason=io_reason)
            out.append(row)
        return out
