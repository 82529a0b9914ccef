# The report people read, and the archive that proves what it contains.


rule resolved_config:
    conda:
        CONDA_ENV
    output:
        f"{RESULTS}/config.resolved.yaml",
    params:
        text=RESOLVED_CONFIG_YAML,
    log:
        f"{RESULTS}/logs/resolved_config.log",
    shell:
        "printf '%s' {params.text:q} > {output:q} 2> {log:q}"


rule report:
    conda:
        CONDA_ENV
    input:
        summary=f"{RESULTS}/summary.parquet",
        tables=table_targets(),
        figures=figure_targets(),
        config=f"{RESULTS}/config.resolved.yaml",
        harness_check=f"{RESULTS}/harness_check.csv",
        exports=EXPORTS_RECORD,
        code=job_code("report"),
    output:
        html=report(f"{RESULTS}/report.html", caption="../report/report.rst", category="Report"),
        md=f"{RESULTS}/report.md",
    params:
        figures_dir=lambda wc, input: os.path.dirname(input.figures[0]),
        tables_dir=lambda wc, input: os.path.dirname(input.tables[0]),
    log:
        f"{RESULTS}/logs/report.log",
    shell:
        "python -m inferbench report --summary {input.summary:q} --figures-dir {params.figures_dir:q} "
        "--tables-dir {params.tables_dir:q} --config {input.config:q} --harness-check {input.harness_check:q} "
        "--exports {input.exports:q} "
        "--html {output.html:q} --md {output.md:q} > {log:q} 2>&1"


rule archive:
    conda:
        CONDA_ENV
    input:
        f"{RESULTS}/report.html",
        f"{RESULTS}/report.md",
        code=job_code("archive"),
    output:
        archive_path(),
    params:
        results=lambda wc, input: os.path.dirname(input[0]),
        run_id=RUN_ID,
    log:
        f"{RESULTS}/logs/archive.log",
    shell:
        "python -m inferbench archive --results {params.results:q} --run-id {params.run_id:q} --out {output:q} "
        "> {log:q} 2>&1"
