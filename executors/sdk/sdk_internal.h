/*
 * Internal state of the executor SDK, shared by its files:
 *   main.c     options, signals, start-up and shutdown
 *   loop.c     the event loop and the protocol dialog with the supervisor
 *   runs.c     the run table, the calls authors make on runs, run records
 *   describe.c the declared schema
 *   text.c     logging, UTF-8 cleaning, command splitting
 */
#ifndef DROVER_SDK_INTERNAL_H
#define DROVER_SDK_INTERNAL_H

#include <signal.h>
#include <stdint.h>

#include "drover/executor.h"
#include "drover/protocol.h"

/* STARTED and EXITED are resent until acknowledged: first after one ping
 * interval, then at doubling intervals up to this maximum (never more often
 * than once per ping interval). */
#define SDK_RESEND_MAX_MS 30000

/* Without WELCOME or REJECT this long after HELLO, the socket is closed and a
 * new one says HELLO after a pause that starts at SDK_RETRY_FIRST_MS and
 * doubles up to SDK_RETRY_MAX_MS. */
#define SDK_HELLO_TIMEOUT_MS 10000
#define SDK_RETRY_FIRST_MS   1000
#define SDK_RETRY_MAX_MS     30000

/* libzmq's own reconnect backoff for the DEALER socket. */
#define SDK_RECONNECT_IVL_MS     100
#define SDK_RECONNECT_IVL_MAX_MS 5000

/* Messages read from the socket in one loop pass, so that run fds and
 * timers are served even under a flood. */
#define SDK_MAX_RECV_PER_PASS 256

enum sdk_run_state {
    SDK_RUN_STARTING,   /* start returned DROVER_START_PENDING */
    SDK_RUN_STARTED,
    SDK_RUN_EXITED
};

struct sdk_logbuf {
    char  *data;
    size_t len;
    size_t cap;
};

struct drover_run {
    struct drover_executor *ex;
    struct drover_run *next;
    char     flow_run_id[DROVER_UUID_LEN + 1];
    char     identifier[DROVER_MAX_IDENTIFIER + 1];
    enum sdk_run_state state;
    int      started_acked;
    int64_t  code;
    char    *error;           /* EXITED error, NULL when the run ran */
    int      kill_pending;    /* KILL arrived while starting */
    unsigned kill_grace;
    void    *data;
    int      fds[DROVER_MAX_RUN_FDS];
    int      n_fds;
    int64_t  timer_at;        /* monotonic ms, 0 when disarmed */
    int64_t  resend_at;       /* monotonic ms of the next STARTED/EXITED resend */
    int64_t  resend_ms;
    struct sdk_logbuf logs[2];
    int      dead;            /* forgotten; freed at the end of the loop pass */
};

enum sdk_conn_state {
    SDK_PAUSED,       /* no socket, waiting until retry_at to say HELLO again */
    SDK_CONNECTING,   /* HELLO sent, waiting for WELCOME */
    SDK_READY         /* welcomed */
};

struct drover_executor {
    const struct drover_executor_ops *ops;
    const char *argv0;
    char     id[DROVER_MAX_NAME + 1];
    char     type[DROVER_MAX_TYPE + 1];
    char     hostname[DROVER_MAX_NAME + 1];
    char     supervisor_id[DROVER_MAX_NAME + 1];
    char    *endpoint;
    unsigned capacity;
    char    *state_dir;       /* <base>/<id> */
    int      lock_fd;
    int      locked;          /* this executor holds the state directory's lock */
    int      trace;
    int      curve;
    char     curve_server[41];
    char     curve_secret[41];
    char     curve_public[41];
    char    *schema_text;

    void    *zctx;
    void    *sock;
    enum sdk_conn_state conn;
    int64_t  hello_deadline;
    int64_t  retry_at;
    int64_t  retry_ms;
    uint32_t ping_ms;
    uint32_t liveness_ms;
    int64_t  next_ping;
    int64_t  last_rx;
    uint64_t ping_seq;

    int      signal_pipe[2];
    int      stop;
    int      exit_status;

    struct drover_run *runs;
    unsigned long malformed;
    unsigned long logs_dropped;
    unsigned long send_failures;
};

/* main.c */
int64_t sdk_now_ms(void);

/* loop.c */
int  sdk_loop_run(struct drover_executor *ex);
int  sdk_send_started(struct drover_executor *ex, struct drover_run *run);
int  sdk_send_exited(struct drover_executor *ex, struct drover_run *run);
int  sdk_send_log(struct drover_executor *ex, struct drover_run *run, int stream, char *line);
void sdk_schedule_resend(struct drover_run *run);

/* runs.c */
struct drover_run *sdk_run_new(struct drover_executor *ex, const char *flow_run_id);
struct drover_run *sdk_run_find(struct drover_executor *ex, const char *flow_run_id);
void     sdk_run_free(struct drover_run **run);
void     sdk_run_forget(struct drover_run *run);
void     sdk_runs_sweep(struct drover_executor *ex);
void     sdk_runs_release_all(struct drover_executor *ex);
unsigned sdk_runs_active(const struct drover_executor *ex);
unsigned sdk_runs_held(const struct drover_executor *ex);
int      sdk_run_save(struct drover_run *run);
int      sdk_runs_recover(struct drover_executor *ex);
void     sdk_run_set_started(struct drover_run *run, const char *identifier);
int      sdk_valid_flow_run_id(const char *id);

/* text.c */
void sdk_logf(const struct drover_executor *ex, const struct drover_run *run, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* DROVER_SDK_INTERNAL_H */
