#!/usr/bin/env bash
# The docker-compose topology as local processes on 127.0.0.1: one SuperLink and N SuperNodes
# (Flower's Deployment Engine, ServerApp and ClientApps as their subprocesses), one
# `flwr run . local-deployment` on them, then exactly the processes it started are stopped.
#
#   scripts/local_deployment.sh [--nodes N] [--tls] [--port PORT] [--results DIR] [--workdir DIR]
#                               [--app DIR] [--run-config "KEY=VALUE ..."] [-- FLWR_RUN_OPTION ...]
#
#   --nodes N      SuperNodes, one partition each (default 3)
#   --tls          TLS with a CA and certificates generated in the work dir (scripts/generate_certs.sh);
#                  without it everything runs insecure, which is for local runs only
#   --port PORT    the SuperLink's port: Fleet, Control and ServerApp APIs (default 9093)
#   --results DIR  where the ServerApp writes results/<run-id>/ (default ./results)
#   --workdir DIR  logs/, flwr-home/ (FLWR_HOME of every process: config, state, installed apps) and certs/
#                  (default: a new temp dir); nothing is written to ~/.flwr
#   --app DIR      another Flower app to run (e.g. examples/quickstart-pytorch); its run config is then only
#                  what --run-config says (--results is fl-sim's own app's)
#   --run-config   run-config overrides, e.g. "num-server-rounds=5 attack.enabled=true" (repeatable)
#   after --       more options for `flwr run`
#
# Flower's executables are taken from the PATH (`make setup` puts them in .venv/bin).
set -euo pipefail

nodes=3 tls=0 port=9093 results="$PWD/results" workdir="" run_config="" app=""
project="$(cd "$(dirname "$0")/.." && pwd)"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes) nodes="$2"; shift 2 ;;
        --tls) tls=1; shift ;;
        --port) port="$2"; shift 2 ;;
        --results) results="$2"; shift 2 ;;
        --workdir) workdir="$2"; shift 2 ;;
        --run-config) run_config+=" $2"; shift 2 ;;
        --app) app="$(cd "$2" && pwd)"; shift 2 ;;
        --) shift; break ;;
        *) echo "local_deployment.sh: unknown option '$1' (see the top of $0)" >&2; exit 2 ;;
    esac
done
for tool in flower-superlink flower-supernode flwr; do
    command -v "$tool" >/dev/null || { echo "local_deployment.sh: '$tool' not on PATH; run make setup and put .venv/bin on PATH" >&2; exit 2; }
done
workdir="${workdir:-$(mktemp -d -t fl-sim-deployment-XXXXXX)}"
mkdir -p "$workdir/logs" "$workdir/flwr-home" "$results"
workdir="$(cd "$workdir" && pwd)" results="$(cd "$results" && pwd)"
# Flower's state, installed apps and CLI config stay in the work directory, not in the user's ~/.flwr;
# the apps run in this environment (no `uv sync` of the app's dependencies from PyPI per run)
export FLWR_HOME="$workdir/flwr-home"
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="${FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION:-1}"

started=()  # process-group ids of what this script started, and nothing else
stop_started() {
    local pgid
    for pgid in "${started[@]}"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pgid in "${started[@]}"; do kill -0 -- "-$pgid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && return
        sleep 0.2
    done
    for pgid in "${started[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
}
trap stop_started EXIT
trap 'exit 130' INT TERM

start() {  # start NAME COMMAND...: in its own process group, logging to logs/NAME.log
    local name="$1"; shift
    setsid "$@" >"$workdir/logs/$name.log" 2>&1 &
    started+=("$!")
}

wait_for_port() {
    for _ in $(seq 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "local_deployment.sh: nothing listens on 127.0.0.1:$1 after 30 s; see $workdir/logs/" >&2
    exit 1
}

if [[ $tls == 1 ]]; then
    "$project/scripts/generate_certs.sh" "$workdir/certs" >/dev/null
    link_security=(--ssl-ca-certfile "$workdir/certs/ca.crt" --ssl-certfile "$workdir/certs/server.pem"
                   --ssl-keyfile "$workdir/certs/server.key")
    node_security=(--root-certificates "$workdir/certs/ca.crt")
    connection="root-certificates = \"$workdir/certs/ca.crt\""
else
    echo "WARNING: insecure mode: SuperLink, SuperNodes and the flwr CLI talk without TLS. Use this for" \
         "local runs only; pass --tls (or see the README's TLS section) for anything else." >&2
    link_security=(--insecure)
    node_security=(--insecure)
    connection="insecure = true"
fi
cat >"$workdir/flwr-home/config.toml" <<CONFIG
[superlink]
default = "local-deployment"

[superlink.local-deployment]
address = "127.0.0.1:$port"
$connection
CONFIG

start superlink flower-superlink "${link_security[@]}" --isolation subprocess --host 127.0.0.1 --port "$port" \
    --database "$workdir/state.db"
wait_for_port "$port"
for ((i = 0; i < nodes; i++)); do
    start "supernode-$i" flower-supernode "${node_security[@]}" --superlink "127.0.0.1:$port" \
        --isolation subprocess --host 127.0.0.1 --port $((port + 1 + i)) \
        --node-config "partition-id=$i num-partitions=$nodes"
done
for ((i = 0; i < nodes; i++)); do wait_for_port $((port + 1 + i)); done

echo "SuperLink 127.0.0.1:$port and $nodes SuperNodes up; logs in $workdir/logs" >&2
if [[ -n "$app" ]]; then
    flwr run "$app" local-deployment --stream ${run_config:+--run-config "$run_config"} "$@"
else
    flwr run "$project" local-deployment --stream \
        --run-config "simulation.num-clients=$nodes output.dir='$results'$run_config" "$@"
fi
