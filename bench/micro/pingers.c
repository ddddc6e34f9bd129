/*
 * drover-bench-pingers: many idle executors against one supervisor.
 *
 * Opens --count DEALER sockets to a supervisor's endpoint, says HELLO on each
 * with a real executor's schema, and then PINGs on each at the interval the
 * WELCOME gives, answering nothing else (no JOB arrives: the pool has no
 * runs).  Once every session is welcomed it reads the supervisor's CPU time
 * from /proc/PID/stat at the start and end of a window of --seconds and
 * prints one JSON object: the supervisor's share of one core, and its
 * resident memory at the end.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "drover/protocol.h"

#define PG_MAX_COUNT 10000

struct pg_peer {
    void    *sock;
    int      welcomed;
    int64_t  next_ping_ms;
    uint64_t seq;
};

static int64_t
pg_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* utime+stime in clock ticks and RSS in pages of a process; -1 when gone. */
static int
pg_proc(long pid, long long *ticks, long long *rss_pages)
{
    char path[64], buf[4096], *p;
    FILE *f;
    size_t n;
    unsigned long long ut, st;
    long long rss;

    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if ((p = strrchr(buf, ')')) == NULL)
        return -1;
    /* After ") ": state(3) ppid(4) ... utime(14) stime(15) ... rss(24). */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                      "%*d %*d %*u %*u %lld", &ut, &st, &rss) != 3)
        return -1;
    *ticks = (long long)(ut + st);
    *rss_pages = rss;
    return 0;
}

static int
pg_send(void *sock, const struct drover_msg *m)
{
    char err[256], *buf = NULL;
    size_t len;
    int rc;

    if (drover_msg_encode(m, &buf, &len, err, sizeof err) == -1) {
        fprintf(stderr, "pingers: encode: %s\n", err);
        return -1;
    }
    rc = zmq_send(sock, buf, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
    free(buf);
    return rc;
}

static char *
pg_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *nb;

            cap = cap ? cap * 2 : 65536;
            if (cap > DROVER_MAX_SCHEMA * 2 || (nb = realloc(buf, cap)) == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Reads what one socket has: WELCOME starts its pings, PONG is counted. */
static int
pg_drain(struct pg_peer *p, int64_t now, long *pongs)
{
    char buf[8192], err[256];
    struct drover_msg m;
    int n;

    while ((n = zmq_recv(p->sock, buf, sizeof buf, ZMQ_DONTWAIT)) >= 0) {
        if ((size_t)n > sizeof buf)
            continue;
        if (drover_msg_decode(buf, (size_t)n, &m, NULL, err, sizeof err) != DROVER_DECODE_OK) {
            fprintf(stderr, "pingers: bad message: %s\n", err);
            continue;
        }
        if (m.type == DROVER_MSG_WELCOME && !p->welcomed) {
            p->welcomed = (int)m.u.welcome.ping_interval_ms;
            /* Spread the first pings over one interval, as executors started
             * at different moments would. */
            p->next_ping_ms = now + rand() % (p->welcomed ? p->welcomed : 1);
        } else if (m.type == DROVER_MSG_PONG) {
            (*pongs)++;
        } else if (m.type == DROVER_MSG_REJECT) {
            fprintf(stderr, "pingers: rejected: %s\n", m.u.reject.reason);
            drover_msg_clear(&m);
            return -1;
        }
        drover_msg_clear(&m);
    }
    return 0;
}

static void
pg_usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s --endpoint tcp://127.0.0.1:PORT --pid SUPERVISOR_PID --schema-file F\n"
            "          [--type process] [--count 1000] [--seconds 60]\n", argv0);
}

int
main(int argc, char **argv)
{
    const char *endpoint = NULL, *schema_file = NULL, *type = "process";
    long count = 1000, seconds = 60, pid = 0, pongs = 0, pings = 0, welcomed = 0;
    struct pg_peer *peers = NULL;
    zmq_pollitem_t *items = NULL;
    char *schema = NULL, host[128] = "bench";
    void *ctx = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--endpoint") == 0 && i + 1 < argc)
            endpoint = argv[++i];
        else if (strcmp(argv[i], "--schema-file") == 0 && i + 1 < argc)
            schema_file = argv[++i];
        else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc)
            type = argv[++i];
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc)
            pid = strtol(argv[++i], NULL, 10);
        else {
            pg_usage(argv[0]);
            return 2;
        }
    }
    if (endpoint == NULL || schema_file == NULL || pid <= 0 || count < 1 || count > PG_MAX_COUNT ||
        seconds < 1) {
        pg_usage(argv[0]);
        return 2;
    }
    if ((schema = pg_read_file(schema_file)) == NULL) {
        fprintf(stderr, "pingers: cannot read the schema file %s\n", schema_file);
        return 1;
    }
    gethostname(host, sizeof host - 1);
    srand((unsigned)getpid());
    peers = calloc((size_t)count, sizeof *peers);
    items = calloc((size_t)count, sizeof *items);
    ctx = zmq_ctx_new();
    if (peers == NULL || items == NULL || ctx == NULL)
        goto out;
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, (int)count + 16);

    for (long i = 0; i < count; i++) {
        struct drover_msg m = {0};
        char id[64];
        int linger = 0;

        snprintf(id, sizeof id, "bench-pinger-%05ld", i);
        if ((peers[i].sock = zmq_socket(ctx, ZMQ_DEALER)) == NULL) {
            fprintf(stderr, "pingers: socket %ld: %s\n", i, zmq_strerror(errno));
            goto out;
        }
        zmq_setsockopt(peers[i].sock, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(peers[i].sock, endpoint) != 0) {
            fprintf(stderr, "pingers: connect %s: %s\n", endpoint, zmq_strerror(errno));
            goto out;
        }
        m.type = DROVER_MSG_HELLO;
        m.u.hello.executor_id = id;
        m.u.hello.type = (char *)type;
        m.u.hello.capacity = 4;
        m.u.hello.schema = schema;
        m.u.hello.software = "drover-bench-pingers";
        m.u.hello.hostname = host;
        /* DEALER queues the HELLO until the connection is up. */
        if (pg_send(peers[i].sock, &m) == -1) {
            fprintf(stderr, "pingers: HELLO %ld: %s\n", i, zmq_strerror(errno));
            goto out;
        }
        items[i].socket = peers[i].sock;
        items[i].events = ZMQ_POLLIN;
    }

    int64_t start = pg_now_ms(), window_start = 0, end = 0;
    long long t0 = 0, t1 = 0, rss = 0;
    long pings_at_start = 0, pongs_at_start = 0;

    for (;;) {
        int64_t now = pg_now_ms(), next = now + 1000;

        for (long i = 0; i < count; i++) {
            struct pg_peer *p = &peers[i];

            if (!p->welcomed)
                continue;
            if (now >= p->next_ping_ms) {
                struct drover_msg m = {0};

                m.type = DROVER_MSG_PING;
                m.u.ping.seq = ++p->seq;
                if (pg_send(p->sock, &m) == 0)
                    pings++;
                p->next_ping_ms = now + p->welcomed;
            }
            if (p->next_ping_ms < next)
                next = p->next_ping_ms;
        }
        if (window_start == 0 && welcomed == count) {
            window_start = now;
            end = now + seconds * 1000;
            pings_at_start = pings;
            pongs_at_start = pongs;
            if (pg_proc(pid, &t0, &rss) == -1) {
                fprintf(stderr, "pingers: cannot read /proc/%ld/stat\n", pid);
                goto out;
            }
            fprintf(stderr, "pingers: %ld sessions welcomed after %" PRId64 " ms; measuring %ld s\n",
                    welcomed, now - start, seconds);
        }
        if (window_start == 0 && now - start > 120000) {
            fprintf(stderr, "pingers: only %ld of %ld sessions welcomed after 120 s\n", welcomed, count);
            goto out;
        }
        if (end && now >= end)
            break;
        if (zmq_poll(items, (int)count, next > now ? (long)(next - now) : 0) < 0 && errno != EINTR)
            goto out;
        now = pg_now_ms();
        for (long i = 0; i < count; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            int was = peers[i].welcomed;

            if (pg_drain(&peers[i], now, &pongs) == -1)
                goto out;
            if (!was && peers[i].welcomed)
                welcomed++;
        }
    }
    if (pg_proc(pid, &t1, &rss) == -1) {
        fprintf(stderr, "pingers: the supervisor (pid %ld) is gone\n", pid);
        goto out;
    }
    double cpu = (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK);
    double wall = (double)(pg_now_ms() - window_start) / 1000.0;

    printf("{\"bench\":\"pingers\",\"executors\":%ld,\"ping_interval_ms\":%d,\"seconds\":%.1f,"
           "\"supervisor_cpu_s\":%.2f,\"supervisor_core_share\":%.4f,\"pings\":%ld,\"pongs\":%ld,"
           "\"supervisor_rss_bytes\":%lld}\n",
           count, peers[0].welcomed, wall, cpu, cpu / wall, pings - pings_at_start,
           pongs - pongs_at_start, rss * (long long)sysconf(_SC_PAGESIZE));
    rc = 0;
out:
    if (peers) {
        for (long i = 0; i < count; i++) {
            if (peers[i].sock) {
                struct drover_msg m = {0};

                if (peers[i].welcomed) {
                    m.type = DROVER_MSG_GOODBYE;
                    m.u.goodbye.reason = "benchmark over";
                    pg_send(peers[i].sock, &m);
                }
                zmq_close(peers[i].sock);
            }
        }
    }
    if (ctx)
        zmq_ctx_term(ctx);
    free(peers);
    free(items);
    free(schema);
    return rc;
}
