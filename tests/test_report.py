"""Report: self-contained HTML, Markdown with relative figure links, findings from the data."""

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from inferbench import cli
from inferbench.reporting import findings, figures
from synthetic import synthetic_summary, write_summary

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    summary = synthetic_summary(batch_sizes=(1, 8))
    write_summary(summary, d / "summary.parquet")
    (d / "config.resolved.yaml").write_text("resolutions: [224, 384]\n")
    figures.write_figures(summary, d / "figures")
    assert cli.main(["tables", "--summary", str(d / "summary.parquet"), "--csv", str(d / "tables" / "all.csv")]) == 0
    rc = cli.main(["report", "--summary", str(d / "summary.parquet"), "--figures-dir", str(d / "figures"),
                   "--tables-dir", str(d / "tables"), "--html", str(d / "report.html"), "--md", str(d / "report.md"),
                   "--config", str(d / "config.resolved.yaml")])
    assert rc == 0
    return d


def test_html_is_self_contained(run_dir):
    text = (run_dir / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:|#)', text), "only data URIs and in-page links allowed"
    assert "<script" not in text and "<link" not in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 9
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)


def test_html_states_environment_method_and_findings(run_dir):
    text = (run_dir / "report.html").read_text()
    for needle in ("NVIDIA H200", "580.65.06", "2.11.0+cu130", "1.31.1", "ghcr.io/example/inferbench:0.1.0",
                   "cuda_event", "pinned host batch", "Noisy cells", "torch_tensorrt not importable",
                   "resolutions: [224, 384]"):
        assert needle in text, needle


def test_markdown_links_figures_relatively(run_dir):
    md = (run_dir / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "figures/224.png" in links and len(links) == 9
    assert all((run_dir / link).is_file() for link in links)
    assert "[all.csv](tables/all.csv)" in md


def test_missing_figure_is_named_not_fatal(run_dir, tmp_path):
    shutil.copytree(run_dir / "figures", tmp_path / "figures")
    (tmp_path / "figures" / "scaling.png").unlink()
    assert cli.main(["report", "--summary", str(run_dir / "summary.parquet"), "--figures-dir",
                     str(tmp_path / "figures"), "--md", str(tmp_path / "r.md")]) == 0
    assert "missing: scaling.png" in (tmp_path / "r.md").read_text()


def test_findings_follow_the_data():
    df = synthetic_summary(batch_sizes=(1, 64))
    items = {f.title: f for f in findings.derive_findings(df, cv_threshold=0.05)}
    best = next(f for t, f in items.items() if t.startswith("Fastest"))
    assert any("On cuda, torch_compile·fp16 is fastest" in s for s in best.sentences)
    noisy = next(f for t, f in items.items() if t.startswith("Noisy"))
    assert list(noisy.table["series"]) == ["torchscript·fp32·cuda"]
    quiet = next(f for f in findings.derive_findings(df, cv_threshold=0.5) if f.title.startswith("Noisy"))
    assert quiet.table is None
    failed = next(f for t, f in items.items() if t.startswith("Cells that did not run"))
    assert "TensorRT libraries are not installed" in " ".join(failed.sentences)
    accuracy = next(f for t, f in items.items() if t.startswith("Accuracy"))
    assert any("Below 99% top-1 agreement" in s and "bf16" in s for s in accuracy.sentences)
    host_bound = next(f for t, f in items.items() if t.startswith("Host-bound"))
    assert set(zip(host_bound.table["resolution"], host_bound.table["batch_size"])) == {(224, 1)}
    assert (host_bound.table["gpu_busy_pct"] < findings.HOST_BOUND_BUSY_PCT).all()


def test_host_bound_finding_needs_utilisation_readings():
    df = synthetic_summary(batch_sizes=(64,))
    assert findings.host_bound_cells(findings.prepared(df)).sentences[0].startswith("None of the ")
    cpu_only = df[df["device"] == "cpu"].assign(gpu_busy_pct=None)
    titles = [f.title for f in findings.derive_findings(cpu_only)]
    assert not any(t.startswith("Host-bound") for t in titles)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_report_renders_in_chromium_without_broken_images(run_dir, tmp_path):
    # --dump-dom after load: a broken <img> has naturalWidth 0; mark each in the DOM to read it back.
    probe = (run_dir / "report.html").read_text().replace(
        "</body>", "<script>window.onload=()=>{document.body.setAttribute('data-broken',"
        "[...document.images].filter(i=>!i.complete||i.naturalWidth===0).length);"
        "document.body.setAttribute('data-images',document.images.length)}</script></body>")
    page = tmp_path / "probe.html"
    page.write_text(probe)
    out = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert 'data-images="9"' in out.stdout, out.stderr[-2000:]
    assert 'data-broken="0"' in out.stdout


def test_cudnn_release_is_shown_as_a_version():
    from inferbench.reporting.report import cudnn_text

    assert cudnn_text("91900") == "9.19.0 (91900)"
    assert cudnn_text("8907") == "8.9.7 (8907)"
    assert cudnn_text("not recorded") == "not recorded"


def test_method_says_how_gpu_cells_ran():
    import pandas as pd

    from inferbench.reporting.report import worker_lines

    rows = pd.DataFrame({"device": ["cuda", "cuda", "cuda", "cpu"], "gpu_worker": ["warm", "warm", "fresh", "fresh"]})
    (line,) = worker_lines(rows)
    assert line.startswith("GPU cells: 2 rows ran in warm workers") and "1 in a fresh process" in line
    assert "gpu_mem_start_mb" in line
    assert worker_lines(rows.assign(gpu_worker="fresh")) == ["GPU cells: a fresh process each (3 rows)."]
    assert worker_lines(rows.drop(columns="gpu_worker")) == []
