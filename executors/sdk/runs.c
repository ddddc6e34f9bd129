/*
 * The run table of the executor SDK: one struct drover_run per flow run the
 * executor knows, from its JOB until the supervisor acknowledges its EXITED.
 * Each run is mirrored in "<state dir>/<flow run id>.json" so that a
 * restarted executor with the same id knows its runs again: runs that were
 * alive are handed to ops->recover, ended ones are reported again.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sdk_internal.h"

static const char *const runs_state_names[] = {"starting", "started", "exited"};

int sdk_valid_flow_run_id(const char *id)
{
    if (strlen(id) != DROVER_UUID_LEN)
        return 0;
    for (size_t i = 0; i < DROVER_UUID_LEN; i++) {
        char c = id[i];
        int dash = (i == 8 || i == 13 || i == 18 || i == 23);

        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

struct drover_run *sdk_run_new(struct drover_executor *ex, const char *flow_run_id)
{
    struct drover_run *run = calloc(1, sizeof *run);

    if (!run)
        return NULL;
    run->ex = ex;
    snprintf(run->flow_run_id, sizeof run->flow_run_id, "%s", flow_run_id);
    run->state = SDK_RUN_STARTING;
    run->next = ex->runs;
    ex->runs = run;
    return run;
}

struct drover_run *sdk_run_find(struct drover_executor *ex, const char *flow_run_id)
{
    for (struct drover_run *r = ex->runs; r; r = r->next)
        if (!r->dead && strcmp(r->flow_run_id, flow_run_id) == 0)
            return r;
    return NULL;
}

void sdk_run_free(struct drover_run **run)
{
    struct drover_run *r;

    if (!run || !*run)
        return;
    r = *run;
    if (r->ex->ops->release)
        r->ex->ops->release(r);
    for (int s = 0; s < 2; s++)
        free(r->logs[s].data);
    free(r->error);
    free(r);
    *run = NULL;
}

unsigned sdk_runs_active(const struct drover_executor *ex)
{
    unsigned n = 0;

    for (const struct drover_run *r = ex->runs; r; r = r->next)
        if (!r->dead && r->state != SDK_RUN_EXITED)
            n++;
    return n;
}

/* Runs in the inventory: active ones and ended ones whose EXITED waits for an ACK. */
unsigned sdk_runs_held(const struct drover_executor *ex)
{
    unsigned n = 0;

    for (const struct drover_run *r = ex->runs; r; r = r->next)
        n += !r->dead;
    return n;
}

/* Removes every file of the state directory whose name starts with the run's id. */
static void runs_remove_files(struct drover_run *run)
{
    DIR *dir = opendir(run->ex->state_dir);
    struct dirent *de;

    if (!dir)
        return;
    while ((de = readdir(dir)) != NULL) {
        char path[4096];

        if (strncmp(de->d_name, run->flow_run_id, DROVER_UUID_LEN) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", run->ex->state_dir, de->d_name);
        if (unlink(path) < 0 && errno != ENOENT)
            sdk_logf(run->ex, run, "state_file_remove_failed path=%s error=\"%s\"", path, strerror(errno));
    }
    closedir(dir);
}

void sdk_run_forget(struct drover_run *run)
{
    runs_remove_files(run);
    run->dead = 1;
}

void sdk_runs_sweep(struct drover_executor *ex)
{
    struct drover_run **link = &ex->runs;

    while (*link) {
        struct drover_run *r = *link;

        if (r->dead) {
            *link = r->next;
            sdk_run_free(&r);
        } else {
            link = &r->next;
        }
    }
}

void sdk_runs_release_all(struct drover_executor *ex)
{
    while (ex->runs) {
        struct drover_run *r = ex->runs;

        ex->runs = r->next;
        sdk_run_free(&r);
    }
}

int drover_run_state_path(const struct drover_run *run, const char *suffix, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s%s", run->ex->state_dir, run->flow_run_id, suffix ? suffix : "");

    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Writes the record through a temporary file and rename(2), so that a crash
 * leaves either the old record or the new one. */
int sdk_run_save(struct drover_run *run)
{
    char path[4096], tmp[4096];
    json_t *rec;
    int rc = -1;

    if (drover_run_state_path(run, ".json", path, sizeof path) < 0 ||
        drover_run_state_path(run, ".json.tmp", tmp, sizeof tmp) < 0)
        return -1;
    rec = json_pack("{s:s, s:s, s:s, s:I, s:b}", "flow_run_id", run->flow_run_id,
                    "identifier", run->identifier, "state", runs_state_names[run->state],
                    "code", (json_int_t)run->code, "started_acked", run->started_acked);
    if (!rec)
        goto done;
    json_object_set_new(rec, "error", run->error ? json_string(run->error) : json_null());
    if (json_dump_file(rec, tmp, JSON_COMPACT) < 0) {
        sdk_logf(run->ex, run, "state_write_failed path=%s error=\"%s\"", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) < 0) {
        sdk_logf(run->ex, run, "state_write_failed path=%s error=\"%s\"", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    json_decref(rec);
    return rc;
}

/* --- Calls authors make ------------------------------------------------- */

const char *drover_run_flow_run_id(const struct drover_run *run) { return run->flow_run_id; }
const char *drover_run_identifier(const struct drover_run *run) { return run->identifier; }
struct drover_executor *drover_run_executor(const struct drover_run *run) { return run->ex; }
void drover_run_set_data(struct drover_run *run, void *data) { run->data = data; }
void *drover_run_data(const struct drover_run *run) { return run->data; }

void sdk_run_set_started(struct drover_run *run, const char *identifier)
{
    snprintf(run->identifier, sizeof run->identifier, "%s", identifier);
    run->state = SDK_RUN_STARTED;
    run->started_acked = 0;
    sdk_run_save(run);
    sdk_logf(run->ex, run, "started identifier=%s", run->identifier);
    sdk_schedule_resend(run);
}

void drover_run_started(struct drover_run *run, const char *identifier)
{
    char err[DROVER_MAX_REASON];

    if (run->dead || run->state != SDK_RUN_STARTING)
        return;
    if (!identifier || !identifier[0] || strlen(identifier) > DROVER_MAX_IDENTIFIER) {
        drover_run_failed(run, "the executor reported an empty or over-long identifier");
        return;
    }
    sdk_run_set_started(run, identifier);
    if (run->kill_pending && run->ex->ops->kill(run, run->kill_grace, err, sizeof err) < 0)
        sdk_logf(run->ex, run, "kill_failed error=\"%s\"", err);
}

void drover_run_failed(struct drover_run *run, const char *error)
{
    drover_run_exited_error(run, 1, error && error[0] ? error : "the run failed to start");
}

void drover_run_exited(struct drover_run *run, int64_t code)
{
    drover_run_exited_error(run, code, NULL);
}

void drover_run_exited_error(struct drover_run *run, int64_t code, const char *error)
{
    if (run->dead || run->state == SDK_RUN_EXITED)
        return;
    drover_run_log_flush(run, DROVER_STREAM_STDOUT);
    drover_run_log_flush(run, DROVER_STREAM_STDERR);
    run->state = SDK_RUN_EXITED;
    run->code = code;
    free(run->error);
    run->error = NULL;
    if (error && error[0]) {
        run->error = drover_utf8_clean(error, strlen(error), DROVER_MAX_REASON);
        sdk_logf(run->ex, run, "exited code=%lld error=\"%s\"", (long long)code,
                 run->error ? run->error : "");
    } else {
        sdk_logf(run->ex, run, "exited code=%lld", (long long)code);
    }
    sdk_run_save(run);
    sdk_schedule_resend(run);
}

/* Returns the length of the longest prefix of s[0..len) that is at most max
 * bytes and does not end inside a UTF-8 character. */
static size_t runs_utf8_prefix(const char *s, size_t len, size_t max)
{
    size_t n = len < max ? len : max;

    if (n == len)
        return n;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

void drover_run_log(struct drover_run *run, int stream, const char *line, size_t len)
{
    char *clean;
    size_t off = 0, total;

    if (run->dead || (stream != DROVER_STREAM_STDOUT && stream != DROVER_STREAM_STDERR))
        return;
    if (run->ex->conn != SDK_READY || !run->ex->sock) {
        run->ex->logs_dropped++;
        return;
    }
    /* Each invalid byte becomes 3 bytes of U+FFFD, so clean everything first
     * and split the result into LOG messages of at most the protocol limit. */
    clean = drover_utf8_clean(line, len, len * 3);
    if (!clean)
        return;
    total = strlen(clean);
    do {
        size_t n = runs_utf8_prefix(clean + off, total - off, DROVER_MAX_LOG_LINE);
        char saved = clean[off + n];

        clean[off + n] = '\0';
        sdk_send_log(run->ex, run, stream, clean + off);
        clean[off + n] = saved;
        off += n;
    } while (off < total);
    free(clean);
}

void drover_run_log_data(struct drover_run *run, int stream, const char *data, size_t len)
{
    struct sdk_logbuf *b;

    if (stream != DROVER_STREAM_STDOUT && stream != DROVER_STREAM_STDERR)
        return;
    b = &run->logs[stream - 1];
    for (size_t i = 0; i < len; i++) {
        char c = data[i];

        if (c == '\n') {
            drover_run_log(run, stream, b->data ? b->data : "", b->len);
            b->len = 0;
            continue;
        }
        if (b->len == DROVER_MAX_LOG_LINE) {
            /* A line above the protocol limit goes out in pieces of the limit. */
            size_t n = runs_utf8_prefix(b->data, b->len, DROVER_MAX_LOG_LINE - 1);

            drover_run_log(run, stream, b->data, n ? n : b->len);
            memmove(b->data, b->data + (n ? n : b->len), b->len - (n ? n : b->len));
            b->len -= n ? n : b->len;
        }
        if (b->len + 1 > b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 256;
            char *grown;

            if (cap > DROVER_MAX_LOG_LINE)
                cap = DROVER_MAX_LOG_LINE;
            grown = realloc(b->data, cap);
            if (!grown)
                return;
            b->data = grown;
            b->cap = cap;
        }
        b->data[b->len++] = c;
    }
}

void drover_run_log_flush(struct drover_run *run, int stream)
{
    struct sdk_logbuf *b;

    if (stream != DROVER_STREAM_STDOUT && stream != DROVER_STREAM_STDERR)
        return;
    b = &run->logs[stream - 1];
    if (b->len > 0)
        drover_run_log(run, stream, b->data, b->len);
    b->len = 0;
}

int drover_run_watch_fd(struct drover_run *run, int fd)
{
    if (fd < 0 || run->n_fds >= DROVER_MAX_RUN_FDS)
        return -1;
    for (int i = 0; i < run->n_fds; i++)
        if (run->fds[i] == fd)
            return 0;
    run->fds[run->n_fds++] = fd;
    return 0;
}

void drover_run_unwatch_fd(struct drover_run *run, int fd)
{
    for (int i = 0; i < run->n_fds; i++) {
        if (run->fds[i] == fd) {
            run->fds[i] = run->fds[--run->n_fds];
            return;
        }
    }
}

void drover_run_set_timer(struct drover_run *run, long ms)
{
    run->timer_at = ms < 0 ? 0 : sdk_now_ms() + ms;
    if (ms >= 0 && run->timer_at == 0)
        run->timer_at = 1;
}

/* --- Recovery after a restart ------------------------------------------- */

static int runs_parse_state(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, runs_state_names[i]) == 0)
            return i;
    return -1;
}

static void runs_recover_one(struct drover_executor *ex, const char *path)
{
    json_error_t jerr;
    json_t *rec;
    const char *id = NULL, *identifier = "", *state = NULL, *error = NULL;
    json_t *error_value = NULL;
    json_int_t code = 0;
    int acked = 0, st;
    struct drover_run *run;
    char err[DROVER_MAX_REASON] = "";

    memset(&jerr, 0, sizeof jerr);
    rec = json_load_file(path, 0, &jerr);
    if (!rec || json_unpack_ex(rec, &jerr, 0, "{s:s, s?s, s:s, s?I, s?b, s?o}", "flow_run_id", &id,
                               "identifier", &identifier, "state", &state, "code", &code,
                               "started_acked", &acked, "error", &error_value) < 0 ||
        (error_value && !json_is_null(error_value) && !(error = json_string_value(error_value))) ||
        !sdk_valid_flow_run_id(id) || (st = runs_parse_state(state)) < 0 ||
        strlen(identifier) > DROVER_MAX_IDENTIFIER || sdk_run_find(ex, id)) {
        sdk_logf(ex, NULL, "state_record_invalid path=%s error=\"%s\" (ignored; remove the file)",
                 path, jerr.text[0] ? jerr.text : "unexpected content");
        json_decref(rec);
        return;
    }
    run = sdk_run_new(ex, id);
    if (!run)
        goto done;
    snprintf(run->identifier, sizeof run->identifier, "%s", identifier);
    run->started_acked = acked;

    if (st == SDK_RUN_EXITED) {
        run->state = SDK_RUN_EXITED;
        run->code = code;
        run->error = error ? strdup(error) : NULL;
        sdk_logf(ex, run, "recovered_exited code=%lld", (long long)code);
        goto done;
    }
    if (st == SDK_RUN_STARTING || !identifier[0]) {
        /* The infrastructure may have started without the executor seeing
         * it: recover gets an empty identifier and may report the start. */
        run->state = SDK_RUN_STARTING;
        if (!ex->ops->recover || ex->ops->recover(run, "", err, sizeof err) != DROVER_START_OK ||
            run->state == SDK_RUN_STARTING)
            drover_run_exited_error(run, 1, "the executor stopped while the run was starting");
        goto done;
    }
    run->state = SDK_RUN_STARTED;
    if (!ex->ops->recover) {
        drover_run_exited_error(run, 1, "the executor restarted and cannot re-adopt runs");
        goto done;
    }
    if (ex->ops->recover(run, identifier, err, sizeof err) != DROVER_START_OK) {
        char reason[DROVER_MAX_REASON];

        snprintf(reason, sizeof reason, "the executor restarted and could not re-adopt %s: %s",
                 identifier, err[0] ? err : "not found");
        drover_run_exited_error(run, 1, reason);
        goto done;
    }
    if (run->state == SDK_RUN_STARTED)
        sdk_logf(ex, run, "recovered identifier=%s", identifier);
done:
    json_decref(rec);
}

int sdk_runs_recover(struct drover_executor *ex)
{
    DIR *dir = opendir(ex->state_dir);
    struct dirent *de;

    if (!dir) {
        sdk_logf(ex, NULL, "state_dir_unreadable path=%s error=\"%s\"", ex->state_dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(dir)) != NULL) {
        char path[4096];
        size_t n = strlen(de->d_name);

        if (n != DROVER_UUID_LEN + 5 || strcmp(de->d_name + DROVER_UUID_LEN, ".json") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", ex->state_dir, de->d_name);
        runs_recover_one(ex, path);
    }
    closedir(dir);
    return 0;
}
