# Shards -> summary -> per-resolution tables and figures.
# These run on the host (no `container:`): they need only pandas/pyarrow/matplotlib, read files
# the benchmark jobs wrote, and so stay cheap to rerun and independent of the benchmark image.

rule aggregate:
    conda:
        CONDA_ENV
    input:
        unpack(lambda wc: work_records()),
        shards=all_shards(),
        code=job_code("aggregate"),
    output:
        summary=f"{RESULTS}/summary.parquet",
    params:
        peak=lambda wc, input: input.get("gpu_peak", ""),
    log:
        f"{RESULTS}/logs/aggregate.log",
    shell:
        "python -m inferbench aggregate --shards {input.shards:q} --model-work {input.model_work:q} "
        "--gpu-peak={params.peak:q} --out {output.summary:q} > {log:q} 2>&1"


rule tables:
    conda:
        CONDA_ENV
    input:
        summary=f"{RESULTS}/summary.parquet",
        code=job_code("tables"),
    output:
        csv=f"{RESULTS}/tables/{{resolution}}.csv",
        md=f"{RESULTS}/tables/{{resolution}}.md",
        html=report(
            f"{RESULTS}/tables/{{resolution}}.html",
            caption="../report/tables.rst",
            category="Tables",
            labels={"resolution": "{resolution} px"},
        ),
    log:
        f"{RESULTS}/logs/tables/{{resolution}}.log",
    shell:
        "python -m inferbench tables --summary {input.summary:q} --resolution {wildcards.resolution:q} "
        "--csv {output.csv:q} --md {output.md:q} --html {output.html:q} > {log:q} 2>&1"


rule figures_per_resolution:
    conda:
        CONDA_ENV
    input:
        summary=f"{RESULTS}/summary.parquet",
        code=job_code("figures"),
    output:
        throughput=report(
            f"{RESULTS}/figures/{{resolution}}.png",
            caption="../report/throughput.rst",
            category="Figures",
            subcategory="{resolution} px",
            labels={"figure": "throughput", "resolution": "{resolution} px"},
        ),
        latency=report(
            f"{RESULTS}/figures/latency_{{resolution}}.png",
            caption="../report/latency.rst",
            category="Figures",
            subcategory="{resolution} px",
            labels={"figure": "latency", "resolution": "{resolution} px"},
        ),
        memory=report(
            f"{RESULTS}/figures/gpu_memory_{{resolution}}.png",
            caption="../report/gpu_memory.rst",
            category="Figures",
            subcategory="{resolution} px",
            labels={"figure": "memory", "resolution": "{resolution} px"},
        ),
    params:
        outdir=lambda wc, output: os.path.dirname(output.throughput),
    log:
        f"{RESULTS}/logs/figures/{{resolution}}.log",
    shell:
        "python -m inferbench figures --summary {input.summary:q} --resolution {wildcards.resolution:q} "
        "--kind throughput --kind latency --kind gpu_memory --outdir {params.outdir:q} > {log:q} 2>&1"


rule figures_overall:
    conda:
        CONDA_ENV
    input:
        summary=f"{RESULTS}/summary.parquet",
        code=job_code("figures"),
    output:
        heatmap=report(f"{RESULTS}/figures/speedup_heatmap.png", caption="../report/speedup_heatmap.rst",
                       category="Figures", subcategory="all resolutions", labels={"figure": "speedup heatmap"}),
        pareto=report(f"{RESULTS}/figures/throughput_vs_memory.png", caption="../report/throughput_vs_memory.rst",
                      category="Figures", subcategory="all resolutions", labels={"figure": "throughput vs memory"}),
        scaling=report(f"{RESULTS}/figures/scaling.png", caption="../report/scaling.rst",
                       category="Figures", subcategory="all resolutions", labels={"figure": "scaling"}),
    params:
        outdir=lambda wc, output: os.path.dirname(output.heatmap),
    log:
        f"{RESULTS}/logs/figures/overall.log",
    shell:
        "python -m inferbench figures --summary {input.summary:q} --kind speedup_heatmap --kind throughput_vs_memory "
        "--kind scaling --kind achieved_tflops --outdir {params.outdir:q} > {log:q} 2>&1"
