#!/usr/bin/env bash
# The steps of one lent-GPU session (see README.md here), so that each call of the device tool is
# one short command. The machine's /tmp survives between calls while it stays warm (30 s), the
# repository copy does not: the sweep runs from a copy under /tmp with the files' times kept.
#
#   session.sh smk                 install snakemake (carried .whl/smk) under /tmp/site
#   session.sh smoke               4 GPU cells on a tiny config: the GPU path works, phases are recorded
#   session.sh stage1              start, in the background, every cell that does not need
#                                  onnxruntime-gpu (it arrives in five parts over the next calls)
#   session.sh progress            how far the background stage is
#   session.sh ort                 reassemble onnxruntime-gpu and install it under /tmp/site-ort
#   session.sh wait SECONDS        wait for the background stage to end
#   session.sh stage2 LIMIT_S      the whole sweep (resumes; Snakemake skips finished cells)
#   session.sh crosscheck          harness against bare loop, and torch.compile static vs dynamic
#   session.sh pack                results (small files) into $OUT
set -euo pipefail
REPO=/tmp/repo
R=${RESULTS:-/tmp/ib/one}
step=${1:?step}
shift || true

sync_repo() {  # the repository as it is in this call, into /tmp/repo (times kept: cells do not rerun)
    mkdir -p "$REPO"
    tar --exclude=./.whl --exclude=./.git --exclude=./results -cf - . | tar -xpf - -C "$REPO"
}

case "$step" in
smk)
    mkdir -p /tmp/w && cp -r .whl/smk /tmp/w/ && cp .whl/ort.part.ae .whl/ort.name /tmp/w/
    python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/w/smk/*.whl
    mkdir -p /tmp/site-ort
    sync_repo
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
  torch_compile: {dynamic: batch}
results_dir: $S/results
EOF
    # its own compiler caches: the sweep's first compilations stay cold
    TORCHINDUCTOR_CACHE_DIR=$S/inductor TRITON_CACHE_DIR=$S/triton \
        timeout 300 snakemake --configfile "$S/config.yaml" --cores 1 --resources gpu=1 -q || true
    python3 - "$S/results" <<'EOF' && touch "$S/ok"
import sys, glob, pandas as pd
rows = pd.concat([pd.read_parquet(f) for f in sorted(glob.glob(sys.argv[1] + "/shards/**/*.parquet", recursive=True))])
cols = ["backend", "batch_size", "io", "status", "reason", "throughput_ips", "job_wall_s", "gpu_wait_s", "worker_start_s",
        "setup_s", "load_s", "compile_s", "warmup_s", "timed_s", "reference_s", "gpu_mem_peak_mb", "top1_agreement"]
print(rows[cols].to_string())
print(rows[rows.backend == "torch_compile"].backend_options.iloc[-1])
sys.exit(0 if (rows.status == "ok").all() else "smoke: not every cell is ok")
EOF
    cat "$S"/results/.locks/fs-*.sock.log 2>/dev/null | head -5 || true
    [ -f "$S/ok" ]
    ;;
stage1)
    cd "$REPO" && source docs/benchmarks/h200/gpu_env.sh
    mkdir -p "$R"
    targets=$(python3 - "$R" <<'EOF'
import sys
from inferbench.config import cells, load_config
config = load_config("config.yaml")
for c in cells(config):
    if c.backend != "onnxruntime" and c.device == "cuda":  # CPU cells: later, with nothing beside them
        print(f"{sys.argv[1]}/shards/{c.model}/{c.backend}/{c.device}/{c.precision}/r{c.resolution}_b{c.batch_size}.parquet")
EOF
)
    echo "stage 1: $(echo "$targets" | wc -l) GPU cells without onnxruntime" | tee "$R/stage1.out"
    RESULTS=$R GPUS=1 LIMIT_S=0 setsid nohup bash docs/benchmarks/h200/run_sweep.sh $targets -q >> "$R/stage1.out" 2>&1 < /dev/null &
    echo $! > "$R/stage1.pid"
    ;;
progress)
    echo "shards: $(find "$R/shards" -name '*.parquet' 2>/dev/null | wc -l)"
    tail -n 3 "$R/stage1.out" 2>/dev/null || true
    ;;
ort)
    n=$(cat /tmp/w/ort.name)
    (cd /tmp/w && cat ort.part.aa ort.part.ab ort.part.ac ort.part.ad ort.part.ae > "$n")
    # low priority: timed GPU cells of stage 1 may be running beside it
    nice -n 19 python3 -m pip install -q --no-index --no-deps --target /tmp/site-ort "/tmp/w/$n"
    PYTHONPATH=/tmp/site-ort python3 -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())"
    ;;
wait)
    pid=$(cat "$R/stage1.pid")
    end=$(( $(date +%s) + ${1:-500} ))
    while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do sleep 2; done
    if kill -0 "$pid" 2>/dev/null; then echo "stage 1 still running"; exit 3; fi
    tail -n 5 "$R/stage1.out"
    ;;
stage2)
    cd "$REPO"  # the copy stage 1 ran from: same files, same times, so finished cells stay finished
    if RESULTS=$R GPUS=1 LIMIT_S=${1:-540} bash docs/benchmarks/h200/run_sweep.sh -q; then touch "$R/sweep.done"; fi
    ;;
crosscheck)
    cd "$REPO" && source docs/benchmarks/h200/gpu_env.sh
    cfg=/tmp/ib/crosscheck.yaml
    sed "s|^results_dir:.*|results_dir: $R|" config.yaml > "$cfg"
    out=$R/crosscheck.jsonl
    for b in pytorch torchscript onnxruntime torch_compile; do
        inferbench crosscheck --config "$cfg" --backend "$b" --precision fp16 --resolution 224 --batch 64 --json "$out" || true
    done
    inferbench crosscheck --config "$cfg" --backend torch_compile --set dynamic=false --precision fp16 --resolution 224 --batch 64 --json "$out" || true
    inferbench crosscheck --config "$cfg" --backend onnxruntime --precision fp16 --resolution 512 --batch 64 --json "$out" || true
    ;;
pack)
    cd "$R"
    tar czf "$OUT/results.tgz" --exclude='*.onnx' --exclude='*.ts' --exclude='*.ep' --exclude='*.pt' \
        --exclude='.locks' --exclude='.snakemake' .
    ls -la "$OUT"
    ;;
go)
    # One call's worth of the sweep: wait for stage 1, run stage 2 in the time left, and once the
    # sweep is done, the cross-checks and the packing.
    call_end=$(( $(date +%s) + ${1:-570} ))
    if [ -f "$R/stage1.pid" ] && kill -0 "$(cat "$R/stage1.pid")" 2>/dev/null; then
        bash "$0" wait $(( call_end - $(date +%s) - 20 )) || exit 0
    fi
    left=$(( call_end - $(date +%s) ))
    if [ ! -f "$R/sweep.done" ] && [ "$left" -gt 30 ]; then bash "$0" stage2 "$left"; fi
    left=$(( call_end - $(date +%s) ))
    if [ -f "$R/sweep.done" ] && [ ! -f "$R/crosscheck.done" ] && [ "$left" -gt 150 ]; then
        bash "$0" crosscheck && touch "$R/crosscheck.done"
    fi
    if [ -f "$R/sweep.done" ]; then bash "$0" pack; fi
    bash "$0" progress
    ;;
*)
    echo "unknown step $step" >&2
    exit 2
    ;;
esac
