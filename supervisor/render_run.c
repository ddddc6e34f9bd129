/*
 * One flow run's render, from the compiled template to the JSON text sent
 * to an executor, without building the configuration as jansson objects.
 *
 * The configuration is kept as a tree of small nodes allocated from one
 * arena per run: objects are arrays of members in order, values inserted
 * from job variables and literal parts of the template are borrowed jansson
 * values, and literal parts without any '{' carry their JSON text made when
 * the template was compiled.  Only values that may hold a block or variable
 * reference (strings with '{' and containers from job variables) pass
 * through the jansson resolve functions, one value at a time.  Freeing the
 * run frees the arena at once.
 *
 * Every step gives what the jansson steps give (render_template_apply,
 * render_resolve_blocks_collect, render_resolve_variables, render_prepare,
 * then json_dumps with JSON_COMPACT): the same text and the same lists.
 * Some shapes are not built here: a "$ref" key in the template, env
 * placeholders, containers rendered into the env, and templates nested
 * deeper than RENDER_RUN_MAX_DEPTH.  For those, and on every error, the
 * run goes to the jansson steps.  They render it again from its inputs and
 * report the error in their own words.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "render_compiled.h"

enum rv_kind {
    RV_JSON,   /* a jansson value, borrowed or held in the run's owned list */
    RV_TEXT,   /* a string in the arena, valid UTF-8 */
    RV_OBJECT, /* members in order */
    RV_ARRAY
};

struct rv {
    enum rv_kind kind;
    size_t n; /* RV_TEXT: bytes; RV_OBJECT, RV_ARRAY: members or items */
    union {
        const json_t *json;
        const char *text;
        struct rmember *members;
        struct rv *items;
    } u;
    const char *raw; /* RV_JSON: its JSON text, when the template gave it */
    size_t raw_len;
};

struct rmember {
    const char *key;
    size_t key_len;
    const char *prefix; /* "key": as JSON text, when the template gave it */
    size_t prefix_len;
    struct rv value;
};

/* A value that may hold a block or variable reference, and its depth in
 * the configuration (as the jansson resolve walks count it). */
struct pending {
    struct rv *value;
    int depth;
    int refs;           /* RENDER_REFS_* */
    const json_t *keys; /* its block keys, when the template listed them */
};

/* The arena block allocated with each run; later blocks are smaller. */
#define RUN_FIRST_BLOCK 16384

struct render_run {
    const struct render_template *tmpl;
    json_t *job_vars;
    render_getenv_fn environ_lookup;
    void *environ_arg;
    json_t *blocks;    /* what render_run_resolve_blocks was given */
    json_t *variables; /* what render_run_resolve_variables was given */
    int stage;         /* steps done: 1 applied, 2 blocks, 3 variables */
    int fast;          /* the arena tree is in use; else config is */
    json_t *config;    /* the jansson steps' configuration */
    int config_stage;  /* steps applied to config, as stage counts them */

    json_t *vars;      /* the job variables with dotted keys expanded */
    struct rv root;
    struct pending *pending;
    size_t npending, pending_cap;
    json_t **owned;    /* references released with the run */
    size_t nowned, owned_cap;
    struct arena_block *arena;
    struct arena_block *first; /* allocated with the run */
    struct render_buf scratch; /* text being formatted, copied to the arena */
    char run_id[37];           /* texts the prepare step formats */
    char flow_id[37], deployment_id[37], flow_uuid[37], deployment_uuid[37];
    char updated[64];
    size_t base_at[4]; /* root positions of command, env, labels, name; -1 if absent */
};

/* One freed run (with its first arena block) kept for the next
 * render_run_new of the same thread. */
static _Thread_local struct render_run *spare_run;

/* Hands the run to the jansson steps. */
#define DECLINE (-2)

static void *run_alloc(struct render_run *rr, size_t size)
{
    return render_arena_alloc(&rr->arena, size, 8192);
}

/* Makes room in an arena array of *cap elements of size bytes, n of them
 * in use, for one more: the array itself, or a copy twice as large (first
 * elements for an empty one).  Returns NULL when out of memory. */
static void *grow(struct render_run *rr, void *array, size_t n, size_t *cap, size_t size,
                  size_t first)
{
    size_t new_cap = *cap ? *cap * 2 : first;
    void *grown;

    if (n < *cap)
        return array;
    grown = run_alloc(rr, new_cap * size);
    if (!grown)
        return NULL;
    if (n)
        memcpy(grown, array, n * size);
    *cap = new_cap;
    return grown;
}

/* Empties the scratch buffer for the next text. */
static struct render_buf *scratch(struct render_run *rr)
{
    rr->scratch.len = 0;
    rr->scratch.failed = 0;
    if (rr->scratch.data)
        rr->scratch.data[0] = '\0';
    return &rr->scratch;
}

/* A copy of the scratch text in the arena, or NULL. */
static char *scratch_copy(struct render_run *rr)
{
    struct render_buf *buf = &rr->scratch;
    char *text = buf->failed ? NULL : run_alloc(rr, buf->len + 1);

    if (text) {
        if (buf->len)
            memcpy(text, buf->data, buf->len);
        text[buf->len] = '\0';
    }
    return text;
}

/* Keeps a reference until the run is freed. */
static int own(struct render_run *rr, json_t *value)
{
    json_t **owned = grow(rr, rr->owned, rr->nowned, &rr->owned_cap, sizeof(*owned), 16);

    if (!owned) {
        json_decref(value);
        return -1;
    }
    rr->owned = owned;
    rr->owned[rr->nowned++] = value;
    return 0;
}

static int add_pending(struct render_run *rr, struct rv *value, int depth, int refs,
                       const json_t *keys)
{
    struct pending *pending = grow(rr, rr->pending, rr->npending, &rr->pending_cap,
                                   sizeof(*pending), 16);

    if (!pending)
        return -1;
    rr->pending = pending;
    rr->pending[rr->npending].value = value;
    rr->pending[rr->npending].depth = depth;
    rr->pending[rr->npending].refs = refs;
    rr->pending[rr->npending].keys = keys;
    rr->npending++;
    return 0;
}

/* ---- JSON text, as json_dumps(JSON_COMPACT) writes it ---- */

/* Bytes that json_dumps escapes: '"', '\\' and control characters. */
static const unsigned char needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

/* Whether any of the 8 bytes in x is below 0x20, '"' or '\\'.  For a
 * byte b below 0x80, (b - c) & ~b has its high bit set exactly when b < c.
 * A borrow only runs into higher bytes after such a byte, so the test is
 * exact for "some byte matches", and bytes from 0x80 up never match. */
static inline int word_needs_escape(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t high = 0x8080808080808080ULL;
    uint64_t quote = x ^ (ones * '"');
    uint64_t slash = x ^ (ones * '\\');
    uint64_t control = (x - ones * 0x20) & ~x;

    quote = (quote - ones) & ~quote;
    slash = (slash - ones) & ~slash;
    return ((control | quote | slash) & high) != 0;
}

static void string_append_escaped(struct render_buf *buf, const char *text, size_t len)
{
    size_t start = 0;

    render_buf_append(buf, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        char seq[8];
        const char *esc;

        if (!needs_escape[c])
            continue;
        render_buf_append(buf, text + start, i - start);
        start = i + 1;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            snprintf(seq, sizeof(seq), "\\u%04X", (unsigned)c);
            esc = seq;
            break;
        }
        render_buf_append(buf, esc, strlen(esc));
    }
    render_buf_append(buf, text + start, len - start);
    render_buf_append(buf, "\"", 1);
}

/* A JSON string.  Most need no escape: they are checked and copied 8
 * bytes at a time (the last word may overlap the one before it), or byte
 * by byte when shorter than a word. */
static void string_append(struct render_buf *buf, const char *text, size_t len)
{
    size_t i = 0;
    char *out;

    if (render_buf_reserve(buf, len + 2) < 0)
        return;
    out = buf->data + buf->len + 1;
    if (len >= 8) {
        uint64_t word;

        for (; i + 8 <= len; i += 8) {
            memcpy(&word, text + i, 8);
            if (word_needs_escape(word))
                goto escaped;
            memcpy(out + i, &word, 8);
        }
        if (i < len) {
            memcpy(&word, text + len - 8, 8);
            if (word_needs_escape(word))
                goto escaped;
            memcpy(out + len - 8, &word, 8);
        }
    } else {
        for (; i < len; i++) {
            unsigned char c = (unsigned char)text[i];

            if (needs_escape[c])
                goto escaped;
            out[i] = (char)c;
        }
    }
    out[-1] = '"';
    out[len] = '"';
    out[len + 1] = '\0';
    buf->len += len + 2;
    return;

escaped:
    string_append_escaped(buf, text, len);
}

/* A member's "key": text. */
static void key_append(struct render_buf *buf, const struct rmember *m)
{
    if (m->prefix) {
        render_buf_append(buf, m->prefix, m->prefix_len);
        return;
    }
    string_append(buf, m->key, m->key_len);
    render_buf_append(buf, ":", 1);
}

void render_json_append(struct render_buf *buf, const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        void *iter;
        int first = 1;

        render_buf_append(buf, "{", 1);
        RENDER_OBJECT_FOREACH((json_t *)value, iter, key, item) {
            if (!first)
                render_buf_append(buf, ",", 1);
            first = 0;
            string_append(buf, key, json_object_iter_key_len(iter));
            render_buf_append(buf, ":", 1);
            render_json_append(buf, item);
        }
        render_buf_append(buf, "}", 1);
        return;
    }
    case JSON_ARRAY:
        render_buf_append(buf, "[", 1);
        for (size_t i = 0; i < json_array_size(value); i++) {
            if (i)
                render_buf_append(buf, ",", 1);
            render_json_append(buf, json_array_get(value, i));
        }
        render_buf_append(buf, "]", 1);
        return;
    case JSON_STRING:
        string_append(buf, json_string_value(value), json_string_length(value));
        return;
    case JSON_INTEGER:
        render_int_append(buf, json_integer_value(value));
        return;
    case JSON_REAL: {
        char text[128];
        size_t len = json_dumpb(value, text, sizeof(text), JSON_COMPACT | JSON_ENCODE_ANY);

        if (len == 0 || len > sizeof(text))
            buf->failed = 1;
        else
            render_buf_append(buf, text, len);
        return;
    }
    case JSON_TRUE:
        render_buf_append(buf, "true", 4);
        return;
    case JSON_FALSE:
        render_buf_append(buf, "false", 5);
        return;
    case JSON_NULL:
        render_buf_append(buf, "null", 4);
        return;
    }
}

static void rv_append(struct render_buf *buf, const struct rv *value);

/* A value: the common scalar cases here, the rest in rv_append. */
static inline void value_append(struct render_buf *buf, const struct rv *value)
{
    if (value->kind == RV_JSON && value->raw)
        render_buf_append(buf, value->raw, value->raw_len);
    else if (value->kind == RV_TEXT)
        string_append(buf, value->u.text, value->n);
    else if (value->kind == RV_JSON && json_is_string(value->u.json))
        string_append(buf, json_string_value(value->u.json), json_string_length(value->u.json));
    else
        rv_append(buf, value);
}

static void rv_append(struct render_buf *buf, const struct rv *value)
{
    switch (value->kind) {
    case RV_JSON:
        if (value->raw)
            render_buf_append(buf, value->raw, value->raw_len);
        else
            render_json_append(buf, value->u.json);
        return;
    case RV_TEXT:
        string_append(buf, value->u.text, value->n);
        return;
    case RV_OBJECT:
        render_buf_append(buf, "{", 1);
        for (size_t i = 0; i < value->n; i++) {
            const struct rmember *m = &value->u.members[i];

            /* The separator and the "key": text in one write when the
             * template gave the key's text. */
            if (m->prefix && render_buf_reserve(buf, m->prefix_len + 1) == 0) {
                char *out = buf->data + buf->len;

                *out = ',';
                render_copy_bytes(out + (i > 0), m->prefix, m->prefix_len);
                buf->len += m->prefix_len + (i > 0);
                buf->data[buf->len] = '\0';
            } else {
                if (i)
                    render_buf_append(buf, ",", 1);
                key_append(buf, m);
            }
            value_append(buf, &m->value);
        }
        render_buf_append(buf, "}", 1);
        return;
    case RV_ARRAY:
        render_buf_append(buf, "[", 1);
        for (size_t i = 0; i < value->n; i++) {
            if (i)
                render_buf_append(buf, ",", 1);
            value_append(buf, &value->u.items[i]);
        }
        render_buf_append(buf, "]", 1);
        return;
    }
}

/* ---- applying the compiled template ---- */

struct fast_apply {
    struct render_run *rr;
    json_t **slots;
    char *err;
    size_t errlen;
};

static void set_json(struct rv *out, const json_t *value)
{
    out->kind = RV_JSON;
    out->u.json = value;
    out->raw = NULL;
    out->n = 0;
}

/* RENDER_REFS_BLOCK and RENDER_REFS_VARIABLE for the placeholders of a
 * string: a string with neither is what both resolve steps leave alone. */
static int string_refs(const char *text, size_t len)
{
    struct render_ph ph;
    size_t pos = 0;
    int refs = 0;

    while (render_ph_next(text, len, pos, &ph)) {
        if (ph.kind == RENDER_PH_BLOCK)
            refs |= RENDER_REFS_BLOCK;
        else if (ph.kind == RENDER_PH_VARIABLE)
            refs |= RENDER_REFS_VARIABLE;
        pos = ph.end;
    }
    return refs;
}

int render_tmpl_refs(const json_t *value)
{
    if (render_is_plain(value))
        return 0;
    if (json_is_string(value))
        return string_refs(json_string_value(value), json_string_length(value));
    return RENDER_REFS_CONTAINER;
}

/* A jansson value at depth in the template: pending when it may hold a
 * reference.  Returns 0 or -1. */
static int put_json(struct render_run *rr, struct rv *out, const json_t *value, int depth)
{
    int refs = render_tmpl_refs(value);

    set_json(out, value);
    return refs ? add_pending(rr, out, depth + 1, refs, NULL) : 0;
}

static int fast_node(struct fast_apply *fa, const struct node *node, int depth, struct rv *out);

static int fast_inline(struct fast_apply *fa, const struct node *node, int depth, struct rv *out)
{
    struct render_buf *buf;
    char *text;

    if (node->all_fallback) {
        size_t i;

        for (i = 0; i < node->n; i++)
            if (node->u.pieces[i].kind == PIECE_STANDARD && fa->slots[node->u.pieces[i].path.slot])
                break;
        if (i == node->n) {
            /* No job variable is set: the text made at compile time. */
            set_json(out, node->all_fallback);
            out->raw = node->all_fallback_json;
            out->raw_len = node->all_fallback_json_len;
            return 0;
        }
    }
    buf = scratch(fa->rr);
    for (size_t i = 0; i < node->n; i++) {
        const struct piece *piece = &node->u.pieces[i];

        if (piece->kind == PIECE_TEXT) {
            render_buf_append(buf, piece->text, piece->len);
        } else if (!fa->slots[piece->path.slot] && piece->path.fallback_text) {
            render_buf_append(buf, piece->path.fallback_text, piece->path.fallback_text_len);
        } else {
            int owned;
            json_t *value = render_tmpl_lookup(fa->slots, &piece->path, &owned);

            if (value)
                render_pytext_append(buf, value, 1);
            if (owned)
                json_decref(value);
        }
    }
    text = scratch_copy(fa->rr);
    if (!text)
        return DECLINE;
    out->kind = RV_TEXT;
    out->u.text = text;
    out->n = buf->len;
    out->raw = NULL;
    if (out->n >= 5 && memchr(text, '{', out->n) && string_refs(text, out->n)) {
        /* The resolve steps take jansson values. */
        json_t *string = json_stringn_nocheck(text, out->n);

        if (!string || own(fa->rr, string) < 0)
            return DECLINE;
        return put_json(fa->rr, out, string, depth);
    }
    return 0;
}

/* Renders node at depth into *out; returns 0, 1 when a whole-string
 * placeholder is unset (no value), or DECLINE. */
static int fast_node(struct fast_apply *fa, const struct node *node, int depth, struct rv *out)
{
    struct render_run *rr = fa->rr;
    json_t *value;
    int owned;

    switch (node->kind) {
    case NODE_LITERAL:
        if (node->raw) {
            set_json(out, node->value);
            out->raw = node->raw;
            out->raw_len = node->raw_len;
            return 0;
        }
        set_json(out, node->value);
        return node->lit_refs &&
                       add_pending(rr, out, depth + 1, node->lit_refs, node->lit_blocks) < 0
                   ? DECLINE
                   : 0;
    case NODE_WHOLE:
        if (!fa->slots[node->u.path.slot] && node->u.path.fallback_json) {
            /* The schema default, whose text the template keeps. */
            set_json(out, node->u.path.fallback);
            out->raw = node->u.path.fallback_json;
            out->raw_len = node->u.path.fallback_json_len;
            return node->u.path.fallback_refs &&
                           add_pending(rr, out, depth + 1, node->u.path.fallback_refs,
                                       node->u.path.fallback_blocks) < 0
                       ? DECLINE
                       : 0;
        }
        value = render_tmpl_lookup(fa->slots, &node->u.path, &owned);
        if (!value)
            return 1;
        if (owned && own(rr, value) < 0)
            return DECLINE;
        return put_json(rr, out, value, depth) < 0 ? DECLINE : 0;
    case NODE_INLINE:
        return fast_inline(fa, node, depth, out);
    case NODE_OBJECT:
        out->kind = RV_OBJECT;
        out->raw = NULL;
        out->n = 0;
        out->u.members = run_alloc(rr, node->n * sizeof(struct rmember));
        if (!out->u.members)
            return DECLINE;
        for (size_t i = 0; i < node->n; i++) {
            const struct node *child = &node->u.children[i];
            struct rmember *m = &out->u.members[out->n];
            int rc = fast_node(fa, child, depth + 1, &m->value);

            if (rc < 0)
                return rc;
            if (rc == 0) {
                m->key = child->key;
                m->key_len = child->key_len;
                m->prefix = child->key_prefix;
                m->prefix_len = child->key_prefix_len;
                out->n++;
            }
        }
        return 0;
    case NODE_ARRAY:
        out->kind = RV_ARRAY;
        out->raw = NULL;
        out->n = 0;
        out->u.items = run_alloc(rr, node->n * sizeof(struct rv));
        if (!out->u.items)
            return DECLINE;
        for (size_t i = 0; i < node->n; i++) {
            int rc = fast_node(fa, &node->u.children[i], depth + 1, &out->u.items[out->n]);

            if (rc < 0)
                return rc;
            if (rc == 0)
                out->n++;
        }
        return 0;
    }
    return DECLINE;
}

/* A template value outside the compiled tree (a default env, job
 * variables' env entries), rendered by the jansson code at depth. */
static int fast_uncompiled(struct fast_apply *fa, const json_t *value, int depth, struct rv *out)
{
    struct render_run *rr = fa->rr;
    json_t *rendered;

    /* A number, boolean, null or string without '{' renders as itself. */
    if (render_is_plain(value)) {
        set_json(out, value);
        return 0;
    }
    if (render_apply_item(value, rr->vars, rr->tmpl->properties, rr->environ_lookup,
                          rr->environ_arg, depth, &rendered, fa->err, fa->errlen) < 0)
        return DECLINE;
    if (!rendered)
        return 1;
    if (own(rr, rendered) < 0)
        return DECLINE;
    return put_json(rr, out, rendered, depth) < 0 ? DECLINE : 0;
}

/* The union of the env layers, as apply_env_union renders it. */
static int fast_env_union(struct fast_apply *fa, const struct node *compiled,
                          const struct render_env_layers *env, struct rv *out)
{
    struct render_run *rr = fa->rr;
    const json_t *small[64];
    const json_t **overrides = NULL;
    size_t cap = 0;

    for (size_t i = 0; i < env->n; i++) {
        if (json_object_getn(env->layer[i], "$ref", 4))
            return DECLINE;
        cap += json_object_size(env->layer[i]);
    }
    if (compiled) {
        size_t n = json_object_size(env->layer[0]);

        overrides = n <= sizeof(small) / sizeof(small[0]) ? small
                                                          : run_alloc(rr, n * sizeof(*overrides));
        if (!overrides)
            return DECLINE;
        memset(overrides, 0, n * sizeof(*overrides));
        for (size_t j = 1; j < env->n; j++) {
            const char *key;
            json_t *value;
            void *iter;

            RENDER_OBJECT_FOREACH((json_t *)env->layer[j], iter, key, value) {
                json_t *position = json_object_getn(rr->tmpl->env_index, key,
                                                    json_object_iter_key_len(iter));

                if (position)
                    overrides[json_integer_value(position)] = value;
            }
        }
    }
    out->kind = RV_OBJECT;
    out->raw = NULL;
    out->n = 0;
    out->u.members = run_alloc(rr, (cap ? cap : 1) * sizeof(struct rmember));
    if (!out->u.members)
        return DECLINE;
    for (size_t i = 0; i < env->n; i++) {
        const char *key;
        json_t *item;
        void *iter;
        size_t k = 0;

        if (i == 0 && compiled && compiled->kind == NODE_OBJECT) {
            /* The template's env: its compiled members, in the same order. */
            for (k = 0; k < compiled->n; k++) {
                const struct node *child = &compiled->u.children[k];
                struct rmember *m = &out->u.members[out->n];
                int rc = overrides[k] ? fast_uncompiled(fa, overrides[k], 1, &m->value)
                                      : fast_node(fa, child, 1, &m->value);

                if (rc < 0)
                    return rc;
                if (rc == 0) {
                    m->key = child->key;
                    m->key_len = child->key_len;
                    m->prefix = child->key_prefix;
                    m->prefix_len = child->key_prefix_len;
                    out->n++;
                }
            }
            continue;
        }
        RENDER_OBJECT_FOREACH((json_t *)env->layer[i], iter, key, item) {
            size_t key_len = json_object_iter_key_len(iter);
            struct rmember *m = &out->u.members[out->n];
            const json_t *later;
            int rc;

            if (i > 0 && render_tmpl_seen_before(env->layer, i, key, key_len))
                continue;
            if (i == 0 && overrides)
                later = overrides[k];
            else
                later = render_tmpl_later_value(env->layer + i + 1, env->n - i - 1, key,
                                                key_len);
            if (later)
                rc = fast_uncompiled(fa, later, 1, &m->value);
            else if (i == 0 && compiled && compiled->kind == NODE_OBJECT)
                rc = fast_node(fa, &compiled->u.children[k], 1, &m->value);
            else if (i == 0 && compiled)
                rc = put_json(rr, &m->value, item, 1) < 0 ? DECLINE : 0;
            else
                rc = fast_uncompiled(fa, item, 1, &m->value);
            k++;
            if (rc < 0)
                return rc;
            if (rc == 0) {
                m->key = key;
                m->key_len = key_len;
                m->prefix = NULL;
                out->n++;
            }
        }
    }
    return 0;
}

static int fast_env(struct fast_apply *fa, const struct render_env_layers *env, struct rv *out)
{
    const struct node *field = fa->rr->tmpl->env_field;
    const struct node *compiled = NULL;

    if (field && env->layer[0] == field->value && json_is_object(field->value))
        compiled = field;
    if (env->n == 1 && field && env->layer[0] == field->value)
        return fast_node(fa, field, 0, out);
    if (env->n == 1)
        return fast_uncompiled(fa, env->layer[0], 0, out);
    return fast_env_union(fa, compiled, env, out);
}

/* Adds the keys listed before to list, each once, as collecting them
 * again would. */
static int add_keys(json_t *list, json_t *seen, const json_t *keys)
{
    for (size_t i = 0; i < json_array_size(keys); i++) {
        json_t *key = json_array_get(keys, i);
        const char *text = json_string_value(key);
        size_t len = json_string_length(key);

        if (json_object_getn(seen, text, len))
            continue;
        if (json_object_setn_new_nocheck(seen, text, len, json_true()) < 0 ||
            json_array_append(list, key) < 0)
            return -1;
    }
    return 0;
}

static int fast_apply(struct render_run *rr, json_t **blocks, char *err, size_t errlen)
{
    const struct render_template *tmpl = rr->tmpl;
    struct fast_apply fa = {.rr = rr, .err = err, .errlen = errlen};
    json_t *small_slots[64];
    struct render_env_layers env;
    const json_t *vars_env;
    json_t *list = NULL;
    json_t *seen = NULL;
    int rc = DECLINE;

    if (!tmpl->fast || (rr->job_vars && !json_is_null(rr->job_vars) &&
                        !json_is_object(rr->job_vars)))
        return DECLINE;
    rr->vars = render_expand_dotted(rr->job_vars, err, errlen);
    if (!rr->vars)
        return DECLINE;
    if (render_tmpl_fill_slots(tmpl, rr->vars, small_slots,
                               sizeof(small_slots) / sizeof(small_slots[0]), &fa.slots) < 0)
        return DECLINE;
    vars_env = json_object_getn(rr->vars, "env", 3);
    if (!vars_env)
        vars_env = tmpl->default_env;
    if (render_effective_env(json_object_getn(tmpl->job_config, "env", 3), tmpl->default_env,
                             vars_env, &env, err, errlen) < 0)
        goto done;

    rr->root.kind = RV_OBJECT;
    rr->root.n = 0;
    /* Room for the env seeded by a default and the base fields the
     * prepare step appends. */
    rr->root.u.members = run_alloc(rr, (tmpl->nfields + 5) * sizeof(struct rmember));
    if (!rr->root.u.members)
        goto done;
    for (size_t i = 0; i < tmpl->nfields; i++) {
        const struct node *field = &tmpl->fields[i];
        struct rmember *m = &rr->root.u.members[rr->root.n];
        int set;

        if (field == tmpl->env_field)
            set = env.n ? fast_env(&fa, &env, &m->value) : 1;
        else
            set = fast_node(&fa, field, 0, &m->value);
        if (set < 0)
            goto done;
        if (set == 0) {
            m->key = field->key;
            m->key_len = field->key_len;
            m->prefix = field->key_prefix;
            m->prefix_len = field->key_prefix_len;
            if (field->base_field >= 0)
                rr->base_at[field->base_field] = rr->root.n;
            rr->root.n++;
        }
    }
    if (env.n && !tmpl->env_field) {
        struct rmember *m = &rr->root.u.members[rr->root.n];
        int set = fast_env(&fa, &env, &m->value);

        if (set < 0)
            goto done;
        if (set == 0) {
            m->key = "env";
            m->key_len = 3;
            m->prefix = "\"env\":";
            m->prefix_len = 6;
            rr->base_at[1] = rr->root.n;
            rr->root.n++;
        }
    }
    if (blocks) {
        list = json_array();
        seen = json_object();
        if (!list || !seen)
            goto done;
        for (size_t i = 0; i < rr->npending; i++) {
            const struct pending *p = &rr->pending[i];

            if (!(p->refs & (RENDER_REFS_BLOCK | RENDER_REFS_CONTAINER)))
                continue;
            if (p->keys ? add_keys(list, seen, p->keys) < 0
                        : render_collect_blocks_into(p->value->u.json, list, seen, p->depth) < 0)
                goto done;
        }
        *blocks = list;
        list = NULL;
    }
    rc = 0;

done:
    json_decref(list);
    json_decref(seen);
    if (fa.slots != small_slots)
        free(fa.slots);
    return rc;
}

/* ---- the jansson steps, for what the tree does not build ---- */

static const char *default_getenv(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

/* Brings the jansson steps' configuration up to rr->stage: renders it
 * from the run's inputs when there is none yet, then applies each step
 * not yet applied to it, once.  *blocks gets the apply step's block list
 * and *names the block step's variable list, when that step runs here.
 * Returns 0, or -1 with err (the error those steps report). */
static int go_slow(struct render_run *rr, json_t **blocks, json_t **names, char *err,
                   size_t errlen)
{
    rr->fast = 0;
    if (!rr->config) {
        rr->config = render_template_apply(rr->tmpl, rr->job_vars, rr->environ_lookup,
                                           rr->environ_arg, blocks, err, errlen);
        if (!rr->config)
            return -1;
        rr->config_stage = 1;
    }
    if (rr->stage >= 2 && rr->config_stage < 2) {
        json_t *list = render_resolve_blocks_collect(rr->config, rr->blocks, err, errlen);

        if (!list)
            return -1;
        rr->config_stage = 2;
        if (names)
            *names = list;
        else
            json_decref(list);
    }
    if (rr->stage >= 3 && rr->config_stage < 3) {
        if (render_resolve_variables(rr->config, rr->variables, err, errlen) < 0)
            return -1;
        rr->config_stage = 3;
    }
    return 0;
}

struct render_run *render_run_new(const struct render_template *tmpl, const json_t *job_vars,
                                  render_getenv_fn environ_lookup, void *environ_arg,
                                  json_t **blocks, char *err, size_t errlen)
{
    size_t head = (sizeof(struct render_run) + sizeof(max_align_t) - 1) / sizeof(max_align_t) *
                  sizeof(max_align_t);
    struct render_run *rr = spare_run;

    /* The run freed last on this thread, whose memory is still in cache. */
    spare_run = NULL;
    if (!rr)
        rr = malloc(head + sizeof(struct arena_block) + RUN_FIRST_BLOCK);

    if (blocks)
        *blocks = NULL;
    if (!rr) {
        render_errf(err, errlen, "out of memory");
        return NULL;
    }
    memset(rr, 0, sizeof(*rr));
    rr->first = (struct arena_block *)((char *)rr + head);
    rr->first->next = NULL;
    rr->first->used = 0;
    rr->first->cap = RUN_FIRST_BLOCK;
    rr->arena = rr->first;
    rr->tmpl = tmpl;
    rr->job_vars = json_incref((json_t *)job_vars);
    rr->environ_lookup = environ_lookup ? environ_lookup : default_getenv;
    rr->environ_arg = environ_arg;
    rr->stage = 1;
    rr->fast = 1;
    for (size_t b = 0; b < 4; b++)
        rr->base_at[b] = (size_t)-1;
    if (fast_apply(rr, blocks, err, errlen) < 0) {
        if (blocks) {
            json_decref(*blocks);
            *blocks = NULL;
        }
        if (go_slow(rr, blocks, NULL, err, errlen) < 0) {
            render_run_free(rr);
            return NULL;
        }
    }
    return rr;
}

/* ---- blocks and variables ---- */

/* Whether value, at depth in the configuration, contains a string with a
 * placeholder of the kinds in mask (RENDER_REFS_BLOCK,
 * RENDER_REFS_VARIABLE).  Near RENDER_MAX_DEPTH it returns 1, so that the
 * resolve step itself decides what the nesting means. */
static int has_refs(const json_t *value, int mask, int depth)
{
    if (depth >= RENDER_MAX_DEPTH - 2)
        return 1;
    if (json_is_string(value))
        return (render_tmpl_refs(value) & mask) != 0;
    if (json_is_object(value)) {
        json_t *item;
        void *iter;

        RENDER_OBJECT_FOREACH_VALUE((json_t *)value, iter, item)
            if (!render_is_plain(item) && has_refs(item, mask, depth + 1))
                return 1;
        return 0;
    }
    if (json_is_array(value)) {
        for (size_t i = 0; i < json_array_size(value); i++)
            if (has_refs(json_array_get(value, i), mask, depth + 1))
                return 1;
    }
    return 0;
}

json_t *render_run_resolve_blocks(struct render_run *rr, const json_t *blocks, char *err,
                                  size_t errlen)
{
    json_t *names = NULL;
    json_t *seen = NULL;

    if (rr->stage != 1) {
        render_errf(err, errlen, "blocks are resolved once, after the template is applied");
        return NULL;
    }
    rr->stage = 2;
    rr->blocks = json_incref((json_t *)blocks);
    if (rr->fast && (!blocks || json_is_object(blocks))) {
        json_t *empty = NULL;
        const json_t *data = blocks;
        size_t i;

        names = json_array();
        seen = json_object();
        if (!data)
            data = empty = json_object();
        for (i = 0; names && seen && data && i < rr->npending; i++) {
            struct pending *p = &rr->pending[i];
            json_t *node = (json_t *)p->value->u.json;
            json_t *copy;
            json_t *out;

            /* A string without a block placeholder only lists its variables. */
            if (p->refs == RENDER_REFS_VARIABLE) {
                if (render_collect_variables_into(node, names, seen, p->depth) < 0)
                    break;
                continue;
            }
            /* Containers are resolved in place, so the walk gets a copy. */
            copy = p->refs & RENDER_REFS_CONTAINER ? render_copy(node) : json_incref(node);
            out = copy ? render_resolve_blocks_node(copy, p->depth, data, names, seen, err,
                                                    errlen)
                       : NULL;
            json_decref(copy);
            if (!out || own(rr, out) < 0)
                break;
            set_json(p->value, out);
            /* What the step inserted may hold anything. */
            p->refs = RENDER_REFS_VARIABLE | RENDER_REFS_CONTAINER;
        }
        json_decref(empty);
        json_decref(seen);
        if (names && i == rr->npending)
            return names;
        json_decref(names);
        names = NULL;
    }
    if (go_slow(rr, NULL, &names, err, errlen) < 0)
        return NULL;
    return names;
}

int render_run_resolve_variables(struct render_run *rr, const json_t *vars, char *err,
                                 size_t errlen)
{
    if (rr->stage != 2) {
        render_errf(err, errlen, "variables are resolved once, after the blocks");
        return -1;
    }
    rr->stage = 3;
    rr->variables = json_incref((json_t *)vars);
    if (rr->fast && (!vars || json_is_object(vars))) {
        json_t *empty = NULL;
        const json_t *values = vars;
        size_t i;

        if (!values)
            values = empty = json_object();
        for (i = 0; values && i < rr->npending; i++) {
            struct pending *p = &rr->pending[i];
            json_t *node = (json_t *)p->value->u.json;
            json_t *copy;
            json_t *out;

            if (!(p->refs & (RENDER_REFS_VARIABLE | RENDER_REFS_CONTAINER)) ||
                !has_refs(node, RENDER_REFS_VARIABLE, p->depth))
                continue;
            copy = json_is_object(node) || json_is_array(node) ? render_copy(node)
                                                               : json_incref(node);
            out = copy ? render_resolve_variables_node(copy, p->depth, values, err, errlen)
                       : NULL;
            json_decref(copy);
            if (!out || own(rr, out) < 0)
                break;
            set_json(p->value, out);
        }
        json_decref(empty);
        if (i == rr->npending)
            return 0;
    }
    return go_slow(rr, NULL, NULL, err, errlen);
}

/* ---- the prepare step ---- */

/* An object under construction with dict semantics: setting a key that is
 * there replaces its value in place. */
struct rdict {
    struct rmember *members;
    size_t n, cap;
    size_t search;     /* how many leading members a new key may repeat */
    uint64_t lengths;  /* bit (length % 64) set for each of those keys */
};

/* New keys are compared with the keys set so far only. */
static void dict_search_set(struct rdict *d)
{
    d->search = d->n;
    d->lengths = 0;
    for (size_t i = 0; i < d->n; i++)
        d->lengths |= (uint64_t)1 << (d->members[i].key_len & 63);
}

static int dict_set(struct render_run *rr, struct rdict *d, const char *key, size_t key_len,
                    const struct rv *value)
{
    struct rmember *members;

    /* A key whose length no searched key has is new. */
    for (size_t i = 0; (d->lengths >> (key_len & 63) & 1) && i < d->n && i < d->search; i++) {
        if (d->members[i].key_len == key_len && memcmp(d->members[i].key, key, key_len) == 0) {
            d->members[i].value = *value;
            return 0;
        }
    }
    members = grow(rr, d->members, d->n, &d->cap, sizeof(*members), 32);
    if (!members)
        return -1;
    d->members = members;
    d->members[d->n].key = key;
    d->members[d->n].key_len = key_len;
    d->members[d->n].prefix = NULL;
    d->members[d->n].value = *value;
    d->n++;
    return 0;
}

/* dict_set for a member of a rendered object, keeping its "key": text. */
static int dict_set_member(struct render_run *rr, struct rdict *d, const struct rmember *m,
                           const struct rv *value)
{
    size_t n = d->n;

    if (dict_set(rr, d, m->key, m->key_len, value) < 0)
        return -1;
    if (d->n > n) {
        d->members[n].prefix = m->prefix;
        d->members[n].prefix_len = m->prefix_len;
    }
    return 0;
}

/* A key the prepare step sets, with its "key": text. */
struct lit_key {
    const char *key;
    size_t len;
    const char *prefix;
    size_t prefix_len;
};
#define LIT_KEY(k) (&(const struct lit_key){k, sizeof(k) - 1, "\"" k "\":", sizeof(k) + 2})

static int dict_set_lit(struct render_run *rr, struct rdict *d, const struct lit_key *key,
                        const struct rv *value)
{
    size_t n = d->n;

    if (dict_set(rr, d, key->key, key->len, value) < 0)
        return -1;
    if (d->n > n) {
        d->members[n].prefix = key->prefix;
        d->members[n].prefix_len = key->prefix_len;
    }
    return 0;
}

/* text must live until the run's text is written: the context's strings,
 * string literals and the run's own buffers do. */
static int dict_set_text(struct render_run *rr, struct rdict *d, const struct lit_key *key,
                         const char *text)
{
    struct rv value = {.kind = RV_TEXT, .n = strlen(text)};

    value.u.text = text;
    return dict_set_lit(rr, d, key, &value);
}

static int dict_set_json(struct render_run *rr, struct rdict *d, const struct lit_key *key,
                         const json_t *json)
{
    struct rv value;

    set_json(&value, json);
    return dict_set_lit(rr, d, key, &value);
}

/* The members of an object value; 0, or DECLINE when it is no object. */
static int members_of(struct render_run *rr, const struct rv *value, struct rmember **members,
                      size_t *n)
{
    const char *key;
    json_t *item;
    void *iter;
    size_t i = 0;

    if (value->kind == RV_OBJECT) {
        *members = value->u.members;
        *n = value->n;
        return 0;
    }
    if (value->kind != RV_JSON || !json_is_object(value->u.json))
        return DECLINE;
    *n = json_object_size(value->u.json);
    *members = run_alloc(rr, (*n ? *n : 1) * sizeof(**members));
    if (!*members)
        return DECLINE;
    RENDER_OBJECT_FOREACH((json_t *)value->u.json, iter, key, item) {
        (*members)[i].key = key;
        (*members)[i].key_len = json_object_iter_key_len(iter);
        (*members)[i].prefix = NULL;
        set_json(&(*members)[i].value, item);
        i++;
    }
    return 0;
}

static int is_null(const struct rv *value)
{
    return value->kind == RV_JSON && json_is_null(value->u.json);
}

/* A string (1), null (0) or something else (DECLINE). */
static int string_or_null(const struct rv *value)
{
    if (value->kind == RV_TEXT || (value->kind == RV_JSON && json_is_string(value->u.json)))
        return 1;
    return is_null(value) ? 0 : DECLINE;
}

static size_t text_len(const struct rv *value)
{
    return value->kind == RV_TEXT ? value->n : json_string_length(value->u.json);
}

static int build_env(struct render_run *rr, const struct render_context *ctx,
                     const char *run_id, const struct rv *config_env, struct rdict *env,
                     char *err, size_t errlen)
{
    const json_t *value;
    struct rmember *members = NULL;
    size_t n = 0;
    int has_null = 0;

    if (config_env && members_of(rr, config_env, &members, &n) < 0)
        return DECLINE;
    /* Each group of keys below differs within itself, so a new key is
     * compared only with the groups set before it. */
    dict_search_set(env);
    if (ctx->settings_env && json_is_object(ctx->settings_env)) {
        const char *key;
        json_t *item;
        void *iter;

        RENDER_OBJECT_FOREACH((json_t *)ctx->settings_env, iter, key, item) {
            struct rv v;

            set_json(&v, item);
            if (dict_set(rr, env, key, json_object_iter_key_len(iter), &v) < 0)
                return DECLINE;
            has_null |= json_is_null(item);
        }
    }
    dict_search_set(env);
    if (dict_set_text(rr, env, LIT_KEY("PREFECT__FLOW_RUN_ID"), run_id) < 0 ||
        (ctx->worker_id && dict_set_text(rr, env, LIT_KEY("PREFECT__WORKER_ID"), ctx->worker_id) < 0) ||
        (ctx->worker_name &&
         dict_set_text(rr, env, LIT_KEY("PREFECT__WORKER_NAME"), ctx->worker_name) < 0))
        return DECLINE;
    if (render_prepare_uuid(ctx->flow_run, "flow run", "flow_id", 0, rr->flow_id, err,
                            errlen) < 0)
        return DECLINE;
    if (rr->flow_id[0] && dict_set_text(rr, env, LIT_KEY("PREFECT__FLOW_ID"), rr->flow_id) < 0)
        return DECLINE;
    value = ctx->flow ? json_object_get(ctx->flow, "name") : NULL;
    if (value && render_truthy(value) && dict_set_json(rr, env, LIT_KEY("PREFECT__FLOW_NAME"), value) < 0)
        return DECLINE;
    if (render_prepare_uuid(ctx->flow_run, "flow run", "deployment_id", 0, rr->deployment_id,
                            err, errlen) < 0)
        return DECLINE;
    if (rr->deployment_id[0] &&
        dict_set_text(rr, env, LIT_KEY("PREFECT__DEPLOYMENT_ID"), rr->deployment_id) < 0)
        return DECLINE;
    value = ctx->deployment ? json_object_get(ctx->deployment, "name") : NULL;
    if (value && render_truthy(value) &&
        dict_set_json(rr, env, LIT_KEY("PREFECT__DEPLOYMENT_NAME"), value) < 0)
        return DECLINE;
    dict_search_set(env);
    for (size_t i = 0; i < n; i++) {
        const struct rv *item = &members[i].value;
        struct rv text = *item;

        /* str(v) for every non-null value. */
        if (item->kind == RV_OBJECT || item->kind == RV_ARRAY)
            return DECLINE;
        if (item->kind == RV_JSON && !json_is_null(item->u.json) &&
            !json_is_string(item->u.json)) {
            struct render_buf *buf = scratch(rr);

            render_pytext_append(buf, item->u.json, 1);
            text.kind = RV_TEXT;
            text.u.text = scratch_copy(rr);
            text.n = buf->len;
            text.raw = NULL;
            if (!text.u.text)
                return DECLINE;
        }
        if (dict_set_member(rr, env, &members[i], &text) < 0)
            return DECLINE;
        has_null |= is_null(item);
    }
    if (has_null) {
        size_t kept = 0;

        for (size_t i = 0; i < env->n; i++)
            if (!is_null(&env->members[i].value))
                env->members[kept++] = env->members[i];
        env->n = kept;
    }
    return 0;
}

static int build_labels(struct render_run *rr, const struct render_context *ctx,
                        const char *run_id, const json_t *run_name,
                        const struct rv *config_labels, struct rdict *labels, char *err,
                        size_t errlen)
{
    struct rmember *members = NULL;
    size_t n = 0;

    if (config_labels) {
        if (members_of(rr, config_labels, &members, &n) < 0)
            return DECLINE;
        for (size_t i = 0; i < n; i++)
            if (string_or_null(&members[i].value) != 1)
                return DECLINE;
    }
    /* The prefect.io/ keys differ from each other; the rendered labels'
     * keys differ from each other and are compared with them. */
    dict_search_set(labels);
    if (dict_set_text(rr, labels, LIT_KEY("prefect.io/flow-run-id"), run_id) < 0 ||
        dict_set_json(rr, labels, LIT_KEY("prefect.io/flow-run-name"), run_name) < 0 ||
        dict_set_text(rr, labels, LIT_KEY("prefect.io/version"),
                      ctx->prefect_version ? ctx->prefect_version : RENDER_PREFECT_VERSION) < 0 ||
        (ctx->work_pool_name &&
         dict_set_text(rr, labels, LIT_KEY("prefect.io/work-pool-name"), ctx->work_pool_name) < 0) ||
        (ctx->work_pool_id &&
         dict_set_text(rr, labels, LIT_KEY("prefect.io/work-pool-id"), ctx->work_pool_id) < 0) ||
        (ctx->worker_name &&
         dict_set_text(rr, labels, LIT_KEY("prefect.io/worker-name"), ctx->worker_name) < 0))
        return DECLINE;
    if (ctx->flow) {
        json_t *name = json_object_get(ctx->flow, "name");

        if (render_prepare_uuid(ctx->flow, "flow", "id", 1, rr->flow_uuid, err, errlen) < 0 ||
            !json_is_string(name) || dict_set_text(rr, labels, LIT_KEY("prefect.io/flow-id"), rr->flow_uuid) < 0 ||
            dict_set_json(rr, labels, LIT_KEY("prefect.io/flow-name"), name) < 0)
            return DECLINE;
    }
    if (ctx->deployment) {
        json_t *name = json_object_get(ctx->deployment, "name");
        json_t *updated = json_object_get(ctx->deployment, "updated");

        if (render_prepare_uuid(ctx->deployment, "deployment", "id", 1, rr->deployment_uuid, err,
                                errlen) < 0 ||
            !json_is_string(name) ||
            dict_set_text(rr, labels, LIT_KEY("prefect.io/deployment-id"), rr->deployment_uuid) < 0 ||
            dict_set_json(rr, labels, LIT_KEY("prefect.io/deployment-name"), name) < 0)
            return DECLINE;
        if (updated && !json_is_null(updated)) {
            if (!json_is_string(updated) ||
                render_prepare_updated(json_string_value(updated), rr->updated,
                                       sizeof(rr->updated)) < 0 ||
                dict_set_text(rr, labels, LIT_KEY("prefect.io/deployment-updated"), rr->updated) < 0)
                return DECLINE;
        }
    }
    dict_search_set(labels);
    for (size_t i = 0; i < n; i++) {
        if (dict_set_member(rr, labels, &members[i], &members[i].value) < 0)
            return DECLINE;
    }
    return 0;
}

/* Whether the context's text is valid UTF-8 (NULL counts as valid), as
 * the jansson steps require when they make strings of it. */
static int context_text_ok(const char *text)
{
    json_t *string;

    if (!text)
        return 1;
    for (const unsigned char *p = (const unsigned char *)text; *p < 0x80; p++)
        if (*p == '\0')
            return 1;
    string = json_string(text);
    json_decref(string);
    return string != NULL;
}

static int fast_prepare(struct render_run *rr, const struct render_context *ctx, char *err,
                        size_t errlen)
{
    static const struct lit_key base[] = {
        {"command", 7, "\"command\":", 10},
        {"env", 3, "\"env\":", 6},
        {"labels", 6, "\"labels\":", 9},
        {"name", 4, "\"name\":", 7},
    };
    struct rv *found[4] = {NULL};
    const size_t *at = rr->base_at;
    struct rv final[4];
    struct rdict env = {0}, labels = {0};
    const json_t *run_name;
    json_t *name;
    json_t *rendered;
    const char *run_id = rr->run_id;
    struct rmember *members;
    size_t n;

    if (!context_text_ok(ctx->worker_id) || !context_text_ok(ctx->worker_name) ||
        !context_text_ok(ctx->prefect_version) || !context_text_ok(ctx->work_pool_name) ||
        !context_text_ok(ctx->work_pool_id))
        return DECLINE;
    if (!json_is_object(ctx->flow_run) || (ctx->flow && !json_is_object(ctx->flow)) ||
        (ctx->deployment && !json_is_object(ctx->deployment)) ||
        render_prepare_uuid(ctx->flow_run, "flow run", "id", 1, rr->run_id, err, errlen) < 0)
        return DECLINE;
    run_name = json_object_get(ctx->flow_run, "name");
    if (!json_is_string(run_name))
        return DECLINE;
    for (size_t b = 0; b < 4; b++)
        if (at[b] != (size_t)-1)
            found[b] = &rr->root.u.members[at[b]].value;

    /* command: a string or null; "" and null become the default. */
    if (found[0] && string_or_null(found[0]) < 0)
        return DECLINE;
    if (found[0] && string_or_null(found[0]) == 1 && text_len(found[0]) > 0) {
        final[0] = *found[0];
    } else {
        final[0].kind = RV_TEXT;
        final[0].u.text = "prefect flow-run execute";
        final[0].n = strlen(final[0].u.text);
        final[0].raw = NULL;
    }

    /* name: a string or null, rendered with the flow run. */
    if (found[3] && string_or_null(found[3]) < 0)
        return DECLINE;
    if (!found[3])
        name = json_null();
    else if (found[3]->kind == RV_TEXT)
        name = json_stringn_nocheck(found[3]->u.text, found[3]->n);
    else
        name = json_incref((json_t *)found[3]->u.json);
    if (!name)
        return DECLINE;
    rendered = render_prepare_name(ctx, name, run_name, err, errlen);
    json_decref(name);
    if (!rendered || own(rr, rendered) < 0)
        return DECLINE;
    set_json(&final[3], rendered);

    if (found[2] && found[2]->kind != RV_OBJECT &&
        !(found[2]->kind == RV_JSON && json_is_object(found[2]->u.json)))
        return DECLINE;
    if (found[1] && found[1]->kind != RV_OBJECT &&
        !(found[1]->kind == RV_JSON && json_is_object(found[1]->u.json)))
        return DECLINE;
    if (build_env(rr, ctx, run_id, found[1], &env, err, errlen) < 0 ||
        build_labels(rr, ctx, run_id, run_name, found[2], &labels, err, errlen) < 0)
        return DECLINE;
    final[1].kind = final[2].kind = RV_OBJECT;
    final[1].raw = final[2].raw = NULL;
    final[1].u.members = env.members;
    final[1].n = env.n;
    final[2].u.members = labels.members;
    final[2].n = labels.n;

    /* Existing fields keep their place; missing ones go last in order
     * (the root has room for them). */
    members = rr->root.u.members;
    n = rr->root.n;
    for (size_t b = 0; b < 4; b++) {
        if (at[b] != (size_t)-1) {
            members[at[b]].value = final[b];
        } else {
            members[n].key = base[b].key;
            members[n].key_len = base[b].len;
            members[n].prefix = base[b].prefix;
            members[n].prefix_len = base[b].prefix_len;
            members[n].value = final[b];
            n++;
        }
    }
    rr->root.n = n;
    return 0;
}

char *render_run_text(struct render_run *rr, const struct render_context *ctx, size_t *len,
                      char *err, size_t errlen)
{
    struct render_buf buf;
    char *text;

    if (rr->stage != 3) {
        render_errf(err, errlen, "blocks and variables are resolved before the text is made");
        return NULL;
    }
    rr->stage = 4;
    if (rr->fast && ctx && fast_prepare(rr, ctx, err, errlen) < 0 &&
        go_slow(rr, NULL, NULL, err, errlen) < 0)
        return NULL;
    if (!rr->fast && ctx && render_prepare(rr->config, ctx, err, errlen) < 0)
        return NULL;
    if (!rr->fast) {
        text = json_dumps(rr->config, JSON_COMPACT);
        if (!text) {
            render_errf(err, errlen, "cannot encode the job configuration");
            return NULL;
        }
        if (len)
            *len = strlen(text);
        return text;
    }
    memset(&buf, 0, sizeof(buf));
    render_buf_reserve(&buf, 4095);
    rv_append(&buf, &rr->root);
    if (len)
        *len = buf.len;
    text = render_buf_finish(&buf);
    if (!text)
        render_errf(err, errlen, "the job configuration exceeds %zu bytes or memory is exhausted",
                    (size_t)RENDER_MAX_TEXT);
    return text;
}

int render_run_is_fast(const struct render_run *rr)
{
    return rr->fast;
}

void render_run_free(struct render_run *rr)
{
    if (!rr)
        return;
    for (size_t i = 0; i < rr->nowned; i++)
        json_decref(rr->owned[i]);
    render_arena_free(rr->arena, rr->first);
    json_decref(rr->job_vars);
    json_decref(rr->blocks);
    json_decref(rr->variables);
    json_decref(rr->config);
    json_decref(rr->vars);
    render_buf_free(&rr->scratch);
    if (!spare_run)
        spare_run = rr;
    else
        free(rr);
}
