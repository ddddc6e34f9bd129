#!/usr/bin/env bash
# Quickstart: from a fresh Debian 12 machine to one flow run served by drover.
#
# It installs the dependencies with scripts/install-deps.sh, which uses sudo
# when not run as root, and builds drover into build/ (or $DROVER_BUILD_DIR).
# Then it starts a local Prefect server on SQLite in a temporary folder with
# every online feature off, and `drover worker start` on a new work pool.
# It deploys examples/flows.py:hello, runs it once, and prints the run's
# final state and logs.  Everything it started is stopped on exit, and the
# temporary folder is removed.  It exits 0 only when the run ends COMPLETED.
#
#   bash deploy/quickstart.sh
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
venv=${DROVER_VENV:-$top/.venv}
build=${DROVER_BUILD_DIR:-$top/build}
pool=quickstart
run_deadline_seconds=300

say() { printf '\n==> %s\n' "$*"; }
fail() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

# Print one field of the JSON document on standard input.  A dotted path
# such as state.type walks into nested objects.
json_field() {
    "$venv/bin/python" -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value[key] if value is not None else None
print("" if value is None else value)' "$1"
}

# Call the Prefect API: api METHOD PATH [JSON_BODY].  Prints the response
# body, or on an HTTP error status prints it to stderr and fails.
api() {
    local method=$1 path=$2 body=${3:-} response
    local args=(-sS --fail-with-body -X "$method")
    [ -z "$body" ] || args+=(-H 'Content-Type: application/json' -d "$body")
    if ! response=$(curl "${args[@]}" "$PREFECT_API_URL$path"); then
        printf 'quickstart: %s %s failed: %s\n' "$method" "$path" "$response" >&2
        return 1
    fi
    printf '%s\n' "$response"
}

say "Installing dependencies"
bash "$top/scripts/install-deps.sh"

say "Building drover in $build"
generator=()
if [ ! -f "$build/CMakeCache.txt" ]; then
    if command -v ninja >/dev/null; then generator=(-G Ninja); else generator=(-G "Unix Makefiles"); fi
fi
cmake -S "$top" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" --parallel "$(nproc)"
[ -x "$build/bin/drover" ] || fail "the build produced no $build/bin/drover"

work=$(mktemp -d -t drover-quickstart.XXXXXX)
server_pid=""
worker_pid=""

# Send SIGTERM to a process this script started, and SIGKILL if it is still
# running 30 s later.
stop_process() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_all() {
    local status=$?
    # The worker goes first, while the server can still take its last calls.
    stop_process "$worker_pid"
    stop_process "$server_pid"
    rm -rf "$work"
    exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Settings for everything started below: the server and the worker share the
# temporary Prefect home, and nothing reaches the network beyond loopback.
export PREFECT_HOME=$work/home
export DO_NOT_TRACK=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_UI_ENABLED=false
export PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED=false
export PREFECT_SERVER_DATABASE_CONNECTION_URL="sqlite+aiosqlite:///$work/prefect.db"
port=$("$venv/bin/python" -c '
import socket
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1])')
export PREFECT_API_URL="http://127.0.0.1:$port/api"

say "Starting a Prefect server at $PREFECT_API_URL (log: $work/server.log)"
"$venv/bin/prefect" server start --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 180); do
    curl -sf "$PREFECT_API_URL/health" >/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; fail "the Prefect server exited"; }
    sleep 1
done
curl -sf "$PREFECT_API_URL/health" >/dev/null || fail "the Prefect server at $PREFECT_API_URL is not healthy after 180 s"

say "Starting drover worker start --pool $pool (log: $work/worker.log)"
# Flow run processes inherit PATH and need the Python that has Prefect.
PATH="$venv/bin:$build/bin:$PATH" PREFECT_WORKER_HEARTBEAT_SECONDS=5 PREFECT_WORKER_QUERY_SECONDS=2 \
    "$build/bin/drover" worker start --pool "$pool" --name quickstart-worker >"$work/worker.log" 2>&1 &
worker_pid=$!
# The worker creates the pool on start-up.
for _ in $(seq 60); do
    api GET "/work_pools/$pool" >/dev/null 2>&1 && break
    kill -0 "$worker_pid" 2>/dev/null || { cat "$work/worker.log"; fail "drover exited"; }
    sleep 1
done
api GET "/work_pools/$pool" >/dev/null || fail "drover did not create work pool $pool"

say "Deploying examples/flows.py:hello to pool $pool"
flow_id=$(api POST /flows/ '{"name": "hello"}' | json_field id)
deployment_id=$(api POST /deployments/ "$(cat <<EOF
{
  "name": "quickstart",
  "flow_id": "$flow_id",
  "work_pool_name": "$pool",
  "entrypoint": "flows.py:hello",
  "pull_steps": [
    {"prefect.deployments.steps.set_working_directory": {"directory": "$top/examples"}}
  ]
}
EOF
)" | json_field id)

say "Creating a flow run of deployment $deployment_id"
run_id=$(api POST "/deployments/$deployment_id/create_flow_run" \
    '{"parameters": {"name": "drover"}}' | json_field id)
echo "flow run $run_id"

state=""
for _ in $(seq "$run_deadline_seconds"); do
    state=$(api GET "/flow_runs/$run_id" | json_field state.type)
    case $state in
        COMPLETED|FAILED|CRASHED|CANCELLED) break ;;
    esac
    sleep 1
done

say "Logs of flow run $run_id"
# Log records can reach the server shortly after the final state.
sleep 3
api POST /logs/filter "{\"logs\": {\"flow_run_id\": {\"any_\": [\"$run_id\"]}}, \"sort\": \"TIMESTAMP_ASC\"}" |
    "$venv/bin/python" -c '
import json, sys
for record in json.load(sys.stdin):
    print(record["timestamp"], record["name"], record["message"])'

say "Final state of flow run $run_id: ${state:-unknown}"
message=$(api GET "/flow_runs/$run_id" | json_field state.message)
[ -z "$message" ] || echo "$message"
if [ "$state" != COMPLETED ]; then
    echo "--- drover log ($work/worker.log) ---"
    cat "$work/worker.log"
    case $state in
        FAILED|CRASHED|CANCELLED) fail "flow run $run_id ended $state, expected COMPLETED" ;;
        *) fail "flow run $run_id is still ${state:-without a state} after $run_deadline_seconds s, expected COMPLETED" ;;
    esac
fi
echo "quickstart: flow run $run_id COMPLETED"
