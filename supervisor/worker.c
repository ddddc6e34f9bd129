/*
 * The supervisor's event loop and its periodic work: pool sync, heartbeat,
 * poll, cancellation checks and log flushes.
 *
 * One zmq_poll per pass watches the ROUTER sockets, the signal pipe and
 * libcurl's sockets.  Its timeout is the earliest deadline of any timer, so
 * the loop never blocks on the API and never sleeps past work that is due.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "log.h"
#include "prefect.h"
#include "render.h"
#include "util.h"
#include "worker.h"
#include "drover/version.h"

#define WORKER_POLL_ITEMS 260
#define WORKER_MAX_POLL_LIMIT 200   /* the API's maximum for get_scheduled_flow_runs */

/* Maximum runs between the claim and the JOB at one time.  More claims would
 * only queue for libcurl's 16 connections and delay the runs already claimed.
 * The rest of a backlog is polled as these move on. */
#define WORKER_MAX_PIPELINE 48

static int signal_fd = -1;

static void
worker_on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    int saved = errno;

    if (signal_fd != -1)
        (void)!write(signal_fd, &b, 1);
    errno = saved;
}

static int
worker_signals(struct worker *w)
{
    struct sigaction sa;

    if (pipe(w->sigpipe) == -1)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(w->sigpipe[i], F_SETFL, fcntl(w->sigpipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(w->sigpipe[i], F_SETFD, FD_CLOEXEC);
    }
    signal_fd = w->sigpipe[1];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = worker_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

void
worker_fatal_startup(struct worker *w, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_error("event=startup_failed reason=\"%s\"", line);
    fprintf(stderr, "drover: %s\n", line);
    w->exit_code = 1;
    w->stopping = 2;
}

size_t
worker_free_slots(struct worker *w)
{
    size_t free_capacity = 0;
    size_t waiting = 0;
    size_t slots;

    for (struct peer *p = w->peers; p; p = p->next)
        if (p->state == PEER_LIVE && strcmp(p->type, w->type) == 0 && p->assigned < p->capacity)
            free_capacity += p->capacity - p->assigned;
    /* Runs claimed but not yet handed to an executor will take capacity too. */
    for (struct run *r = w->runs; r; r = r->next)
        if (r->state < RUN_DISPATCHED || (r->state == RUN_DISPATCHED && r->executor_id == NULL))
            waiting++;
    slots = free_capacity > waiting ? free_capacity - waiting : 0;
    {
        size_t room = waiting < WORKER_MAX_PIPELINE ? WORKER_MAX_PIPELINE - waiting : 0;

        if (slots > room)
            slots = room;
    }
    if (w->cfg.limit > 0) {
        size_t left = (size_t)w->cfg.limit > w->inflight ? (size_t)w->cfg.limit - w->inflight : 0;

        if (left < slots)
            slots = left;
    }
    return slots;
}

/* ---- pool sync and heartbeat ---------------------------------------- */

static void worker_heartbeat(struct worker *w);

static void
worker_heartbeat_done(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    w->sync_busy = 0;
    if (status == 204 || status == 200) {
        log_debug("event=heartbeat_sent pool=%s", w->cfg.pool);
        return;
    }
    /* Without a heartbeat the server shows no worker: retry soon. */
    if (w->cfg.heartbeat_s > 2)
        w->next_sync_ms = util_now_ms() + util_jittered(2000, 0.2);
    log_warn("event=heartbeat_failed pool=%s status=%ld error=\"%s%s\" next=\"retrying in %.0f s\"",
             w->cfg.pool, status, error ? error : "", prefect_error_detail(body),
             w->cfg.heartbeat_s > 2 ? 2.0 : w->cfg.heartbeat_s);
}

static void
worker_heartbeat(struct worker *w)
{
    char path[1200];
    json_t *body;

    if (prefect_pool_path(w, "/workers/heartbeat", path, sizeof path) == -1)
        return;
    body = json_pack("{s:s, s:i}", "name", w->name, "heartbeat_interval_seconds",
                     (int)w->cfg.heartbeat_s);
    w->sync_busy = 1;
    if (body == NULL || prefect_call(w, "POST", path, body, 3, worker_heartbeat_done, NULL) == -1)
        w->sync_busy = 0;
}

/* Stores the pool read or created; checks its type on the first sync. */
static int
worker_take_pool(struct worker *w, json_t *pool)
{
    const char *type = json_string_value(json_object_get(pool, "type"));
    const char *id = json_string_value(json_object_get(pool, "id"));
    const json_t *template = json_object_get(pool, "base_job_template");

    if (type == NULL || id == NULL || !json_is_object(template)) {
        log_warn("event=pool_reply_invalid pool=%s reason=\"missing type, id or base_job_template\"",
                 w->cfg.pool);
        return -1;
    }
    if (!w->started && w->cfg.type && strcmp(type, w->cfg.type) != 0) {
        worker_fatal_startup(w, "work pool '%s' has type '%s' but this worker was started with --type %s; start drover with --type %s or use a pool of type '%s'",
                             w->cfg.pool, type, w->cfg.type, type, w->cfg.type);
        return -1;
    }
    if (w->started && strcmp(type, w->type) != 0)
        log_warn("event=pool_type_changed pool=%s type=%s worker_type=%s", w->cfg.pool, type, w->type);
    if (json_object_size(template) > 0) {
        char err[512];

        if (render_check_template(template, err, sizeof err) == -1) {
            if (!w->started) {
                worker_fatal_startup(w, "the base job template of work pool '%s' is invalid: %s; fix it with 'prefect work-pool update --base-job-template FILE %s'",
                                     w->cfg.pool, err, w->cfg.pool);
                return -1;
            }
            log_error("event=pool_template_invalid pool=%s reason=\"%s\" next=\"keeping the last valid template\"",
                      w->cfg.pool, err);
            return 0;
        }
    }
    json_decref(w->pool);
    w->pool = json_incref(pool);
    util_strlcpy(w->pool_id, id, sizeof w->pool_id);
    return 0;
}

static json_t *
worker_default_template(struct worker *w, char *err, size_t errlen)
{
    if (w->cfg.base_job_template_file) {
        json_error_t jerr;
        json_t *t = json_load_file(w->cfg.base_job_template_file, 0, &jerr);
        char why[512];

        if (t == NULL) {
            snprintf(err, errlen, "cannot read --base-job-template %s: line %d: %s",
                     w->cfg.base_job_template_file, jerr.line, jerr.text);
            return NULL;
        }
        if (render_check_template(t, why, sizeof why) == -1) {
            snprintf(err, errlen, "--base-job-template %s is invalid: %.400s",
                     w->cfg.base_job_template_file, why);
            json_decref(t);
            return NULL;
        }
        return t;
    }
    if (w->local_schema == NULL) {
        snprintf(err, errlen, "no executor of type '%s' has described its job configuration yet", w->type);
        return NULL;
    }
    return render_default_template(w->local_schema, err, errlen);
}

static void worker_started(struct worker *w);

static void
worker_pool_created(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    w->sync_busy = 0;
    if (status == 201 && json_is_object(body)) {
        log_info("event=pool_created pool=%s type=%s", w->cfg.pool, w->type);
        if (worker_take_pool(w, body) == 0) {
            worker_started(w);
            worker_heartbeat(w);
        }
        return;
    }
    if (status == 409) {   /* another worker created it first: read it on the next sync */
        w->next_sync_ms = util_now_ms();
        return;
    }
    if (w->pool == NULL && status >= 400 && status < 500 && status != 408 && status != 429) {
        worker_fatal_startup(w, "cannot create work pool '%s': the API returned HTTP %ld: %s; check the base job template%s%s",
                             w->cfg.pool, status, prefect_error_detail(body),
                             w->cfg.base_job_template_file ? " in " : "",
                             w->cfg.base_job_template_file ? w->cfg.base_job_template_file : "");
        return;
    }
    log_error("event=pool_create_failed pool=%s status=%ld error=\"%s%s\"", w->cfg.pool, status,
              error ? error : "", prefect_error_detail(body));
}

static void
worker_create_pool(struct worker *w)
{
    char err[512];
    json_t *template = worker_default_template(w, err, sizeof err);
    json_t *body;

    if (template == NULL) {
        if (w->local_schema == NULL && !w->cfg.base_job_template_file) {
            log_info("event=pool_missing pool=%s next=\"creating it once an executor of type %s connects\"",
                     w->cfg.pool, w->type);
            w->next_sync_ms = util_now_ms() + 500;
            return;
        }
        worker_fatal_startup(w, "cannot create work pool '%s': %s", w->cfg.pool, err);
        return;
    }
    body = json_pack("{s:s, s:s, s:o}", "name", w->cfg.pool, "type", w->type,
                     "base_job_template", template);
    w->sync_busy = 1;
    if (body == NULL || prefect_call(w, "POST", "/work_pools/", body, 3, worker_pool_created, NULL) == -1)
        w->sync_busy = 0;
}

static void
worker_pool_patched(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    if (status != 204 && status != 200)
        log_warn("event=pool_template_not_set pool=%s status=%ld error=\"%s%s\"", w->cfg.pool,
                 status, error ? error : "", prefect_error_detail(body));
    else
        log_info("event=pool_template_set pool=%s", w->cfg.pool);
    w->next_sync_ms = util_now_ms();
}

/* A pool created with an empty template gets the default one, as Prefect's workers do. */
static void
worker_fill_template(struct worker *w)
{
    char err[512];
    char path[1200];
    json_t *template = worker_default_template(w, err, sizeof err);
    json_t *body;

    if (template == NULL) {
        log_info("event=pool_template_empty pool=%s reason=\"%s\" next=retry", w->cfg.pool, err);
        return;
    }
    if (prefect_pool_path(w, "", path, sizeof path) == -1) {
        json_decref(template);
        return;
    }
    body = json_pack("{s:o}", "base_job_template", template);
    if (body)
        prefect_call(w, "PATCH", path, body, 3, worker_pool_patched, NULL);
}

static void
worker_pool_read(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    w->sync_busy = 0;
    if (status == 200 && !json_is_object(body)) {
        if (!w->started) {
            worker_fatal_startup(w, "cannot read work pool '%s': %s", w->cfg.pool,
                                 error ? error : "the reply is not a JSON object");
            return;
        }
        log_error("event=pool_read_failed pool=%s reason=\"%s\" next=\"keeping the last pool read\"",
                  w->cfg.pool, error ? error : "the reply is not a JSON object");
        return;
    }
    if (status == 200) {
        if (!w->cfg.type && !w->started) {
            const char *type = json_string_value(json_object_get(body, "type"));

            if (type && w->type[0] == '\0')
                util_strlcpy(w->type, type, sizeof w->type);
        }
        if (worker_take_pool(w, body) == -1)
            return;
        if (json_object_size(json_object_get(w->pool, "base_job_template")) == 0)
            worker_fill_template(w);
        worker_started(w);
        worker_heartbeat(w);
        return;
    }
    if (status == 404) {
        if (!w->cfg.create_pool) {
            if (!w->started)
                worker_fatal_startup(w, "work pool '%s' was not found; create it or drop --no-create-pool-if-not-found",
                                     w->cfg.pool);
            else
                log_error("event=pool_missing pool=%s next=\"retrying at the next heartbeat\"", w->cfg.pool);
            return;
        }
        if (w->type[0] == '\0')
            util_strlcpy(w->type, "process", sizeof w->type);
        worker_started(w);
        worker_create_pool(w);
        return;
    }
    if (!w->started) {
        if (status == 0) {
            worker_fatal_startup(w, "cannot reach the Prefect API at %s: %s; check PREFECT_API_URL and that the server is running",
                                 w->cfg.api_url, error ? error : "no response");
            return;
        }
        if (status == 401 || status == 403) {
            worker_fatal_startup(w, "the Prefect API at %s rejected the credentials (HTTP %ld); check PREFECT_API_KEY or PREFECT_API_AUTH_STRING",
                                 w->cfg.api_url, status);
            return;
        }
        if (status < 500 && status != 408 && status != 429) {
            worker_fatal_startup(w, "the Prefect API at %s returned HTTP %ld for work pool '%s': %s; check PREFECT_API_URL (it usually ends in /api)",
                                 w->cfg.api_url, status, w->cfg.pool, prefect_error_detail(body));
            return;
        }
    }
    log_warn("event=pool_read_failed pool=%s status=%ld error=\"%s%s\" next=\"retrying in %.0f s\"",
             w->cfg.pool, status, error ? error : "", prefect_error_detail(body), w->cfg.heartbeat_s);
}

static void
worker_sync(struct worker *w)
{
    char path[1200];

    if (prefect_pool_path(w, "", path, sizeof path) == -1) {
        worker_fatal_startup(w, "work pool name '%s' is too long", w->cfg.pool);
        return;
    }
    w->sync_busy = 1;
    /* The first read fails fast so that a wrong URL is reported at once. */
    if (prefect_call(w, "GET", path, NULL, w->started ? 3 : 2, worker_pool_read, NULL) == -1)
        w->sync_busy = 0;
}

/* ---- start-up and the local executor -------------------------------- */

static void
worker_got_version(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    if (status == 200 && json_is_string(body)) {
        util_strlcpy(w->prefect_version, json_string_value(body), sizeof w->prefect_version);
        log_info("event=server_version version=%s", w->prefect_version);
        if (atoi(w->prefect_version) < 3) {
            log_error("event=server_unsupported version=%s reason=\"drover needs a Prefect 3 server\"",
                      w->prefect_version);
            fprintf(stderr, "drover: the Prefect server at %s runs version %s; drover needs Prefect 3.x\n",
                    w->cfg.api_url, w->prefect_version);
            w->exit_code = 1;
            w->stopping = 2;
        }
    }
}

static void
worker_started(struct worker *w)
{
    char err[768];

    if (w->started)
        return;
    w->started = 1;
    w->synced = 1;
    if (w->type[0] == '\0')
        util_strlcpy(w->type, "process", sizeof w->type);
    if (w->cfg.local_executors > 0 && w->cfg.executor_program == NULL) {
        if (strspn(w->type, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(w->type)) {
            worker_fatal_startup(w, "work pool '%s' has type '%s', which is not a valid executor type (a-z, 0-9, _ and -); serve it with --no-local-executor and --bind, or use another pool",
                                 w->cfg.pool, w->type);
            return;
        }
        if ((w->executor_program = worker_find_executor(w->type)) == NULL) {
            worker_fatal_startup(w, "no executor program for type '%s': drover-executor-%s was not found in %s, beside drover or on PATH; install one, or start drover with --no-local-executor and connect executors to --bind",
                                 w->type, w->type, DROVER_LIBEXECDIR);
            return;
        }
        w->cfg.executor_program = w->executor_program;
    }
    if (spawn_init(w, err, sizeof err) == -1) {
        worker_fatal_startup(w, "%s", err);
        return;
    }
    prefect_call(w, "GET", "/admin/version", NULL, 3, worker_got_version, NULL);
    log_info("event=worker_started name=\"%s\" pool=%s type=%s endpoint=%s limit=%d",
             w->name, w->cfg.pool, w->type, w->endpoint, w->cfg.limit);
}

/* ---- poll ------------------------------------------------------------ */

static void
worker_polled(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    size_t requested = (size_t)(uintptr_t)arg;
    size_t offered = 0;
    size_t i;
    json_t *item;

    w->poll_busy = 0;
    if (status != 200 || !json_is_array(body)) {
        if (w->retry_after_s > 0) {
            /* The server asked for a pause: the next poll waits for it. */
            w->next_poll_ms = util_now_ms() + (int64_t)w->retry_after_s * 1000;
        }
        if (status == 404)
            log_warn("event=poll_failed pool=%s reason=\"work pool or queue not found: %s\"",
                     w->cfg.pool, prefect_error_detail(body));
        else
            log_warn("event=poll_failed pool=%s status=%ld error=\"%s%s\"", w->cfg.pool, status,
                     error ? error : "", prefect_error_detail(body));
        return;
    }
    if (json_array_size(body) > 0)
        log_debug("event=polled pool=%s runs=%zu", w->cfg.pool, json_array_size(body));
    json_array_foreach(body, i, item) {
        json_t *fr = json_object_get(item, "flow_run");

        if (!json_is_object(fr))
            continue;
        if (worker_free_slots(w) == 0)
            break;
        offered += runs_offer(w, fr) == 0;
    }
    /* A full page means more runs are waiting: ask again as soon as slots
     * are free instead of after the query interval. */
    w->backlog = json_array_size(body) >= requested && !w->cfg.run_once;
    /* A page of runs already being claimed waits a moment for the claims
     * to reach the server before asking again. */
    w->backlog_due_ms = util_now_ms() + (offered > 0 ? 0 : 250);
}

static void
worker_poll(struct worker *w)
{
    size_t slots = worker_free_slots(w);
    char path[1200];
    char before[40];
    json_t *queues, *body;

    if (slots == 0 || w->poll_busy)
        return;
    if (slots > WORKER_MAX_POLL_LIMIT)
        slots = WORKER_MAX_POLL_LIMIT;
    if (prefect_pool_path(w, "/get_scheduled_flow_runs", path, sizeof path) == -1)
        return;
    if ((queues = json_array()) == NULL)
        return;
    for (int i = 0; i < w->cfg.nqueues; i++)
        json_array_append_new(queues, json_string(w->cfg.queues[i]));
    util_iso_time(before, sizeof before, w->cfg.prefetch_s);
    body = json_pack("{s:o, s:s, s:i}", "work_queue_names", queues, "scheduled_before", before,
                     "limit", (int)slots);
    w->poll_busy = 1;
    w->run_once_polled = 1;
    if (body == NULL ||
        prefect_call(w, "POST", path, body, 1, worker_polled, (void *)(uintptr_t)slots) == -1)
        w->poll_busy = 0;
}

/* ---- the loop -------------------------------------------------------- */

static void
worker_handle_signals(struct worker *w)
{
    unsigned char sigs[64];
    ssize_t n;

    while ((n = read(w->sigpipe[0], sigs, sizeof sigs)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (sigs[i] == SIGCHLD) {
                spawn_reap(w);
                continue;
            }
            if (w->stopping == 0 && !w->started) {
                w->stopping = 2;
                log_info("event=stopping signal=%d reason=\"signal during start-up\"", sigs[i]);
            } else if (w->stopping == 0) {
                w->stopping = 1;
                w->drain_deadline_ms = util_now_ms() + (int64_t)w->cfg.drain_s * 1000;
                log_info("event=draining signal=%d next=\"no new claims; stopping once submissions finish (send it again to stop now)\"",
                         sigs[i]);
            } else {
                w->stopping = 2;
                log_info("event=stopping signal=%d reason=\"second signal\"", sigs[i]);
            }
        }
    }
}

/* True when a drain has nothing left to wait for. */
static int
worker_drained(struct worker *w)
{
    for (struct run *r = w->runs; r; r = r->next)
        if (r->state < RUN_STARTED || r->state == RUN_REPORTING)
            return 0;
    return http_pending(w->http) == 0 && (w->log_batch == NULL || json_array_size(w->log_batch) == 0);
}

static void
worker_timers(struct worker *w, int64_t now)
{
    if (w->stopping == 0 && now >= w->next_sync_ms) {
        w->next_sync_ms = now + util_jittered((int64_t)(w->cfg.heartbeat_s * 1000), 0.1);
        if (!w->sync_busy)
            worker_sync(w);
    }
    if (w->backlog && !w->poll_busy && now >= w->backlog_due_ms && worker_free_slots(w) > 0) {
        w->backlog = 0;
        w->next_poll_ms = now;
    }
    if (w->stopping == 0 && w->synced && w->pool && now >= w->next_poll_ms &&
        json_object_size(json_object_get(w->pool, "base_job_template")) > 0 &&
        !(w->cfg.run_once && w->run_once_polled)) {
        w->next_poll_ms = now + util_jittered((int64_t)(w->cfg.query_s * 1000), 0.1);
        worker_poll(w);
    }
    if (now >= w->next_cancel_ms) {
        w->next_cancel_ms = now + (int64_t)(w->cfg.query_s * 2000);
        runs_cancel_check(w);
    }
    if (now >= w->next_flush_ms) {
        w->next_flush_ms = now + 2000;
        runs_flush_logs(w);
    }
    peers_expire(w, now);
    runs_check_lost(w, now);
    runs_dispatch_waiting(w);
    spawn_check(w, now);
}

static long
worker_timeout(struct worker *w, int64_t now)
{
    int64_t due = w->next_flush_ms;
    long t;

    if (w->stopping == 0) {
        if (w->next_sync_ms < due)
            due = w->next_sync_ms;
        if (w->synced && w->next_poll_ms < due && !(w->cfg.run_once && w->run_once_polled))
            due = w->next_poll_ms;
    }
    if (w->next_cancel_ms < due)
        due = w->next_cancel_ms;
    t = due > now ? (long)(due - now) : 0;
    {
        long h = http_timeout_ms(w->http), p = peers_timeout_ms(w, now), s = spawn_timeout_ms(w, now);

        if (h >= 0 && h < t)
            t = h;
        if (p >= 0 && p + 1 < t)
            t = p + 1;
        if (s >= 0 && s < t)
            t = s;
    }
    /* Lost runs and runs waiting for an executor are checked at least once a second. */
    if (t > 1000)
        t = 1000;
    return t;
}

int
worker_run(struct worker *w)
{
    zmq_pollitem_t items[WORKER_POLL_ITEMS];

    if (worker_signals(w) == -1)
        fatalx("cannot create the signal pipe: %s", strerror(errno));
    w->next_sync_ms = util_now_ms();
    w->next_poll_ms = util_now_ms();
    w->next_cancel_ms = util_now_ms() + (int64_t)(w->cfg.query_s * 2000);
    w->next_flush_ms = util_now_ms() + 2000;

    while (w->stopping < 2) {
        int64_t now = util_now_ms();
        int n = 0, nhttp;

        /* Executors wait in their sockets' queues until the pool's type is
         * known, since a HELLO is checked against it. */
        items[n].socket = w->router;
        items[n].fd = 0;
        items[n].events = w->started ? ZMQ_POLLIN : 0;
        items[n].revents = 0;
        n++;
        items[n].socket = NULL;
        items[n].fd = w->sigpipe[0];
        items[n].events = ZMQ_POLLIN;
        items[n].revents = 0;
        n++;
        if (w->remote) {
            items[n].socket = w->remote;
            items[n].fd = 0;
            items[n].events = w->started ? ZMQ_POLLIN : 0;
            items[n].revents = 0;
            n++;
            items[n].socket = w->zap;
            items[n].fd = 0;
            items[n].events = ZMQ_POLLIN;
            items[n].revents = 0;
            n++;
        }
        nhttp = http_pollitems(w->http, items + n, WORKER_POLL_ITEMS - n);

        if (zmq_poll(items, n + nhttp, worker_timeout(w, now)) == -1 && zmq_errno() != EINTR) {
            log_error("event=poll_error error=\"%s\"", zmq_strerror(zmq_errno()));
            break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            worker_handle_signals(w);
        if (items[0].revents & ZMQ_POLLIN)
            peers_recv(w, w->router);
        if (w->remote && (items[3].revents & ZMQ_POLLIN))
            peers_zap(w);
        if (w->remote && (items[2].revents & ZMQ_POLLIN))
            peers_recv(w, w->remote);
        http_dispatch(w->http, items + n, nhttp);

        now = util_now_ms();
        worker_timers(w, now);

        if (w->cfg.run_once && w->run_once_polled && !w->poll_busy && w->stopping == 0 &&
            w->nruns == 0 && http_pending(w->http) == 0) {
            log_info("event=run_once_finished");
            runs_flush_logs(w);
            w->stopping = 1;
            w->drain_deadline_ms = now + 10000;
        }
        if (w->stopping == 1) {
            runs_flush_logs(w);
            if (worker_drained(w) || now >= w->drain_deadline_ms)
                w->stopping = 2;
        }
        runs_reap(w);
    }

    {
        size_t left = 0;

        for (struct run *r = w->runs; r; r = r->next)
            if (r->state != RUN_DONE)
                left++;
        log_info("event=worker_stopped name=\"%s\" runs_left_to_executors=%zu dropped_messages=%llu",
                 w->name, left, (unsigned long long)w->dropped_messages);
    }
    spawn_stop_all(w);
    return w->exit_code;
}
