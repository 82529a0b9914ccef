# The report people read, and the archive that proves what it contains.


def report_targets():
    return [f"{RESULTS}/report.html", f"{RESULTS}/report.md", archive_path()]


def archive_path():
    return f"{RESULTS}/archive/inferbench-{RUN_ID}.tar.gz"


rule resolved_config:
    output:
        f"{RESULTS}/config.resolved.yaml",
    params:
        text=RESOLVED_CONFIG_YAML,
    shell:
        "printf '%s' {params.text:q} > {output}"


rule report:
    input:
        summary=f"{RESULTS}/summary.parquet",
        tables=table_targets(),
        figures=figure_targets(),
        config=f"{RESULTS}/config.resolved.yaml",
        code=REPORTING_CODE,
    output:
        html=report(f"{RESULTS}/report.html", caption="../report/report.rst", category="Report"),
        md=f"{RESULTS}/report.md",
    log:
        f"{RESULTS}/logs/report.log",
    shell:
        "inferbench report --summary {input.summary} --figures-dir {RESULTS}/figures --tables-dir {RESULTS}/tables "
        "--config {input.config} --html {output.html} --md {output.md} > {log} 2>&1"


rule archive:
    input:
        f"{RESULTS}/report.html",
        f"{RESULTS}/report.md",
        code=[str(PKG / "archive.py")],
    output:
        archive_path(),
    log:
        f"{RESULTS}/logs/archive.log",
    shell:
        "inferbench archive --results {RESULTS} --run-id {RUN_ID} --out {output} > {log} 2>&1"
