/*
 * Placeholder substitution (Prefect's apply_values) and render_apply, the
 * part of BaseJobConfiguration.from_template_and_values that runs before
 * block and variable resolution: defaults, env seeding, dotted keys, the env
 * merge, then apply_values over job_configuration.
 */
#include <stdlib.h>
#include <string.h>

#include "render.h"

struct apply_ctx {
    const json_t *values;
    const json_t *properties; /* defaults under values, or NULL */
    render_getenv_fn environ_lookup;
    void *environ_arg;
    char *err;
    size_t errlen;
};

static const char *default_getenv(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

static json_t *lookup(const struct apply_ctx *ctx, const char *name, size_t len)
{
    if (ctx->properties)
        return render_lookup_layered(ctx->values, ctx->properties, name, len);
    return render_lookup(ctx->values, name, len);
}

/* Text of an env placeholder: the name after every leading '$', as
 * str.lstrip("$") leaves it; NULL when unset. */
static const char *env_value(const struct apply_ctx *ctx, const char *name, size_t len)
{
    char small[256];
    char *copy = small;
    const char *value;

    while (len > 0 && *name == '$') {
        name++;
        len--;
    }
    if (len >= sizeof(small)) {
        copy = malloc(len + 1);
        if (!copy)
            return NULL;
    }
    memcpy(copy, name, len);
    copy[len] = '\0';
    value = ctx->environ_lookup(copy, ctx->environ_arg);
    if (copy != small)
        free(copy);
    return value;
}

/* Inline substitution of a string with at least one placeholder: standard
 * and env placeholders become their text ("" when unset), block and
 * variable placeholders stay for the later passes. */
static json_t *apply_inline(const struct apply_ctx *ctx, const char *text, size_t len,
                            const struct render_ph *first)
{
    struct render_buf buf; /* header zeroed below; small is scratch */
    struct render_ph ph = *first;
    size_t pos = 0;
    char *result;
    json_t *out;
    int foreign = 0; /* an environment value, which may not be UTF-8, was spliced in */

    buf.data = NULL;
    buf.len = buf.cap = 0;
    buf.failed = 0;

    /* first is the leftmost match, found by the caller already. */
    do {
        const char *name = text + ph.name_start;
        size_t namelen = ph.name_end - ph.name_start;

        render_buf_append(&buf, text + pos, ph.start - pos);
        if (ph.kind == RENDER_PH_STANDARD) {
            json_t *value = lookup(ctx, name, namelen);
            if (value)
                render_pytext_append(&buf, value, 1);
            json_decref(value);
        } else if (ph.kind == RENDER_PH_ENV) {
            const char *value = env_value(ctx, name, namelen);
            if (value) {
                render_buf_append(&buf, value, strlen(value));
                foreign = 1;
            }
        } else {
            render_buf_append(&buf, text + ph.start, ph.end - ph.start);
        }
        pos = ph.end;
    } while (render_ph_next(text, len, pos, &ph));
    render_buf_append(&buf, text + pos, len - pos);
    if (buf.failed) {
        render_buf_free(&buf);
        render_errf(ctx->err, ctx->errlen,
                    "rendered string exceeds %zu bytes or memory is exhausted",
                    (size_t)RENDER_MAX_TEXT);
        return NULL;
    }
    /* Cutting valid UTF-8 at ASCII braces and splicing in Python text of
     * JSON values keeps it valid, so only environment text needs the check. */
    result = buf.data ? buf.data : "";
    out = foreign ? json_stringn(result, buf.len) : json_stringn_nocheck(result, buf.len);
    render_buf_free(&buf);
    if (!out)
        render_errf(ctx->err, ctx->errlen, "rendered string is not valid UTF-8 or memory is exhausted");
    return out;
}

static int apply_string(const struct apply_ctx *ctx, const json_t *tmpl, json_t **out)
{
    const char *text = json_string_value(tmpl);
    size_t len = json_string_length(tmpl);
    struct render_ph ph;

    *out = NULL;
    if (!render_ph_next(text, len, 0, &ph)) {
        *out = json_incref((json_t *)tmpl);
        return 0;
    }
    if (ph.start == 0 && ph.end == len && ph.kind == RENDER_PH_STANDARD) {
        json_t *value = lookup(ctx, text + ph.name_start, ph.name_end - ph.name_start);
        if (!value)
            return 0; /* unset */
        *out = render_copy(value);
        json_decref(value);
        if (!*out) {
            render_errf(ctx->err, ctx->errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    *out = apply_inline(ctx, text, len, &ph);
    return *out ? 0 : -1;
}

static int apply_node(const struct apply_ctx *ctx, const json_t *tmpl, json_t **out, int depth)
{
    if (depth > RENDER_MAX_DEPTH) {
        render_errf(ctx->err, ctx->errlen, "template nests deeper than %d levels",
                    RENDER_MAX_DEPTH);
        return -1;
    }
    if (json_is_string(tmpl))
        return apply_string(ctx, tmpl, out);
    if (json_is_object(tmpl)) {
        const char *key;
        json_t *item;
        json_t *result = json_object();
        void *iter;

        if (!result)
            goto nomem;
        RENDER_OBJECT_FOREACH((json_t *)tmpl, iter, key, item) {
            json_t *rendered;

            if (apply_node(ctx, item, &rendered, depth + 1) < 0) {
                json_decref(result);
                return -1;
            }
            if (rendered && json_object_set_new_nocheck(result, key, rendered) < 0) {
                json_decref(result);
                goto nomem;
            }
        }
        *out = result;
        return 0;
    }
    if (json_is_array(tmpl)) {
        size_t i;
        json_t *item;
        json_t *result = json_array();

        if (!result)
            goto nomem;
        json_array_foreach(tmpl, i, item) {
            json_t *rendered;

            if (apply_node(ctx, item, &rendered, depth + 1) < 0) {
                json_decref(result);
                return -1;
            }
            if (rendered && json_array_append_new(result, rendered) < 0) {
                json_decref(result);
                goto nomem;
            }
        }
        *out = result;
        return 0;
    }
    *out = json_incref((json_t *)tmpl);
    return 0;

nomem:
    render_errf(ctx->err, ctx->errlen, "out of memory");
    return -1;
}

int render_apply_item(const json_t *tmpl, const json_t *values, const json_t *properties,
                      render_getenv_fn environ_lookup, void *environ_arg, int depth,
                      json_t **out, char *err, size_t errlen)
{
    struct apply_ctx ctx = {
        .values = values,
        .properties = properties,
        .environ_lookup = environ_lookup ? environ_lookup : default_getenv,
        .environ_arg = environ_arg,
        .err = err,
        .errlen = errlen,
    };

    *out = NULL;
    return apply_node(&ctx, tmpl, out, depth);
}

int render_apply_values(const json_t *tmpl, const json_t *values, render_getenv_fn environ_lookup,
                        void *environ_arg, json_t **out, char *err, size_t errlen)
{
    return render_apply_layered(tmpl, values, NULL, environ_lookup, environ_arg, out, err, errlen);
}

int render_apply_layered(const json_t *tmpl, const json_t *values, const json_t *properties,
                         render_getenv_fn environ_lookup, void *environ_arg, json_t **out,
                         char *err, size_t errlen)
{
    struct apply_ctx ctx = {
        .values = values,
        .properties = properties,
        .environ_lookup = environ_lookup ? environ_lookup : default_getenv,
        .environ_arg = environ_arg,
        .err = err,
        .errlen = errlen,
    };

    *out = NULL;
    return apply_node(&ctx, tmpl, out, 0);
}

/* The template value of key in the union of layers: the one of the last
 * layer holding it. */
static const json_t *union_value(const json_t *const *layers, size_t n, const char *key,
                                 size_t keylen, const json_t *value)
{
    for (size_t j = n; j-- > 0;) {
        const json_t *found = json_object_getn(layers[j], key, keylen);

        if (found)
            return found;
    }
    return value;
}

/* Whether key is in one of the layers before the n-th. */
static int union_seen(const json_t *const *layers, size_t n, const char *key, size_t keylen)
{
    for (size_t j = 0; j < n; j++)
        if (json_object_getn(layers[j], key, keylen))
            return 1;
    return 0;
}

int render_apply_union(const json_t *const *layers, size_t n, const json_t *values,
                       const json_t *properties, render_getenv_fn environ_lookup,
                       void *environ_arg, json_t **out, char *err, size_t errlen)
{
    struct apply_ctx ctx = {
        .values = values,
        .properties = properties,
        .environ_lookup = environ_lookup ? environ_lookup : default_getenv,
        .environ_arg = environ_arg,
        .err = err,
        .errlen = errlen,
    };
    json_t *result = json_object();

    *out = NULL;
    if (!result)
        goto nomem;
    /* Python's dict union keeps each key at its first position and takes
     * the value of its last layer; unset values are then dropped. */
    for (size_t i = 0; i < n; i++) {
        const char *key;
        json_t *item;
        void *iter;

        RENDER_OBJECT_FOREACH((json_t *)layers[i], iter, key, item) {
            size_t keylen = json_object_iter_key_len(iter);
            json_t *rendered;

            if (i > 0 && union_seen(layers, i, key, keylen))
                continue;
            if (apply_node(&ctx, union_value(layers + i + 1, n - i - 1, key, keylen, item),
                           &rendered, 1) < 0) {
                json_decref(result);
                return -1;
            }
            if (rendered && json_object_setn_new_nocheck(result, key, keylen, rendered) < 0) {
                json_decref(result);
                goto nomem;
            }
        }
    }
    *out = result;
    return 0;

nomem:
    render_errf(err, errlen, "out of memory");
    return -1;
}
