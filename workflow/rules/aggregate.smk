# Shards -> summary -> per-resolution tables and figures.


def table_targets():
    return [f"{RESULTS}/tables/{r}.{ext}" for r in config["resolutions"] for ext in ("csv", "md")]


def figure_targets():
    return [f"{RESULTS}/figures/{r}.png" for r in config["resolutions"]]


rule aggregate:
    input:
        shards=all_shards(),
        code=[str(PKG / "commands/aggregate.py"), str(PKG / "shard.py"), str(PKG / "schema.py")],
    output:
        summary=f"{RESULTS}/summary.parquet",
    log:
        f"{RESULTS}/logs/aggregate.log",
    shell:
        "inferbench aggregate --shards {input.shards} --out {output.summary} > {log} 2>&1"


rule tables:
    input:
        summary=f"{RESULTS}/summary.parquet",
    output:
        csv=f"{RESULTS}/tables/{{resolution}}.csv",
        md=f"{RESULTS}/tables/{{resolution}}.md",
    log:
        f"{RESULTS}/logs/tables/{{resolution}}.log",
    shell:
        "inferbench tables --summary {input.summary} --resolution {wildcards.resolution} "
        "--csv {output.csv} --md {output.md} > {log} 2>&1"


rule figures:
    input:
        summary=f"{RESULTS}/summary.parquet",
    output:
        png=f"{RESULTS}/figures/{{resolution}}.png",
    log:
        f"{RESULTS}/logs/figures/{{resolution}}.log",
    shell:
        "inferbench figures --summary {input.summary} --resolution {wildcards.resolution} "
        "--outdir $(dirname {output.png}) > {log} 2>&1"
