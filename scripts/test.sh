#!/usr/bin/env bash
# Runs drover's whole test suite, as CI does:
#   1. installs the dependencies (scripts/install-deps.sh);
#   2. builds Release with warnings as errors into build/ and runs its CTest tests,
#      all but the e2e and performance labels;
#   3. builds with AddressSanitizer and UndefinedBehaviorSanitizer into
#      build-asan/ and runs the same tests there;
#   4. runs the end-to-end suite once, as the e2e-labelled test of build/
#      (a real Prefect server and the drover of build/);
#   5. runs the Python executor SDK's tests when executors/python/run-tests.sh exists.
# Every step runs even when an earlier one failed, unless it needs that
# step's build.  The script exits non-zero when any step failed.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

jobs=$(nproc 2>/dev/null || echo 2)
failed=()

step() {
    local name=$1
    shift
    echo
    echo "==> $name"
    if "$@"; then
        echo "==> $name: passed"
        return 0
    fi
    echo "==> $name: FAILED"
    failed+=("$name")
    return 1
}

build() {
    local dir=$1
    shift
    local generator=()
    # An existing build directory keeps the generator it was configured with.
    if [ ! -f "$dir/CMakeCache.txt" ]; then
        if command -v ninja >/dev/null; then generator=(-G Ninja); else generator=(-G "Unix Makefiles"); fi
    fi
    cmake -S "$top" -B "$dir" "${generator[@]}" "$@" && cmake --build "$dir" --parallel "$jobs"
}

# Runs the e2e-labelled test of build/ after checking that exactly one is
# registered, so the end-to-end suite neither silently vanishes nor runs twice.
run_e2e() {
    local count
    count=$(ctest --test-dir build -N -L '^e2e$' | sed -n 's/^Total Tests: //p')
    if [ "$count" != 1 ]; then
        echo "expected one test labelled e2e in build/, found ${count:-none}:" \
             "is the Python environment missing (scripts/install-deps.sh)?" >&2
        return 1
    fi
    ctest --test-dir build -L '^e2e$' --output-on-failure
}

if ! step "install dependencies" bash scripts/install-deps.sh; then
    echo "test.sh: cannot continue without the dependencies" >&2
    exit 1
fi

# build/ is a Release build (-O3), as the benchmarks and packagers build: gcc
# warns about some code only at that level.
if step "build (Release, warnings as errors) in build/" build build -DCMAKE_BUILD_TYPE=Release \
        -DDROVER_WERROR=ON -DDROVER_SANITIZE=OFF; then
    step "ctest in build/" ctest --test-dir build -LE '^(e2e|performance)$' \
        --output-on-failure --parallel "$jobs"
    build_ok=1
else
    build_ok=0
fi

if step "build (ASan+UBSan) in build-asan/" build build-asan -DDROVER_WERROR=ON -DDROVER_SANITIZE=ON; then
    step "ctest in build-asan/" ctest --test-dir build-asan -LE '^(e2e|performance)$' \
        --output-on-failure --parallel "$jobs"
fi

if [ "$build_ok" = 1 ]; then
    step "end-to-end suite against a Prefect server" run_e2e
fi

if [ -f executors/python/run-tests.sh ]; then
    step "Python executor SDK tests" bash executors/python/run-tests.sh
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: ${#failed[@]} step(s) failed:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "test.sh: all steps passed"
