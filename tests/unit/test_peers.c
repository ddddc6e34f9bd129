/*
 * Unit test of the executor indexes in supervisor/peers.c: the tables by
 * (socket, routing id) and by executor id, and the queue of live peers by
 * last_seen_ms that expiry and the poll timeout read.
 *
 * The test includes peers.c to reach its static functions.  Messages go
 * through peers_handle() as the supervisor's loop would pass them, on two
 * real ROUTER sockets that are never bound, so replies are dropped.  Times
 * given to the queue are made up: nothing depends on the clock.
 */
#include "../../supervisor/peers.c"

#include <assert.h>

#define T_LIVENESS_MS 6000

static int failures;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* Stops the test when a pointer the next checks read is NULL. */
#define REQUIRE(cond)                                                       \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: required check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* The run table is not under test: peers.c's calls into it do nothing. */
void runs_adopt(struct worker *w, struct peer *p, const struct drover_run_entry *e) {}
void runs_peer_back(struct worker *w, struct peer *p) {}
void runs_on_started(struct worker *w, struct peer *p, const struct drover_started *m) {}
void runs_on_exited(struct worker *w, struct peer *p, const struct drover_exited *m) {}
void runs_on_log(struct worker *w, struct peer *p, const struct drover_log *m) {}

static void *t_ctx, *t_sock_a, *t_sock_b;

static void
t_worker_init(struct worker *w)
{
    memset(w, 0, sizeof *w);
    w->cfg.pool = "unit";
    w->cfg.ping_interval_ms = 2000;
    w->cfg.liveness_ms = T_LIVENESS_MS;
    w->cfg.lost_grace_ms = 30000;
    util_strlcpy(w->type, "process", sizeof w->type);
    util_strlcpy(w->name, "unit-supervisor", sizeof w->name);
}

static void
t_worker_free(struct worker *w)
{
    peers_free_all(w);
    json_decref(w->local_schema);
    w->local_schema = NULL;
}

static void
t_deliver(struct worker *w, void *sock, const unsigned char *rid, size_t rid_len,
          const struct drover_msg *m)
{
    char err[256], *buf = NULL;
    size_t len = 0;

    if (drover_msg_encode(m, &buf, &len, err, sizeof err) == -1) {
        fprintf(stderr, "encode failed: %s\n", err);
        abort();
    }
    peers_handle(w, sock, rid, rid_len, buf, len);
    free(buf);
}

static void
t_hello(struct worker *w, void *sock, const unsigned char *rid, size_t rid_len, const char *id)
{
    struct drover_msg m = {0};

    m.type = DROVER_MSG_HELLO;
    m.u.hello.executor_id = (char *)id;
    m.u.hello.type = "process";
    m.u.hello.capacity = 4;
    m.u.hello.schema = "{\"type\": \"process\", \"fields\": []}";
    m.u.hello.software = "unit";
    m.u.hello.hostname = "localhost";
    t_deliver(w, sock, rid, rid_len, &m);
}

static void
t_goodbye(struct worker *w, void *sock, const unsigned char *rid, size_t rid_len)
{
    struct drover_msg m = {0};

    m.type = DROVER_MSG_GOODBYE;
    m.u.goodbye.reason = "unit test";
    t_deliver(w, sock, rid, rid_len, &m);
}

static void
t_ping(struct worker *w, void *sock, const unsigned char *rid, size_t rid_len)
{
    struct drover_msg m = {0};

    m.type = DROVER_MSG_PING;
    m.u.ping.seq = 1;
    t_deliver(w, sock, rid, rid_len, &m);
}

/* A 5-byte routing id like the ones libzmq generates: 0 and a counter. */
static size_t
t_rid(unsigned char rid[5], uint32_t n)
{
    rid[0] = 0;
    memcpy(rid + 1, &n, 4);
    return 5;
}

/* The poll timeout and expiry as they were computed before the queue: a
 * walk of every peer on w->peers. */
static long
t_reference_timeout(struct worker *w, int64_t now)
{
    long best = -1;

    for (struct peer *p = w->peers; p; p = p->next) {
        long left;

        if (p->state != PEER_LIVE)
            continue;
        left = (long)(p->last_seen_ms + w->cfg.liveness_ms - now);
        if (left < 0)
            left = 0;
        if (best == -1 || left < best)
            best = left;
    }
    return best;
}

/* Checks that the queue contains exactly the live peers, in last_seen_ms order,
 * and that every live peer is found by its routing id. */
static void
t_check_invariants(struct worker *w)
{
    size_t live = 0, queued = 0;
    struct peer *prev = NULL;

    for (struct peer *p = w->peers; p; p = p->next) {
        if (p->state != PEER_LIVE)
            continue;
        live++;
        CHECK(peers_find_rid(w, p->sock, p->rid, p->rid_len) != NULL);
        CHECK(peers_find_id(w, p->executor_id) == p);
    }
    for (struct peer *p = w->seen_head; p; p = p->seen_next) {
        CHECK(p->state == PEER_LIVE);
        CHECK(p->seen_prev == prev);
        if (prev)
            CHECK(prev->last_seen_ms <= p->last_seen_ms);
        prev = p;
        queued++;
    }
    CHECK(w->seen_tail == prev);
    CHECK(queued == live);
}

static void
test_hello_find_goodbye(void)
{
    struct worker w;
    unsigned char rid[5];
    size_t len = t_rid(rid, 1);
    struct peer *p;

    t_worker_init(&w);
    CHECK(peers_find_id(&w, "exec-1") == NULL);
    CHECK(peers_find_rid(&w, t_sock_a, rid, len) == NULL);
    CHECK(peers_timeout_ms(&w, 0) == -1);

    t_hello(&w, t_sock_a, rid, len, "exec-1");
    p = peers_find_id(&w, "exec-1");
    REQUIRE(p != NULL);
    CHECK(w.npeers == 1);
    CHECK(p->state == PEER_LIVE);
    CHECK(peers_find_rid(&w, t_sock_a, rid, len) == p);
    CHECK(peers_find_rid(&w, t_sock_b, rid, len) == NULL);
    CHECK(peers_find_rid(&w, t_sock_a, rid, len - 1) == NULL);
    CHECK(w.seen_head == p);
    CHECK(w.seen_tail == p);

    t_ping(&w, t_sock_a, rid, len);
    CHECK(p->pings == 1);

    t_goodbye(&w, t_sock_a, rid, len);
    CHECK(p->state == PEER_GONE);
    CHECK(peers_find_rid(&w, t_sock_a, rid, len) == NULL);
    CHECK(peers_find_id(&w, "exec-1") == p);
    CHECK(w.seen_head == NULL);
    CHECK(w.seen_tail == NULL);
    CHECK(peers_timeout_ms(&w, 0) == -1);

    /* A PING without a session changes nothing. */
    t_ping(&w, t_sock_a, rid, len);
    CHECK(p->pings == 1);

    /* The same executor comes back: same peer, live again. */
    t_hello(&w, t_sock_a, rid, len, "exec-1");
    CHECK(peers_find_id(&w, "exec-1") == p);
    CHECK(w.npeers == 1);
    CHECK(peers_find_rid(&w, t_sock_a, rid, len) == p);
    t_check_invariants(&w);
    t_worker_free(&w);
}

static void
test_session_replaced(void)
{
    struct worker w;
    unsigned char rid1[5], rid2[5];
    size_t len1 = t_rid(rid1, 10), len2 = t_rid(rid2, 11);
    struct peer *p;

    t_worker_init(&w);
    t_hello(&w, t_sock_a, rid1, len1, "exec-1");
    p = peers_find_id(&w, "exec-1");
    t_hello(&w, t_sock_b, rid2, len2, "exec-1");
    CHECK(w.npeers == 1);
    CHECK(peers_find_rid(&w, t_sock_a, rid1, len1) == NULL);
    CHECK(peers_find_rid(&w, t_sock_b, rid2, len2) == p);
    CHECK(w.seen_head == p);
    CHECK(w.seen_tail == p);
    t_check_invariants(&w);
    t_worker_free(&w);
}

/* The same routing id on two sockets, and on one socket under two executor
 * ids: the newest peer created gets the messages, then the older one once
 * the newer is gone. */
static void
test_same_rid(void)
{
    struct worker w;
    unsigned char rid[5];
    size_t len = t_rid(rid, 7);
    struct peer *a, *b, *c;

    t_worker_init(&w);
    t_hello(&w, t_sock_a, rid, len, "exec-a");
    t_hello(&w, t_sock_b, rid, len, "exec-b");
    a = peers_find_id(&w, "exec-a");
    b = peers_find_id(&w, "exec-b");
    REQUIRE(a != NULL);
    REQUIRE(b != NULL);
    CHECK(a != b);
    CHECK(peers_find_rid(&w, t_sock_a, rid, len) == a);
    CHECK(peers_find_rid(&w, t_sock_b, rid, len) == b);

    t_hello(&w, t_sock_a, rid, len, "exec-c");
    c = peers_find_id(&w, "exec-c");
    REQUIRE(c != NULL);
    CHECK(peers_find_rid(&w, t_sock_a, rid, len) == c);

    /* exec-a sends HELLO again: it is still older than exec-c. */
    t_hello(&w, t_sock_a, rid, len, "exec-a");
    CHECK(peers_find_rid(&w, t_sock_a, rid, len) == c);

    t_goodbye(&w, t_sock_a, rid, len);
    CHECK(c->state == PEER_GONE);
    CHECK(peers_find_rid(&w, t_sock_a, rid, len) == a);
    CHECK(peers_find_rid(&w, t_sock_b, rid, len) == b);
    t_check_invariants(&w);
    t_worker_free(&w);
}

/* Many peers whose routing ids fall into one bucket, among many others. */
static void
test_colliding_rids(void)
{
    enum { COLLIDING = 40, OTHERS = 3000 };
    static uint32_t colliding[COLLIDING];
    struct worker w;
    unsigned char rid[5];
    char id[32];
    size_t len, target, n = 0;

    t_worker_init(&w);
    target = peers_rid_bucket(t_sock_a, rid, t_rid(rid, 0));
    for (uint32_t k = 1; n < COLLIDING; k++)
        if (peers_rid_bucket(t_sock_a, rid, t_rid(rid, k)) == target)
            colliding[n++] = k;

    for (size_t i = 0; i < COLLIDING; i++) {
        len = t_rid(rid, colliding[i]);
        snprintf(id, sizeof id, "collide-%zu", i);
        t_hello(&w, t_sock_a, rid, len, id);
    }
    for (uint32_t i = 0; i < OTHERS; i++) {
        len = t_rid(rid, 0x40000000u + i);
        snprintf(id, sizeof id, "other-%u", (unsigned)i);
        t_hello(&w, i % 2 ? t_sock_a : t_sock_b, rid, len, id);
    }
    CHECK(w.npeers == COLLIDING + OTHERS);
    for (size_t i = 0; i < COLLIDING; i++) {
        struct peer *p;

        len = t_rid(rid, colliding[i]);
        snprintf(id, sizeof id, "collide-%zu", i);
        p = peers_find_rid(&w, t_sock_a, rid, len);
        REQUIRE(p != NULL);
        CHECK(strcmp(p->executor_id, id) == 0);
        CHECK(peers_find_rid(&w, t_sock_b, rid, len) == NULL);
    }
    len = t_rid(rid, 0);
    CHECK(peers_find_rid(&w, t_sock_a, rid, len) == NULL);

    /* Remove every other colliding peer, from the middle of the chain too. */
    for (size_t i = 0; i < COLLIDING; i += 2) {
        len = t_rid(rid, colliding[i]);
        t_goodbye(&w, t_sock_a, rid, len);
    }
    for (size_t i = 0; i < COLLIDING; i++) {
        struct peer *p;

        len = t_rid(rid, colliding[i]);
        p = peers_find_rid(&w, t_sock_a, rid, len);
        if (i % 2 == 0) {
            CHECK(p == NULL);
        } else {
            snprintf(id, sizeof id, "collide-%zu", i);
            REQUIRE(p != NULL);
            CHECK(strcmp(p->executor_id, id) == 0);
        }
    }
    t_check_invariants(&w);
    t_worker_free(&w);
}

/* The queue order, the timeout and expiry on made-up times. */
static void
test_expiry_order(void)
{
    enum { N = 10 };
    struct worker w;
    struct peer *p[N];
    unsigned char rid[5];
    char id[32];
    int64_t base = 1000000;

    t_worker_init(&w);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "exec-%d", i);
        t_hello(&w, t_sock_a, rid, t_rid(rid, (uint32_t)i + 100), id);
        p[i] = peers_find_id(&w, id);
        REQUIRE(p[i] != NULL);
    }
    /* Seen in the order 9, 8, ..., 0, at base + 10 * (9 - i). */
    for (int i = N - 1; i >= 0; i--)
        peers_seen(&w, p[i], base + 10 * (N - 1 - i));
    CHECK(w.seen_head == p[N - 1]);
    CHECK(w.seen_tail == p[0]);
    CHECK(peers_timeout_ms(&w, base) == T_LIVENESS_MS);
    CHECK(peers_timeout_ms(&w, base + 5) == T_LIVENESS_MS - 5);
    CHECK(peers_timeout_ms(&w, base + T_LIVENESS_MS + 500) == 0);

    /* A time earlier than the tail's still lands in order. */
    peers_seen(&w, p[N - 1], base + 15);
    CHECK(w.seen_head == p[N - 2]);
    CHECK(p[N - 1]->seen_prev == p[N - 2]);
    CHECK(p[N - 1]->seen_next == p[N - 3]);
    t_check_invariants(&w);

    /* Expiry is strict: silent for exactly liveness_ms is still live. */
    peers_expire(&w, base + 10 + T_LIVENESS_MS);
    CHECK(p[N - 2]->state == PEER_LIVE);
    CHECK(peers_timeout_ms(&w, base + 10 + T_LIVENESS_MS) == 0);

    /* Expires 8 (seen at base + 10), 9 (base + 15) and 7 (base + 20). */
    peers_expire(&w, base + T_LIVENESS_MS + 20 + 1);
    CHECK(p[8]->state == PEER_GONE);
    CHECK(p[9]->state == PEER_GONE);
    CHECK(p[7]->state == PEER_GONE);
    CHECK(p[6]->state == PEER_LIVE);
    CHECK(w.seen_head == p[6]);
    CHECK(peers_find_rid(&w, t_sock_a, p[9]->rid, p[9]->rid_len) == NULL);
    CHECK(peers_find_id(&w, "exec-9") == p[9]);
    CHECK(peers_timeout_ms(&w, base + T_LIVENESS_MS + 21) == 9);
    t_check_invariants(&w);

    /* Everything expires at once: the queue and the table empty. */
    peers_expire(&w, base + 10 * T_LIVENESS_MS);
    for (int i = 0; i < N; i++) {
        CHECK(p[i]->state == PEER_GONE);
        CHECK(peers_find_rid(&w, t_sock_a, p[i]->rid, p[i]->rid_len) == NULL);
    }
    CHECK(w.seen_head == NULL);
    CHECK(w.seen_tail == NULL);
    CHECK(peers_timeout_ms(&w, base) == -1);
    for (size_t b = 0; b < PEERS_BUCKETS; b++)
        CHECK(w.peers_by_rid[b] == NULL);
    t_check_invariants(&w);
    t_worker_free(&w);
}

/* Random HELLO, PING, GOODBYE and expiry against the walk over every peer. */
static void
test_random_against_walk(void)
{
    enum { IDS = 300, STEPS = 20000 };
    struct worker w;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    int64_t now = 5000000;
    unsigned char rid[5];
    char id[32];

    t_worker_init(&w);
    for (int step = 0; step < STEPS; step++) {
        uint32_t k, op;
        struct peer *p;
        size_t len;
        void *sock;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        k = (uint32_t)(x % IDS);
        op = (uint32_t)((x >> 20) % 100);
        now += (int64_t)((x >> 40) % 300);
        snprintf(id, sizeof id, "exec-%u", (unsigned)k);
        sock = k % 3 ? t_sock_a : t_sock_b;
        len = t_rid(rid, k % 50);   /* shared routing ids, on purpose */
        p = peers_find_id(&w, id);

        if (op < 10) {
            t_hello(&w, sock, rid, len, id);
            if ((p = peers_find_id(&w, id)) != NULL)
                peers_seen(&w, p, now);
        } else if (op < 80) {
            if (p && p->state == PEER_LIVE)
                peers_seen(&w, p, now);
        } else if (op < 85) {
            if (p && p->state == PEER_LIVE)
                t_goodbye(&w, p->sock, p->rid, p->rid_len);
        } else {
            long expected = t_reference_timeout(&w, now);
            size_t live_before = 0, expected_gone = 0, live_after = 0;

            CHECK(peers_timeout_ms(&w, now) == expected);
            for (struct peer *q = w.peers; q; q = q->next) {
                if (q->state != PEER_LIVE)
                    continue;
                live_before++;
                if (now - q->last_seen_ms > w.cfg.liveness_ms)
                    expected_gone++;
            }
            peers_expire(&w, now);
            for (struct peer *q = w.peers; q; q = q->next) {
                if (q->state == PEER_LIVE) {
                    live_after++;
                    CHECK(now - q->last_seen_ms <= w.cfg.liveness_ms);
                }
            }
            CHECK(live_after == live_before - expected_gone);
        }
        if (step % 1000 == 0)
            t_check_invariants(&w);
    }
    t_check_invariants(&w);
    t_worker_free(&w);
}

int
main(void)
{
    log_set_level(LOG_ERROR);
    t_ctx = zmq_ctx_new();
    t_sock_a = zmq_socket(t_ctx, ZMQ_ROUTER);
    t_sock_b = zmq_socket(t_ctx, ZMQ_ROUTER);
    assert(t_ctx != NULL);
    assert(t_sock_a != NULL);
    assert(t_sock_b != NULL);

    test_hello_find_goodbye();
    test_session_replaced();
    test_same_rid();
    test_colliding_rids();
    test_expiry_order();
    test_random_against_walk();

    zmq_close(t_sock_a);
    zmq_close(t_sock_b);
    zmq_ctx_term(t_ctx);
    if (failures) {
        fprintf(stderr, "unit_peers: %d checks failed\n", failures);
        return 1;
    }
    printf("unit_peers: ok\n");
    return 0;
}
