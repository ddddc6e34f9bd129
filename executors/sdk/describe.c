/*
 * The declared schema an executor prints with --describe and sends in HELLO:
 * the common job configuration fields every Prefect worker has (command,
 * env, labels, name, with the JSON schemas of Prefect's BaseJobConfiguration)
 * followed by the author's own fields.  Format: supervisor/render.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "sdk_internal.h"

/* The common fields, in the order of Prefect's BaseJobConfiguration. */
static const struct {
    const char *name;
    const char *schema;
} describe_common[] = {
    {"command",
     "{\"title\": \"Command\", \"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}],"
     " \"default\": null,"
     " \"description\": \"Command line that starts the flow run, split into words like a POSIX"
     " shell does. Leave it empty to let the worker choose (prefect flow-run execute).\"}"},
    {"env",
     "{\"title\": \"Environment Variables\", \"type\": \"object\","
     " \"additionalProperties\": {\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}]},"
     " \"description\": \"Environment variables for the flow run; a variable whose value is"
     " null is not set.\"}"},
    {"labels",
     "{\"title\": \"Labels\", \"type\": \"object\","
     " \"additionalProperties\": {\"type\": \"string\"},"
     " \"description\": \"Labels attached to the infrastructure the worker creates for the"
     " flow run.\"}"},
    {"name",
     "{\"title\": \"Name\", \"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}],"
     " \"default\": null,"
     " \"description\": \"Name given to the infrastructure the worker creates for the flow run;"
     " {{ ctx.flow_run.* }} and {{ ctx.flow.* }} placeholders are filled in.\"}"},
};

static const char *const describe_json_types[] = {
    "string", "integer", "number", "boolean", "object", "array", "null",
};

static int describe_valid_type_name(const char *t)
{
    size_t n = strlen(t);

    if (n == 0 || n > DROVER_MAX_TYPE)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int describe_valid_field_name(const char *name)
{
    if (!name || !(isalpha((unsigned char)name[0]) || name[0] == '_'))
        return 0;
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return 0;
    return strlen(name) <= 128;
}

/* Pydantic's default title: words split at '_', each capitalised. */
static json_t *describe_title(const char *name)
{
    char buf[160];
    size_t n = 0;
    int start = 1;

    for (const char *p = name; *p && n + 1 < sizeof buf; p++) {
        if (*p == '_') {
            if (n > 0 && buf[n - 1] != ' ')
                buf[n++] = ' ';
            start = 1;
            continue;
        }
        buf[n++] = start ? (char)toupper((unsigned char)*p) : *p;
        start = 0;
    }
    while (n > 0 && buf[n - 1] == ' ')
        n--;
    buf[n] = '\0';
    return json_string(buf);
}

static json_t *describe_field_schema(const struct drover_field *f, char *err, size_t errlen)
{
    json_t *schema = NULL;
    json_error_t jerr;

    if (!f->type) {
        snprintf(err, errlen, "field %s: type is missing", f->name);
        return NULL;
    }
    if (f->type[0] == '{') {
        json_t *typed = json_loads(f->type, JSON_REJECT_DUPLICATES, &jerr);
        if (!typed || !json_is_object(typed)) {
            snprintf(err, errlen, "field %s: type is not a JSON schema object: %s",
                     f->name, typed ? "not an object" : jerr.text);
            json_decref(typed);
            return NULL;
        }
        schema = json_object();
        json_object_set_new(schema, "title", f->title ? json_string(f->title) : describe_title(f->name));
        json_object_update(schema, typed);
        json_decref(typed);
    } else {
        size_t i, n = sizeof describe_json_types / sizeof describe_json_types[0];

        for (i = 0; i < n; i++)
            if (strcmp(f->type, describe_json_types[i]) == 0)
                break;
        if (i == n) {
            snprintf(err, errlen, "field %s: unknown JSON type %s (expected string, integer, "
                     "number, boolean, object, array or a schema object)", f->name, f->type);
            return NULL;
        }
        schema = json_object();
        json_object_set_new(schema, "title", f->title ? json_string(f->title) : describe_title(f->name));
        json_object_set_new(schema, "type", json_string(f->type));
    }

    if (f->default_json) {
        json_t *def = json_loads(f->default_json, JSON_DECODE_ANY, &jerr);
        if (!def) {
            snprintf(err, errlen, "field %s: default is not JSON: %s", f->name, jerr.text);
            json_decref(schema);
            return NULL;
        }
        json_object_set_new(schema, "default", def);
    }
    if (f->description)
        json_object_set_new(schema, "description", json_string(f->description));
    return schema;
}

static int describe_add_common(json_t *fields, char *err, size_t errlen)
{
    size_t n = sizeof describe_common / sizeof describe_common[0];

    for (size_t i = 0; i < n; i++) {
        json_error_t jerr;
        json_t *schema = json_loads(describe_common[i].schema, 0, &jerr);
        char tmpl[64];

        if (!schema) {
            snprintf(err, errlen, "built-in schema of %s: %s", describe_common[i].name, jerr.text);
            return -1;
        }
        snprintf(tmpl, sizeof tmpl, "{{ %s }}", describe_common[i].name);
        json_array_append_new(fields, json_pack("{s:s, s:o, s:s}", "name", describe_common[i].name,
                                                "schema", schema, "template", tmpl));
    }
    return 0;
}

static int describe_is_common(const char *name)
{
    size_t n = sizeof describe_common / sizeof describe_common[0];

    for (size_t i = 0; i < n; i++)
        if (strcmp(name, describe_common[i].name) == 0)
            return 1;
    return 0;
}

static int describe_add_fields(json_t *fields, const struct drover_describe *d,
                               char *err, size_t errlen)
{
    for (size_t i = 0; i < d->n_fields; i++) {
        const struct drover_field *f = &d->fields[i];
        json_t *schema, *entry;

        if (!describe_valid_field_name(f->name)) {
            snprintf(err, errlen, "field %zu: invalid name %s (expected [A-Za-z_][A-Za-z0-9_]*)",
                     i, f->name ? f->name : "(null)");
            return -1;
        }
        if (describe_is_common(f->name)) {
            snprintf(err, errlen, "field %s: the SDK declares it already, remove it", f->name);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(d->fields[j].name, f->name) == 0) {
                snprintf(err, errlen, "field %s: declared twice", f->name);
                return -1;
            }
        }
        schema = describe_field_schema(f, err, errlen);
        if (!schema)
            return -1;
        entry = json_pack("{s:s, s:o}", "name", f->name, "schema", schema);
        if (f->template_text)
            json_object_set_new(entry, "template", json_string(f->template_text));
        json_array_append_new(fields, entry);
    }
    return 0;
}

json_t *drover_describe_schema(const struct drover_describe *d, char *err, size_t errlen)
{
    json_t *root = NULL, *fields = NULL, *variables = NULL;
    json_error_t jerr;

    if (!d || !d->type || !describe_valid_type_name(d->type)) {
        snprintf(err, errlen, "invalid executor type %s (expected 1 to %u of [a-z0-9_-])",
                 d && d->type ? d->type : "(null)", DROVER_MAX_TYPE);
        return NULL;
    }
    if (d->n_fields > 0 && !d->fields) {
        snprintf(err, errlen, "n_fields is %zu but fields is NULL", d->n_fields);
        return NULL;
    }
    if (d->variables_json) {
        variables = json_loads(d->variables_json, JSON_REJECT_DUPLICATES, &jerr);
        if (!variables || !json_is_object(variables)) {
            snprintf(err, errlen, "variables is not a JSON schema object: %s",
                     variables ? "not an object" : jerr.text);
            goto fail;
        }
    }

    fields = json_array();
    if (describe_add_common(fields, err, errlen) < 0 ||
        describe_add_fields(fields, d, err, errlen) < 0)
        goto fail;

    root = json_object();
    json_object_set_new(root, "type", json_string(d->type));
    json_object_set_new(root, "description", json_string(d->description ? d->description : ""));
    if (d->documentation_url)
        json_object_set_new(root, "documentation_url", json_string(d->documentation_url));
    if (d->logo_url)
        json_object_set_new(root, "logo_url", json_string(d->logo_url));
    json_object_set_new(root, "fields", fields);
    json_object_set_new(root, "variables", variables ? variables : json_null());
    return root;

fail:
    json_decref(fields);
    json_decref(variables);
    return NULL;
}
