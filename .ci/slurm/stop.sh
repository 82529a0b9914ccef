#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by .ci/slurm/start.sh.
# Kills exactly the daemons whose PIDs start.sh recorded in $STATE/pids (never by
# name); a PID that no longer runs the recorded program is left alone. Jobs still
# queued/running are cancelled first so no slurmstepd is left behind.
# Safe to call twice, or when nothing was started.
set -euo pipefail

STATE="${INFERBENCH_SLURM_STATE:-/tmp/inferbench-slurm}"
say() { printf '[slurm stop] %s\n' "$*"; }

if ! compgen -G "$STATE/pids/*.pid" >/dev/null; then
    say "nothing to stop (no PID files in $STATE/pids)"
    exit 0
fi

# running PID: the process exists and is not a zombie (an exited daemon whose
# parent, PID 1 here, has not reaped it yet).
running() {
    [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# pid_of NAME: recorded PID of NAME if it is alive and still runs NAME, else empty.
pid_of() {
    local f="$STATE/pids/$1.pid" pid
    [ -s "$f" ] || return 0
    pid="$(cat "$f")"
    if running "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then
        echo "$pid"
    fi
}

# Cancel our jobs while slurmctld still runs, and give them a moment to end.
if [ -n "$(pid_of slurmctld)" ] && command -v scancel >/dev/null 2>&1; then
    if [ -n "$(timeout 10 squeue -h -o %i 2>/dev/null || true)" ]; then
        say "cancelling remaining jobs"
        timeout 10 scancel --full --user=root >/dev/null 2>&1 || true
        for _ in $(seq 1 20); do
            [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null || true)" ] && break
            sleep 0.5
        done
    fi
fi

# Node daemon first, then the controller, then munge (both need it to talk).
for name in slurmd slurmctld munged; do
    pid="$(pid_of "$name")"
    if [ -z "$pid" ]; then
        rm -f "$STATE/pids/$name.pid"
        continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        running "$pid" || break
        sleep 0.25
    done
    if running "$pid"; then
        say "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$STATE/pids/$name.pid"
    say "stopped $name (pid $pid)"
done
