/* Short-lived cache of deployments and flows; see cache.h. */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define CACHE_MAX_WAITERS 4096

struct cache_waiter {
    prefect_done_fn done;
    void           *arg;
};

struct cache_entry {
    struct cache_entry  *next;
    char                *path;
    json_t              *body;        /* NULL while fetching */
    int64_t              expires_ms;
    int                  fetching;
    struct cache_waiter *waiters;
    size_t               nwaiters;
    size_t               capwaiters;
};

static void
cache_entry_free(struct cache_entry *e)
{
    json_decref(e->body);
    free(e->path);
    free(e->waiters);
    free(e);
}

/* Drops expired entries that no request is filling. */
static void
cache_prune(struct worker *w, int64_t now)
{
    struct cache_entry **pp = (struct cache_entry **)&w->cache;

    while (*pp) {
        struct cache_entry *e = *pp;

        if (!e->fetching && e->expires_ms <= now) {
            *pp = e->next;
            cache_entry_free(e);
        } else {
            pp = &e->next;
        }
    }
}

static void
cache_unlink(struct worker *w, struct cache_entry *gone)
{
    struct cache_entry **pp = (struct cache_entry **)&w->cache;

    for (; *pp; pp = &(*pp)->next) {
        if (*pp == gone) {
            *pp = gone->next;
            return;
        }
    }
}

static void
cache_reply(struct worker *w, void *arg, long status, json_t *body, const char *error)
{
    struct cache_entry *e = arg;
    struct cache_waiter *waiters = e->waiters;
    size_t n = e->nwaiters;

    /* Waiters are detached first: a callback may call cache_get again. */
    e->waiters = NULL;
    e->nwaiters = e->capwaiters = 0;
    e->fetching = 0;
    if (status == 200 && json_is_object(body)) {
        e->body = json_incref(body);
        e->expires_ms = util_now_ms() + CACHE_TTL_MS;
    } else {
        cache_unlink(w, e);
    }
    for (size_t i = 0; i < n; i++)
        waiters[i].done(w, waiters[i].arg, status, body, error);
    free(waiters);
    if (e->body == NULL)
        cache_entry_free(e);
}

static int
cache_add_waiter(struct cache_entry *e, prefect_done_fn done, void *arg)
{
    if (e->nwaiters == e->capwaiters) {
        size_t cap = e->capwaiters ? e->capwaiters * 2 : 8;
        struct cache_waiter *p;

        if (cap > CACHE_MAX_WAITERS || (p = realloc(e->waiters, cap * sizeof *p)) == NULL)
            return -1;
        e->waiters = p;
        e->capwaiters = cap;
    }
    e->waiters[e->nwaiters].done = done;
    e->waiters[e->nwaiters].arg = arg;
    e->nwaiters++;
    return 0;
}

int
cache_get(struct worker *w, const char *path, prefect_done_fn done, void *arg)
{
    int64_t now = util_now_ms();
    struct cache_entry *e;

    cache_prune(w, now);
    for (e = w->cache; e; e = e->next)
        if (strcmp(e->path, path) == 0)
            break;
    if (e && e->body) {
        done(w, arg, 200, e->body, NULL);
        return 0;
    }
    if (e)
        return cache_add_waiter(e, done, arg);

    if ((e = calloc(1, sizeof *e)) == NULL || (e->path = strdup(path)) == NULL ||
        cache_add_waiter(e, done, arg) == -1) {
        if (e)
            cache_entry_free(e);
        return -1;
    }
    e->fetching = 1;
    if (prefect_call(w, "GET", path, NULL, 5, cache_reply, e) == -1) {
        cache_entry_free(e);
        return -1;
    }
    e->next = w->cache;
    w->cache = e;
    return 0;
}

void
cache_free_all(struct worker *w)
{
    while (w->cache) {
        struct cache_entry *e = w->cache;

        w->cache = e->next;
        cache_entry_free(e);
    }
}
