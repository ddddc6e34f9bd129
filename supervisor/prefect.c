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

static void
prefect_reply(void *arg, const struct http_response *resp)
{
    struct prefect_call_ctx *c = arg;
    json_t *body = NULL;

    if (resp->len > 0) {
        json_error_t jerr;

        body = json_loadb(resp->body, resp->len, JSON_DECODE_ANY, &jerr);
    }
    if (c->done)
        c->done(c->w, c->arg, resp->status, body, resp->error);
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
    if (http_request(w->http, method, path, text, attempts, prefect_reply, c) == -1)
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
    const char *s;

    if (!json_is_object(body))
        return "";
    if ((s = json_string_value(json_object_get(body, "detail"))) != NULL)
        return s;
    if ((s = json_string_value(json_object_get(body, "exception_message"))) != NULL)
        return s;
    return "";
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
