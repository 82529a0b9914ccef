# Each artifact is made once and shared by every cell that loads it.


rule export_artifact:
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
    threads: lambda wc: all_cores()
    resources:
        # an export uses the CPUs and maybe a GPU: never beside a timed cell
        gpu=lambda wc: gpu_slots(),
    shell:
        "inferbench export --spec {params.spec:q} --out {output.manifest} > {log} 2>&1"
