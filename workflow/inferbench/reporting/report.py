"""The run report: environment, method, tables, figures and findings in one document.

Two renderings of the same content. The HTML is one self-contained file (figures as
base64 data URIs, inline CSS, no scripts, nothing fetched), so it can be mailed or
archived and still opens offline. The Markdown references figures by relative path.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import pandas as pd

from inferbench.errors import UserError
from inferbench.measure.tolerance import RELATIVE_TOLERANCE
from inferbench.reporting import figures, findings, tables
from inferbench.reporting.summary import normalise, tidy_table

ENVIRONMENT_FIELDS = [
    ("GPU", "gpu_name"), ("NVIDIA driver", "driver_version"), ("CUDA", "cuda_version"),
    ("cuDNN", "cudnn_version"), ("torch", "torch_version"), ("torchvision", "torchvision_version"),
    ("onnx", "onnx_version"), ("onnxruntime", "onnxruntime_version"),
    ("torch_tensorrt", "torch_tensorrt_version"), ("TensorRT", "tensorrt_version"),
    ("container image", "container_image"), ("CPU", "cpu_model"), ("CPU threads", "num_threads"),
    ("Python", "python_version"), ("host", "hostname"), ("inferbench", "inferbench_version"),
    ("git commit", "git_commit"), ("config sha256", "config_sha256"), ("run id", "run_id"),
    ("seed", "seed"), ("weights", "weights"),
]

TIMERS = {
    "cuda_event": "CUDA events recorded on the stream around each iteration (GPU time of the batch)",
    "perf_counter": "time.perf_counter around each iteration, after the device has finished the work",
}

IO_MEANING = [
    "`device`: the input batch is already on the device the model runs on when the clock starts; "
    "the output stays there. This is the model's own speed.",
    "`host`: a pinned host batch is copied to the device and the output copied back inside the "
    "timed window. This is what a service that receives images from the CPU sees.",
]

FIGURE_CAPTIONS = {
    "throughput": "Throughput (images/s) against batch size, one line per backend·precision·device; "
                  "the star marks the fastest cell of each batch size.",
    "latency": "Median latency per batch (ms) with a whisker to the 99th percentile.",
    "gpu_memory": "Peak process GPU memory (MB, NVML) against batch size.",
    "speedup_heatmap": "Throughput over pytorch fp32 of the same device, io, resolution and batch size.",
    "throughput_vs_memory": "Throughput against peak memory; the step line is the Pareto front "
                            "(nothing is both faster and smaller).",
    "scaling": "Peak throughput against pixels per image; dotted: ideal 1/pixels from the smallest resolution.",
    "achieved_tflops": "Achieved TFLOP/s (throughput × FLOPs per image) of the GPU cells against batch size; "
                       "the black lines are the GPU's measured peak per precision (a dense matrix product).",
}

CSS = """
.meta td:first-child { color: #555; padding-right: 1em; white-space: nowrap; }
.meta td { padding: 1px 4px; font-size: 14px; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #444; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
nav a { margin-right: 1em; }
.missing { color: #a00; }
"""


# ---------------------------------------------------------------- content


def distinct_values(values: pd.Series) -> str:
    """"a" when every cell agrees, "a (12 cells); b (3 cells)" when they do not."""
    counts = values.dropna().map(_plain).replace("", pd.NA).dropna().value_counts()
    if counts.empty:
        return "not recorded"
    if len(counts) == 1:
        return counts.index[0]
    return "; ".join(f"{v} ({n} cells)" for v, n in counts.items())


def value_range(values: pd.Series) -> str:
    """A count that adapts per cell, as "median M (min A, max B) over N cells"; a single value as is."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "not recorded"
    if v.nunique() == 1:
        return _plain(float(v.iloc[0]))
    return f"median {_plain(float(v.median()))} (min {_plain(float(v.min()))}, max {_plain(float(v.max()))}) over {len(v)} cells"


def _plain(value) -> str:
    """50.0 -> "50": integer columns come back as floats when some cells are null."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def cudnn_text(value) -> str:
    """torch reports cuDNN 9.19.0 as 91900 (and 8.9.7 as 8907): show the release."""
    text = str(value)
    if text.isdigit() and len(text) >= 4:
        n = int(text)
        major = n // 10000 if n >= 10000 else n // 1000
        rest = n - major * (10000 if n >= 10000 else 1000)
        return f"{major}.{rest // 100}.{rest % 100} ({text})"
    return text


def environment(df: pd.DataFrame) -> list[tuple[str, str]]:
    df = df.copy()
    if "cudnn_version" in df.columns:
        df["cudnn_version"] = df["cudnn_version"].map(lambda v: cudnn_text(v) if pd.notna(v) else v)
    rows = [(label, distinct_values(df[col])) for label, col in ENVIRONMENT_FIELDS]
    rows += gpu_ceilings(df)
    times = df["timestamp_utc"].dropna().astype(str)
    if len(times):
        rows.append(("measured (UTC)", f"{times.min()} to {times.max()}"))
    return rows


def gpu_ceilings(df: pd.DataFrame) -> list[tuple[str, str]]:
    """A row per GPU with its measured ceilings (the sweep's `gpu_peak` job: a dense matrix
    product per precision, fp32 without TF32), where the summary has them."""
    columns = [(p, f"gpu_peak_tflops_{p}") for p in ("fp32", "fp16", "bf16") if f"gpu_peak_tflops_{p}" in df.columns]
    if not columns:
        return []
    gpu = df[df["device"] == "cuda"]
    gpu = gpu[gpu[[c for _, c in columns]].notna().any(axis=1)]
    rows = []
    for (host, index, name), cells in gpu.groupby(["hostname", "gpu_index", "gpu_name"], sort=True, dropna=False):
        ceilings = ", ".join(f"{p} {cells[c].dropna().iloc[0]:,.1f}" for p, c in columns if cells[c].notna().any())
        where = f"{_plain(name)}, GPU {_plain(index)} of {_plain(host)}"
        rows.append((f"measured peak, dense matmul (TFLOP/s): {where}", ceilings))
    return rows


def worker_lines(ok: pd.DataFrame) -> list[str]:
    """How the GPU cells' processes ran (gpu_worker): it decides what the memory peaks include."""
    if "gpu_worker" not in ok.columns:
        return []
    gpu = ok[ok["device"] == "cuda"]
    counts = gpu["gpu_worker"].dropna().value_counts()
    if "warm" not in counts:
        return [f"GPU cells: a fresh process each ({counts.get('fresh', 0)} rows)."] if len(counts) else []
    return [f"GPU cells: {counts['warm']} rows ran in warm workers (`gpu_worker: warm`: one process per GPU, "
            "backend and precision runs its cells one after another), "
            f"{counts.get('fresh', 0)} in a fresh process each. A warm worker's GPU memory peak includes what "
            "its earlier cells left loaded (`gpu_mem_start_mb`, `worker_cells_before` in the CSV)."]


def method(df: pd.DataFrame) -> list[str]:
    lines = []
    for timer, n in df.loc[df["status"] == "ok", "timer"].dropna().value_counts().items():
        lines.append(f"Timer `{timer}` ({n} cells): {TIMERS.get(timer, 'see the timer column')}.")
    ok = df[df["status"] == "ok"]
    lines.append(f"Warm-up iterations: {value_range(ok['n_warmup'])}; timed iterations: "
                 f"{value_range(ok['n_iters'])}, in consecutive rounds. Throughput is the median of the rounds' "
                 "throughputs (batch size / the round's median latency); `ips_spread_pct` is how far apart "
                 "the rounds were (max over min, minus 1).")
    lines.append("Before loading, before the first call and before each io mode, a GPU is kept busy until its "
                 "SM clock is up (`clock_spinup_s`): cuDNN's autotuner and short timed windows otherwise run at "
                 "an idling clock. Each GPU row records the mean SM clock over its timed window "
                 "(`sm_clock_mhz_mean`) and the host's cost of one kernel launch just before it (`host_launch_us`). "
                 "Unless `pin_fastest_cpu` is off, the thread that launches a GPU cell's work runs on the host's "
                 "fastest CPU, chosen by timing a short loop on each before the warm-up and the window and "
                 "checked between rounds (`host_cpus`; `host_cpu_speed_ratio` is how much slower the slowest "
                 "CPU was).")
    lines.append("Compilation, export and loading are never inside the timed window; they are reported "
                 "separately (export_s, load_s, compile_s, first_run_ms in the CSV).")
    lines.append("Accuracy: max_abs_err and top-1 agreement against the fp32 pytorch output on the same input. "
                 "A cell whose max_abs_err exceeds its precision's tolerance (a fraction of the largest reference "
                 "logit: " + ", ".join(f"{k} {v:g}" for k, v in RELATIVE_TOLERANCE.items())
                 + ") is `inaccurate`: its figures are shown, marked, and never ranked.")
    lines += IO_MEANING
    lines += worker_lines(ok)
    settings = ok["measurement"].dropna().unique()
    for text in settings:
        lines.append(f"Measurement settings: `{_compact_json(text)}`")
    return lines


def _compact_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), sort_keys=True)
    except (TypeError, ValueError):
        return str(text)


def figure_kind(name: str) -> str:
    stem = Path(name).stem
    if stem.isdigit():
        return "throughput"
    for kind in figures.KINDS:
        if stem == kind or stem.startswith(kind + "_"):
            return kind
    return ""


def figure_list(figures_dir: Path, resolutions: list[int]) -> list[tuple[str, Path]]:
    """(title, path) in reading order: per resolution first, then cross-resolution; extras last."""
    expected = []
    for r in resolutions:
        for kind in figures.PER_RESOLUTION_KINDS:
            expected.append((f"{kind.replace('_', ' ')} at {r} px", figures_dir / figures.figure_name(kind, r)))
    for kind in figures.OVERALL_KINDS:
        expected.append((kind.replace("_", " "), figures_dir / figures.figure_name(kind)))
    for kind in figures.OPTIONAL_KINDS:  # drawn only where the summary has what they show
        if (figures_dir / figures.figure_name(kind)).is_file():
            expected.append((kind.replace("_", " "), figures_dir / figures.figure_name(kind)))
    known = {p.name for _, p in expected}
    extras = sorted(p for p in figures_dir.glob("*.png") if p.name not in known) if figures_dir.is_dir() else []
    return expected + [(p.stem.replace("_", " "), p) for p in extras]


def caption(path: Path) -> str:
    return FIGURE_CAPTIONS.get(figure_kind(path.name), "")


# ---------------------------------------------------------------- Markdown


def _md_findings(items: list[findings.Finding]) -> str:
    parts = []
    for f in items:
        parts.append(f"### {f.title}\n")
        parts.append("\n".join(f"- {s}" for s in f.sentences) + "\n")
        if f.table is not None and len(f.table) and len(f.table) <= 40:
            parts.append(tables.markdown_table(f.table, index=False) + "\n")
    return "\n".join(parts)


def markdown_report(summary, items, figure_paths, md_path: Path, tables_dir: Path | None, config_text) -> str:
    df = normalise(summary)
    here = md_path.parent
    alerts = [f for f in items if f.alert]
    items = [f for f in items if not f.alert]
    out = ["# inferbench report\n"]
    if alerts:
        out += ["## Read first\n", _md_findings(alerts)]
    out += ["## Environment\n", "| | |\n| --- | --- |"]
    out += [f"| {k} | {tables._md_escape(v)} |" for k, v in environment(df)]
    out += ["", "## Method\n"] + [f"- {line}" for line in method(df)] + [""]
    out += ["## Findings\n", _md_findings(items)]
    out += ["## Figures\n"]
    for title, path in figure_paths:
        if path.is_file():
            out.append(f"### {title}\n\n![{title}]({Path(os.path.relpath(path, here)).as_posix()})\n\n{caption(path)}\n")
        else:
            out.append(f"### {title}\n\n*missing: {path.name} was not found*\n")
    out += ["## Tables\n"]
    if tables_dir is not None and tables_dir.is_dir():
        links = [f"[{p.name}]({Path(os.path.relpath(p, here)).as_posix()})" for p in sorted(tables_dir.glob("*"))
                 if p.suffix in (".csv", ".md", ".html")]
        if links:
            out.append("Files: " + ", ".join(links) + "\n")
    out.append(tables.to_markdown(tidy_table(df), heading_level=3))
    if config_text is not None:
        out += ["## Resolved configuration\n", "```yaml", config_text.rstrip(), "```", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- HTML


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _inline_code(text: str) -> str:
    """Backticks to <code>, everything else escaped."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _html_findings(items: list[findings.Finding]) -> str:
    parts = []
    for f in items:
        parts.append(f"<h3>{html.escape(f.title)}</h3><ul>"
                     + "".join(f"<li>{html.escape(s)}</li>" for s in f.sentences) + "</ul>")
        if f.table is not None and len(f.table):
            parts.append(f"<details><summary>data ({len(f.table)} rows)</summary>"
                         f"{tables.html_table(f.table)}</details>")
    return "\n".join(parts)


def _html_figures(figure_paths) -> str:
    parts = []
    for title, path in figure_paths:
        if path.is_file():
            parts.append(f'<figure><h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" '
                         f'src="{data_uri(path)}"><figcaption>{html.escape(caption(path))}</figcaption></figure>')
        else:
            parts.append(f'<h3>{html.escape(title)}</h3><p class="missing">missing: {html.escape(path.name)} '
                         "was not found</p>")
    return "\n".join(parts)


def html_report(summary, items, figure_paths, config_text) -> str:
    df = normalise(summary)
    env = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in environment(df))
    alerts = [f for f in items if f.alert]
    items = [f for f in items if not f.alert]
    body = [
        '<nav><a href="#environment">Environment</a><a href="#method">Method</a><a href="#findings">Findings</a>'
        '<a href="#figures">Figures</a><a href="#tables">Tables</a></nav>',
        ('<h2 id="read-first" class="missing">Read first</h2>' + _html_findings(alerts)) if alerts else "",
        f'<h2 id="environment">Environment</h2><table class="meta">{env}</table>',
        '<h2 id="method">Method</h2><ul>' + "".join(f"<li>{_inline_code(m)}</li>" for m in method(df)) + "</ul>",
        '<h2 id="findings">Findings</h2>' + _html_findings(items),
        '<h2 id="figures">Figures</h2>' + _html_figures(figure_paths),
        '<h2 id="tables">Tables</h2>' + tables.to_html_fragment(tidy_table(df), heading_level=3),
    ]
    if config_text is not None:
        body.append(f"<h2>Resolved configuration</h2><pre>{html.escape(config_text)}</pre>")
    return tables.html_page("inferbench report", "\n".join(body), extra_css=CSS)


# ---------------------------------------------------------------- entry point


def read_config(path) -> str | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config not found: {path} (pass the resolved config the run used, or leave --config out)")
    return path.read_text(encoding="utf-8")


def read_exports(path) -> list[dict] | None:
    """The run's export records (`inferbench exports`), or None where there is no such file."""
    import json

    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("exports", [])


def write_report(summary: pd.DataFrame, figures_dir, tables_dir=None, html_path=None, md_path=None,
                 config_path=None, cv_threshold: float = findings.DEFAULT_CV_THRESHOLD, harness_check_path=None,
                 exports_path=None) -> None:
    from inferbench.selfcheck.harnesscheck import read_check

    figures_dir = Path(figures_dir)
    config_text = read_config(config_path)
    resolutions = sorted(int(r) for r in summary["resolution"].dropna().unique())
    figure_paths = figure_list(figures_dir, resolutions)
    check, check_state = read_check(harness_check_path) if harness_check_path else (None, None)
    exports = read_exports(exports_path) if exports_path else None
    items = findings.derive_findings(summary, cv_threshold=cv_threshold, check=check, exports=exports,
                                     check_state=check_state)
    if html_path:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        Path(html_path).write_text(html_report(summary, items, figure_paths, config_text), encoding="utf-8")
    if md_path:
        md_path = Path(md_path)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        tdir = Path(tables_dir) if tables_dir else None
        md_path.write_text(markdown_report(summary, items, figure_paths, md_path, tdir, config_text),
                           encoding="utf-8")
