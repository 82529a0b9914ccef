"""Figures from a summary: PNGs for the report, one function per figure kind.

Styling is the same in every figure so a reader learns it once: colour = backend,
line style = precision, marker = device, hollow marker = io "host". Every axis
carries its unit. A figure with nothing to plot says why instead of failing.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402  (matplotlib's own dependency)

from inferbench.reporting.summary import SPEEDUP_COLUMN, ok_cells, prepared  # noqa: E402

DPI = 120
BACKEND_COLOURS = {
    "pytorch": "#1f77b4", "torchscript": "#ff7f0e", "onnxruntime": "#2ca02c",
    "torch_compile": "#d62728", "torch_tensorrt": "#9467bd",
}
EXTRA_COLOURS = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
PRECISION_STYLES = {"fp32": "-", "fp16": "--", "bf16": ":"}
DEVICE_MARKERS = {"cuda": "o", "cpu": "s"}

PER_RESOLUTION_KINDS = ("throughput", "latency", "gpu_memory")
OVERALL_KINDS = ("speedup_heatmap", "throughput_vs_memory", "scaling")
# drawn only where the summary has what they show (no note figure in their place)
OPTIONAL_KINDS = ("achieved_tflops",)
KINDS = PER_RESOLUTION_KINDS + OVERALL_KINDS + OPTIONAL_KINDS


def figure_name(kind: str, resolution: int | None = None) -> str:
    """File names the pipeline expects: throughput at R is plain `{R}.png`."""
    if kind == "throughput":
        return f"{resolution}.png"
    if kind in PER_RESOLUTION_KINDS:
        return f"{kind}_{resolution}.png"
    return f"{kind}.png"


# ---------------------------------------------------------------- styling


def colour(backend: str) -> str:
    if backend in BACKEND_COLOURS:
        return BACKEND_COLOURS[backend]
    return EXTRA_COLOURS[sum(map(ord, backend)) % len(EXTRA_COLOURS)]


def style(backend: str, precision: str, device: str, io: str) -> dict:
    c = colour(backend)
    return {
        "color": c,
        "linestyle": PRECISION_STYLES.get(precision, "-."),
        "marker": DEVICE_MARKERS.get(device, "^"),
        "markerfacecolor": "none" if io == "host" else c,
        "markersize": 5,
        "linewidth": 1.5,
    }


def series_style(cells: pd.DataFrame) -> dict:
    first = cells.iloc[0]
    return style(first["backend"], first["precision"], first["device"], first["io"])


# ---------------------------------------------------------------- data


def not_ok_note(df: pd.DataFrame) -> str:
    """"12 of 45 cells not ok (8 skipped, 4 error); see the tables" or ""."""
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return ""
    counts = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
    return f"{len(bad)} of {len(df)} cells not plotted ({counts}); see the tables for reasons"


# ---------------------------------------------------------------- figure scaffolding


def note_figure(path: Path, title: str, message: str) -> Path:
    """A small figure that says why there is nothing to plot."""
    fig, ax = plt.subplots(figsize=(7, 2.5))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, wrap=True, transform=ax.transAxes)
    return save(fig, path)


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fix_narrow_log_axes(fig)
    # bbox "tight" keeps legends placed outside the axes inside the image.
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    write_palette_png(buffer.getvalue(), path)
    return path


def write_palette_png(png: bytes, path: Path) -> None:
    """Store a chart as a 256-colour palette PNG: a chart has a few flat colours and their
    anti-aliased edges, so this looks the same and takes about a third of the bytes of the RGBA
    image matplotlib writes, in the figures folder, in the report (which embeds them) and in the
    archive. Median cut without dithering is deterministic: the same figure gives the same bytes."""
    with Image.open(io.BytesIO(png)) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
    palette.save(path, format="PNG", optimize=True)


def fix_narrow_log_axes(fig) -> None:
    """A log axis spanning less than ~3x gets no 1-2-5 tick; give it evenly spaced plain ticks.
    Only axes `plain_log_axis` set up (a LogLocator): the batch axis has its own fixed ticks, one
    per batch size, and matplotlib reports fixed labels through a FuncFormatter too."""
    for ax in fig.axes:
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() == "log" and lo > 0 and hi / lo < 3 and \
                    isinstance(axis.get_major_locator(), LogLocator) and \
                    isinstance(axis.get_major_formatter(), FuncFormatter):
                axis.set_major_locator(MaxNLocator(5))


def device_axes(devices: list[str], height: float = 4.2, width: float = 5.2):
    fig, axes = plt.subplots(1, len(devices), figsize=(width * len(devices), height), squeeze=False)
    return fig, dict(zip(devices, axes[0]))


def legend_outside(fig, handles_by_label: dict, footnote: str = "") -> None:
    fig.legend(list(handles_by_label.values()), list(handles_by_label.keys()), loc="upper left",
               bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False, title="backend·precision·device")
    add_footnote(fig, footnote)


def add_footnote(fig, text: str) -> None:
    """Grey text under the lowest axes decoration (tick labels, axis labels), never on top of them."""
    if not text:
        return
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_figure = fig.transFigure.inverted()
    bottom = min(ax.get_tightbbox(renderer).transformed(to_figure).y0 for ax in fig.axes if ax.get_visible())
    fig.text(0.01, bottom - 0.01, text, fontsize=8, color="#555", ha="left", va="top")


def _plain_number(x, _pos=None) -> str:
    return f"{x:,.0f}" if x >= 1 else f"{x:g}"


def plain_log_axis(axis) -> None:
    """Log axis labelled 1, 2, 5, 10, 20, ... as plain numbers: easier to read than 2×10³."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(_plain_number))
    axis.set_minor_formatter(NullFormatter())


def batch_axis(ax, batch_sizes) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted({int(b) for b in batch_sizes})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("batch size (images)")
    ax.grid(True, which="major", alpha=0.3)


def dodge(batch_sizes: np.ndarray, i: int, n: int) -> np.ndarray:
    """Spreads overlapping series sideways by a few percent on the log2 axis."""
    if n <= 1:
        return batch_sizes
    return batch_sizes * 2 ** (0.25 * (i - (n - 1) / 2) / n)


# ---------------------------------------------------------------- per-resolution figures


def batch_log_panel(ax, batch_sizes, ylabel: str, title: str) -> None:
    """The axes every per-resolution figure shares: batch size across, a log y axis with plain
    numbers, its label with the unit."""
    batch_axis(ax, batch_sizes)
    ax.set_yscale("log")
    plain_log_axis(ax.yaxis)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def device_panels_at(df: pd.DataFrame, resolution: int):
    """The cells at one resolution, their ok ones, and a figure with a panel per device that has
    ok cells: (cells, ok, fig, axes by device); fig is None when no cell is ok."""
    cells = df[df["resolution"] == resolution]
    ok = ok_cells(cells)
    if ok.empty:
        return cells, ok, None, {}
    fig, axes = device_axes(list(dict.fromkeys(ok["device"])))
    return cells, ok, fig, axes


def throughput_grid(ok: pd.DataFrame):
    """A panel per device, io mode and precision, so that a panel holds one line per backend (a
    full GPU sweep has some 27 series: one panel of them cannot be followed). A row per device and
    io mode, sharing its y axis so that precisions compare across it; a column per precision.
    (fig, {(device, io, precision): axes})."""
    rows = list(dict.fromkeys(zip(ok["device"], ok["io"])))
    columns = {row: list(dict.fromkeys(ok[(ok["device"] == row[0]) & (ok["io"] == row[1])]["precision"]))
               for row in rows}
    width = max(len(c) for c in columns.values())
    fig, grid = plt.subplots(len(rows), width, figsize=(4.6 * width, 3.6 * len(rows)), squeeze=False)
    axes = {}
    for r, row in enumerate(rows):
        for c in range(width):
            if c < len(columns[row]):
                axes[(*row, columns[row][c])] = grid[r][c]
                if c:
                    grid[r][c].sharey(grid[r][0])
            else:
                fig.delaxes(grid[r][c])
    return fig, axes


def plot_throughput(df: pd.DataFrame, resolution: int, path: Path) -> Path:
    title = f"Throughput at {resolution} px"
    cells = df[df["resolution"] == resolution]
    ok = ok_cells(cells)
    if ok.empty:
        return note_figure(path, title, f"no ok cells at {resolution} px\n{not_ok_note(cells)}")
    fig, axes = throughput_grid(ok)
    handles = {}
    for (device, io, precision), ax in axes.items():
        panel = ok[(ok["device"] == device) & (ok["io"] == io) & (ok["precision"] == precision)]
        for backend, s in panel.groupby("backend", sort=False):
            s = s.sort_values("batch_size")
            (line,) = ax.plot(s["batch_size"], s["throughput_ips"], **series_style(s))
            handles.setdefault(backend, Line2D([], [], color=line.get_color(), marker="o", markersize=5))
            best = s[s["best_in_batch"]]
            ax.scatter(best["batch_size"], best["throughput_ips"], s=140, marker="*", color="gold",
                       edgecolor="black", zorder=5)
        batch_log_panel(ax, panel["batch_size"], "images/s (log scale)", f"{device} · {precision} · io={io}")
    handles["★ best in batch (device, io)"] = Line2D([], [], marker="*", color="gold", markeredgecolor="black",
                                                    linestyle="none", markersize=12)
    fig.suptitle(f"{title} — higher is better")
    # Room at the top for the title: tight_layout alone lays the first row's titles under it.
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper left", bbox_to_anchor=(1.0, 0.95),
               fontsize=8, frameon=False, title="backend")
    add_footnote(fig, not_ok_note(cells))
    return save(fig, path)


def plot_latency(df: pd.DataFrame, resolution: int, path: Path) -> Path:
    title = f"Latency per batch at {resolution} px"
    cells, ok, fig, axes = device_panels_at(df, resolution)
    if fig is None:
        return note_figure(path, title, f"no ok cells at {resolution} px\n{not_ok_note(cells)}")
    handles = {}
    for device, ax in axes.items():
        groups = list(ok[ok["device"] == device].groupby("series", sort=False))
        for i, (series, s) in enumerate(groups):
            s = s.sort_values("batch_size")
            median = s["latency_ms_median"].to_numpy(float)
            p99 = s["latency_ms_p99"].to_numpy(float)
            whisker = np.vstack([np.zeros_like(median), np.clip(p99 - median, 0, None)])
            st = series_style(s)
            handles[series] = ax.errorbar(dodge(s["batch_size"].to_numpy(float), i, len(groups)), median,
                                          yerr=np.nan_to_num(whisker), capsize=2, elinewidth=0.8, **st)
        batch_log_panel(ax, ok["batch_size"], "latency per batch (ms, log scale)",
                        f"{device}: median, whisker to p99")
    fig.suptitle(f"{title} — lower is better")
    legend_outside(fig, handles, not_ok_note(cells))
    return save(fig, path)


def plot_gpu_memory(df: pd.DataFrame, resolution: int, path: Path) -> Path:
    """Peak GPU memory per batch; with no GPU numbers, host RSS of cpu cells, said so in the title."""
    cells = df[df["resolution"] == resolution]
    ok = ok_cells(cells)
    gpu = ok[(ok["memory_source"] == "gpu") & ok["memory_peak_mb"].notna()]
    if not gpu.empty:
        plotted, what = gpu, "peak GPU memory (MB, NVML, whole process)"
        title = f"Peak GPU memory at {resolution} px"
    else:
        plotted = ok[ok["memory_peak_mb"].notna()]
        what = "peak host RSS (MB)"
        title = f"No GPU memory measured at {resolution} px — peak host RSS instead"
    if plotted.empty:
        return note_figure(path, f"Peak memory at {resolution} px",
                           "no memory measurements in ok cells\n" + not_ok_note(cells))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    handles = {}
    for series, s in plotted.groupby("series", sort=False):
        s = s.sort_values("batch_size")
        (handles[series],) = ax.plot(s["batch_size"], s["memory_peak_mb"], **series_style(s))
    batch_log_panel(ax, plotted["batch_size"], what.replace("(MB", "(MB, log scale"),
                    f"{title} — lower is better")
    legend_outside(fig, handles, not_ok_note(cells))
    return save(fig, path)


# ---------------------------------------------------------------- cross-resolution figures


STATUS_SHORT = {"skipped": "skip", "oom": "OOM", "error": "err", "inaccurate": "inacc"}


def speedup_matrix(df: pd.DataFrame):
    """(values, labels, rows, columns) for the heatmap: rows series, columns resolution × batch."""
    df = df.assign(column=[f"{r}px\nbs {b}" for r, b in zip(df["resolution"], df["batch_size"])])
    rows = list(dict.fromkeys(df["series"]))
    cols = list(dict.fromkeys(df.sort_values(["resolution", "batch_size"])["column"]))
    values = np.full((len(rows), len(cols)), np.nan)
    labels = np.full((len(rows), len(cols)), "", dtype=object)
    for _, cell in df.iterrows():
        i, j = rows.index(cell["series"]), cols.index(cell["column"])
        if cell["status"] == "ok" and pd.notna(cell[SPEEDUP_COLUMN]):
            values[i, j] = cell[SPEEDUP_COLUMN]
            labels[i, j] = f"{cell[SPEEDUP_COLUMN]:.2f}"
        elif cell["status"] == "ok":
            labels[i, j] = "n/b"  # ok, but its pytorch fp32 baseline is not
        else:
            labels[i, j] = STATUS_SHORT.get(cell["status"], cell["status"])
    return values, labels, rows, cols


def plot_speedup_heatmap(df: pd.DataFrame, path: Path) -> Path:
    title = "Speedup over pytorch fp32 (same device, io, resolution, batch)"
    if ok_cells(df).empty:
        return note_figure(path, title, "no ok cells\n" + not_ok_note(df))
    skipped_everywhere = df.groupby("series")["status"].agg(lambda s: (s == "skipped").all())
    hidden = skipped_everywhere[skipped_everywhere].index
    values, labels, rows, cols = speedup_matrix(df[~df["series"].isin(hidden)])
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return note_figure(path, title, "no cell has an ok pytorch fp32 baseline to compare with")
    # Centre the colour scale on 1.0 so green is faster and red slower, whatever the range.
    norm = TwoSlopeNorm(vcenter=1.0, vmin=min(finite.min(), 0.95), vmax=max(finite.max(), 1.05))
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(cols), 1.2 + 0.32 * len(rows)))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, labels[i, j], ha="center", va="center", fontsize=7,
                    color="#666" if np.isnan(values[i, j]) else "black")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("resolution (px) and batch size (images)")
    ax.set_ylabel("backend·precision·device")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="speedup (× pytorch fp32 throughput)", shrink=0.6)
    note = ("grey: skip = skipped, OOM = out of memory, err = error, inacc = inaccurate (outputs not the model's),"
            "\nn/b = ok but no pytorch fp32 baseline")
    if len(hidden):
        note += f"\n{len(hidden)} series skipped in every cell are not shown (see the tables)"
    add_footnote(fig, note)
    return save(fig, path)


def pareto_front(memory_mb: np.ndarray, throughput: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both less memory and more throughput."""
    order = np.lexsort((-throughput, memory_mb))
    front, best = [], -np.inf
    for k in order:
        if throughput[k] > best:
            front.append(k)
            best = throughput[k]
    return np.array(front, dtype=int)


def plot_throughput_vs_memory(df: pd.DataFrame, path: Path) -> Path:
    title = "Throughput against peak memory (Pareto front marked)"
    ok = ok_cells(df)
    ok = ok[ok["memory_peak_mb"].notna()]
    if ok.empty:
        return note_figure(path, title, "no ok cells with a memory measurement\n" + not_ok_note(df))
    panels = list(ok.groupby(["resolution", "device"], sort=True))
    ncols = min(len(panels), 2)
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.4 * nrows), squeeze=False)
    handles = {}
    for ax, ((resolution, device), cells) in zip(axes.flat, panels):
        for series, s in cells.groupby("series", sort=False):
            st = series_style(s)
            handles[series] = ax.scatter(s["memory_peak_mb"], s["throughput_ips"], color=st["color"],
                                         marker=st["marker"], facecolors=st["markerfacecolor"], s=28)
        mem, ips = cells["memory_peak_mb"].to_numpy(float), cells["throughput_ips"].to_numpy(float)
        front = pareto_front(mem, ips)
        ax.step(mem[front], ips[front], where="post", color="black", linewidth=1, alpha=0.6, zorder=0)
        for k in front:
            c = cells.iloc[k]
            ax.annotate(f"{c['backend']}·{c['precision']} bs{c['batch_size']}", (mem[k], ips[k]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        src = "GPU memory" if (cells["memory_source"] == "gpu").all() else "host RSS"
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        plain_log_axis(ax.xaxis)
        ax.set_xlabel(f"peak {src} (MB, log scale)")
        ax.set_ylabel("throughput (images/s, log scale)")
        ax.set_title(f"{resolution} px, {device}", fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles["Pareto front"] = Line2D([], [], color="black", alpha=0.6)
    fig.suptitle(title + " — up and left is better")
    # leave the suptitle its own strip (a third of an inch): tight_layout alone lets the first
    # row's panel titles run into it
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    legend_outside(fig, handles, "each point is one batch size; " + not_ok_note(df))
    return save(fig, path)


def peak_throughput(ok: pd.DataFrame) -> pd.DataFrame:
    """The best throughput over batch sizes per series and resolution."""
    idx = ok.groupby(["series", "resolution"], sort=False)["throughput_ips"].idxmax()
    return ok.loc[idx].assign(pixels=lambda d: d["resolution"].astype(float) ** 2)


def plot_scaling(df: pd.DataFrame, path: Path) -> Path:
    title = "Throughput against pixels per image"
    ok = ok_cells(df)
    if ok["resolution"].nunique() < 2:
        return note_figure(path, title, "scaling needs ok cells at two or more resolutions; "
                           f"this summary has {ok['resolution'].nunique()}")
    peak = peak_throughput(ok)
    fig, axes = device_axes(list(dict.fromkeys(peak["device"])), height=4.5, width=5.6)
    handles = {}
    for device, ax in axes.items():
        for series, s in peak[peak["device"] == device].groupby("series", sort=False):
            s = s.sort_values("pixels")
            st = series_style(s)
            (handles[series],) = ax.plot(s["pixels"], s["throughput_ips"], **st)
            # Ideal: the work per image grows with pixels, so throughput falls as 1/pixels.
            p0, t0 = s["pixels"].iloc[0], s["throughput_ips"].iloc[0]
            ax.plot(s["pixels"], t0 * p0 / s["pixels"], color=st["color"], linewidth=0.7, alpha=0.5,
                    linestyle=(0, (1, 2)))
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        res = sorted(peak["resolution"].unique())
        ax.set_xticks([r * r for r in res], [f"{r}²\n{r * r / 1e3:.0f}k" for r in res], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("pixels per image (resolution², log scale)")
        ax.set_ylabel("peak throughput over batch sizes (images/s, log)")
        ax.set_title(device)
        ax.grid(True, alpha=0.3)
    handles["ideal ∝ 1/pixels (from smallest resolution)"] = Line2D([], [], color="grey", linestyle=(0, (1, 2)))
    fig.suptitle(f"{title} — above the dotted line: scales better than pixel count")
    legend_outside(fig, handles, not_ok_note(df))
    return save(fig, path)


def gpu_work_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The ok GPU cells (io=device: the model's own speed) that have an achieved TFLOP/s."""
    if "achieved_tflops" not in df.columns:
        return df.iloc[0:0]
    ok = ok_cells(df)
    return ok[(ok["device"] == "cuda") & (ok["io"] == "device") & ok["achieved_tflops"].notna()]


def plot_achieved_tflops(df: pd.DataFrame, path: Path) -> Path | None:
    """Achieved TFLOP/s against batch size, a panel per resolution, a line per backend·precision,
    and each precision's measured ceiling as a horizontal line: how far each format is from what
    the GPU can do. None (and no file) where no GPU cell has an achieved TFLOP/s."""
    path = Path(path)
    cells = gpu_work_cells(df)
    if cells.empty:
        path.unlink(missing_ok=True)  # an earlier run's figure would describe other cells
        return None
    resolutions = sorted(cells["resolution"].unique())
    fig, grid = plt.subplots(1, len(resolutions), figsize=(5.2 * len(resolutions), 4.4), squeeze=False, sharey=True)
    handles = {}
    for ax, resolution in zip(grid[0], resolutions):
        panel = cells[cells["resolution"] == resolution]
        for (backend, precision), s in panel.groupby(["backend", "precision"], sort=False):
            s = s.sort_values("batch_size")
            (handles[f"{backend}·{precision}"],) = ax.plot(s["batch_size"], s["achieved_tflops"],
                                                          **style(backend, precision, "cuda", "device"))
        ceilings = panel[["precision", "peak_tflops"]].dropna().drop_duplicates()  # one per GPU kind and precision
        for k, (precision, ceiling) in enumerate(ceilings.itertuples(index=False)):
            ax.axhline(ceiling, color="black", linewidth=1, alpha=0.7, linestyle=PRECISION_STYLES.get(precision, "-."))
            # fp16's and bf16's ceilings lie close together: their labels take turns left, right, centre
            x, ha = ((0.01, "left"), (0.99, "right"), (0.5, "center"))[k % 3]
            ax.annotate(f"{precision} peak {ceiling:,.0f}", (x, ceiling), xycoords=("axes fraction", "data"),
                        xytext=(0, 2), textcoords="offset points", fontsize=7, va="bottom", ha=ha)
        batch_log_panel(ax, panel["batch_size"], "achieved TFLOP/s (log scale)", f"{resolution} px, cuda, io=device")
    handles["measured peak (dense matmul)"] = Line2D([], [], color="black", alpha=0.7)
    fig.suptitle("Achieved TFLOP/s against batch size, and the GPU's measured peak — higher is better")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper left", bbox_to_anchor=(1.0, 0.95),
               fontsize=8, frameon=False, title="backend·precision")
    add_footnote(fig, "throughput × FLOPs per image (2 per multiply-accumulate, FlopCounterMode); "
                      "peak line style = precision")
    return save(fig, path)


# ---------------------------------------------------------------- entry point


PLOTTERS = {
    "throughput": plot_throughput, "latency": plot_latency, "gpu_memory": plot_gpu_memory,
    "speedup_heatmap": plot_speedup_heatmap, "throughput_vs_memory": plot_throughput_vs_memory,
    "scaling": plot_scaling, "achieved_tflops": plot_achieved_tflops,
}


def write_figures(summary: pd.DataFrame, outdir, resolutions=None, kinds=KINDS) -> list[Path]:
    """Writes the requested figure kinds; per-resolution kinds once per resolution; an optional
    kind only where the summary has what it shows."""
    df = prepared(summary)
    outdir = Path(outdir)
    if resolutions is None:
        resolutions = sorted(int(r) for r in df["resolution"].dropna().unique())
    written = []
    for kind in kinds:
        if kind in PER_RESOLUTION_KINDS:
            for r in resolutions:
                written.append(PLOTTERS[kind](df, r, outdir / figure_name(kind, r)))
        else:
            written.append(PLOTTERS[kind](df, outdir / figure_name(kind)))
    return [p for p in written if p is not None]
