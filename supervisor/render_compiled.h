/*
 * The compiled form of a base job template, shared by the renderer's
 * files that apply it (render_compile.c builds and applies jansson trees,
 * render_run.c renders into text).  Not for other modules.
 */
#ifndef DROVER_RENDER_COMPILED_H
#define DROVER_RENDER_COMPILED_H

#include <stdlib.h>

#include "render.h"

/* Prefect release whose prefect.io/version label is used when the caller
 * does not give one. */
#define RENDER_PREFECT_VERSION "3.9.1"

/* A standard placeholder's name, split as render_lookup_layered splits it. */
struct compiled_path {
    const char *first; /* first segment with ']' removed */
    size_t first_len;
    const json_t *fallback; /* non-null schema default of the first segment */
    size_t slot;            /* index of the first segment in render_template.names */
    size_t nseg;            /* segments after the first, for render_lookup_segment */
    const char **seg;
    size_t *seg_len;
    /* For render_run, when fallback is the whole value (nseg == 0): its
     * JSON text, its str() text and its RENDER_REFS_* flags. */
    char *fallback_json;
    size_t fallback_json_len;
    char *fallback_text;
    size_t fallback_text_len;
    int fallback_refs;
    const json_t *fallback_blocks; /* the block keys render_collect_blocks_into lists */
};

/* Flags for the parts of a value that the block and variable steps may change. */
#define RENDER_REFS_BLOCK 1     /* a string with a block placeholder */
#define RENDER_REFS_VARIABLE 2  /* a string with a variable placeholder */
#define RENDER_REFS_CONTAINER 4 /* an object or array, which the steps search */

/* The RENDER_REFS_* flags of a value; 0 for one both steps leave alone. */
int render_tmpl_refs(const json_t *value);

enum piece_kind {
    PIECE_TEXT,     /* template text, block and variable placeholders included */
    PIECE_STANDARD, /* str() of a looked-up value, nothing when unset */
    PIECE_ENV       /* the worker's environment value, nothing when unset */
};

struct piece {
    enum piece_kind kind;
    const char *text; /* PIECE_TEXT: into the template string; PIECE_ENV: NUL-terminated name */
    size_t len;
    struct compiled_path path;
};

enum node_kind {
    NODE_LITERAL, /* no standard or env placeholder below: a copy of the template */
    NODE_WHOLE,   /* a string that is one standard placeholder */
    NODE_INLINE,  /* a string with standard or env placeholders among other text */
    NODE_OBJECT,
    NODE_ARRAY
};

struct node {
    enum node_kind kind;
    const json_t *value; /* the template value */
    size_t n;            /* pieces or children */
    union {
        struct compiled_path path; /* NODE_WHOLE */
        struct piece *pieces;      /* NODE_INLINE */
        struct node *children;     /* NODE_OBJECT, NODE_ARRAY (in iteration order) */
    } u;
    const char *key; /* as a child of an object */
    size_t key_len;
    int may_ref;     /* a block placeholder or a "$ref" key is in the template value */
    int dollar_ref;  /* an object with a "$ref" key, which may be a block reference */
    int has_brace;   /* some string in the template value contains '{' */
    char *raw;       /* NODE_LITERAL without '{' or "$ref": its JSON text */
    size_t raw_len;
    char *key_prefix; /* "key": as JSON text, for render_run */
    size_t key_prefix_len;
    int base_field;            /* a field: 0-3 for command, env, labels, name, else -1 */
    /* NODE_INLINE whose standard placeholders all have a whole-value
     * fallback: the text when every one falls back, as a string value
     * with its JSON text (NULL when the text may hold a reference). */
    json_t *all_fallback;
    char *all_fallback_json;
    size_t all_fallback_json_len;
    int lit_refs;              /* NODE_LITERAL: RENDER_REFS_* of the value */
    const json_t *lit_blocks;  /* NODE_LITERAL: its block keys, when lit_refs is set */
};

/* A block of an arena: memory handed out in aligned pieces and freed all
 * at once, by a compiled template and by each render_run. */
struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

/* Returns size bytes (not zeroed) from the arena whose newest block is
 * *head, adding a block of at least block_size bytes when the newest has no
 * room; NULL when out of memory. */
static inline void *render_arena_alloc(struct arena_block **head, size_t size,
                                       size_t block_size)
{
    struct arena_block *block = *head;
    size_t align = sizeof(max_align_t);
    void *out;

    size = (size + align - 1) / align * align;
    if (!block || block->cap - block->used < size) {
        size_t cap = size > block_size ? size : block_size;

        block = malloc(sizeof(*block) + cap);
        if (!block)
            return NULL;
        block->next = *head;
        block->used = 0;
        block->cap = cap;
        *head = block;
    }
    out = (char *)block->data + block->used;
    block->used += size;
    return out;
}

/* Frees the blocks from head on, up to and without stop (NULL frees all). */
void render_arena_free(struct arena_block *head, const struct arena_block *stop);

struct render_template {
    json_t *base; /* a reference that keeps the borrowed values below alive */
    const json_t *job_config;
    const json_t *properties;
    json_t *empty_properties; /* when the template has none */
    const json_t *default_env; /* non-null default of properties.env */
    char *properties_error;    /* check_properties' message, reported when applied */
    size_t nfields;
    struct node *fields; /* job_configuration's members in order */
    const struct node *env_field; /* the member named env, or NULL */
    json_t *names;  /* each distinct first segment -> its slot (an integer) */
    json_t *env_index; /* the env object's keys -> their position, when env is an object */
    json_t *block_lists; /* holds the fallback_blocks and lit_blocks arrays */
    size_t nslots;
    struct arena_block *arena;
    int fast; /* render_run may build the configuration without jansson trees */
    int max_depth; /* deepest nesting of job_configuration's values */
};

/* Points each slot at the job variable of its name: one lookup per job
 * variable instead of one per placeholder.  *slots is small when
 * small_count slots are enough, else a calloc'd array.  Returns 0 or -1. */
int render_tmpl_fill_slots(const struct render_template *tmpl, const json_t *vars,
                           json_t **small, size_t small_count, json_t ***slots);
/* The value of a compiled path, or NULL when unset.  *owned is set when
 * the caller must release it. */
json_t *render_tmpl_lookup(json_t *const *slots, const struct compiled_path *path, int *owned);
/* The template value of key in layers (the last one holding it), or NULL. */
const json_t *render_tmpl_later_value(const json_t *const *layers, size_t n, const char *key,
                                      size_t key_len);
/* Whether one of layers has key. */
int render_tmpl_seen_before(const json_t *const *layers, size_t n, const char *key,
                            size_t key_len);

/* Resolve block references or variables in one value that sits at depth
 * in a configuration, as resolve_block_document_references and
 * resolve_variables do.  Each returns a new reference to the replacement,
 * which is node itself when nothing changed (containers are updated in
 * place), or NULL with err.  blocks must be an object.  When variables and
 * seen are not NULL, the variables of the result are listed there. */
json_t *render_resolve_blocks_node(json_t *node, int depth, const json_t *blocks,
                                   json_t *variables, json_t *seen, char *err, size_t errlen);
json_t *render_resolve_variables_node(json_t *node, int depth, const json_t *vars, char *err,
                                      size_t errlen);

/* Appends value as json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY)
 * writes it. */
void render_json_append(struct render_buf *buf, const json_t *value);

/* Pieces of the prepare step (render_prepare.c). */
int render_prepare_uuid(const json_t *object, const char *what, const char *key, int required,
                        char out[37], char *err, size_t errlen);
int render_prepare_updated(const char *text, char *out, size_t outlen);
json_t *render_prepare_name(const struct render_context *ctx, json_t *name,
                            const json_t *run_name, char *err, size_t errlen);

#endif /* DROVER_RENDER_COMPILED_H */
