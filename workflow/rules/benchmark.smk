# One job per cell; each writes one shard, whatever happens to the cell.


wildcard_constraints:
    resolution=r"\d+",
    batch=r"\d+",
    device="cpu|cuda",
    precision="fp32|fp16|bf16",


rule benchmark_cell:
    conda:
        CONDA_ENV
    input:
        unpack(cell_inputs),
    output:
        shard=f"{RESULTS}/shards/{{model}}/{{backend}}/{{device}}/{{precision}}/r{{resolution}}_b{{batch}}.parquet",
    params:
        spec=lambda wc: cell_spec_for(config, cell_of(wc)).to_json(),
        artifact=lambda wc, input: input.get("artifact", ""),
        lock_dir=f"{RESULTS}/.locks",
        reference_cache=f"{RESULTS}/.cache/reference",
        compile_cache=f"{RESULTS}/.cache/torchinductor",
    log:
        f"{RESULTS}/logs/cells/{{model}}/{{backend}}/{{device}}/{{precision}}/r{{resolution}}_b{{batch}}.log",
    container:
        config["container"]
    threads: lambda wc: 1 if wc.device == "cuda" else all_cores()
    resources:
        # A GPU cell takes one GPU (and one core); a CPU cell takes every core (`threads`), so
        # nothing runs beside it. `gpu` is also what the SLURM executor asks for (--gpus).
        gpu=lambda wc: 1 if wc.device == "cuda" else 0,
    # Every placeholder quoted (:q); `--artifact=` keeps an empty value (no artifact) one argument.
    shell:
        "python -m inferbench cell --spec {params.spec:q} --artifact={params.artifact:q} "
        "--lock-dir {params.lock_dir:q} --reference-cache {params.reference_cache:q} "
        "--compile-cache {params.compile_cache:q} --out {output.shard:q} "
        "> {log:q} 2>&1"
