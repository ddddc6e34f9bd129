/*
 * A cache of small freed blocks in front of malloc, for jansson.
 *
 * A render allocates and frees a few hundred small jansson nodes, hash
 * pairs and strings.  In bench/render, glibc 2.36's malloc and free took
 * more instructions than the renderer's own code (callgrind).  Its
 * per-thread cache holds seven blocks of a size by default, so most frees
 * go to the fast bins, and requests of 1 KiB or more (hash tables' bucket
 * arrays) consolidate those again.  This cache keeps freed blocks of up to
 * RENDER_POOL_MAX_SIZE bytes in per-thread lists by size class and hands
 * them out again.
 *
 * Every block is a malloc block: render_pool_free classifies a block by
 * malloc_usable_size, so it also takes blocks that were allocated before
 * the cache was installed, and anything may still release a cached block
 * with free().  That is what makes installing it process-wide safe while
 * other jansson values are alive.  Each list holds at most
 * RENDER_POOL_MAX_BLOCKS blocks; beyond that blocks go back to free().
 */
#include <malloc.h>
#include <stdlib.h>

#include "render.h"

#define CLASS_SHIFT 4 /* classes are 16 bytes apart */
#define CLASS_COUNT ((RENDER_POOL_MAX_SIZE >> CLASS_SHIFT) + 1)

struct free_block {
    struct free_block *next;
};

/* Class c holds blocks whose usable size is at least c * 16 bytes. */
static _Thread_local struct {
    struct free_block *head[CLASS_COUNT];
    unsigned count[CLASS_COUNT];
} cache;

void *render_pool_malloc(size_t size)
{
    size_t class = (size + (1u << CLASS_SHIFT) - 1) >> CLASS_SHIFT;
    struct free_block *block;

    if (class >= CLASS_COUNT)
        return malloc(size);
    if (class == 0)
        class = 1;
    block = cache.head[class];
    if (!block)
        return malloc(class << CLASS_SHIFT);
    cache.head[class] = block->next;
    cache.count[class]--;
    return block;
}

void render_pool_free(void *ptr)
{
    size_t class;

    if (!ptr)
        return;
    class = malloc_usable_size(ptr) >> CLASS_SHIFT;
    if (class == 0 || class >= CLASS_COUNT || cache.count[class] >= RENDER_POOL_MAX_BLOCKS) {
        free(ptr);
        return;
    }
    ((struct free_block *)ptr)->next = cache.head[class];
    cache.head[class] = ptr;
    cache.count[class]++;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RENDER_POOL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define RENDER_POOL_ASAN 1
#endif

void render_pool_install(void)
{
#ifdef RENDER_POOL_ASAN
    /* Cached blocks would hide use-after-free from AddressSanitizer. */
    return;
#else
    json_set_alloc_funcs(render_pool_malloc, render_pool_free);
#endif
}
