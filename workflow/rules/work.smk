# Once per sweep: the model's work per image (FLOPs at each resolution, parameters), and each GPU's
# ceiling (a dense matrix product per precision). The aggregation joins both into the summary:
# achieved TFLOP/s and the share of the ceiling for every cell.


rule model_work:
    conda:
        CONDA_ENV
    input:
        code=job_code("model_work"),
    output:
        record=MODEL_WORK,
    params:
        spec=json.dumps({"model": config["model"], "weights": config.get("weights"), "seed": config["seed"],
                         "resolutions": sorted({r for d in config["devices"] for r in axis_for(config, d, "resolutions")})},
                        sort_keys=True),
        lock_dir=f"{RESULTS}/.locks",
    log:
        f"{RESULTS}/logs/model_work.log",
    container:
        config["container"]
    # with the exports, before the cells (a cell waits for it as for an export): one model build
    # and one forward pass of one image per resolution, on the CPU
    priority: 100
    threads: 1
    shell:
        "python -m inferbench model-work --spec {params.spec:q} --lock-dir {params.lock_dir:q} "
        "--out {output.record:q} > {log:q} 2>&1"


rule gpu_peak:
    conda:
        CONDA_ENV
    input:
        code=job_code("gpu_peak"),
    output:
        record=GPU_PEAK,
    params:
        precisions=axis_for(config, "cuda", "precisions") if "cuda" in config["devices"] else [],
        lock_dir=f"{RESULTS}/.locks",
    log:
        f"{RESULTS}/logs/gpu_peak.log",
    container:
        config["container"]
    # Claims each GPU in turn as a cell does (a GPU token, and the GPU's lock), after the exports.
    threads: 1
    resources:
        gpu=1,
    shell:
        "python -m inferbench gpu-peak --precisions {params.precisions:q} --lock-dir {params.lock_dir:q} "
        "--out {output.record:q} > {log:q} 2>&1"
