#!/usr/bin/env bash
# Stop the test cluster that tests/slurm/start_cluster.sh DIR started.
#
# Usage: tests/slurm/stop_cluster.sh DIR
#
# Cancels the cluster's jobs, then stops only the daemons listed in DIR/pids (checking that each
# PID still runs the program it was recorded for), and removes /etc/slurm/slurm.conf if it is
# this cluster's copy (restoring a foreign one that start_cluster.sh kept). Safe to run twice,
# or on a directory where start failed half-way.
set -uo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
if [[ ! -d "$1" ]]; then
    echo "[stop_cluster] $1 does not exist; nothing to stop" >&2
    exit 0
fi
DIR=$(cd "$1" && pwd)
export PATH="$PATH:/usr/sbin:/sbin"
log() { echo "[stop_cluster] $*" >&2; }

alive() { # pid name: true if pid runs the program name (and is not a zombie)
    [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]] || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ "${stat%% *}" != "Z" ]]
}

# Jobs first: their slurmstepd processes are not children we could wait for.
if [[ -f "$DIR/slurm.conf" ]] && grep -q "^slurmctld " "$DIR/pids" 2>/dev/null; then
    export SLURM_CONF="$DIR/slurm.conf"
    ids=$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [[ -n "${ids// /}" ]]; then
        log "cancelling jobs: $ids"
        # shellcheck disable=SC2086
        timeout 10 scancel $ids 2>/dev/null || true
        for _ in $(seq 1 50); do
            [[ -z "$(timeout 5 squeue -h -t running,completing -o %i 2>/dev/null)" ]] && break
            sleep 0.2
        done
    fi
fi

if [[ -f "$DIR/pids" ]]; then
    # Reverse order: slurmd, slurmctld, then munged.
    mapfile -t entries < <(tac "$DIR/pids")
    for entry in "${entries[@]}"; do
        name=${entry%% *}
        pid=${entry##* }
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        if alive "$pid" "$name"; then
            log "stopping $name ($pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                alive "$pid" "$name" || break
                sleep 0.2
            done
            if alive "$pid" "$name"; then
                log "$name ($pid) ignored SIGTERM for 10 s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    done
    rm -f "$DIR/pids"
fi

if [[ -f /etc/slurm/slurm.conf ]] && grep -qx "# layerprune test cluster: $DIR" /etc/slurm/slurm.conf; then
    if [[ -f "$DIR/etc-slurm.conf.orig" ]]; then
        log "restoring the previous /etc/slurm/slurm.conf"
        cp -p "$DIR/etc-slurm.conf.orig" /etc/slurm/slurm.conf
    else
        rm -f /etc/slurm/slurm.conf
    fi
fi
log "stopped; logs are in $DIR/log"
exit 0
