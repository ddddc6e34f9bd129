/*
 * drover-conformance: checks that an executor program speaks the drover wire
 * protocol correctly, by acting as its supervisor.
 *
 *   drover-conformance [--check NAME]... [--list] -- PROGRAM [ARG]...
 *
 * For each check it binds a ROUTER socket on an ipc:// path in a fresh
 * temporary directory, starts PROGRAM ARG... --connect ENDPOINT --state-dir
 * DIR, plays its part of the dialog and prints "ok NAME" or "FAIL NAME:
 * reason".  The exit status is 1 when any check failed.  Job configurations
 * use only "command" and "env" with /bin/sh, so any executor that runs
 * commands can be checked.  Commands that wait end by themselves once the
 * check's directory is removed, so a failed check leaves no run behind.  Waits are bounded by generous deadlines that only
 * end a check that would otherwise hang; no check measures time.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <msgpack.h>
#include <zmq.h>

#include "drover/protocol.h"

/* Deadline for anything the executor must do: long enough for a loaded
 * machine and a sanitizer build, short enough to end a hung check. */
#define CONF_WAIT_MS 60000

#define CONF_PING_MS     250
#define CONF_LIVENESS_MS 5000

struct conf {
    char   **program;          /* PROGRAM ARG..., NULL-terminated */
    void    *zctx;
    void    *router;
    char     dir[256];         /* temporary directory of the check */
    char     endpoint[320];
    char     state_dir[300];
    char     log_path[300];
    pid_t    pid;
    int      exit_status;      /* wait status once reaped, -1 before */
    unsigned char rid[256];    /* routing id of the executor's latest HELLO */
    size_t   rid_len;
    int      welcomed;
    int      answer_pings;
    int      goodbye_unknown;  /* reply GOODBYE to messages of unknown routing ids */
    unsigned long pings;
    struct drover_hello hello; /* the latest HELLO */
    char     reason[1024];     /* failure reason of the running check */
    char   **extra_args;       /* added after PROGRAM ARG... (for example --id) */
};

static int conf_verbose;

static int64_t conf_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int conf_fail(struct conf *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int conf_fail(struct conf *c, const char *fmt, ...)
{
    va_list ap;

    if (c->reason[0])
        return -1;   /* keep the first reason */
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    va_end(ap);
    return -1;
}

/* --- Socket ------------------------------------------------------------- */

static int conf_bind(struct conf *c)
{
    int linger = 0;

    c->router = zmq_socket(c->zctx, ZMQ_ROUTER);
    if (!c->router)
        return conf_fail(c, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(c->router, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(c->router, c->endpoint) < 0)
        return conf_fail(c, "bind %s: %s", c->endpoint, zmq_strerror(zmq_errno()));
    c->rid_len = 0;
    c->welcomed = 0;
    return 0;
}

static void conf_unbind(struct conf *c)
{
    if (c->router)
        zmq_close(c->router);
    c->router = NULL;
}

static int conf_send_to(struct conf *c, const unsigned char *rid, size_t rid_len, const void *body, size_t len)
{
    if (zmq_send(c->router, rid, rid_len, ZMQ_SNDMORE) < 0 || zmq_send(c->router, body, len, 0) < 0)
        return conf_fail(c, "send: %s", zmq_strerror(zmq_errno()));
    return 0;
}

static int conf_send_raw(struct conf *c, const void *body, size_t len)
{
    if (!c->rid_len)
        return conf_fail(c, "no executor to send to");
    return conf_send_to(c, c->rid, c->rid_len, body, len);
}

static int conf_send(struct conf *c, const struct drover_msg *m)
{
    char *buf = NULL, err[256];
    size_t len = 0;
    int rc;

    if (drover_msg_encode(m, &buf, &len, err, sizeof err) < 0)
        return conf_fail(c, "encode %s: %s", drover_msg_type_name(m->type), err);
    rc = conf_send_raw(c, buf, len);
    free(buf);
    return rc;
}

static int conf_send_welcome(struct conf *c)
{
    struct drover_msg m = {.type = DROVER_MSG_WELCOME};

    m.u.welcome.supervisor_id = "conformance";
    m.u.welcome.ping_interval_ms = CONF_PING_MS;
    m.u.welcome.liveness_ms = CONF_LIVENESS_MS;
    c->welcomed = 1;
    return conf_send(c, &m);
}

static int conf_send_job_text(struct conf *c, const char *id, const char *config)
{
    struct drover_msg m = {.type = DROVER_MSG_JOB};

    snprintf(m.u.job.flow_run_id, sizeof m.u.job.flow_run_id, "%s", id);
    m.u.job.config = (char *)config;
    return conf_send(c, &m);
}

/* Sends JOB with the configuration object (reference taken). */
static int conf_send_job_json(struct conf *c, const char *id, json_t *config)
{
    char *text = json_dumps(config, JSON_COMPACT);
    int rc = conf_send_job_text(c, id, text);

    free(text);
    json_decref(config);
    return rc;
}

/* Sends JOB with {"command": command, "env": env}; env may be NULL. */
static int conf_send_job(struct conf *c, const char *id, const char *command, json_t *env)
{
    json_t *config = json_pack("{s:s, s:o}", "command", command, "env", env ? env : json_object());
    char *text = json_dumps(config, JSON_COMPACT);
    int rc = conf_send_job_text(c, id, text);

    free(text);
    json_decref(config);
    return rc;
}

static int conf_send_ack(struct conf *c, const char *id, int type)
{
    struct drover_msg m = {.type = DROVER_MSG_ACK};

    snprintf(m.u.ack.flow_run_id, sizeof m.u.ack.flow_run_id, "%s", id);
    m.u.ack.acked_type = type;
    return conf_send(c, &m);
}

static int conf_send_kill(struct conf *c, const char *id, unsigned grace)
{
    struct drover_msg m = {.type = DROVER_MSG_KILL};

    snprintf(m.u.kill.flow_run_id, sizeof m.u.kill.flow_run_id, "%s", id);
    m.u.kill.grace_seconds = grace;
    return conf_send(c, &m);
}

/* Receives the next message other than PING (which is answered with PONG)
 * within timeout_ms.  Returns 1 with *out filled, 0 on timeout, -1 on a
 * protocol violation by the executor. */
static int conf_next(struct conf *c, struct drover_msg *out, int timeout_ms)
{
    int64_t deadline = conf_now() + timeout_ms;

    for (;;) {
        zmq_pollitem_t item = {.socket = c->router, .events = ZMQ_POLLIN};
        unsigned char rid[256];
        int rid_len, more = 0, version = 0;
        size_t more_len = sizeof more;
        int64_t left = deadline - conf_now();
        zmq_msg_t body;
        char err[256];
        int rc;

        if (left <= 0)
            return 0;
        if (zmq_poll(&item, 1, (long)left) <= 0)
            continue;
        rid_len = zmq_recv(c->router, rid, sizeof rid, 0);
        if (rid_len < 0)
            continue;
        zmq_msg_init(&body);
        if (zmq_msg_recv(&body, c->router, 0) < 0) {
            zmq_msg_close(&body);
            continue;
        }
        zmq_getsockopt(c->router, ZMQ_RCVMORE, &more, &more_len);
        if (more) {
            zmq_msg_close(&body);
            return conf_fail(c, "the executor sent a message of more than one frame");
        }
        rc = drover_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), out, &version, err, sizeof err);
        zmq_msg_close(&body);
        if (rc != DROVER_DECODE_OK)
            return conf_fail(c, "the executor sent an invalid message (%s): %s",
                             drover_decode_result_name(rc), err);
        if (conf_verbose)
            fprintf(stderr, "  conformance <- %s\n", drover_msg_type_name(out->type));

        if (out->type == DROVER_MSG_HELLO) {
            memcpy(c->rid, rid, (size_t)rid_len);
            c->rid_len = (size_t)rid_len;
            c->welcomed = 0;
            drover_msg_clear(&(struct drover_msg){.type = DROVER_MSG_HELLO, .u.hello = c->hello});
            c->hello = out->u.hello;
            memset(&out->u.hello, 0, sizeof out->u.hello);
            out->type = DROVER_MSG_HELLO;
            return 1;
        }
        if (c->rid_len != (size_t)rid_len || memcmp(c->rid, rid, (size_t)rid_len) != 0) {
            /* A peer that sent no HELLO on this socket. */
            if (c->goodbye_unknown) {
                struct drover_msg bye = {.type = DROVER_MSG_GOODBYE};
                char *buf = NULL;
                size_t len = 0;

                bye.u.goodbye.reason = "unknown executor, say HELLO";
                if (drover_msg_encode(&bye, &buf, &len, err, sizeof err) == 0)
                    conf_send_to(c, rid, (size_t)rid_len, buf, len);
                free(buf);
            }
            drover_msg_clear(out);
            continue;
        }
        if (out->type == DROVER_MSG_PING) {
            struct drover_msg pong = {.type = DROVER_MSG_PONG};

            c->pings++;
            pong.u.ping.seq = out->u.ping.seq;
            pong.u.ping.running = out->u.ping.running;
            if (c->answer_pings)
                conf_send(c, &pong);
            drover_msg_clear(out);
            continue;
        }
        return 1;
    }
}

/* Waits for a message of type about run id (NULL: any run, or no run for
 * HELLO/GOODBYE).  LOG lines on the way are passed to on_log when given. */
typedef void (*conf_log_fn)(struct conf *c, const struct drover_log *log, void *arg);

static int conf_expect(struct conf *c, int type, const char *id, struct drover_msg *out,
                       conf_log_fn on_log, void *arg)
{
    int64_t deadline = conf_now() + CONF_WAIT_MS;

    for (;;) {
        int64_t left = deadline - conf_now();
        int rc = conf_next(c, out, left > 0 ? (int)left : 0);
        const char *rid = NULL;

        if (rc < 0)
            return -1;
        if (rc == 0)
            return conf_fail(c, "no %s%s%s arrived within %d s", drover_msg_type_name(type),
                             id ? " for " : "", id ? id : "", CONF_WAIT_MS / 1000);
        switch (out->type) {
        case DROVER_MSG_STARTED: rid = out->u.started.flow_run_id; break;
        case DROVER_MSG_EXITED: rid = out->u.exited.flow_run_id; break;
        case DROVER_MSG_LOG: rid = out->u.log.flow_run_id; break;
        default: break;
        }
        if (out->type == DROVER_MSG_LOG && on_log && (!id || strcmp(rid, id) == 0))
            on_log(c, &out->u.log, arg);
        if (out->type == type && (!id || !rid || strcmp(rid, id) == 0))
            return 0;
        drover_msg_clear(out);
    }
}

/* --- The executor process ----------------------------------------------- */

static int conf_spawn(struct conf *c)
{
    size_t n = 0, extra = 0;
    char **argv;
    int logfd;

    while (c->program[n])
        n++;
    while (c->extra_args && c->extra_args[extra])
        extra++;
    argv = calloc(n + extra + 5, sizeof *argv);
    if (!argv)
        return conf_fail(c, "out of memory");
    memcpy(argv, c->program, n * sizeof *argv);
    if (extra)
        memcpy(argv + n, c->extra_args, extra * sizeof *argv);
    n += extra;
    argv[n++] = "--connect";
    argv[n++] = c->endpoint;
    argv[n++] = "--state-dir";
    argv[n++] = c->state_dir;

    logfd = open(c->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    c->pid = fork();
    if (c->pid == 0) {
        if (logfd >= 0)
            dup2(logfd, STDERR_FILENO);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (logfd >= 0)
        close(logfd);
    free(argv);
    c->exit_status = -1;
    if (c->pid < 0)
        return conf_fail(c, "fork: %s", strerror(errno));
    return 0;
}

/* Waits up to CONF_WAIT_MS for the executor to exit.  Returns 0 when it did. */
static int conf_reap(struct conf *c)
{
    int64_t deadline = conf_now() + CONF_WAIT_MS;

    if (c->pid <= 0)
        return 0;
    while (conf_now() < deadline) {
        int status;
        pid_t w = waitpid(c->pid, &status, WNOHANG);

        if (w == c->pid) {
            c->exit_status = status;
            c->pid = 0;
            return 0;
        }
        usleep(20000);
    }
    return -1;
}

static int conf_running(struct conf *c)
{
    int status;

    if (c->pid <= 0)
        return 0;
    if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
        c->exit_status = status;
        c->pid = 0;
        return 0;
    }
    return 1;
}

/* Stops the executor with SIGTERM and requires a clean exit (status 0),
 * which also catches sanitizer reports at exit. */
static int conf_stop(struct conf *c)
{
    if (c->pid <= 0)
        return 0;
    kill(c->pid, SIGTERM);
    if (conf_reap(c) < 0) {
        kill(c->pid, SIGKILL);
        conf_reap(c);
        return conf_fail(c, "the executor did not exit within %d s of SIGTERM", CONF_WAIT_MS / 1000);
    }
    if (!WIFEXITED(c->exit_status) || WEXITSTATUS(c->exit_status) != 0)
        return conf_fail(c, "the executor ended with %s %d after SIGTERM (expected exit status 0)",
                         WIFEXITED(c->exit_status) ? "exit status" : "signal",
                         WIFEXITED(c->exit_status) ? WEXITSTATUS(c->exit_status) : WTERMSIG(c->exit_status));
    return 0;
}

/* Starts the executor and completes HELLO/WELCOME. */
static int conf_start(struct conf *c)
{
    struct drover_msg m;

    if (conf_spawn(c) < 0 || conf_expect(c, DROVER_MSG_HELLO, NULL, &m, NULL, NULL) < 0)
        return -1;
    return conf_send_welcome(c);
}

static void conf_path(const struct conf *c, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", c->dir, name);
}

static int conf_touch(struct conf *c, const char *name)
{
    char path[400];
    int fd;

    conf_path(c, name, path, sizeof path);
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return conf_fail(c, "create %s: %s", path, strerror(errno));
    close(fd);
    return 0;
}

/* Builds "/bin/sh -c 'SCRIPT'" with every @D of the script replaced by the
 * check's directory, which holds no quote. */
static void conf_shell(const struct conf *c, char *buf, size_t len, const char *script)
{
    char body[2048];
    size_t n = 0;

    for (const char *p = script; *p && n + 1 < sizeof body; p++) {
        if (p[0] == '@' && p[1] == 'D') {
            n += (size_t)snprintf(body + n, sizeof body - n, "%s", c->dir);
            p++;
        } else {
            body[n++] = *p;
        }
    }
    body[n < sizeof body ? n : sizeof body - 1] = '\0';
    snprintf(buf, len, "/bin/sh -c '%.900s'", body);
}

/* --- Checks --------------------------------------------------------------- */

static const char *const ID1 = "0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a10";
static const char *const ID2 = "1c0f6d4a-8e1f-4d74-8b58-3a2d6e4f9b21";
static const char *const ID3 = "2d1a7e5b-9f2a-4e85-9c69-4b3e7f5a0c32";

static int conf_check_field(struct conf *c, const json_t *fields, const char *name, const char *expect)
{
    json_error_t jerr;
    json_t *want = json_loads(expect, 0, &jerr), *schema = NULL;
    const char *key;
    json_t *value;
    size_t i;
    json_t *f;
    int rc = 0;

    json_array_foreach(fields, i, f) {
        if (json_is_string(json_object_get(f, "name")) &&
            strcmp(json_string_value(json_object_get(f, "name")), name) == 0)
            schema = json_object_get(f, "schema");
    }
    if (!schema || !json_is_object(schema)) {
        json_decref(want);
        return conf_fail(c, "the schema does not declare the common field %s", name);
    }
    json_object_foreach(want, key, value) {
        if (!json_equal(json_object_get(schema, key), value)) {
            char *got = json_dumps(json_object_get(schema, key), JSON_ENCODE_ANY | JSON_COMPACT);
            rc = conf_fail(c, "field %s: schema member %s is %s, expected %s", name, key,
                           got ? got : "missing", expect);
            free(got);
            break;
        }
    }
    if (rc == 0 && !json_is_string(json_object_get(schema, "title")))
        rc = conf_fail(c, "field %s has no title", name);
    json_decref(want);
    return rc;
}

/* Runs PROGRAM --describe and returns its output parsed, or NULL. */
static json_t *conf_describe(struct conf *c)
{
    char cmd[4096] = "", path[400];
    size_t n = 0;
    json_error_t jerr;
    json_t *out;
    int status;

    conf_path(c, "describe.json", path, sizeof path);
    for (char **p = c->program; *p; p++)
        n += (size_t)snprintf(cmd + n, n < sizeof cmd ? sizeof cmd - n : 0, "'%s' ", *p);
    snprintf(cmd + (n < sizeof cmd ? n : sizeof cmd - 1), n < sizeof cmd ? sizeof cmd - n : 1,
             "--describe > '%s'", path);
    status = system(cmd);
    if (status != 0) {
        conf_fail(c, "%s--describe exited with status %d", cmd, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return NULL;
    }
    out = json_load_file(path, 0, &jerr);
    if (!out)
        conf_fail(c, "--describe printed invalid JSON: %s", jerr.text);
    return out;
}

static int check_hello(struct conf *c)
{
    json_error_t jerr;
    json_t *schema, *described, *fields;
    int rc = -1;

    if (conf_start(c) < 0)
        return -1;
    if (!c->hello.executor_id[0] || !c->hello.type[0] || c->hello.capacity < 1)
        return conf_fail(c, "HELLO lacks an executor id, a type or a capacity");
    if (c->hello.inventory_len != 0)
        return conf_fail(c, "a fresh executor listed %zu runs in its inventory", c->hello.inventory_len);
    schema = json_loads(c->hello.schema, 0, &jerr);
    if (!schema || !json_is_object(schema)) {
        json_decref(schema);
        return conf_fail(c, "HELLO schema is not a JSON object: %s", jerr.text);
    }
    fields = json_object_get(schema, "fields");
    if (!json_is_string(json_object_get(schema, "type")) ||
        strcmp(json_string_value(json_object_get(schema, "type")), c->hello.type) != 0) {
        conf_fail(c, "schema type differs from HELLO type %s", c->hello.type);
        goto done;
    }
    if (!json_is_array(fields)) {
        conf_fail(c, "schema has no fields array");
        goto done;
    }
    if (conf_check_field(c, fields, "command",
                         "{\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}], \"default\": null}") < 0 ||
        conf_check_field(c, fields, "env",
                         "{\"type\": \"object\", \"additionalProperties\": "
                         "{\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}]}}") < 0 ||
        conf_check_field(c, fields, "labels",
                         "{\"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}}") < 0 ||
        conf_check_field(c, fields, "name",
                         "{\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}], \"default\": null}") < 0)
        goto done;
    described = conf_describe(c);
    if (!described)
        goto done;
    if (!json_equal(described, schema))
        conf_fail(c, "--describe prints another schema than HELLO carries");
    else
        rc = conf_stop(c);
    json_decref(described);
done:
    json_decref(schema);
    return rc;
}

/* Runs one job to its end and returns the EXITED (acknowledged). */
static int conf_run_job(struct conf *c, const char *id, const char *command, json_t *env,
                        struct drover_msg *exited, conf_log_fn on_log, void *arg)
{
    struct drover_msg m;

    if (conf_send_job(c, id, command, env) < 0 ||
        conf_expect(c, DROVER_MSG_STARTED, id, &m, on_log, arg) < 0)
        return -1;
    if (!m.u.started.identifier[0]) {
        drover_msg_clear(&m);
        return conf_fail(c, "STARTED carries an empty identifier");
    }
    drover_msg_clear(&m);
    if (conf_send_ack(c, id, DROVER_MSG_STARTED) < 0 ||
        conf_expect(c, DROVER_MSG_EXITED, id, exited, on_log, arg) < 0)
        return -1;
    return conf_send_ack(c, id, DROVER_MSG_EXITED);
}

static int check_exit_code(struct conf *c)
{
    struct drover_msg m;
    int rc;

    if (conf_start(c) < 0 || conf_run_job(c, ID1, "/bin/sh -c 'exit 3'", NULL, &m, NULL, NULL) < 0)
        return -1;
    if (m.u.exited.error[0])
        rc = conf_fail(c, "EXITED carries an error: %s", m.u.exited.error);
    else if (m.u.exited.code != 3)
        rc = conf_fail(c, "EXITED code is %lld, expected 3", (long long)m.u.exited.code);
    else
        rc = conf_stop(c);
    drover_msg_clear(&m);
    return rc;
}

struct conf_lines {
    int out_seen;
    int err_seen;
    const char *want_out;
    const char *want_err;
};

static void conf_collect(struct conf *c, const struct drover_log *log, void *arg)
{
    struct conf_lines *l = arg;

    if (log->stream == DROVER_STREAM_STDOUT && l->want_out && strcmp(log->line, l->want_out) == 0)
        l->out_seen = 1;
    if (log->stream == DROVER_STREAM_STDERR && l->want_err && strcmp(log->line, l->want_err) == 0)
        l->err_seen = 1;
}

static int check_logs(struct conf *c)
{
    struct conf_lines l = {.want_out = "conformance-stdout", .want_err = "conformance-stderr"};
    struct drover_msg m;

    if (conf_start(c) < 0 ||
        conf_run_job(c, ID1, "/bin/sh -c 'echo conformance-stdout; echo conformance-stderr >&2'", NULL, &m,
                     conf_collect, &l) < 0)
        return -1;
    drover_msg_clear(&m);
    if (!l.out_seen)
        return conf_fail(c, "no LOG line \"conformance-stdout\" on stream 1 before EXITED");
    if (!l.err_seen)
        return conf_fail(c, "no LOG line \"conformance-stderr\" on stream 2 before EXITED");
    return conf_stop(c);
}

static int check_env(struct conf *c)
{
    struct conf_lines l = {.want_out = "value=a b 'c' $HOME"};
    json_t *env = json_pack("{s:s, s:n}", "DROVER_CONFORMANCE_VALUE", "a b 'c' $HOME",
                            "DROVER_CONFORMANCE_UNSET");
    struct drover_msg m;

    if (conf_start(c) < 0 ||
        conf_run_job(c, ID1, "/bin/sh -c 'echo \"value=$DROVER_CONFORMANCE_VALUE\"'", env, &m,
                     conf_collect, &l) < 0)
        return -1;
    drover_msg_clear(&m);
    if (!l.out_seen)
        return conf_fail(c, "no LOG line \"%s\": env did not reach the command", l.want_out);
    return conf_stop(c);
}

static int check_start_failure(struct conf *c)
{
    const char *missing = "/nonexistent/drover-conformance-missing";
    struct drover_msg m;
    int rc;

    if (conf_start(c) < 0 || conf_send_job(c, ID1, "/nonexistent/drover-conformance-missing --flag", NULL) < 0 ||
        conf_expect(c, DROVER_MSG_EXITED, ID1, &m, NULL, NULL) < 0)
        return -1;
    if (!m.u.exited.error[0])
        rc = conf_fail(c, "EXITED for a missing command has no error (code %lld)", (long long)m.u.exited.code);
    else if (!strstr(m.u.exited.error, missing))
        rc = conf_fail(c, "EXITED error \"%s\" does not name %s", m.u.exited.error, missing);
    else
        rc = conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0 ? -1 : conf_stop(c);
    drover_msg_clear(&m);
    return rc;
}

/* Encodes [1, 4, id, config] by hand, since the codec refuses invalid JSON. */
static int conf_send_raw_job(struct conf *c, const char *id, const char *config)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint8(&pk, DROVER_MSG_JOB);
    msgpack_pack_str_with_body(&pk, id, strlen(id));
    msgpack_pack_str_with_body(&pk, config, strlen(config));
    rc = conf_send_raw(c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int conf_expect_failed_job(struct conf *c, const char *id, const char *what)
{
    struct drover_msg m;
    int rc = 0;

    if (conf_expect(c, DROVER_MSG_EXITED, id, &m, NULL, NULL) < 0)
        return -1;
    if (!m.u.exited.error[0])
        rc = conf_fail(c, "EXITED for %s carries no error", what);
    drover_msg_clear(&m);
    return rc < 0 ? rc : conf_send_ack(c, id, DROVER_MSG_EXITED);
}

static int check_bad_config(struct conf *c)
{
    if (conf_start(c) < 0)
        return -1;
    if (conf_send_raw_job(c, ID1, "{\"command\": ") < 0 || conf_expect_failed_job(c, ID1, "invalid JSON") < 0)
        return -1;
    if (conf_send_raw_job(c, ID2, "[\"not\", \"an object\"]") < 0 ||
        conf_expect_failed_job(c, ID2, "a JSON array") < 0)
        return -1;
    if (conf_send_job_text(c, ID3, "{\"command\": 42, \"env\": \"x\"}") < 0 ||
        conf_expect_failed_job(c, ID3, "a command of the wrong type") < 0)
        return -1;
    return conf_stop(c);
}

/* Sends a message of several frames. */
static int conf_send_multipart(struct conf *c)
{
    static const char part[] = "\x92\x01\x0a";

    if (zmq_send(c->router, c->rid, c->rid_len, ZMQ_SNDMORE) < 0 ||
        zmq_send(c->router, part, 3, ZMQ_SNDMORE) < 0 || zmq_send(c->router, part, 3, 0) < 0)
        return conf_fail(c, "send: %s", zmq_strerror(zmq_errno()));
    return 0;
}

static int check_malformed(struct conf *c)
{
    static const struct {
        const char *bytes;
        size_t len;
    } junk[] = {
        {"", 0},
        {"\xc1", 1},                                    /* never-used msgpack byte */
        {"\x91\x01", 2},                                /* [1] */
        {"\x94\x02\x0a\x00\x00", 5},                    /* version 2 PING */
        {"\x92\x01\x63", 3},                            /* unknown type 99 */
        {"\x93\x01\x0b\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 12}, /* PONG with a float */
        {"\x94\x01\x04\xa3" "abc" "\xa2{}", 9},          /* JOB with a bad flow run id */
        {"\x92\x01\x0a\x00", 4},                        /* trailing byte */
        {"\xdd\xff\xff\xff\xff", 5},                    /* array claiming 4 G elements */
        /* JOB of run ID3 whose config claims 4 G elements */
        {"\x94\x01\x04\xd9\x24" "2d1a7e5b-9f2a-4e85-9c69-4b3e7f5a0c32" "\xdd\xff\xff\xff\xff", 46},
    };
    struct drover_msg m;
    char *big;
    unsigned long pings;
    struct drover_msg hello = {.type = DROVER_MSG_HELLO};

    if (conf_start(c) < 0)
        return -1;
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        if (conf_send_raw(c, junk[i].bytes, junk[i].len) < 0)
            return -1;
    big = calloc(1, DROVER_MAX_FRAME + 1);
    if (!big)
        return conf_fail(c, "out of memory");
    memset(big, 0x90, DROVER_MAX_FRAME + 1);
    conf_send_raw(c, big, DROVER_MAX_FRAME + 1);
    free(big);
    if (conf_send_multipart(c) < 0 || conf_send_kill(c, ID2, 0) < 0 || conf_send_ack(c, ID2, DROVER_MSG_EXITED) < 0)
        return -1;
    /* A message in the wrong direction. */
    hello.u.hello.executor_id = "x";
    hello.u.hello.type = "x";
    hello.u.hello.capacity = 1;
    hello.u.hello.schema = "{}";
    hello.u.hello.software = "";
    hello.u.hello.hostname = "";
    if (conf_send(c, &hello) < 0)
        return -1;

    /* The executor must go on pinging and running jobs. */
    pings = c->pings;
    for (int64_t until = conf_now() + CONF_WAIT_MS; c->pings < pings + 3;) {
        int rc = conf_next(c, &m, 100);

        if (rc < 0)
            return -1;
        if (rc > 0)
            drover_msg_clear(&m);
        if (conf_now() > until)
            return conf_fail(c, "the executor stopped pinging after malformed messages");
    }
    if (!conf_running(c))
        return conf_fail(c, "the executor exited after malformed messages");
    if (conf_run_job(c, ID1, "/bin/sh -c 'exit 0'", NULL, &m, NULL, NULL) < 0)
        return -1;
    drover_msg_clear(&m);
    return conf_stop(c);
}

static int conf_count_lines(struct conf *c, const char *name)
{
    char path[400], line[256];
    int n = 0;
    FILE *f;

    conf_path(c, name, path, sizeof path);
    f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        n++;
    fclose(f);
    return n;
}

static int check_duplicate_job(struct conf *c)
{
    char cmd[1024], ident[DROVER_MAX_IDENTIFIER + 1];
    struct drover_msg m;
    int rc = 0, lines;

    conf_shell(c, cmd, sizeof cmd, "echo run >> @D/starts; while [ ! -e @D/go ] && [ -d @D ]; do sleep 0.1; done; exit 5");
    if (conf_start(c) < 0 || conf_send_job(c, ID1, cmd, NULL) < 0 ||
        conf_expect(c, DROVER_MSG_STARTED, ID1, &m, NULL, NULL) < 0)
        return -1;
    snprintf(ident, sizeof ident, "%s", m.u.started.identifier);
    drover_msg_clear(&m);

    /* The same JOB again while the run is alive: STARTED again, same identifier. */
    if (conf_send_job(c, ID1, cmd, NULL) < 0 || conf_expect(c, DROVER_MSG_STARTED, ID1, &m, NULL, NULL) < 0)
        return -1;
    if (strcmp(m.u.started.identifier, ident) != 0)
        rc = conf_fail(c, "a duplicate JOB got identifier %s, the first got %s", m.u.started.identifier, ident);
    drover_msg_clear(&m);
    if (rc < 0 || conf_send_ack(c, ID1, DROVER_MSG_STARTED) < 0 || conf_touch(c, "go") < 0 ||
        conf_expect(c, DROVER_MSG_EXITED, ID1, &m, NULL, NULL) < 0)
        return -1;
    drover_msg_clear(&m);

    /* And after its end, before the ACK: EXITED again. */
    if (conf_send_job(c, ID1, cmd, NULL) < 0 || conf_expect(c, DROVER_MSG_EXITED, ID1, &m, NULL, NULL) < 0)
        return -1;
    if (m.u.exited.code != 5)
        rc = conf_fail(c, "the repeated EXITED has code %lld, expected 5", (long long)m.u.exited.code);
    drover_msg_clear(&m);
    if (rc < 0 || conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0)
        return -1;
    lines = conf_count_lines(c, "starts");
    if (lines != 1)
        return conf_fail(c, "the command ran %d times, expected once", lines);
    return conf_stop(c);
}

struct conf_ready {
    int seen;
};

static void conf_on_ready(struct conf *c, const struct drover_log *log, void *arg)
{
    if (strcmp(log->line, "ready") == 0)
        ((struct conf_ready *)arg)->seen = 1;
}

/* Starts a job and waits for its "ready" line. */
static int conf_start_ready(struct conf *c, const char *id, const char *cmd)
{
    struct conf_ready ready = {0};
    struct drover_msg m;

    if (conf_send_job(c, id, cmd, NULL) < 0 || conf_expect(c, DROVER_MSG_STARTED, id, &m, NULL, NULL) < 0)
        return -1;
    drover_msg_clear(&m);
    if (conf_send_ack(c, id, DROVER_MSG_STARTED) < 0)
        return -1;
    while (!ready.seen) {
        if (conf_expect(c, DROVER_MSG_LOG, id, &m, conf_on_ready, &ready) < 0)
            return -1;
        drover_msg_clear(&m);
    }
    return 0;
}

static int check_kill_term(struct conf *c)
{
    char cmd[1024];
    struct drover_msg m;
    int rc;

    conf_shell(c, cmd, sizeof cmd, "echo ready; while [ -d @D ]; do sleep 1; done");
    if (conf_start(c) < 0 || conf_start_ready(c, ID1, cmd) < 0 ||
        conf_send_kill(c, ID1, 60) < 0 || conf_expect(c, DROVER_MSG_EXITED, ID1, &m, NULL, NULL) < 0)
        return -1;
    if (m.u.exited.code != -SIGTERM && m.u.exited.code != 128 + SIGTERM)
        rc = conf_fail(c, "EXITED code after KILL is %lld, expected %d (SIGTERM)", (long long)m.u.exited.code,
                       -SIGTERM);
    else
        rc = conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0 ? -1 : conf_stop(c);
    drover_msg_clear(&m);
    return rc;
}

static int check_kill_grace(struct conf *c)
{
    char cmd[1024];
    struct drover_msg m;
    int rc;

    conf_shell(c, cmd, sizeof cmd, "trap \"\" TERM; echo ready; while [ -d @D ]; do sleep 1; done");
    if (conf_start(c) < 0 || conf_start_ready(c, ID1, cmd) < 0 ||
        conf_send_kill(c, ID1, 1) < 0 || conf_expect(c, DROVER_MSG_EXITED, ID1, &m, NULL, NULL) < 0)
        return -1;
    if (m.u.exited.code != -SIGKILL && m.u.exited.code != 128 + SIGKILL)
        rc = conf_fail(c, "EXITED code of a run ignoring SIGTERM is %lld, expected %d (SIGKILL after the grace "
                       "period)", (long long)m.u.exited.code, -SIGKILL);
    else
        rc = conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0 ? -1 : conf_stop(c);
    drover_msg_clear(&m);
    return rc;
}

static int conf_inventory_has(struct conf *c, const char *id, const char *identifier, int exited)
{
    for (size_t i = 0; i < c->hello.inventory_len; i++) {
        const struct drover_run_entry *e = &c->hello.inventory[i];

        if (strcmp(e->flow_run_id, id) != 0)
            continue;
        if (identifier && strcmp(e->identifier, identifier) != 0)
            return conf_fail(c, "inventory lists %s with identifier %s, expected %s", id, e->identifier,
                             identifier);
        if (exited >= 0 && e->exited != exited)
            return conf_fail(c, "inventory lists %s as %s", id, e->exited ? "exited" : "running");
        return 0;
    }
    return conf_fail(c, "the HELLO inventory does not list run %s", id);
}

static int check_supervisor_restart(struct conf *c)
{
    char cmd[1024], ident[DROVER_MAX_IDENTIFIER + 1];
    struct drover_msg m;
    int rc;

    conf_shell(c, cmd, sizeof cmd, "while [ ! -e @D/go ] && [ -d @D ]; do sleep 0.1; done; exit 7");
    if (conf_start(c) < 0 || conf_send_job(c, ID1, cmd, NULL) < 0 ||
        conf_expect(c, DROVER_MSG_STARTED, ID1, &m, NULL, NULL) < 0)
        return -1;
    snprintf(ident, sizeof ident, "%s", m.u.started.identifier);
    drover_msg_clear(&m);
    if (conf_send_ack(c, ID1, DROVER_MSG_STARTED) < 0)
        return -1;

    /* The supervisor goes away and comes back on the same endpoint (libzmq
     * 4.3 leaves the old socket file, and the new bind replaces it). */
    conf_unbind(c);
    c->goodbye_unknown = 1;
    if (conf_bind(c) < 0 || conf_expect(c, DROVER_MSG_HELLO, NULL, &m, NULL, NULL) < 0)
        return -1;
    if (conf_inventory_has(c, ID1, ident, 0) < 0 || conf_send_welcome(c) < 0 || conf_touch(c, "go") < 0 ||
        conf_expect(c, DROVER_MSG_EXITED, ID1, &m, NULL, NULL) < 0)
        return -1;
    if (m.u.exited.code != 7)
        rc = conf_fail(c, "EXITED code after the supervisor restart is %lld, expected 7", (long long)m.u.exited.code);
    else
        rc = conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0 ? -1 : conf_stop(c);
    drover_msg_clear(&m);
    return rc;
}

/* Waits for the next message of type about id and returns when it came. */
static int conf_expect_at(struct conf *c, int type, const char *id, int64_t *at)
{
    struct drover_msg m;

    if (conf_expect(c, type, id, &m, NULL, NULL) < 0)
        return -1;
    drover_msg_clear(&m);
    *at = conf_now();
    return 0;
}

static int check_ack_loss(struct conf *c)
{
    char cmd[1024];
    int64_t t1, t2, t3, t4, gap, window, until;
    struct drover_msg m;

    conf_shell(c, cmd, sizeof cmd, "while [ ! -e @D/go ] && [ -d @D ]; do sleep 0.1; done");
    if (conf_start(c) < 0 || conf_send_job(c, ID1, cmd, NULL) < 0 ||
        conf_expect_at(c, DROVER_MSG_STARTED, ID1, &t1) < 0 ||
        conf_expect_at(c, DROVER_MSG_STARTED, ID1, &t2) < 0)
        return -1;
    if (conf_send_ack(c, ID1, DROVER_MSG_STARTED) < 0 || conf_touch(c, "go") < 0 ||
        conf_expect_at(c, DROVER_MSG_EXITED, ID1, &t3) < 0 || conf_expect_at(c, DROVER_MSG_EXITED, ID1, &t4) < 0)
        return -1;
    if (conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0)
        return -1;

    /* Messages are handled in order, so once the answer to this JOB arrives
     * the executor has handled the ACK, and any later STARTED or EXITED of
     * ID1 is a resend that should have stopped. */
    if (conf_send_raw_job(c, ID2, "[]") < 0 || conf_expect_failed_job(c, ID2, "a JSON array") < 0)
        return -1;
    /* Watch for three of the longest resend intervals seen, within 2 to 20 s. */
    gap = t2 - t1 > t4 - t3 ? t2 - t1 : t4 - t3;
    window = 3 * gap;
    if (window < 2000)
        window = 2000;
    if (window > 20000)
        window = 20000;
    until = conf_now() + window;
    for (;;) {
        int64_t left = until - conf_now();
        int rc = left > 0 ? conf_next(c, &m, (int)left) : 0;
        int resent;

        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        resent = (m.type == DROVER_MSG_STARTED && strcmp(m.u.started.flow_run_id, ID1) == 0) ||
                 (m.type == DROVER_MSG_EXITED && strcmp(m.u.exited.flow_run_id, ID1) == 0);
        drover_msg_clear(&m);
        if (resent)
            return conf_fail(c, "STARTED or EXITED was resent after its ACK");
    }
    return conf_stop(c);
}

static int check_goodbye(struct conf *c)
{
    struct drover_msg m;

    if (conf_start(c) < 0)
        return -1;
    /* A PING shows that WELCOME was handled: before it, an executor must not
     * send GOODBYE. */
    for (int64_t until = conf_now() + CONF_WAIT_MS; c->pings == 0;) {
        int rc = conf_next(c, &m, 100);

        if (rc < 0)
            return -1;
        if (rc > 0)
            drover_msg_clear(&m);
        if (conf_now() > until)
            return conf_fail(c, "no PING arrived after WELCOME");
    }
    kill(c->pid, SIGTERM);
    if (conf_expect(c, DROVER_MSG_GOODBYE, NULL, &m, NULL, NULL) < 0)
        return -1;
    drover_msg_clear(&m);
    /* No second signal: an executor may take a second SIGTERM as "stop now". */
    if (conf_reap(c) < 0)
        return conf_fail(c, "the executor did not exit within %d s of SIGTERM", CONF_WAIT_MS / 1000);
    if (!WIFEXITED(c->exit_status) || WEXITSTATUS(c->exit_status) != 0)
        return conf_fail(c, "the executor ended with %s %d after SIGTERM (expected exit status 0)",
                         WIFEXITED(c->exit_status) ? "exit status" : "signal",
                         WIFEXITED(c->exit_status) ? WEXITSTATUS(c->exit_status) : WTERMSIG(c->exit_status));
    return 0;
}

static int check_reject(struct conf *c)
{
    struct drover_msg m = {.type = DROVER_MSG_REJECT};

    if (conf_spawn(c) < 0 || conf_expect(c, DROVER_MSG_HELLO, NULL, &m, NULL, NULL) < 0)
        return -1;
    m.type = DROVER_MSG_REJECT;
    m.u.reject.reason = "the conformance suite rejects this executor";
    if (conf_send(c, &m) < 0)
        return -1;
    if (conf_reap(c) < 0) {
        kill(c->pid, SIGKILL);
        conf_reap(c);
        return conf_fail(c, "the executor kept running after REJECT");
    }
    if (WIFEXITED(c->exit_status) && WEXITSTATUS(c->exit_status) == 0)
        return conf_fail(c, "the executor exited with status 0 after REJECT (expected non-zero)");
    if (WIFSIGNALED(c->exit_status))
        return conf_fail(c, "the executor was killed by signal %d after REJECT", WTERMSIG(c->exit_status));
    return 0;
}

/* Executor restart: runs survive it, a live one is listed in the new
 * HELLO, and one that ended while the executor was down is reported. */
static int check_executor_restart(struct conf *c)
{
    static char *const id_args[] = {"--id", "conformance-restart", NULL};
    char cmd1[1024], cmd2[1024], path[400];
    struct drover_msg m;
    int rc = 0;

    c->extra_args = (char **)id_args;
    conf_shell(c, cmd1, sizeof cmd1, "while [ ! -e @D/go1 ] && [ -d @D ]; do sleep 0.1; done; exit 7");
    conf_shell(c, cmd2, sizeof cmd2, "while [ ! -e @D/go2 ] && [ -d @D ]; do sleep 0.1; done; touch @D/done2; exit 9");
    if (conf_start(c) < 0 || conf_send_job(c, ID1, cmd1, NULL) < 0 ||
        conf_expect(c, DROVER_MSG_STARTED, ID1, &m, NULL, NULL) < 0)
        return -1;
    drover_msg_clear(&m);
    if (conf_send_ack(c, ID1, DROVER_MSG_STARTED) < 0 || conf_send_job(c, ID2, cmd2, NULL) < 0 ||
        conf_expect(c, DROVER_MSG_STARTED, ID2, &m, NULL, NULL) < 0)
        return -1;
    drover_msg_clear(&m);
    if (conf_send_ack(c, ID2, DROVER_MSG_STARTED) < 0)
        return -1;

    if (conf_stop(c) < 0)
        return -1;
    /* Run 2 ends while no executor is there. */
    if (conf_touch(c, "go2") < 0)
        return -1;
    conf_path(c, "done2", path, sizeof path);
    for (int64_t until = conf_now() + CONF_WAIT_MS; access(path, F_OK) != 0; usleep(50000))
        if (conf_now() > until)
            return conf_fail(c, "run 2 did not end after the executor stopped");

    if (conf_spawn(c) < 0 || conf_expect(c, DROVER_MSG_HELLO, NULL, &m, NULL, NULL) < 0)
        return -1;
    if (conf_inventory_has(c, ID1, NULL, 0) < 0 || conf_inventory_has(c, ID2, NULL, -1) < 0 ||
        conf_send_welcome(c) < 0)
        return -1;
    if (conf_expect(c, DROVER_MSG_EXITED, ID2, &m, NULL, NULL) < 0)
        return -1;
    if (m.u.exited.code != 9 || m.u.exited.error[0])
        rc = conf_fail(c, "run 2 ended while the executor was down: EXITED code %lld error \"%s\", expected 9",
                       (long long)m.u.exited.code, m.u.exited.error);
    drover_msg_clear(&m);
    if (rc < 0 || conf_send_ack(c, ID2, DROVER_MSG_EXITED) < 0 || conf_touch(c, "go1") < 0 ||
        conf_expect(c, DROVER_MSG_EXITED, ID1, &m, NULL, NULL) < 0)
        return -1;
    if (m.u.exited.code != 7 || m.u.exited.error[0])
        rc = conf_fail(c, "re-adopted run 1: EXITED code %lld error \"%s\", expected 7",
                       (long long)m.u.exited.code, m.u.exited.error);
    drover_msg_clear(&m);
    if (rc < 0 || conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0)
        return -1;
    return conf_stop(c);
}

struct conf_pieces {
    char  *text;
    size_t len;
    size_t max_piece;
    size_t pieces;
};

static void conf_collect_pieces(struct conf *c, const struct drover_log *log, void *arg)
{
    struct conf_pieces *p = arg;
    size_t n = strlen(log->line);
    char *grown;

    if (log->stream != DROVER_STREAM_STDOUT || p->len + n > 4 * 1024 * 1024)
        return;
    grown = realloc(p->text, p->len + n + 1);
    if (!grown)
        return;
    p->text = grown;
    memcpy(p->text + p->len, log->line, n + 1);
    p->len += n;
    p->pieces++;
    if (n > p->max_piece)
        p->max_piece = n;
}

static int check_long_line(struct conf *c)
{
    struct conf_pieces p = {0};
    struct drover_msg m;
    size_t want = 150000;
    int rc = 0;

    if (conf_start(c) < 0 ||
        conf_run_job(c, ID1, "/bin/sh -c 'head -c 150000 /dev/zero | tr \"\\000\" a; echo'", NULL, &m,
                     conf_collect_pieces, &p) < 0) {
        free(p.text);
        return -1;
    }
    drover_msg_clear(&m);
    if (p.len != want)
        rc = conf_fail(c, "a line of %zu bytes arrived as %zu bytes in %zu LOG messages", want, p.len, p.pieces);
    else if (p.max_piece > DROVER_MAX_LOG_LINE)
        rc = conf_fail(c, "a LOG line of %zu bytes exceeds the limit", p.max_piece);
    else if (strspn(p.text, "a") != want)
        rc = conf_fail(c, "the pieces of the long line hold other characters than the output");
    free(p.text);
    return rc < 0 ? rc : conf_stop(c);
}

static void conf_count_lines_cb(struct conf *c, const struct drover_log *log, void *arg)
{
    (*(long *)arg)++;
}

/* A flood of output: the executor keeps up or drops lines, but the run's
 * EXITED arrives and the executor stays healthy. */
static int check_busy_output(struct conf *c)
{
    struct drover_msg m;
    long lines = 0;
    int rc = 0;

    if (conf_start(c) < 0 ||
        conf_run_job(c, ID1, "/bin/sh -c 'seq 1 200000; exit 2'", NULL, &m, conf_count_lines_cb, &lines) < 0)
        return -1;
    if (m.u.exited.code != 2)
        rc = conf_fail(c, "EXITED code after a flood of output is %lld, expected 2", (long long)m.u.exited.code);
    drover_msg_clear(&m);
    if (rc == 0 && lines == 0)
        rc = conf_fail(c, "none of the 200000 lines arrived");
    if (rc == 0 && conf_run_job(c, ID2, "/bin/sh -c 'exit 0'", NULL, &m, NULL, NULL) == 0)
        drover_msg_clear(&m);
    return c->reason[0] ? -1 : conf_stop(c);
}

static void conf_find_replaced(struct conf *c, const struct drover_log *log, void *arg)
{
    if (strcmp(log->line, "a\xef\xbf\xbd" "b") == 0)
        *(int *)arg = 1;
}

static int check_invalid_utf8(struct conf *c)
{
    struct drover_msg m;
    int seen = 0;

    if (conf_start(c) < 0 ||
        conf_run_job(c, ID1, "/bin/sh -c 'printf \"a\\377b\\n\"'", NULL, &m, conf_find_replaced, &seen) < 0)
        return -1;
    drover_msg_clear(&m);
    if (!seen)
        return conf_fail(c, "the output a<0xff>b did not arrive as the LOG line a<U+FFFD>b");
    return conf_stop(c);
}

/* --- Checks of drover-executor-process's own fields ---------------------- */

struct conf_line {
    char line[4096];
    int  count;
};

static void conf_first_line(struct conf *c, const struct drover_log *log, void *arg)
{
    struct conf_line *l = arg;

    if (log->stream == DROVER_STREAM_STDOUT && l->count++ == 0)
        snprintf(l->line, sizeof l->line, "%s", log->line);
}

/* Runs one job with config and returns its first stdout line and EXITED. */
static int conf_run_config(struct conf *c, const char *id, json_t *config, struct conf_line *l,
                           struct drover_msg *exited)
{
    struct drover_msg m;

    if (conf_send_job_json(c, id, config) < 0 || conf_expect(c, DROVER_MSG_STARTED, id, &m, conf_first_line, l) < 0)
        return -1;
    drover_msg_clear(&m);
    if (conf_send_ack(c, id, DROVER_MSG_STARTED) < 0 ||
        conf_expect(c, DROVER_MSG_EXITED, id, exited, conf_first_line, l) < 0)
        return -1;
    return conf_send_ack(c, id, DROVER_MSG_EXITED);
}

static int check_process_working_dir(struct conf *c)
{
    char wd[400], real[PATH_MAX];
    struct conf_line l = {.count = 0};
    struct drover_msg m;

    conf_path(c, "work dir", wd, sizeof wd);
    if (mkdir(wd, 0700) < 0 || !realpath(wd, real))
        return conf_fail(c, "mkdir %s: %s", wd, strerror(errno));
    if (conf_start(c) < 0 ||
        conf_run_config(c, ID1, json_pack("{s:s, s:s}", "command", "/bin/sh -c pwd", "working_dir", wd), &l, &m) < 0)
        return -1;
    drover_msg_clear(&m);
    if (strcmp(l.line, real) != 0)
        return conf_fail(c, "the command ran in \"%s\", expected working_dir %s", l.line, real);
    return conf_stop(c);
}

static int check_process_temp_dir(struct conf *c)
{
    struct conf_line l = {.count = 0};
    struct drover_msg m;

    if (conf_start(c) < 0 ||
        conf_run_config(c, ID1, json_pack("{s:s, s:n}", "command", "/bin/sh -c 'pwd; echo data > file'",
                                          "working_dir"), &l, &m) < 0)
        return -1;
    drover_msg_clear(&m);
    if (l.line[0] != '/')
        return conf_fail(c, "no working directory printed (got \"%s\")", l.line);
    if (access(l.line, F_OK) == 0)
        return conf_fail(c, "the temporary working directory %s is still there after EXITED", l.line);
    return conf_stop(c);
}

static int check_process_stream_output(struct conf *c)
{
    struct conf_line l = {.count = 0};
    struct drover_msg m;

    if (conf_start(c) < 0 ||
        conf_run_config(c, ID1, json_pack("{s:s, s:b}", "command", "/bin/sh -c 'echo hidden'", "stream_output", 0),
                        &l, &m) < 0)
        return -1;
    drover_msg_clear(&m);
    if (l.count != 0)
        return conf_fail(c, "stream_output false, yet the line \"%s\" arrived", l.line);
    return conf_stop(c);
}

static int check_process_bad_working_dir(struct conf *c)
{
    char wd[400];
    struct drover_msg m;
    int rc = 0;

    conf_path(c, "missing-dir", wd, sizeof wd);
    if (conf_start(c) < 0 ||
        conf_send_job_json(c, ID1, json_pack("{s:s, s:s}", "command", "/bin/true", "working_dir", wd)) < 0 ||
        conf_expect(c, DROVER_MSG_EXITED, ID1, &m, NULL, NULL) < 0)
        return -1;
    if (!strstr(m.u.exited.error, wd))
        rc = conf_fail(c, "EXITED error \"%s\" does not name the directory %s", m.u.exited.error, wd);
    drover_msg_clear(&m);
    return rc < 0 || conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0 ? -1 : conf_stop(c);
}

static int check_process_identifier(struct conf *c)
{
    char host[256] = "", want[600];
    struct conf_line l = {.count = 0};
    struct drover_msg m;
    int rc = 0;

    gethostname(host, sizeof host - 1);
    if (conf_start(c) < 0 ||
        conf_send_job_json(c, ID1, json_pack("{s:s}", "command", "/bin/sh -c 'echo $$'")) < 0 ||
        conf_expect(c, DROVER_MSG_STARTED, ID1, &m, conf_first_line, &l) < 0)
        return -1;
    snprintf(want, sizeof want, "%s:", host);
    if (strncmp(m.u.started.identifier, want, strlen(want)) != 0)
        rc = conf_fail(c, "identifier %s does not start with %s", m.u.started.identifier, want);
    snprintf(want + strlen(want), sizeof want - strlen(want), "%s", m.u.started.identifier + strlen(want));
    drover_msg_clear(&m);
    if (rc < 0 || conf_send_ack(c, ID1, DROVER_MSG_STARTED) < 0 ||
        conf_expect(c, DROVER_MSG_EXITED, ID1, &m, conf_first_line, &l) < 0)
        return -1;
    drover_msg_clear(&m);
    if (strcmp(want + strlen(host) + 1, l.line) != 0)
        return conf_fail(c, "identifier names pid %s, the command's pid is %s", want + strlen(host) + 1, l.line);
    return conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0 ? -1 : conf_stop(c);
}

/* The executor's environment is inherited, a config value overrides it, and
 * a null leaves the inherited value, as with Prefect's process worker. */
static int check_process_env(struct conf *c)
{
    struct conf_line l = {.count = 0};
    struct drover_msg m;

    setenv("DROVER_CONFORMANCE_INHERITED", "inherited", 1);
    setenv("DROVER_CONFORMANCE_OVERRIDDEN", "inherited", 1);
    if (conf_start(c) < 0 ||
        conf_run_config(c, ID1, json_pack("{s:s, s:{s:n, s:s}}", "command",
                                          "/bin/sh -c 'echo \"$DROVER_CONFORMANCE_INHERITED/$DROVER_CONFORMANCE_OVERRIDDEN\"'",
                                          "env", "DROVER_CONFORMANCE_INHERITED", "DROVER_CONFORMANCE_OVERRIDDEN",
                                          "config"), &l, &m) < 0)
        return -1;
    drover_msg_clear(&m);
    unsetenv("DROVER_CONFORMANCE_INHERITED");
    unsetenv("DROVER_CONFORMANCE_OVERRIDDEN");
    if (strcmp(l.line, "inherited/config") != 0)
        return conf_fail(c, "environment seen by the command is \"%s\", expected inherited/config", l.line);
    return conf_stop(c);
}

/* CURVE over TCP on loopback: the executor reads its secret key from a file
 * written like 'drover keygen' does and takes the server key from another
 * file, and a job runs through the encrypted connection. */
static int check_curve(struct conf *c)
{
    char server_public[41], server_secret[41], exec_public[41], exec_secret[41];
    char key_file[400], server_file[400], endpoint[256];
    static char *args[8];
    size_t len = sizeof endpoint;
    int as_server = 1, linger = 0;
    struct drover_msg m;
    FILE *f;

    if (!zmq_has("curve"))
        return conf_fail(c, "this libzmq has no CURVE support");
    if (zmq_curve_keypair(server_public, server_secret) < 0 || zmq_curve_keypair(exec_public, exec_secret) < 0)
        return conf_fail(c, "zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
    conf_path(c, "executor.key", key_file, sizeof key_file);
    conf_path(c, "server.pub", server_file, sizeof server_file);
    if (!(f = fopen(key_file, "w")))
        return conf_fail(c, "create %s: %s", key_file, strerror(errno));
    fprintf(f, "# CURVE secret key; public key %s\n%s\n", exec_public, exec_secret);
    fclose(f);
    chmod(key_file, 0600);
    if (!(f = fopen(server_file, "w")))
        return conf_fail(c, "create %s: %s", server_file, strerror(errno));
    fprintf(f, "%s\n", server_public);
    fclose(f);

    conf_unbind(c);
    c->router = zmq_socket(c->zctx, ZMQ_ROUTER);
    zmq_setsockopt(c->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->router, ZMQ_CURVE_SERVER, &as_server, sizeof as_server);
    zmq_setsockopt(c->router, ZMQ_CURVE_SECRETKEY, server_secret, 41);
    if (zmq_bind(c->router, "tcp://127.0.0.1:*") < 0 ||
        zmq_getsockopt(c->router, ZMQ_LAST_ENDPOINT, endpoint, &len) < 0)
        return conf_fail(c, "bind tcp://127.0.0.1:*: %s", zmq_strerror(zmq_errno()));
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    args[0] = "--curve-server-key";
    args[1] = server_file;
    args[2] = "--curve-secret-key-file";
    args[3] = key_file;
    args[4] = NULL;
    c->extra_args = args;

    if (conf_start(c) < 0 || conf_run_job(c, ID1, "/bin/sh -c 'exit 4'", NULL, &m, NULL, NULL) < 0)
        return -1;
    if (m.u.exited.code != 4) {
        drover_msg_clear(&m);
        return conf_fail(c, "EXITED code over CURVE is %lld, expected 4", (long long)m.u.exited.code);
    }
    drover_msg_clear(&m);
    return conf_stop(c);
}

static int conf_write(struct conf *c, const char *dir, const char *name, const char *text)
{
    char path[600];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(f = fopen(path, "w")))
        return conf_fail(c, "create %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
    return 0;
}

/* Run records left by an earlier drover-executor-process with the same id:
 * a run it stopped during start whose command started and ended, a started
 * run whose monitor is gone without an exit status, and a damaged record. */
static int check_process_recover_records(struct conf *c)
{
    static char *const id_args[] = {"--id", "conformance-records", NULL};
    char dir[400], host[200] = "", ident[300], rec[600];
    struct drover_msg m;
    int rc = 0;

    gethostname(host, sizeof host - 1);
    snprintf(dir, sizeof dir, "%s/conformance-records", c->state_dir);
    if (mkdir(c->state_dir, 0700) < 0 || mkdir(dir, 0700) < 0)
        return conf_fail(c, "mkdir %s: %s", dir, strerror(errno));
    snprintf(rec, sizeof rec, "{\"flow_run_id\": \"%s\", \"identifier\": \"\", \"state\": \"starting\", "
             "\"code\": 0, \"started_acked\": false, \"error\": null}", ID1);
    if (conf_write(c, dir, "0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a10.json", rec) < 0 ||
        conf_write(c, dir, "0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a10.pid", "4194000 4194001\n") < 0 ||
        conf_write(c, dir, "0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a10.exit", "6\n") < 0)
        return -1;
    snprintf(rec, sizeof rec, "{\"flow_run_id\": \"%s\", \"identifier\": \"%s:4194002\", \"state\": \"started\", "
             "\"code\": 0, \"started_acked\": true, \"error\": null}", ID2, host);
    if (conf_write(c, dir, "1c0f6d4a-8e1f-4d74-8b58-3a2d6e4f9b21.json", rec) < 0 ||
        conf_write(c, dir, "2d1a7e5b-9f2a-4e85-9c69-4b3e7f5a0c32.json", "{\"flow_run_id\": ") < 0)
        return -1;

    c->extra_args = (char **)id_args;
    if (conf_spawn(c) < 0 || conf_expect(c, DROVER_MSG_HELLO, NULL, &m, NULL, NULL) < 0)
        return -1;
    snprintf(ident, sizeof ident, "%s:4194000", host);
    if (conf_inventory_has(c, ID1, ident, 1) < 0 || conf_inventory_has(c, ID2, NULL, 1) < 0)
        return -1;
    if (c->hello.inventory_len != 2)
        return conf_fail(c, "the inventory lists %zu runs, expected 2 (the damaged record is ignored)",
                         c->hello.inventory_len);
    if (conf_send_welcome(c) < 0 || conf_expect(c, DROVER_MSG_EXITED, ID1, &m, NULL, NULL) < 0)
        return -1;
    if (m.u.exited.code != 6 || m.u.exited.error[0])
        rc = conf_fail(c, "run 1: EXITED code %lld error \"%s\", expected code 6", (long long)m.u.exited.code,
                       m.u.exited.error);
    drover_msg_clear(&m);
    if (rc < 0 || conf_send_ack(c, ID1, DROVER_MSG_EXITED) < 0 ||
        conf_expect(c, DROVER_MSG_EXITED, ID2, &m, NULL, NULL) < 0)
        return -1;
    if (!m.u.exited.error[0])
        rc = conf_fail(c, "run 2, whose monitor is gone, got EXITED without an error");
    drover_msg_clear(&m);
    if (rc < 0 || conf_send_ack(c, ID2, DROVER_MSG_EXITED) < 0)
        return -1;
    return conf_stop(c);
}

static const struct {
    const char *name;
    int (*run)(struct conf *c);
    int by_default;
} conf_checks[] = {
    {"hello", check_hello, 1},
    {"exit_code", check_exit_code, 1},
    {"logs", check_logs, 1},
    {"env", check_env, 1},
    {"start_failure", check_start_failure, 1},
    {"bad_config", check_bad_config, 1},
    {"malformed", check_malformed, 1},
    {"duplicate_job", check_duplicate_job, 1},
    {"kill_term", check_kill_term, 1},
    {"kill_grace", check_kill_grace, 1},
    {"supervisor_restart", check_supervisor_restart, 1},
    {"ack_loss", check_ack_loss, 1},
    {"goodbye", check_goodbye, 1},
    {"reject", check_reject, 1},
    {"long_line", check_long_line, 1},
    {"invalid_utf8", check_invalid_utf8, 1},
    {"busy_output", check_busy_output, 1},
    {"executor_restart", check_executor_restart, 0},
    {"curve", check_curve, 0},
    {"process_working_dir", check_process_working_dir, 0},
    {"process_temp_dir", check_process_temp_dir, 0},
    {"process_stream_output", check_process_stream_output, 0},
    {"process_bad_working_dir", check_process_bad_working_dir, 0},
    {"process_identifier", check_process_identifier, 0},
    {"process_env", check_process_env, 0},
    {"process_recover_records", check_process_recover_records, 0},
};

#define CONF_N_CHECKS (sizeof conf_checks / sizeof conf_checks[0])

static void conf_print_log_tail(const char *path)
{
    char line[1024];
    long n = 0, skip;
    FILE *f = fopen(path, "r");

    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        n++;
    skip = n > 40 ? n - 40 : 0;
    rewind(f);
    fprintf(stderr, "  --- last lines of the executor's stderr ---\n");
    for (long i = 0; fgets(line, sizeof line, f); i++)
        if (i >= skip)
            fprintf(stderr, "  | %s", line);
    fclose(f);
}

static int conf_remove_tree(const char *dir)
{
    char cmd[600];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static int conf_run_check(char **program, size_t i)
{
    struct conf c = {.program = program, .answer_pings = 1, .exit_status = -1};
    const char *tmp = getenv("TMPDIR");
    int rc;

    snprintf(c.dir, sizeof c.dir, "%s/drover-conformance-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (!mkdtemp(c.dir)) {
        printf("FAIL %s: mkdtemp: %s\n", conf_checks[i].name, strerror(errno));
        return -1;
    }
    snprintf(c.endpoint, sizeof c.endpoint, "ipc://%s/supervisor.sock", c.dir);
    snprintf(c.state_dir, sizeof c.state_dir, "%s/state", c.dir);
    snprintf(c.log_path, sizeof c.log_path, "%s/executor.log", c.dir);
    c.zctx = zmq_ctx_new();

    rc = conf_bind(&c) < 0 ? -1 : conf_checks[i].run(&c);
    if (rc < 0 && !c.reason[0])
        conf_fail(&c, "failed without a reason");
    if (c.pid > 0) {
        kill(c.pid, rc < 0 ? SIGKILL : SIGTERM);
        conf_reap(&c);
    }
    if (rc == 0) {
        printf("ok %s\n", conf_checks[i].name);
    } else {
        printf("FAIL %s: %s\n", conf_checks[i].name, c.reason);
        fflush(stdout);
        conf_print_log_tail(c.log_path);
    }
    fflush(stdout);

    drover_msg_clear(&(struct drover_msg){.type = DROVER_MSG_HELLO, .u.hello = c.hello});
    conf_unbind(&c);
    zmq_ctx_term(c.zctx);
    if (rc == 0 || getenv("DROVER_CONFORMANCE_KEEP") == NULL)
        conf_remove_tree(c.dir);
    else
        fprintf(stderr, "  kept %s\n", c.dir);
    return rc;
}

static void conf_usage(FILE *out)
{
    fprintf(out,
            "usage: drover-conformance [--check NAME]... [--list] [--verbose] -- PROGRAM [ARG]...\n"
            "\n"
            "Runs the protocol checks against the executor PROGRAM, started as\n"
            "PROGRAM ARG... --connect ENDPOINT --state-dir DIR.  Without --check, runs\n"
            "every default check.  DROVER_CONFORMANCE_KEEP=1 keeps the directory of a\n"
            "failed check (executor log, state directory).\n");
}

int main(int argc, char **argv)
{
    int selected[CONF_N_CHECKS] = {0}, any_selected = 0, failed = 0, ran = 0;
    int i;

    signal(SIGPIPE, SIG_IGN);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--list") == 0) {
            for (size_t k = 0; k < CONF_N_CHECKS; k++)
                printf("%s%s\n", conf_checks[k].name, conf_checks[k].by_default ? "" : " (only when named)");
            return 0;
        }
        if (strcmp(argv[i], "--verbose") == 0) {
            conf_verbose = 1;
            continue;
        }
        if (strcmp(argv[i], "--help") == 0) {
            conf_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--check") == 0 && i + 1 < argc) {
            size_t k;

            for (k = 0; k < CONF_N_CHECKS; k++)
                if (strcmp(conf_checks[k].name, argv[i + 1]) == 0)
                    break;
            if (k == CONF_N_CHECKS) {
                fprintf(stderr, "drover-conformance: unknown check %s (see --list)\n", argv[i + 1]);
                return 2;
            }
            selected[k] = 1;
            any_selected = 1;
            i++;
            continue;
        }
        fprintf(stderr, "drover-conformance: unknown option %s\n", argv[i]);
        conf_usage(stderr);
        return 2;
    }
    if (i >= argc) {
        conf_usage(stderr);
        return 2;
    }

    for (size_t k = 0; k < CONF_N_CHECKS; k++) {
        if (any_selected ? !selected[k] : !conf_checks[k].by_default)
            continue;
        ran++;
        if (conf_run_check(argv + i, k) < 0)
            failed++;
    }
    printf("%d passed, %d failed\n", ran - failed, failed);
    return failed ? 1 : 0;
}
