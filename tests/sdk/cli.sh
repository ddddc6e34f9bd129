#!/usr/bin/env bash
# Command line of an SDK executor (drover-executor-process): exit statuses
# of --describe, --help and bad options, the per-id lock on the state
# directory, and CURVE key files whose content never reaches the log.
set -u
exe=$1
dir=$(mktemp -d /tmp/drover-sdk-cli-XXXXXX)
pids=()
failures=0
passed=0
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT

expect_status() {   # NAME WANT COMMAND...
    local name=$1 want=$2
    shift 2
    "$@" >"$dir/out" 2>"$dir/err"
    local got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL $name: exit status $got, expected $want"; sed 's/^/  | /' "$dir/err"
        failures=$((failures + 1))
    else
        passed=$((passed + 1))
    fi
}

expect_in() {   # NAME FILE TEXT
    if grep -qF -- "$3" "$2"; then passed=$((passed + 1)); else
        echo "FAIL $1: \"$3\" not in $(basename "$2")"; sed 's/^/  | /' "$2"; failures=$((failures + 1)); fi
}

expect_not_in() {   # NAME FILE TEXT
    if grep -qF -- "$3" "$2"; then
        echo "FAIL $1: \"$3\" found in $(basename "$2")"; failures=$((failures + 1)); else passed=$((passed + 1)); fi
}

expect_status describe 0 "$exe" --describe
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["type"]=="process", d' "$dir/out" \
    && passed=$((passed + 1)) || { echo "FAIL describe: output is not the process schema"; failures=$((failures + 1)); }
expect_status help 0 "$exe" --help
expect_in help "$dir/out" "--connect ENDPOINT"
expect_status no-connect 2 "$exe"
expect_in no-connect "$dir/err" "--connect ENDPOINT is required"
expect_status capacity-zero 2 "$exe" --connect "ipc://$dir/s" --capacity 0
expect_in capacity-zero "$dir/err" "invalid --capacity 0"
expect_status capacity-text 2 "$exe" --connect "ipc://$dir/s" --capacity=many
expect_status bad-id 2 "$exe" --connect "ipc://$dir/s" --id "bad id"
expect_in bad-id "$dir/err" "invalid --id"
expect_status unknown-option 2 "$exe" --frobnicate
expect_status missing-value 2 "$exe" --connect
expect_status monitor-by-hand 2 "$exe" --monitor

# One state directory per executor id: a second executor with the same id is refused.
"$exe" --connect "ipc://$dir/nobody.sock" --id lock-test --state-dir "$dir/state" 2>"$dir/first.err" &
first=$!
pids+=("$first")
for _ in $(seq 100); do [ -e "$dir/state/lock-test/lock" ] && break; sleep 0.1; done
expect_status lock 1 "$exe" --connect "ipc://$dir/nobody.sock" --id lock-test --state-dir "$dir/state"
expect_in lock "$dir/err" "another executor with id lock-test"
if [ -e "$dir/state/lock-test/lock" ]; then passed=$((passed + 1)); else
    echo "FAIL lock: the refused executor removed the lock file of the running one"; failures=$((failures + 1)); fi
kill -TERM "$first"
wait "$first"
status=$?
if [ "$status" -eq 0 ]; then passed=$((passed + 1)); else
    echo "FAIL sigterm-unwelcomed: exit status $status"; sed 's/^/  | /' "$dir/first.err"; failures=$((failures + 1)); fi
if [ ! -e "$dir/state/lock-test" ]; then passed=$((passed + 1)); else
    echo "FAIL state-cleanup: the state directory of an executor without runs is left behind"; failures=$((failures + 1)); fi

# CURVE: both keys are needed, and a key file's content never appears in the log.
secret=SECRETsecretSECRETsecretSECRETsecret123
printf '%s\n' "$secret" >"$dir/secret.key"
chmod 600 "$dir/secret.key"
expect_status curve-half 1 "$exe" --connect "tcp://127.0.0.1:1" --curve-secret-key-file "$dir/secret.key" \
    --state-dir "$dir/state"
expect_in curve-half "$dir/err" "needs both"
printf 'rq:rM>}U?@Lns47E1%%kR.o@n%%FcmmsL/@{H8]yf7\n' >"$dir/server.key"
expect_status curve-bad-secret 1 "$exe" --connect "tcp://127.0.0.1:1" --curve-server-key "$dir/server.key" \
    --curve-secret-key-file "$dir/secret.key" --state-dir "$dir/state"
expect_in curve-bad-secret "$dir/err" "secret.key"
expect_not_in curve-bad-secret "$dir/err" "$secret"

echo "$passed passed, $failures failed"
[ "$failures" -eq 0 ]
