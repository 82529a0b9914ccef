#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine (Debian, as root) for the
# test suite and CI:  bash .ci/slurm/start.sh   then   INFERBENCH_SLURM=1 pytest -m slurm
#
#  1. installs Debian's slurmctld/slurmd/slurm-client/munge with apt-get (skipped
#     when already installed),
#  2. writes /etc/slurm/slurm.conf from .ci/slurm/slurm.conf.in: one node named
#     `hostname -s` on 127.0.0.1, CPUs from nproc, RealMemory from free, partition
#     `debug` (default),
#  3. starts munged (unless one already answers), slurmctld and slurmd in the
#     foreground under setsid, and records their PIDs in $STATE/pids/*.pid,
#  4. waits until the node is idle and checks that `srun hostname` and an
#     `sbatch --wrap` job succeed.
# Re-runnable: when the daemons it recorded are still alive it only re-checks.
# Stop with .ci/slurm/stop.sh (kills exactly the recorded PIDs).
#
# Environment:
#   INFERBENCH_SLURM_STATE   state dir (default /tmp/inferbench-slurm)
#   INFERBENCH_SLURM_TIMEOUT seconds to wait for each readiness step (default 60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${INFERBENCH_SLURM_STATE:-/tmp/inferbench-slurm}"
TIMEOUT="${INFERBENCH_SLURM_TIMEOUT:-60}"
CONF=/etc/slurm/slurm.conf
MARKER="inferbench-ci-slurm"
T0=$SECONDS

say() { printf '[slurm start +%ss] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf '[slurm start] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, writes /etc/slurm)"

# pid_alive NAME: the PID recorded for NAME is alive and still runs NAME.
pid_alive() {
    local f="$STATE/pids/$1.pid" pid
    [ -s "$f" ] || return 1
    pid="$(cat "$f")"
    [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
    # A killed daemon may linger as a zombie until PID 1 reaps it: that is dead too.
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

# wait_for DESCRIPTION COMMAND...: retry COMMAND (quietly) until it succeeds or TIMEOUT.
wait_for() {
    local what="$1"; shift
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "--- last 30 lines of $STATE/log/*.log ---" >&2
            tail -n 30 "$STATE"/log/*.log >&2 2>/dev/null || true
            die "timed out after ${TIMEOUT}s waiting for: $what"
        fi
        sleep 0.5
    done
}

# start_daemon NAME CMD...: run CMD (which must stay in the foreground and exec
# NAME) in its own session, detached from our stdio, and record its PID.
start_daemon() {
    local name="$1"; shift
    # No job control in a script, so the background child is not a process group
    # leader and setsid execs in place: $! is the daemon's own PID.
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    local pid=$!
    echo "$pid" >"$STATE/pids/$name.pid"
    sleep 0.3
    pid_alive "$name" || { tail -n 20 "$STATE/log/$name.out" "$STATE/log/$name.log" >&2 2>/dev/null || true
                           die "$name (pid $pid) did not stay up"; }
    say "started $name (pid $pid)"
}

# ---------------------------------------------------------------- 1. install
need_install=0
for bin in slurmctld slurmd sinfo srun sbatch squeue scontrol munged munge unmunge; do
    command -v "$bin" >/dev/null 2>&1 || need_install=1
done
if [ "$need_install" -eq 1 ]; then
    say "installing slurm-wlm + munge with apt-get (first run only)"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting daemons themselves; we
    # start ours by hand so we know their PIDs. Only remove the policy we created.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    trap '[ "$created_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
    apt_log="$(mktemp)"
    # An unreachable third-party source makes `update` fail; Debian's lists still
    # refresh, so go on and let `install` decide.
    # Wait for another apt/dpkg (up to 5 min) instead of failing on its lock.
    apt_lock=(-o DPkg::Lock::Timeout=300)
    apt-get "${apt_lock[@]}" update -qq >"$apt_log" 2>&1 || say "apt-get update reported errors (continuing): $(tail -n 3 "$apt_log" | tr '\n' ' ')"
    if ! apt-get "${apt_lock[@]}" install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            slurmctld slurmd slurm-client munge >"$apt_log" 2>&1; then
        tail -n 40 "$apt_log" >&2
        die "apt-get install failed"
    fi
    rm -f "$apt_log"
    if [ "$created_policy" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    trap - EXIT
    say "installed: $(dpkg-query -W -f='${Package} ${Version}  ' slurmctld slurmd munge)"
else
    say "slurm + munge already installed ($(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || echo '?'))"
fi

mkdir -p "$STATE"/{pids,log,run,slurmctld,slurmd}

# ------------------------------------------------- already running? just check
if pid_alive slurmctld && pid_alive slurmd \
        && { [ ! -e "$STATE/pids/munged.pid" ] || pid_alive munged; }; then
    say "slurmctld (pid $(cat "$STATE/pids/slurmctld.pid")) and slurmd (pid $(cat "$STATE/pids/slurmd.pid")) already running"
else
    # A half-started cluster from an earlier run: stop what we recorded, start anew.
    if compgen -G "$STATE/pids/*.pid" >/dev/null; then
        say "stale/partial cluster found; stopping recorded daemons first"
        bash "$HERE/stop.sh"
        mkdir -p "$STATE"/{pids,log,run,slurmctld,slurmd}
    fi

    # ------------------------------------------------------------- 2. config
    HOST="$(hostname -s)"
    CPUS="$(nproc)"
    TOTAL_MB="$(free -m | awk '/^Mem:/ {print $2}')"
    MEM_MB=$((TOTAL_MB * 90 / 100))  # leave headroom so slurmd never sees less than configured
    if [ -e "$CONF" ] && ! grep -q "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to overwrite it"
    fi
    mkdir -p /etc/slurm
    sed -e "s|@MARKER@|$MARKER|g" -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" \
        -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" "$HERE/slurm.conf.in" >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    say "wrote $CONF: node $HOST (127.0.0.1) CPUs=$CPUS RealMemory=${MEM_MB}MB, partition debug"

    # -------------------------------------------------------------- 3. munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "a munged is already answering; using it"
    else
        if [ ! -s /etc/munge/munge.key ]; then
            mkdir -p /etc/munge
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
            say "created /etc/munge/munge.key"
        fi
        chown munge:munge /etc/munge /etc/munge/munge.key
        chmod 0700 /etc/munge
        chmod 0400 /etc/munge/munge.key
        mkdir -p /run/munge /var/lib/munge /var/log/munge
        chown munge:munge /run/munge /var/lib/munge /var/log/munge
        chmod 0755 /run/munge
        # setpriv execs (no fork), so the recorded PID is munged's own.
        start_daemon munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
        wait_for "munge credential round-trip" bash -c 'munge -n | unmunge'
    fi

    # ------------------------------------------------------- slurmctld/slurmd
    if scontrol ping >/dev/null 2>&1; then
        die "a slurmctld not started by this script already answers; stop it first"
    fi
    # -c: start from a clean job state each time (this is a throw-away test cluster).
    start_daemon slurmctld /usr/sbin/slurmctld -D -c
    wait_for "slurmctld to answer scontrol ping" bash -c 'scontrol ping | grep -q UP'
    start_daemon slurmd /usr/sbin/slurmd -D
fi

# ------------------------------------------------------------------ 4. checks
HOST="$(hostname -s)"
# Up to TIMEOUT for the node to be usable; a DOWN/DRAIN node (e.g. after an
# unclean stop) is resumed.
node_ready() {
    local st
    st="$(sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null || true)"
    case "$st" in
        idle|mixed|allocated|completing) return 0 ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    return 1
}
wait_for "node $HOST to be idle in sinfo" node_ready
say "sinfo: $(sinfo -h -o '%P %a %D %T %N' | tr '\n' ' ')"

out="$(timeout "$TIMEOUT" srun -N1 -n1 -t 1 hostname)" || die "srun hostname failed"
say "srun hostname -> $out"

# shellcheck disable=SC2016  # $SLURM_JOB_ID is expanded inside the job
jobid="$(sbatch --parsable -t 1 -o "$STATE/log/check-%j.out" --wrap 'echo sbatch-ok "$SLURM_JOB_ID"')" \
    || die "sbatch failed"
job_done() { squeue -h -j "$jobid" --states=all -o '%T' | grep -Eq '^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)$'; }
wait_for "sbatch job $jobid to finish" job_done
state="$(squeue -h -j "$jobid" --states=all -o '%T')"
[ "$state" = COMPLETED ] || die "sbatch job $jobid ended $state"
grep -q "sbatch-ok $jobid" "$STATE/log/check-$jobid.out" || die "sbatch job $jobid wrote no output"
say "sbatch --wrap job $jobid COMPLETED ($(cat "$STATE/log/check-$jobid.out"))"
say "SLURM cluster ready (state dir $STATE; stop with .ci/slurm/stop.sh)"
