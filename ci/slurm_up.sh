#!/bin/bash
# A single-node Slurm "cluster" on this machine (Debian slurm-wlm + munge), for trying the job scripts
# (jobscripts/run.sbatch, sweep.sbatch, collect.sh) for real. Needs root and apt. ci/cluster_checks.sh (run by
# .ci/run) uses it.
#
#   source ci/slurm_up.sh && slurm_up      # install if needed, write the config, start munged, slurmctld, slurmd; srun check
#   export SLURM_CONF=${SLURM_DIR:-/tmp/hpc_itc_slurm}/slurm.conf   # in other shells
#   sbatch --array=0-1 jobscripts/sweep.sbatch SWEEP.toml ...
#   slurm_down                             # stop the daemons it started (by their pid files)
# or run it:  bash ci/slurm_up.sh up|down|status
#
# Everything (config, state, spool, logs, pid files) lives under SLURM_DIR (default /tmp/hpc_itc_slurm).
# MpiDefault=pmix: `srun --mpi=pmix` starts ranks of Debian's Open MPI; pip's Open MPI 5 in a venv is a
# different stack (see /work/shared/ENVIRONMENT.md): use one MPI stack per environment.

SLURM_DIR=${SLURM_DIR:-/tmp/hpc_itc_slurm}

slurm_install() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! ldconfig -p | grep -q "libpmix.so "; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq slurm-wlm munge libpmix2 libpmix-dev >/dev/null || return 1
    fi
}

slurm_write_conf() {
    # a fresh cluster every time: no jobs left over from an earlier run in the saved state
    rm -rf "$SLURM_DIR"/state "$SLURM_DIR"/spool
    mkdir -p "$SLURM_DIR"/{state,spool,log,run}
    local cpus mem
    cpus=$(getconf _NPROCESSORS_ONLN)   # not nproc: it honours OMP_NUM_THREADS (1 in the checks)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
    cat > "$SLURM_DIR/slurm.conf" <<CONF
ClusterName=hpc_itc_local
SlurmctldHost=$(hostname)
AuthType=auth/munge
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/run/slurmd.pid
ReturnToService=2
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
KillWait=30
NodeName=$(hostname) CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$(hostname) Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
}

slurm_munge() {
    if [[ ! -f /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge && (mungekey -c 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null)
    fi
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge 2>/dev/null
    chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        su -s /bin/sh munge -c /usr/sbin/munged || runuser -u munge -- /usr/sbin/munged || return 1
        sleep 1
    fi
    munge -n | unmunge >/dev/null
}

slurm_up() {
    slurm_install || { echo "slurm_up: installing slurm-wlm and munge failed" >&2; return 1; }
    slurm_write_conf
    slurm_munge || { echo "slurm_up: munged did not start" >&2; return 1; }
    export SLURM_CONF="$SLURM_DIR/slurm.conf"
    slurmctld -f "$SLURM_CONF" || return 1
    slurmd -f "$SLURM_CONF" || return 1
    local i
    for i in $(seq 30); do
        sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && break
        sleep 1
    done
    sinfo
    if srun -n 2 hostname; then
        echo "slurm_up: ok (SLURM_CONF=$SLURM_CONF)"
    else
        echo "slurm_up: srun -n 2 hostname failed; logs in $SLURM_DIR/log" >&2
        return 1
    fi
}

slurm_down() {
    local name pid
    for name in slurmd slurmctld; do
        if [[ -f "$SLURM_DIR/run/$name.pid" ]]; then
            pid=$(cat "$SLURM_DIR/run/$name.pid")
            kill "$pid" 2>/dev/null && echo "stopped $name ($pid)"
            rm -f "$SLURM_DIR/run/$name.pid"
        fi
    done
    # munged: only if we started it (its pid file), it is harmless to leave it otherwise
    if [[ -f /run/munge/munged.pid ]]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null && echo "stopped munged"
    fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    case "${1:-up}" in
        up) slurm_up ;;
        down) slurm_down ;;
        status) SLURM_CONF="$SLURM_DIR/slurm.conf" sinfo; SLURM_CONF="$SLURM_DIR/slurm.conf" squeue ;;
        *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
    esac
fi
