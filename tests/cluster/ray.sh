#!/usr/bin/env bash
# A one-machine Ray cluster on loopback, for the cluster tests and for trying the README's recipe.
#
#   tests/cluster/ray.sh start DIR [CPUS]   # `ray start --head` with CPUS (default 2) CPUs; prints the address
#   tests/cluster/ray.sh stop DIR           # stops that cluster and every process it started
#
# `ray` is the one of the Python environment this script finds first on PATH (pip install 'actstudy[ray]').
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray keep to 127.0.0.1: otherwise it swaps a loopback address for
# this machine's network address and listens there. Processes that talk to the cluster (actstudy sweep)
# need the same variable, which is why the address is printed with it. The cluster runs in a session of
# its own, so `stop` can end exactly its processes by id (no `ray stop`, which would end every Ray on the
# machine).
set -euo pipefail

cmd=${1:?usage: ray.sh start|stop DIR [CPUS]}
dir=$(realpath -m "${2:?usage: ray.sh start|stop DIR [CPUS]}")
cpus=${3:-2}
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

start() {
    mkdir -p "$dir"
    local port
    port=$(free_port)
    # Ray's sockets live under its temp dir, and a socket path may not exceed 107 bytes: keep it short
    mktemp -d /tmp/ray-XXXXXX >"$dir/tmpdir"
    # --block keeps `ray start` alive as the parent of the cluster: SIGTERM to it shuts the cluster down.
    # Every port is a free one, so that two clusters on one machine (two users, two test runs) don't clash.
    setsid ray start --head --block --port="$port" --node-ip-address=127.0.0.1 --num-cpus="$cpus" \
        --ray-client-server-port="$(free_port)" --dashboard-agent-listen-port="$(free_port)" \
        --include-dashboard=false --disable-usage-stats --temp-dir="$(cat "$dir/tmpdir")" >"$dir/ray.log" 2>&1 &
    echo $! >"$dir/ray.pid"
    echo "127.0.0.1:$port" >"$dir/address"
    for _ in $(seq 240); do
        if ray status --address="127.0.0.1:$port" >/dev/null 2>&1; then
            echo "ray.sh: cluster up; export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; address 127.0.0.1:$port"
            return
        fi
        kill -0 "$(cat "$dir/ray.pid")" 2>/dev/null || break
        sleep 0.5
    done
    echo "ray.sh: the cluster did not come up in 120 s; see $dir/ray.log" >&2
    stop
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

session_pids() {  # every process in the session `ray start` opened (its id is the session id)
    ps -e -o pid=,sid= | awk -v sid="$1" '$2 == sid {print $1}'
}

stop() {
    [ -f "$dir/ray.pid" ] || return 0
    local sid
    sid=$(cat "$dir/ray.pid")
    kill -TERM "$sid" 2>/dev/null || true
    for _ in $(seq 100); do
        [ -z "$(session_pids "$sid")" ] && break
        sleep 0.2
    done
    for pid in $(session_pids "$sid"); do  # whatever did not stop in 20 s
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -f "$dir/tmpdir" ]; then
        rm -rf "$(cat "$dir/tmpdir")" "$dir/tmpdir"
    fi
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) echo "ray.sh: unknown command '$cmd'; choose start or stop" >&2; exit 2 ;;
esac
