/*
 * JSON or YAML text to jansson values.  JSON goes through jansson itself;
 * YAML through libyaml's event parser, building the tree as events arrive.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "yamljson.h"

/* Caps that keep hostile input (deep nesting, alias bombs) bounded. */
#define MAX_DEPTH 2048
#define MAX_NODES ((size_t)4 * 1024 * 1024)
#define MAX_ANCHORS 4096

static void set_err(char *err, size_t errlen, const char *name, size_t line, size_t col,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void set_err(char *err, size_t errlen, const char *name, size_t line, size_t col,
                    const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s:%zu:%zu: %s", name, line, col, msg);
}

/* ---- JSON ---- */

static json_t *load_json(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *value = json_loadb(text, len, JSON_DECODE_ANY, &jerr);

    if (!value) {
        char detail[200];
        const char *hint = "";

        if (strstr(jerr.text, "too big"))
            hint = " (integers must fit in 64 bits)";
        else if (strstr(jerr.text, "overflow"))
            hint = " (numbers must be finite doubles)";
        snprintf(detail, sizeof(detail), "%s%s", jerr.text, hint);
        set_err(err, errlen, name, (size_t)(jerr.line > 0 ? jerr.line : 1),
                (size_t)(jerr.column > 0 ? jerr.column : 1), "invalid JSON: %s", detail);
    }
    return value;
}

/* ---- YAML scalars ---- */

static int all_digits(const char *s, const char *set)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!strchr(set, *s))
            return 0;
    return 1;
}

static int is_float_text(const char *s)
{
    const char *p = s;
    int digits = 0;

    if (*p == '+' || *p == '-')
        p++;
    while (*p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    }
    if (!digits)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

/* Types a plain scalar by the core schema.  Returns a new value, or NULL
 * with *problem set. */
static json_t *plain_scalar(const char *s, size_t len, const char **problem)
{
    *problem = NULL;
    if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
        strcmp(s, "NULL") == 0)
        return json_null();
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
        return json_true();
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
        return json_false();
    {
        const char *digits = s + (s[0] == '+' || s[0] == '-');
        int base = 0;
        const char *body = NULL;

        if (all_digits(digits, "0123456789")) {
            base = 10;
            body = s;
        } else if (strncmp(s, "0o", 2) == 0 && all_digits(s + 2, "01234567")) {
            base = 8;
            body = s + 2;
        } else if (strncmp(s, "0x", 2) == 0 && all_digits(s + 2, "0123456789abcdefABCDEF")) {
            base = 16;
            body = s + 2;
        }
        if (base) {
            char *end;
            long long v;

            errno = 0;
            v = strtoll(body, &end, base);
            if (errno == ERANGE) {
                *problem = "integer does not fit in 64 bits";
                return NULL;
            }
            return json_integer((json_int_t)v);
        }
    }
    if (is_float_text(s)) {
        double v = strtod(s, NULL);
        if (!isfinite(v)) {
            *problem = "number is out of range for a double";
            return NULL;
        }
        return json_real(v);
    }
    if (strcmp(s, ".inf") == 0 || strcmp(s, "+.inf") == 0 || strcmp(s, "-.inf") == 0 ||
        strcmp(s, ".Inf") == 0 || strcmp(s, ".INF") == 0 || strcmp(s, ".nan") == 0 ||
        strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0 || strcmp(s, "-.Inf") == 0 ||
        strcmp(s, "-.INF") == 0 || strcmp(s, "+.Inf") == 0 || strcmp(s, "+.INF") == 0) {
        *problem = "infinite and NaN numbers cannot be represented in JSON";
        return NULL;
    }
    return json_stringn(s, len);
}

/* ---- YAML tree building ---- */

struct frame {
    json_t *node;     /* object or array under construction */
    char *key;        /* pending mapping key, NULL when expecting one */
    char *anchor;
};

struct anchor {
    char *name;
    json_t *node;
};

struct builder {
    const char *name;
    char *err;
    size_t errlen;
    struct frame stack[MAX_DEPTH + 1];
    int depth;
    json_t *root;
    int documents;
    struct anchor anchors[MAX_ANCHORS];
    size_t nanchors;
    size_t nodes;
};

static size_t count_nodes(const json_t *v)
{
    size_t n = 1;
    const char *key;
    json_t *item;
    size_t i;

    if (json_is_object(v))
        json_object_foreach((json_t *)v, key, item)
            n += count_nodes(item);
    else if (json_is_array(v))
        json_array_foreach(v, i, item)
            n += count_nodes(item);
    return n;
}

static int add_anchor(struct builder *b, const char *name, json_t *node, const yaml_mark_t *mark)
{
    for (size_t i = 0; i < b->nanchors; i++) {
        if (strcmp(b->anchors[i].name, name) == 0) {
            json_decref(b->anchors[i].node);
            b->anchors[i].node = json_incref(node);
            return 0;
        }
    }
    if (b->nanchors >= MAX_ANCHORS) {
        set_err(b->err, b->errlen, b->name, mark->line + 1, mark->column + 1,
                "too many anchors");
        return -1;
    }
    b->anchors[b->nanchors].name = strdup(name);
    if (!b->anchors[b->nanchors].name)
        return -1;
    b->anchors[b->nanchors].node = json_incref(node);
    b->nanchors++;
    return 0;
}

/* Attaches a finished value to its parent (or makes it the root). */
static int attach(struct builder *b, json_t *value, const yaml_mark_t *mark)
{
    struct frame *top;

    b->nodes++;
    if (b->nodes > MAX_NODES) {
        json_decref(value);
        set_err(b->err, b->errlen, b->name, mark->line + 1, mark->column + 1,
                "document is too large (more than 4194304 values after alias expansion)");
        return -1;
    }
    if (b->depth == 0) {
        if (b->root) {
            json_decref(value);
            set_err(b->err, b->errlen, b->name, mark->line + 1, mark->column + 1,
                    "unexpected second value");
            return -1;
        }
        b->root = value;
        return 0;
    }
    top = &b->stack[b->depth];
    if (json_is_array(top->node))
        return json_array_append_new(top->node, value);
    /* on_scalar and on_alias take keys, and on_start rejects a container
     * in key position, so a mapping here always has its key. */
    if (!top->key) {
        json_decref(value);
        set_err(b->err, b->errlen, b->name, mark->line + 1, mark->column + 1,
                "mapping key missing");
        return -1;
    }
    if (json_object_get(top->node, top->key)) {
        set_err(b->err, b->errlen, b->name, mark->line + 1, mark->column + 1,
                "duplicate key \"%s\"", top->key);
        json_decref(value);
        return -1;
    }
    if (json_object_set_new(top->node, top->key, value) < 0) {
        set_err(b->err, b->errlen, b->name, mark->line + 1, mark->column + 1,
                "invalid key or out of memory");
        return -1;
    }
    free(top->key);
    top->key = NULL;
    return 0;
}

static int expecting_key(const struct builder *b)
{
    return b->depth > 0 && json_is_object(b->stack[b->depth].node) && !b->stack[b->depth].key;
}

static json_t *scalar_value(struct builder *b, const yaml_event_t *ev)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *problem = NULL;
    json_t *value;

    if (memchr(text, '\0', len)) {
        problem = "strings may not contain NUL characters";
        goto bad;
    }
    if (tag && strcmp(tag, "!") != 0) {
        if (strcmp(tag, YAML_STR_TAG) == 0)
            return json_stringn(text, len);
        if (strcmp(tag, YAML_NULL_TAG) != 0 && strcmp(tag, YAML_BOOL_TAG) != 0 &&
            strcmp(tag, YAML_INT_TAG) != 0 && strcmp(tag, YAML_FLOAT_TAG) != 0) {
            set_err(b->err, b->errlen, b->name, ev->start_mark.line + 1, ev->start_mark.column + 1,
                    "unsupported tag %s", tag);
            return NULL;
        }
        value = plain_scalar(text, len, &problem);
        if (!value)
            goto bad;
        return value;
    }
    if (tag || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return json_stringn(text, len);
    value = plain_scalar(text, len, &problem);
    if (value)
        return value;
bad:
    set_err(b->err, b->errlen, b->name, ev->start_mark.line + 1, ev->start_mark.column + 1,
            "invalid value: %s", problem ? problem : "out of memory");
    return NULL;
}

static int on_scalar(struct builder *b, const yaml_event_t *ev)
{
    json_t *value;

    if (expecting_key(b)) {
        const char *text = (const char *)ev->data.scalar.value;
        size_t len = ev->data.scalar.length;

        if (memchr(text, '\0', len)) {
            set_err(b->err, b->errlen, b->name, ev->start_mark.line + 1,
                    ev->start_mark.column + 1, "keys may not contain NUL characters");
            return -1;
        }
        if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(text, "<<") == 0) {
            set_err(b->err, b->errlen, b->name, ev->start_mark.line + 1,
                    ev->start_mark.column + 1, "merge keys (<<) are not supported");
            return -1;
        }
        b->stack[b->depth].key = strndup(text, len);
        return b->stack[b->depth].key ? 0 : -1;
    }
    value = scalar_value(b, ev);
    if (!value)
        return -1;
    if (ev->data.scalar.anchor &&
        add_anchor(b, (const char *)ev->data.scalar.anchor, value, &ev->start_mark) < 0) {
        json_decref(value);
        return -1;
    }
    return attach(b, value, &ev->start_mark);
}

static int on_alias(struct builder *b, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;

    for (size_t i = b->nanchors; i-- > 0;) {
        if (strcmp(b->anchors[i].name, name) != 0)
            continue;
        if (expecting_key(b)) {
            if (!json_is_string(b->anchors[i].node)) {
                set_err(b->err, b->errlen, b->name, ev->start_mark.line + 1,
                        ev->start_mark.column + 1, "alias *%s used as a key is not a string",
                        name);
                return -1;
            }
            b->stack[b->depth].key = strdup(json_string_value(b->anchors[i].node));
            return b->stack[b->depth].key ? 0 : -1;
        }
        b->nodes += count_nodes(b->anchors[i].node);
        if (b->nodes > MAX_NODES) {
            set_err(b->err, b->errlen, b->name, ev->start_mark.line + 1,
                    ev->start_mark.column + 1,
                    "document is too large (more than 4194304 values after alias expansion)");
            return -1;
        }
        return attach(b, json_deep_copy(b->anchors[i].node), &ev->start_mark);
    }
    set_err(b->err, b->errlen, b->name, ev->start_mark.line + 1, ev->start_mark.column + 1,
            "unknown alias *%s", name);
    return -1;
}

static int on_start(struct builder *b, const yaml_event_t *ev, int mapping)
{
    struct frame *f;
    const char *anchor = (const char *)(mapping ? ev->data.mapping_start.anchor
                                                : ev->data.sequence_start.anchor);

    if (expecting_key(b)) {
        set_err(b->err, b->errlen, b->name, ev->start_mark.line + 1, ev->start_mark.column + 1,
                "mapping keys must be scalars");
        return -1;
    }
    if (b->depth >= MAX_DEPTH) {
        set_err(b->err, b->errlen, b->name, ev->start_mark.line + 1, ev->start_mark.column + 1,
                "nesting is deeper than 2048 levels");
        return -1;
    }
    b->depth++;
    f = &b->stack[b->depth];
    f->node = mapping ? json_object() : json_array();
    f->key = NULL;
    f->anchor = anchor ? strdup(anchor) : NULL;
    return f->node ? 0 : -1;
}

static int on_end(struct builder *b, const yaml_event_t *ev)
{
    struct frame *f = &b->stack[b->depth];
    json_t *node = f->node;
    int rc = 0;

    if (f->anchor)
        rc = add_anchor(b, f->anchor, node, &ev->start_mark);
    free(f->anchor);
    free(f->key);
    f->anchor = f->key = NULL;
    f->node = NULL;
    b->depth--;
    if (rc < 0) {
        json_decref(node);
        return -1;
    }
    return attach(b, node, &ev->start_mark);
}

static void builder_free(struct builder *b)
{
    for (int d = 1; d <= b->depth; d++) {
        json_decref(b->stack[d].node);
        free(b->stack[d].key);
        free(b->stack[d].anchor);
    }
    b->depth = 0;
    for (size_t i = 0; i < b->nanchors; i++) {
        free(b->anchors[i].name);
        json_decref(b->anchors[i].node);
    }
    b->nanchors = 0;
}

json_t *yamljson_load_yaml(const char *text, size_t len, const char *name, char *err,
                           size_t errlen)
{
    yaml_parser_t parser;
    struct builder *b = calloc(1, sizeof(*b));
    json_t *result = NULL;
    int done = 0;

    if (!b) {
        set_err(err, errlen, name, 1, 1, "out of memory");
        return NULL;
    }
    b->name = name;
    b->err = err;
    b->errlen = errlen;
    if (!yaml_parser_initialize(&parser)) {
        free(b);
        set_err(err, errlen, name, 1, 1, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

    while (!done) {
        yaml_event_t ev;
        int rc = 0;

        if (!yaml_parser_parse(&parser, &ev)) {
            char detail[200];

            snprintf(detail, sizeof(detail), "%s%s%s",
                     parser.problem ? parser.problem : "syntax error",
                     parser.context ? " " : "", parser.context ? parser.context : "");
            set_err(err, errlen, name, parser.problem_mark.line + 1,
                    parser.problem_mark.column + 1, "invalid YAML: %s", detail);
            goto fail;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++b->documents > 1) {
                set_err(err, errlen, name, ev.start_mark.line + 1, ev.start_mark.column + 1,
                        "only one YAML document is allowed");
                rc = -1;
            }
            break;
        case YAML_SCALAR_EVENT:
            rc = on_scalar(b, &ev);
            break;
        case YAML_ALIAS_EVENT:
            rc = on_alias(b, &ev);
            break;
        case YAML_MAPPING_START_EVENT:
            rc = on_start(b, &ev, 1);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = on_start(b, &ev, 0);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            rc = on_end(b, &ev);
            break;
        default:
            break;
        }
        if (rc < 0 && err && errlen && !err[0])
            set_err(err, errlen, name, ev.start_mark.line + 1, ev.start_mark.column + 1,
                    "out of memory");
        yaml_event_delete(&ev);
        if (rc < 0)
            goto fail;
    }
    if (!b->root) {
        set_err(err, errlen, name, 1, 1, "the file is empty");
        goto fail;
    }
    result = b->root;
    b->root = NULL;

fail:
    json_decref(b->root);
    builder_free(b);
    free(b);
    yaml_parser_delete(&parser);
    return result;
}

json_t *yamljson_loads(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
    size_t i = 0;

    if (err && errlen)
        err[0] = '\0';
    if (len > YAMLJSON_MAX_BYTES) {
        set_err(err, errlen, name, 1, 1, "the file is larger than 64 MiB");
        return NULL;
    }
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    if (i < len && (text[i] == '{' || text[i] == '[')) {
        json_t *value = load_json(text, len, name, err, errlen);
        char yerr[8];
        json_t *yaml;

        if (value)
            return value;
        /* Flow-style YAML also starts with a bracket; keep the JSON error
         * when YAML cannot read it either. */
        yerr[0] = '\0';
        yaml = yamljson_load_yaml(text, len, name, yerr, sizeof(yerr));
        if (yaml && err && errlen)
            err[0] = '\0';
        return yaml;
    }
    return yamljson_load_yaml(text, len, name, err, errlen);
}

json_t *yamljson_load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0;
    size_t cap = 0;
    json_t *value = NULL;
    size_t plen = strlen(path);

    if (err && errlen)
        err[0] = '\0';
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t n;

        if (len == cap) {
            char *grown;

            if (cap >= YAMLJSON_MAX_BYTES + 1) {
                snprintf(err, errlen, "%s: the file is larger than 64 MiB", path);
                goto done;
            }
            cap = cap ? cap * 2 : 65536;
            if (cap > YAMLJSON_MAX_BYTES + 1)
                cap = YAMLJSON_MAX_BYTES + 1;
            grown = realloc(text, cap + 1);
            if (!grown) {
                snprintf(err, errlen, "%s: out of memory", path);
                goto done;
            }
            text = grown;
        }
        n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
                goto done;
            }
            break;
        }
    }
    if (len > YAMLJSON_MAX_BYTES) {
        snprintf(err, errlen, "%s: the file is larger than 64 MiB", path);
        goto done;
    }
    if (plen >= 5 && strcmp(path + plen - 5, ".json") == 0)
        value = load_json(text ? text : "", len, path, err, errlen);
    else
        value = yamljson_loads(text ? text : "", len, path, err, errlen);

done:
    free(text);
    fclose(f);
    return value;
}
