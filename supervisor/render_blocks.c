/*
 * Block document references, as Prefect's
 * resolve_block_document_references treats them:
 *
 *   {"$ref": {"block_document_id": ID}}  any object whose $ref has a truthy
 *       block_document_id is replaced whole by that document's data;
 *   {{ prefect.blocks.TYPE.NAME[.PATH] }}  the document named NAME of block
 *       type TYPE; a document whose data is exactly {"value": X} stands for X
 *       unless PATH itself starts at "value"; PATH is looked up with
 *       get_from_dict rules and must resolve.  A whole-string placeholder
 *       keeps the JSON type, an inline one inserts str(value) and must not
 *       resolve to an object or array.
 *
 * Documents are named by keys "document:ID" and "slug:TYPE/NAME".  The
 * pass is single: inserted block data is not searched again.
 */
#include <stdlib.h>
#include <string.h>

#include "render.h"

#define BLOCK_PREFIX "prefect.blocks."

/* A parsed block placeholder name.  The strings point into storage: the
 * small array when they fit, else one malloc'd block. */
struct block_ref {
    char *slug;
    char *name;
    char *path; /* NULL when the placeholder has no attribute path */
    char *key;  /* "slug:<slug>/<name>", the key of the document */
    char *storage;
    char small[256];
};

static void block_ref_clear(struct block_ref *ref)
{
    if (ref->storage != ref->small)
        free(ref->storage);
    ref->storage = NULL;
}

/* Writes "slug:<slug>/<name>" to ref->key, which has room for it. */
static void build_key(struct block_ref *ref)
{
    size_t slug_len = strlen(ref->slug);
    size_t name_len = strlen(ref->name);
    char *w = ref->key;

    memcpy(w, "slug:", 5);
    w += 5;
    memcpy(w, ref->slug, slug_len);
    w += slug_len;
    *w++ = '/';
    memcpy(w, ref->name, name_len);
    w[name_len] = '\0';
}

/* Parses the name of a block placeholder.  Every occurrence of the prefix
 * is removed (Python uses str.replace), then the rest is split on its first
 * two dots. */
static int parse_block_name(const char *name, size_t len, struct block_ref *ref, char *err,
                            size_t errlen)
{
    size_t plen = strlen(BLOCK_PREFIX);
    /* The rest (at most len bytes) and the key (at most len + 6) with NULs. */
    size_t need = 2 * len + 8;
    char *rest;
    size_t n = 0;
    char *dot1;
    char *dot2;

    ref->storage = need <= sizeof(ref->small) ? ref->small : malloc(need);
    rest = ref->storage;
    if (!rest) {
        render_errf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < len;) {
        if (len - i >= plen && memcmp(name + i, BLOCK_PREFIX, plen) == 0) {
            i += plen;
            continue;
        }
        rest[n++] = name[i++];
    }
    rest[n] = '\0';

    dot1 = strchr(rest, '.');
    if (!dot1) {
        render_errf(err, errlen,
                    "invalid block placeholder \"%.*s\": expected "
                    "prefect.blocks.<block-type-slug>.<block-document-name>",
                    (int)len, name);
        block_ref_clear(ref);
        return -1;
    }
    *dot1 = '\0';
    dot2 = strchr(dot1 + 1, '.');
    if (dot2)
        *dot2 = '\0';
    ref->slug = rest;
    ref->name = dot1 + 1;
    ref->path = dot2 ? dot2 + 1 : NULL;
    ref->key = rest + n + 1;
    build_key(ref);
    return 0;
}

/* The block_document_id of a {"$ref": {...}} object: 1 with *id set when
 * the object is a reference, 0 when it is not, -1 on a malformed $ref
 * (Python raises AttributeError on a $ref that is not an object). */
static int document_ref(const json_t *object, const json_t **id, char *err, size_t errlen)
{
    json_t *ref = json_object_get(object, "$ref");
    json_t *value;

    *id = NULL;
    if (!ref)
        return 0;
    if (!json_is_object(ref)) {
        render_errf(err, errlen, "invalid block reference: \"$ref\" must be an object with "
                    "block_document_id");
        return -1;
    }
    value = json_object_get(ref, "block_document_id");
    if (!value || !render_truthy(value))
        return 0;
    if (!json_is_string(value)) {
        render_errf(err, errlen, "invalid block reference: block_document_id must be a string");
        return -1;
    }
    *id = value;
    return 1;
}

/* ---- collection ---- */

/* key is built from template text or a block_document_id string, cut at
 * ASCII characters, so it is valid UTF-8 and needs no check. */
static int add_key(json_t *list, json_t *seen, const char *key)
{
    size_t len = strlen(key);

    if (json_object_getn(seen, key, len))
        return 0;
    if (json_object_setn_new_nocheck(seen, key, len, json_true()) < 0)
        return -1;
    return json_array_append_new(list, json_stringn_nocheck(key, len));
}

/* Kept out of line so that struct block_ref is not on the stack of every
 * level of the recursive walk. */
static __attribute__((noinline)) int collect_string(const json_t *node, json_t *list,
                                                    json_t *seen)
{
    const char *text = json_string_value(node);
    size_t len = json_string_length(node);
    struct render_ph ph;
    size_t pos = 0;

    while (render_ph_next(text, len, pos, &ph)) {
        struct block_ref ref;

        pos = ph.end;
        if (ph.kind != RENDER_PH_BLOCK)
            continue;
        if (parse_block_name(text + ph.name_start, ph.name_end - ph.name_start, &ref, NULL,
                             0) == 0) {
            int rc = add_key(list, seen, ref.key);

            block_ref_clear(&ref);
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

int render_collect_blocks_into(const json_t *node, json_t *list, json_t *seen, int depth)
{
    if (depth > RENDER_MAX_DEPTH)
        return 0;
    if (json_is_object(node)) {
        const json_t *id;
        json_t *item;
        int kind = document_ref(node, &id, NULL, 0);

        if (kind == 1) {
            char *dkey = malloc(strlen("document:") + json_string_length(id) + 1);
            int rc;

            if (!dkey)
                return -1;
            strcpy(dkey, "document:");
            strcat(dkey, json_string_value(id));
            rc = add_key(list, seen, dkey);
            free(dkey);
            return rc;
        }
        if (kind < 0)
            return 0; /* resolve reports it */
        void *iter;

        RENDER_OBJECT_FOREACH_VALUE((json_t *)node, iter, item)
            if (!render_is_plain(item) &&
                render_collect_blocks_into(item, list, seen, depth + 1) < 0)
                return -1;
        return 0;
    }
    if (json_is_array(node)) {
        size_t i;
        json_t *item;

        json_array_foreach(node, i, item)
            if (!render_is_plain(item) &&
                render_collect_blocks_into(item, list, seen, depth + 1) < 0)
                return -1;
        return 0;
    }
    if (json_is_string(node))
        return collect_string(node, list, seen);
    return 0;
}

json_t *render_collect_blocks(const json_t *config)
{
    json_t *list = json_array();
    json_t *seen = json_object();

    if (!list || !seen || render_collect_blocks_into(config, list, seen, 0) < 0) {
        json_decref(list);
        list = NULL;
    }
    json_decref(seen);
    return list;
}

/* ---- resolution ---- */

struct resolve_ctx {
    const json_t *blocks;
    json_t *variables; /* when set, the variables of the result are listed here */
    json_t *seen;      /* the names in variables */
    char *err;
    size_t errlen;
};

/* Lists the variables of a resolved value, which sits at depth. */
static int list_variables(const struct resolve_ctx *ctx, const json_t *value, int depth)
{
    if (!ctx->variables ||
        render_collect_variables_into(value, ctx->variables, ctx->seen, depth) == 0)
        return 0;
    render_errf(ctx->err, ctx->errlen, "out of memory");
    return -1;
}

/* _resolve_single_placeholder: the value a block placeholder stands for,
 * as a new reference.  Out of line, as collect_string. */
static __attribute__((noinline)) json_t *resolve_placeholder(const struct resolve_ctx *ctx,
                                                             const char *text,
                                                             const struct render_ph *ph)
{
    struct block_ref ref;
    char excerpt[72];
    const json_t *data;
    json_t *value = NULL;

    if (parse_block_name(text + ph->name_start, ph->name_end - ph->name_start, &ref, ctx->err,
                         ctx->errlen) < 0)
        return NULL;
    data = json_object_get(ctx->blocks, ref.key);
    if (!data) {
        render_errf(ctx->err, ctx->errlen,
                    "block not found: '%s' of type '%s' is referenced by the configuration "
                    "but does not exist; create the block or change the reference",
                    ref.name, ref.slug);
        goto done;
    }
    if (!json_is_object(data)) {
        render_errf(ctx->err, ctx->errlen, "data of block '%s' of type '%s' is not an object",
                    ref.name, ref.slug);
        goto done;
    }
    if (json_object_size(data) == 1 && json_object_get(data, "value")) {
        const char *p = ref.path;
        int into_value = p && (strcmp(p, "value") == 0 || strncmp(p, "value.", 6) == 0 ||
                               strncmp(p, "value[", 6) == 0);
        if (!into_value)
            data = json_object_get(data, "value");
    }
    if (ref.path) {
        value = render_lookup(data, ref.path, strlen(ref.path));
        if (!value)
            render_errf(ctx->err, ctx->errlen,
                        "invalid template %s: the path \"%s\" does not exist in the data of "
                        "block '%s' of type '%s'",
                        render_excerpt(text, excerpt, sizeof(excerpt)), ref.path, ref.name,
                        ref.slug);
    } else {
        value = json_incref((json_t *)data);
    }

done:
    block_ref_clear(&ref);
    return value;
}

static json_t *resolve_string(const struct resolve_ctx *ctx, const json_t *node, int depth)
{
    const char *text = json_string_value(node);
    size_t len = json_string_length(node);
    /* Only the header is zeroed: the small array is scratch, and most
     * strings return before the buffer is used. */
    struct render_buf buf;
    struct render_ph ph;
    size_t pos;
    int any_block = 0;
    int count = 0;
    json_t *out;

    if (!render_ph_next(text, len, 0, &ph))
        return json_incref((json_t *)node);
    buf.data = NULL;
    buf.len = buf.cap = 0;
    buf.failed = 0;

    do {
        count++;
        if (ph.kind == RENDER_PH_BLOCK)
            any_block = 1;
        pos = ph.end;
    } while (render_ph_next(text, len, pos, &ph));
    if (!any_block)
        return list_variables(ctx, node, depth) < 0 ? NULL : json_incref((json_t *)node);
    if (count == 1 && render_ph_next(text, len, 0, &ph) && ph.start == 0 && ph.end == len) {
        json_t *value = resolve_placeholder(ctx, text, &ph);
        json_t *copy;

        if (!value)
            return NULL;
        copy = render_copy(value);
        json_decref(value);
        if (!copy)
            render_errf(ctx->err, ctx->errlen, "out of memory");
        if (copy && list_variables(ctx, copy, depth) < 0) {
            json_decref(copy);
            return NULL;
        }
        return copy;
    }

    pos = 0;
    while (render_ph_next(text, len, pos, &ph)) {
        render_buf_append(&buf, text + pos, ph.start - pos);
        if (ph.kind == RENDER_PH_BLOCK) {
            json_t *value = resolve_placeholder(ctx, text, &ph);
            char excerpt[72];

            if (!value) {
                render_buf_free(&buf);
                return NULL;
            }
            if (json_is_object(value) || json_is_array(value)) {
                render_errf(ctx->err, ctx->errlen,
                            "invalid template %s: block placeholder %.*s resolves to %s, which "
                            "cannot be inserted into a string; reference a scalar attribute "
                            "instead (for example .value or .url)",
                            render_excerpt(text, excerpt, sizeof(excerpt)),
                            (int)(ph.end - ph.start), text + ph.start,
                            json_is_object(value) ? "an object" : "an array");
                json_decref(value);
                render_buf_free(&buf);
                return NULL;
            }
            render_pytext_append(&buf, value, 1);
            json_decref(value);
        } else {
            render_buf_append(&buf, text + ph.start, ph.end - ph.start);
        }
        pos = ph.end;
    }
    render_buf_append(&buf, text + pos, len - pos);
    if (buf.failed) {
        render_buf_free(&buf);
        render_errf(ctx->err, ctx->errlen, "rendered string exceeds %zu bytes",
                    (size_t)RENDER_MAX_TEXT);
        return NULL;
    }
    out = json_stringn(buf.data ? buf.data : "", buf.len);
    render_buf_free(&buf);
    if (!out)
        render_errf(ctx->err, ctx->errlen, "out of memory");
    if (out && list_variables(ctx, out, depth) < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* Resolves node; returns a new reference to its replacement. */
static json_t *resolve_node(const struct resolve_ctx *ctx, json_t *node, int depth)
{
    if (depth > RENDER_MAX_DEPTH) {
        render_errf(ctx->err, ctx->errlen, "configuration nests deeper than %d levels",
                    RENDER_MAX_DEPTH);
        return NULL;
    }
    if (json_is_object(node)) {
        const json_t *id;
        json_t *item;
        int kind = document_ref(node, &id, ctx->err, ctx->errlen);

        if (kind < 0)
            return NULL;
        if (kind == 1) {
            char *dkey = malloc(strlen("document:") + json_string_length(id) + 1);
            const json_t *data;
            json_t *copy;

            if (!dkey) {
                render_errf(ctx->err, ctx->errlen, "out of memory");
                return NULL;
            }
            strcpy(dkey, "document:");
            strcat(dkey, json_string_value(id));
            data = json_object_get(ctx->blocks, dkey);
            free(dkey);
            if (!data) {
                render_errf(ctx->err, ctx->errlen,
                            "block not found: ID '%s' is referenced by the configuration but "
                            "does not exist; create the block or change the reference",
                            json_string_value(id));
                return NULL;
            }
            copy = render_copy(data);
            if (!copy)
                render_errf(ctx->err, ctx->errlen, "out of memory");
            if (copy && list_variables(ctx, copy, depth) < 0) {
                json_decref(copy);
                return NULL;
            }
            return copy;
        }
        void *iter;

        RENDER_OBJECT_FOREACH_VALUE(node, iter, item) {
            json_t *replacement;

            /* Below the cap, where a scalar is no error, plain values stay. */
            if (depth < RENDER_MAX_DEPTH && render_is_plain(item))
                continue;
            replacement = resolve_node(ctx, item, depth + 1);

            if (!replacement)
                return NULL;
            if (replacement != item && json_object_iter_set_new(node, iter, replacement) < 0) {
                render_errf(ctx->err, ctx->errlen, "out of memory");
                return NULL;
            }
            if (replacement == item)
                json_decref(replacement);
        }
        return json_incref(node);
    }
    if (json_is_array(node)) {
        size_t i;
        json_t *item;

        json_array_foreach(node, i, item) {
            json_t *replacement;

            if (depth < RENDER_MAX_DEPTH && render_is_plain(item))
                continue;
            replacement = resolve_node(ctx, item, depth + 1);

            if (!replacement)
                return NULL;
            if (replacement != item && json_array_set_new(node, i, replacement) < 0) {
                render_errf(ctx->err, ctx->errlen, "out of memory");
                return NULL;
            }
            if (replacement == item)
                json_decref(replacement);
        }
        return json_incref(node);
    }
    if (json_is_string(node))
        return resolve_string(ctx, node, depth);
    return json_incref(node);
}

static int resolve_blocks(json_t *config, const json_t *blocks, json_t *variables,
                          char *err, size_t errlen)
{
    struct resolve_ctx ctx = {.blocks = blocks, .variables = variables, .err = err,
                              .errlen = errlen};
    json_t *empty = NULL;
    json_t *result;
    int rc = -1;

    if (!json_is_object(config)) {
        render_errf(err, errlen, "the configuration must be an object");
        return -1;
    }
    if (!blocks)
        ctx.blocks = empty = json_object();
    if (!json_is_object(ctx.blocks)) {
        render_errf(err, errlen, "block documents must be an object mapping keys to data");
        goto done;
    }
    if (variables) {
        ctx.seen = json_object();
        if (!ctx.seen) {
            render_errf(err, errlen, "out of memory");
            goto done;
        }
    }
    result = resolve_node(&ctx, config, 0);
    if (!result)
        goto done;
    if (result != config) {
        /* The whole configuration was a {"$ref": ...} object. */
        if (!json_is_object(result)) {
            render_errf(err, errlen, "the configuration resolved to a block whose data is not "
                        "an object");
            json_decref(result);
            goto done;
        }
        json_object_clear(config);
        json_object_update(config, result);
    }
    json_decref(result);
    rc = 0;

done:
    json_decref(empty);
    json_decref(ctx.seen);
    return rc;
}

int render_resolve_blocks(json_t *config, const json_t *blocks, char *err, size_t errlen)
{
    return resolve_blocks(config, blocks, NULL, err, errlen);
}

json_t *render_resolve_blocks_collect(json_t *config, const json_t *blocks, char *err,
                                      size_t errlen)
{
    json_t *variables = json_array();

    if (!variables) {
        render_errf(err, errlen, "out of memory");
        return NULL;
    }
    if (resolve_blocks(config, blocks, variables, err, errlen) < 0) {
        json_decref(variables);
        return NULL;
    }
    return variables;
}

json_t *render_resolve_blocks_node(json_t *node, int depth, const json_t *blocks,
                                   json_t *variables, json_t *seen, char *err, size_t errlen)
{
    struct resolve_ctx ctx = {.blocks = blocks, .variables = variables, .seen = seen,
                              .err = err, .errlen = errlen};

    return resolve_node(&ctx, node, depth);
}
