/*
 * Compiled base job templates: render_apply with the template's work done
 * once.  Compiling checks the template, finds every placeholder of
 * job_configuration, splits each name into its lookup path and resolves the
 * schema default of the path's first segment.  Applying then looks each
 * placeholder up in the job variables and falls back to that default, which
 * is what render_lookup_layered does by looking in properties every time.
 *
 * Job variable values inserted into the configuration are not templates, and
 * env entries that come from job variables are rendered with the uncompiled
 * code in render_apply.c, so both paths give the same output.
 */
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "render_compiled.h"

struct compile_ctx {
    struct render_template *tmpl;
    char *err;
    size_t errlen;
};

/* Templates nested deeper than this render with jansson trees only. */
#define RENDER_RUN_MAX_DEPTH 512

void render_arena_free(struct arena_block *head, const struct arena_block *stop)
{
    while (head != stop) {
        struct arena_block *next = head->next;

        free(head);
        head = next;
    }
}

static void *arena_alloc(struct render_template *tmpl, size_t size)
{
    void *out = render_arena_alloc(&tmpl->arena, size, 4096);

    if (out)
        memset(out, 0, size);
    return out;
}

static char *arena_strndup(struct render_template *tmpl, const char *text, size_t len)
{
    char *out = arena_alloc(tmpl, len + 1);

    if (out) {
        memcpy(out, text, len);
        out[len] = '\0';
    }
    return out;
}

/* The non-null "default" of properties[name], as render_lookup_layered
 * falls back to it. */
static const json_t *schema_default(const json_t *properties, const char *name, size_t len)
{
    json_t *attrs = json_object_getn(properties, name, len);
    json_t *def = json_is_object(attrs) ? json_object_getn(attrs, "default", 7) : NULL;

    return def && !json_is_null(def) ? def : NULL;
}

/* Finds or assigns the slot of a first segment. */
static int name_slot(struct render_template *tmpl, const char *name, size_t len, size_t *slot)
{
    json_t *index = json_object_getn(tmpl->names, name, len);

    if (index) {
        *slot = (size_t)json_integer_value(index);
        return 0;
    }
    *slot = tmpl->nslots;
    if (json_object_setn_new(tmpl->names, name, len, json_integer((json_int_t)*slot)) < 0)
        return -1;
    tmpl->nslots++;
    return 0;
}

/* Splits a placeholder name: the first segment ends at the first '.' or
 * '[' and loses its ']'; the rest is cut as render_lookup cuts a path. */
static int compile_path(struct compile_ctx *cc, const char *name, size_t len,
                        struct compiled_path *path)
{
    struct render_template *tmpl = cc->tmpl;
    size_t d = 0;
    size_t nseg = 0;
    char *first;
    char *segs;
    size_t n = 0;

    while (d < len && name[d] != '.' && name[d] != '[')
        d++;
    first = arena_alloc(tmpl, d + 1);
    if (!first)
        return -1;
    for (size_t i = 0; i < d; i++)
        if (name[i] != ']')
            first[n++] = name[i];
    path->first = first;
    path->first_len = n;
    path->fallback = schema_default(tmpl->properties, first, n);
    if (name_slot(tmpl, first, n, &path->slot) < 0)
        return -1;
    if (d == len)
        return 0;

    /* render_lookup(root, rest): every '.' or '[' and the end close a
     * segment, so a trailing separator leaves an empty last segment. */
    name += d + 1;
    len -= d + 1;
    for (size_t i = 0; i < len; i++)
        if (name[i] == '.' || name[i] == '[')
            nseg++;
    nseg++;
    path->seg = arena_alloc(tmpl, nseg * sizeof(*path->seg));
    path->seg_len = arena_alloc(tmpl, nseg * sizeof(*path->seg_len));
    segs = arena_alloc(tmpl, len + 1);
    if (!path->seg || !path->seg_len || !segs)
        return -1;
    path->nseg = nseg;
    nseg = 0;
    path->seg[0] = segs;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || name[i] == '.' || name[i] == '[') {
            path->seg_len[nseg] = (size_t)(segs - path->seg[nseg]);
            if (++nseg < path->nseg)
                path->seg[nseg] = segs;
        } else if (name[i] != ']') {
            *segs++ = name[i];
        }
    }
    return 0;
}

static int compile_node(struct compile_ctx *cc, const json_t *value, struct node *node,
                        int depth);

/* A string: literal unless it contains a standard or env placeholder. */
static int compile_string(struct compile_ctx *cc, const json_t *value, struct node *node)
{
    const char *text = json_string_value(value);
    size_t len = json_string_length(value);
    struct render_ph ph;
    size_t count = 0;
    size_t pos = 0;
    size_t text_start = 0;
    int active = 0;

    while (render_ph_next(text, len, pos, &ph)) {
        count++;
        if (ph.kind == RENDER_PH_STANDARD || ph.kind == RENDER_PH_ENV)
            active = 1;
        if (ph.kind == RENDER_PH_BLOCK)
            node->may_ref = 1;
        pos = ph.end;
    }
    node->kind = NODE_LITERAL;
    node->has_brace = memchr(text, '{', len) != NULL;
    if (!active)
        return 0;
    if (count == 1 && render_ph_next(text, len, 0, &ph) && ph.start == 0 && ph.end == len &&
        ph.kind == RENDER_PH_STANDARD) {
        node->kind = NODE_WHOLE;
        return compile_path(cc, text + ph.name_start, ph.name_end - ph.name_start, &node->u.path);
    }

    /* At most two pieces per placeholder plus the tail. */
    node->kind = NODE_INLINE;
    node->u.pieces = arena_alloc(cc->tmpl, (2 * count + 1) * sizeof(struct piece));
    if (!node->u.pieces)
        return -1;
    pos = 0;
    while (render_ph_next(text, len, pos, &ph)) {
        const char *name = text + ph.name_start;
        size_t name_len = ph.name_end - ph.name_start;
        struct piece *piece;

        pos = ph.end;
        if (ph.kind != RENDER_PH_STANDARD && ph.kind != RENDER_PH_ENV)
            continue; /* kept as text for the block and variable passes */
        if (ph.start > text_start) {
            piece = &node->u.pieces[node->n++];
            piece->kind = PIECE_TEXT;
            piece->text = text + text_start;
            piece->len = ph.start - text_start;
        }
        text_start = ph.end;
        piece = &node->u.pieces[node->n++];
        if (ph.kind == RENDER_PH_STANDARD) {
            piece->kind = PIECE_STANDARD;
            if (compile_path(cc, name, name_len, &piece->path) < 0)
                return -1;
            continue;
        }
        /* str.lstrip("$") */
        while (name_len > 0 && *name == '$') {
            name++;
            name_len--;
        }
        piece->kind = PIECE_ENV;
        piece->text = arena_strndup(cc->tmpl, name, name_len);
        if (!piece->text)
            return -1;
    }
    if (len > text_start) {
        struct piece *piece = &node->u.pieces[node->n++];

        piece->kind = PIECE_TEXT;
        piece->text = text + text_start;
        piece->len = len - text_start;
    }
    return 0;
}

/* A container whose children are all literal is literal itself. */
static int compile_container(struct compile_ctx *cc, const json_t *value, struct node *node,
                             int depth)
{
    size_t n = json_is_object(value) ? json_object_size(value) : json_array_size(value);
    int active = 0;

    node->kind = json_is_object(value) ? NODE_OBJECT : NODE_ARRAY;
    node->n = n;
    if (n == 0) {
        node->kind = NODE_LITERAL;
        return 0;
    }
    node->u.children = arena_alloc(cc->tmpl, n * sizeof(struct node));
    if (!node->u.children)
        return -1;
    if (json_is_object(value)) {
        const char *key;
        json_t *item;
        void *iter;
        size_t i = 0;

        RENDER_OBJECT_FOREACH((json_t *)value, iter, key, item) {
            struct node *child = &node->u.children[i++];

            int rc;

            child->key = key;
            child->key_len = json_object_iter_key_len(iter);
            if (child->key_len == 4 && memcmp(key, "$ref", 4) == 0)
                node->dollar_ref = 1;
            rc = compile_node(cc, item, child, depth + 1);
            if (rc < 0)
                return rc;
            active |= child->kind != NODE_LITERAL;
            node->may_ref |= child->may_ref;
            node->has_brace |= child->has_brace;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            struct node *child = &node->u.children[i];

            int rc = compile_node(cc, json_array_get(value, i), child, depth + 1);

            if (rc < 0)
                return rc;
            active |= child->kind != NODE_LITERAL;
            node->may_ref |= child->may_ref;
            node->has_brace |= child->has_brace;
        }
    }
    node->may_ref |= node->dollar_ref;
    if (!active)
        node->kind = NODE_LITERAL;
    return 0;
}

static int compile_node(struct compile_ctx *cc, const json_t *value, struct node *node,
                        int depth)
{
    node->value = value;
    if (depth > cc->tmpl->max_depth)
        cc->tmpl->max_depth = depth;
    if (depth > RENDER_MAX_DEPTH) {
        render_errf(cc->err, cc->errlen, "template nests deeper than %d levels",
                    RENDER_MAX_DEPTH);
        return -2;
    }
    if (json_is_string(value))
        return compile_string(cc, value, node);
    if (json_is_object(value) || json_is_array(value))
        return compile_container(cc, value, node, depth);
    node->kind = NODE_LITERAL;
    return 0;
}

/* The JSON text of value followed by tail, in the template's arena. */
static char *json_text(struct render_template *tmpl, const json_t *value, const char *tail,
                       size_t *len)
{
    struct render_buf buf;
    char *text = NULL;

    memset(&buf, 0, sizeof(buf));
    render_json_append(&buf, value);
    render_buf_append(&buf, tail, strlen(tail));
    if (!buf.failed && buf.data)
        text = arena_strndup(tmpl, buf.data, buf.len);
    *len = buf.len;
    render_buf_free(&buf);
    return text;
}

/* The "key": text of an object member. */
static int key_prefix(struct render_template *tmpl, struct node *node)
{
    json_t *key = json_stringn_nocheck(node->key, node->key_len);

    if (key)
        node->key_prefix = json_text(tmpl, key, ":", &node->key_prefix_len);
    json_decref(key);
    return node->key_prefix ? 0 : -1;
}

/* The block keys of a value at depth in the configuration, kept with the
 * template, or NULL when out of memory. */
static const json_t *block_list(struct render_template *tmpl, const json_t *value, int depth)
{
    json_t *list = json_array();
    json_t *seen = json_object();
    int rc = list && seen ? render_collect_blocks_into(value, list, seen, depth) : -1;

    json_decref(seen);
    if (rc == 0 && !tmpl->block_lists)
        tmpl->block_lists = json_array();
    if (rc < 0 || !tmpl->block_lists || json_array_append_new(tmpl->block_lists, list) < 0)
        return NULL;
    return list;
}

/* The fallback's texts, when it is the whole value of the path at depth
 * in the template. */
static int fallback_texts(struct render_template *tmpl, struct compiled_path *path, int depth)
{
    struct render_buf buf;

    if (!path->fallback || path->nseg)
        return 0;
    path->fallback_json = json_text(tmpl, path->fallback, "", &path->fallback_json_len);
    memset(&buf, 0, sizeof(buf));
    render_pytext_append(&buf, path->fallback, 1);
    if (!buf.failed && buf.data)
        path->fallback_text = arena_strndup(tmpl, buf.data, buf.len);
    else if (!buf.failed)
        path->fallback_text = arena_strndup(tmpl, "", 0);
    path->fallback_text_len = buf.len;
    render_buf_free(&buf);
    path->fallback_refs = render_tmpl_refs(path->fallback);
    if (path->fallback_refs & (RENDER_REFS_BLOCK | RENDER_REFS_CONTAINER)) {
        path->fallback_blocks = block_list(tmpl, path->fallback, depth + 1);
        if (!path->fallback_blocks)
            return -1;
    }
    return path->fallback_json && path->fallback_text ? 0 : -1;
}

/* The text of an inline node when all its placeholders fall back to
 * their schema defaults, kept when no block or variable placeholder can
 * appear in it. */
static int inline_fallback(struct render_template *tmpl, struct node *node)
{
    struct render_buf buf;
    json_t *text;
    size_t i;

    memset(&buf, 0, sizeof(buf));
    for (i = 0; i < node->n; i++) {
        const struct piece *piece = &node->u.pieces[i];

        if (piece->kind == PIECE_TEXT)
            render_buf_append(&buf, piece->text, piece->len);
        else if (piece->path.fallback_text)
            render_buf_append(&buf, piece->path.fallback_text, piece->path.fallback_text_len);
        else
            break; /* a path into the default, or no default: rendered each time */
    }
    if (i < node->n) {
        render_buf_free(&buf);
        return 0;
    }
    if (buf.failed) {
        render_buf_free(&buf);
        return -1;
    }
    text = json_stringn_nocheck(buf.data ? buf.data : "", buf.len);
    render_buf_free(&buf);
    if (!text)
        return -1;
    if (render_tmpl_refs(text) == 0) {
        if (!tmpl->block_lists)
            tmpl->block_lists = json_array();
        if (!tmpl->block_lists || json_array_append(tmpl->block_lists, text) < 0) {
            json_decref(text);
            return -1;
        }
        node->all_fallback = text;
        node->all_fallback_json = json_text(tmpl, text, "", &node->all_fallback_json_len);
        if (!node->all_fallback_json) {
            json_decref(text);
            return -1;
        }
    }
    json_decref(text);
    return 0;
}

/* Prepares node, at depth in the template, for render_run: the JSON text
 * of each literal part that contains no '{' and no "$ref", the texts of
 * schema defaults, and tmpl->fast cleared for the shapes render_run leaves
 * to the jansson steps.  Returns 0 or -1 (no memory). */
static int prepare_fast(struct render_template *tmpl, struct node *node, int depth)
{

    switch (node->kind) {
    case NODE_LITERAL:
        if (node->has_brace || node->may_ref) {
            node->lit_refs = render_tmpl_refs(node->value);
            if (node->lit_refs & (RENDER_REFS_BLOCK | RENDER_REFS_CONTAINER)) {
                node->lit_blocks = block_list(tmpl, node->value, depth + 1);
                if (!node->lit_blocks)
                    return -1;
            }
            return 0;
        }
        node->raw = json_text(tmpl, node->value, "", &node->raw_len);
        return node->raw ? 0 : -1;
    case NODE_WHOLE:
        return fallback_texts(tmpl, &node->u.path, depth);
    case NODE_INLINE:
        for (size_t i = 0; i < node->n; i++) {
            if (node->u.pieces[i].kind == PIECE_ENV)
                tmpl->fast = 0;
            if (node->u.pieces[i].kind == PIECE_STANDARD &&
                fallback_texts(tmpl, &node->u.pieces[i].path, depth) < 0)
                return -1;
        }
        return tmpl->fast ? inline_fallback(tmpl, node) : 0;
    case NODE_OBJECT:
    case NODE_ARRAY:
        if (node->dollar_ref)
            tmpl->fast = 0;
        for (size_t i = 0; i < node->n && tmpl->fast; i++)
            if ((node->kind == NODE_OBJECT && key_prefix(tmpl, &node->u.children[i]) < 0) ||
                prepare_fast(tmpl, &node->u.children[i], depth + 1) < 0)
                return -1;
        return 0;
    }
    return 0;
}

void render_template_free(struct render_template **tmpl)
{
    if (!tmpl || !*tmpl)
        return;
    render_arena_free((*tmpl)->arena, NULL);
    json_decref((*tmpl)->base);
    json_decref((*tmpl)->empty_properties);
    json_decref((*tmpl)->names);
    json_decref((*tmpl)->env_index);
    json_decref((*tmpl)->block_lists);
    free((*tmpl)->properties_error);
    free(*tmpl);
    *tmpl = NULL;
}

/* The checks render_apply makes on the template itself, in its order. */
static int check_template(struct render_template *tmpl, const json_t *base, char *err,
                          size_t errlen)
{
    const json_t *variables;

    if (!json_is_object(base)) {
        render_errf(err, errlen, "the base job template must be an object");
        return -1;
    }
    tmpl->job_config = json_object_get(base, "job_configuration");
    variables = json_object_get(base, "variables");
    if (!json_is_object(tmpl->job_config)) {
        render_errf(err, errlen, "the base job template's job_configuration must be an object, not %s",
                    tmpl->job_config ? render_type_name(tmpl->job_config) : "missing");
        return -1;
    }
    if (!json_is_object(variables)) {
        render_errf(err, errlen, "the base job template's variables must be an object, not %s",
                    variables ? render_type_name(variables) : "missing");
        return -1;
    }
    tmpl->properties = json_object_get(variables, "properties");
    if (!tmpl->properties) {
        tmpl->properties = tmpl->empty_properties = json_object();
        if (!tmpl->empty_properties) {
            render_errf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (!json_is_object(tmpl->properties)) {
        render_errf(err, errlen, "variables.properties must be an object, not %s",
                    render_type_name(tmpl->properties));
        return -1;
    }
    return 0;
}

/* Maps each key of object to its position in iteration order. */
static int index_keys(const json_t *object, json_t **index)
{
    json_int_t position = 0;

    *index = json_object();
    if (!*index)
        return -1;
    for (void *iter = json_object_iter((json_t *)object); iter;
         iter = json_object_iter_next((json_t *)object, iter)) {
        if (json_object_setn_new_nocheck(*index, json_object_iter_key(iter),
                                         json_object_iter_key_len(iter),
                                         json_integer(position++)) < 0)
            return -1;
    }
    return 0;
}

struct render_template *render_template_compile(const json_t *base_template, char *err,
                                                size_t errlen)
{
    struct render_template *tmpl = calloc(1, sizeof(*tmpl));
    struct compile_ctx cc = {.tmpl = tmpl, .err = err, .errlen = errlen};
    char message[512];
    const char *key;
    json_t *value;
    void *iter;
    size_t i = 0;

    if (!tmpl) {
        render_errf(err, errlen, "out of memory");
        return NULL;
    }
    tmpl->base = json_incref((json_t *)base_template);
    tmpl->names = json_object();
    if (!tmpl->names)
        goto nomem;
    if (check_template(tmpl, base_template, err, errlen) < 0)
        goto fail;

    /* render_apply checks the job variables before the properties, so a
     * bad property is reported when the template is applied. */
    if (render_check_properties(tmpl->properties, message, sizeof(message)) < 0) {
        tmpl->properties_error = strdup(message);
        if (!tmpl->properties_error)
            goto nomem;
        return tmpl;
    }
    tmpl->default_env = schema_default(tmpl->properties, "env", 3);

    tmpl->nfields = json_object_size(tmpl->job_config);
    tmpl->fields = arena_alloc(tmpl, (tmpl->nfields ? tmpl->nfields : 1) * sizeof(struct node));
    if (!tmpl->fields)
        goto nomem;
    RENDER_OBJECT_FOREACH((json_t *)tmpl->job_config, iter, key, value) {
        struct node *field = &tmpl->fields[i++];
        int rc;

        field->key = key;
        field->key_len = json_object_iter_key_len(iter);
        rc = compile_node(&cc, value, field, 0);
        if (rc == -2)
            goto fail;
        if (rc < 0)
            goto nomem;
        if (strcmp(key, "env") == 0)
            tmpl->env_field = field;
        field->base_field = -1;
        for (int b = 0; b < 4; b++) {
            static const char *const base[] = {"command", "env", "labels", "name"};

            if (field->key_len == strlen(base[b]) && memcmp(key, base[b], field->key_len) == 0)
                field->base_field = b;
        }
    }
    if (tmpl->env_field && json_is_object(tmpl->env_field->value) &&
        index_keys(tmpl->env_field->value, &tmpl->env_index) < 0)
        goto nomem;
    /* Deep templates stay with the jansson steps, whose walks report
     * nesting beyond RENDER_MAX_DEPTH in a configuration. */
    tmpl->fast = json_object_getn(tmpl->job_config, "$ref", 4) == NULL &&
                 tmpl->max_depth <= RENDER_RUN_MAX_DEPTH;
    for (i = 0; i < tmpl->nfields && tmpl->fast; i++)
        if (key_prefix(tmpl, &tmpl->fields[i]) < 0 || prepare_fast(tmpl, &tmpl->fields[i], 0) < 0)
            goto nomem;
    return tmpl;

nomem:
    render_errf(err, errlen, "out of memory");
fail:
    render_template_free(&tmpl);
    return NULL;
}

/* ---- applying ---- */

struct apply_ctx {
    const struct render_template *tmpl;
    const json_t *values;
    json_t **slots; /* values[name] of each slot's name, or NULL */
    json_t *blocks; /* when set, the block keys of the output are listed here */
    json_t *seen;   /* the keys in blocks */
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

/* The value of a compiled path, or NULL when unset.  *owned is set when
 * the caller must release it.  A one-segment path returns the job variable
 * or default itself, with no reference taken: jansson's reference counts
 * are atomic operations, which cost more than the rest of the lookup. */
json_t *render_tmpl_lookup(json_t *const *slots, const struct compiled_path *path, int *owned)
{
    json_t *current = slots[path->slot];

    *owned = 0;
    if (!current)
        current = (json_t *)path->fallback;
    if (!current || path->nseg == 0)
        return current;
    *owned = 1;
    current = json_incref(current);
    for (size_t i = 0; i < path->nseg && current; i++) {
        json_t *next = render_lookup_segment(current, path->seg[i], path->seg_len[i]);

        json_decref(current);
        current = next;
    }
    return current;
}

static json_t *apply_inline(const struct apply_ctx *ctx, const struct node *node)
{
    struct render_buf buf; /* header zeroed below; small is scratch */
    int foreign = 0; /* an environment value, which may not be UTF-8, was spliced in */
    json_t *out;

    buf.data = NULL;
    buf.len = buf.cap = 0;
    buf.failed = 0;
    for (size_t i = 0; i < node->n; i++) {
        const struct piece *piece = &node->u.pieces[i];

        if (piece->kind == PIECE_TEXT) {
            render_buf_append(&buf, piece->text, piece->len);
        } else if (piece->kind == PIECE_STANDARD) {
            int owned;
            json_t *value = render_tmpl_lookup(ctx->slots, &piece->path, &owned);

            if (value)
                render_pytext_append(&buf, value, 1);
            if (owned)
                json_decref(value);
        } else {
            const char *value = ctx->environ_lookup(piece->text, ctx->environ_arg);

            if (value) {
                render_buf_append(&buf, value, strlen(value));
                foreign = 1;
            }
        }
    }
    if (buf.failed) {
        render_buf_free(&buf);
        render_errf(ctx->err, ctx->errlen,
                    "rendered string exceeds %zu bytes or memory is exhausted",
                    (size_t)RENDER_MAX_TEXT);
        return NULL;
    }
    /* Only environment text can bring invalid UTF-8 (see render_apply.c). */
    out = foreign ? json_stringn(buf.data ? buf.data : "", buf.len)
                  : json_stringn_nocheck(buf.data ? buf.data : "", buf.len);
    render_buf_free(&buf);
    if (!out)
        render_errf(ctx->err, ctx->errlen, "rendered string is not valid UTF-8 or memory is exhausted");
    return out;
}

/* Lists the block keys of a rendered value that sits at depth in the
 * template's job_configuration (one level deeper in the configuration). */
static int list_blocks(const struct apply_ctx *ctx, const json_t *value, int depth)
{
    if (!ctx->blocks || !value || render_is_plain(value))
        return 0;
    if (render_collect_blocks_into(value, ctx->blocks, ctx->seen, depth + 1) == 0)
        return 0;
    render_errf(ctx->err, ctx->errlen, "out of memory");
    return -1;
}

static int apply_node(const struct apply_ctx *ctx, const struct node *node, int depth,
                      json_t **out);

static int apply_object(const struct apply_ctx *ctx, const struct node *node, int depth,
                        json_t **out)
{
    struct apply_ctx inner = *ctx;
    json_t *result = json_object();

    /* Whether an object with "$ref" is a block reference depends on its
     * rendered members, so its keys are listed from the result as a whole. */
    if (node->dollar_ref)
        inner.blocks = NULL;
    if (!result)
        goto nomem;
    for (size_t i = 0; i < node->n; i++) {
        const struct node *child = &node->u.children[i];
        json_t *rendered;

        if (apply_node(&inner, child, depth + 1, &rendered) < 0) {
            json_decref(result);
            return -1;
        }
        if (rendered &&
            json_object_setn_new_nocheck(result, child->key, child->key_len, rendered) < 0) {
            json_decref(result);
            goto nomem;
        }
    }
    if (node->dollar_ref && list_blocks(ctx, result, depth) < 0) {
        json_decref(result);
        return -1;
    }
    *out = result;
    return 0;

nomem:
    render_errf(ctx->err, ctx->errlen, "out of memory");
    return -1;
}

static int apply_array(const struct apply_ctx *ctx, const struct node *node, int depth,
                       json_t **out)
{
    json_t *result = json_array();

    if (!result)
        goto nomem;
    for (size_t i = 0; i < node->n; i++) {
        json_t *rendered;

        if (apply_node(ctx, &node->u.children[i], depth + 1, &rendered) < 0) {
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

nomem:
    render_errf(ctx->err, ctx->errlen, "out of memory");
    return -1;
}

/* Renders a compiled node at depth into *out (NULL when a whole-string
 * placeholder is unset) and lists its block keys.  Returns 0 or -1 with
 * err. */
static int apply_node(const struct apply_ctx *ctx, const struct node *node, int depth,
                      json_t **out)
{
    json_t *value;
    int owned;

    *out = NULL;
    switch (node->kind) {
    case NODE_LITERAL:
        *out = render_copy(node->value);
        if (!*out)
            break;
        return node->may_ref ? list_blocks(ctx, *out, depth) : 0;
    case NODE_WHOLE:
        value = render_tmpl_lookup(ctx->slots, &node->u.path, &owned);
        if (!value)
            return 0;
        *out = render_copy(value);
        if (owned)
            json_decref(value);
        if (!*out)
            break;
        return list_blocks(ctx, *out, depth);
    case NODE_INLINE:
        *out = apply_inline(ctx, node);
        return *out ? list_blocks(ctx, *out, depth) : -1;
    case NODE_OBJECT:
        return apply_object(ctx, node, depth, out);
    case NODE_ARRAY:
        return apply_array(ctx, node, depth, out);
    }
    render_errf(ctx->err, ctx->errlen, "out of memory");
    return -1;
}

/* render_apply_item for template values outside the compiled tree, with
 * the block keys listed. */
static int apply_uncompiled(const struct apply_ctx *ctx, const json_t *value, int depth,
                            json_t **out)
{
    if (render_apply_item(value, ctx->values, ctx->tmpl->properties, ctx->environ_lookup,
                          ctx->environ_arg, depth, out, ctx->err, ctx->errlen) < 0)
        return -1;
    return list_blocks(ctx, *out, depth);
}

/* The template value of key in layers (the last one holding it), or NULL. */
const json_t *render_tmpl_later_value(const json_t *const *layers, size_t n, const char *key,
                                 size_t key_len)
{
    for (size_t j = n; j-- > 0;) {
        const json_t *found = json_object_getn(layers[j], key, key_len);

        if (found)
            return found;
    }
    return NULL;
}

int render_tmpl_seen_before(const json_t *const *layers, size_t n, const char *key, size_t key_len)
{
    for (size_t j = 0; j < n; j++)
        if (json_object_getn(layers[j], key, key_len))
            return 1;
    return 0;
}

/* One member of the env union.  The template's own member renders
 * compiled, or is copied when the template's env is literal.  Members from
 * the schema default or the job variables render with render_apply_item. */
static int apply_env_member(const struct apply_ctx *ctx, const struct node *compiled, size_t k,
                            const json_t *item, json_t **out)
{
    if (compiled && compiled->kind == NODE_OBJECT)
        return apply_node(ctx, &compiled->u.children[k], 1, out);
    if (compiled) {
        *out = render_copy(item);
        if (*out)
            return list_blocks(ctx, *out, 1);
        render_errf(ctx->err, ctx->errlen, "out of memory");
        return -1;
    }
    return apply_uncompiled(ctx, item, 1, out);
}

/* Python's dict union of the env layers, rendered: each key at its first
 * position with the value of its last layer, unset values dropped.
 * compiled is the template's env when it is layer 0, else NULL. */
/* For each member of the template's env (layer 0), the value of the last
 * later layer with its key, or NULL: one lookup per member of the later
 * layers, which come from job variables and defaults and are small. */
static const json_t **find_overrides(const struct apply_ctx *ctx,
                                     const struct render_env_layers *env, const json_t **small,
                                     size_t small_count)
{
    size_t n = json_object_size(env->layer[0]);
    const json_t **found = n <= small_count ? small : calloc(n, sizeof(*found));

    if (!found)
        return NULL;
    if (found == small)
        memset(small, 0, n * sizeof(*found));
    for (size_t j = 1; j < env->n; j++) {
        const char *key;
        json_t *value;
        void *iter;

        RENDER_OBJECT_FOREACH((json_t *)env->layer[j], iter, key, value) {
            json_t *position = json_object_getn(ctx->tmpl->env_index, key,
                                                json_object_iter_key_len(iter));

            if (position)
                found[json_integer_value(position)] = value;
        }
    }
    return found;
}

static int apply_env_union(const struct apply_ctx *ctx, const struct node *compiled,
                           const struct render_env_layers *env, json_t **out)
{
    struct apply_ctx inner = *ctx;
    const json_t *small_overrides[64];
    const json_t **overrides = NULL;
    json_t *result = json_object();
    int dollar_ref = 0;

    *out = NULL;
    if (!result)
        goto nomem;
    if (compiled) {
        overrides = find_overrides(ctx, env, small_overrides,
                                   sizeof(small_overrides) / sizeof(small_overrides[0]));
        if (!overrides)
            goto nomem;
    }
    /* As in apply_object: a union with "$ref" is listed as a whole. */
    for (size_t i = 0; i < env->n; i++)
        dollar_ref |= json_object_getn(env->layer[i], "$ref", 4) != NULL;
    if (dollar_ref)
        inner.blocks = NULL;
    for (size_t i = 0; i < env->n; i++) {
        const char *key;
        json_t *item;
        void *iter;
        size_t k = 0;

        RENDER_OBJECT_FOREACH((json_t *)env->layer[i], iter, key, item) {
            size_t key_len = json_object_iter_key_len(iter);
            const json_t *later;
            json_t *rendered;
            int rc;

            if (i > 0 && render_tmpl_seen_before(env->layer, i, key, key_len))
                continue;
            if (i == 0 && overrides)
                later = overrides[k];
            else
                later = render_tmpl_later_value(env->layer + i + 1, env->n - i - 1, key, key_len);
            if (later)
                rc = apply_env_member(&inner, NULL, 0, later, &rendered);
            else
                rc = apply_env_member(&inner, i == 0 ? compiled : NULL, k, item, &rendered);
            k++;
            if (rc < 0)
                goto fail;
            if (rendered && json_object_setn_new_nocheck(result, key, key_len, rendered) < 0)
                goto nomem;
        }
    }
    if (dollar_ref && list_blocks(ctx, result, 0) < 0)
        goto fail;
    if (overrides != small_overrides)
        free(overrides);
    *out = result;
    return 0;

nomem:
    render_errf(ctx->err, ctx->errlen, "out of memory");
fail:
    if (overrides != small_overrides)
        free(overrides);
    json_decref(result);
    return -1;
}

/* The env member: one layer renders as is, several as their union. */
static int apply_env(const struct apply_ctx *ctx, const struct render_env_layers *env,
                     json_t *result)
{
    const struct node *field = ctx->tmpl->env_field;
    const struct node *compiled = NULL;
    json_t *rendered;
    int rc;

    /* The compiled env lines up with layer 0 only when layer 0 is the
     * template's env object. */
    if (field && env->layer[0] == field->value && json_is_object(field->value))
        compiled = field;
    if (env->n == 1 && field && env->layer[0] == field->value)
        rc = apply_node(ctx, field, 0, &rendered);
    else if (env->n == 1)
        rc = apply_uncompiled(ctx, env->layer[0], 0, &rendered);
    else
        rc = apply_env_union(ctx, compiled, env, &rendered);
    if (rc < 0)
        return -1;
    if (rendered && json_object_setn_new_nocheck(result, "env", 3, rendered) < 0) {
        render_errf(ctx->err, ctx->errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Points each slot at the job variable of its name: one lookup per job
 * variable instead of one per placeholder. */
int render_tmpl_fill_slots(const struct render_template *tmpl, const json_t *vars, json_t **small,
                      size_t small_count, json_t ***slots)
{
    const char *key;
    json_t *value;
    void *iter;

    *slots = tmpl->nslots <= small_count ? small : calloc(tmpl->nslots, sizeof(json_t *));
    if (!*slots)
        return -1;
    if (*slots == small)
        memset(small, 0, tmpl->nslots * sizeof(json_t *));
    RENDER_OBJECT_FOREACH((json_t *)vars, iter, key, value) {
        json_t *slot = json_object_getn(tmpl->names, key, json_object_iter_key_len(iter));

        if (slot)
            (*slots)[json_integer_value(slot)] = value;
    }
    return 0;
}

/* Lists the block keys of the whole configuration, for a template whose
 * job_configuration has a "$ref" key: collect_blocks would take the
 * configuration itself for a reference when its "$ref" renders as one. */
static int list_config_blocks(const json_t *config, json_t **blocks, char *err, size_t errlen)
{
    json_decref(*blocks);
    *blocks = render_collect_blocks(config);
    if (*blocks)
        return 0;
    render_errf(err, errlen, "out of memory");
    return -1;
}

json_t *render_template_apply(const struct render_template *tmpl, const json_t *job_vars,
                              render_getenv_fn environ_lookup, void *environ_arg,
                              json_t **blocks, char *err, size_t errlen)
{
    struct apply_ctx ctx = {
        .tmpl = tmpl,
        .environ_lookup = environ_lookup ? environ_lookup : default_getenv,
        .environ_arg = environ_arg,
        .err = err,
        .errlen = errlen,
    };
    const json_t *vars_env;
    struct render_env_layers env;
    json_t *small_slots[64];
    json_t *vars = NULL;
    json_t *result = NULL;
    json_t *list = NULL;
    int config_ref = json_object_getn(tmpl->job_config, "$ref", 4) != NULL;

    if (blocks)
        *blocks = NULL;
    if (job_vars && !json_is_null(job_vars) && !json_is_object(job_vars)) {
        render_errf(err, errlen, "job variables must be an object, not %s",
                    render_type_name(job_vars));
        return NULL;
    }
    if (tmpl->properties_error) {
        render_errf(err, errlen, "%s", tmpl->properties_error);
        return NULL;
    }

    /* Prefect's `variables`: the defaults updated with the job variables
     * (dotted keys expanded); the compiled paths hold the defaults. */
    vars = render_expand_dotted(job_vars, err, errlen);
    if (!vars)
        return NULL;
    ctx.values = vars;
    if (blocks && !config_ref) {
        ctx.blocks = list = json_array();
        ctx.seen = json_object();
        if (!ctx.blocks || !ctx.seen) {
            render_errf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (render_tmpl_fill_slots(tmpl, vars, small_slots, sizeof(small_slots) / sizeof(small_slots[0]),
                   &ctx.slots) < 0) {
        render_errf(err, errlen, "out of memory");
        goto fail;
    }

    vars_env = json_object_getn(vars, "env", 3);
    if (!vars_env)
        vars_env = tmpl->default_env;
    if (render_effective_env(json_object_getn(tmpl->job_config, "env", 3), tmpl->default_env,
                             vars_env, &env, err, errlen) < 0)
        goto fail;

    result = json_object();
    if (!result) {
        render_errf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < tmpl->nfields; i++) {
        const struct node *field = &tmpl->fields[i];
        json_t *rendered;

        if (field == tmpl->env_field) {
            if (apply_env(&ctx, &env, result) < 0)
                goto fail;
            continue;
        }
        if (apply_node(&ctx, field, 0, &rendered) < 0)
            goto fail;
        if (rendered &&
            json_object_setn_new_nocheck(result, field->key, field->key_len, rendered) < 0) {
            render_errf(err, errlen, "out of memory");
            goto fail;
        }
    }
    /* A default env seeds the key even when the template lacks it. */
    if (env.n && !tmpl->env_field && apply_env(&ctx, &env, result) < 0)
        goto fail;
    if (blocks && config_ref && list_config_blocks(result, &list, err, errlen) < 0)
        goto fail;
    json_decref(vars);
    json_decref(ctx.seen);
    if (ctx.slots != small_slots)
        free(ctx.slots);
    if (blocks)
        *blocks = list;
    return result;

fail:
    json_decref(result);
    json_decref(vars);
    json_decref(list);
    json_decref(ctx.seen);
    if (ctx.slots != small_slots)
        free(ctx.slots);
    return NULL;
}
