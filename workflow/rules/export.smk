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
    threads: lambda wc: all_cores()
    resources:
        # a GPU only for artifacts built on one (TorchScript on cuda, TensorRT engines); `threads`
        # above takes every core, so an export never runs beside a timed cell
        gpu=lambda wc: 1 if export_device(wc) == "cuda" else 0,
    shell:
        "python -m inferbench export --spec {params.spec:q} --out {output.manifest:q} > {log:q} 2>&1"
