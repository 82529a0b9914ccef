# Each artifact is made once and shared by every cell that loads it.


rule export_artifact:
    conda:
        CONDA_ENV
    input:
        code=lambda wc: EXPORT_CODE + backend_code(wc.backend),
    output:
        manifest=f"{RESULTS}/artifacts/{{model}}/{{backend}}/{{variant}}.json",
    params:
        spec=export_spec,
    log:
        f"{RESULTS}/logs/export/{{model}}/{{backend}}/{{variant}}.log",
    container:
        config["container"]
    # Exports run several at once, all before the first cell (every cell waits for exports.json
    # below), so never beside a timed cell. One built on a GPU (TorchScript on cuda, TensorRT
    # engines) takes a GPU token and claims that GPU (a TensorRT build times its kernels there).
    threads: lambda wc: export_threads()
    resources:
        gpu=lambda wc: 1 if export_device(wc) == "cuda" else 0,
    shell:
        "python -m inferbench export --spec {params.spec:q} --out {output.manifest:q} > {log:q} 2>&1"


localrules:
    exports_done,


# The exports' record. Every cell takes it as an `ancient` input: the cells wait for every export
# (none runs between two timed cells), yet a cell is not rerun because an export it does not load
# was made again (Snakemake does not pass an ancient input's update on to the jobs that use it).
rule exports_done:
    conda:
        CONDA_ENV
    input:
        manifests=lambda wc: loaded_manifests(),
        code=[str(PKG / "commands" / "exports.py")],
    output:
        record=EXPORTS_RECORD,
    log:
        f"{RESULTS}/logs/exports.log",
    shell:
        "python -m inferbench exports --manifests {input.manifests:q} --out {output.record:q} > {log:q} 2>&1"
