"""How much of the GPU each format uses, as the report shows it: the finding on the best GPU cell's
share of the measured peak, the measured ceilings in the environment, and the figure of achieved
TFLOP/s against batch size with the ceilings as lines; none of them on a CPU-only run. On
synthetic summaries (tests/synthetic.py) with the columns the aggregation joins."""

from __future__ import annotations

import pytest
from matplotlib import image as mpimg

from inferbench.reporting import figures, findings, report
from inferbench.reporting.summary import prepared
from synthetic import CEILINGS_TFLOPS, synthetic_summary, with_efficiency


@pytest.fixture(scope="module")
def gpu_run():
    return with_efficiency(synthetic_summary(batch_sizes=(1, 8, 64)))


@pytest.fixture(scope="module")
def cpu_run():
    return with_efficiency(synthetic_summary(batch_sizes=(1, 8), devices=("cpu",)), ceilings=None)


def test_the_finding_states_the_fastest_gpu_cells_share_of_the_measured_peak(gpu_run):
    found = findings.share_of_peak(prepared(gpu_run))
    assert found is not None and found.title == "Share of the GPU's measured peak"
    ok = gpu_run[(gpu_run["status"] == "ok") & (gpu_run["device"] == "cuda") & (gpu_run["io"] == "device")]
    for resolution, sentence in zip(sorted(ok["resolution"].unique()), found.sentences):
        fastest = ok[ok["resolution"] == resolution].sort_values("throughput_ips").iloc[-1]
        share = 100 * fastest["throughput_ips"] * fastest["gflop_per_image"] / 1e3 / CEILINGS_TFLOPS[fastest["precision"]]
        assert f"{fastest['backend']}·{fastest['precision']} at batch {fastest['batch_size']}" in sentence
        assert f"{share:.1f}% of the {fastest['precision']} peak" in sentence, sentence
        assert f"({CEILINGS_TFLOPS[fastest['precision']]:.1f} TFLOP/s)" in sentence
    assert "2 per multiply-accumulate" in found.sentences[-1]
    assert found.title in [f.title for f in findings.derive_findings(gpu_run)]


def test_no_share_finding_without_a_measured_peak(cpu_run):
    assert findings.share_of_peak(prepared(cpu_run)) is None
    assert findings.share_of_peak(prepared(synthetic_summary(batch_sizes=(1,)))) is None  # no such columns
    assert "Share of the GPU's measured peak" not in [f.title for f in findings.derive_findings(cpu_run)]


def test_the_environment_shows_each_gpus_fp32_and_fp16_ceilings(gpu_run, cpu_run):
    rows = dict(report.environment(gpu_run))
    (label,) = [k for k in rows if k.startswith("measured peak")]
    assert "NVIDIA H200, GPU 0 of h200-node-1" in label and "TFLOP/s" in label
    assert rows[label] == "fp32 60.0, fp16 800.0, bf16 780.0"
    assert not [k for k, _ in report.environment(cpu_run) if k.startswith("measured peak")]


def drawn(monkeypatch) -> list:
    """The figures saved from now on (they are still written)."""
    seen, real_save = [], figures.save

    def keep(fig, path):
        seen.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(figures, "save", keep)
    return seen


def test_the_figure_plots_achieved_tflops_per_backend_and_precision_under_each_ceiling(gpu_run, tmp_path,
                                                                                     monkeypatch):
    seen = drawn(monkeypatch)
    written = figures.write_figures(gpu_run, tmp_path, kinds=["achieved_tflops"])
    assert written == [tmp_path / "achieved_tflops.png"]
    image = mpimg.imread(written[0])
    assert image.shape[0] > 300 and image.shape[1] > 800
    (fig,) = seen
    cells = figures.gpu_work_cells(prepared(gpu_run))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [f"{r} px, cuda, io=device" for r in sorted(cells["resolution"].unique())]
    for ax, (resolution, panel) in zip(panels, cells.groupby("resolution")):
        assert ax.get_xlabel() == "batch size (images)" and ax.get_ylabel() == "achieved TFLOP/s (log scale)"
        flat = [line for line in ax.lines if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2]
        # a horizontal line at each precision's ceiling, and a plotted line per backend·precision
        assert sorted(float(line.get_ydata()[0]) for line in flat) == sorted(
            CEILINGS_TFLOPS[p] for p in panel["precision"].unique())
        series = [line for line in ax.lines if line not in flat]
        assert len(series) == panel.groupby(["backend", "precision"]).ngroups
        best = max(max(line.get_ydata()) for line in series)
        assert best == pytest.approx(panel["achieved_tflops"].max())


def test_no_figure_without_gpu_cells_and_a_stale_one_is_removed(cpu_run, tmp_path):
    stale = tmp_path / "achieved_tflops.png"
    stale.write_bytes(b"an earlier run's figure")
    assert figures.write_figures(cpu_run, tmp_path, kinds=["achieved_tflops"]) == []
    assert not stale.exists()
