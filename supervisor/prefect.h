/*
 * The Prefect API calls the supervisor makes, on top of http.c.  Replies are
 * parsed as JSON before the callback runs; body is NULL when the reply is
 * empty or not JSON.  The callback never owns body.
 */
#ifndef DROVER_PREFECT_H
#define DROVER_PREFECT_H

#include <jansson.h>

struct worker;

typedef void (*prefect_done_fn)(struct worker *w, void *arg, long status,
                                json_t *body, const char *error);

/* Sends a request; body (may be NULL) is consumed.  Returns 0 or -1. */
int prefect_call(struct worker *w, const char *method, const char *path, json_t *body,
                 int attempts, prefect_done_fn done, void *arg);

/* Proposes a flow run state: {"state": {type, name, message,
 * state_details: {flow_run_id, transition_id}}, "force": force}. */
int prefect_set_state(struct worker *w, const char *flow_run_id, const char *type,
                      const char *name, const char *message, int force, int attempts,
                      prefect_done_fn done, void *arg);

/* Writes "/work_pools/<escaped pool><suffix>" into out. */
int prefect_pool_path(struct worker *w, const char *suffix, char *out, size_t outlen);

/* Returns the "detail" or "exception_message" of an error body, or "". */
const char *prefect_error_detail(json_t *body);

/* Returns Prefect's explanation of an infrastructure exit status. */
const char *prefect_exit_explanation(long long code);

#endif
