/*
 * drover-bench-roundtrip: JOB sent -> STARTED received, against a real executor.
 *
 * Plays the supervisor's side of the wire protocol (ROUTER, bound on ipc://
 * or tcp:// loopback), starts one executor program connected to it, answers
 * its HELLO, then sends one JOB at a time and times the STARTED that answers
 * it.  The next JOB goes out only after the run's EXITED and a pause
 * (--gap-ms, 10 ms by default).  The ACK of EXITED makes the executor forget
 * the run and remove its state files, which took up to 1 ms on the ext4
 * disk of a loaded 2-core VM.  The pause keeps that work out of the next
 * sample, so the executor is idle at every JOB.  --gap-ms 0 measures as before the pause
 * existed.  Prints one JSON object with the percentiles.
 *
 * The executor's state directory and the socket of ipc:// are made under
 * $TMPDIR (default /tmp).  The executor inherits TMPDIR, and the process
 * executor makes each run's temporary working directory there, so TMPDIR
 * on a tmpfs takes the disk's metadata writes out of the measurement.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "drover/protocol.h"

#define RT_DEFAULT_CONFIG \
    "{\"command\":\"true\",\"env\":{},\"labels\":{},\"name\":\"bench\"," \
    "\"stream_output\":true,\"working_dir\":null}"
#define RT_MAX_COUNT 1000000

struct rt {
    void       *sock;
    char        rid[256];
    size_t      rid_len;
    uint64_t    pong_seq;
};

static double
rt_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void
rt_uuid(char out[DROVER_UUID_LEN + 1])
{
    unsigned char b[16];
    static const char hex[] = "0123456789abcdef";
    int fd = open("/dev/urandom", O_RDONLY);
    size_t k = 0;

    if (fd < 0 || read(fd, b, sizeof b) != (ssize_t)sizeof b) {
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)rand();
    }
    if (fd >= 0)
        close(fd);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hex[b[i] >> 4];
        out[k++] = hex[b[i] & 15];
    }
    out[k] = '\0';
}

/* Sends one encoded message to the executor. */
static int
rt_send(struct rt *rt, const struct drover_msg *m)
{
    char err[256], *buf = NULL;
    size_t len;
    int rc = -1;

    if (drover_msg_encode(m, &buf, &len, err, sizeof err) == -1) {
        fprintf(stderr, "roundtrip: encode: %s\n", err);
        return -1;
    }
    if (zmq_send(rt->sock, rt->rid, rt->rid_len, ZMQ_SNDMORE) >= 0 &&
        zmq_send(rt->sock, buf, len, 0) >= 0)
        rc = 0;
    free(buf);
    return rc;
}

/* Receives one message (routing id + body), waiting at most timeout_ms. */
static int
rt_recv(struct rt *rt, struct drover_msg *m, long timeout_ms)
{
    zmq_pollitem_t item = { rt->sock, 0, ZMQ_POLLIN, 0 };
    zmq_msg_t rid, body;
    char err[256];
    int rc;

    if (zmq_poll(&item, 1, timeout_ms) <= 0)
        return -1;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&rid, rt->sock, 0) < 0 || !zmq_msg_more(&rid) ||
        zmq_msg_recv(&body, rt->sock, 0) < 0) {
        zmq_msg_close(&rid);
        zmq_msg_close(&body);
        return -1;
    }
    if (zmq_msg_size(&rid) <= sizeof rt->rid) {
        memcpy(rt->rid, zmq_msg_data(&rid), zmq_msg_size(&rid));
        rt->rid_len = zmq_msg_size(&rid);
    }
    rc = drover_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), m, NULL, err, sizeof err);
    zmq_msg_close(&rid);
    zmq_msg_close(&body);
    if (rc != DROVER_DECODE_OK) {
        fprintf(stderr, "roundtrip: bad message from the executor: %s\n", err);
        return -1;
    }
    return 0;
}

/* Handles the traffic that is not what the caller waits for. */
static void
rt_background(struct rt *rt, const struct drover_msg *m)
{
    struct drover_msg out = {0};

    if (m->type == DROVER_MSG_PING) {
        out.type = DROVER_MSG_PONG;
        out.u.ping.seq = m->u.ping.seq;
        rt_send(rt, &out);
    } else if (m->type == DROVER_MSG_STARTED || m->type == DROVER_MSG_EXITED) {
        out.type = DROVER_MSG_ACK;
        memcpy(out.u.ack.flow_run_id, m->type == DROVER_MSG_STARTED ? m->u.started.flow_run_id
                                                                     : m->u.exited.flow_run_id,
               DROVER_UUID_LEN + 1);
        out.u.ack.acked_type = m->type;
        rt_send(rt, &out);
    }
}

/* Waits gap_ms, replying to the PINGs that arrive meanwhile. */
static void
rt_pause(struct rt *rt, long gap_ms)
{
    double end = rt_now_us() + (double)gap_ms * 1000.0;
    struct drover_msg m;
    double left;

    while ((left = end - rt_now_us()) > 0) {
        if (rt_recv(rt, &m, (long)(left / 1000.0) + 1) == -1)
            continue;
        rt_background(rt, &m);
        drover_msg_clear(&m);
    }
}

static int
rt_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double
rt_pct(const double *v, size_t n, double p)
{
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);

    return v[i < n ? i : n - 1];
}

static void
rt_usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s --executor PROGRAM [--transport ipc|tcp] [--count N] [--warmup N]\n"
            "          [--gap-ms MS] [--config JSON] [--label TEXT]\n"
            "Times JOB sent -> STARTED received against PROGRAM --connect ENDPOINT.\n",
            argv0);
}

int
main(int argc, char **argv)
{
    const char *executor = NULL, *transport = "tcp", *config = RT_DEFAULT_CONFIG, *label = "";
    long count = 1000, warmup = 50, gap_ms = 10;
    const char *tmp = getenv("TMPDIR");
    char endpoint[512], dir[400], statedir[600];
    struct rt rt = {0};
    struct drover_msg m = {0}, out = {0};
    double *samples = NULL;
    void *ctx = NULL;
    pid_t child = -1;
    int rc = 1, status;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--executor") == 0 && i + 1 < argc)
            executor = argv[++i];
        else if (strcmp(argv[i], "--transport") == 0 && i + 1 < argc)
            transport = argv[++i];
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc)
            warmup = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--gap-ms") == 0 && i + 1 < argc)
            gap_ms = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
            label = argv[++i];
        else {
            rt_usage(argv[0]);
            return 2;
        }
    }
    if (executor == NULL || count < 1 || count > RT_MAX_COUNT || warmup < 0 || gap_ms < 0 || gap_ms > 10000 ||
        (strcmp(transport, "ipc") != 0 && strcmp(transport, "tcp") != 0)) {
        rt_usage(argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "%s/drover-bench-rt-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("roundtrip: mkdtemp");
        return 1;
    }
    snprintf(statedir, sizeof statedir, "%s/state", dir);
    if ((samples = calloc((size_t)count, sizeof *samples)) == NULL)
        goto out;
    ctx = zmq_ctx_new();
    rt.sock = zmq_socket(ctx, ZMQ_ROUTER);
    if (strcmp(transport, "ipc") == 0)
        snprintf(endpoint, sizeof endpoint, "ipc://%s/sock", dir);
    else
        snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:*");
    if (zmq_bind(rt.sock, endpoint) != 0) {
        fprintf(stderr, "roundtrip: bind %s: %s\n", endpoint, zmq_strerror(errno));
        goto out;
    }
    size_t elen = sizeof endpoint;
    zmq_getsockopt(rt.sock, ZMQ_LAST_ENDPOINT, endpoint, &elen);

    if ((child = fork()) == 0) {
        /* The executor logs a few lines per run; they would swamp the results. */
        int null = open("/dev/null", O_WRONLY);

        if (null >= 0)
            dup2(null, STDERR_FILENO);
        execl(executor, executor, "--connect", endpoint, "--id", "bench-rt", "--state-dir",
              statedir, "--capacity", "4", (char *)NULL);
        perror("roundtrip: exec");
        _exit(127);
    }
    if (rt_recv(&rt, &m, 30000) == -1 || m.type != DROVER_MSG_HELLO) {
        fprintf(stderr, "roundtrip: no HELLO from %s within 30 s\n", executor);
        goto out;
    }
    drover_msg_clear(&m);
    out.type = DROVER_MSG_WELCOME;
    out.u.welcome.supervisor_id = "bench-roundtrip";
    out.u.welcome.ping_interval_ms = 2000;
    out.u.welcome.liveness_ms = 10000;
    if (rt_send(&rt, &out) == -1)
        goto out;

    for (long i = -warmup; i < count; i++) {
        char id[DROVER_UUID_LEN + 1];
        double t0, t1 = 0;
        int started = 0, exited = 0;

        rt_uuid(id);
        memset(&out, 0, sizeof out);
        out.type = DROVER_MSG_JOB;
        memcpy(out.u.job.flow_run_id, id, sizeof id);
        out.u.job.config = (char *)config;
        t0 = rt_now_us();
        if (rt_send(&rt, &out) == -1)
            goto out;
        while (!(started && exited)) {
            if (rt_recv(&rt, &m, 30000) == -1) {
                fprintf(stderr, "roundtrip: the executor went silent on job %ld\n", i);
                goto out;
            }
            if (m.type == DROVER_MSG_STARTED && strcmp(m.u.started.flow_run_id, id) == 0 && !started) {
                t1 = rt_now_us();
                started = 1;
            } else if (m.type == DROVER_MSG_EXITED && strcmp(m.u.exited.flow_run_id, id) == 0) {
                if (m.u.exited.error && *m.u.exited.error) {
                    fprintf(stderr, "roundtrip: the executor refused the job: %s\n", m.u.exited.error);
                    goto out;
                }
                exited = 1;
            }
            rt_background(&rt, &m);
            drover_msg_clear(&m);
        }
        if (i >= 0)
            samples[i] = t1 - t0;
        if (gap_ms > 0)
            rt_pause(&rt, gap_ms);
    }
    qsort(samples, (size_t)count, sizeof *samples, rt_cmp);
    double sum = 0;
    for (long i = 0; i < count; i++)
        sum += samples[i];
    printf("{\"bench\":\"roundtrip\",\"label\":\"%s\",\"transport\":\"%s\",\"executor\":\"%s\","
           "\"gap_ms\":%ld,\"count\":%ld,\"unit\":\"us\",\"min\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
           "\"max\":%.1f,\"mean\":%.1f}\n",
           label, transport, executor, gap_ms, count, samples[0], rt_pct(samples, (size_t)count, 50),
           rt_pct(samples, (size_t)count, 90), rt_pct(samples, (size_t)count, 99),
           samples[count - 1], sum / (double)count);
    rc = 0;
out:
    drover_msg_clear(&m);
    if (child > 0) {
        memset(&out, 0, sizeof out);
        out.type = DROVER_MSG_GOODBYE;
        out.u.goodbye.reason = "benchmark over";
        rt_send(&rt, &out);
        kill(child, SIGTERM);
        waitpid(child, &status, 0);
    }
    if (rt.sock)
        zmq_close(rt.sock);
    if (ctx)
        zmq_ctx_term(ctx);
    free(samples);
    if (fork() == 0) {
        execlp("rm", "rm", "-rf", dir, (char *)NULL);
        _exit(127);
    }
    wait(&status);
    return rc;
}
