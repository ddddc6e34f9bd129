/*
 * The executor's event loop and its dialog with the supervisor.
 *
 * One zmq_poll per pass over the DEALER socket, the signal self-pipe and the
 * fds the author watches; its timeout is the earliest deadline among pings,
 * the supervisor's liveness, the HELLO retry, resends and run timers.
 *
 *   CONNECTING --WELCOME--> READY --(no message for liveness_ms, GOODBYE)-->
 *   CONNECTING on a fresh socket with a new HELLO listing the inventory;
 *   CONNECTING --(no answer within SDK_HELLO_TIMEOUT_MS)--> PAUSED, socket
 *   closed, --(backoff)--> CONNECTING.  REJECT, or a message of another
 *   protocol version before WELCOME, stops the executor with exit status 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "drover/version.h"
#include "sdk_internal.h"

/* Malformed messages are logged one by one up to this count, then one in
 * every SDK_MALFORMED_EVERY, so that a flood cannot fill the log. */
#define SDK_MALFORMED_LOGGED 20
#define SDK_MALFORMED_EVERY  100

static void loop_trace(struct drover_executor *ex, int outgoing, int type, size_t size)
{
    const char *sup = ex->supervisor_id[0] ? ex->supervisor_id : "supervisor";

    if (!ex->trace)
        return;
    if (outgoing)
        sdk_logf(ex, NULL, "trace %s -> %s %s %zu", ex->id, sup, drover_msg_type_name(type), size);
    else
        sdk_logf(ex, NULL, "trace %s -> %s %s %zu", sup, ex->id, drover_msg_type_name(type), size);
}

/* Sends an encoded message.  The DEALER queues while disconnected; a full
 * queue drops the message, which resends make up for where it matters. */
static int loop_send(struct drover_executor *ex, int type, char *buf, size_t len)
{
    int rc;

    if (!ex->sock) {
        free(buf);
        return -1;
    }
    rc = zmq_send(ex->sock, buf, len, ZMQ_DONTWAIT);
    if (rc < 0) {
        /* A chatty run can fill the queue with LOG lines: log the first
         * failures, then one in SDK_MALFORMED_EVERY. */
        ex->send_failures++;
        if (ex->send_failures <= SDK_MALFORMED_LOGGED || ex->send_failures % SDK_MALFORMED_EVERY == 0)
            sdk_logf(ex, NULL, "send_failed type=%s error=\"%s\" failures_total=%lu (dropped)",
                     drover_msg_type_name(type), zmq_strerror(zmq_errno()), ex->send_failures);
    } else {
        loop_trace(ex, 1, type, len);
    }
    free(buf);
    return rc < 0 ? -1 : 0;
}

static int loop_encode_send(struct drover_executor *ex, struct drover_msg *m)
{
    char *buf = NULL;
    size_t len = 0;
    char err[256];

    if (drover_msg_encode(m, &buf, &len, err, sizeof err) < 0) {
        sdk_logf(ex, NULL, "encode_failed type=%s error=\"%s\"", drover_msg_type_name(m->type), err);
        return -1;
    }
    return loop_send(ex, m->type, buf, len);
}

int sdk_send_started(struct drover_executor *ex, struct drover_run *run)
{
    struct drover_msg m = {.type = DROVER_MSG_STARTED};

    memcpy(m.u.started.flow_run_id, run->flow_run_id, sizeof run->flow_run_id);
    m.u.started.identifier = run->identifier;
    return loop_encode_send(ex, &m);
}

int sdk_send_exited(struct drover_executor *ex, struct drover_run *run)
{
    struct drover_msg m = {.type = DROVER_MSG_EXITED};

    memcpy(m.u.exited.flow_run_id, run->flow_run_id, sizeof run->flow_run_id);
    m.u.exited.code = run->code;
    m.u.exited.error = run->error ? run->error : "";
    return loop_encode_send(ex, &m);
}

int sdk_send_log(struct drover_executor *ex, struct drover_run *run, int stream, char *line)
{
    struct drover_msg m = {.type = DROVER_MSG_LOG};

    memcpy(m.u.log.flow_run_id, run->flow_run_id, sizeof run->flow_run_id);
    m.u.log.stream = stream;
    m.u.log.line = line;
    return loop_encode_send(ex, &m);
}

/* Sends what the run still owes the supervisor: STARTED until acknowledged
 * (so that EXITED never arrives for a run the supervisor saw no identifier
 * of) and EXITED until acknowledged. */
static void loop_send_pending(struct drover_executor *ex, struct drover_run *run)
{
    if (run->state == SDK_RUN_STARTING)
        return;
    if (!run->started_acked && run->identifier[0])
        sdk_send_started(ex, run);
    if (run->state == SDK_RUN_EXITED)
        sdk_send_exited(ex, run);
}

static int loop_run_owes(const struct drover_run *run)
{
    if (run->dead || run->state == SDK_RUN_STARTING)
        return 0;
    return run->state == SDK_RUN_EXITED || (!run->started_acked && run->identifier[0]);
}

void sdk_schedule_resend(struct drover_run *run)
{
    struct drover_executor *ex = run->ex;

    run->resend_ms = ex->ping_ms ? ex->ping_ms : SDK_RETRY_FIRST_MS;
    run->resend_at = sdk_now_ms() + run->resend_ms;
    if (ex->conn == SDK_READY)
        loop_send_pending(ex, run);
}

/* --- Connection --------------------------------------------------------- */

static void loop_close_socket(struct drover_executor *ex, int linger_ms)
{
    if (!ex->sock)
        return;
    zmq_setsockopt(ex->sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_close(ex->sock);
    ex->sock = NULL;
}

static int loop_open_socket(struct drover_executor *ex)
{
    int linger = 0, ivl = SDK_RECONNECT_IVL_MS, ivl_max = SDK_RECONNECT_IVL_MAX_MS;
    /* Frames far above the protocol's cap make libzmq drop the connection
     * rather than buffer them; the decoder rejects the ones in between. */
    int64_t maxmsg = (int64_t)DROVER_MAX_FRAME * 2;
    void *s = zmq_socket(ex->zctx, ZMQ_DEALER);

    if (!s) {
        sdk_logf(ex, NULL, "socket_failed error=\"%s\"", zmq_strerror(zmq_errno()));
        return -1;
    }
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (ex->curve &&
        (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, ex->curve_server, 41) < 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, ex->curve_public, 41) < 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, ex->curve_secret, 41) < 0)) {
        sdk_logf(ex, NULL, "curve_setup_failed error=\"%s\"", zmq_strerror(zmq_errno()));
        zmq_close(s);
        return -1;
    }
    if (zmq_connect(s, ex->endpoint) < 0) {
        sdk_logf(ex, NULL, "connect_failed endpoint=%s error=\"%s\"", ex->endpoint,
                 zmq_strerror(zmq_errno()));
        zmq_close(s);
        return -1;
    }
    ex->sock = s;
    return 0;
}

static int loop_send_hello(struct drover_executor *ex)
{
    struct drover_msg m = {.type = DROVER_MSG_HELLO};
    struct drover_hello *h = &m.u.hello;
    size_t n = 0;
    int rc;

    for (struct drover_run *r = ex->runs; r; r = r->next)
        if (!r->dead)
            n++;
    if (n > DROVER_MAX_INVENTORY) {
        sdk_logf(ex, NULL, "inventory_truncated runs=%zu max=%u", n, DROVER_MAX_INVENTORY);
        n = DROVER_MAX_INVENTORY;
    }
    h->inventory = n ? calloc(n, sizeof *h->inventory) : NULL;
    if (n && !h->inventory)
        return -1;
    for (struct drover_run *r = ex->runs; r && h->inventory_len < n; r = r->next) {
        struct drover_run_entry *e;

        if (r->dead)
            continue;
        e = &h->inventory[h->inventory_len++];
        memcpy(e->flow_run_id, r->flow_run_id, sizeof r->flow_run_id);
        e->identifier = r->identifier;
        e->exited = r->state == SDK_RUN_EXITED;
        e->code = r->state == SDK_RUN_EXITED ? r->code : 0;
    }
    h->executor_id = ex->id;
    h->type = ex->type;
    h->capacity = ex->capacity;
    h->schema = ex->schema_text;
    h->software = "drover-executor-sdk/" DROVER_VERSION;
    h->hostname = ex->hostname;

    rc = loop_encode_send(ex, &m);
    free(h->inventory);
    return rc;
}

/* Opens a fresh socket and says HELLO: a fresh socket drops whatever the
 * old one still queued for a supervisor that is gone, and makes HELLO the
 * first message of the new connection. */
static void loop_connect(struct drover_executor *ex)
{
    loop_close_socket(ex, 0);
    ex->conn = SDK_CONNECTING;
    ex->supervisor_id[0] = '\0';
    ex->hello_deadline = sdk_now_ms() + SDK_HELLO_TIMEOUT_MS;
    if (loop_open_socket(ex) == 0)
        loop_send_hello(ex);
    sdk_logf(ex, NULL, "hello endpoint=%s runs=%u", ex->endpoint, sdk_runs_active(ex));
}

/* HELLO got no reply: close the socket and try again after a pause. */
static void loop_pause(struct drover_executor *ex)
{
    loop_close_socket(ex, 0);
    ex->conn = SDK_PAUSED;
    ex->retry_at = sdk_now_ms() + ex->retry_ms;
    sdk_logf(ex, NULL, "hello_unanswered endpoint=%s timeout_ms=%d (retrying in %lld ms)", ex->endpoint,
             SDK_HELLO_TIMEOUT_MS, (long long)ex->retry_ms);
    ex->retry_ms = ex->retry_ms * 2 > SDK_RETRY_MAX_MS ? SDK_RETRY_MAX_MS : ex->retry_ms * 2;
}

static void loop_supervisor_lost(struct drover_executor *ex, const char *why)
{
    sdk_logf(ex, NULL, "supervisor_lost supervisor=%s reason=\"%s\" runs=%u (reconnecting)",
             ex->supervisor_id[0] ? ex->supervisor_id : "-", why, sdk_runs_active(ex));
    ex->retry_ms = SDK_RETRY_FIRST_MS;
    loop_connect(ex);
}

/* --- Incoming messages -------------------------------------------------- */

static void loop_on_welcome(struct drover_executor *ex, const struct drover_welcome *w)
{
    int64_t now = sdk_now_ms();

    snprintf(ex->supervisor_id, sizeof ex->supervisor_id, "%s", w->supervisor_id);
    ex->ping_ms = w->ping_interval_ms;
    ex->liveness_ms = w->liveness_ms;
    if (ex->conn == SDK_READY) {
        sdk_logf(ex, NULL, "welcome_again supervisor=%s ping_interval_ms=%u liveness_ms=%u",
                 ex->supervisor_id, ex->ping_ms, ex->liveness_ms);
        return;
    }
    ex->conn = SDK_READY;
    ex->retry_ms = SDK_RETRY_FIRST_MS;
    ex->ping_seq = 0;
    ex->next_ping = now + ex->ping_ms;
    sdk_logf(ex, NULL, "welcomed supervisor=%s ping_interval_ms=%u liveness_ms=%u",
             ex->supervisor_id, ex->ping_ms, ex->liveness_ms);
    for (struct drover_run *r = ex->runs; r; r = r->next)
        if (loop_run_owes(r))
            sdk_schedule_resend(r);
}

/* Fails a JOB whose run cannot start: EXITED carries the reason, and the
 * run is kept until that EXITED is acknowledged, like any other. */
static void loop_job_fail(struct drover_executor *ex, struct drover_run *run, const char *reason)
{
    sdk_logf(ex, run, "job_failed reason=\"%s\"", reason);
    drover_run_exited_error(run, 1, reason);
}

static void loop_job_start(struct drover_executor *ex, struct drover_run *run, const char *config_text)
{
    char err[DROVER_MAX_REASON] = "", ident[DROVER_MAX_IDENTIFIER + 1] = "", reason[DROVER_MAX_REASON];
    json_error_t jerr;
    json_t *config;
    int rc;

    config = json_loads(config_text, JSON_REJECT_DUPLICATES, &jerr);
    if (!config || !json_is_object(config)) {
        snprintf(reason, sizeof reason, "invalid job configuration: %s",
                 config ? "not a JSON object" : jerr.text);
        json_decref(config);
        loop_job_fail(ex, run, reason);
        return;
    }
    if (ex->ops->prepare && ex->ops->prepare(run, config, err, sizeof err) < 0) {
        snprintf(reason, sizeof reason, "prepare failed: %s", err[0] ? err : "no reason given");
        json_decref(config);
        loop_job_fail(ex, run, reason);
        return;
    }

    rc = ex->ops->start(run, config, ident, sizeof ident, err, sizeof err);
    json_decref(config);
    if (run->state != SDK_RUN_STARTING)
        return;     /* the author already reported the end */
    if (rc == DROVER_START_PENDING) {
        sdk_run_save(run);
        sdk_logf(ex, run, "starting");
        return;
    }
    if (rc != DROVER_START_OK) {
        loop_job_fail(ex, run, err[0] ? err : "start failed without a reason");
        return;
    }
    ident[sizeof ident - 1] = '\0';
    if (!ident[0]) {
        loop_job_fail(ex, run, "start returned an empty identifier");
        return;
    }
    sdk_run_set_started(run, ident);
}

static void loop_on_job(struct drover_executor *ex, const struct drover_job *job)
{
    struct drover_run *run;
    char reason[DROVER_MAX_REASON];

    if (!sdk_valid_flow_run_id(job->flow_run_id)) {
        ex->malformed++;
        sdk_logf(ex, NULL, "job_invalid flow_run_id=\"%.40s\" (dropped: expected a lowercase UUID)",
                 job->flow_run_id);
        return;
    }
    run = sdk_run_find(ex, job->flow_run_id);
    if (run) {
        /* A run is never started twice: resend what the executor has of it. */
        sdk_logf(ex, run, "job_duplicate state=%s", run->state == SDK_RUN_EXITED ? "exited" :
                 run->state == SDK_RUN_STARTED ? "started" : "starting");
        if (run->state == SDK_RUN_STARTED)
            sdk_send_started(ex, run);
        else if (run->state == SDK_RUN_EXITED)
            loop_send_pending(ex, run);
        return;
    }

    run = sdk_run_new(ex, job->flow_run_id);
    if (!run) {
        sdk_logf(ex, NULL, "job_dropped flow_run=%s reason=\"out of memory\"", job->flow_run_id);
        return;
    }
    sdk_logf(ex, run, "job config_bytes=%zu", strlen(job->config));
    if (ex->stop) {
        loop_job_fail(ex, run, "the executor is shutting down");
        return;
    }
    if (sdk_runs_active(ex) > ex->capacity) {
        snprintf(reason, sizeof reason, "executor %s is at capacity (%u runs)", ex->id, ex->capacity);
        loop_job_fail(ex, run, reason);
        return;
    }
    loop_job_start(ex, run, job->config);
}

static void loop_on_ack(struct drover_executor *ex, const struct drover_ack *ack)
{
    struct drover_run *run = sdk_run_find(ex, ack->flow_run_id);

    if (!run) {
        sdk_logf(ex, NULL, "ack_unknown flow_run=%.40s type=%s (ignored)", ack->flow_run_id,
                 drover_msg_type_name(ack->acked_type));
        return;
    }
    if (ack->acked_type == DROVER_MSG_STARTED) {
        if (!run->started_acked) {
            run->started_acked = 1;
            if (run->state != SDK_RUN_EXITED)
                sdk_run_save(run);
        }
        return;
    }
    if (ack->acked_type == DROVER_MSG_EXITED && run->state == SDK_RUN_EXITED) {
        sdk_logf(ex, run, "forgotten (EXITED acknowledged)");
        sdk_run_forget(run);
    }
}

static void loop_on_kill(struct drover_executor *ex, const struct drover_kill *k)
{
    struct drover_run *run = sdk_run_find(ex, k->flow_run_id);
    char err[DROVER_MAX_REASON] = "";

    if (!run) {
        sdk_logf(ex, NULL, "kill_unknown flow_run=%.40s (ignored)", k->flow_run_id);
        return;
    }
    sdk_logf(ex, run, "kill grace_s=%u", k->grace_seconds);
    if (run->state == SDK_RUN_EXITED)
        return;
    if (run->state == SDK_RUN_STARTING) {
        run->kill_pending = 1;
        run->kill_grace = k->grace_seconds;
        return;
    }
    if (ex->ops->kill(run, k->grace_seconds, err, sizeof err) < 0)
        sdk_logf(ex, run, "kill_failed error=\"%s\"", err);
}

static void loop_count_malformed(struct drover_executor *ex, const char *what, const char *reason, size_t size)
{
    ex->malformed++;
    if (ex->malformed <= SDK_MALFORMED_LOGGED || ex->malformed % SDK_MALFORMED_EVERY == 0)
        sdk_logf(ex, NULL, "message_dropped kind=%s size=%zu reason=\"%s\" dropped_total=%lu",
                 what, size, reason, ex->malformed);
}

/* Minimal readers for the envelope of a frame the codec rejected.  They
 * never allocate, so a frame that claims a huge array cannot exhaust
 * memory.  Each returns the position after the value, or NULL. */
static const unsigned char *loop_peek_uint(const unsigned char *p, const unsigned char *end, uint64_t *v)
{
    size_t n;

    if (p >= end)
        return NULL;
    if (*p <= 0x7f) {
        *v = *p;
        return p + 1;
    }
    switch (*p) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    default: return NULL;
    }
    if ((size_t)(end - p) < n + 1)
        return NULL;
    *v = 0;
    for (size_t i = 1; i <= n; i++)
        *v = (*v << 8) | p[i];
    return p + 1 + n;
}

static const unsigned char *loop_peek_str(const unsigned char *p, const unsigned char *end,
                                          const char **str, size_t *len)
{
    size_t head;

    if (p >= end)
        return NULL;
    if ((*p & 0xe0) == 0xa0) {
        *len = *p & 0x1f;
        head = 1;
    } else if (*p == 0xd9 && end - p >= 2) {
        *len = p[1];
        head = 2;
    } else if (*p == 0xda && end - p >= 3) {
        *len = ((size_t)p[1] << 8) | p[2];
        head = 3;
    } else if (*p == 0xdb && end - p >= 5) {
        *len = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
        head = 5;
    } else {
        return NULL;
    }
    if ((size_t)(end - p) - head < *len)
        return NULL;
    *str = (const char *)p + head;
    return p + head + *len;
}

/* Reads [version, type, str, ...] of a frame with n elements (fixarray). */
static int loop_peek_envelope(const void *data, size_t size, unsigned n, uint64_t *version,
                              uint64_t *type, const char **str, size_t *len)
{
    const unsigned char *p = data, *end = p + size;

    if (size < 1 || *p != (0x90 | n))
        return -1;
    p = loop_peek_uint(p + 1, end, version);
    p = p ? loop_peek_uint(p, end, type) : NULL;
    p = p ? loop_peek_str(p, end, str, len) : NULL;
    return p ? 0 : -1;
}

/* A JOB whose config the decoder rejected (invalid JSON, too deep, ...)
 * still names its run: answer it with EXITED and the decoder's reason, so
 * the run fails at once instead of waiting for the inventory check.  Only
 * [1, 4, <flow run id>, <anything>] qualifies, and never a run already held. */
static void loop_answer_bad_job(struct drover_executor *ex, const void *data, size_t size, const char *reason)
{
    char id[DROVER_UUID_LEN + 1] = "", text[DROVER_MAX_REASON];
    uint64_t version, type;
    const char *str;
    size_t len;
    struct drover_run *run;

    if (loop_peek_envelope(data, size, 4, &version, &type, &str, &len) < 0 ||
        version != DROVER_PROTOCOL_VERSION || type != DROVER_MSG_JOB || len != DROVER_UUID_LEN)
        return;
    memcpy(id, str, DROVER_UUID_LEN);
    if (!sdk_valid_flow_run_id(id) || sdk_run_find(ex, id))
        return;
    run = sdk_run_new(ex, id);
    if (!run)
        return;
    snprintf(text, sizeof text, "invalid job configuration: %s", reason);
    loop_job_fail(ex, run, text);
}

/* A supervisor of another protocol version answers HELLO with a REJECT of
 * its own version, [version, 3, reason]: any such answer ends the executor,
 * since a new HELLO would get the same one. */
static void loop_on_foreign_version(struct drover_executor *ex, const void *data, size_t size, int version)
{
    char reason[DROVER_MAX_REASON + 1] = "";
    uint64_t v, type;
    const char *str;
    size_t len;

    if (loop_peek_envelope(data, size, 3, &v, &type, &str, &len) == 0 && type == DROVER_MSG_REJECT) {
        char *clean = drover_utf8_clean(str, len, DROVER_MAX_REASON);

        if (clean) {
            snprintf(reason, sizeof reason, "%s", clean);
            free(clean);
        }
    }
    sdk_logf(ex, NULL, "rejected supervisor_version=%d executor_version=%d reason=\"%s\" (exiting)",
             version, DROVER_PROTOCOL_VERSION, reason[0] ? reason : "a message of another protocol version");
    ex->stop = 1;
    ex->exit_status = 1;
}

static void loop_dispatch(struct drover_executor *ex, const void *data, size_t size)
{
    struct drover_msg m;
    char err[256] = "";
    int version = 0;
    int rc = drover_msg_decode(data, size, &m, &version, err, sizeof err);

    if (rc == DROVER_DECODE_VERSION && ex->conn == SDK_CONNECTING) {
        loop_on_foreign_version(ex, data, size, version);
        return;
    }
    if (rc != DROVER_DECODE_OK) {
        loop_count_malformed(ex, drover_decode_result_name(rc), err, size);
        if (rc == DROVER_DECODE_MALFORMED && ex->conn == SDK_READY)
            loop_answer_bad_job(ex, data, size, err);
        return;
    }
    loop_trace(ex, 0, m.type, size);
    ex->last_rx = sdk_now_ms();

    switch (m.type) {
    case DROVER_MSG_WELCOME:
        loop_on_welcome(ex, &m.u.welcome);
        break;
    case DROVER_MSG_REJECT:
        sdk_logf(ex, NULL, "rejected supervisor=%s reason=\"%s\" (exiting)",
                 ex->supervisor_id[0] ? ex->supervisor_id : "-", m.u.reject.reason);
        ex->stop = 1;
        ex->exit_status = 1;
        break;
    case DROVER_MSG_JOB:
        if (ex->conn == SDK_READY)
            loop_on_job(ex, &m.u.job);
        else
            loop_count_malformed(ex, "unexpected", "JOB before WELCOME", size);
        break;
    case DROVER_MSG_ACK:
        loop_on_ack(ex, &m.u.ack);
        break;
    case DROVER_MSG_KILL:
        loop_on_kill(ex, &m.u.kill);
        break;
    case DROVER_MSG_PONG:
        break;
    case DROVER_MSG_GOODBYE:
        sdk_logf(ex, NULL, "supervisor_goodbye reason=\"%s\"", m.u.goodbye.reason);
        loop_supervisor_lost(ex, "the supervisor said GOODBYE");
        break;
    default:
        loop_count_malformed(ex, "unexpected", drover_msg_type_name(m.type), size);
        break;
    }
    drover_msg_clear(&m);
}

/* Reads the messages waiting on the socket.  A message of more than one
 * frame is not of this protocol: its frames are drained and counted. */
static void loop_read_socket(struct drover_executor *ex)
{
    for (int i = 0; i < SDK_MAX_RECV_PER_PASS && ex->sock && !ex->stop; i++) {
        zmq_msg_t msg;
        int more = 0;
        size_t more_len = sizeof more;
        void *sock = ex->sock;

        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len);
        if (more) {
            size_t total = zmq_msg_size(&msg);

            while (more) {
                zmq_msg_close(&msg);
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0)
                    break;
                total += zmq_msg_size(&msg);
                zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len);
            }
            loop_count_malformed(ex, "multipart", "more than one frame", total);
        } else {
            loop_dispatch(ex, zmq_msg_data(&msg), zmq_msg_size(&msg));
        }
        zmq_msg_close(&msg);
    }
}

/* --- Timers ------------------------------------------------------------- */

static void loop_send_ping(struct drover_executor *ex)
{
    struct drover_msg m = {.type = DROVER_MSG_PING};

    m.u.ping.seq = ex->ping_seq++;
    m.u.ping.running = sdk_runs_held(ex);
    loop_encode_send(ex, &m);
}

static void loop_run_timers(struct drover_executor *ex, int64_t now)
{
    if (ex->conn == SDK_READY && now - ex->last_rx > (int64_t)ex->liveness_ms) {
        char why[96];

        snprintf(why, sizeof why, "no message for %lld ms", (long long)(now - ex->last_rx));
        loop_supervisor_lost(ex, why);
    } else if (ex->conn == SDK_CONNECTING && now >= ex->hello_deadline) {
        loop_pause(ex);
    } else if (ex->conn == SDK_PAUSED && now >= ex->retry_at) {
        loop_connect(ex);
    }
    if (ex->conn == SDK_READY && now >= ex->next_ping) {
        loop_send_ping(ex);
        ex->next_ping = now + ex->ping_ms;
    }

    for (struct drover_run *r = ex->runs; r; r = r->next) {
        if (!r->dead && r->timer_at && now >= r->timer_at) {
            r->timer_at = 0;
            if (ex->ops->on_timer)
                ex->ops->on_timer(r);
        }
        if (ex->conn == SDK_READY && loop_run_owes(r) && now >= r->resend_at) {
            int64_t max = SDK_RESEND_MAX_MS > ex->ping_ms ? SDK_RESEND_MAX_MS : ex->ping_ms;

            loop_send_pending(ex, r);
            r->resend_ms = r->resend_ms * 2 > max ? max : r->resend_ms * 2;
            r->resend_at = now + r->resend_ms;
        }
    }
}

static long loop_timeout(struct drover_executor *ex, int64_t now)
{
    int64_t next = now + 1000;

    if (ex->conn == SDK_READY) {
        if (ex->next_ping < next)
            next = ex->next_ping;
        if (ex->last_rx + ex->liveness_ms + 1 < next)
            next = ex->last_rx + ex->liveness_ms + 1;
    } else if (ex->conn == SDK_CONNECTING && ex->hello_deadline < next) {
        next = ex->hello_deadline;
    } else if (ex->conn == SDK_PAUSED && ex->retry_at < next) {
        next = ex->retry_at;
    }
    for (struct drover_run *r = ex->runs; r; r = r->next) {
        if (r->dead)
            continue;
        if (r->timer_at && r->timer_at < next)
            next = r->timer_at;
        if (ex->conn == SDK_READY && loop_run_owes(r) && r->resend_at < next)
            next = r->resend_at;
    }
    return next > now ? (long)(next - now) : 0;
}

/* --- The loop ----------------------------------------------------------- */

struct loop_slot {
    struct drover_run *run;
    int fd;
};

static void loop_drain_signals(struct drover_executor *ex)
{
    unsigned char sig[16];
    ssize_t n;

    while ((n = read(ex->signal_pipe[0], sig, sizeof sig)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (!ex->stop)
                sdk_logf(ex, NULL, "stopping signal=%s runs=%u (runs keep going and are re-adopted "
                         "on the next start with the same id)", sig[i] == SIGINT ? "SIGINT" : "SIGTERM",
                         sdk_runs_active(ex));
            ex->stop = 1;
        }
    }
}

static void loop_say_goodbye(struct drover_executor *ex)
{
    struct drover_msg m = {.type = DROVER_MSG_GOODBYE};

    /* Before WELCOME only HELLO may be sent, and after REJECT nothing. */
    if (!ex->sock || ex->exit_status || ex->conn != SDK_READY) {
        loop_close_socket(ex, 0);
        return;
    }
    m.u.goodbye.reason = "executor stopping";
    loop_encode_send(ex, &m);
    /* A short linger gives GOODBYE a chance to leave before the socket closes. */
    loop_close_socket(ex, 1000);
}

int sdk_loop_run(struct drover_executor *ex)
{
    zmq_pollitem_t *items = NULL;
    struct loop_slot *slots = NULL;
    size_t cap = 0;

    ex->retry_ms = SDK_RETRY_FIRST_MS;
    loop_connect(ex);

    while (!ex->stop) {
        size_t n = 0, want = 2;
        int64_t now = sdk_now_ms();
        long timeout;

        for (struct drover_run *r = ex->runs; r; r = r->next)
            want += r->dead ? 0 : (size_t)r->n_fds;
        if (want > cap) {
            zmq_pollitem_t *gi = realloc(items, want * sizeof *items);
            struct loop_slot *gs = gi ? realloc(slots, want * sizeof *slots) : NULL;

            if (gi)
                items = gi;
            if (!gi || !gs) {
                sdk_logf(ex, NULL, "out_of_memory (exiting)");
                ex->exit_status = 1;
                break;
            }
            slots = gs;
            cap = want;
        }

        items[n++] = (zmq_pollitem_t){.socket = ex->sock, .fd = -1, .events = ZMQ_POLLIN};
        items[n++] = (zmq_pollitem_t){.socket = NULL, .fd = ex->signal_pipe[0], .events = ZMQ_POLLIN};
        for (struct drover_run *r = ex->runs; r; r = r->next) {
            for (int i = 0; !r->dead && i < r->n_fds; i++) {
                slots[n] = (struct loop_slot){.run = r, .fd = r->fds[i]};
                items[n++] = (zmq_pollitem_t){.socket = NULL, .fd = r->fds[i], .events = ZMQ_POLLIN};
            }
        }
        if (!ex->sock)
            items[0] = (zmq_pollitem_t){.socket = NULL, .fd = ex->signal_pipe[0], .events = ZMQ_POLLIN};

        timeout = loop_timeout(ex, now);
        if (zmq_poll(items, (int)n, timeout) < 0 && zmq_errno() != EINTR) {
            sdk_logf(ex, NULL, "poll_failed error=\"%s\" (exiting)", zmq_strerror(zmq_errno()));
            ex->exit_status = 1;
            break;
        }

        if (items[1].revents)
            loop_drain_signals(ex);
        if (ex->sock && items[0].socket && (items[0].revents & ZMQ_POLLIN))
            loop_read_socket(ex);
        for (size_t i = 2; i < n && !ex->stop; i++) {
            struct drover_run *r = slots[i].run;
            int watched = 0;

            if (!items[i].revents || r->dead)
                continue;
            /* An earlier callback of this pass may have unwatched the fd. */
            for (int j = 0; j < r->n_fds; j++)
                watched |= r->fds[j] == slots[i].fd;
            if (watched && ex->ops->on_fd)
                ex->ops->on_fd(r, slots[i].fd);
        }
        if (!ex->stop)
            loop_run_timers(ex, sdk_now_ms());
        sdk_runs_sweep(ex);
    }

    loop_say_goodbye(ex);
    free(items);
    free(slots);
    return ex->exit_status;
}
