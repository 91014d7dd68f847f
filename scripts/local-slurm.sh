#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests marked `slurm` (make test-slurm).
#
#   scripts/local-slurm.sh start    # install slurm-wlm and munge where missing (apt, as root), write a one-node
#                                   # config under the state folder, start munged, slurmctld and slurmd, wait until
#                                   # the node is idle; prints the SLURM_CONF line to export
#   scripts/local-slurm.sh status   # which of the three daemons this script started are alive; sinfo
#   scripts/local-slurm.sh stop     # cancel this cluster's jobs, stop exactly the daemons of the pid files
#   scripts/local-slurm.sh env      # the export line alone (eval "$(scripts/local-slurm.sh env)")
#
# Everything lives in the state folder (AUNET_SLURM_DIR, default /tmp/aunet-slurm): config, munge key and socket,
# spool, logs, pid files. Nothing in /etc is written, so clients need SLURM_CONF=<state>/slurm.conf. The daemons run
# as the calling user (root on the test machines): a private test cluster, not a shared one. Recipe and pitfalls:
# ../shared/docs/toolchain-notes.md section 7 and README (SLURM).
set -euo pipefail

STATE="${AUNET_SLURM_DIR:-/tmp/aunet-slurm}"
CONF="$STATE/slurm.conf"
MUNGE_SOCKET="$STATE/munge/munge.socket"
# Start order; stop goes the other way.
DAEMONS=(munged slurmctld slurmd)

die() { echo "local-slurm: $*" >&2; exit 1; }

pid_of() {  # the pid in DAEMON's pid file if that process is alive and is DAEMON (a reused pid is not ours)
    local name="$1" file="$STATE/run/$1.pid" pid
    [[ -s "$file" ]] || return 1
    pid="$(tr -dc 0-9 <"$file")"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm")" == "$name" ]] || return 1
    echo "$pid"
}

install_missing() {
    local missing=()
    for cmd in munged slurmctld slurmd sinfo sbatch; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ "$(id -u)" -eq 0 ]] || die "missing ${missing[*]}; install slurm-wlm and munge (apt-get install slurm-wlm munge)"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get; install SLURM and munge yourself"
    echo "local-slurm: installing slurm-wlm and munge (missing: ${missing[*]})"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
}

write_config() {
    local host cpus mem_mb
    host="$(hostname -s)"
    # nproc follows OMP_NUM_THREADS (the tests set it to 1): count the CPUs this process may run on without it.
    cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
    # 90% of the memory as the node's RealMemory: a job asking for no memory gets all of it, none is refused.
    mem_mb="$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
    cat >"$CONF" <<EOF
# Written by scripts/local-slurm.sh: a one-node test cluster; every path is under $STATE.
ClusterName=aunet-local
SlurmctldHost=$host
SlurmUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.log
MpiDefault=none
# Seconds between SIGTERM and SIGKILL when a job is cancelled or requeued: the time a run has to save its step.
KillWait=30
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_idle() {  # until sinfo shows the node idle (or mixed/allocated by leftover jobs), at most 60 s
    local state
    for _ in $(seq 60); do
        state="$(SLURM_CONF="$CONF" sinfo -h -o %t 2>/dev/null | head -1 || true)"
        [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]] && return 0
        sleep 1
    done
    die "the node did not come up within 60 s (state '${state:-none}'); logs in $STATE/log"
}

start() {
    install_missing
    if pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null && pid_of munged >/dev/null; then
        echo "local-slurm: already running ($STATE)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    for name in "${DAEMONS[@]}"; do
        pid_of "$name" >/dev/null && die "$name of an earlier start is still running; run '$0 stop' first"
    done
    mkdir -p "$STATE"/{munge,run,log,spool/ctld,spool/d}
    # munged refuses keys and sockets in folders others may write to.
    chmod 0755 "$STATE" "$STATE/run" "$STATE/log"
    chmod 0700 "$STATE/munge"
    [[ -s "$STATE/munge/munge.key" ]] || mungekey --create --keyfile="$STATE/munge/munge.key"
    chmod 0600 "$STATE/munge/munge.key"
    write_config
    munged --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" --pid-file="$STATE/run/munged.pid" \
        --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed" --force
    # -c: start with an empty job state, so a test session never inherits jobs of an earlier one.
    SLURM_CONF="$CONF" slurmctld -c
    SLURM_CONF="$CONF" slurmd
    wait_idle
    echo "local-slurm: one node, $(sed -n 's/^NodeName=.* CPUs=\([0-9]*\).*/\1/p' "$CONF") CPUs, partition debug ($STATE)"
    echo "export SLURM_CONF=$CONF"
}

stop() {
    if pid_of slurmctld >/dev/null; then
        # The jobs of this private cluster go with it (their processes would otherwise outlive slurmd).
        SLURM_CONF="$CONF" scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
        for _ in $(seq 40); do
            [[ -z "$(SLURM_CONF="$CONF" squeue -h 2>/dev/null)" ]] && break
            sleep 0.5
        done
    fi
    local stopped=0
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        local name="${DAEMONS[$i]}" pid
        pid="$(pid_of "$name")" || { rm -f "$STATE/run/$name.pid"; continue; }
        kill -TERM "$pid"
        for _ in $(seq 50); do [[ -d "/proc/$pid" ]] || break; sleep 0.2; done
        [[ -d "/proc/$pid" ]] && kill -KILL "$pid"
        rm -f "$STATE/run/$name.pid"
        stopped=$((stopped + 1))
    done
    echo "local-slurm: stopped $stopped daemon(s)"
}

status() {
    local alive=0
    for name in "${DAEMONS[@]}"; do
        if pid="$(pid_of "$name")"; then
            echo "$name running (pid $pid)"
            alive=$((alive + 1))
        else
            echo "$name not running"
        fi
    done
    if [[ $alive -eq ${#DAEMONS[@]} ]]; then
        SLURM_CONF="$CONF" sinfo
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    return 3
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "usage: $0 start|stop|status|env" ;;
esac
