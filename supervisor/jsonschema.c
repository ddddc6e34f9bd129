/*
 * render_validate: the job-variable check Prefect's server runs when a flow
 * run is created (validate_job_variables_for_deployment_flow_run).
 *
 * Values = every property default that validates on its own (defaults that
 * do not are dropped, and then "required" is ignored), shallow-updated with
 * the job variables.  The schema is preprocessed as Prefect does
 * (allow_none_with_default): a property with "type" that is not required
 * becomes anyOf [{type}, {type: null}], list-form "items" becomes
 * "prefixItems", block definitions also accept {"$ref": ...}.
 *
 * The validator covers the JSON Schema 2020-12 keywords job templates use:
 * type, enum, const, anyOf, oneOf, allOf, not, if/then/else, $ref to a
 * local JSON pointer (#/definitions/..., #/$defs/...), properties,
 * patternProperties, additionalProperties, required, min/maxProperties,
 * propertyNames, dependentRequired, items, prefixItems, min/maxItems,
 * uniqueItems, contains, min/maxLength, pattern, minimum, maximum,
 * exclusiveMinimum, exclusiveMaximum, multipleOf.  "format" is not checked
 * (the server's check does not pass a format checker).
 * NOTE: "pattern" and "patternProperties" use POSIX extended regular
 * expressions, which agree with Python's re for common patterns only;
 * unevaluatedProperties/unevaluatedItems are ignored.
 */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

#define MAX_REF_DEPTH 256

struct vctx {
    const json_t *root;
    char *err;
    size_t errlen;
    int quiet;        /* inside anyOf/oneOf/not: no message */
    int depth;
    char path[512];   /* JSON path of the instance, without the leading "$." */
    size_t pathlen;
};

/* Result codes of the checks. */
#define VALID 0
#define INVALID 1
#define SCHEMA_ERROR -1

static int check(struct vctx *v, const json_t *schema, const json_t *inst);

static void fail(struct vctx *v, const json_t *inst, const char *fmt, const char *detail)
{
    struct render_buf buf = {0};
    char excerpt[96];

    if (v->quiet)
        return;
    render_pytext_append(&buf, inst, 0);
    render_excerpt(buf.data ? buf.data : "", excerpt, sizeof(excerpt));
    render_buf_free(&buf);
    if (v->pathlen == 0)
        render_errf(v->err, v->errlen, "Validation failed. Failure reason: %s %s%s", excerpt, fmt,
                    detail ? detail : "");
    else
        render_errf(v->err, v->errlen, "Validation failed for field '%s'. Failure reason: %s %s%s",
                    v->path, excerpt, fmt, detail ? detail : "");
}

static size_t path_push_key(struct vctx *v, const char *key)
{
    size_t saved = v->pathlen;
    int n = snprintf(v->path + v->pathlen, sizeof(v->path) - v->pathlen, "%s%s",
                     v->pathlen ? "." : "", key);
    if (n > 0)
        v->pathlen += (size_t)n < sizeof(v->path) - v->pathlen ? (size_t)n
                                                               : sizeof(v->path) - v->pathlen - 1;
    return saved;
}

static size_t path_push_index(struct vctx *v, size_t index)
{
    size_t saved = v->pathlen;
    int n = snprintf(v->path + v->pathlen, sizeof(v->path) - v->pathlen, "[%zu]", index);
    if (n > 0)
        v->pathlen += (size_t)n < sizeof(v->path) - v->pathlen ? (size_t)n
                                                               : sizeof(v->path) - v->pathlen - 1;
    return saved;
}

static void path_pop(struct vctx *v, size_t saved)
{
    v->pathlen = saved;
    v->path[saved] = '\0';
}

static int is_number(const json_t *x)
{
    return json_is_integer(x) || json_is_real(x);
}

static double number_value(const json_t *x)
{
    return json_is_integer(x) ? (double)json_integer_value(x) : json_real_value(x);
}

/* Equality as jsonschema compares: 1 == 1.0, but booleans never equal numbers. */
static int values_equal(const json_t *a, const json_t *b)
{
    if (is_number(a) && is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return number_value(a) == number_value(b);
    }
    if (json_typeof(a) != json_typeof(b))
        return 0;
    if (json_is_object(a)) {
        const char *key;
        json_t *item;

        if (json_object_size(a) != json_object_size(b))
            return 0;
        json_object_foreach((json_t *)a, key, item) {
            json_t *other = json_object_get(b, key);
            if (!other || !values_equal(item, other))
                return 0;
        }
        return 1;
    }
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!values_equal(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    if (json_is_string(a))
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    return 1; /* true, false, null */
}

static int type_matches(const char *type, const json_t *inst)
{
    if (strcmp(type, "null") == 0)
        return json_is_null(inst);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(inst);
    if (strcmp(type, "object") == 0)
        return json_is_object(inst);
    if (strcmp(type, "array") == 0)
        return json_is_array(inst);
    if (strcmp(type, "string") == 0)
        return json_is_string(inst);
    if (strcmp(type, "number") == 0)
        return is_number(inst);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(inst) ||
               (json_is_real(inst) && json_real_value(inst) == floor(json_real_value(inst)));
    return -1;
}

static int check_type(struct vctx *v, const json_t *type, const json_t *inst)
{
    char expected[256] = "";

    if (json_is_string(type)) {
        int m = type_matches(json_string_value(type), inst);
        if (m < 0)
            goto bad;
        if (m)
            return VALID;
        snprintf(expected, sizeof(expected), "'%s'", json_string_value(type));
    } else if (json_is_array(type)) {
        size_t i;
        json_t *t;

        json_array_foreach(type, i, t) {
            int m;
            if (!json_is_string(t) || (m = type_matches(json_string_value(t), inst)) < 0)
                goto bad;
            if (m)
                return VALID;
            snprintf(expected + strlen(expected), sizeof(expected) - strlen(expected), "%s'%s'",
                     i ? ", " : "", json_string_value(t));
        }
    } else {
        goto bad;
    }
    fail(v, inst, "is not of type ", expected);
    return INVALID;

bad:
    render_errf(v->err, v->errlen, "invalid schema: unknown type in \"type\"");
    return SCHEMA_ERROR;
}

/* Resolves a local reference ("#", "#/definitions/x"). */
static const json_t *resolve_ref(struct vctx *v, const char *ref)
{
    const json_t *node = v->root;
    const char *p;

    if (ref[0] != '#')
        return NULL;
    p = ref + 1;
    if (*p == '\0')
        return node;
    if (*p != '/')
        return NULL;
    while (*p == '/') {
        char token[256];
        size_t n = 0;

        p++;
        while (*p && *p != '/' && n + 1 < sizeof(token)) {
            if (p[0] == '~' && p[1] == '0') {
                token[n++] = '~';
                p += 2;
            } else if (p[0] == '~' && p[1] == '1') {
                token[n++] = '/';
                p += 2;
            } else if (p[0] == '%' && p[1] && p[2]) {
                char hex[3] = {p[1], p[2], 0};
                token[n++] = (char)strtol(hex, NULL, 16);
                p += 3;
            } else {
                token[n++] = *p++;
            }
        }
        token[n] = '\0';
        if (json_is_object(node)) {
            node = json_object_get(node, token);
        } else if (json_is_array(node)) {
            char *end;
            long index = strtol(token, &end, 10);
            node = *end || index < 0 ? NULL : json_array_get(node, (size_t)index);
        } else {
            node = NULL;
        }
        if (!node)
            return NULL;
    }
    return node;
}

/* Runs a sub-check without messages; returns VALID, INVALID or SCHEMA_ERROR. */
static int check_quiet(struct vctx *v, const json_t *schema, const json_t *inst)
{
    int saved = v->quiet;
    int rc;

    v->quiet = 1;
    rc = check(v, schema, inst);
    v->quiet = saved;
    return rc;
}

static int regex_search(const char *pattern, const char *text, int *matched)
{
    regex_t re;

    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return -1;
    *matched = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return 0;
}

static size_t codepoints(const json_t *s)
{
    size_t count = 0;
    const char *text = json_string_value(s);

    for (size_t i = 0; i < json_string_length(s); i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80)
            count++;
    return count;
}

/* The simple type names a list of alternatives accepts, for messages. */
static void describe_alternatives(const json_t *list, char *out, size_t outlen)
{
    size_t i;
    json_t *alt;

    out[0] = '\0';
    json_array_foreach(list, i, alt) {
        json_t *t = json_object_get(alt, "type");
        if (!json_is_string(t)) {
            out[0] = '\0';
            return;
        }
        snprintf(out + strlen(out), outlen - strlen(out), "%s%s", i ? " or " : " (expected ",
                 json_string_value(t));
    }
    if (out[0])
        snprintf(out + strlen(out), outlen - strlen(out), ")");
}

static int check_combinators(struct vctx *v, const json_t *schema, const json_t *inst)
{
    json_t *kw;
    size_t i;
    json_t *sub;
    int rc;

    if ((kw = json_object_get(schema, "allOf"))) {
        if (!json_is_array(kw))
            goto bad;
        json_array_foreach(kw, i, sub)
            if ((rc = check(v, sub, inst)) != VALID)
                return rc;
    }
    if ((kw = json_object_get(schema, "anyOf"))) {
        int any = 0;
        char detail[128];

        if (!json_is_array(kw))
            goto bad;
        json_array_foreach(kw, i, sub) {
            rc = check_quiet(v, sub, inst);
            if (rc == SCHEMA_ERROR)
                return rc;
            if (rc == VALID) {
                any = 1;
                break;
            }
        }
        if (!any) {
            describe_alternatives(kw, detail, sizeof(detail));
            fail(v, inst, "is not valid under any of the given schemas", detail);
            return INVALID;
        }
    }
    if ((kw = json_object_get(schema, "oneOf"))) {
        int count = 0;

        if (!json_is_array(kw))
            goto bad;
        json_array_foreach(kw, i, sub) {
            rc = check_quiet(v, sub, inst);
            if (rc == SCHEMA_ERROR)
                return rc;
            count += rc == VALID;
        }
        if (count != 1) {
            fail(v, inst, count ? "is valid under more than one of the given schemas"
                                : "is not valid under any of the given schemas", NULL);
            return INVALID;
        }
    }
    if ((kw = json_object_get(schema, "not"))) {
        rc = check_quiet(v, kw, inst);
        if (rc == SCHEMA_ERROR)
            return rc;
        if (rc == VALID) {
            fail(v, inst, "should not be valid under the given schema", NULL);
            return INVALID;
        }
    }
    if ((kw = json_object_get(schema, "if"))) {
        const json_t *branch;

        rc = check_quiet(v, kw, inst);
        if (rc == SCHEMA_ERROR)
            return rc;
        branch = json_object_get(schema, rc == VALID ? "then" : "else");
        if (branch && (rc = check(v, branch, inst)) != VALID)
            return rc;
    }
    return VALID;

bad:
    render_errf(v->err, v->errlen, "invalid schema: anyOf, oneOf and allOf must be arrays");
    return SCHEMA_ERROR;
}

static int check_object(struct vctx *v, const json_t *schema, const json_t *inst)
{
    json_t *props = json_object_get(schema, "properties");
    json_t *patterns = json_object_get(schema, "patternProperties");
    json_t *additional = json_object_get(schema, "additionalProperties");
    json_t *kw;
    const char *key;
    json_t *item;
    size_t i;
    int rc;

    if ((kw = json_object_get(schema, "required")) && json_is_array(kw)) {
        json_array_foreach(kw, i, item) {
            if (json_is_string(item) && !json_object_get(inst, json_string_value(item))) {
                char detail[300];

                snprintf(detail, sizeof(detail), "'%s' is a required property",
                         json_string_value(item));
                if (!v->quiet)
                    render_errf(v->err, v->errlen, "Validation failed%s%s%s. Failure reason: %s",
                                v->pathlen ? " for field '" : "", v->pathlen ? v->path : "",
                                v->pathlen ? "'" : "", detail);
                return INVALID;
            }
        }
    }
    if ((kw = json_object_get(schema, "minProperties")) && json_is_integer(kw) &&
        (json_int_t)json_object_size(inst) < json_integer_value(kw)) {
        fail(v, inst, "does not have enough properties", NULL);
        return INVALID;
    }
    if ((kw = json_object_get(schema, "maxProperties")) && json_is_integer(kw) &&
        (json_int_t)json_object_size(inst) > json_integer_value(kw)) {
        fail(v, inst, "has too many properties", NULL);
        return INVALID;
    }
    if ((kw = json_object_get(schema, "dependentRequired")) && json_is_object(kw)) {
        const char *dkey;
        json_t *needs;

        json_object_foreach(kw, dkey, needs) {
            if (!json_object_get(inst, dkey) || !json_is_array(needs))
                continue;
            json_array_foreach(needs, i, item) {
                if (json_is_string(item) && !json_object_get(inst, json_string_value(item))) {
                    fail(v, inst, "is missing a property that another property depends on", NULL);
                    return INVALID;
                }
            }
        }
    }

    json_object_foreach((json_t *)inst, key, item) {
        int evaluated = 0;
        size_t saved = path_push_key(v, key);
        json_t *sub;

        if ((kw = json_object_get(schema, "propertyNames"))) {
            json_t *name = json_string(key);
            rc = name ? check(v, kw, name) : SCHEMA_ERROR;
            json_decref(name);
            if (rc != VALID) {
                path_pop(v, saved);
                return rc;
            }
        }
        if (json_is_object(props) && (sub = json_object_get(props, key))) {
            evaluated = 1;
            if ((rc = check(v, sub, item)) != VALID) {
                path_pop(v, saved);
                return rc;
            }
        }
        if (json_is_object(patterns)) {
            const char *pattern;
            json_t *psub;

            json_object_foreach(patterns, pattern, psub) {
                int matched;

                if (regex_search(pattern, key, &matched) < 0) {
                    path_pop(v, saved);
                    render_errf(v->err, v->errlen,
                                "invalid schema: patternProperties pattern \"%s\" is not a "
                                "supported regular expression", pattern);
                    return SCHEMA_ERROR;
                }
                if (!matched)
                    continue;
                evaluated = 1;
                if ((rc = check(v, psub, item)) != VALID) {
                    path_pop(v, saved);
                    return rc;
                }
            }
        }
        if (!evaluated && additional) {
            if (json_is_false(additional)) {
                path_pop(v, saved);
                {
                    char detail[300];
                    snprintf(detail, sizeof(detail),
                             "Additional properties are not allowed ('%s' was unexpected)", key);
                    if (!v->quiet)
                        render_errf(v->err, v->errlen, "Validation failed%s%s%s. Failure reason: %s",
                                    v->pathlen ? " for field '" : "", v->pathlen ? v->path : "",
                                    v->pathlen ? "'" : "", detail);
                }
                return INVALID;
            }
            if ((rc = check(v, additional, item)) != VALID) {
                path_pop(v, saved);
                return rc;
            }
        }
        path_pop(v, saved);
    }
    return VALID;
}

static int check_array(struct vctx *v, const json_t *schema, const json_t *inst)
{
    json_t *prefix = json_object_get(schema, "prefixItems");
    json_t *items = json_object_get(schema, "items");
    json_t *kw;
    size_t n = json_array_size(inst);
    size_t start = 0;
    size_t i;
    json_t *item;
    int rc;

    if ((kw = json_object_get(schema, "minItems")) && json_is_integer(kw) &&
        (json_int_t)n < json_integer_value(kw)) {
        fail(v, inst, "is too short", NULL);
        return INVALID;
    }
    if ((kw = json_object_get(schema, "maxItems")) && json_is_integer(kw) &&
        (json_int_t)n > json_integer_value(kw)) {
        fail(v, inst, "is too long", NULL);
        return INVALID;
    }
    if ((kw = json_object_get(schema, "uniqueItems")) && json_is_true(kw)) {
        for (i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (values_equal(json_array_get(inst, i), json_array_get(inst, j))) {
                    fail(v, inst, "has non-unique elements", NULL);
                    return INVALID;
                }
    }
    if (json_is_array(prefix)) {
        for (i = 0; i < n && i < json_array_size(prefix); i++) {
            size_t saved = path_push_index(v, i);
            rc = check(v, json_array_get(prefix, i), json_array_get(inst, i));
            path_pop(v, saved);
            if (rc != VALID)
                return rc;
        }
        start = json_array_size(prefix);
    }
    if (items && !json_is_array(items)) {
        for (i = start; i < n; i++) {
            size_t saved = path_push_index(v, i);
            rc = check(v, items, json_array_get(inst, i));
            path_pop(v, saved);
            if (rc != VALID)
                return rc;
        }
    }
    if ((kw = json_object_get(schema, "contains"))) {
        json_t *minc = json_object_get(schema, "minContains");
        json_t *maxc = json_object_get(schema, "maxContains");
        json_int_t count = 0;
        json_int_t min = json_is_integer(minc) ? json_integer_value(minc) : 1;

        json_array_foreach(inst, i, item) {
            rc = check_quiet(v, kw, item);
            if (rc == SCHEMA_ERROR)
                return rc;
            count += rc == VALID;
        }
        if (count < min || (json_is_integer(maxc) && count > json_integer_value(maxc))) {
            fail(v, inst, "does not contain enough (or contains too many) matching items", NULL);
            return INVALID;
        }
    }
    return VALID;
}

static int check_scalar(struct vctx *v, const json_t *schema, const json_t *inst)
{
    json_t *kw;

    if (json_is_string(inst)) {
        size_t len = codepoints(inst);

        if ((kw = json_object_get(schema, "minLength")) && json_is_integer(kw) &&
            (json_int_t)len < json_integer_value(kw)) {
            fail(v, inst, "is too short", NULL);
            return INVALID;
        }
        if ((kw = json_object_get(schema, "maxLength")) && json_is_integer(kw) &&
            (json_int_t)len > json_integer_value(kw)) {
            fail(v, inst, "is too long", NULL);
            return INVALID;
        }
        if ((kw = json_object_get(schema, "pattern")) && json_is_string(kw)) {
            int matched;

            if (regex_search(json_string_value(kw), json_string_value(inst), &matched) < 0) {
                render_errf(v->err, v->errlen,
                            "invalid schema: pattern \"%s\" is not a supported regular expression",
                            json_string_value(kw));
                return SCHEMA_ERROR;
            }
            if (!matched) {
                fail(v, inst, "does not match the pattern ", json_string_value(kw));
                return INVALID;
            }
        }
    }
    if (is_number(inst)) {
        double x = number_value(inst);

        if ((kw = json_object_get(schema, "minimum")) && is_number(kw) && x < number_value(kw)) {
            fail(v, inst, "is less than the minimum", NULL);
            return INVALID;
        }
        if ((kw = json_object_get(schema, "maximum")) && is_number(kw) && x > number_value(kw)) {
            fail(v, inst, "is greater than the maximum", NULL);
            return INVALID;
        }
        if ((kw = json_object_get(schema, "exclusiveMinimum")) && is_number(kw) &&
            x <= number_value(kw)) {
            fail(v, inst, "is less than or equal to the exclusive minimum", NULL);
            return INVALID;
        }
        if ((kw = json_object_get(schema, "exclusiveMaximum")) && is_number(kw) &&
            x >= number_value(kw)) {
            fail(v, inst, "is greater than or equal to the exclusive maximum", NULL);
            return INVALID;
        }
        if ((kw = json_object_get(schema, "multipleOf")) && is_number(kw) &&
            number_value(kw) > 0) {
            double q = x / number_value(kw);
            int ok = json_is_integer(inst) && json_is_integer(kw)
                         ? json_integer_value(inst) % json_integer_value(kw) == 0
                         : isfinite(q) && q == floor(q);
            if (!ok) {
                fail(v, inst, "is not a multiple of the given number", NULL);
                return INVALID;
            }
        }
    }
    return VALID;
}

static int check(struct vctx *v, const json_t *schema, const json_t *inst)
{
    json_t *kw;
    int rc;

    if (json_is_true(schema))
        return VALID;
    if (json_is_false(schema)) {
        fail(v, inst, "is not allowed here", NULL);
        return INVALID;
    }
    if (!json_is_object(schema)) {
        render_errf(v->err, v->errlen, "invalid schema: a schema must be an object or a boolean");
        return SCHEMA_ERROR;
    }
    if (v->depth > MAX_REF_DEPTH) {
        render_errf(v->err, v->errlen, "invalid schema: circular or too deep $ref chain");
        return SCHEMA_ERROR;
    }

    if ((kw = json_object_get(schema, "$ref"))) {
        const json_t *target;

        if (!json_is_string(kw) || !(target = resolve_ref(v, json_string_value(kw)))) {
            render_errf(v->err, v->errlen, "Validation failed. Failure reason: unresolvable "
                        "reference %s", json_is_string(kw) ? json_string_value(kw) : "(not a string)");
            return SCHEMA_ERROR;
        }
        v->depth++;
        rc = check(v, target, inst);
        v->depth--;
        if (rc != VALID)
            return rc;
    }
    if ((kw = json_object_get(schema, "type")) && (rc = check_type(v, kw, inst)) != VALID)
        return rc;
    if ((kw = json_object_get(schema, "enum"))) {
        size_t i;
        json_t *option;
        int found = 0;

        if (!json_is_array(kw)) {
            render_errf(v->err, v->errlen, "invalid schema: enum must be an array");
            return SCHEMA_ERROR;
        }
        json_array_foreach(kw, i, option)
            if (values_equal(option, inst))
                found = 1;
        if (!found) {
            struct render_buf buf = {0};
            char excerpt[120];

            render_pytext_append(&buf, kw, 0);
            render_excerpt(buf.data ? buf.data : "", excerpt, sizeof(excerpt));
            render_buf_free(&buf);
            fail(v, inst, "is not one of ", excerpt);
            return INVALID;
        }
    }
    if ((kw = json_object_get(schema, "const")) && !values_equal(kw, inst)) {
        fail(v, inst, "is not the expected constant value", NULL);
        return INVALID;
    }
    if ((rc = check_combinators(v, schema, inst)) != VALID)
        return rc;
    if (json_is_object(inst) && (rc = check_object(v, schema, inst)) != VALID)
        return rc;
    if (json_is_array(inst) && (rc = check_array(v, schema, inst)) != VALID)
        return rc;
    return check_scalar(v, schema, inst);
}

/* ---- Prefect's schema preprocessing ---- */

static int contains_string(const json_t *list, const char *name)
{
    size_t i;
    json_t *item;

    json_array_foreach(list, i, item)
        if (json_is_string(item) && strcmp(json_string_value(item), name) == 0)
            return 1;
    return 0;
}

static int process_properties(json_t *properties, const json_t *required, int depth)
{
    const char *key;
    json_t *schema;

    if (!json_is_object(properties) || depth > RENDER_MAX_DEPTH)
        return 0;
    json_object_foreach(properties, key, schema) {
        json_t *type;
        json_t *items;

        if (!json_is_object(schema))
            continue;
        type = json_object_get(schema, "type");
        if (!(json_is_array(required) && contains_string(required, key)) && type &&
            !(json_is_string(type) && strcmp(json_string_value(type), "null") == 0)) {
            json_t *any = json_pack("[{sO}{ss}]", "type", type, "type", "null");

            if (!any || json_object_set_new(schema, "anyOf", any) < 0)
                return -1;
            json_object_del(schema, "type");
        }
        items = json_object_get(schema, "items");
        if (json_is_array(items) && json_array_size(items) > 0 &&
            !render_truthy(json_object_get(schema, "prefixItems"))) {
            if (json_object_set(schema, "prefixItems", items) < 0)
                return -1;
            json_object_del(schema, "items");
        }
        if (json_object_get(schema, "properties") &&
            process_properties(json_object_get(schema, "properties"),
                               json_object_get(schema, "required"), depth + 1) < 0)
            return -1;
    }
    return 0;
}

static json_t *preprocess(const json_t *schema)
{
    json_t *copy = json_deep_copy(schema);
    json_t *defs;

    if (!copy)
        return NULL;
    if (process_properties(json_object_get(copy, "properties"), json_object_get(copy, "required"),
                           0) < 0)
        goto fail;
    defs = json_object_get(copy, "definitions");
    if (json_is_object(defs)) {
        const char *name;
        json_t *def;
        void *iter;

        json_object_foreach_safe(defs, iter, name, def) {
            json_t *title;

            if (!json_is_object(def))
                continue;
            if (process_properties(json_object_get(def, "properties"),
                                   json_object_get(def, "required"), 0) < 0)
                goto fail;
            title = json_object_get(def, "title");
            if (json_object_get(def, "block_type_slug") && json_is_string(title)) {
                json_t *wrapped = json_pack(
                    "{s[O{ss s{s{s[{ssss}{sss{ss}si}]}} s[s]}]}", "oneOf", def, "type", "object",
                    "properties", "$ref", "oneOf", "type", "string", "format", "uuid", "type",
                    "object", "additionalProperties", "type", "string", "minProperties", 1,
                    "required", "$ref");
                if (!wrapped || json_object_set_new(defs, json_string_value(title), wrapped) < 0)
                    goto fail;
            }
        }
    }
    return copy;

fail:
    json_decref(copy);
    return NULL;
}

/* remove_nested_keys(["required"], schema): objects only, not arrays. */
static json_t *remove_required(const json_t *schema, int depth)
{
    const char *key;
    json_t *item;
    json_t *out;

    if (!json_is_object(schema) || depth > RENDER_MAX_DEPTH)
        return json_incref((json_t *)schema);
    out = json_object();
    if (!out)
        return NULL;
    json_object_foreach((json_t *)schema, key, item) {
        if (strcmp(key, "required") == 0)
            continue;
        if (json_object_set_new(out, key, remove_required(item, depth + 1)) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static int run_check(const json_t *schema, const json_t *inst, int quiet, char *err, size_t errlen)
{
    struct vctx v = {.root = schema, .err = err, .errlen = errlen, .quiet = quiet};

    v.path[0] = '\0';
    return check(&v, schema, inst);
}

/* A default of the form {"$ref": {"block_document_id": ...}} is a block
 * reference the server hydrates before checking; 1 = such a reference,
 * 0 = plain value, -1 = a $ref without an id (the server skips it). */
static int default_is_block(const json_t *def)
{
    json_t *ref;

    if (!json_is_object(def) || !(ref = json_object_get(def, "$ref")))
        return 0;
    if (!json_is_object(ref) || !json_object_get(ref, "block_document_id") ||
        json_is_null(json_object_get(ref, "block_document_id")))
        return -1;
    return 1;
}

int render_validate(const json_t *variables_schema, const json_t *job_vars,
                    char *err, size_t errlen)
{
    json_t *properties;
    json_t *values = NULL;
    json_t *bare = NULL;
    json_t *prepared = NULL;
    json_t *final = NULL;
    json_t *blocks = NULL;
    const char *name;
    json_t *attrs;
    int invalid_defaults = 0;
    int rc = -1;

    if (!variables_schema || !render_truthy(variables_schema))
        return 0; /* nothing declared, nothing to check */
    if (!json_is_object(variables_schema)) {
        render_errf(err, errlen, "invalid schema: variables must be an object");
        return -1;
    }
    if (job_vars && !json_is_null(job_vars) && !json_is_object(job_vars)) {
        render_errf(err, errlen, "job variables must be an object");
        return -1;
    }
    values = json_object();
    blocks = json_object();
    bare = remove_required(variables_schema, 0);
    if (!values || !blocks || !bare)
        goto nomem;

    properties = json_object_get(variables_schema, "properties");
    json_object_foreach(properties, name, attrs) {
        json_t *def;
        json_t *single;
        int kind;

        if (!json_is_object(attrs) || !(def = json_object_get(attrs, "default")))
            continue;
        kind = default_is_block(def);
        if (kind < 0)
            continue;
        if (kind > 0) {
            /* Validated by the server when the pool was saved; the block
             * data is not at hand here, so it is taken as valid. */
            if (json_object_set(values, name, def) < 0 ||
                json_object_set_new(blocks, name, json_true()) < 0)
                goto nomem;
            continue;
        }
        single = json_pack("{sO}", name, def);
        if (!single)
            goto nomem;
        rc = run_check(bare, single, 1, NULL, 0);
        if (rc == SCHEMA_ERROR)
            run_check(bare, single, 1, err, errlen);
        json_decref(single);
        if (rc == SCHEMA_ERROR) {
            rc = -1;
            goto done;
        }
        if (rc == VALID) {
            if (json_object_set(values, name, def) < 0)
                goto nomem;
        } else {
            invalid_defaults = 1;
        }
    }
    if (json_is_object(job_vars) && json_object_update(values, (json_t *)job_vars) < 0)
        goto nomem;

    prepared = preprocess(variables_schema);
    if (!prepared)
        goto nomem;
    final = invalid_defaults ? remove_required(prepared, 0) : json_incref(prepared);
    if (!final)
        goto nomem;

    /* Block defaults the job variables leave in place are not checked: the
     * property's schema becomes `true` for this run. */
    json_object_foreach(blocks, name, attrs) {
        json_t *props = json_object_get(final, "properties");
        json_t *def = json_object_get(json_object_get(properties, name), "default");

        if (json_is_object(props) && json_object_get(values, name) == def &&
            json_object_set_new(props, name, json_true()) < 0)
            goto nomem;
    }

    rc = run_check(final, values, 0, err, errlen);
    rc = rc == VALID ? 0 : -1;
    goto done;

nomem:
    render_errf(err, errlen, "out of memory");
    rc = -1;
done:
    json_decref(values);
    json_decref(bare);
    json_decref(prepared);
    json_decref(final);
    json_decref(blocks);
    return rc;
}
