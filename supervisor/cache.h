/*
 * A short-lived cache of API objects that many runs read: deployments and
 * flows.  Concurrent reads of one object share a single request, and a
 * successful reply is reused for CACHE_TTL_MS, so a burst of runs from one
 * deployment costs one GET instead of one per run.
 */
#ifndef DROVER_CACHE_H
#define DROVER_CACHE_H

#include <jansson.h>

#include "prefect.h"

/* NOTE: a deployment updated within this window is seen by new runs only
 * once it expires. */
#define CACHE_TTL_MS 5000

struct worker;

/* Calls done with the object at path (GET), from the cache when fresh:
 * then before cache_get returns.  Returns 0, or -1 when the request cannot
 * be queued (done is not called). */
int cache_get(struct worker *w, const char *path, prefect_done_fn done, void *arg);

void cache_free_all(struct worker *w);

#endif
