#!/usr/bin/env bash
# The steps of one lent-GPU session (see README.md here), each one short command of the device
# tool. The machine's /tmp survives between calls while it stays warm (30 s after a call); the
# repository copy is laid anew at each call, so the sweep runs from a copy under /tmp/repo.
#
# Here, before the first call:
#   session.sh prepare        split the onnxruntime-gpu wheel (.whl/, from ../shared/tools/gpu-wheels.sh)
#                             into parts that fit beside the working tree (64 MiB a call)
# On the GPU machine, one call each, back to back:
#   session.sh smk            carry .whl/smk .whl/ort.part.ae .whl/ort.name: snakemake under /tmp/site
#   session.sh part NAME      carry .whl/NAME (each .whl/ortsplit.part.*): kept under /tmp/w
#   session.sh ort            onnxruntime-gpu reassembled and installed under /tmp/site-ort
#   session.sh smoke          4 GPU cells on a tiny config: the GPU path works and records its phases
#   session.sh go SECONDS     the sweep for at most SECONDS (resumes where the last call stopped),
#                             then, once it is done, the cross-checks and the results into $OUT
#                             (SWEEP_CONFIG="KEY=VALUE ..." adds settings to the sweep's --config)
#   session.sh crosscheck     the cross-checks alone (harness against bare loop), in order of need
set -euo pipefail
REPO=/tmp/repo
R=${RESULTS:-/tmp/ib/one}
step=${1:?step}
shift || true

case "$step" in
prepare)
    tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    part=$(( (64 * 1024 * 1024 - tree) * 9 / 10 / 1048576 ))
    rm -f .whl/ortsplit.part.*
    cat .whl/ort.part.aa .whl/ort.part.ab .whl/ort.part.ac .whl/ort.part.ad | split -b "${part}M" - .whl/ortsplit.part.
    echo "working tree $((tree / 1048576)) MiB: parts of ${part} MiB:"
    ls .whl/ortsplit.part.*
    ;;
smk)
    mkdir -p /tmp/w /tmp/site-ort "$REPO" && cp -r .whl/smk /tmp/w/ && cp .whl/ort.part.ae .whl/ort.name /tmp/w/
    python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/w/smk/*.whl
    # this call's copy of the repository, file times kept: later calls resume from it
    tar --exclude=./.whl --exclude=./.git --exclude=./results -cf - . | tar -xpf - -C "$REPO"
    ;;
part)
    cp ".whl/${1:?part name}" /tmp/w/
    ;;
ort)
    n=$(cat /tmp/w/ort.name)
    (cd /tmp/w && cat ortsplit.part.* ort.part.ae > "$n")
    python3 -m pip install -q --no-index --no-deps --target /tmp/site-ort "/tmp/w/$n"
    PYTHONPATH=/tmp/site-ort python3 -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())"
    ;;
smoke)
    cd "$REPO" && source docs/benchmarks/h200/gpu_env.sh
    S=/tmp/ib/smoke
    rm -rf "$S" && mkdir -p "$S"
    cat > "$S/config.yaml" <<EOF
model: resnet18
seed: 0
resolutions: [224]
batch_sizes: [32, 40]
precisions: [fp16]
devices: [cuda]
backends:
  pytorch: {}
  onnxruntime: {}
results_dir: $S/results
EOF
    timeout 300 snakemake --configfile "$S/config.yaml" --cores 1 --resources gpu=1 -q || true
    python3 - "$S/results" <<'EOF' && touch "$S/ok"
import sys, glob, pandas as pd
rows = pd.concat([pd.read_parquet(f) for f in sorted(glob.glob(sys.argv[1] + "/shards/**/*.parquet", recursive=True))])
cols = ["backend", "batch_size", "io", "status", "reason", "throughput_ips", "job_wall_s", "worker_start_s",
        "setup_s", "load_s", "warmup_s", "timed_s", "reference_s", "gpu_mem_peak_mb", "top1_agreement"]
print(rows[cols].to_string())
sys.exit(0 if (rows.status == "ok").all() else "smoke: not every cell is ok")
EOF
    grep -h "reference" "$S"/results/logs/cells/*/*/*/*/*.log | head -4 || true
    [ -f "$S/ok" ]
    ;;
sweep)
    cd "$REPO"  # the copy made by `smk`: same files, same times, so finished cells stay finished
    if RESULTS=$R GPUS=1 LIMIT_S=${1:-540} CONFIG="${SWEEP_CONFIG:-}" bash docs/benchmarks/h200/run_sweep.sh -q; then
        touch "$R/sweep.done"
    fi
    ;;
crosscheck)
    # in order of what is owed; each only while at least 60 s of the call are left
    cd "$REPO" && source docs/benchmarks/h200/gpu_env.sh
    until_s=${1:-0}
    cfg=/tmp/ib/crosscheck.yaml
    sed "s|^results_dir:.*|results_dir: $R|" config.yaml > "$cfg"
    out=$R/crosscheck.jsonl
    xc() { if [ "$until_s" -eq 0 ] || [ $(( until_s - $(date +%s) )) -gt 60 ]; then
               inferbench crosscheck --config "$cfg" "$@" --json "$out" || true; fi; }
    xc --backend torch_compile --precision fp16 --resolution 224 --batch 64
    xc --backend torch_compile --set dynamic=batch --precision fp16 --resolution 224 --batch 64
    # a launch-bound cell (~1 ms a batch): its spread from process to process, and whether the
    # cell's NVML sampling slows it down
    for i in 1 2; do
        xc --backend pytorch --precision fp16 --resolution 224 --batch 32
        xc --backend pytorch --precision fp16 --resolution 224 --batch 32 --telemetry
    done
    xc --backend onnxruntime --precision fp16 --resolution 224 --batch 64
    xc --backend onnxruntime --precision fp16 --resolution 512 --batch 64
    xc --backend torchscript --precision fp16 --resolution 224 --batch 64
    ;;
pack)
    cd "$R"
    tar czf "$OUT/results.tgz" --exclude='*.onnx' --exclude='*.ts' --exclude='*.ep' --exclude='*.pt' \
        --exclude='*.sock' --exclude='.snakemake' --exclude='.cache' .
    ls -la "$OUT"
    ;;
go)
    call_end=$(( $(date +%s) + ${1:-570} ))
    if [ ! -f "$R/sweep.done" ]; then bash "$0" sweep $(( call_end - $(date +%s) )); fi
    if [ -f "$R/sweep.done" ] && [ ! -f "$R/crosscheck.done" ] && [ $(( call_end - $(date +%s) )) -gt 90 ]; then
        bash "$0" crosscheck "$call_end" && touch "$R/crosscheck.done"
    fi
    echo "shards: $(find "$R/shards" -name '*.parquet' 2>/dev/null | wc -l); sweep calls (start end seconds):"
    cat "$R/sweep_walltime.log" 2>/dev/null || true
    if [ -f "$R/sweep.done" ]; then bash "$0" pack; fi
    ;;
*)
    echo "unknown step $step" >&2
    exit 2
    ;;
esac
