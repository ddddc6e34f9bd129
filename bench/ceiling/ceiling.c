/*
 * drover-bench-ceiling: the fewest API calls that dispatch a flow run, as fast
 * as the server answers them.
 *
 * Polls a work pool for scheduled runs (get_scheduled_flow_runs, 200 a page,
 * again at once while pages come back full), claims each with a Pending
 * state, optionally reads its deployment (once per deployment, as a worker's
 * cache does), and PATCHes a fake
 * infrastructure_pid, keeping up to --concurrency requests in flight over
 * libcurl multi.  It starts nothing: what it measures is the server's limit
 * for the calls any worker must make.  Stops when --runs runs have their pid
 * (or after --deadline seconds) and prints one JSON object; the times in it
 * are the client's wall clock (seconds since the epoch).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#define CE_MAX_RUNS   100000
#define CE_MAX_BODY   (64u * 1024u * 1024u)
#define CE_ID_LEN     36
#define CE_MAX_DEPLOYMENTS 64

enum ce_kind { CE_POLL, CE_CLAIM, CE_DEPLOYMENT, CE_PID };

struct ce_req {
    enum ce_kind kind;
    int          run;       /* index into runs, -1 for a poll */
    char        *body;      /* response */
    size_t       len;
    char        *post;      /* request body, owned */
    struct curl_slist *headers;
};

struct ce_run {
    char id[CE_ID_LEN + 1];
    char deployment[CE_ID_LEN + 1];
    int  stage;             /* 0 queued, 1 claiming, 2 deployment, 3 pid, 4 done, 5 dropped */
};

struct ce {
    CURLM        *multi;
    const char   *api;
    const char   *pool;
    int           concurrency;
    int           with_deployment;
    char          deployments[CE_MAX_DEPLOYMENTS][CE_ID_LEN + 1];   /* read once each */
    int           ndeployments;
    int           inflight;
    int           polling;
    int           repoll;
    struct ce_run *runs;
    int           nruns, target, done, dropped, next_queued;
    long          requests, errors, not_accepted;
    double        first_poll, last_done, last_poll;
};

static double
ce_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t
ce_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct ce_req *q = arg;
    size_t n = size * nmemb;
    char *nb;

    if (q->len + n + 1 > CE_MAX_BODY || (nb = realloc(q->body, q->len + n + 1)) == NULL)
        return 0;
    q->body = nb;
    memcpy(q->body + q->len, data, n);
    q->len += n;
    q->body[q->len] = '\0';
    return n;
}

static int
ce_start(struct ce *c, enum ce_kind kind, int run, const char *method, const char *path,
         json_t *body)
{
    struct ce_req *q = calloc(1, sizeof *q);
    CURL *h = curl_easy_init();
    char url[2048];

    if (q == NULL || h == NULL) {
        free(q);
        if (h)
            curl_easy_cleanup(h);
        json_decref(body);
        return -1;
    }
    q->kind = kind;
    q->run = run;
    snprintf(url, sizeof url, "%s%s", c->api, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ce_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(h, CURLOPT_PRIVATE, q);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        q->post = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        q->headers = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, q->headers);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->post ? q->post : "{}");
    }
    curl_multi_add_handle(c->multi, h);
    c->inflight++;
    c->requests++;
    return 0;
}

static void
ce_poll(struct ce *c)
{
    char path[512], before[64];
    time_t t = time(NULL) + 10;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(before, sizeof before, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(path, sizeof path, "/work_pools/%s/get_scheduled_flow_runs", c->pool);
    if (c->first_poll == 0)
        c->first_poll = ce_now();
    c->polling = 1;
    c->repoll = 0;
    ce_start(c, CE_POLL, -1, "POST", path,
             json_pack("{s:s, s:i}", "scheduled_before", before, "limit", 200));
}

static void
ce_step(struct ce *c, int i)
{
    struct ce_run *r = &c->runs[i];
    char path[256];

    if (r->stage == 1) {
        snprintf(path, sizeof path, "/flow_runs/%s/set_state", r->id);
        ce_start(c, CE_CLAIM, i, "POST", path,
                 json_pack("{s:{s:s, s:s}}", "state", "type", "PENDING", "name", "Pending"));
    } else if (r->stage == 2) {
        snprintf(path, sizeof path, "/deployments/%s", r->deployment);
        ce_start(c, CE_DEPLOYMENT, i, "GET", path, NULL);
    } else if (r->stage == 3) {
        char pid[64];

        snprintf(path, sizeof path, "/flow_runs/%s", r->id);
        snprintf(pid, sizeof pid, "ceiling:%d", i);
        ce_start(c, CE_PID, i, "PATCH", path, json_pack("{s:s}", "infrastructure_pid", pid));
    }
}

/* Returns 1 when the deployment was read (or is being read) already, else
 * records it: like a worker's cache, one read serves every run of a
 * deployment. */
static int
ce_deployment_seen(struct ce *c, const char *id)
{
    for (int i = 0; i < c->ndeployments; i++)
        if (strcmp(c->deployments[i], id) == 0)
            return 1;
    if (c->ndeployments < CE_MAX_DEPLOYMENTS)
        memcpy(c->deployments[c->ndeployments++], id, CE_ID_LEN + 1);
    return 0;
}

static int
ce_known(struct ce *c, const char *id)
{
    for (int i = c->nruns - 1; i >= 0; i--)
        if (strcmp(c->runs[i].id, id) == 0)
            return 1;
    return 0;
}

static void
ce_finish(struct ce *c, struct ce_req *q, long status)
{
    struct ce_run *r = q->run >= 0 ? &c->runs[q->run] : NULL;
    json_t *doc = q->body ? json_loads(q->body, 0, NULL) : NULL;

    if (status == 503 || status == 0 || status >= 500) {
        c->errors++;
        if (q->kind == CE_POLL)
            c->polling = 0, c->repoll = 1;
        else
            ce_step(c, q->run);   /* retry the same step */
        json_decref(doc);
        return;
    }
    switch (q->kind) {
    case CE_POLL: {
        size_t i, fresh = 0;
        json_t *item;

        c->polling = 0;
        json_array_foreach(doc, i, item) {
            json_t *fr = json_object_get(item, "flow_run");
            const char *id = json_string_value(json_object_get(fr, "id"));
            const char *dep = json_string_value(json_object_get(fr, "deployment_id"));

            if (id == NULL || strlen(id) != CE_ID_LEN || ce_known(c, id) || c->nruns >= CE_MAX_RUNS)
                continue;
            struct ce_run *n = &c->runs[c->nruns++];
            memcpy(n->id, id, CE_ID_LEN + 1);
            if (dep && strlen(dep) == CE_ID_LEN)
                memcpy(n->deployment, dep, CE_ID_LEN + 1);
            fresh++;
        }
        /* A full page of new runs: more are waiting, so ask again at once.
         * Otherwise the next poll waits for a second, since a page of runs
         * still being claimed costs the server much and brings nothing. */
        c->repoll = json_array_size(doc) >= 200 && fresh == json_array_size(doc);
        c->last_poll = ce_now();
        break;
    }
    case CE_CLAIM: {
        const char *status_s = json_string_value(json_object_get(doc, "status"));

        if (status_s == NULL || strcmp(status_s, "ACCEPT") != 0) {
            c->not_accepted++;
            r->stage = 5;
            c->dropped++;
        } else {
            r->stage = c->with_deployment && r->deployment[0] && !ce_deployment_seen(c, r->deployment)
                       ? 2 : 3;
            ce_step(c, q->run);
        }
        break;
    }
    case CE_DEPLOYMENT:
        r->stage = 3;
        ce_step(c, q->run);
        break;
    case CE_PID:
        if (status >= 400) {
            c->errors++;
            r->stage = 5;
            c->dropped++;
        } else {
            r->stage = 4;
            c->done++;
            c->last_done = ce_now();
        }
        break;
    }
    json_decref(doc);
}

static void
ce_usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s --api URL --pool NAME --runs N [--concurrency C] [--deployment]\n"
            "          [--deadline SECONDS]\n", argv0);
}

int
main(int argc, char **argv)
{
    struct ce c = {0};
    double deadline = 600, start;
    int rc = 1;

    c.concurrency = 8;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--api") == 0 && i + 1 < argc)
            c.api = argv[++i];
        else if (strcmp(argv[i], "--pool") == 0 && i + 1 < argc)
            c.pool = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            c.target = atoi(argv[++i]);
        else if (strcmp(argv[i], "--concurrency") == 0 && i + 1 < argc)
            c.concurrency = atoi(argv[++i]);
        else if (strcmp(argv[i], "--deadline") == 0 && i + 1 < argc)
            deadline = atof(argv[++i]);
        else if (strcmp(argv[i], "--deployment") == 0)
            c.with_deployment = 1;
        else {
            ce_usage(argv[0]);
            return 2;
        }
    }
    if (c.api == NULL || c.pool == NULL || c.target < 1 || c.target > CE_MAX_RUNS ||
        c.concurrency < 1 || c.concurrency > 1024) {
        ce_usage(argv[0]);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c.multi = curl_multi_init();
    c.runs = calloc(CE_MAX_RUNS, sizeof *c.runs);
    if (c.multi == NULL || c.runs == NULL)
        goto out;
    curl_multi_setopt(c.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c.concurrency + 1);
    start = ce_now();

    while (c.done + c.dropped < c.target && ce_now() - start < deadline) {
        CURLMsg *msg;
        int running, left;

        if (!c.polling && (c.repoll || ce_now() - c.last_poll >= 1.0))
            ce_poll(&c);
        /* Start queued claims while there is room; the poll counts as one. */
        while (c.next_queued < c.nruns && c.inflight < c.concurrency + 1) {
            c.runs[c.next_queued].stage = 1;
            ce_step(&c, c.next_queued++);
        }
        curl_multi_perform(c.multi, &running);
        while ((msg = curl_multi_info_read(c.multi, &left)) != NULL) {
            struct ce_req *q;
            long status = 0;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(c.multi, msg->easy_handle);
            curl_easy_cleanup(msg->easy_handle);
            c.inflight--;
            ce_finish(&c, q, status);
            free(q->body);
            free(q->post);
            curl_slist_free_all(q->headers);
            free(q);
        }
        curl_multi_poll(c.multi, NULL, 0, 100, NULL);
    }
    printf("{\"bench\":\"ceiling\",\"runs\":%d,\"done\":%d,\"dropped\":%d,\"not_accepted\":%ld,"
           "\"concurrency\":%d,\"with_deployment\":%s,\"requests\":%ld,\"retried_errors\":%ld,"
           "\"first_poll\":%.6f,\"last_done\":%.6f,\"seconds\":%.3f,\"runs_per_second\":%.2f}\n",
           c.target, c.done, c.dropped, c.not_accepted, c.concurrency,
           c.with_deployment ? "true" : "false", c.requests, c.errors, c.first_poll, c.last_done,
           c.last_done - c.first_poll,
           c.last_done > c.first_poll ? c.done / (c.last_done - c.first_poll) : 0.0);
    rc = c.done > 0 ? 0 : 1;
out:
    free(c.runs);
    if (c.multi)
        curl_multi_cleanup(c.multi);
    curl_global_cleanup();
    return rc;
}
