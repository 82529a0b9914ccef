# The harness measured again: a sample of the sweep's own cells, each timed by an independent bare
# loop in a fresh process (inferbench.selfcheck.harnesscheck); the report shows the ratios.


rule harness_check:
    conda:
        CONDA_ENV
    input:
        summary=f"{RESULTS}/summary.parquet",
        # (no artifacts: the cells it checks loaded them, and a new export remakes the summary)
        config=f"{RESULTS}/config.resolved.yaml",
        code=job_code("harness_check"),
    output:
        csv=f"{RESULTS}/harness_check.csv",
    params:
        results=lambda wc, input: os.path.dirname(input.summary),
        lock_dir=f"{RESULTS}/.locks",
    log:
        f"{RESULTS}/logs/harness_check.log",
    container:
        config["container"]
    # Alone on the machine, as a timed cell is, with every GPU token when the sweep has GPU cells:
    # its bare loops measure one per GPU, as the cells did.
    threads: lambda wc: all_cores()
    resources:
        gpu=lambda wc: max(1, gpu_tokens()) if "cuda" in config["devices"] else 0,
    shell:
        "python -m inferbench harness-check --summary {input.summary:q} --config {input.config:q} "
        "--results {params.results:q} --lock-dir {params.lock_dir:q} --out {output.csv:q} > {log:q} 2>&1"
