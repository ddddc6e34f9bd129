/*
 * The prepare step: what Prefect does between rendering and submission.
 *
 * First the rendered dict is read into BaseJobConfiguration (pydantic, lax
 * mode): command must be a string or null and "" becomes null, env must be
 * an object whose non-null values become their Python str() text, labels
 * must be an object of strings, name a string or null; missing fields take
 * the class defaults.  Then prepare_for_flow_run: env layered under the
 * settings, PREFECT__FLOW_RUN_ID and the attribution variables with null
 * values removed, prefect.io/ labels under the rendered labels, the name
 * rendered once more with {"ctx": {"flow", "flow_run"}} and defaulting to
 * the flow run's name, and "prefect flow-run execute" as default command.
 *
 * render_prepare keeps the fields where they are (the four base fields are
 * appended when missing); render_order_fields puts them first in the class's
 * field order, as model_dump prints them.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "render_compiled.h"

static const char *const base_order[] = {"command", "env", "labels", "name"};

/* Whether text is a UUID in str(UUID)'s form: 36 characters, lowercase
 * hex digits and hyphens after the 8th, 12th, 16th and 20th digit. */
static int is_canonical_uuid(const char *text)
{
    for (size_t i = 0; i < 36; i++) {
        char c = text[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return text[36] == '\0';
}

/* str(UUID(text)): lowercase, hyphenated.  Accepts the forms Python and
 * pydantic accept (hyphens, braces, urn:uuid: prefix). */
static int normalize_uuid(const char *text, char out[37])
{
    char hex[32];
    size_t n = 0;
    size_t len;

    /* The API sends the canonical form, which needs no rewriting. */
    if (is_canonical_uuid(text)) {
        memcpy(out, text, 37);
        return 0;
    }
    if (strncasecmp(text, "urn:uuid:", 9) == 0)
        text += 9;
    len = strlen(text);
    if (len >= 2 && text[0] == '{' && text[len - 1] == '}') {
        text++;
        len -= 2;
    }
    for (size_t i = 0; i < len; i++) {
        char c = text[i];

        if (c == '-')
            continue;
        /* ASCII only, as Python's UUID() accepts; cheaper than the locale's
         * isxdigit and tolower. */
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n >= 32)
            return -1;
        hex[n++] = c;
    }
    if (n != 32)
        return -1;
    for (size_t i = 0, o = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            out[o++] = '-';
        out[o++] = hex[i];
    }
    out[36] = '\0';
    return 0;
}

int render_prepare_uuid(const json_t *object, const char *what, const char *key, int required,
                    char out[37], char *err, size_t errlen)
{
    json_t *value = json_object_get(object, key);

    out[0] = '\0';
    if (!value || json_is_null(value)) {
        if (required) {
            render_errf(err, errlen, "%s has no %s", what, key);
            return -1;
        }
        return 0;
    }
    if (!json_is_string(value) || normalize_uuid(json_string_value(value), out) < 0) {
        render_errf(err, errlen, "%s %s is not a UUID", what, key);
        return -1;
    }
    return 0;
}

static int days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(long long z, int *y, int *m, int *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int read_digits(const char **p, int count)
{
    int value = 0;

    for (int i = 0; i < count; i++) {
        if (!isdigit((unsigned char)(*p)[0]))
            return -1;
        value = value * 10 + ((*p)[0] - '0');
        (*p)++;
    }
    return value;
}

/* deployment.updated.astimezone(UTC).isoformat() for the ISO 8601 forms the
 * API sends ("2026-08-21T12:00:00.123456Z", "+02:00" offsets; more than six
 * fraction digits are cut as pydantic cuts them; no offset means UTC). */
int render_prepare_updated(const char *text, char *out, size_t outlen)
{
    const char *p = text;
    int year, mon, day, hour, min, sec = 0, usec = 0, offset = 0;
    long long days, secs;

    if ((year = read_digits(&p, 4)) < 0 || *p++ != '-' || (mon = read_digits(&p, 2)) < 1 ||
        mon > 12 || *p++ != '-' || (day = read_digits(&p, 2)) < 1 || day > 31)
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    if ((hour = read_digits(&p, 2)) < 0 || hour > 23 || *p++ != ':' ||
        (min = read_digits(&p, 2)) < 0 || min > 59)
        return -1;
    if (*p == ':') {
        p++;
        if ((sec = read_digits(&p, 2)) < 0 || sec > 59)
            return -1;
        if (*p == '.' || *p == ',') {
            int n = 0;

            p++;
            if (!isdigit((unsigned char)*p))
                return -1;
            while (isdigit((unsigned char)*p)) {
                if (n < 6) {
                    usec = usec * 10 + (*p - '0');
                    n++;
                }
                p++;
            }
            for (; n < 6; n++)
                usec *= 10;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int oh, om;

        p++;
        if ((oh = read_digits(&p, 2)) < 0 || oh > 23)
            return -1;
        if (*p == ':')
            p++;
        if ((om = read_digits(&p, 2)) < 0 || om > 59)
            return -1;
        offset = sign * (oh * 3600 + om * 60);
    }
    if (*p != '\0')
        return -1;

    days = days_from_civil(year, mon, day);
    secs = days * 86400 + hour * 3600 + min * 60 + sec - offset;
    days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    secs -= days * 86400;
    civil_from_days(days, &year, &mon, &day);
    if (usec)
        snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00", year, mon, day,
                 (int)(secs / 3600), (int)(secs % 3600 / 60), (int)(secs % 60), usec);
    else
        snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d+00:00", year, mon, day,
                 (int)(secs / 3600), (int)(secs % 3600 / 60), (int)(secs % 60));
    return 0;
}

/* Reads the four base fields as pydantic would; fills the outputs with new
 * references.  The env values are turned into text by build_env. */
static int coerce_base_fields(const json_t *config, json_t **command, json_t **env,
                              json_t **labels, json_t **name, char *err, size_t errlen)
{
    json_t *value;
    const char *key;
    json_t *item;

    value = json_object_get(config, "command");
    if (value && !json_is_null(value) && !json_is_string(value)) {
        render_errf(err, errlen, "job configuration command must be a string or null, not %s",
                    render_type_name(value));
        return -1;
    }
    *command = value && render_truthy(value) ? json_incref(value) : json_null();

    value = json_object_get(config, "name");
    if (value && !json_is_null(value) && !json_is_string(value)) {
        render_errf(err, errlen, "job configuration name must be a string or null, not %s",
                    render_type_name(value));
        return -1;
    }
    *name = value ? json_incref(value) : json_null();

    value = json_object_get(config, "labels");
    if (value && !json_is_object(value)) {
        render_errf(err, errlen, "job configuration labels must be an object, not %s",
                    render_type_name(value));
        return -1;
    }
    json_object_foreach(value, key, item) {
        if (!json_is_string(item)) {
            render_errf(err, errlen, "job configuration label \"%s\" must be a string, not %s",
                        key, render_type_name(item));
            return -1;
        }
    }
    *labels = value ? json_incref(value) : json_object();

    value = json_object_get(config, "env");
    if (value && !json_is_object(value)) {
        render_errf(err, errlen, "job configuration env must be an object, not %s",
                    render_type_name(value));
        return -1;
    }
    *env = value ? json_incref(value) : json_object();
    return *env ? 0 : -1;
}

/* key is always a literal here, so only the value needs the UTF-8 check. */
static int set_string(json_t *object, const char *key, const char *value)
{
    return json_object_set_new_nocheck(object, key, json_string(value));
}

/* For text this file formatted itself (UUIDs, dates), which is ASCII. */
static int set_ascii(json_t *object, const char *key, const char *value)
{
    return json_object_set_new_nocheck(object, key, json_stringn_nocheck(value, strlen(value)));
}

static int build_env(json_t *env_out, const struct render_context *ctx, const char *run_id,
                     const json_t *config_env, char *err, size_t errlen)
{
    char flow_id[37];
    char deployment_id[37];
    json_t *value;
    const char *key;
    json_t *item;
    void *iter;
    int has_null = 0;
    int rc = 0;

    /* json_object_update, noting null values for the removal below. */
    if (ctx->settings_env && json_is_object(ctx->settings_env)) {
        RENDER_OBJECT_FOREACH((json_t *)ctx->settings_env, iter, key, item) {
            rc |= json_object_setn_nocheck(env_out, key, json_object_iter_key_len(iter), item);
            has_null |= json_is_null(item);
        }
    }
    rc |= set_ascii(env_out, "PREFECT__FLOW_RUN_ID", run_id);
    if (ctx->worker_id)
        rc |= set_string(env_out, "PREFECT__WORKER_ID", ctx->worker_id);
    if (ctx->worker_name)
        rc |= set_string(env_out, "PREFECT__WORKER_NAME", ctx->worker_name);
    if (render_prepare_uuid(ctx->flow_run, "flow run", "flow_id", 0, flow_id, err, errlen) < 0)
        return -1;
    if (flow_id[0])
        rc |= set_ascii(env_out, "PREFECT__FLOW_ID", flow_id);
    value = ctx->flow ? json_object_get(ctx->flow, "name") : NULL;
    if (value && render_truthy(value))
        rc |= json_object_set_nocheck(env_out, "PREFECT__FLOW_NAME", value);
    if (render_prepare_uuid(ctx->flow_run, "flow run", "deployment_id", 0, deployment_id, err, errlen) < 0)
        return -1;
    if (deployment_id[0])
        rc |= set_ascii(env_out, "PREFECT__DEPLOYMENT_ID", deployment_id);
    value = ctx->deployment ? json_object_get(ctx->deployment, "name") : NULL;
    if (value && render_truthy(value))
        rc |= json_object_set_nocheck(env_out, "PREFECT__DEPLOYMENT_NAME", value);
    json_object_foreach((json_t *)config_env, key, item) {
        json_t *text;

        /* BaseJobConfiguration._coerce_env: str(v) for every non-null v. */
        if (json_is_null(item) || json_is_string(item)) {
            text = json_incref(item);
        } else {
            char *s = render_pytext(item);
            text = s ? json_string(s) : NULL;
            free(s);
        }
        rc |= json_object_set_new_nocheck(env_out, key, text);
        if (json_is_null(item))
            has_null = 1;
    }
    if (rc) {
        render_errf(err, errlen, "out of memory");
        return -1;
    }

    /* Null values remove the key, whichever layer set it. */
    if (has_null) {
        json_object_foreach_safe(env_out, iter, key, item) {
            if (json_is_null(item))
                json_object_del(env_out, key);
        }
    }
    return 0;
}

static int build_labels(json_t *labels_out, const struct render_context *ctx, const char *run_id,
                        const json_t *run_name, const json_t *config_labels, char *err,
                        size_t errlen)
{
    char id[37];
    int rc = 0;

    rc |= set_ascii(labels_out, "prefect.io/flow-run-id", run_id);
    rc |= json_object_set_nocheck(labels_out, "prefect.io/flow-run-name", (json_t *)run_name);
    rc |= set_string(labels_out, "prefect.io/version",
                     ctx->prefect_version ? ctx->prefect_version : RENDER_PREFECT_VERSION);
    if (ctx->work_pool_name || ctx->work_pool_id) {
        if (ctx->work_pool_name)
            rc |= set_string(labels_out, "prefect.io/work-pool-name", ctx->work_pool_name);
        if (ctx->work_pool_id)
            rc |= set_string(labels_out, "prefect.io/work-pool-id", ctx->work_pool_id);
    }
    if (ctx->worker_name)
        rc |= set_string(labels_out, "prefect.io/worker-name", ctx->worker_name);
    if (ctx->flow) {
        json_t *name = json_object_get(ctx->flow, "name");

        if (render_prepare_uuid(ctx->flow, "flow", "id", 1, id, err, errlen) < 0)
            return -1;
        if (!json_is_string(name)) {
            render_errf(err, errlen, "flow has no name");
            return -1;
        }
        rc |= set_ascii(labels_out, "prefect.io/flow-id", id);
        rc |= json_object_set_nocheck(labels_out, "prefect.io/flow-name", name);
    }
    if (ctx->deployment) {
        json_t *name = json_object_get(ctx->deployment, "name");
        json_t *updated = json_object_get(ctx->deployment, "updated");

        if (render_prepare_uuid(ctx->deployment, "deployment", "id", 1, id, err, errlen) < 0)
            return -1;
        if (!json_is_string(name)) {
            render_errf(err, errlen, "deployment has no name");
            return -1;
        }
        rc |= set_ascii(labels_out, "prefect.io/deployment-id", id);
        rc |= json_object_set_nocheck(labels_out, "prefect.io/deployment-name", name);
        if (updated && !json_is_null(updated)) {
            char text[64];

            if (!json_is_string(updated) ||
                render_prepare_updated(json_string_value(updated), text, sizeof(text)) < 0) {
                render_errf(err, errlen, "deployment updated is not an ISO 8601 date and time");
                return -1;
            }
            rc |= set_ascii(labels_out, "prefect.io/deployment-updated", text);
        }
    }
    rc |= json_object_update(labels_out, (json_t *)config_labels);
    if (rc) {
        render_errf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The name rendered with ctx values; returns a new reference. */
/* The values a name renders with, {"ctx": {"flow": F, "flow_run": R}}:
 * made once per thread, filled for one name and emptied again, because
 * making and freeing three objects for each run costs more. */
static _Thread_local json_t *name_values;
static _Thread_local json_t *name_ctx;

static json_t *name_values_for(const struct render_context *ctx, json_t **fresh_flow)
{
    json_t *flow = (json_t *)ctx->flow;

    if (!name_values) {
        name_ctx = json_pack("{snsn}", "flow", "flow_run");
        name_values = name_ctx ? json_pack("{sO}", "ctx", name_ctx) : NULL;
        if (!name_values) {
            json_decref(name_ctx);
            name_ctx = NULL;
            return NULL;
        }
    }
    /* A flow object of its own, so that a rendered name never shares one
     * kept here. */
    *fresh_flow = flow ? NULL : json_object();
    if ((!flow && !*fresh_flow) ||
        json_object_set_nocheck(name_ctx, "flow", flow ? flow : *fresh_flow) < 0 ||
        json_object_set_nocheck(name_ctx, "flow_run", (json_t *)ctx->flow_run) < 0)
        return NULL;
    return name_values;
}

/* Drops the references name_values_for took. */
static void name_values_clear(json_t *fresh_flow)
{
    if (name_ctx) {
        json_object_set_new_nocheck(name_ctx, "flow", json_null());
        json_object_set_new_nocheck(name_ctx, "flow_run", json_null());
    }
    json_decref(fresh_flow);
}

static int has_open_braces(const char *text, size_t len)
{
    const char *p = text;
    const char *end = text + len;

    while ((p = memchr(p, '{', (size_t)(end - p))) != NULL && p + 1 < end) {
        if (p[1] == '{')
            return 1;
        p++;
    }
    return 0;
}

/* The ctx object a placeholder name starts in, and the rest of the name
 * after its separator: "ctx.flow_run.REST" and "ctx.flow.REST".  Splitting
 * the whole name into segments gives "ctx", the object's key, then the
 * segments of REST, so looking REST up in the object is the same lookup.
 * Returns 0 for any other name. */
static int ctx_path(const struct render_context *ctx, const char *name, size_t len,
                    const json_t **object, const char **rest, size_t *rest_len)
{
    static const char run_prefix[] = "ctx.flow_run.";
    static const char flow_prefix[] = "ctx.flow.";

    if (len >= sizeof(run_prefix) - 1 && memcmp(name, run_prefix, sizeof(run_prefix) - 1) == 0) {
        *object = ctx->flow_run;
        *rest = name + sizeof(run_prefix) - 1;
        *rest_len = len - (sizeof(run_prefix) - 1);
        return 1;
    }
    if (len >= sizeof(flow_prefix) - 1 && memcmp(name, flow_prefix, sizeof(flow_prefix) - 1) == 0) {
        *object = ctx->flow; /* NULL stands for {}, where every lookup fails */
        *rest = name + sizeof(flow_prefix) - 1;
        *rest_len = len - (sizeof(flow_prefix) - 1);
        return 1;
    }
    return 0;
}

/* render_apply_values of a name whose placeholders are inline, standard
 * ones are all ctx paths, and the others are block or variable
 * placeholders (kept as text), without building the values object.
 * Returns 1 with *rendered set, 0 when the name has another shape, or -1
 * when out of memory. */
static int render_name_inline(const struct render_context *ctx, const json_t *name,
                              json_t **rendered)
{
    const char *text = json_string_value(name);
    size_t len = json_string_length(name);
    struct render_buf buf;
    struct render_ph ph;
    size_t pos = 0;

    if (!render_ph_next(text, len, 0, &ph) || (ph.start == 0 && ph.end == len))
        return 0;
    do {
        const json_t *object = NULL;
        const char *rest = NULL;
        size_t rest_len = 0;

        if (ph.kind == RENDER_PH_ENV ||
            (ph.kind == RENDER_PH_STANDARD &&
             !ctx_path(ctx, text + ph.name_start, ph.name_end - ph.name_start, &object, &rest,
                       &rest_len)))
            return 0;
        pos = ph.end;
    } while (render_ph_next(text, len, pos, &ph));

    memset(&buf, 0, sizeof(buf));
    pos = 0;
    while (render_ph_next(text, len, pos, &ph)) {
        const json_t *object = NULL;
        const char *rest = NULL;
        size_t rest_len = 0;

        render_buf_append(&buf, text + pos, ph.start - pos);
        if (ph.kind == RENDER_PH_STANDARD) {
            json_t *value;

            ctx_path(ctx, text + ph.name_start, ph.name_end - ph.name_start, &object, &rest,
                     &rest_len);
            value = object ? render_lookup(object, rest, rest_len) : NULL;
            if (value)
                render_pytext_append(&buf, value, 1);
            json_decref(value);
        } else {
            render_buf_append(&buf, text + ph.start, ph.end - ph.start);
        }
        pos = ph.end;
    }
    render_buf_append(&buf, text + pos, len - pos);
    *rendered = buf.failed ? NULL : json_stringn_nocheck(buf.data ? buf.data : "", buf.len);
    render_buf_free(&buf);
    return *rendered ? 1 : -1;
}

json_t *render_prepare_name(const struct render_context *ctx, json_t *name, const json_t *run_name,
                           char *err, size_t errlen)
{
    json_t *rendered = NULL;

    /* A string without "{{" has no placeholder and renders as itself. */
    if (render_truthy(name) &&
        !(json_is_string(name) &&
          !has_open_braces(json_string_value(name), json_string_length(name)))) {
        json_t *fresh_flow = NULL;
        json_t *values;
        int rc = json_is_string(name) ? render_name_inline(ctx, name, &rendered) : 0;

        if (rc < 0) {
            render_errf(err, errlen, "out of memory");
            return NULL;
        }
        values = rc ? NULL : name_values_for(ctx, &fresh_flow);
        if (!rc && !values) {
            name_values_clear(fresh_flow);
            render_errf(err, errlen, "out of memory");
            return NULL;
        }
        if (!rc) {
            rc = render_apply_values(name, values, ctx->environ_lookup, ctx->environ_arg,
                                     &rendered, err, errlen);
            name_values_clear(fresh_flow);
            if (rc < 0)
                return NULL;
        }
    }
    if (!rendered)
        rendered = json_incref(name);
    if (!render_truthy(rendered)) {
        json_decref(rendered);
        rendered = json_incref((json_t *)run_name);
    }
    return rendered;
}

/* True when config's first keys are command, env, labels, name. */
static int in_field_order(json_t *config)
{
    void *iter = json_object_iter(config);

    for (size_t i = 0; i < sizeof(base_order) / sizeof(base_order[0]); i++) {
        if (!iter || strcmp(json_object_iter_key(iter), base_order[i]) != 0)
            return 0;
        iter = json_object_iter_next(config, iter);
    }
    return 1;
}

int render_order_fields(json_t *config)
{
    json_t *others;
    json_t *base[4] = {NULL};
    const char *key;
    json_t *item;
    int rc = -1;

    if (!json_is_object(config))
        return -1;
    if (in_field_order(config))
        return 0;
    others = json_array();
    if (!others)
        return -1;
    /* Keep every field aside, clear the object, insert in the final order. */
    json_object_foreach(config, key, item) {
        size_t b;

        for (b = 0; b < 4; b++)
            if (strcmp(key, base_order[b]) == 0)
                break;
        if (b < 4) {
            base[b] = json_incref(item);
            continue;
        }
        if (json_array_append_new(others, json_string(key)) < 0 ||
            json_array_append(others, item) < 0)
            goto done;
    }
    json_object_clear(config);
    for (size_t b = 0; b < 4; b++)
        if (base[b] && json_object_set(config, base_order[b], base[b]) < 0)
            goto done;
    for (size_t i = 0; i + 1 < json_array_size(others); i += 2)
        if (json_object_set_nocheck(config, json_string_value(json_array_get(others, i)),
                                    json_array_get(others, i + 1)) < 0)
            goto done;
    rc = 0;

done:
    for (size_t b = 0; b < 4; b++)
        json_decref(base[b]);
    json_decref(others);
    return rc;
}

int render_prepare(json_t *config, const struct render_context *ctx, char *err, size_t errlen)
{
    json_t *command = NULL, *env = NULL, *labels = NULL, *name = NULL;
    json_t *final_env = NULL, *final_labels = NULL, *final_name = NULL;
    const json_t *run_name;
    char run_id[37];
    int rc = -1;

    if (!json_is_object(config)) {
        render_errf(err, errlen, "the configuration must be an object");
        return -1;
    }
    if (!ctx || !json_is_object(ctx->flow_run)) {
        render_errf(err, errlen, "the flow run must be an object");
        return -1;
    }
    if ((ctx->flow && !json_is_object(ctx->flow)) ||
        (ctx->deployment && !json_is_object(ctx->deployment))) {
        render_errf(err, errlen, "the flow and the deployment must be objects");
        return -1;
    }
    if (render_prepare_uuid(ctx->flow_run, "flow run", "id", 1, run_id, err, errlen) < 0)
        return -1;
    run_name = json_object_get(ctx->flow_run, "name");
    if (!json_is_string(run_name)) {
        render_errf(err, errlen, "flow run name must be a string");
        return -1;
    }
    if (coerce_base_fields(config, &command, &env, &labels, &name, err, errlen) < 0)
        goto done;

    final_env = json_object();
    final_labels = json_object();
    if (!final_env || !final_labels) {
        render_errf(err, errlen, "out of memory");
        goto done;
    }
    if (build_env(final_env, ctx, run_id, env, err, errlen) < 0 ||
        build_labels(final_labels, ctx, run_id, run_name, labels, err, errlen) < 0)
        goto done;
    final_name = render_prepare_name(ctx, name, run_name, err, errlen);
    if (!final_name)
        goto done;
    if (!render_truthy(command)) {
        json_decref(command);
        command = json_string("prefect flow-run execute");
    }

    /* json_object_set keeps a key's position; missing fields go last. */
    if (json_object_set(config, "command", command) < 0 ||
        json_object_set(config, "env", final_env) < 0 ||
        json_object_set(config, "labels", final_labels) < 0 ||
        json_object_set(config, "name", final_name) < 0) {
        render_errf(err, errlen, "out of memory");
        goto done;
    }
    rc = 0;

done:
    json_decref(command);
    json_decref(env);
    json_decref(labels);
    json_decref(name);
    json_decref(final_env);
    json_decref(final_labels);
    json_decref(final_name);
    return rc;
}
