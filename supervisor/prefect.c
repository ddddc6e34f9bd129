/* The Prefect API calls of the supervisor; see prefect.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "prefect.h"
#include "util.h"
#include "worker.h"

struct prefect_call_ctx {
    struct worker  *w;
    prefect_done_fn done;
    void           *arg;
};

/* True when the digits of an integer literal exceed the int64 range. */
static int
prefect_beyond_int64(const char *digits, size_t n, int negative)
{
    const char *max = negative ? "9223372036854775808" : "9223372036854775807";

    while (n > 1 && *digits == '0') {
        digits++;
        n--;
    }
    if (n != 19)
        return n > 19;
    return memcmp(digits, max, 19) > 0;
}

/* Copies a JSON text with every integer literal beyond the int64 range
 * turned into a real ("123...890" -> "123...890.0"), since jansson stores
 * integers in 64 bits and rejects the whole document otherwise.  Strings are
 * copied unchanged.  Returns a malloc'd text or NULL. */
static char *
prefect_widen_integers(const char *text, size_t len, size_t *outlen)
{
    char *out = malloc(len + len / 10 * 2 + 3);
    size_t o = 0;
    int in_string = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len;) {
        char c = text[i];

        if (in_string) {
            out[o++] = c;
            i++;
            if (c == '\\' && i < len)
                out[o++] = text[i++];
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
            out[o++] = text[i++];
            continue;
        }
        if ((c >= '0' && c <= '9') || c == '-') {
            size_t start = i, first, digits = 0;

            if (c == '-')
                i++;
            first = i;
            while (i < len && text[i] >= '0' && text[i] <= '9') {
                i++;
                digits++;
            }
            memcpy(out + o, text + start, i - start);
            o += i - start;
            /* Only a bare integer: a fraction or exponent makes it a real already. */
            if (prefect_beyond_int64(text + first, digits, c == '-') &&
                (i >= len || (text[i] != '.' && text[i] != 'e' && text[i] != 'E'))) {
                out[o++] = '.';
                out[o++] = '0';
            }
            continue;
        }
        out[o++] = text[i++];
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

/* Parses a reply.  NUL characters inside strings are kept so that the
 * renderer can name the value that contains one; integers beyond 64 bits
 * become reals rather than making the whole reply unreadable. */
static json_t *
prefect_parse(const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *body = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    if (body == NULL && strstr(jerr.text, "too big") != NULL) {
        size_t widened_len;
        char *widened = prefect_widen_integers(text, len, &widened_len);

        if (widened) {
            body = json_loadb(widened, widened_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
            free(widened);
            if (body)
                log_warn("event=api_reply_integer_widened reason=\"an integer beyond 64 bits was read as a floating-point number\"");
        }
    }
    if (body == NULL)
        snprintf(err, errlen, "invalid JSON in the API reply at line %d column %d: %s",
                 jerr.line, jerr.column, jerr.text);
    return body;
}

static void
prefect_reply(void *arg, const struct http_response *resp)
{
    struct prefect_call_ctx *c = arg;
    const char *error = resp->error;
    char parse_err[256];
    json_t *body = NULL;

    if (resp->len > 0) {
        body = prefect_parse(resp->body, resp->len, parse_err, sizeof parse_err);
        if (body == NULL && resp->status >= 200 && resp->status < 300) {
            log_warn("event=api_reply_invalid status=%ld reason=\"%s\"", resp->status, parse_err);
            error = parse_err;
        }
    }
    c->w->retry_after_s = resp->retry_after_s;
    if (c->done)
        c->done(c->w, c->arg, resp->status, body, error);
    json_decref(body);
    free(c);
}

int
prefect_call(struct worker *w, const char *method, const char *path, json_t *body,
             int attempts, prefect_done_fn done, void *arg)
{
    struct prefect_call_ctx *c;
    char *text = NULL;
    int rc = -1;

    if ((c = calloc(1, sizeof *c)) == NULL)
        goto out;
    c->w = w;
    c->done = done;
    c->arg = arg;
    if (body && (text = json_dumps(body, JSON_COMPACT)) == NULL)
        goto out;
    if (http_request(w->http, method, path, text, attempts, prefect_reply, c, free) == -1)
        goto out;
    c = NULL;
    rc = 0;

out:
    if (rc == -1)
        log_error("event=api_request_failed method=%s path=%s reason=\"cannot queue request\"",
                  method, path);
    free(c);
    free(text);
    json_decref(body);
    return rc;
}

int
prefect_set_state(struct worker *w, const char *flow_run_id, const char *type,
                  const char *name, const char *message, int force, int attempts,
                  prefect_done_fn done, void *arg)
{
    char transition[37];
    char path[128];
    json_t *body;

    util_uuid4(transition);
    snprintf(path, sizeof path, "/flow_runs/%s/set_state", flow_run_id);
    body = json_pack("{s:{s:s, s:s, s:s?, s:{s:s, s:s}}, s:b}",
                     "state", "type", type, "name", name, "message", message,
                     "state_details", "flow_run_id", flow_run_id, "transition_id", transition,
                     "force", force);
    if (body == NULL)
        return -1;
    return prefect_call(w, "POST", path, body, attempts, done, arg);
}

int
prefect_pool_path(struct worker *w, const char *suffix, char *out, size_t outlen)
{
    char esc[1024];

    if (http_escape(w->http, w->cfg.pool, esc, sizeof esc) == -1)
        return -1;
    if ((size_t)snprintf(out, outlen, "/work_pools/%s%s", esc, suffix) >= outlen)
        return -1;
    return 0;
}

const char *
prefect_error_detail(json_t *body)
{
    static char text[1024];
    const char *s;
    json_t *first;

    if (!json_is_object(body))
        return "";
    if ((s = json_string_value(json_object_get(body, "detail"))) != NULL)
        return s;
    if ((s = json_string_value(json_object_get(body, "exception_message"))) == NULL)
        return "";
    /* A 422 lists what failed validation: name the first problem too. */
    first = json_array_get(json_object_get(body, "exception_detail"), 0);
    if (json_is_object(first) && json_string_value(json_object_get(first, "msg"))) {
        char *loc = json_dumps(json_object_get(first, "loc"), JSON_COMPACT | JSON_ENCODE_ANY);

        snprintf(text, sizeof text, "%s %s at %s", s,
                 json_string_value(json_object_get(first, "msg")), loc ? loc : "?");
        free(loc);
        return text;
    }
    return s;
}

/* Explanations follow the meaning Prefect 3 gives each status; the wording is drover's. */
const char *
prefect_exit_explanation(long long code)
{
    switch (code) {
    case 0:
        return "The process exited cleanly.";
    case -9:
        return "The process was killed by SIGKILL, often by the kernel's out-of-memory killer or a forced cancellation.";
    case -15:
        return "The process was terminated by SIGTERM, usually a graceful shutdown or a cancellation.";
    case 1:
        return "The process exited with a generic error; look for an unhandled exception in the flow run logs.";
    case 125:
        return "The container runtime could not run the container.";
    case 126:
        return "The command was found but is not executable.";
    case 127:
        return "The command was not found; check the command and PATH of the job configuration.";
    case 137:
        return "The process was killed, most likely for running out of memory.";
    case 143:
        return "The process was terminated by SIGTERM through a container runtime.";
    case 247:
        return "The process was terminated for using too much memory.";
    default:
        if (code < 0)
            return "The process was killed by a signal.";
        return "The exit status is unexpected; check the flow run and infrastructure logs.";
    }
}
