# Each artifact is made once and shared by every cell that loads it, of every variant of its backend
# whose export options agree ({backend} here is the backend's name, never a variant's).


rule export_artifact:
    conda:
        CONDA_ENV
    input:
        code=lambda wc: job_code("export", wc.backend),
    output:
        manifest=f"{RESULTS}/artifacts/{{model}}/{{backend}}/{{artifact}}.json",
    params:
        spec=export_spec,
    log:
        f"{RESULTS}/logs/export/{{model}}/{{backend}}/{{artifact}}.log",
    container:
        config["container"]
    # Every export before the first cell, several at once, none beside a timed cell. They are all
    # ready when the run starts and come first (priority); each needs no more than any cell (one
    # core; one built on a GPU, a GPU token too, and it claims that GPU, since a TensorRT build
    # times its kernels there; torch.compile's precompilations share it), so no cell is started
    # while an export waits. A cell that starts while the last exports still run waits for them
    # (inferbench.process.devices.ExportsRunning).
    priority: 100
    threads: 1
    resources:
        gpu=export_gpu_tokens,
    shell:
        "python -m inferbench export --spec {params.spec:q} --out {output.manifest:q} > {log:q} 2>&1"


localrules:
    exports_done,


# The exports' record (status, start, wall time of each), for the sweep's clock in the report. No
# cell depends on it: a shared input would make a cell rerun when an export it does not load is
# made again.
rule exports_done:
    conda:
        CONDA_ENV
    input:
        manifests=lambda wc: loaded_manifests(),
        code=job_code("exports"),
    output:
        record=EXPORTS_RECORD,
    log:
        f"{RESULTS}/logs/exports.log",
    shell:
        "python -m inferbench exports --manifests {input.manifests:q} --out {output.record:q} > {log:q} 2>&1"
