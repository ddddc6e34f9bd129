#!/bin/sh
# The process executor with a capacity as high as the worker's --limit, so
# that the benchmark compares the two workers at equal concurrency: drover's
# local executor otherwise accepts 4 runs per CPU and the supervisor claims no
# more runs than its executors have room for.
exec "${DROVER_BENCH_EXECUTOR:?set DROVER_BENCH_EXECUTOR to drover-executor-process}" \
    --capacity "${DROVER_BENCH_CAPACITY:-10000}" "$@"
