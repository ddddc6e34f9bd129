/*
 * Non-blocking HTTP client for the Prefect API on libcurl's multi interface.
 *
 * Requests are queued with http_request(); the owner's event loop asks for
 * the sockets to watch (http_pollitems) and the longest sleep
 * (http_timeout_ms), and calls http_dispatch() after every poll.  Completed
 * requests call their callback from inside http_dispatch().  Transient
 * failures (transport errors, 408, 429, 502, 503, 504) are retried with
 * exponential backoff that honours Retry-After, up to the request's attempt
 * budget.
 */
#ifndef DROVER_HTTP_H
#define DROVER_HTTP_H

#include <stddef.h>
#include <zmq.h>

struct http;

struct http_response {
    long        status;      /* HTTP status; 0 when no response arrived */
    const char *body;        /* NUL-terminated; valid during the callback only */
    size_t      len;
    const char *error;       /* transport error text when status == 0 */
    int         attempts;
    long        retry_after_s; /* Retry-After of the reply in seconds, -1 if none */
};

typedef void (*http_done_fn)(void *arg, const struct http_response *resp);

#define HTTP_FOREVER 0   /* attempt budget: retry until it succeeds */
#define HTTP_MAX_BODY (16u * 1024u * 1024u)

struct http_options {
    const char *base_url;       /* PREFECT_API_URL, no trailing slash needed */
    const char *api_key;        /* Bearer token, may be NULL; never logged */
    const char *auth_string;    /* user:pass for Basic auth, may be NULL */
    const char *ca_file;        /* may be NULL: system default */
    int         insecure;       /* skip TLS verification (off by default) */
    long        timeout_ms;     /* per attempt */
    const char *user_agent;
};

/* Returns a client, or NULL with err.  Copies every string of opts. */
struct http *http_new(const struct http_options *opts, char *err, size_t errlen);
void http_free(struct http **h);

/* Queues a request.  path is relative to the base URL ("/work_pools/x");
 * body is JSON text or NULL and is copied.  max_attempts counts tries in
 * all; HTTP_FOREVER retries transient failures without end.  The callback
 * (may be NULL) runs once, from http_dispatch().  A request still pending
 * when the client is freed never calls back: release_arg (may be NULL) then
 * frees arg instead.  Returns 0 or -1. */
int http_request(struct http *h, const char *method, const char *path, const char *body,
                 int max_attempts, http_done_fn done, void *arg, void (*release_arg)(void *));

/* Writes the sockets libcurl waits on into items (up to max) and returns
 * how many. */
int http_pollitems(struct http *h, zmq_pollitem_t *items, int max);

/* Returns the milliseconds until libcurl or a queued retry needs service,
 * or -1 when nothing is pending. */
long http_timeout_ms(struct http *h);

/* Services ready sockets and expired timers, then runs callbacks of
 * finished requests. */
void http_dispatch(struct http *h, const zmq_pollitem_t *items, int n);

/* Requests queued or in flight. */
size_t http_pending(const struct http *h);

/* Escapes one path segment (a pool or block name) into out. */
int http_escape(struct http *h, const char *segment, char *out, size_t outlen);

/* Returns a malloc'd percent-escaped copy of one path segment, or NULL. */
char *http_escape_dup(const char *segment);

#endif
