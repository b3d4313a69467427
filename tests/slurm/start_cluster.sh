#!/usr/bin/env bash
# Start a throw-away single-node SLURM cluster on loopback, for testing the SLURM profile.
#
# Usage: tests/slurm/start_cluster.sh DIR
#
# Everything the cluster writes (slurm.conf, gres.conf, state, spool, logs, pid files, fake GPU
# device) goes under DIR; the PIDs of the daemons this script started are listed in DIR/pids, and
# tests/slurm/stop_cluster.sh DIR stops exactly those. Needs root and the Debian packages
# slurmctld, slurmd, slurm-client and munge. There is no systemd on the test machines, so the
# daemons are started by hand.
#
# Why /etc/slurm/slurm.conf is written too: the SLURM executor plugin's job step clears every
# SLURM_* variable (SLURM_CONF included) before its nested `srun`, which then looks for the
# default config and, without one, fails with a DNS SRV lookup error. An existing foreign
# /etc/slurm/slurm.conf is kept in DIR and put back by stop_cluster.sh.
#
# Environment (optional):
#   LAYERPRUNE_SLURM_PARTITION  partition name (default: debug)
#   LAYERPRUNE_SLURM_CTLD_PORT  slurmctld port (default: 6817)
#   LAYERPRUNE_SLURM_D_PORT     slurmd port (default: 6818)
#   LAYERPRUNE_SLURM_TIMEOUT    seconds to wait for the node to become idle (default: 30)
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR   (DIR: an empty or new directory for the cluster's files)" >&2
    exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "error: $0 must run as root (slurmctld/slurmd run with SlurmUser=root); run it with sudo" >&2
    exit 2
fi
for bin in munged munge slurmctld slurmd sinfo sbatch squeue scontrol; do
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null; then
        echo "error: '$bin' not found; install the Debian packages: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge" >&2
        exit 2
    fi
done
export PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$1"
DIR=$(cd "$1" && pwd)
if [[ -s "$DIR/pids" ]]; then
    echo "error: $DIR/pids exists: a cluster may already run from $DIR; stop it first with tests/slurm/stop_cluster.sh $DIR" >&2
    exit 2
fi

PARTITION=${LAYERPRUNE_SLURM_PARTITION:-debug}
CTLD_PORT=${LAYERPRUNE_SLURM_CTLD_PORT:-6817}
D_PORT=${LAYERPRUNE_SLURM_D_PORT:-6818}
TIMEOUT=${LAYERPRUNE_SLURM_TIMEOUT:-30}
MARKER="# layerprune test cluster: $DIR"

mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run" "$DIR/dev"
chmod 755 "$DIR"
: >"$DIR/pids"

log() { echo "[start_cluster] $*" >&2; }

fail() {
    log "error: $*"
    for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" "$DIR/log/munged.log"; do
        [[ -f "$f" ]] && { log "--- tail of $f"; tail -n 20 "$f" >&2; }
    done
    log "stopping what was started"
    "$(dirname "$0")/stop_cluster.sh" "$DIR" || true
    exit 1
}

# --- munge: authentication between the SLURM commands and daemons -------------------------------
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running; using it (it will not be stopped)"
else
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        chown munge:munge /etc/munge /etc/munge/munge.key
        chmod 700 /etc/munge
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    rm -f /run/munge/munged.pid
    # Foreground mode (-F) logs to stderr, so the log can live in DIR (munged itself, running as
    # the munge user, may not be able to enter DIR); setsid detaches it from the caller's session.
    setsid setpriv --reuid=munge --regid=munge --clear-groups \
        munged -F --pid-file=/run/munge/munged.pid </dev/null >"$DIR/log/munged.log" 2>&1 &
    for _ in $(seq 1 50); do
        [[ -s /run/munge/munged.pid ]] && break
        sleep 0.1
    done
    [[ -s /run/munge/munged.pid ]] || fail "munged wrote no pid file"
    echo "munged $(cat /run/munge/munged.pid)" >>"$DIR/pids"
    munge -n </dev/null | unmunge >/dev/null || fail "munge round trip failed"
fi

# --- configuration ----------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc --all)
MEM_TOTAL_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MEM_MB=$((MEM_TOTAL_MB * 8 / 10)) # leave room for the OS and the submitting snakemake

# A GPU for scheduling only: slurmd drops GPUs that have no device file, so give it a character
# device. Nothing opens it; jobs only see CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS.
[[ -e "$DIR/dev/nvidia0" ]] || mknod "$DIR/dev/nvidia0" c 195 0 || fail "mknod of a fake GPU device failed"

cat >"$DIR/slurm.conf" <<EOF
$MARKER
ClusterName=layerprunetest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Schedule a submitted job at once instead of after the default 3 s batching delay.
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
# Finished jobs stay visible to squeue for an hour: with accounting off, the executor plugin's
# squeue status command needs MinJobAge >= 3 x its first status-check delay.
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

cat >"$DIR/gres.conf" <<EOF
$MARKER
NodeName=$HOST Name=gpu File=$DIR/dev/nvidia0
EOF

if [[ -e /etc/slurm/slurm.conf ]] && ! grep -q "^# layerprune test cluster: " /etc/slurm/slurm.conf; then
    log "keeping the existing /etc/slurm/slurm.conf as $DIR/etc-slurm.conf.orig"
    cp -p /etc/slurm/slurm.conf "$DIR/etc-slurm.conf.orig"
fi
mkdir -p /etc/slurm
cp "$DIR/slurm.conf" /etc/slurm/slurm.conf.layerprune.tmp
mv /etc/slurm/slurm.conf.layerprune.tmp /etc/slurm/slurm.conf
export SLURM_CONF="$DIR/slurm.conf"

# --- daemons ----------------------------------------------------------------------------------
wait_pidfile() { # name file
    for _ in $(seq 1 100); do
        [[ -s "$2" ]] && { echo "$1 $(cat "$2")" >>"$DIR/pids"; return 0; }
        sleep 0.1
    done
    fail "$1 wrote no pid file $2"
}

# -c: start from an empty job state (the state directory is new anyway).
slurmctld -c -f "$DIR/slurm.conf" </dev/null >>"$DIR/log/slurmctld.out" 2>&1 || fail "slurmctld did not start"
wait_pidfile slurmctld "$DIR/run/slurmctld.pid"
slurmd -f "$DIR/slurm.conf" </dev/null >>"$DIR/log/slurmd.out" 2>&1 || fail "slurmd did not start"
wait_pidfile slurmd "$DIR/run/slurmd.pid"

deadline=$((SECONDS + TIMEOUT))
state=""
while ((SECONDS < deadline)); do
    state=$(timeout 5 sinfo -h -N -n "$HOST" -o %T 2>/dev/null || true)
    [[ "$state" == "idle" ]] && break
    sleep 0.2
done
[[ "$state" == "idle" ]] || fail "node $HOST not idle after ${TIMEOUT}s (state: '${state:-none}')"

log "cluster up: node $HOST, partition $PARTITION, $CPUS CPUs, ${REAL_MEM_MB} MB, gpu:1; files in $DIR"
echo "export SLURM_CONF=$DIR/slurm.conf" >"$DIR/env.sh"
