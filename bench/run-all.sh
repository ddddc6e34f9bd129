#!/bin/sh
# Runs every drover benchmark against real Prefect servers, one thing at a
# time, and writes the results (JSON) and a summary (Markdown) to OUT.
#
#   bench/run-all.sh [OUT]          OUT defaults to bench/results/<UTC time>
#
# Environment: BUILD (build directory, default build-bench at the top of the
# tree), VENV (virtual environment with Prefect, default .venv), QUICK=1 for a
# short smoke run, and the knobs below.
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build-bench}
VENV=${VENV:-$TOP/.venv}
PY=$VENV/bin/python
OUT=${1:-$TOP/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
SIZES=${SIZES:-100,500,2000}
REPS=${REPS:-5}                 # repetitions of every measurement
DEADLINE=${DEADLINE:-120}       # maximum duration of a throughput measurement, seconds
IDLE_WINDOW=${IDLE_WINDOW:-300} # idle footprint window, seconds
PING_SECONDS=${PING_SECONDS:-30}
CEILING_CONCURRENCY=${CEILING_CONCURRENCY:-16}
LATENCY_RUNS=${LATENCY_RUNS:-20}  # runs per latency repetition
KINDS=${KINDS:-drover,drover-lean,prefect}
PHASES=${PHASES:-idle,throughput,latency,micro}
if [ "${QUICK:-0}" = 1 ]; then
    SIZES=50; REPS=1; DEADLINE=60; IDLE_WINDOW=10; PING_SECONDS=5; LATENCY_RUNS=5
fi

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/drover-bench-XXXXXX)
SERVER_PID=
SUPERVISOR_PID=
cleanup() {
    [ -n "$SUPERVISOR_PID" ] && kill -TERM "$SUPERVISOR_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- build --------------------------------------------------------------
say "building drover (Release) in $BUILD"
cmake -S "$TOP" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" >/dev/null
BENCH_BIN=$BUILD/bin
if [ ! -x "$BENCH_BIN/drover-bench-roundtrip" ]; then
    # The top-level tree does not include bench/: build its C programs alone.
    cmake -S "$TOP/bench/standalone" -B "$BUILD/bench-standalone" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD/bench-standalone" >/dev/null
    BENCH_BIN=$BUILD/bench-standalone/bin
fi

# ---- the machine ----------------------------------------------------------
{
    printf '{"cores": %s, ' "$(nproc)"
    printf '"cpu": "%s", ' "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    printf '"mem_kib": %s, ' "$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)"
    printf '"kernel": "%s", ' "$(uname -r)"
    printf '"prefect": "%s", ' "$("$PY" -c 'import prefect; print(prefect.__version__)')"
    printf '"python": "%s", ' "$("$PY" -c 'import platform; print(platform.python_version())')"
    for lib in libzmq libcurl jansson msgpack; do
        printf '"%s": "%s", ' "$lib" "$(pkg-config --modversion $lib)"
    done
    printf '"compiler": "%s", ' "$(cc --version | head -1)"
    printf '"commit": "%s", ' "$(git -C "$TOP" rev-parse --short HEAD)"
    printf '"tree_dirty": %s, ' "$(test -z "$(git -C "$TOP" status --porcelain -- supervisor executors proto)" && echo false || echo true)"
    printf '"loadavg_start": "%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.json"
say "machine: $(cat "$OUT/machine.json")"

# ---- workers: idle, throughput and the ceiling, pickup latency ---------------
# workers.py starts its own servers: one per throughput measurement, on a copy
# of a database prepared once per batch size.
export DROVER_BUILD_DIR=$BUILD DROVER_VENV=$VENV
WORKER_PHASES=$(printf '%s\n' "$PHASES" | tr ',' '\n' | grep -v '^micro$' | paste -sd, -)
if [ -n "$WORKER_PHASES" ]; then
    say "workers: $WORKER_PHASES"
    "$PY" "$TOP/bench/workers.py" --workdir "$WORK/workers" --out "$OUT/workers.json" \
        --phases "$WORKER_PHASES" --kinds "$KINDS" --sizes "$SIZES" --reps "$REPS" \
        --deadline "$DEADLINE" --idle-window "$IDLE_WINDOW" \
        --ceiling-bin "$BENCH_BIN/drover-bench-ceiling" --ceiling-concurrency "$CEILING_CONCURRENCY" \
        --latency-runs "$LATENCY_RUNS" --latency-mean-gap 1.0 >/dev/null
fi
case ",$PHASES," in *,micro,*) ;; *)
    printf '"%s"\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/loadavg-end.json"
    "$PY" "$TOP/bench/report.py" "$OUT" >"$OUT/summary.md"
    say "results in $OUT (summary.md); logs of the workers in $WORK"
    exit 0 ;;
esac

# ---- microbenchmarks --------------------------------------------------------
say "job -> started round trip"
: >"$OUT/roundtrip.jsonl"
for rep in $(seq "$REPS"); do
    for transport in ipc tcp; do
        "$BENCH_BIN/drover-bench-roundtrip" --executor "$BUILD/bin/drover-executor-process" \
            --transport "$transport" --count 300 --warmup 30 --label "rep$rep" >>"$OUT/roundtrip.jsonl"
    done
done

say "1000 pinging executors against one supervisor"
"$PY" "$TOP/bench/server.py" --home "$WORK/server" --info "$WORK/server.json"
API_URL=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['api_url'])" "$WORK/server.json")
SERVER_PID=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$WORK/server.json")
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BUILD/bin/drover-executor-process" --describe >"$WORK/schema.json"
: >"$OUT/pingers.jsonl"
for rep in $(seq "$REPS"); do
    SUP=$WORK/sup-$rep
    mkdir -p "$SUP"
    env -i PATH="$BUILD/bin:/usr/bin:/bin" HOME="$SUP" XDG_RUNTIME_DIR="$SUP" \
        PREFECT_API_URL="$API_URL" \
        "$BUILD/bin/drover" worker start --pool "pingers-$$-$rep" --type process --no-local-executor \
        --bind "tcp://127.0.0.1:$PORT" >"$SUP/drover.log" 2>&1 &
    SUPERVISOR_PID=$!
    sleep 3
    "$BENCH_BIN/drover-bench-pingers" --endpoint "tcp://127.0.0.1:$PORT" --pid "$SUPERVISOR_PID" \
        --schema-file "$WORK/schema.json" --count 1000 --seconds "$PING_SECONDS" >>"$OUT/pingers.jsonl"
    kill -TERM "$SUPERVISOR_PID"; wait "$SUPERVISOR_PID" || true; SUPERVISOR_PID=
    cp "$SUP/drover.log" "$OUT/pingers-supervisor-$rep.log"
done

# The codec and renderer microbenchmarks (bench/codec, bench/render), when built.
: >"$OUT/other-micro.txt"
for prog in $(find "$BUILD" -type f \( -name bench_codec -o -name bench_render \) -perm -u+x | sort); do
    say "running $prog"
    { echo "## $(basename "$prog")"; timeout 600 "$prog" 2>&1 || echo "(exit status $?)"; } \
        >>"$OUT/other-micro.txt"
done

# ---- done ---------------------------------------------------------------------
kill -TERM "$SERVER_PID"; SERVER_PID=
printf '"%s"\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/loadavg-end.json"
"$PY" "$TOP/bench/report.py" "$OUT" >"$OUT/summary.md"
say "results in $OUT (summary.md); logs of the workers in $WORK"
