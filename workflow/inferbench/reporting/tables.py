"""Result tables from a summary: a tidy CSV for machines, Markdown and HTML for people.

The cells, their derived columns and the best of each batch come from the summary model
(inferbench.reporting.summary); this module formats them and lays them out.

Every cell of the sweep appears, ok or not: a skipped, oom or failed cell is shown
with its reason, because "TensorRT could not run here" is itself a result. An inaccurate cell
(outputs beyond its precision's tolerance) keeps its figures, marked, with the reason; it is never
starred. In Markdown
and HTML, a row whose every cell was skipped for one reason (every cuda row on a machine
without a GPU) is one line under its table, one line per reason, instead of a row that
repeats "skipped" at every batch size; the CSV keeps one row per cell.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from inferbench.reporting.summary import MEASURED_STATUSES, NOT_OK_STATUSES, SPEEDUP_COLUMN, tidy_table

MEMORY_NOTE = "peak memory: process GPU memory (NVML) for cuda cells, peak host RSS for cpu cells"
SPEEDUP_NOTE = "speedup: throughput over the pytorch fp32 cell of the same device, io and batch size"
EFFICIENCY_NOTE = ("achieved TFLOP/s: throughput x the model's FLOPs per image (FlopCounterMode, 2 per "
                   "multiply-accumulate); of GPU peak: over the dense matrix-product rate measured on the cell's GPU "
                   "in its precision in the same sweep")
SPREAD_NOTE = ("throughput: the median of the cell's timed rounds; rounds spread: how far apart they were "
               "(fastest over slowest, minus 1): two cells closer than that are not told apart")
BEST_MARK = "★"
HOST_BOUND_MARK = "†"
INACCURATE_MARK = "✗"
INACCURATE_NOTE = (f"{INACCURATE_MARK} inaccurate: the outputs disagree with the fp32 reference beyond what the "
                   "precision allows (the footnote says by how much), so the figures are not this model's: shown, "
                   "never starred, ranked or taken as a baseline")
HOST_BOUND_NOTE = (f"{HOST_BOUND_MARK} host-bound: the host took at least 0.8 of the GPU's time for a call just to "
                   "issue it (median enqueue over median CUDA-event time), so the figure is the host CPU's pace")


def is_host_bound(row) -> bool:
    value = row.get("host_bound") if hasattr(row, "get") else None
    return bool(value) if value is not None and not pd.isna(value) else False


# ---------------------------------------------------------------- number formatting


def fmt_sig(x, digits: int = 3) -> str:
    """Three significant digits, thousands separated: 12,345 / 123 / 12.3 / 1.23 / 0.0123."""
    if x is None or pd.isna(x):
        return ""
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    decimals = digits - 1 - int(f"{abs(x):e}".split("e")[1])
    return f"{x:.{max(decimals, 0)}f}"


def fmt_sci(x) -> str:
    return "" if x is None or pd.isna(x) else f"{float(x):.1e}"


def fmt_pct(x) -> str:
    return "" if x is None or pd.isna(x) else f"{100 * float(x):.1f}%"


def fmt_speedup(x) -> str:
    return "" if x is None or pd.isna(x) else f"{float(x):.2f}×"


def fmt_spread(x) -> str:
    """How far apart a cell's rounds were: a difference smaller than this is not one to rank on."""
    return "" if x is None or pd.isna(x) else f"{float(x):.1f}"


def fmt_mb(x) -> str:
    return "" if x is None or pd.isna(x) else f"{float(x):,.0f}"


# ---------------------------------------------------------------- reason footnotes


def not_run(tidy: pd.DataFrame) -> dict[str, list[str]]:
    """Rows (series) whose every cell was skipped for one and the same reason: reason -> their
    labels, in table order. Such rows are shown as one line per reason, not as table rows."""
    out: dict[str, list[str]] = {}
    for series, cells in tidy.groupby("series", sort=False):
        if (cells["status"] == "skipped").all() and cells["reason"].nunique() == 1:
            out.setdefault(cells["reason"].iloc[0] or "no reason recorded", []).append(series)
    return out


def without_not_run(tidy: pd.DataFrame, collapsed: dict[str, list[str]]) -> pd.DataFrame:
    gone = {s for labels in collapsed.values() for s in labels}
    return tidy[~tidy["series"].isin(gone)]


def not_run_lines(collapsed: dict[str, list[str]]) -> list[str]:
    return [f"Skipped at every batch size ({reason}): {', '.join(labels)}." for reason, labels in collapsed.items()]


def reason_keys(tidy: pd.DataFrame) -> dict[str, str]:
    """Each distinct non-ok reason gets a short footnote key: a, b, c, ..."""
    reasons = tidy.loc[tidy["status"] != "ok", ["status", "reason"]].drop_duplicates()
    keys = {}
    for i, (_, row) in enumerate(reasons.iterrows()):
        text = f"{row['status']}: {row['reason'] or 'no reason recorded'}"
        if text not in keys:
            keys[text] = _footnote_key(len(keys))
    return keys


def _footnote_key(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def status_text(row, keys: dict[str, str]) -> str:
    text = f"{row['status']}: {row['reason'] or 'no reason recorded'}"
    return f"{row['status']} [{keys[text]}]"


# ---------------------------------------------------------------- people's views


def overview_frame(tidy: pd.DataFrame, keys: dict[str, str]) -> pd.DataFrame:
    """Rows series, columns batch sizes, cells "throughput (speedup)" with the best marked."""
    def cell(row) -> str:
        if row["status"] not in MEASURED_STATUSES:
            return status_text(row, keys)
        text = f"{fmt_sig(row['throughput_ips'])} ({fmt_speedup(row[SPEEDUP_COLUMN]) or 'no baseline'})"
        if is_host_bound(row):
            text += f" {HOST_BOUND_MARK}"
        if row["status"] == "inaccurate":
            return f"{INACCURATE_MARK} {text} {status_text(row, keys)}"
        return f"{BEST_MARK} {text}" if row["best_in_batch"] else text

    return by_batch(tidy, tidy.apply(cell, axis=1) if len(tidy) else [])


def by_batch(tidy: pd.DataFrame, values) -> pd.DataFrame:
    """One value per cell laid out as the overview: rows series, columns batch sizes."""
    view = tidy.assign(_cell=values)
    order = list(dict.fromkeys(view["series"]))
    table = view.pivot_table(index="series", columns="batch_size", values="_cell", aggfunc="first")
    table = table.reindex(order).fillna("")
    table.columns = [f"batch {int(b)}" for b in table.columns]
    table.index.name = "backend·precision·device"
    return table


DETAIL_HEADERS = {
    "series": "backend·precision·device",
    "status": "status",
    "throughput_ips": "throughput (images/s)",
    "ips_spread_pct": "rounds spread (%)",
    "latency_ms_median": "median latency (ms)",
    "latency_ms_p99": "p99 latency (ms)",
    "memory_peak_mb": "peak memory (MB)",
    "energy_j_per_image": "energy (J/image)",
    "gpu_busy_pct": "GPU busy (%)",
    "enqueue_ms_median": "enqueue (ms)",
    "max_abs_err": "max abs err",
    "top1_agreement": "top-1 agreement",
    "achieved_tflops": "achieved TFLOP/s",
    "pct_of_peak": "of GPU peak (%)",
    SPEEDUP_COLUMN: "speedup",
}


DETAIL_FORMATS = {
    "throughput_ips": fmt_sig, "ips_spread_pct": fmt_spread, "latency_ms_median": fmt_sig, "latency_ms_p99": fmt_sig,
    "memory_peak_mb": fmt_mb, "energy_j_per_image": fmt_sig, "gpu_busy_pct": fmt_mb,
    "enqueue_ms_median": fmt_sig, "max_abs_err": fmt_sci, "top1_agreement": fmt_pct,
    "achieved_tflops": fmt_sig, "pct_of_peak": fmt_spread, SPEEDUP_COLUMN: fmt_speedup,
}


def details_frame(tidy: pd.DataFrame, keys: dict[str, str]) -> pd.DataFrame:
    """Every metric of the cells of one batch size, formatted for reading."""
    out = pd.DataFrame(index=tidy.index)
    out["series"] = [f"{BEST_MARK} {s}" if b else s for s, b in zip(tidy["series"], tidy["best_in_batch"])]
    out["status"] = [((f"ok {HOST_BOUND_MARK}" if is_host_bound(r) else "ok") if r["status"] == "ok"
                      else f"{INACCURATE_MARK} {status_text(r, keys)}" if r["status"] == "inaccurate"
                      else status_text(r, keys)) for _, r in tidy.iterrows()]
    for col, fmt in DETAIL_FORMATS.items():
        out[col] = tidy[col].map(fmt)
    return out.rename(columns=DETAIL_HEADERS)


def _groups(tidy: pd.DataFrame):
    """(title, cells shown in rows, rows collapsed into lines) per model and resolution, in order."""
    multi_model = tidy["model"].nunique() > 1
    for (model, resolution), part in tidy.groupby(["model", "resolution"], sort=False):
        title = f"{resolution} px" + (f" — {model}" if multi_model else f" ({model})")
        collapsed = not_run(part)
        yield title, without_not_run(part, collapsed), collapsed


def _shown(tidy: pd.DataFrame) -> pd.DataFrame:
    """The cells shown in table rows (footnote keys are only for those)."""
    parts = [shown for _, shown, _ in _groups(tidy)]
    return pd.concat(parts) if parts else tidy


NOTHING_RAN = "No cell at this resolution ran."


def notes(keys: dict[str, str]) -> list[str]:
    lines = [f"{BEST_MARK} best throughput in its batch size (per device and io mode).", SPEEDUP_NOTE + ".",
             MEMORY_NOTE + ".", SPREAD_NOTE + ".", HOST_BOUND_NOTE + ".", EFFICIENCY_NOTE + ".",
             INACCURATE_NOTE + "."]
    lines += [f"[{k}] {text}" for text, k in keys.items()]
    return lines


# ---------------------------------------------------------------- Markdown


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    frame = frame.reset_index() if index else frame
    cols = [str(c) for c in frame.columns]
    rows = [" | ".join(_md_escape(v) for v in row) for row in as_text(frame).itertuples(index=False)]
    head = " | ".join(cols)
    rule = " | ".join("---" for _ in cols)
    return "\n".join(f"| {line} |" for line in [head, rule] + rows)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(tidy: pd.DataFrame, heading_level: int = 2) -> str:
    """Overview (throughput per batch size) then details, per resolution."""
    h = "#" * heading_level
    keys = reason_keys(_shown(tidy))
    parts = []
    for title, shown, collapsed in _groups(tidy):
        parts.append(f"{h} Throughput (images/s) at {title}\n")
        parts.append((markdown_table(overview_frame(shown, keys)) if len(shown) else NOTHING_RAN) + "\n")
        if collapsed:
            parts.append("\n".join(f"- {line}" for line in not_run_lines(collapsed)) + "\n")
    parts.append("\n".join(f"- {line}" for line in notes(keys)) + "\n")
    for title, shown, _ in _groups(tidy):
        if not len(shown):
            continue
        parts.append(f"{h} Details at {title}\n")
        for batch, cells in shown.groupby("batch_size", sort=True):
            parts.append(f"{h}# Batch size {int(batch)}\n")
            parts.append(markdown_table(details_frame(cells, keys), index=False) + "\n")
    return "\n".join(parts)


# ---------------------------------------------------------------- HTML


TABLE_CSS = """
table.ib { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 13px; }
table.ib th, table.ib td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
table.ib th { background: #f0f0f0; }
table.ib td.label, table.ib th.label { text-align: left; }
table.ib td.best { background: #d9f2d9; font-weight: bold; }
table.ib td.notok { color: #888; background: #fafafa; }
table.ib td.inaccurate { color: #a00; background: #fdf0f0; }
ul.notes { font-size: 13px; color: #444; }
ul.notrun { font-size: 13px; color: #666; margin-top: -0.6em; }
"""


def cell_classes(tidy: pd.DataFrame) -> pd.Series:
    """Each cell's CSS class, from its data: "best" for the best of its batch, "notok" for a cell
    that did not run, "inaccurate" for one whose outputs are not the model's."""
    best = tidy["best_in_batch"].astype(bool)
    not_ok = tidy["status"].isin(NOT_OK_STATUSES)
    inaccurate = tidy["status"] == "inaccurate"
    return pd.Series(np.select([best, not_ok, inaccurate], ["best", "notok", "inaccurate"], ""), index=tidy.index,
                     dtype=object)


def overview_classes(tidy: pd.DataFrame) -> pd.DataFrame:
    """The CSS classes of overview_frame's cells."""
    return by_batch(tidy, cell_classes(tidy) if len(tidy) else [])


def details_classes(tidy: pd.DataFrame) -> pd.DataFrame:
    """The CSS classes of details_frame's cells: only the status column shows one."""
    classes = pd.DataFrame("", index=tidy.index, columns=["series", "status", *DETAIL_FORMATS])
    classes["status"] = np.select([tidy["status"].isin(NOT_OK_STATUSES), tidy["status"] == "inaccurate"],
                                  ["notok", "inaccurate"], "")
    return classes.rename(columns=DETAIL_HEADERS)


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as a string, a missing one as "" (pandas 3's astype(str) keeps NaN as NaN)."""
    return frame.astype(object).where(frame.notna(), "").astype(str)


def html_table(frame: pd.DataFrame, classes: pd.DataFrame | None = None, index_label: str | None = None) -> str:
    """A plain HTML table, its first column a label. classes: each cell's CSS class (same index and
    columns as frame), decided from the data the cell shows; without them, a cell whose value is a
    status other than ok is "notok" (a finding's table holds raw values, statuses among them)."""
    if classes is None:
        css_rows = frame.map(lambda v: "notok" if isinstance(v, str) and v in NOT_OK_STATUSES else "")
        css_rows = css_rows.to_numpy(dtype=object)
    else:
        css_rows = classes.reindex(index=frame.index, columns=frame.columns).fillna("").to_numpy(dtype=object)
    if index_label:
        frame = frame.reset_index()
        css_rows = np.column_stack([np.full(len(css_rows), "", dtype=object), css_rows])
    head = "".join(f'<th class="{"label" if i == 0 else ""}">{html.escape(str(c))}</th>'
                   for i, c in enumerate(frame.columns))
    body = []
    for row, row_css in zip(as_text(frame).itertuples(index=False), css_rows):
        cells = []
        for i, (value, css) in enumerate(zip(row, row_css)):
            css = css or ("label" if i == 0 else "")
            cells.append(f'<td class="{css}">{html.escape(value)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="ib"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def to_html_fragment(tidy: pd.DataFrame, heading_level: int = 2) -> str:
    """The same content as the Markdown, as HTML without <html>/<head>, for embedding."""
    h, hd = f"h{heading_level}", f"h{heading_level + 1}"
    keys = reason_keys(_shown(tidy))
    parts = []
    for title, shown, collapsed in _groups(tidy):
        parts.append(f"<{h}>Throughput (images/s) at {html.escape(title)}</{h}>")
        parts.append(html_table(overview_frame(shown, keys), overview_classes(shown), index_label="series")
                     if len(shown)
                     else f"<p>{NOTHING_RAN}</p>")
        if collapsed:
            parts.append('<ul class="notrun">' + "".join(f"<li>{html.escape(line)}</li>"
                                                         for line in not_run_lines(collapsed)) + "</ul>")
    parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes(keys)) + "</ul>")
    for title, shown, _ in _groups(tidy):
        if not len(shown):
            continue
        parts.append(f"<details><summary>Details at {html.escape(title)}</summary>")
        for batch, cells in shown.groupby("batch_size", sort=True):
            parts.append(f"<{hd}>Batch size {int(batch)}</{hd}>")
            parts.append(html_table(details_frame(cells, keys), details_classes(cells)))
        parts.append("</details>")
    return "\n".join(parts)


def html_page(title: str, body: str, extra_css: str = "") -> str:
    """A standalone page: inline CSS only, nothing fetched."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>"
        "body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em; color: #222; }"
        f"{TABLE_CSS}{extra_css}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def write_tables(summary: pd.DataFrame, resolution: int | None, csv_path=None, md_path=None,
                 html_path=None) -> pd.DataFrame:
    """Writes whichever of the three outputs were asked for; returns the tidy table."""
    tidy = tidy_table(summary, resolution)
    title = "inferbench results" + (f" at {resolution} px" if resolution is not None else "")
    for path in (csv_path, md_path, html_path):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if csv_path:
        tidy.to_csv(csv_path, index=False)
    if md_path:
        Path(md_path).write_text(f"# {title}\n\n" + to_markdown(tidy), encoding="utf-8")
    if html_path:
        Path(html_path).write_text(html_page(title, to_html_fragment(tidy)), encoding="utf-8")
    return tidy
