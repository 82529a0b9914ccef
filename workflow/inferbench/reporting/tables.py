"""Result tables from a summary: a tidy CSV for machines, Markdown and HTML for people.

Every cell of the sweep appears, ok or not: a skipped, oom or failed cell is shown
with its reason, because "TensorRT could not run here" is itself a result. In Markdown
and HTML, a row whose every cell was skipped for one reason (every cuda row on a machine
without a GPU) is one line under its table, one line per reason, instead of a row that
repeats "skipped" at every batch size; the CSV keeps one row per cell.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from inferbench.errors import UserError
from inferbench.records import schema

BASELINE = {"backend": "pytorch", "precision": "fp32"}
SPEEDUP_COLUMN = "speedup_vs_pytorch_fp32"

# Display order; names not listed sort after these, alphabetically.
BACKEND_ORDER = ["pytorch", "torchscript", "onnxruntime", "torch_compile", "torch_tensorrt"]
PRECISION_ORDER = ["fp32", "fp16", "bf16"]
DEVICE_ORDER = ["cuda", "cpu"]
IO_ORDER = ["device", "host"]

# A batch is only compared with cells that measured the same thing: same model,
# resolution, device and io mode ("host" io includes copies that "device" io does not).
COMPARABLE = ["model", "resolution", "device", "io", "batch_size"]

TIDY_COLUMNS = [
    "model", "resolution", "device", "io", "backend", "precision", "batch_size", "series",
    "status", "reason", "throughput_ips", "ips_spread_pct", "latency_ms_median", "latency_ms_p99", "latency_cv",
    "memory_peak_mb", "memory_source", "energy_j_per_image", "gpu_busy_pct", "max_abs_err", "top1_agreement",
    SPEEDUP_COLUMN, "best_in_batch", "export_s", "load_s", "compile_s", "first_run_ms",
]

MEMORY_NOTE = "peak memory: process GPU memory (NVML) for cuda cells, peak host RSS for cpu cells"
SPEEDUP_NOTE = "speedup: throughput over the pytorch fp32 cell of the same device, io and batch size"
SPREAD_NOTE = ("throughput: the median of the cell's timed rounds; rounds spread: how far apart they were "
               "(fastest over slowest, minus 1): two cells closer than that are not told apart")
BEST_MARK = "★"


# ---------------------------------------------------------------- reading


def read_summary(path) -> pd.DataFrame:
    """The summary Parquet file, checked for the columns every reader needs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"summary not found: {path} (run `inferbench aggregate` first, or pass --summary)")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise UserError(f"cannot read {path} as Parquet: {exc}") from exc
    missing = [c for c in schema.CELL_KEY + ["status", "reason", "throughput_ips"] if c not in df.columns]
    if missing:
        raise UserError(f"{path} is not an inferbench summary: missing columns {', '.join(missing)}")
    return normalise(df)


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Fill columns later schema versions may lack, and make empty reasons empty strings."""
    df = df.copy()
    for name in schema.COLUMN_NAMES:
        if name not in df.columns:
            df[name] = None
    df["reason"] = df["reason"].fillna("").astype(str)
    df["io"] = df["io"].fillna("device").astype(str)
    return df


# ---------------------------------------------------------------- labels and order


def _rank(values: pd.Series, order: list[str]) -> pd.Series:
    known = {name: i for i, name in enumerate(order)}
    return values.map(lambda v: (known.get(v, len(order)), str(v)))


def sort_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Cells in reading order: model, resolution, device, io, backend, precision, batch size."""
    keys = pd.DataFrame({
        "m": df["model"].astype(str),
        "r": df["resolution"],
        "d": _rank(df["device"], DEVICE_ORDER),
        "i": _rank(df["io"], IO_ORDER),
        "b": _rank(df["backend"], BACKEND_ORDER),
        "p": _rank(df["precision"], PRECISION_ORDER),
        "n": df["batch_size"],
    }, index=df.index)
    return df.loc[keys.sort_values(list(keys.columns)).index]


def series_parts(df: pd.DataFrame) -> list[str]:
    """The columns that name a line/row: io and model only when they vary, so labels stay short."""
    parts = ["backend", "precision", "device"]
    if df["io"].nunique() > 1:
        parts.append("io")
    if df["model"].nunique() > 1:
        parts.insert(0, "model")
    return parts


def with_series(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `series`, e.g. "onnxruntime·fp16·cuda" (plus "·host" when both io modes exist)."""
    df = df.copy()
    parts = series_parts(df)
    df["series"] = df[parts].astype(str).agg("·".join, axis=1) if len(df) else pd.Series(dtype=str)
    return df


# ---------------------------------------------------------------- derived columns


def with_memory(df: pd.DataFrame) -> pd.DataFrame:
    """One peak-memory column: NVML GPU memory for cuda cells, host RSS for cpu cells."""
    df = df.copy()
    on_gpu = df["device"] != "cpu"
    df["memory_peak_mb"] = df["gpu_mem_peak_mb"].where(on_gpu, df["host_rss_peak_mb"]).astype(float)
    df["memory_source"] = on_gpu.map({True: "gpu", False: "host_rss"})
    return df


def with_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """Throughput over the pytorch fp32 cell with the same model, resolution, device, io and batch."""
    base = df[(df["backend"] == BASELINE["backend"]) & (df["precision"] == BASELINE["precision"])
              & (df["status"] == "ok")]
    base = base[COMPARABLE + ["throughput_ips"]].rename(columns={"throughput_ips": "_base_ips"})
    base = base.drop_duplicates(COMPARABLE)
    out = df.merge(base, on=COMPARABLE, how="left")
    out.index = df.index
    ok = out["status"] == "ok"
    out[SPEEDUP_COLUMN] = (out["throughput_ips"] / out["_base_ips"]).where(ok)
    return out.drop(columns="_base_ips")


def with_best(df: pd.DataFrame) -> pd.DataFrame:
    """Marks the highest-throughput ok cell of each comparable batch (per device and io)."""
    df = df.copy()
    ok = df[df["status"] == "ok"]
    best_index = ok.groupby(COMPARABLE, dropna=False)["throughput_ips"].idxmax().dropna()
    df["best_in_batch"] = df.index.isin(best_index)
    return df


def tidy_table(summary: pd.DataFrame, resolution: int | None = None) -> pd.DataFrame:
    """The long table: one row per cell, the columns people compare, in reading order."""
    df = summary if resolution is None else summary[summary["resolution"] == resolution]
    if df.empty:
        have = sorted(int(r) for r in summary["resolution"].dropna().unique())
        raise UserError(f"no cells at resolution {resolution}; the summary has {have}")
    df = with_best(with_speedup(with_memory(with_series(df.reset_index(drop=True)))))
    return sort_cells(df)[TIDY_COLUMNS].reset_index(drop=True)


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
        if row["status"] != "ok":
            return status_text(row, keys)
        text = f"{fmt_sig(row['throughput_ips'])} ({fmt_speedup(row[SPEEDUP_COLUMN]) or 'no baseline'})"
        return f"{BEST_MARK} {text}" if row["best_in_batch"] else text

    view = tidy.assign(_cell=tidy.apply(cell, axis=1) if len(tidy) else [])
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
    "max_abs_err": "max abs err",
    "top1_agreement": "top-1 agreement",
    SPEEDUP_COLUMN: "speedup",
}


def details_frame(tidy: pd.DataFrame, keys: dict[str, str]) -> pd.DataFrame:
    """Every metric of the cells of one batch size, formatted for reading."""
    formats = {
        "throughput_ips": fmt_sig, "ips_spread_pct": fmt_spread, "latency_ms_median": fmt_sig, "latency_ms_p99": fmt_sig,
        "memory_peak_mb": fmt_mb, "energy_j_per_image": fmt_sig, "gpu_busy_pct": fmt_mb, "max_abs_err": fmt_sci,
        "top1_agreement": fmt_pct, SPEEDUP_COLUMN: fmt_speedup,
    }
    out = pd.DataFrame(index=tidy.index)
    out["series"] = [f"{BEST_MARK} {s}" if b else s for s, b in zip(tidy["series"], tidy["best_in_batch"])]
    out["status"] = [("ok" if r["status"] == "ok" else status_text(r, keys)) for _, r in tidy.iterrows()]
    for col, fmt in formats.items():
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
             MEMORY_NOTE + ".", SPREAD_NOTE + "."]
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
ul.notes { font-size: 13px; color: #444; }
ul.notrun { font-size: 13px; color: #666; margin-top: -0.6em; }
"""


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as a string, a missing one as "" (pandas 3's astype(str) keeps NaN as NaN)."""
    return frame.astype(object).where(frame.notna(), "").astype(str)


def html_table(frame: pd.DataFrame, best_mask=None, index_label: str | None = None) -> str:
    """A plain HTML table; cells starting with the best mark or a non-ok status get a class."""
    frame = frame.reset_index() if index_label else frame
    head = "".join(f'<th class="{"label" if i == 0 else ""}">{html.escape(str(c))}</th>'
                   for i, c in enumerate(frame.columns))
    body = []
    for row in as_text(frame).itertuples(index=False):
        cells = []
        for i, value in enumerate(row):
            css = "label" if i == 0 else ""
            if value.startswith(BEST_MARK) and i > 0:
                css = "best"
            elif value.split(" [")[0] in ("skipped", "oom", "error"):
                css = "notok"
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
        parts.append(html_table(overview_frame(shown, keys), index_label="series") if len(shown)
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
            parts.append(html_table(details_frame(cells, keys)))
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
