/*
 * The run table and each flow run's pipeline:
 *
 *   offer -> CLAIMING (Pending) -> FETCHING (deployment, flow)
 *         -> RESOLVING (render, blocks, variables, prepare)
 *         -> SUBMITTING (labels, Submitting) -> DISPATCHED (JOB sent)
 *         -> STARTED (infrastructure_pid) -> REPORTING (final state) -> DONE
 *
 * Every API reply names its run through a pointer, so a run is held (refs)
 * while replies are outstanding.  runs_reap() releases it at the end of a
 * loop pass once it is DONE and unreferenced.  run_enter() is the one place
 * where a run changes state.
 */
#define _GNU_SOURCE   /* asprintf */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "cache.h"
#include "log.h"
#include "prefect.h"
#include "render.h"
#include "util.h"
#include "worker.h"

#define RUNS_LOG_BATCH_MAX   (1024u * 1024u)
#define RUNS_LOG_MESSAGE_MAX (64u * 1024u)
#define RUNS_KILL_GRACE_S    30

static const char *run_state_names[] = {
    [RUN_ADOPTING] = "adopting",
    [RUN_CLAIMING] = "claiming",   [RUN_FETCHING] = "fetching",
    [RUN_RESOLVING] = "resolving", [RUN_SUBMITTING] = "submitting",
    [RUN_DISPATCHED] = "dispatched", [RUN_STARTED] = "started",
    [RUN_REPORTING] = "reporting", [RUN_DONE] = "done",
};

static void run_resolve_blocks(struct worker *w, struct run *r, json_t *blocks);
static void run_submit(struct worker *w, struct run *r);
static void run_dispatch(struct worker *w, struct run *r);
static void run_crash(struct worker *w, struct run *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void runs_verify_unknown(struct worker *w, struct peer *p, const char *id,
                                const char *identifier, int exited, int64_t code);
static void run_mark_started(struct worker *w, struct run *r, const char *identifier);
static void run_exited(struct worker *w, struct run *r, int64_t code, const char *error);
static void runs_send_ack(struct worker *w, struct peer *p, const char *id, int type);

struct run *
runs_find(struct worker *w, const char *id)
{
    for (struct run *r = w->runs; r; r = r->next)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static void
run_enter(struct worker *w, struct run *r, enum run_state next)
{
    log_debug("flow_run=%s event=state from=%s to=%s", r->id, run_state_names[r->state],
              run_state_names[next]);
    /* The --limit slot is given back as soon as the infrastructure is gone. */
    if ((next == RUN_REPORTING || next == RUN_DONE) && r->holds_slot) {
        r->holds_slot = 0;
        w->inflight--;
    }
    if ((next == RUN_REPORTING || next == RUN_DONE) && r->executor_id &&
        r->state >= RUN_DISPATCHED && r->state <= RUN_STARTED) {
        struct peer *p = peers_find_id(w, r->executor_id);

        if (p && p->assigned > 0)
            p->assigned--;
    }
    r->state = next;
}

static struct run *
run_new(struct worker *w, const char *id)
{
    struct run *r;

    if ((r = calloc(1, sizeof *r)) == NULL)
        return NULL;
    util_strlcpy(r->id, id, sizeof r->id);
    r->claimed_ms = util_now_ms();
    r->next = w->runs;
    w->runs = r;
    w->nruns++;
    return r;
}

static void
run_free(struct run *r)
{
    json_decref(r->flow_run);
    json_decref(r->deployment);
    json_decref(r->flow);
    render_run_free(r->render);
    free(r->config);
    json_decref(r->found);
    free(r->name);
    free(r->error);
    free(r->executor_id);
    free(r->identifier);
    free(r);
}

void
runs_reap(struct worker *w)
{
    struct run **pp = &w->runs;

    while (*pp) {
        struct run *r = *pp;

        if (r->state == RUN_DONE && r->refs == 0) {
            *pp = r->next;
            w->nruns--;
            run_free(r);
        } else {
            pp = &r->next;
        }
    }
}

void
runs_free_all(struct worker *w)
{
    while (w->runs) {
        struct run *r = w->runs;

        w->runs = r->next;
        run_free(r);
    }
    w->nruns = 0;
}

/* Logs to the supervisor's stderr and queues the line for the run's logs in Prefect. */
void
runs_log(struct worker *w, const char *flow_run_id, int level, const char *fmt, ...)
{
    enum log_level severity = LOG_INFO;
    char message[2048];
    char stamp[40];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);

    /* level is Python's numeric logging level, as the /logs/ API takes it. */
    if (level >= 40)
        severity = LOG_ERROR;
    else if (level >= 30)
        severity = LOG_WARN;
    log_msg(severity, "flow_run=%s message=\"%s\"", flow_run_id, message);
    util_iso_time(stamp, sizeof stamp, 0);
    runs_queue_log(w, flow_run_id, level, message, stamp);
}

void
runs_queue_log(struct worker *w, const char *flow_run_id, int level, const char *message,
               const char *stamp)
{
    size_t len = strlen(message);
    json_t *entry;

    if (w->log_batch == NULL && (w->log_batch = json_array()) == NULL)
        return;
    if (w->log_batch_bytes + len > RUNS_LOG_BATCH_MAX) {
        w->dropped_logs++;
        return;
    }
    entry = json_pack("{s:s, s:i, s:s%, s:s, s:s, s:n}", "name", "prefect.flow_runs.worker",
                      "level", level, "message", message,
                      len > RUNS_LOG_MESSAGE_MAX ? RUNS_LOG_MESSAGE_MAX : len,
                      "timestamp", stamp, "flow_run_id", flow_run_id, "task_run_id");
    if (entry == NULL)    /* invalid UTF-8 cut at the cap: drop the line */
        return;
    json_array_append_new(w->log_batch, entry);
    w->log_batch_bytes += len + 200;
}

static void
runs_logs_sent(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    size_t n = (size_t)(uintptr_t)arg;

    w->log_busy = 0;
    if (status != 201 && status != 200)
        log_warn("event=logs_not_sent lines=%zu status=%ld error=\"%s%s\"", n, status,
                 error ? error : "", prefect_error_detail(body));
}

void
runs_flush_logs(struct worker *w)
{
    json_t *batch = w->log_batch;
    size_t n;

    if (batch == NULL || json_array_size(batch) == 0 || w->log_busy)
        return;
    n = json_array_size(batch);
    w->log_batch = NULL;
    w->log_batch_bytes = 0;
    w->log_busy = 1;
    if (prefect_call(w, "POST", "/logs/", batch, 5, runs_logs_sent, (void *)(uintptr_t)n) == -1)
        w->log_busy = 0;
}

/* ---- final states -------------------------------------------------- */

static void
run_reported(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    struct run *r = arg;
    const char *result = json_string_value(json_object_get(body, "status"));

    r->refs--;
    if (status == 200 || status == 201) {
        log_info("flow_run=%s event=state_reported result=%s", r->id, result ? result : "?");
    } else {
        log_error("flow_run=%s event=state_report_failed status=%ld error=\"%s%s\"", r->id,
                  status, error ? error : "", prefect_error_detail(body));
    }
    runs_ack_exit(w, r);
    run_enter(w, r, RUN_DONE);
}

/* Proposes Crashed with a message.  The run is done once the API replies. */
static void
run_crash(struct worker *w, struct run *r, const char *fmt, ...)
{
    char message[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    runs_log(w, r->id, 40, "%s", message);
    run_enter(w, r, RUN_REPORTING);
    r->refs++;
    if (prefect_set_state(w, r->id, "CRASHED", "Crashed", message, 0, HTTP_FOREVER,
                          run_reported, r) == -1) {
        r->refs--;
        run_enter(w, r, RUN_DONE);
    }
}

static void
run_cancel(struct worker *w, struct run *r, const char *message, int force)
{
    runs_log(w, r->id, 20, "%s", message);
    run_enter(w, r, RUN_REPORTING);
    r->refs++;
    if (prefect_set_state(w, r->id, "CANCELLED", "Cancelled", message, force, HTTP_FOREVER,
                          run_reported, r) == -1) {
        r->refs--;
        run_enter(w, r, RUN_DONE);
    }
}

/* Releases a run that was never claimed or must be left alone. */
static void
run_drop(struct worker *w, struct run *r)
{
    run_enter(w, r, RUN_DONE);
}

/* ---- claim --------------------------------------------------------- */

static void run_fetch(struct worker *w, struct run *r);

static void
run_claimed(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    struct run *r = arg;
    const char *result = json_string_value(json_object_get(body, "status"));
    const char *type = json_string_value(json_object_get(json_object_get(body, "state"), "type"));

    r->refs--;
    if (status != 200 && status != 201) {
        log_warn("flow_run=%s event=claim_failed status=%ld error=\"%s%s\" next=\"left for the next poll\"",
                 r->id, status, error ? error : "", prefect_error_detail(body));
        run_drop(w, r);
        return;
    }
    if (result == NULL || strcmp(result, "ACCEPT") != 0 || type == NULL ||
        strcmp(type, "PENDING") != 0) {
        const char *reason = json_string_value(json_object_get(json_object_get(body, "details"), "reason"));

        log_info("flow_run=%s event=claim_not_accepted result=%s reason=\"%s\"", r->id,
                 result ? result : "?", reason ? reason : "");
        run_drop(w, r);
        return;
    }
    log_info("flow_run=%s event=claimed name=\"%s\"", r->id, r->name ? r->name : "");
    if (w->stopping) {
        /* A drain began during the claim: the run is submitted all the same,
         * and the drain waits for it to start. */
        log_info("flow_run=%s event=claimed_while_draining next=\"submitting anyway\"", r->id);
    }
    run_fetch(w, r);
}

/* Claims a polled run unless it is known or no slot is free.  Returns 0
 * when a claim was sent, -1 otherwise. */
int
runs_offer(struct worker *w, json_t *flow_run)
{
    const char *id = json_string_value(json_object_get(flow_run, "id"));
    const char *name = json_string_value(json_object_get(flow_run, "name"));
    struct run *r;

    if (id == NULL || strlen(id) != DROVER_UUID_LEN) {
        log_warn("event=poll_bad_run reason=\"flow run without a valid id\"");
        return -1;
    }
    if (runs_find(w, id))
        return -1;
    if (worker_free_slots(w) == 0)
        return -1;
    if ((r = run_new(w, id)) == NULL)
        return -1;
    r->flow_run = json_incref(flow_run);
    r->name = name ? strdup(name) : NULL;
    r->holds_slot = 1;
    w->inflight++;
    r->state = RUN_CLAIMING;
    r->refs++;
    if (prefect_set_state(w, r->id, "PENDING", "Pending", NULL, 0, 3, run_claimed, r) == -1) {
        r->refs--;
        run_drop(w, r);
        return -1;
    }
    return 0;
}

/* ---- fetch deployment and flow ------------------------------------- */

static void run_fetched(struct worker *w, struct run *r);

static void
run_got_deployment(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    struct run *r = arg;

    r->refs--;
    r->waiting--;
    if (status == 200 && json_is_object(body)) {
        r->deployment = json_incref(body);
    } else if (status == 404) {
        r->failed = 2;
    } else if (!r->failed) {
        r->failed = 1;
        free(r->error);
        r->error = NULL;
        if (asprintf(&r->error, "cannot read the deployment: HTTP %ld %s%s", status,
                     error ? error : "", prefect_error_detail(body)) < 0)
            r->error = NULL;
    }
    if (r->waiting == 0)
        run_fetched(w, r);
}

static void
run_got_flow(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    struct run *r = arg;

    r->refs--;
    r->waiting--;
    if (status == 200 && json_is_object(body)) {
        r->flow = json_incref(body);
    } else if (!r->failed) {
        r->failed = 1;
        free(r->error);
        r->error = NULL;
        if (asprintf(&r->error, "cannot read the flow: HTTP %ld %s%s", status,
                     error ? error : "", prefect_error_detail(body)) < 0)
            r->error = NULL;
    }
    if (r->waiting == 0)
        run_fetched(w, r);
}

static void
run_fetch(struct worker *w, struct run *r)
{
    const char *deployment_id = json_string_value(json_object_get(r->flow_run, "deployment_id"));
    const char *flow_id = json_string_value(json_object_get(r->flow_run, "flow_id"));
    char path[128];

    run_enter(w, r, RUN_FETCHING);
    r->failed = 0;
    /* One extra count keeps a reply served from the cache, which arrives
     * before cache_get returns, from finishing the step early. */
    r->waiting = 1;
    if (deployment_id && strlen(deployment_id) == DROVER_UUID_LEN) {
        snprintf(path, sizeof path, "/deployments/%s", deployment_id);
        r->waiting++;
        r->refs++;
        if (cache_get(w, path, run_got_deployment, r) == -1) {
            r->waiting--;
            r->refs--;
            r->failed = 1;
        }
    }
    if (flow_id && strlen(flow_id) == DROVER_UUID_LEN) {
        snprintf(path, sizeof path, "/flows/%s", flow_id);
        r->waiting++;
        r->refs++;
        if (cache_get(w, path, run_got_flow, r) == -1) {
            r->waiting--;
            r->refs--;
            r->failed = 1;
        }
    }
    if (--r->waiting == 0)
        run_fetched(w, r);
}

/* The pool's base job template compiled for rendering.  It is compiled
 * again when w->pool's template is another object (the worker replaces
 * w->pool when it rereads the pool); the reference held on the source keeps
 * its address from being reused meanwhile. */
static struct {
    json_t                 *source;
    struct render_template *compiled;
} run_template;

static const struct render_template *
run_compiled_template(const json_t *template, char *err, size_t errlen)
{
    if (run_template.compiled != NULL && run_template.source == template)
        return run_template.compiled;
    /* Each render allocates hundreds of small jansson values; the
     * renderer's block cache serves them (once would do; again is harmless). */
    render_pool_install();
    render_template_free(&run_template.compiled);
    json_decref(run_template.source);
    run_template.source = NULL;
    run_template.compiled = render_template_compile(template, err, errlen);
    if (run_template.compiled != NULL)
        run_template.source = json_incref((json_t *)template);
    return run_template.compiled;
}

static void
run_fetched(struct worker *w, struct run *r)
{
    const char *deployment_id = json_string_value(json_object_get(r->flow_run, "deployment_id"));
    const json_t *template;
    const struct render_template *compiled;
    json_t *vars;
    json_t *blocks = NULL;
    char err[1024];

    if (r->failed == 2) {
        char message[256];

        snprintf(message, sizeof message,
                 "Deployment %s no longer exists; the flow run was cancelled.", deployment_id);
        run_cancel(w, r, message, 1);
        return;
    }
    if (r->failed) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: %s",
                  r->error ? r->error : "cannot read the run's deployment or flow");
        return;
    }

    run_enter(w, r, RUN_RESOLVING);
    template = json_object_get(w->pool, "base_job_template");
    vars = render_merge_job_variables(json_object_get(r->deployment, "job_variables"),
                                      json_object_get(r->flow_run, "job_variables"));
    if (vars == NULL) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: cannot merge job variables");
        return;
    }
    if (render_validate(json_object_get(template, "variables"), vars, err, sizeof err) == -1) {
        json_decref(vars);
        run_crash(w, r, "Failed to submit flow run to infrastructure: invalid job variables: %s", err);
        return;
    }
    compiled = run_compiled_template(template, err, sizeof err);
    r->render = compiled == NULL ? NULL
                : render_run_new(compiled, vars, NULL, NULL, &blocks, err, sizeof err);
    json_decref(vars);
    if (r->render == NULL) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: %s", err);
        return;
    }
    run_resolve_blocks(w, r, blocks);
}

/* ---- blocks and variables ------------------------------------------ */

/* One round of look-ups: block documents, then Prefect variables.  Each
 * key is read once per run; replies are kept in r->found by key. */
struct run_lookup_kind {
    const char *what;                                    /* for messages */
    const char *member;                                  /* taken from each reply */
    int  (*path)(const char *key, char *path, size_t pathlen);
    void (*done)(struct worker *w, struct run *r);       /* after the last reply */
};

static int
run_block_path(const char *key, char *path, size_t pathlen)
{
    char type[256], name[256];
    const char *slash;
    char *etype, *ename;
    int rc = -1;

    if (strncmp(key, "document:", 9) == 0) {
        snprintf(path, pathlen, "/block_documents/%s?include_secrets=true", key + 9);
        return 0;
    }
    if (strncmp(key, "slug:", 5) != 0 || (slash = strchr(key + 5, '/')) == NULL)
        return -1;
    if ((size_t)(slash - (key + 5)) >= sizeof type || strlen(slash + 1) >= sizeof name)
        return -1;
    memcpy(type, key + 5, (size_t)(slash - (key + 5)));
    type[slash - (key + 5)] = '\0';
    strcpy(name, slash + 1);
    etype = http_escape_dup(type);
    ename = http_escape_dup(name);
    if (etype && ename) {
        snprintf(path, pathlen, "/block_types/slug/%s/block_documents/name/%s?include_secrets=true",
                 etype, ename);
        rc = 0;
    }
    free(etype);
    free(ename);
    return rc;
}

static int
run_variable_path(const char *key, char *path, size_t pathlen)
{
    char *esc = http_escape_dup(key);

    if (esc == NULL)
        return -1;
    snprintf(path, pathlen, "/variables/name/%s", esc);
    free(esc);
    return 0;
}

static void run_blocks_found(struct worker *w, struct run *r);
static void run_prepared(struct worker *w, struct run *r);

static const struct run_lookup_kind run_blocks = {
    "block document", "data", run_block_path, run_blocks_found,
};
static const struct run_lookup_kind run_variables = {
    "Prefect variable", "value", run_variable_path, run_prepared,
};

/* One look-up of a run. */
struct run_fetch_ctx {
    struct run                   *run;
    const struct run_lookup_kind *kind;
    char                         *key;
};

static void
run_got_lookup(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    struct run_fetch_ctx *c = arg;
    struct run *r = c->run;
    const struct run_lookup_kind *kind = c->kind;
    json_t *value = json_object_get(body, kind->member);

    r->refs--;
    r->waiting--;
    /* A 404 leaves the key out: a missing block is an error when resolved,
     * a missing variable renders empty. */
    if (status == 200 && value) {
        json_object_set(r->found, c->key, value);
    } else if (status != 404 && !r->failed) {
        r->failed = 1;
        free(r->error);
        if (asprintf(&r->error, "cannot read %s %s: HTTP %ld %s%s", kind->what, c->key, status,
                     error ? error : "", prefect_error_detail(body)) < 0)
            r->error = NULL;
    }
    free(c->key);
    free(c);
    if (r->waiting > 0)
        return;
    if (r->failed) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: %s",
                  r->error ? r->error : "cannot read a block document or a Prefect variable");
        return;
    }
    kind->done(w, r);
}

/* Reads every key (a JSON array of strings), then calls kind->done. */
static void
run_lookup(struct worker *w, struct run *r, json_t *keys, const struct run_lookup_kind *kind)
{
    size_t i;
    json_t *key;

    json_decref(r->found);
    r->found = json_object();
    r->failed = 0;
    r->waiting = 1;   /* held until every request is queued */
    json_array_foreach(keys, i, key) {
        struct run_fetch_ctx *c = calloc(1, sizeof *c);
        char path[1024];

        if (c == NULL || kind->path(json_string_value(key), path, sizeof path) == -1 ||
            (c->key = strdup(json_string_value(key))) == NULL) {
            free(c);
            r->failed = 1;
            continue;
        }
        c->run = r;
        c->kind = kind;
        r->waiting++;
        r->refs++;
        if (prefect_call(w, "GET", path, NULL, 5, run_got_lookup, c) == -1) {
            r->waiting--;
            r->refs--;
            r->failed = 1;
            free(c->key);
            free(c);
        }
    }
    json_decref(keys);
    if (--r->waiting > 0)
        return;
    if (r->failed) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: cannot look up a %s",
                  kind->what);
        return;
    }
    kind->done(w, r);
}

static void
run_resolve_blocks(struct worker *w, struct run *r, json_t *blocks)
{
    run_lookup(w, r, blocks, &run_blocks);
}

/* Blocks resolve before variables, so a block may hold a variable placeholder. */
static void
run_blocks_found(struct worker *w, struct run *r)
{
    char err[1024];
    json_t *names = render_run_resolve_blocks(r->render, r->found, err, sizeof err);

    if (names == NULL) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: %s", err);
        return;
    }
    run_lookup(w, r, names, &run_variables);
}

static void
run_prepared(struct worker *w, struct run *r)
{
    struct render_context ctx = {0};
    char err[1024];

    if (render_run_resolve_variables(r->render, r->found, err, sizeof err) == -1) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: %s", err);
        return;
    }
    ctx.flow_run = r->flow_run;
    ctx.flow = r->flow;
    ctx.deployment = r->deployment;
    ctx.work_pool_name = w->cfg.pool;
    ctx.work_pool_id = w->pool_id;
    ctx.worker_name = w->name;
    ctx.prefect_version = w->prefect_version;
    ctx.settings_env = w->settings_env;
    r->config = render_run_text(r->render, &ctx, &r->config_len, err, sizeof err);
    render_run_free(r->render);
    r->render = NULL;
    if (r->config == NULL) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: %s", err);
        return;
    }
    if (r->config_len > DROVER_MAX_CONFIG) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: the job configuration is %zu bytes, above the limit of %u bytes",
                  r->config_len, DROVER_MAX_CONFIG);
        return;
    }
    run_submit(w, r);
}

/* ---- submit and dispatch ------------------------------------------- */

static void
run_submit_step(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    struct run *r = arg;

    r->refs--;
    r->waiting--;
    if (status >= 400 || status == 0)
        log_debug("flow_run=%s event=submit_step_failed status=%ld error=\"%s%s\"", r->id,
                  status, error ? error : "", prefect_error_detail(body));
    if (r->waiting > 0 || r->state != RUN_SUBMITTING)
        return;
    run_enter(w, r, RUN_DISPATCHED);
    run_dispatch(w, r);
}

static void
run_submit(struct worker *w, struct run *r)
{
    char path[128];
    json_t *labels;

    run_enter(w, r, RUN_SUBMITTING);
    r->waiting = 0;

    /* Worker labels on the flow run.  Servers before Prefect 3.2 reply 404 or 405 here. */
    if (w->cfg.run_labels) {
        labels = json_pack("{s:s, s:s, s:s, s:s}", "prefect.worker.name", w->name,
                           "prefect.worker.type", w->type, "prefect.work-pool.name", w->cfg.pool,
                           "prefect.work-pool.id", w->pool_id);
        snprintf(path, sizeof path, "/flow_runs/%s/labels", r->id);
        r->waiting++;
        r->refs++;
        if (labels == NULL || prefect_call(w, "PATCH", path, labels, 5, run_submit_step, r) == -1) {
            r->waiting--;
            r->refs--;
        }
    }

    /* Servers before Prefect 3.6.22 abort this proposal; the result is ignored either way. */
    if (w->cfg.submitting_state) {
        r->waiting++;
        r->refs++;
        if (prefect_set_state(w, r->id, "PENDING", "Submitting", NULL, 0, 3, run_submit_step, r) == -1) {
            r->waiting--;
            r->refs--;
        }
    }
    if (r->waiting == 0) {
        run_enter(w, r, RUN_DISPATCHED);
        run_dispatch(w, r);
    }
}

/* Sends the JOB to a free executor, or leaves the run waiting for one. */
static void
run_dispatch(struct worker *w, struct run *r)
{
    struct drover_msg m = {0};
    struct peer *p;

    if (r->executor_id)   /* already sent; a resend goes through runs_peer_back */
        return;
    if ((p = peers_pick(w)) == NULL) {
        if (r->lost_at_ms == 0) {
            r->lost_at_ms = util_now_ms();
            log_warn("flow_run=%s event=no_executor type=%s next=\"waiting for a free executor\"",
                     r->id, w->type);
        }
        return;
    }
    m.type = DROVER_MSG_JOB;
    util_strlcpy(m.u.job.flow_run_id, r->id, sizeof m.u.job.flow_run_id);
    m.u.job.config = r->config;
    if (peers_send(w, p, &m) == -1)
        return;   /* stays waiting; the next pass retries */
    r->executor_id = strdup(p->executor_id);
    r->lost_at_ms = 0;
    p->assigned++;
    runs_log(w, r->id, 20, "Submitted flow run to executor %s (type %s).", p->executor_id, p->type);
}

void
runs_dispatch_waiting(struct worker *w)
{
    int64_t now = util_now_ms();

    for (struct run *r = w->runs; r; r = r->next) {
        if (r->state != RUN_DISPATCHED || r->executor_id)
            continue;
        if (r->lost_at_ms && now - r->lost_at_ms > w->cfg.lost_grace_ms) {
            run_crash(w, r, "Failed to submit flow run to infrastructure: no executor of type %s was available for %d s",
                      w->type, w->cfg.lost_grace_ms / 1000);
            continue;
        }
        run_dispatch(w, r);
    }
}

/* ---- reports from executors ---------------------------------------- */

static void
run_pid_set(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    struct run *r = arg;

    r->refs--;
    if (status != 204 && status != 200)
        log_warn("flow_run=%s event=infrastructure_pid_not_set status=%ld error=\"%s%s\"",
                 r->id, status, error ? error : "", prefect_error_detail(body));
}

static void
run_mark_started(struct worker *w, struct run *r, const char *identifier)
{
    char path[128];
    json_t *body;

    free(r->identifier);
    r->identifier = strdup(identifier);
    run_enter(w, r, RUN_STARTED);
    free(r->config);   /* no longer needed: a restart re-adopts by inventory */
    r->config = NULL;
    runs_log(w, r->id, 20, "Infrastructure started: %s", identifier);
    snprintf(path, sizeof path, "/flow_runs/%s", r->id);
    body = json_pack("{s:s}", "infrastructure_pid", identifier);
    r->refs++;
    if (body == NULL || prefect_call(w, "PATCH", path, body, 6, run_pid_set, r) == -1)
        r->refs--;
}

/* Finds the run a message from executor p is about.  Returns 0 with *out
 * set (NULL when the run is unknown), or -1 when the run belongs to another
 * executor and the message must be ignored. */
static int
run_of_peer(struct worker *w, struct peer *p, const char *id, const char *what, struct run **out)
{
    struct run *r = runs_find(w, id);

    *out = NULL;
    if (r == NULL) {
        log_info("executor=%s flow_run=%s event=unknown_run message=%s next=\"checking the run with the API\"",
                 p->executor_id, id, what);
        return 0;
    }
    if (r->executor_id == NULL || strcmp(r->executor_id, p->executor_id) != 0) {
        log_warn("executor=%s flow_run=%s event=foreign_run message=%s owner=%s next=ignored",
                 p->executor_id, id, what, r->executor_id ? r->executor_id : "none");
        return -1;
    }
    *out = r;
    return 0;
}

static void
runs_send_ack(struct worker *w, struct peer *p, const char *id, int type)
{
    struct drover_msg m = {0};

    m.type = DROVER_MSG_ACK;
    util_strlcpy(m.u.ack.flow_run_id, id, sizeof m.u.ack.flow_run_id);
    m.u.ack.acked_type = type;
    peers_send(w, p, &m);
}

void
runs_on_started(struct worker *w, struct peer *p, const struct drover_started *m)
{
    struct run *r;

    if (run_of_peer(w, p, m->flow_run_id, "STARTED", &r) == -1)
        return;
    if (r == NULL) {
        runs_verify_unknown(w, p, m->flow_run_id, m->identifier, 0, 0);
        return;
    }
    if (r->state == RUN_ADOPTING)
        return;
    r->missing_ms = 0;
    if (r->state == RUN_DISPATCHED)
        run_mark_started(w, r, m->identifier);
    runs_send_ack(w, p, m->flow_run_id, DROVER_MSG_STARTED);
}

/* Acknowledges the EXITED of a run once its final state is recorded. */
void
runs_ack_exit(struct worker *w, struct run *r)
{
    struct peer *p;

    if (!r->exit_pending || r->executor_id == NULL)
        return;
    r->exit_pending = 0;
    if ((p = peers_find_id(w, r->executor_id)) != NULL && p->state == PEER_LIVE)
        runs_send_ack(w, p, r->id, DROVER_MSG_EXITED);
}

static void
run_exited(struct worker *w, struct run *r, int64_t code, const char *error)
{
    r->exit_code = code;
    r->exit_pending = 1;
    if (error && *error && r->identifier && *r->identifier) {
        /* It had started: the executor lost track of it. */
        run_crash(w, r, "Flow run infrastructure %s could not be watched to its end: %s",
                  r->identifier, error);
        return;
    }
    if (error && *error) {
        run_crash(w, r, "Failed to submit flow run to infrastructure: %s", error);
        return;
    }
    if (r->cancelling) {
        run_cancel(w, r, "Flow run was cancelled; its infrastructure was stopped.", 0);
        return;
    }
    if (code != 0) {
        runs_log(w, r->id, 20, "Infrastructure %s exited with status %lld.",
                 r->identifier ? r->identifier : "", (long long)code);
        run_crash(w, r, "Flow run infrastructure exited with non-zero status code %lld. %s",
                  (long long)code, prefect_exit_explanation(code));
        return;
    }
    runs_log(w, r->id, 20, "Infrastructure %s exited with status 0.",
             r->identifier ? r->identifier : "");
    run_enter(w, r, RUN_DONE);
    runs_ack_exit(w, r);
}

void
runs_on_exited(struct worker *w, struct peer *p, const struct drover_exited *m)
{
    struct run *r;

    if (run_of_peer(w, p, m->flow_run_id, "EXITED", &r) == -1)
        return;
    if (r == NULL) {
        runs_verify_unknown(w, p, m->flow_run_id, "", 1, m->code);
        return;
    }
    r->missing_ms = 0;
    if (r->state == RUN_DISPATCHED || r->state == RUN_STARTED) {
        if (r->state == RUN_DISPATCHED && (m->error == NULL || *m->error == '\0'))
            log_info("flow_run=%s executor=%s event=exited_before_started", r->id, p->executor_id);
        run_exited(w, r, m->code, m->error);
    }
    /* Duplicates while REPORTING wait for the report; after DONE the run is gone. */
}

/* True for a line of Prefect's console log format ("12:00:01.234 | INFO    | ...").
 * The Prefect engine writes these to stderr and sends the same records to
 * the API itself, so forwarding them would show each record twice. */
static int
runs_is_prefect_console_line(const char *line)
{
    static const char shape[] = "00:00:00.000 | ";

    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == '0' ? (line[i] < '0' || line[i] > '9') : line[i] != shape[i])
            return 0;
    }
    return 1;
}

void
runs_on_log(struct worker *w, struct peer *p, const struct drover_log *m)
{
    struct run *r = runs_find(w, m->flow_run_id);
    char stamp[40];

    if (r == NULL || r->executor_id == NULL || strcmp(r->executor_id, p->executor_id) != 0)
        return;
    if (m->stream == DROVER_STREAM_STDERR && runs_is_prefect_console_line(m->line))
        return;
    util_iso_time(stamp, sizeof stamp, 0);
    /* Both streams log at INFO: Python programs write ordinary logs to stderr. */
    runs_queue_log(w, r->id, 20, m->line, stamp);
}

/* ---- executors coming and going ------------------------------------ */

/* Takes over a run an executor named that this supervisor does not know,
 * after a supervisor restart for instance, once the API confirms that the
 * run belongs to this pool and was claimed.  Anything else is left alone. */
static void
run_verified(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    struct run *r = arg;
    const char *pool = json_string_value(json_object_get(body, "work_pool_name"));
    const char *state = json_string_value(json_object_get(body, "state_type"));
    struct peer *p;

    r->refs--;
    if (status != 200 && status != 404) {
        /* Transient: the executor resends until the API replies. */
        log_warn("flow_run=%s executor=%s event=adoption_deferred status=%ld error=\"%s%s\"",
                 r->id, r->executor_id, status, error ? error : "", prefect_error_detail(body));
        run_drop(w, r);
        return;
    }
    p = peers_find_id(w, r->executor_id);
    if (status == 404 || pool == NULL || strcmp(pool, w->cfg.pool) != 0 || state == NULL ||
        strcmp(state, "SCHEDULED") == 0) {
        log_warn("flow_run=%s executor=%s event=inventory_run_ignored reason=\"%s\"", r->id,
                 r->executor_id, status == 404 ? "no such flow run" :
                 (pool == NULL || strcmp(pool, w->cfg.pool) != 0) ? "the run belongs to another work pool" :
                 "the run was never claimed");
        if (p && p->state == PEER_LIVE)
            runs_send_ack(w, p, r->id, r->adopt_exited ? DROVER_MSG_EXITED : DROVER_MSG_STARTED);
        run_drop(w, r);
        return;
    }

    r->flow_run = json_incref(body);
    r->state = RUN_DISPATCHED;
    r->holds_slot = 1;
    w->inflight++;
    if (p)
        p->assigned++;
    log_info("flow_run=%s executor=%s event=adopted identifier=%s state=%s", r->id, r->executor_id,
             r->identifier ? r->identifier : "", state);
    if (r->identifier && *r->identifier) {
        char *identifier = strdup(r->identifier);

        if (identifier) {
            run_mark_started(w, r, identifier);
            free(identifier);
        }
        if (p && p->state == PEER_LIVE && !r->adopt_exited)
            runs_send_ack(w, p, r->id, DROVER_MSG_STARTED);
    }
    if (r->adopt_exited)
        run_exited(w, r, r->exit_code, NULL);
}

static void
runs_verify_unknown(struct worker *w, struct peer *p, const char *id, const char *identifier,
                    int exited, int64_t code)
{
    char path[128];
    struct run *r;

    if ((r = run_new(w, id)) == NULL)
        return;
    r->adopted = 1;
    r->state = RUN_ADOPTING;
    r->executor_id = strdup(p->executor_id);
    r->identifier = strdup(identifier ? identifier : "");
    r->adopt_exited = exited;
    r->exit_code = code;
    snprintf(path, sizeof path, "/flow_runs/%s", id);
    r->refs++;
    if (r->executor_id == NULL || r->identifier == NULL ||
        prefect_call(w, "GET", path, NULL, 5, run_verified, r) == -1) {
        r->refs--;
        run_drop(w, r);
    }
}

void
runs_adopt(struct worker *w, struct peer *p, const struct drover_run_entry *e)
{
    struct run *r = runs_find(w, e->flow_run_id);

    if (r && (r->executor_id == NULL || strcmp(r->executor_id, p->executor_id) != 0)) {
        log_warn("executor=%s flow_run=%s event=inventory_foreign_run owner=%s next=ignored",
                 p->executor_id, e->flow_run_id, r->executor_id ? r->executor_id : "none");
        return;
    }
    if (r == NULL) {
        runs_verify_unknown(w, p, e->flow_run_id, e->identifier, e->exited, e->code);
        return;
    }
    r->lost_at_ms = 0;
    r->missing_ms = 0;
    r->resend_checked = 1;
    if (r->state == RUN_ADOPTING)
        return;
    if (r->state == RUN_DISPATCHED && e->identifier && *e->identifier)
        run_mark_started(w, r, e->identifier);
    if (e->exited && (r->state == RUN_DISPATCHED || r->state == RUN_STARTED))
        run_exited(w, r, e->code, NULL);
}

/* Handles the runs of an executor that just sent HELLO.  A run dispatched to
 * it that never started and is missing from its inventory gets its JOB
 * again.  A started run that is missing starts the lost-executor grace. */
void
runs_peer_back(struct worker *w, struct peer *p)
{
    for (struct run *r = w->runs; r; r = r->next) {
        if (r->executor_id == NULL || strcmp(r->executor_id, p->executor_id) != 0)
            continue;
        if (r->resend_checked) {
            r->resend_checked = 0;
            continue;
        }
        if (r->state == RUN_DISPATCHED && r->config) {
            log_info("flow_run=%s executor=%s event=job_resent reason=\"missing from the executor's inventory\"",
                     r->id, p->executor_id);
            free(r->executor_id);
            r->executor_id = NULL;
            if (p->assigned > 0)
                p->assigned--;
            run_dispatch(w, r);
        } else if (r->state == RUN_STARTED && r->missing_ms == 0) {
            /* A duplicate executor id can send an empty inventory too: wait
             * for the grace period in case the run's executor reports it. */
            r->missing_ms = util_now_ms();
            log_warn("flow_run=%s executor=%s event=missing_from_inventory next=\"crash in %d s unless an executor reports it\"",
                     r->id, p->executor_id, w->cfg.lost_grace_ms / 1000);
        }
    }
}

void
runs_check_lost(struct worker *w, int64_t now)
{
    for (struct run *r = w->runs; r; r = r->next) {
        struct peer *p;

        if (r->state != RUN_DISPATCHED && r->state != RUN_STARTED)
            continue;
        if (r->executor_id == NULL)
            continue;
        if (r->missing_ms && now - r->missing_ms >= w->cfg.lost_grace_ms) {
            run_crash(w, r, "Executor %s restarted without run %s in its inventory, and no executor reported it within %d s; the infrastructure %s is lost.",
                      r->executor_id, r->id, w->cfg.lost_grace_ms / 1000,
                      r->identifier ? r->identifier : "");
            continue;
        }
        p = peers_find_id(w, r->executor_id);
        if (p && p->state == PEER_LIVE) {
            r->lost_at_ms = 0;
            continue;
        }
        if (r->lost_at_ms == 0) {
            r->lost_at_ms = now;
            log_warn("flow_run=%s executor=%s event=executor_lost next=\"crash in %d s unless it returns\"",
                     r->id, r->executor_id, w->cfg.lost_grace_ms / 1000);
            continue;
        }
        if (now - r->lost_at_ms >= w->cfg.lost_grace_ms)
            run_crash(w, r, "Executor %s stopped answering and did not return within %d s; the state of infrastructure %s is unknown.",
                      r->executor_id, w->cfg.lost_grace_ms / 1000,
                      r->identifier ? r->identifier : "(not started)");
    }
}

/* ---- cancellation -------------------------------------------------- */

static void
runs_cancel_found(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    size_t i;
    json_t *fr;

    w->cancel_busy = 0;
    if (status != 200 || !json_is_array(body))
        return;
    json_array_foreach(body, i, fr) {
        const char *id = json_string_value(json_object_get(fr, "id"));
        struct run *r = id ? runs_find(w, id) : NULL;
        struct drover_msg m = {0};
        struct peer *p;

        if (r == NULL || r->cancelling || (r->state != RUN_STARTED && r->state != RUN_DISPATCHED))
            continue;
        r->cancelling = 1;
        if (r->executor_id == NULL || (p = peers_find_id(w, r->executor_id)) == NULL) {
            continue;
        }
        runs_log(w, r->id, 20, "Flow run is cancelling; stopping infrastructure %s (grace %d s).",
                 r->identifier ? r->identifier : "", RUNS_KILL_GRACE_S);
        m.type = DROVER_MSG_KILL;
        util_strlcpy(m.u.kill.flow_run_id, r->id, sizeof m.u.kill.flow_run_id);
        m.u.kill.grace_seconds = RUNS_KILL_GRACE_S;
        peers_send(w, p, &m);
    }
}

/* Asks the API which of our running runs are CANCELLING. */
void
runs_cancel_check(struct worker *w)
{
    json_t *ids = json_array();
    json_t *body;

    if (ids == NULL || w->cancel_busy)
        goto out;
    for (struct run *r = w->runs; r; r = r->next)
        if ((r->state == RUN_STARTED || r->state == RUN_DISPATCHED) && !r->cancelling)
            json_array_append_new(ids, json_string(r->id));
    if (json_array_size(ids) == 0)
        goto out;
    body = json_pack("{s:{s:{s:O}, s:{s:{s:[s]}}}, s:i}", "flow_runs", "id", "any_", ids,
                     "state", "type", "any_", "CANCELLING", "limit", 200);
    w->cancel_busy = 1;
    if (body == NULL || prefect_call(w, "POST", "/flow_runs/filter", body, 1, runs_cancel_found, NULL) == -1)
        w->cancel_busy = 0;
out:
    json_decref(ids);
}
