/*
 * Prefect variables, as Prefect's resolve_variables treats them:
 * {{ prefect.variables.NAME }} as a whole string becomes the variable's
 * value with its JSON type, inline it becomes str(value); a variable that
 * does not exist becomes "" in both cases.  The name is the placeholder
 * name with every "prefect.variables." removed (Python's str.replace).
 */
#include <stdlib.h>
#include <string.h>

#include "render.h"

#define VARIABLE_PREFIX "prefect.variables."

/* Returns the variable name of a placeholder: in small (of small_size
 * bytes) when it fits, else in a new string; NULL when out of memory. */
static char *variable_name(const char *name, size_t len, char *small, size_t small_size)
{
    size_t plen = strlen(VARIABLE_PREFIX);
    char *out = len < small_size ? small : malloc(len + 1);
    size_t n = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        if (len - i >= plen && memcmp(name + i, VARIABLE_PREFIX, plen) == 0) {
            i += plen;
            continue;
        }
        out[n++] = name[i++];
    }
    out[n] = '\0';
    return out;
}

/* Kept out of line so that the name buffer is not on the stack of every
 * level of the recursive walk. */
static __attribute__((noinline)) int collect_string(const json_t *node, json_t *list,
                                                    json_t *seen)
{
    const char *text = json_string_value(node);
    size_t len = json_string_length(node);
    struct render_ph ph;
    size_t pos = 0;
    char small[256];

    while (render_ph_next(text, len, pos, &ph)) {
        char *name;
        int rc = 0;

        pos = ph.end;
        if (ph.kind != RENDER_PH_VARIABLE)
            continue;
        name = variable_name(text + ph.name_start, ph.name_end - ph.name_start, small,
                             sizeof(small));
        if (!name)
            return -1;
        /* name is template text cut at ASCII characters: valid UTF-8. */
        if (!json_object_get(seen, name)) {
            rc = json_object_set_new_nocheck(seen, name, json_true());
            if (rc == 0)
                rc = json_array_append_new(list, json_stringn_nocheck(name, strlen(name)));
        }
        if (name != small)
            free(name);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int render_collect_variables_into(const json_t *node, json_t *list, json_t *seen, int depth)
{
    if (depth > RENDER_MAX_DEPTH)
        return 0;
    if (json_is_object(node)) {
        json_t *item;

        void *iter;

        RENDER_OBJECT_FOREACH_VALUE((json_t *)node, iter, item)
            if (!render_is_plain(item) &&
                render_collect_variables_into(item, list, seen, depth + 1) < 0)
                return -1;
        return 0;
    }
    if (json_is_array(node)) {
        size_t i;
        json_t *item;

        json_array_foreach(node, i, item)
            if (!render_is_plain(item) &&
                render_collect_variables_into(item, list, seen, depth + 1) < 0)
                return -1;
        return 0;
    }
    if (json_is_string(node))
        return collect_string(node, list, seen);
    return 0;
}

json_t *render_collect_variables(const json_t *config)
{
    json_t *list = json_array();
    json_t *seen = json_object();

    if (!list || !seen || render_collect_variables_into(config, list, seen, 0) < 0) {
        json_decref(list);
        list = NULL;
    }
    json_decref(seen);
    return list;
}

struct resolve_ctx {
    const json_t *vars;
    char *err;
    size_t errlen;
};

/* The variable's value (borrowed), or NULL when it does not exist. */
static const json_t *variable_value(const struct resolve_ctx *ctx, const char *text,
                                    const struct render_ph *ph, int *nomem)
{
    char small[256];
    char *name = variable_name(text + ph->name_start, ph->name_end - ph->name_start, small,
                               sizeof(small));
    const json_t *value;

    *nomem = !name;
    if (!name)
        return NULL;
    value = json_object_get(ctx->vars, name);
    if (name != small)
        free(name);
    return value;
}

static json_t *resolve_string(const struct resolve_ctx *ctx, json_t *node)
{
    const char *text = json_string_value(node);
    size_t len = json_string_length(node);
    /* Only the header is zeroed: the small array is scratch, and most
     * strings return before the buffer is used. */
    struct render_buf buf;
    struct render_ph ph;
    size_t pos = 0;
    int any = 0;
    int count = 0;
    int nomem = 0;
    json_t *out;

    buf.data = NULL;
    buf.len = buf.cap = 0;
    buf.failed = 0;

    while (render_ph_next(text, len, pos, &ph)) {
        count++;
        if (ph.kind == RENDER_PH_VARIABLE)
            any = 1;
        pos = ph.end;
    }
    if (!any)
        return json_incref(node);
    if (count == 1 && render_ph_next(text, len, 0, &ph) && ph.start == 0 && ph.end == len) {
        const json_t *value = variable_value(ctx, text, &ph, &nomem);

        if (nomem)
            goto nomem;
        out = value ? render_copy(value) : json_string("");
        if (!out)
            goto nomem;
        return out;
    }

    pos = 0;
    while (render_ph_next(text, len, pos, &ph)) {
        render_buf_append(&buf, text + pos, ph.start - pos);
        if (ph.kind == RENDER_PH_VARIABLE) {
            const json_t *value = variable_value(ctx, text, &ph, &nomem);

            if (nomem)
                goto nomem;
            if (value)
                render_pytext_append(&buf, value, 1);
        } else {
            render_buf_append(&buf, text + ph.start, ph.end - ph.start);
        }
        pos = ph.end;
    }
    render_buf_append(&buf, text + pos, len - pos);
    if (buf.failed)
        goto nomem;
    out = json_stringn(buf.data ? buf.data : "", buf.len);
    render_buf_free(&buf);
    if (!out)
        goto nomem;
    return out;

nomem:
    render_buf_free(&buf);
    render_errf(ctx->err, ctx->errlen, "out of memory or string longer than %zu bytes",
                (size_t)RENDER_MAX_TEXT);
    return NULL;
}

static json_t *resolve_node(const struct resolve_ctx *ctx, json_t *node, int depth)
{
    if (depth > RENDER_MAX_DEPTH) {
        render_errf(ctx->err, ctx->errlen, "configuration nests deeper than %d levels",
                    RENDER_MAX_DEPTH);
        return NULL;
    }
    if (json_is_object(node)) {
        json_t *item;

        void *iter;

        RENDER_OBJECT_FOREACH_VALUE(node, iter, item) {
            json_t *replacement;

            /* Below the cap, where a scalar is no error, plain values stay. */
            if (depth < RENDER_MAX_DEPTH && render_is_plain(item))
                continue;
            replacement = resolve_node(ctx, item, depth + 1);

            if (!replacement)
                return NULL;
            if (replacement == item) {
                json_decref(replacement);
            } else if (json_object_iter_set_new(node, iter, replacement) < 0) {
                render_errf(ctx->err, ctx->errlen, "out of memory");
                return NULL;
            }
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
            if (replacement == item) {
                json_decref(replacement);
            } else if (json_array_set_new(node, i, replacement) < 0) {
                render_errf(ctx->err, ctx->errlen, "out of memory");
                return NULL;
            }
        }
        return json_incref(node);
    }
    if (json_is_string(node))
        return resolve_string(ctx, node);
    return json_incref(node);
}

int render_resolve_variables(json_t *config, const json_t *vars, char *err, size_t errlen)
{
    struct resolve_ctx ctx = {.vars = vars, .err = err, .errlen = errlen};
    json_t *empty = NULL;
    json_t *result;
    int rc = -1;

    if (!json_is_object(config)) {
        render_errf(err, errlen, "the configuration must be an object");
        return -1;
    }
    if (!vars)
        ctx.vars = empty = json_object();
    if (!json_is_object(ctx.vars)) {
        render_errf(err, errlen, "variables must be an object mapping names to values");
        goto done;
    }
    result = resolve_node(&ctx, config, 0);
    if (!result)
        goto done;
    json_decref(result);
    rc = 0;

done:
    json_decref(empty);
    return rc;
}

json_t *render_resolve_variables_node(json_t *node, int depth, const json_t *vars, char *err,
                                      size_t errlen)
{
    struct resolve_ctx ctx = {.vars = vars, .err = err, .errlen = errlen};

    return resolve_node(&ctx, node, depth);
}
