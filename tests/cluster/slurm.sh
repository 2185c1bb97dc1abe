#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the cluster tests and for trying the README's recipe.
#
#   tests/cluster/slurm.sh start DIR   # installs slurm-wlm and munge if missing (apt-get, as root),
#                                      # starts munged, slurmctld and slurmd, waits until the node is idle
#   export SLURM_CONF=DIR/slurm.conf PATH=DIR/bin:$PATH   # then sbatch, squeue, sinfo talk to it
#   tests/cluster/slurm.sh stop DIR    # cancels every job, stops the three daemons
#
# Everything lives in DIR (config, key, state, logs, sockets): nothing under /etc is changed, and a
# Slurm or munge the machine already runs is not touched. The daemons listen on loopback only, on free
# ports chosen at start. No cgroups: processes are tracked through /proc (proctrack/linuxproc), which a
# container without systemd allows. There is no accounting database (slurmdbd), so DIR/bin/sacct answers
# the job-state queries submitit makes from the controller (see the comment there).
set -euo pipefail

cmd=${1:?usage: slurm.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: slurm.sh start|stop DIR}")
here=$(dirname "$(realpath "$0")")

install_if_missing() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    [ "$(id -u)" = 0 ] || { echo "slurm.sh: installing Slurm needs root (apt-get)" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The packages' own service start is refused in a container without systemd; we start them below.
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    install_if_missing
    mkdir -p "$dir"/{munge,state,spool,bin}
    chmod 700 "$dir" "$dir/munge"
    # munge: a private key and socket, so that this cluster's credentials are its own
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed"

    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))  # leave a tenth to the OS
    cat > "$dir/slurm.conf" <<CONF
ClusterName=actstudy
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job waits this long (default 120 s) before it may start again
AuthInfo=socket=$dir/munge/socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
# no cgroups: track a job's processes through /proc, bind nothing
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
# one job per requested CPU side by side; memory is not a consumable here
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
# keep finished jobs in the controller for an hour: their state is what DIR/bin/sacct reports
MinJobAge=3600
# a job told to stop (scancel, requeue, time limit) is killed 2 s after SIGTERM, not 30
KillWait=2
NodeName=localnode NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=localnode Default=YES MaxTime=INFINITE State=UP
CONF
    cp "$here/sacct" "$dir/bin/sacct"
    chmod +x "$dir/bin/sacct"
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF" -N localnode
    for _ in $(seq 120); do
        if [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ]; then
            echo "slurm.sh: node idle; export SLURM_CONF=$SLURM_CONF PATH=$dir/bin:\$PATH"
            return
        fi
        sleep 0.5
    done
    echo "slurm.sh: the node did not become idle in 60 s; logs in $dir" >&2
    sinfo >&2 || true
    stop
    exit 1
}

stop_pid_file() {  # SIGTERM the daemon whose pid is in $1, wait up to 10 s, then SIGKILL it
    local pid
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    export SLURM_CONF="$dir/slurm.conf"
    if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        scancel --full --quiet -u "$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do  # let slurmd end every job step before it goes
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    stop_pid_file "$dir/slurmd.pid"
    stop_pid_file "$dir/slurmctld.pid"
    stop_pid_file "$dir/munge/munged.pid"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) echo "slurm.sh: unknown command '$cmd'; choose start or stop" >&2; exit 2 ;;
esac
