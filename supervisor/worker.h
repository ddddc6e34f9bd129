/*
 * The supervisor: one process per work pool.  It heartbeats and polls the
 * Prefect API, claims scheduled flow runs, renders their job configuration,
 * hands them to executors over ZeroMQ and reports their states.
 *
 * Modules, in reading order:
 *   worker.c  the event loop, timers, signals, pool sync, heartbeat, poll
 *   runs.c    the run table and each run's pipeline: claim, render, submit,
 *             started, exited, reported
 *   peers.c   executors: HELLO, liveness, message dispatch, JOB and KILL
 *   spawn.c   local executor processes, restarted with backoff
 *   prefect.c the Prefect API calls the other modules make
 *   http.c    the non-blocking HTTP client under prefect.c
 */
#ifndef DROVER_WORKER_H
#define DROVER_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "drover/protocol.h"
#include "http.h"

#define WORKER_MAX_QUEUES   64
#define WORKER_MAX_BINDS    8
#define WORKER_MAX_PEERS    4096
#define WORKER_MAX_LOCAL    8

struct render_run;

struct worker_config {
    const char *pool;
    const char *type;             /* NULL: the pool's type, else "process" */
    const char *queues[WORKER_MAX_QUEUES];
    int         nqueues;
    const char *name;
    int         limit;            /* 0: unlimited */
    int         prefetch_s;
    int         run_once;
    double      heartbeat_s;
    double      query_s;
    const char *binds[WORKER_MAX_BINDS];
    int         nbinds;
    int         local_executors;  /* local executor processes to run, 0 = none */
    const char *executor_program; /* NULL: found by type */
    const char *state_dir;
    const char *api_url;
    const char *base_job_template_file;
    int         create_pool;
    int         trace;
    int         ping_interval_ms;
    int         liveness_ms;
    int         lost_grace_ms;    /* after an executor expires, before its runs crash */
    int         drain_s;
    int         run_labels;       /* PATCH the worker's labels onto each flow run */
    int         submitting_state; /* propose Pending "Submitting" before each start */
    const char *curve_secret_key_file;
    const char *curve_allow_file;
};

enum peer_state { PEER_LIVE, PEER_GONE };

struct cache_entry;

/* Every peer stays on the worker's list w->peers, newest first, until the
 * supervisor stops.  A live peer is also indexed by (sock, rid) and queued
 * by last_seen_ms, so finding a message's sender and expiring silent peers
 * cost the same at any number of executors (peers.c). */
struct peer {
    struct peer    *next;
    struct peer    *rid_next;     /* chain in w->peers_by_rid, live peers only */
    struct peer    *id_next;      /* chain in w->peers_by_id */
    struct peer    *seen_prev;    /* w->seen_head..seen_tail, live peers only, */
    struct peer    *seen_next;    /* least recently seen first */
    uint64_t        serial;       /* creation order, newest highest */
    void           *sock;         /* the socket its session runs on */
    unsigned char   rid[256];     /* ZeroMQ routing id */
    size_t          rid_len;
    char           *executor_id;
    char           *type;
    char           *hostname;
    uint32_t        capacity;
    uint32_t        assigned;     /* runs dispatched and not yet exited */
    json_t         *schema;
    enum peer_state state;
    int64_t         last_seen_ms;
    uint64_t        pings;
};

enum run_state {
    RUN_ADOPTING,     /* named by an executor; checking that it is this pool's */
    RUN_CLAIMING,     /* Pending proposed */
    RUN_FETCHING,     /* reading deployment and flow */
    RUN_RESOLVING,    /* reading blocks and variables */
    RUN_SUBMITTING,   /* labels and Submitting sent */
    RUN_DISPATCHED,   /* JOB sent, waiting for STARTED */
    RUN_STARTED,      /* infrastructure running */
    RUN_REPORTING,    /* final state being reported */
    RUN_DONE          /* to be released at the end of the loop pass */
};

struct run {
    struct run     *next;
    char            id[DROVER_UUID_LEN + 1];
    char           *name;
    enum run_state  state;
    json_t         *flow_run;     /* as polled */
    json_t         *deployment;
    json_t         *flow;
    struct render_run *render;    /* the configuration while it is rendered */
    char           *config;       /* rendered job configuration, JSON text */
    size_t          config_len;
    json_t         *found;        /* block data or variable values read, by key */
    int             waiting;      /* API replies outstanding in this state */
    int             refs;         /* callbacks holding this run */
    int             failed;       /* a fetch in this state failed: see error */
    char           *error;
    char           *executor_id;  /* executor the JOB went to */
    char           *identifier;
    int64_t         exit_code;
    int64_t         lost_at_ms;   /* executor gone since; 0 = not lost */
    int64_t         missing_ms;   /* left out of its executor's inventory since; 0 = not */
    int             adopt_exited; /* RUN_ADOPTING: the executor reported the run ended */
    int64_t         claimed_ms;
    int             cancelling;   /* KILL sent because the run is CANCELLING */
    int             adopted;      /* learned from an executor's inventory */
    int             holds_slot;   /* counts against --limit */
    int             exit_pending; /* EXITED to acknowledge once reported */
    int             resend_checked; /* listed in the HELLO being handled */
};

struct worker {
    struct worker_config cfg;
    struct http   *http;
    void          *zctx;
    void          *router;           /* local executors, ipc:// */
    void          *remote;           /* --bind endpoints, CURVE unless loopback; may be NULL */
    void          *zap;              /* ZAP handler checking CURVE keys; may be NULL */
    json_t        *curve_allow;      /* z85 public keys allowed to connect to remote */
    char           endpoint[512];    /* local ipc:// endpoint */
    char           runtime_dir[400];
    char           name[128];
    char           type[DROVER_MAX_TYPE + 1];
    char           pool_id[DROVER_UUID_LEN + 1];
    json_t        *pool;             /* last pool read */
    json_t        *local_schema;     /* declared schema of the local executor type */
    char           prefect_version[64];
    json_t        *settings_env;     /* PREFECT_* passed to runs */
    char          *executor_program; /* found by type when not configured */

    struct peer   *peers;
    size_t         npeers;
    struct peer  **peers_by_rid;     /* hash buckets of live peers; see peers.c */
    struct peer  **peers_by_id;      /* hash buckets of every peer by executor_id */
    struct peer   *seen_head;        /* live peer seen least recently */
    struct peer   *seen_tail;        /* live peer seen most recently */
    uint64_t       peer_serial;      /* serial of the last peer created */
    struct run    *runs;
    size_t         nruns;
    size_t         inflight;         /* runs holding a --limit slot */

    int            synced;           /* pool read or created at least once */
    int            started;          /* start-up checks passed */
    int            stopping;         /* 1: draining, 2: leave now */
    int            exit_code;
    int            run_once_polled;
    int            backlog;          /* the last poll returned a full page */
    int64_t        backlog_due_ms;   /* earliest time to poll that backlog again */
    int            sync_busy;
    int            poll_busy;
    int            cancel_busy;
    int64_t        next_sync_ms;
    int64_t        next_poll_ms;
    int64_t        next_cancel_ms;
    int64_t        next_flush_ms;
    int64_t        drain_deadline_ms;
    uint64_t       dropped_messages;
    long           retry_after_s;    /* Retry-After of the reply being handled, -1 if none */

    json_t        *log_batch;        /* pending /logs/ entries */
    size_t         log_batch_bytes;
    int            log_busy;
    uint64_t       dropped_logs;

    int            sigpipe[2];
    struct cache_entry *cache;       /* deployments and flows, see cache.h */
};

/* worker.c */
int  worker_run(struct worker *w);
void worker_fatal_startup(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
size_t worker_free_slots(struct worker *w);

/* main.c */
char *worker_find_executor(const char *type);
int   executor_list(void);

/* runs.c */
struct run *runs_find(struct worker *w, const char *id);
int  runs_offer(struct worker *w, json_t *flow_run);
void runs_on_started(struct worker *w, struct peer *p, const struct drover_started *m);
void runs_on_exited(struct worker *w, struct peer *p, const struct drover_exited *m);
void runs_on_log(struct worker *w, struct peer *p, const struct drover_log *m);
void runs_adopt(struct worker *w, struct peer *p, const struct drover_run_entry *e);
void runs_check_lost(struct worker *w, int64_t now);
void runs_peer_back(struct worker *w, struct peer *p);
void runs_dispatch_waiting(struct worker *w);
void runs_reap(struct worker *w);
void runs_cancel_check(struct worker *w);
void runs_log(struct worker *w, const char *flow_run_id, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void runs_flush_logs(struct worker *w);
void runs_queue_log(struct worker *w, const char *flow_run_id, int level, const char *message,
                    const char *stamp);
void runs_ack_exit(struct worker *w, struct run *r);
void runs_free_all(struct worker *w);

/* peers.c */
int  peers_open(struct worker *w, char *err, size_t errlen);
void peers_close(struct worker *w);
void peers_recv(struct worker *w, void *sock);
void peers_zap(struct worker *w);
struct peer *peers_pick(struct worker *w);
struct peer *peers_find_id(struct worker *w, const char *executor_id);
int  peers_send(struct worker *w, struct peer *p, const struct drover_msg *m);
void peers_expire(struct worker *w, int64_t now);
long peers_timeout_ms(struct worker *w, int64_t now);
void peers_free_all(struct worker *w);

/* spawn.c */
int  spawn_init(struct worker *w, char *err, size_t errlen);
void spawn_check(struct worker *w, int64_t now);
long spawn_timeout_ms(struct worker *w, int64_t now);
void spawn_reap(struct worker *w);
void spawn_stop_all(struct worker *w);
int  spawn_running(struct worker *w);

#endif
