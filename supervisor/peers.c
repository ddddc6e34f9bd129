/*
 * Executors connected to the supervisor's ROUTER socket: their sessions
 * (HELLO, WELCOME or REJECT), liveness, and the dispatch of every message
 * they send to the run table.  Input from an executor is never trusted: a
 * malformed or unexpected message is logged, counted and dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "log.h"
#include "render.h"
#include "util.h"
#include "worker.h"

#define PEERS_RECV_BATCH 256   /* messages per loop pass, so timers still run under load */

/* Allows at most 20 lines about dropped messages a minute, so a faulty
 * or hostile executor cannot flood the log. */
static int
peers_log_allowed(void)
{
    static int64_t window_start;
    static int lines;
    int64_t now = util_now_ms();

    if (now - window_start >= 60000) {
        if (lines > 20)
            log_warn("event=log_lines_suppressed about=dropped_messages count=%d", lines - 20);
        window_start = now;
        lines = 0;
    }
    return ++lines <= 20;
}

static const char *
peer_name(const struct peer *p)
{
    return p && p->executor_id ? p->executor_id : "unknown";
}

/* ---- indexes ------------------------------------------------------------ */

/*
 * Two hash tables of PEERS_BUCKETS chains find a peer by (socket, routing id)
 * or by executor id, and a doubly linked queue orders the live peers by
 * last_seen_ms.  Invariant: a peer is in the routing id table and in the
 * queue exactly while its state is PEER_LIVE.  The tables are allocated with
 * the first HELLO and freed by peers_free_all().
 */
#define PEERS_BUCKETS 4096   /* a power of two; WORKER_MAX_PEERS peers fit at load 1 */

/* FNV-1a, with the high bits folded in because only the low bits index. */
static uint64_t
peers_fnv1a(uint64_t h, const unsigned char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= data[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t
peers_bucket(uint64_t h)
{
    return (size_t)((h ^ (h >> 32)) & (PEERS_BUCKETS - 1));
}

static size_t
peers_rid_bucket(const void *sock, const unsigned char *rid, size_t len)
{
    uintptr_t s = (uintptr_t)sock;
    uint64_t h = peers_fnv1a(14695981039346656037ULL, (const unsigned char *)&s, sizeof s);

    return peers_bucket(peers_fnv1a(h, rid, len));
}

static size_t
peers_id_bucket(const char *executor_id)
{
    return peers_bucket(peers_fnv1a(14695981039346656037ULL, (const unsigned char *)executor_id,
                                    strlen(executor_id)));
}

/* Allocates both tables on first use.  Returns 0, or -1 when out of memory. */
static int
peers_index_init(struct worker *w)
{
    if (w->peers_by_rid && w->peers_by_id)
        return 0;
    free(w->peers_by_rid);
    free(w->peers_by_id);
    w->peers_by_rid = calloc(PEERS_BUCKETS, sizeof *w->peers_by_rid);
    w->peers_by_id = calloc(PEERS_BUCKETS, sizeof *w->peers_by_id);
    if (w->peers_by_rid == NULL || w->peers_by_id == NULL) {
        free(w->peers_by_rid);
        free(w->peers_by_id);
        w->peers_by_rid = w->peers_by_id = NULL;
        return -1;
    }
    return 0;
}

static void
peers_id_link(struct worker *w, struct peer *p)
{
    struct peer **head = &w->peers_by_id[peers_id_bucket(p->executor_id)];

    p->id_next = *head;
    *head = p;
}

/* Links a peer into its routing id chain, which is kept newest peer first.
 * Two live peers share a routing id on one socket when one connection sends
 * HELLO under two executor ids.  Then the newer peer gets the messages, as
 * the first match on w->peers would. */
static void
peers_rid_link(struct worker *w, struct peer *p)
{
    struct peer **pp = &w->peers_by_rid[peers_rid_bucket(p->sock, p->rid, p->rid_len)];

    while (*pp && (*pp)->serial > p->serial)
        pp = &(*pp)->rid_next;
    p->rid_next = *pp;
    *pp = p;
}

static void
peers_rid_unlink(struct worker *w, struct peer *p)
{
    struct peer **pp = &w->peers_by_rid[peers_rid_bucket(p->sock, p->rid, p->rid_len)];

    while (*pp && *pp != p)
        pp = &(*pp)->rid_next;
    if (*pp)
        *pp = p->rid_next;
    p->rid_next = NULL;
}

static void
peers_seen_unlink(struct worker *w, struct peer *p)
{
    if (p->seen_prev == NULL && w->seen_head != p)
        return;   /* not queued */
    if (p->seen_prev)
        p->seen_prev->seen_next = p->seen_next;
    else
        w->seen_head = p->seen_next;
    if (p->seen_next)
        p->seen_next->seen_prev = p->seen_prev;
    else
        w->seen_tail = p->seen_prev;
    p->seen_prev = p->seen_next = NULL;
}

/* Sets a live peer's last_seen_ms and moves it to its place in the queue:
 * the tail, unless the clock gave an earlier time than a peer already there. */
static void
peers_seen(struct worker *w, struct peer *p, int64_t now)
{
    struct peer *after;

    peers_seen_unlink(w, p);
    p->last_seen_ms = now;
    for (after = w->seen_tail; after && after->last_seen_ms > now; after = after->seen_prev)
        ;
    p->seen_prev = after;
    p->seen_next = after ? after->seen_next : w->seen_head;
    if (p->seen_next)
        p->seen_next->seen_prev = p;
    else
        w->seen_tail = p;
    if (after)
        after->seen_next = p;
    else
        w->seen_head = p;
}

/* Makes a peer live on its current sock and rid, seen at now. */
static void
peers_set_live(struct worker *w, struct peer *p, int64_t now)
{
    p->state = PEER_LIVE;
    peers_rid_link(w, p);
    peers_seen(w, p, now);
}

static void
peers_set_gone(struct worker *w, struct peer *p)
{
    if (p->state != PEER_LIVE)
        return;
    p->state = PEER_GONE;
    peers_rid_unlink(w, p);
    peers_seen_unlink(w, p);
}

struct peer *
peers_find_id(struct worker *w, const char *executor_id)
{
    if (w->peers_by_id == NULL)
        return NULL;
    for (struct peer *p = w->peers_by_id[peers_id_bucket(executor_id)]; p; p = p->id_next)
        if (strcmp(p->executor_id, executor_id) == 0)
            return p;
    return NULL;
}

static struct peer *
peers_find_rid(struct worker *w, void *sock, const unsigned char *rid, size_t len)
{
    if (w->peers_by_rid == NULL)
        return NULL;
    for (struct peer *p = w->peers_by_rid[peers_rid_bucket(sock, rid, len)]; p; p = p->rid_next)
        if (p->state == PEER_LIVE && p->sock == sock && p->rid_len == len &&
            memcmp(p->rid, rid, len) == 0)
            return p;
    return NULL;
}

/* ---- sessions and messages ---------------------------------------------- */

static int
peers_send_raw(struct worker *w, void *sock, const unsigned char *rid, size_t rid_len,
               const struct drover_msg *m, const char *to)
{
    char err[256];
    char *buf = NULL;
    size_t len = 0;
    int rc = -1;

    if (drover_msg_encode(m, &buf, &len, err, sizeof err) == -1) {
        log_error("executor=%s event=encode_failed type=%s reason=\"%s\"", to,
                  drover_msg_type_name(m->type), err);
        return -1;
    }
    if (zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == (int)rid_len &&
        zmq_send(sock, buf, len, ZMQ_DONTWAIT) == (int)len)
        rc = 0;
    if (rc == 0 && log_trace_enabled())
        log_info("trace supervisor -> %s %s %zu", to, drover_msg_type_name(m->type), len);
    if (rc == -1)
        log_warn("executor=%s event=send_failed type=%s error=\"%s\"", to,
                 drover_msg_type_name(m->type), zmq_strerror(zmq_errno()));
    free(buf);
    return rc;
}

int
peers_send(struct worker *w, struct peer *p, const struct drover_msg *m)
{
    if (p->state != PEER_LIVE)
        return -1;
    return peers_send_raw(w, p->sock, p->rid, p->rid_len, m, p->executor_id);
}

static void
peers_reject(struct worker *w, void *sock, const unsigned char *rid, size_t rid_len,
             const char *who, const char *reason)
{
    struct drover_msg m = {0};

    log_warn("executor=%s event=rejected reason=\"%s\"", who, reason);
    m.type = DROVER_MSG_REJECT;
    m.u.reject.reason = (char *)reason;
    peers_send_raw(w, sock, rid, rid_len, &m, who);
}

/* Checks a HELLO; returns the parsed schema, or NULL with a reason. */
static json_t *
peers_check_hello(struct worker *w, const struct drover_hello *h, char *reason, size_t len)
{
    json_error_t jerr;
    json_t *schema;
    char err[512];

    if (strcmp(h->type, w->type) != 0) {
        snprintf(reason, len, "this supervisor serves work pool '%s' of type '%s', not '%s'; connect the executor to a supervisor of its type",
                 w->cfg.pool, w->type, h->type);
        return NULL;
    }
    if ((schema = json_loads(h->schema, 0, &jerr)) == NULL) {
        snprintf(reason, len, "invalid schema JSON at line %d: %s", jerr.line, jerr.text);
        return NULL;
    }
    if (render_check_schema(schema, err, sizeof err) == -1) {
        snprintf(reason, len, "invalid schema: %s", err);
        json_decref(schema);
        return NULL;
    }
    return schema;
}

static void
peers_on_hello(struct worker *w, void *sock, const unsigned char *rid, size_t rid_len,
               struct drover_hello *h)
{
    struct drover_msg m = {0};
    char reason[768];
    struct peer *p;
    json_t *schema;

    if ((schema = peers_check_hello(w, h, reason, sizeof reason)) == NULL) {
        peers_reject(w, sock, rid, rid_len, h->executor_id, reason);
        return;
    }
    if (peers_index_init(w) == -1) {
        json_decref(schema);
        return;
    }
    if ((p = peers_find_id(w, h->executor_id)) == NULL) {
        if (w->npeers >= WORKER_MAX_PEERS) {
            json_decref(schema);
            peers_reject(w, sock, rid, rid_len, h->executor_id, "too many executors connected to this supervisor");
            return;
        }
        if ((p = calloc(1, sizeof *p)) == NULL || (p->executor_id = strdup(h->executor_id)) == NULL) {
            free(p);
            json_decref(schema);
            return;
        }
        p->serial = ++w->peer_serial;
        p->state = PEER_GONE;   /* live once its session is filled in below */
        p->next = w->peers;
        w->peers = p;
        w->npeers++;
        peers_id_link(w, p);
    } else if (p->state == PEER_LIVE &&
               (p->sock != sock || p->rid_len != rid_len || memcmp(p->rid, rid, rid_len) != 0)) {
        log_warn("executor=%s event=session_replaced reason=\"a new HELLO with the same executor id\"",
                 p->executor_id);
    }
    peers_set_gone(w, p);   /* unindexed while its routing id changes */
    memcpy(p->rid, rid, rid_len);
    p->rid_len = rid_len;
    p->sock = sock;
    free(p->type);
    free(p->hostname);
    p->type = strdup(h->type);
    p->hostname = strdup(h->hostname ? h->hostname : "");
    p->capacity = h->capacity;
    json_decref(p->schema);
    p->schema = schema;
    peers_set_live(w, p, util_now_ms());
    p->assigned = 0;
    for (struct run *r = w->runs; r; r = r->next)
        if (r->executor_id && strcmp(r->executor_id, p->executor_id) == 0 &&
            (r->state == RUN_DISPATCHED || r->state == RUN_STARTED))
            p->assigned++;
    if (w->local_schema == NULL)
        w->local_schema = json_incref(schema);

    log_info("executor=%s event=connected type=%s capacity=%u host=%s software=\"%s\" inventory=%zu",
             p->executor_id, p->type, p->capacity, p->hostname, h->software ? h->software : "",
             h->inventory_len);

    m.type = DROVER_MSG_WELCOME;
    m.u.welcome.supervisor_id = w->name;
    m.u.welcome.ping_interval_ms = (uint32_t)w->cfg.ping_interval_ms;
    m.u.welcome.liveness_ms = (uint32_t)w->cfg.liveness_ms;
    if (peers_send(w, p, &m) == -1)
        return;

    for (size_t i = 0; i < h->inventory_len; i++)
        runs_adopt(w, p, &h->inventory[i]);
    runs_peer_back(w, p);
}

static void
peers_handle(struct worker *w, void *sock, const unsigned char *rid, size_t rid_len,
             const void *data, size_t len)
{
    struct drover_msg m = {0};
    struct peer *p = peers_find_rid(w, sock, rid, rid_len);
    char err[512];
    int version = 0;
    int rc;

    rc = drover_msg_decode(data, len, &m, &version, err, sizeof err);
    if (rc == DROVER_DECODE_VERSION) {
        char reason[256];

        snprintf(reason, sizeof reason,
                 "protocol version %d is not supported; this supervisor speaks version %d",
                 version, DROVER_PROTOCOL_VERSION);
        if (m.type == DROVER_MSG_HELLO || p == NULL)
            peers_reject(w, sock, rid, rid_len, peer_name(p), reason);
        w->dropped_messages++;
        drover_msg_clear(&m);
        return;
    }
    if (rc != DROVER_DECODE_OK) {
        w->dropped_messages++;
        if (peers_log_allowed())
            log_warn("executor=%s event=message_dropped size=%zu reason=\"%s\" dropped_total=%llu",
                     peer_name(p), len, err, (unsigned long long)w->dropped_messages);
        if (p == NULL)   /* tell a faulty executor why before it has a session */
            peers_reject(w, sock, rid, rid_len, "unknown", err);
        drover_msg_clear(&m);
        return;
    }
    if (log_trace_enabled())
        log_info("trace %s -> supervisor %s %zu", peer_name(p), drover_msg_type_name(m.type), len);

    if (m.type == DROVER_MSG_HELLO) {
        peers_on_hello(w, sock, rid, rid_len, &m.u.hello);
        drover_msg_clear(&m);
        return;
    }
    if (p == NULL) {
        struct drover_msg bye = {0};

        /* No session, for example after a supervisor restart: GOODBYE makes
         * the executor reconnect and send a new HELLO at once. */
        w->dropped_messages++;
        log_debug("event=message_without_session type=%s next=goodbye", drover_msg_type_name(m.type));
        bye.type = DROVER_MSG_GOODBYE;
        bye.u.goodbye.reason = "no session with this supervisor: send HELLO";
        peers_send_raw(w, sock, rid, rid_len, &bye, "unknown");
        drover_msg_clear(&m);
        return;
    }
    peers_seen(w, p, util_now_ms());

    switch (m.type) {
    case DROVER_MSG_PING: {
        struct drover_msg pong = {0};

        p->pings++;
        pong.type = DROVER_MSG_PONG;
        pong.u.ping.seq = m.u.ping.seq;
        pong.u.ping.running = p->assigned;
        peers_send(w, p, &pong);
        break;
    }
    case DROVER_MSG_STARTED:
        runs_on_started(w, p, &m.u.started);
        break;
    case DROVER_MSG_EXITED:
        runs_on_exited(w, p, &m.u.exited);
        break;
    case DROVER_MSG_LOG:
        runs_on_log(w, p, &m.u.log);
        break;
    case DROVER_MSG_GOODBYE:
        log_info("executor=%s event=goodbye reason=\"%s\"", p->executor_id,
                 m.u.goodbye.reason ? m.u.goodbye.reason : "");
        peers_set_gone(w, p);
        break;
    default:
        w->dropped_messages++;
        if (peers_log_allowed())
            log_warn("executor=%s event=message_dropped type=%s reason=\"not a message an executor sends\"",
                     p->executor_id, drover_msg_type_name(m.type));
        break;
    }
    drover_msg_clear(&m);
}

void
peers_recv(struct worker *w, void *sock)
{
    for (int i = 0; i < PEERS_RECV_BATCH; i++) {
        zmq_msg_t rid, body;
        int more;
        size_t more_len = sizeof more;

        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, sock, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close(&rid);
            return;
        }
        zmq_msg_init(&body);
        if (!zmq_msg_more(&rid) || zmq_msg_recv(&body, sock, ZMQ_DONTWAIT) == -1) {
            w->dropped_messages++;
            zmq_msg_close(&rid);
            zmq_msg_close(&body);
            continue;
        }
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len);
        if (more) {
            /* Discard the rest of a message with extra frames. */
            do {
                zmq_msg_t extra;

                zmq_msg_init(&extra);
                zmq_msg_recv(&extra, sock, 0);
                more = zmq_msg_more(&extra);
                zmq_msg_close(&extra);
            } while (more);
            w->dropped_messages++;
            if (peers_log_allowed())
                log_warn("event=message_dropped reason=\"more than one body frame\"");
        } else if (zmq_msg_size(&rid) <= sizeof ((struct peer *)0)->rid) {
            peers_handle(w, sock, zmq_msg_data(&rid), zmq_msg_size(&rid), zmq_msg_data(&body),
                         zmq_msg_size(&body));
        }
        zmq_msg_close(&rid);
        zmq_msg_close(&body);
    }
}

struct peer *
peers_pick(struct worker *w)
{
    struct peer *best = NULL;

    for (struct peer *p = w->peers; p; p = p->next) {
        if (p->state != PEER_LIVE || p->assigned >= p->capacity || strcmp(p->type, w->type) != 0)
            continue;
        /* Least loaded by share of capacity. */
        if (best == NULL || (uint64_t)p->assigned * best->capacity < (uint64_t)best->assigned * p->capacity)
            best = p;
    }
    return best;
}

static int
peers_newer_first(const void *a, const void *b)
{
    const struct peer *pa = *(struct peer *const *)a, *pb = *(struct peer *const *)b;

    if (pa->serial == pb->serial)
        return 0;
    return pa->serial < pb->serial ? 1 : -1;
}

/* Marks the live peers silent for more than liveness_ms as gone.  Only the
 * head of the queue is checked until it is a peer still within its time, so
 * a pass costs the same at any number of peers.  The peers expired together
 * are logged newest first, the order of w->peers. */
void
peers_expire(struct worker *w, int64_t now)
{
    static struct peer *expired[WORKER_MAX_PEERS];
    size_t n = 0;

    while (w->seen_head && now - w->seen_head->last_seen_ms > w->cfg.liveness_ms &&
           n < WORKER_MAX_PEERS) {
        expired[n] = w->seen_head;
        peers_set_gone(w, expired[n]);
        n++;
    }
    if (n > 1)
        qsort(expired, n, sizeof *expired, peers_newer_first);
    for (size_t i = 0; i < n; i++)
        log_warn("executor=%s event=expired silent_ms=%lld next=\"its runs crash unless it returns within %d s\"",
                 expired[i]->executor_id, (long long)(now - expired[i]->last_seen_ms),
                 w->cfg.lost_grace_ms / 1000);
}

/* Returns the milliseconds until the least recently seen live peer
 * expires (0 when overdue), or -1 when no peer is live. */
long
peers_timeout_ms(struct worker *w, int64_t now)
{
    long left;

    if (w->seen_head == NULL)
        return -1;
    left = (long)(w->seen_head->last_seen_ms + w->cfg.liveness_ms - now);
    return left < 0 ? 0 : left;
}

void
peers_free_all(struct worker *w)
{
    while (w->peers) {
        struct peer *p = w->peers;

        w->peers = p->next;
        free(p->executor_id);
        free(p->type);
        free(p->hostname);
        json_decref(p->schema);
        free(p);
    }
    w->npeers = 0;
    free(w->peers_by_rid);
    free(w->peers_by_id);
    w->peers_by_rid = w->peers_by_id = NULL;
    w->seen_head = w->seen_tail = NULL;
}

/* ---- sockets ----------------------------------------------------------- */

/* Only loopback TCP and ipc:// may go without CURVE. */
static int
peers_needs_curve(const char *endpoint)
{
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return strncmp(endpoint, "ipc://", 6) != 0;
    return !(strncmp(endpoint, "tcp://127.", 10) == 0 || strncmp(endpoint, "tcp://localhost:", 16) == 0 ||
             strncmp(endpoint, "tcp://[::1]:", 12) == 0);
}

static void
peers_socket_options(void *sock)
{
    int64_t maxmsg = (int64_t)DROVER_MAX_FRAME + 1024;
    int linger = 1000, mandatory = 1, hwm = 100000;

    /* Frames above the protocol's cap close the sender's connection. */
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
}

/* Reads the 40-character Z85 keys of a file, one a line.  A line whose
 * first character is '#' is a comment; '#' inside a line belongs to the
 * key, because Z85 uses it. */
static int
peers_read_keys(const char *path, json_t *keys, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[512];
    int lineno = 0;

    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *s = line, *e;
        unsigned char bin[32];

        lineno++;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '#')
            continue;
        for (e = s; *e && *e != '\n' && *e != '\r' && *e != ' ' && *e != '\t'; e++)
            ;
        *e = '\0';
        if (*s == '\0')
            continue;
        if (strlen(s) != 40 || zmq_z85_decode(bin, s) == NULL) {
            snprintf(err, errlen, "%s line %d: not a 40-character Z85 CURVE key", path, lineno);
            fclose(f);
            return -1;
        }
        json_array_append_new(keys, json_string(s));
    }
    fclose(f);
    if (json_array_size(keys) == 0) {
        snprintf(err, errlen, "%s contains no CURVE key", path);
        return -1;
    }
    return 0;
}

static int
peers_open_remote(struct worker *w, char *err, size_t errlen)
{
    int need_curve = 0;

    for (int i = 0; i < w->cfg.nbinds; i++)
        need_curve |= peers_needs_curve(w->cfg.binds[i]);
    if ((w->remote = zmq_socket(w->zctx, ZMQ_ROUTER)) == NULL) {
        snprintf(err, errlen, "cannot create the ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    peers_socket_options(w->remote);

    /* The ZAP handler exists whenever there is a remote socket, so a CURVE
     * handshake is always checked against the allow-list. */
    if ((w->zap = zmq_socket(w->zctx, ZMQ_REP)) == NULL ||
        zmq_bind(w->zap, "inproc://zeromq.zap.01") == -1) {
        snprintf(err, errlen, "cannot start the CURVE authentication handler: %s",
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    if (w->cfg.curve_secret_key_file) {
        json_t *secret = json_array();
        char public_key[41];
        int on = 1;

        if (w->cfg.curve_allow_file == NULL) {
            snprintf(err, errlen, "--curve-secret-key-file needs --curve-allow-file: list the executors' public keys");
            json_decref(secret);
            return -1;
        }
        w->curve_allow = json_array();
        if (peers_read_keys(w->cfg.curve_secret_key_file, secret, err, errlen) == -1 ||
            peers_read_keys(w->cfg.curve_allow_file, w->curve_allow, err, errlen) == -1) {
            json_decref(secret);
            return -1;
        }
        if (zmq_curve_public(public_key, json_string_value(json_array_get(secret, 0))) == -1) {
            snprintf(err, errlen, "%s: not a CURVE secret key", w->cfg.curve_secret_key_file);
            json_decref(secret);
            return -1;
        }
        zmq_setsockopt(w->remote, ZMQ_CURVE_SERVER, &on, sizeof on);
        zmq_setsockopt(w->remote, ZMQ_CURVE_SECRETKEY, json_string_value(json_array_get(secret, 0)), 40);
        zmq_setsockopt(w->remote, ZMQ_ZAP_DOMAIN, "drover", 6);
        json_decref(secret);   /* jansson frees the copy; the socket keeps its own */
        log_info("event=curve_enabled public_key=%s allowed_keys=%zu", public_key,
                 json_array_size(w->curve_allow));
    } else if (need_curve) {
        snprintf(err, errlen, "--bind %s accepts executors from other hosts, which needs CURVE: pass --curve-secret-key-file and --curve-allow-file (see 'drover keygen'), or bind tcp://127.0.0.1:PORT",
                 w->cfg.binds[0]);
        return -1;
    }
    for (int i = 0; i < w->cfg.nbinds; i++) {
        if (zmq_bind(w->remote, w->cfg.binds[i]) == -1) {
            snprintf(err, errlen, "cannot bind --bind %s: %s", w->cfg.binds[i],
                     zmq_strerror(zmq_errno()));
            return -1;
        }
        log_info("event=bound endpoint=%s curve=%s", w->cfg.binds[i],
                 w->cfg.curve_secret_key_file ? "on" : "off");
    }
    return 0;
}

int
peers_open(struct worker *w, char *err, size_t errlen)
{
    char dir[] = "/tmp/drover-XXXXXX";

    if ((w->zctx = zmq_ctx_new()) == NULL ||
        (w->router = zmq_socket(w->zctx, ZMQ_ROUTER)) == NULL) {
        snprintf(err, errlen, "cannot create the ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    peers_socket_options(w->router);

    /* The local socket lives in a private directory: only this user can connect. */
    if (mkdtemp(dir) == NULL) {
        snprintf(err, errlen, "cannot create a private directory for the executor socket: %s",
                 strerror(errno));
        return -1;
    }
    util_strlcpy(w->runtime_dir, dir, sizeof w->runtime_dir);
    snprintf(w->endpoint, sizeof w->endpoint, "ipc://%s/executors.sock", dir);
    if (zmq_bind(w->router, w->endpoint) == -1) {
        snprintf(err, errlen, "cannot bind %s: %s", w->endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    if (w->cfg.nbinds > 0 && peers_open_remote(w, err, errlen) == -1)
        return -1;
    return 0;
}

/* Answers one ZAP request (ZeroMQ RFC 27): CURVE clients must present an
 * allowed public key; anything else is refused. */
void
peers_zap(struct worker *w)
{
    char frames[7][256];
    size_t sizes[7];
    int nframes = 0, more = 1;
    const char *status = "400", *text = "key not allowed";
    char key[41] = "";

    while (more && nframes < 7) {
        int n = zmq_recv(w->zap, frames[nframes], sizeof frames[nframes], ZMQ_DONTWAIT);
        size_t more_len = sizeof more;

        if (n < 0)
            return;
        sizes[nframes] = (size_t)n < sizeof frames[nframes] ? (size_t)n : sizeof frames[nframes];
        nframes++;
        zmq_getsockopt(w->zap, ZMQ_RCVMORE, &more, &more_len);
    }
    while (more) {   /* a request with more frames than RFC 27 defines */
        char skip[16];
        size_t more_len = sizeof more;

        zmq_recv(w->zap, skip, sizeof skip, 0);
        zmq_getsockopt(w->zap, ZMQ_RCVMORE, &more, &more_len);
    }
    if (nframes >= 7 && sizes[5] == 5 && memcmp(frames[5], "CURVE", 5) == 0 && sizes[6] == 32 &&
        w->curve_allow) {
        size_t i;
        json_t *allowed;

        zmq_z85_encode(key, (const uint8_t *)frames[6], 32);
        json_array_foreach(w->curve_allow, i, allowed) {
            if (strcmp(json_string_value(allowed), key) == 0) {
                status = "200";
                text = "OK";
                break;
            }
        }
    } else if (nframes >= 6 && sizes[5] == 4 && memcmp(frames[5], "NULL", 4) == 0 &&
               w->curve_allow == NULL) {
        status = "200";   /* plaintext loopback binds */
        text = "OK";
    }
    if (strcmp(status, "200") != 0)
        log_warn("event=executor_refused mechanism=%.*s public_key=%s reason=\"%s\"",
                 nframes >= 6 ? (int)sizes[5] : 0, nframes >= 6 ? frames[5] : "", key, text);
    zmq_send(w->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(w->zap, frames[1], nframes >= 2 ? sizes[1] : 0, ZMQ_SNDMORE);
    zmq_send(w->zap, status, 3, ZMQ_SNDMORE);
    zmq_send(w->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(w->zap, key, strlen(key), ZMQ_SNDMORE);
    zmq_send(w->zap, "", 0, 0);
}

void
peers_close(struct worker *w)
{
    char path[600];

    if (w->router)
        zmq_close(w->router);
    if (w->remote)
        zmq_close(w->remote);
    if (w->zap)
        zmq_close(w->zap);
    if (w->zctx)
        zmq_ctx_term(w->zctx);
    json_decref(w->curve_allow);
    w->router = w->remote = w->zap = w->zctx = NULL;
    w->curve_allow = NULL;
    if (w->runtime_dir[0]) {
        snprintf(path, sizeof path, "%s/executors.sock", w->runtime_dir);
        unlink(path);
        rmdir(w->runtime_dir);
    }
}
