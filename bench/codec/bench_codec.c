/*
 * Benchmark of the wire codec: nanoseconds per encode and per decode of each
 * message type, the median of several repetitions.  The messages are sized
 * like real traffic: a JOB with a 4 KiB configuration, LOG lines of 200
 * bytes, a HELLO with a 20-entry inventory.  Decoding the JSON fields (JOB
 * config, HELLO schema) includes parsing them with jansson, as the codec
 * checks that they are JSON objects.
 *
 *   bench_codec [REPETITIONS]      (default 7)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drover/protocol.h"

#define RUN_ID "0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a10"

/* Each repetition runs for at least this long, so clock resolution and
 * timer overhead stay negligible. */
#define BENCH_MIN_NS 20000000.0

static double bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int bench_compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* A JSON configuration of about `target` bytes, like a rendered process
 * job configuration with many environment variables. */
static char *bench_config(size_t target)
{
    char *s = malloc(target + 512);
    size_t n = 0;
    int i = 0;

    n += (size_t)sprintf(s + n, "{\"command\":\"prefect flow-run execute\",\"name\":\"crimson-lemur\","
                         "\"labels\":{\"prefect.io/flow-run-id\":\"" RUN_ID "\"},\"env\":{");
    while (n < target - 100) {
        n += (size_t)sprintf(s + n, "%s\"SETTING_%03d\":\"value-%03d-abcdefghijklmnopqrstuvwxyz\"",
                             i > 0 ? "," : "", i, i);
        i++;
    }
    sprintf(s + n, "},\"working_dir\":\"/srv/flows\",\"stream_output\":true}");
    return s;
}

static const char *bench_schema =
    "{\"type\":\"process\",\"description\":\"Runs each flow run as a local process.\","
    "\"documentation_url\":\"https://example.invalid/drover/process\","
    "\"logo_url\":\"https://example.invalid/drover/process.png\",\"fields\":["
    "{\"name\":\"command\",\"schema\":{\"title\":\"Command\",\"anyOf\":[{\"type\":\"string\"},"
    "{\"type\":\"null\"}],\"default\":null,\"description\":\"The command to run.\"}},"
    "{\"name\":\"env\",\"schema\":{\"title\":\"Environment\",\"type\":\"object\",\"default\":{}}},"
    "{\"name\":\"labels\",\"schema\":{\"title\":\"Labels\",\"type\":\"object\",\"default\":{}}},"
    "{\"name\":\"name\",\"schema\":{\"title\":\"Name\",\"anyOf\":[{\"type\":\"string\"},"
    "{\"type\":\"null\"}],\"default\":null}},"
    "{\"name\":\"working_dir\",\"schema\":{\"title\":\"Working directory\",\"anyOf\":["
    "{\"type\":\"string\"},{\"type\":\"null\"}],\"default\":null},"
    "\"template\":\"{{ working_dir }}\"}],\"variables\":null}";

/* Times `iterations` encodes (decode = 0) or decodes of m; returns ns each. */
static double bench_once(const struct drover_msg *m, const char *frame, size_t frame_len,
                         int decode, long iterations)
{
    char err[256];
    double start = bench_now_ns();

    for (long i = 0; i < iterations; i++) {
        if (decode) {
            struct drover_msg out;

            if (drover_msg_decode(frame, frame_len, &out, NULL, err, sizeof err) != 0) {
                fprintf(stderr, "decode failed: %s\n", err);
                exit(1);
            }
            drover_msg_clear(&out);
        } else {
            char *buf;
            size_t len;

            if (drover_msg_encode(m, &buf, &len, err, sizeof err) < 0) {
                fprintf(stderr, "encode failed: %s\n", err);
                exit(1);
            }
            free(buf);
        }
    }
    return (bench_now_ns() - start) / (double)iterations;
}

/* Returns the median ns per operation over `reps` repetitions, after
 * finding an iteration count that makes one repetition last BENCH_MIN_NS. */
static double bench_median(const struct drover_msg *m, const char *frame, size_t frame_len,
                           int decode, int reps)
{
    double samples[64];
    long iterations = 1;

    while (bench_once(m, frame, frame_len, decode, iterations) * (double)iterations < BENCH_MIN_NS)
        iterations *= 2;
    for (int r = 0; r < reps; r++)
        samples[r] = bench_once(m, frame, frame_len, decode, iterations);
    qsort(samples, (size_t)reps, sizeof samples[0], bench_compare_doubles);
    return samples[reps / 2];
}

static void bench_report(const char *label, const struct drover_msg *m, int reps)
{
    char err[256];
    char *frame;
    size_t len;
    double enc, dec;

    if (drover_msg_encode(m, &frame, &len, err, sizeof err) < 0) {
        fprintf(stderr, "%s: encode failed: %s\n", label, err);
        exit(1);
    }
    enc = bench_median(m, frame, len, 0, reps);
    dec = bench_median(m, frame, len, 1, reps);
    printf("%-26s %8zu %12.0f %12.0f\n", label, len, enc, dec);
    free(frame);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    struct drover_run_entry inventory[20];
    char identifiers[20][32];
    char line[201];
    char *config = bench_config(4096);
    struct drover_msg m;

    if (reps < 1 || reps > 64) {
        fprintf(stderr, "usage: %s [REPETITIONS 1..64]\n", argv[0]);
        return 2;
    }
    printf("median of %d repetitions, ns per message\n", reps);
    printf("%-26s %8s %12s %12s\n", "message", "bytes", "encode ns", "decode ns");

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_HELLO;
    m.u.hello = (struct drover_hello){ "node-a.process:1", "process", 4, (char *)bench_schema,
                                       "drover-executor-process 0.1.0", "node-a", NULL, 0 };
    bench_report("HELLO (empty inventory)", &m, reps);
    for (int i = 0; i < 20; i++) {
        memset(&inventory[i], 0, sizeof inventory[i]);
        snprintf(inventory[i].flow_run_id, sizeof inventory[i].flow_run_id,
                 "0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a%02d", i);
        snprintf(identifiers[i], sizeof identifiers[i], "node-a:%d", 40000 + i);
        inventory[i].identifier = identifiers[i];
        inventory[i].exited = i % 4 == 0;
        inventory[i].code = i % 4 == 0 ? 1 : 0;
    }
    m.u.hello.inventory = inventory;
    m.u.hello.inventory_len = 20;
    bench_report("HELLO (20-entry inventory)", &m, reps);

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_WELCOME;
    m.u.welcome = (struct drover_welcome){ "drover@node-a", 2000, 120000 };
    bench_report("WELCOME", &m, reps);

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_REJECT;
    m.u.reject.reason = "protocol version 2 is not supported, this supervisor speaks version 1";
    bench_report("REJECT", &m, reps);

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_JOB;
    strcpy(m.u.job.flow_run_id, RUN_ID);
    m.u.job.config = config;
    bench_report("JOB (4 KiB config)", &m, reps);

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_STARTED;
    strcpy(m.u.started.flow_run_id, RUN_ID);
    m.u.started.identifier = "node-a:4242";
    bench_report("STARTED", &m, reps);

    memset(line, 'x', 200);
    line[200] = '\0';
    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_LOG;
    strcpy(m.u.log.flow_run_id, RUN_ID);
    m.u.log.stream = DROVER_STREAM_STDOUT;
    m.u.log.line = line;
    bench_report("LOG (200-byte line)", &m, reps);

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_EXITED;
    strcpy(m.u.exited.flow_run_id, RUN_ID);
    m.u.exited.code = -9;
    m.u.exited.error = "";
    bench_report("EXITED", &m, reps);

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_ACK;
    strcpy(m.u.ack.flow_run_id, RUN_ID);
    m.u.ack.acked_type = DROVER_MSG_EXITED;
    bench_report("ACK", &m, reps);

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_KILL;
    strcpy(m.u.kill.flow_run_id, RUN_ID);
    m.u.kill.grace_seconds = 30;
    bench_report("KILL", &m, reps);

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_PING;
    m.u.ping.seq = 123456;
    m.u.ping.running = 3;
    bench_report("PING", &m, reps);
    m.type = DROVER_MSG_PONG;
    bench_report("PONG", &m, reps);

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_GOODBYE;
    m.u.goodbye.reason = "executor stopping on SIGTERM";
    bench_report("GOODBYE", &m, reps);

    free(config);
    return 0;
}
