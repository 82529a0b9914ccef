#!/usr/bin/env bash
# The reference sweep on the GPU machine, natively (no container), as it was run for this folder.
# From the repository root:  bash docs/benchmarks/h200/run_sweep.sh [extra snakemake arguments]
#   GPUS=2   use two GPUs (one timed cell per GPU at a time)
#   RESULTS  where results go (default /tmp/ib/h200: survives between calls on the lent machine)
#   LIMIT_S  stop cleanly after this many seconds; rerunning resumes (Snakemake skips finished cells)
#   CONFIG   more KEY=VALUE settings for --config, e.g. CONFIG="gpu_worker=warm"
set -euo pipefail
source docs/benchmarks/h200/gpu_env.sh
R=${RESULTS:-/tmp/ib/h200}
GPUS=${GPUS:-1}
LIMIT_S=${LIMIT_S:-0}
mkdir -p "$R"
start=$(date +%s)
# the caller's arguments first: targets must come before --config, which takes every word after it
cmd=(snakemake "$@" --cores "$GPUS" --resources "gpu=$GPUS" --config "results_dir=$R" ${CONFIG:-})
echo "+ ${cmd[*]}" | tee -a "$R/sweep_commands.log"
rc=0
if [ "$LIMIT_S" -gt 0 ]; then timeout --signal=INT "$LIMIT_S" "${cmd[@]}" || rc=$?; else "${cmd[@]}" || rc=$?; fi
end=$(date +%s)
echo "$start $end $((end - start))" >> "$R/sweep_walltime.log"
echo "this call: $((end - start)) s; all calls: $(awk '{s+=$3} END {print s}' "$R/sweep_walltime.log") s"
exit "$rc"  # 124: stopped at LIMIT_S (run again to resume)
