"""Figures: every expected PNG written, and empty data gives a note instead of a crash."""

import pytest
from matplotlib import image as mpimg

from inferbench import cli
from inferbench.reporting import figures
from synthetic import synthetic_summary, write_summary

EXPECTED = ["224.png", "384.png", "latency_224.png", "latency_384.png", "gpu_memory_224.png",
            "gpu_memory_384.png", "speedup_heatmap.png", "throughput_vs_memory.png", "scaling.png"]


@pytest.fixture(scope="module")
def summary():
    return synthetic_summary(batch_sizes=(1, 8))


def test_all_figures_are_written_as_real_pngs(tmp_path, summary):
    write_summary(summary, tmp_path / "s.parquet")
    assert cli.main(["figures", "--summary", str(tmp_path / "s.parquet"), "--outdir", str(tmp_path / "f")]) == 0
    for name in EXPECTED:
        img = mpimg.imread(tmp_path / "f" / name)
        assert img.shape[0] > 200 and img.shape[1] > 400, name


def test_resolution_flag_writes_only_that_throughput_figure(tmp_path, summary):
    write_summary(summary, tmp_path / "s.parquet")
    assert cli.main(["figures", "--summary", str(tmp_path / "s.parquet"), "--outdir", str(tmp_path / "f"),
                     "--resolution", "384"]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["384.png"]


def drawn(monkeypatch) -> list[dict]:
    """What each figure saved from now on shows: its words (titles, axis labels, texts) and how many
    things it plots (lines, markers, images). The files are still written."""
    seen, real_save = [], figures.save

    def keep(fig, path):
        words = [fig._suptitle.get_text() if fig._suptitle else ""] + [t.get_text() for t in fig.texts]
        for ax in fig.axes:
            words += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.texts]
        plotted = sum(len(ax.lines) + len(ax.collections) + len(ax.images) for ax in fig.axes)
        seen.append({"path": path, "words": "\n".join(words), "plotted": plotted})
        return real_save(fig, path)

    monkeypatch.setattr(figures, "save", keep)
    return seen


def test_all_skipped_gives_a_note_figure(tmp_path, monkeypatch):
    df = synthetic_summary(devices=("cuda",), batch_sizes=(1,), resolutions=(224,))
    df["status"], df["reason"] = "skipped", "no GPU"
    seen = drawn(monkeypatch)
    paths = figures.write_figures(df, tmp_path)
    assert [s["path"] for s in seen] == paths and all(p.is_file() for p in paths)
    for figure in seen:  # nothing plotted, and a sentence saying why
        assert figure["plotted"] == 0, figure
        assert "skipped" in figure["words"] or "needs ok cells" in figure["words"], figure


def test_cpu_only_memory_figure_says_host_rss(tmp_path, monkeypatch):
    df = synthetic_summary(devices=("cpu",), batch_sizes=(1, 8), resolutions=(224,))
    seen = drawn(monkeypatch)
    figures.plot_gpu_memory(figures.prepared(df), 224, tmp_path / "m.png")
    (figure,) = seen
    assert figure["plotted"] > 0
    assert "peak host RSS (MB, log scale)" in figure["words"] and "No GPU memory measured" in figure["words"]


def test_throughput_has_a_panel_per_device_io_and_precision_and_stars_only_the_best_cells(tmp_path, monkeypatch):
    df = figures.prepared(synthetic_summary(resolutions=(224,), io_modes=("device", "host")))
    ok = figures.ok_cells(df)
    panels = {}

    def keep(fig, path):
        for ax in fig.axes:
            if ax.get_visible():
                stars = sum(len(c.get_offsets()) for c in ax.collections)
                panels[ax.get_title()] = {"lines": len(ax.lines), "stars": stars}
        return path

    monkeypatch.setattr(figures, "save", keep)
    figures.plot_throughput(df, 224, tmp_path / "224.png")
    expected = {f"{d} · {p} · io={i}": g for (d, i, p), g in ok.groupby(["device", "io", "precision"])}
    assert set(panels) == set(expected) and len(panels) > 4
    for title, cells in expected.items():
        # one line per backend in the panel, and a star on each of its cells that is the best of its batch
        assert panels[title] == {"lines": cells["backend"].nunique(), "stars": int(cells["best_in_batch"].sum())}
    assert sum(p["stars"] for p in panels.values()) == len(ok.groupby(["device", "io", "batch_size"]))


def test_pareto_front_keeps_only_undominated_points():
    import numpy as np
    mem = np.array([100.0, 200.0, 150.0, 300.0])
    ips = np.array([10.0, 30.0, 5.0, 25.0])
    assert sorted(figures.pareto_front(mem, ips).tolist()) == [0, 1]


@pytest.mark.parametrize("plot", [figures.plot_throughput, figures.plot_latency, figures.plot_gpu_memory])
def test_a_narrow_batch_range_keeps_a_label_per_batch_size(tmp_path, monkeypatch, plot):
    # 32 to 64 spans 2x: the narrow-log-axis fix must leave the batch axis's own ticks alone
    df = figures.prepared(synthetic_summary(batch_sizes=(32, 40, 48, 56, 64), resolutions=(224,)))
    labels = []

    def keep_labels(fig, path):
        figures.fix_narrow_log_axes(fig)
        fig.canvas.draw()
        labels.extend({t.get_text() for t in ax.get_xticklabels() if t.get_text()} for ax in fig.axes)
        return path

    monkeypatch.setattr(figures, "save", keep_labels)
    plot(df, 224, tmp_path / "f.png")
    assert labels and all(found == {"32", "40", "48", "56", "64"} for found in labels), labels


def test_figures_are_palette_pngs(tmp_path):
    from PIL import Image
    path = figures.plot_throughput(figures.prepared(synthetic_summary(resolutions=(224,))), 224, tmp_path / "t.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "P"
