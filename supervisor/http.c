/*
 * Non-blocking HTTP client on libcurl's multi socket interface; see http.h.
 *
 * libcurl tells us which sockets to watch through CURLMOPT_SOCKETFUNCTION
 * and when to call back through CURLMOPT_TIMERFUNCTION; both are mirrored
 * into small tables the supervisor's zmq_poll reads.  Retries wait in a
 * list ordered by nothing: it is short, and scanned once per dispatch.
 *
 * Writes (every method but GET and HEAD, except POSTs that only filter or
 * count, and the worker heartbeat) pass a window of requests in flight.  A
 * Prefect server on SQLite lets one write in at a time and returns 503 to a
 * write that finds the database locked, so many concurrent writes cost it
 * more CPU in failed attempts than they gain.  The window halves on a 503 or
 * 429 and grows by one for each window of writes that succeed, as TCP's
 * congestion window does; a server that never returns 503 keeps all
 * HTTP_MAX_WRITES.  libcurl may open HTTP_READ_CONNECTIONS more connections
 * than that, so reads and heartbeats never wait for slow writes to end.  The
 * heartbeat skips the window because a server that saw none for three
 * intervals marks the worker offline.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "http.h"
#include "log.h"
#include "util.h"

#define HTTP_MAX_SOCKETS 256
#define HTTP_MAX_WRITES 16        /* the largest write window */
#define HTTP_READ_CONNECTIONS 4   /* connections writes never take */
#define HTTP_MAX_CONNECTIONS (HTTP_MAX_WRITES + HTTP_READ_CONNECTIONS)   /* per host */

struct http_req {
    struct http_req *next;          /* in the waiting or the gated list */
    struct http_req *all_prev;      /* every live request, for http_free */
    struct http_req *all_next;
    CURL            *easy;
    char            *method;
    char            *url;
    char            *body;
    int              max_attempts;
    int              attempts;
    int64_t          due_ms;        /* when a retry may start; 0 = in flight */
    int64_t          started_ms;    /* start of the current attempt */
    int              is_write;      /* passes the write window */
    http_done_fn     done;
    void            *arg;
    void           (*release_arg)(void *);
    char            *resp;
    size_t           resp_len;
    size_t           resp_cap;
    long             retry_after_s; /* from the last response, -1 if none */
    char             errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers;
};

struct http_sock {
    curl_socket_t fd;
    int           what;     /* CURL_POLL_IN / OUT / INOUT */
};

struct http {
    CURLM            *multi;
    char             *base_url;
    char             *api_key;
    char             *auth_string;
    char             *ca_file;
    char             *user_agent;
    int               insecure;
    long              timeout_ms;
    int64_t           curl_due_ms;  /* -1: libcurl wants no timer */
    struct http_sock  socks[HTTP_MAX_SOCKETS];
    int               nsocks;
    struct http_req  *waiting;      /* retries not yet started */
    struct http_req  *gated;        /* writes waiting for the window, oldest first */
    struct http_req  *gated_tail;
    double            write_window; /* writes allowed in flight, 1 to HTTP_MAX_WRITES */
    int               writes_in_flight;
    int64_t           window_cut_ms; /* last halving; replies to older attempts do not cut again */
    struct http_req  *all;          /* every live request */
    size_t            pending;
};

static int
http_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http *h = userp;
    int i;

    for (i = 0; i < h->nsocks; i++)
        if (h->socks[i].fd == fd)
            break;
    if (what == CURL_POLL_REMOVE) {
        if (i < h->nsocks)
            h->socks[i] = h->socks[--h->nsocks];
        return 0;
    }
    if (i == h->nsocks) {
        if (h->nsocks == HTTP_MAX_SOCKETS) {
            log_error("event=http_socket_table_full max=%d", HTTP_MAX_SOCKETS);
            return -1;
        }
        h->nsocks++;
    }
    h->socks[i].fd = fd;
    h->socks[i].what = what;
    return 0;
}

static int
http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http *h = userp;

    h->curl_due_ms = timeout_ms < 0 ? -1 : util_now_ms() + timeout_ms;
    return 0;
}

static size_t
http_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_req *r = userp;
    size_t n = size * nmemb;

    if (r->resp_len + n + 1 > HTTP_MAX_BODY)
        return 0;   /* aborts the transfer: CURLE_WRITE_ERROR */
    if (r->resp_len + n + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 4096;
        char *p;

        while (cap < r->resp_len + n + 1)
            cap *= 2;
        if ((p = realloc(r->resp, cap)) == NULL)
            return 0;
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, data, n);
    r->resp_len += n;
    r->resp[r->resp_len] = '\0';
    return n;
}

static size_t
http_header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_req *r = userp;
    size_t n = size * nmemb;
    char line[128];

    if (n < 12 || n >= sizeof line)
        return n;
    memcpy(line, data, n);
    line[n] = '\0';
    if (strncasecmp(line, "retry-after:", 12) == 0) {
        char *end;
        long s = strtol(line + 12, &end, 10);

        /* Only the delay-seconds form; an HTTP date falls back to backoff. */
        if (end != line + 12 && s >= 0 && s <= 3600)
            r->retry_after_s = s;
    }
    return n;
}

struct http *
http_new(const struct http_options *opts, char *err, size_t errlen)
{
    struct http *h;

    if ((h = calloc(1, sizeof *h)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->curl_due_ms = -1;
    h->base_url = strdup(opts->base_url);
    h->api_key = opts->api_key ? strdup(opts->api_key) : NULL;
    h->auth_string = opts->auth_string ? strdup(opts->auth_string) : NULL;
    h->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
    h->user_agent = strdup(opts->user_agent ? opts->user_agent : "drover");
    h->insecure = opts->insecure;
    h->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 60000;
    if (h->base_url == NULL || h->user_agent == NULL) {
        snprintf(err, errlen, "out of memory");
        http_free(&h);
        return NULL;
    }
    /* Strip trailing slashes: paths always start with one. */
    for (size_t n = strlen(h->base_url); n > 0 && h->base_url[n - 1] == '/'; n--)
        h->base_url[n - 1] = '\0';

    if ((h->multi = curl_multi_init()) == NULL) {
        snprintf(err, errlen, "curl_multi_init failed");
        http_free(&h);
        return NULL;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_sock_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)HTTP_MAX_CONNECTIONS);
    h->write_window = HTTP_MAX_WRITES;
    return h;
}

static void
http_req_unlink(struct http *h, struct http_req *r)
{
    if (r->all_prev)
        r->all_prev->all_next = r->all_next;
    else
        h->all = r->all_next;
    if (r->all_next)
        r->all_next->all_prev = r->all_prev;
    r->all_prev = r->all_next = NULL;
}

static void
http_req_free(struct http_req *r)
{
    if (r == NULL)
        return;
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->method);
    free(r->url);
    free(r->body);
    free(r->resp);
    free(r);
}

void
http_free(struct http **hp)
{
    struct http *h;

    if (hp == NULL || (h = *hp) == NULL)
        return;
    while (h->all) {
        struct http_req *r = h->all;

        h->all = r->all_next;
        if (r->easy && h->multi)
            curl_multi_remove_handle(h->multi, r->easy);
        if (r->release_arg)
            r->release_arg(r->arg);
        http_req_free(r);
    }
    if (h->multi)
        curl_multi_cleanup(h->multi);
    if (h->api_key)
        util_wipe(h->api_key, strlen(h->api_key));
    if (h->auth_string)
        util_wipe(h->auth_string, strlen(h->auth_string));
    free(h->base_url);
    free(h->api_key);
    free(h->auth_string);
    free(h->ca_file);
    free(h->user_agent);
    free(h);
    *hp = NULL;
}

static int
http_start(struct http *h, struct http_req *r)
{
    CURL *e;

    if (r->easy == NULL) {
        if ((r->easy = curl_easy_init()) == NULL)
            return -1;
    } else {
        curl_easy_reset(r->easy);
    }
    e = r->easy;
    r->resp_len = 0;
    if (r->resp)
        r->resp[0] = '\0';
    r->retry_after_s = -1;
    r->errbuf[0] = '\0';
    r->attempts++;
    r->due_ms = 0;
    r->started_ms = util_now_ms();

    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->timeout_ms < 10000 ? h->timeout_ms : 10000L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (h->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    if (h->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (h->auth_string) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERPWD, h->auth_string);
    } else if (h->api_key) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, h->api_key);
    }
    if (r->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    }
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
        return -1;
    return 0;
}

/* Returns 1 for a request that passes the write window: every request that
 * writes on the server except the worker heartbeat.  POSTs to .../filter,
 * .../count and .../paginate only read. */
static int
http_is_write(const char *method, const char *path)
{
    static const char *const ungated_posts[] = { "/filter", "/count", "/paginate",
                                                 "/workers/heartbeat" };
    size_t n = strlen(path);

    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return 0;
    if (strcmp(method, "POST") != 0)
        return 1;
    while (n > 0 && path[n - 1] == '/')
        n--;
    for (size_t i = 0; i < sizeof ungated_posts / sizeof ungated_posts[0]; i++) {
        size_t k = strlen(ungated_posts[i]);

        if (n >= k && strncmp(path + n - k, ungated_posts[i], k) == 0)
            return 0;
    }
    return 1;
}

static int
http_launch(struct http *h, struct http_req *r)
{
    if (http_start(h, r) == -1)
        return -1;
    if (r->is_write)
        h->writes_in_flight++;
    return 0;
}

/* Calls back a request whose transfer could not start, and frees it. */
static void
http_fail_start(struct http *h, struct http_req *r)
{
    struct http_response resp = { .status = 0, .body = "", .error = "cannot start transfer",
                                  .retry_after_s = -1 };

    h->pending--;
    http_req_unlink(h, r);
    if (r->done)
        r->done(r->arg, &resp);
    http_req_free(r);
}

static void
http_gate(struct http *h, struct http_req *r)
{
    r->next = NULL;
    if (h->gated_tail)
        h->gated_tail->next = r;
    else
        h->gated = r;
    h->gated_tail = r;
}

static int
http_window_open(const struct http *h)
{
    return h->writes_in_flight < (int)h->write_window;
}

/* Starts gated writes while the window has room. */
static void
http_pump(struct http *h)
{
    while (h->gated && http_window_open(h)) {
        struct http_req *r = h->gated;

        if ((h->gated = r->next) == NULL)
            h->gated_tail = NULL;
        r->next = NULL;
        if (http_launch(h, r) == -1)
            http_fail_start(h, r);
    }
}

/* Adjusts the write window to the reply of one write attempt. */
static void
http_window_update(struct http *h, const struct http_req *r, long status)
{
    if (status == 503 || status == 429) {
        if (r->started_ms < h->window_cut_ms)
            return;
        h->write_window = h->write_window / 2 < 1 ? 1 : h->write_window / 2;
        h->window_cut_ms = util_now_ms();
        log_debug("event=http_write_window size=%d status=%ld", (int)h->write_window, status);
    } else if (status >= 200 && status < 500) {
        h->write_window += 1 / h->write_window;
        if (h->write_window > HTTP_MAX_WRITES)
            h->write_window = HTTP_MAX_WRITES;
    }
}

int
http_request(struct http *h, const char *method, const char *path, const char *body,
             int max_attempts, http_done_fn done, void *arg, void (*release_arg)(void *))
{
    struct http_req *r;
    size_t n;

    if ((r = calloc(1, sizeof *r)) == NULL)
        return -1;
    n = strlen(h->base_url) + strlen(path) + 1;
    r->method = strdup(method);
    r->url = malloc(n);
    r->body = body ? strdup(body) : NULL;
    r->max_attempts = max_attempts;
    r->done = done;
    r->arg = arg;
    r->release_arg = release_arg;
    if (r->method == NULL || r->url == NULL || (body && r->body == NULL))
        goto fail;
    snprintf(r->url, n, "%s%s", h->base_url, path);
    r->headers = curl_slist_append(NULL, "Accept: application/json");
    r->headers = curl_slist_append(r->headers, "X-PREFECT-API-VERSION: 0.8.4");
    if (body)
        r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
    /* An empty Expect header stops libcurl from waiting for 100-continue. */
    r->headers = curl_slist_append(r->headers, "Expect:");
    if (r->headers == NULL)
        goto fail;
    r->is_write = http_is_write(method, path);
    if (r->is_write && (h->gated || !http_window_open(h)))
        http_gate(h, r);
    else if (http_launch(h, r) == -1)
        goto fail;
    r->all_next = h->all;
    if (h->all)
        h->all->all_prev = r;
    h->all = r;
    h->pending++;
    return 0;

fail:
    http_req_free(r);
    return -1;
}

int
http_pollitems(struct http *h, zmq_pollitem_t *items, int max)
{
    int n = 0;

    for (int i = 0; i < h->nsocks && n < max; i++) {
        items[n].socket = NULL;
        items[n].fd = h->socks[i].fd;
        items[n].events = 0;
        if (h->socks[i].what & CURL_POLL_IN)
            items[n].events |= ZMQ_POLLIN;
        if (h->socks[i].what & CURL_POLL_OUT)
            items[n].events |= ZMQ_POLLOUT;
        items[n].revents = 0;
        n++;
    }
    return n;
}

long
http_timeout_ms(struct http *h)
{
    int64_t now = util_now_ms();
    int64_t due = h->curl_due_ms;

    for (struct http_req *r = h->waiting; r; r = r->next)
        if (due == -1 || r->due_ms < due)
            due = r->due_ms;
    if (due == -1)
        return -1;
    return due <= now ? 0 : (long)(due - now);
}

static int
http_transient(long status)
{
    return status == 0 || status == 408 || status == 429 || status == 502 ||
           status == 503 || status == 504;
}

/* Schedules another attempt: Retry-After when the server sent one, else
 * 0.25, 0.5, 1, 2 ... 30 s with up to 20 % jitter added.  The short first
 * delays suit the 503 a SQLite-backed server returns while its database is
 * locked, which clears within milliseconds. */
static void
http_schedule_retry(struct http *h, struct http_req *r)
{
    int64_t delay_ms;

    if (r->retry_after_s >= 0) {
        delay_ms = r->retry_after_s * 1000;
    } else {
        int shift = r->attempts - 1 < 7 ? r->attempts - 1 : 7;

        delay_ms = (int64_t)250 << shift;
        if (delay_ms > 30000)
            delay_ms = 30000;
    }
    delay_ms += util_jitter_ms(delay_ms / 5);
    r->due_ms = util_now_ms() + delay_ms;
    r->next = h->waiting;
    h->waiting = r;
}

static void
http_finish(struct http *h, struct http_req *r, CURLcode rc)
{
    struct http_response resp = {0};
    long status = 0;

    if (rc == CURLE_OK)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(h->multi, r->easy);
    if (r->is_write) {
        h->writes_in_flight--;
        http_window_update(h, r, status);
    }

    if (http_transient(status) &&
        (r->max_attempts == HTTP_FOREVER || r->attempts < r->max_attempts)) {
        if (status)
            log_debug("event=http_retry method=%s status=%ld attempt=%d", r->method, status, r->attempts);
        else
            log_debug("event=http_retry method=%s error=\"%s\" attempt=%d", r->method,
                      r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc), r->attempts);
        http_schedule_retry(h, r);
        return;
    }

    if (log_enabled(LOG_DEBUG))
        log_debug("event=http_done method=%s url=%s status=%ld ms=%lld attempts=%d", r->method,
                  r->url, status, (long long)(util_now_ms() - r->started_ms), r->attempts);
    resp.status = status;
    resp.body = r->resp ? r->resp : "";
    resp.len = r->resp_len;
    resp.error = rc == CURLE_OK ? NULL : (r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    resp.attempts = r->attempts;
    resp.retry_after_s = r->retry_after_s;
    h->pending--;
    http_req_unlink(h, r);
    if (r->done)
        r->done(r->arg, &resp);
    http_req_free(r);
}

void
http_dispatch(struct http *h, const zmq_pollitem_t *items, int n)
{
    int running = 0;
    int64_t now = util_now_ms();
    struct http_req **pp;
    CURLMsg *msg;
    int left;

    for (int i = 0; i < n; i++) {
        int mask = 0;

        if (items[i].revents & ZMQ_POLLIN)
            mask |= CURL_CSELECT_IN;
        if (items[i].revents & ZMQ_POLLOUT)
            mask |= CURL_CSELECT_OUT;
        if (items[i].revents & ZMQ_POLLERR)
            mask |= CURL_CSELECT_ERR;
        if (mask)
            curl_multi_socket_action(h->multi, items[i].fd, mask, &running);
    }
    if (h->curl_due_ms != -1 && h->curl_due_ms <= now) {
        h->curl_due_ms = -1;
        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }

    /* Start retries whose time has come. */
    pp = &h->waiting;
    while (*pp) {
        struct http_req *r = *pp;

        if (r->due_ms > now) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->next = NULL;
        if (r->is_write && (h->gated || !http_window_open(h)))
            http_gate(h, r);
        else if (http_launch(h, r) == -1)
            http_fail_start(h, r);
    }

    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        struct http_req *r = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        http_finish(h, r, msg->data.result);
    }
    http_pump(h);
}

size_t
http_pending(const struct http *h)
{
    return h->pending;
}

int
http_escape(struct http *h, const char *segment, char *out, size_t outlen)
{
    char *esc = curl_easy_escape(NULL, segment, 0);
    int rc = -1;

    (void)h;
    if (esc && strlen(esc) < outlen) {
        strcpy(out, esc);
        rc = 0;
    }
    curl_free(esc);
    return rc;
}

char *
http_escape_dup(const char *segment)
{
    char *esc = curl_easy_escape(NULL, segment, 0);
    char *copy = esc ? strdup(esc) : NULL;

    curl_free(esc);
    return copy;
}
