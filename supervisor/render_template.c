/*
 * Base job templates: checking an executor's declared schema, deriving the
 * default template from it as Prefect's BaseWorker
 * .get_default_base_job_template does, and the server's placeholder check
 * on a template (validate_base_job_template).
 */
#include <stdlib.h>
#include <string.h>

#include "render.h"

static const char *const base_fields[] = {"command", "env", "labels", "name"};

/* The schemas pydantic generates for BaseJobConfiguration's own fields
 * (Prefect 3.9.1), used when a declared schema leaves one out. */
static json_t *base_field_schema(const char *name)
{
    if (strcmp(name, "command") == 0)
        return json_pack("{s[{ss}{ss}]sns ss ss}", "anyOf", "type", "string", "type", "null",
                         "default", "description",
                         "The command to use when starting a flow run. In most cases, this "
                         "should be left blank and the command will be automatically generated "
                         "by the worker.",
                         "title", "Command");
    if (strcmp(name, "env") == 0)
        return json_pack("{s{s[{ss}{ss}]}ss ss ss}", "additionalProperties", "anyOf", "type",
                         "string", "type", "null", "description",
                         "Environment variables to set when starting a flow run.", "title",
                         "Environment Variables", "type", "object");
    if (strcmp(name, "labels") == 0)
        return json_pack("{s{ss}ss ss ss}", "additionalProperties", "type", "string",
                         "description",
                         "Labels applied to infrastructure created by the worker using this job "
                         "configuration.",
                         "title", "Labels", "type", "object");
    return json_pack("{s[{ss}{ss}]sns ss ss}", "anyOf", "type", "string", "type", "null",
                     "default", "description",
                     "Name given to infrastructure created by the worker using this job "
                     "configuration. Supports templates using {{ ctx.flow.* }} and "
                     "{{ ctx.flow_run.* }} when prepared for a flow run.",
                     "title", "Name");
}

int render_check_schema(const json_t *declared, char *err, size_t errlen)
{
    const json_t *type;
    const json_t *fields;
    const json_t *variables;
    json_t *seen;
    size_t i;
    json_t *field;
    int rc = -1;

    if (!json_is_object(declared)) {
        render_errf(err, errlen, "the declared schema must be a JSON object");
        return -1;
    }
    type = json_object_get(declared, "type");
    if (!json_is_string(type) || json_string_length(type) == 0) {
        render_errf(err, errlen, "the declared schema needs a non-empty string \"type\"");
        return -1;
    }
    fields = json_object_get(declared, "fields");
    if (!json_is_array(fields)) {
        render_errf(err, errlen, "the declared schema needs a \"fields\" array");
        return -1;
    }
    variables = json_object_get(declared, "variables");
    if (variables && !json_is_null(variables) &&
        !(json_is_object(variables) && json_is_object(json_object_get(variables, "properties")))) {
        render_errf(err, errlen,
                    "declared \"variables\" must be null or a JSON schema object with "
                    "\"properties\"");
        return -1;
    }
    seen = json_object();
    if (!seen) {
        render_errf(err, errlen, "out of memory");
        return -1;
    }
    json_array_foreach(fields, i, field) {
        const json_t *name = json_object_get(field, "name");
        const json_t *schema = json_object_get(field, "schema");
        const json_t *tmpl = json_object_get(field, "template");
        const json_t *required = json_object_get(field, "required");

        if (!json_is_object(field) || !json_is_string(name) || json_string_length(name) == 0) {
            render_errf(err, errlen, "declared field %zu needs a non-empty string \"name\"", i);
            goto done;
        }
        if (json_object_get(seen, json_string_value(name))) {
            render_errf(err, errlen, "declared field \"%s\" appears twice", json_string_value(name));
            goto done;
        }
        json_object_set_new(seen, json_string_value(name), json_true());
        if (!json_is_object(schema)) {
            render_errf(err, errlen, "declared field \"%s\" needs a \"schema\" object",
                        json_string_value(name));
            goto done;
        }
        if (tmpl && !json_is_null(tmpl) && !json_is_string(tmpl)) {
            render_errf(err, errlen, "declared field \"%s\": \"template\" must be a string",
                        json_string_value(name));
            goto done;
        }
        if (required && !json_is_boolean(required)) {
            render_errf(err, errlen, "declared field \"%s\": \"required\" must be a boolean",
                        json_string_value(name));
            goto done;
        }
    }
    rc = 0;

done:
    json_decref(seen);
    return rc;
}

static const json_t *find_field(const json_t *fields, const char *name)
{
    size_t i;
    json_t *field;

    json_array_foreach(fields, i, field)
        if (strcmp(json_string_value(json_object_get(field, "name")), name) == 0)
            return field;
    return NULL;
}

/* The list of fields in order: the declared ones, with any missing base
 * field put first as BaseJobConfiguration's subclasses have them. */
static json_t *effective_fields(const json_t *declared)
{
    const json_t *fields = json_object_get(declared, "fields");
    json_t *out = json_array();
    size_t i;
    json_t *field;

    if (!out)
        return NULL;
    for (size_t b = 0; b < sizeof(base_fields) / sizeof(base_fields[0]); b++) {
        if (find_field(fields, base_fields[b]))
            continue;
        if (json_array_append_new(out, json_pack("{ssso}", "name", base_fields[b], "schema",
                                                 base_field_schema(base_fields[b]))) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    json_array_foreach(fields, i, field) {
        if (json_array_append(out, field) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* The template of one field: its "template" (or one inside its schema)
 * when truthy, else "{{ name }}", as json_template() picks it. */
static json_t *field_template(const json_t *field)
{
    const char *name = json_string_value(json_object_get(field, "name"));
    const json_t *tmpl = json_object_get(field, "template");
    struct render_buf buf = {0};
    char *text;
    json_t *out;

    if (!tmpl || !render_truthy(tmpl))
        tmpl = json_object_get(json_object_get(field, "schema"), "template");
    if (tmpl && render_truthy(tmpl))
        return json_incref((json_t *)tmpl);
    render_buf_append(&buf, "{{ ", 3);
    render_buf_append(&buf, name, strlen(name));
    render_buf_append(&buf, " }}", 3);
    text = render_buf_finish(&buf);
    out = text ? json_string(text) : NULL;
    free(text);
    return out;
}

/* Declared variables: the schema with "title" removed and
 * additionalProperties dropped at the top and in definitions, as
 * BaseVariables.model_json_schema prints it. */
static json_t *declared_variables(const json_t *variables)
{
    json_t *out = json_deep_copy(variables);
    json_t *defs;
    const char *key;
    json_t *def;

    if (!out)
        return NULL;
    json_object_del(out, "title");
    json_object_del(out, "additionalProperties");
    defs = json_object_get(out, "definitions");
    json_object_foreach(defs, key, def)
        if (json_is_object(def))
            json_object_del(def, "additionalProperties");
    return out;
}

/* Variables inferred from the fields: the configuration class's JSON
 * schema with the template keys stripped and no title. */
static json_t *inferred_variables(const json_t *declared, const json_t *fields)
{
    json_t *out = json_object();
    json_t *props = json_object();
    json_t *required = json_array();
    const json_t *defs = json_object_get(declared, "definitions");
    size_t i;
    json_t *field;

    if (!out || !props || !required)
        goto fail;
    json_array_foreach(fields, i, field) {
        json_t *schema = json_deep_copy(json_object_get(field, "schema"));
        const char *name = json_string_value(json_object_get(field, "name"));

        if (!schema)
            goto fail;
        json_object_del(schema, "template");
        if (json_object_set_new(props, name, schema) < 0)
            goto fail;
        if (json_is_true(json_object_get(field, "required")) &&
            json_array_append_new(required, json_string(name)) < 0)
            goto fail;
    }
    if (json_object_set_new(out, "properties", props) < 0)
        goto fail_props;
    if (json_array_size(required) > 0 && json_object_set(out, "required", required) < 0)
        goto fail_out;
    if (json_object_set_new(out, "type", json_string("object")) < 0)
        goto fail_out;
    if (json_is_object(defs) && json_object_set_new(out, "definitions", json_deep_copy(defs)) < 0)
        goto fail_out;
    json_decref(required);
    return out;

fail:
    json_decref(props);
fail_props:
fail_out:
    json_decref(out);
    json_decref(required);
    return NULL;
}

json_t *render_default_template(const json_t *declared, char *err, size_t errlen)
{
    json_t *fields = NULL;
    json_t *config = NULL;
    json_t *variables = NULL;
    json_t *result = NULL;
    const json_t *declared_vars;
    size_t i;
    json_t *field;

    if (render_check_schema(declared, err, errlen) < 0)
        return NULL;
    fields = effective_fields(declared);
    config = json_object();
    if (!fields || !config)
        goto nomem;
    json_array_foreach(fields, i, field) {
        const char *name = json_string_value(json_object_get(field, "name"));
        if (json_object_set_new(config, name, field_template(field)) < 0)
            goto nomem;
    }
    declared_vars = json_object_get(declared, "variables");
    if (declared_vars && !json_is_null(declared_vars))
        variables = declared_variables(declared_vars);
    else
        variables = inferred_variables(declared, fields);
    if (!variables)
        goto nomem;
    result = json_pack("{sOsO}", "job_configuration", config, "variables", variables);
    if (!result)
        goto nomem;
    goto done;

nomem:
    render_errf(err, errlen, "out of memory");
done:
    json_decref(fields);
    json_decref(config);
    json_decref(variables);
    return result;
}

int render_check_template(const json_t *base_template, char *err, size_t errlen)
{
    const json_t *job_config;
    const json_t *variables;
    const json_t *properties;
    json_t *missing = NULL;
    const char *key;
    json_t *value;
    int rc = -1;

    if (!json_is_object(base_template)) {
        render_errf(err, errlen, "the base job template must be a JSON object");
        return -1;
    }
    if (json_object_size(base_template) == 0)
        return 0;
    job_config = json_object_get(base_template, "job_configuration");
    variables = json_object_get(base_template, "variables");
    if (!job_config || !render_truthy(job_config) || !variables || !render_truthy(variables)) {
        render_errf(err, errlen, "The `base_job_template` must contain both a "
                    "`job_configuration` key and a `variables` key.");
        return -1;
    }
    if (!json_is_object(job_config) || !json_is_object(variables)) {
        render_errf(err, errlen, "job_configuration and variables must be JSON objects");
        return -1;
    }
    properties = json_object_get(variables, "properties");
    if (properties && !json_is_object(properties)) {
        render_errf(err, errlen, "variables.properties must be a JSON object");
        return -1;
    }
    missing = json_object();
    if (!missing)
        goto nomem;

    /* The server scans each value's json.dumps() text, so keys count too
     * and escaped characters (\n, \uXXXX) never match inside braces. */
    json_object_foreach((json_t *)job_config, key, value) {
        char *text = render_dumps(value, -1);
        struct render_ph ph;
        size_t pos = 0;
        size_t len;

        if (!text)
            goto nomem;
        len = strlen(text);
        while (render_ph_next(text, len, pos, &ph)) {
            char *name = strndup(text + ph.name_start, ph.name_end - ph.name_start);

            pos = ph.end;
            if (!name) {
                free(text);
                goto nomem;
            }
            if (!json_object_get(properties, name))
                json_object_set_new(missing, name, json_true());
            free(name);
        }
        free(text);
    }
    if (json_object_size(missing) > 0) {
        struct render_buf buf = {0};
        char *list;
        int first = 1;

        json_object_foreach(missing, key, value) {
            if (!first)
                render_buf_append(&buf, ", ", 2);
            first = 0;
            render_buf_append(&buf, key, strlen(key));
        }
        list = render_buf_finish(&buf);
        render_errf(err, errlen,
                    "The variables specified in the job configuration template must be present "
                    "as properties in the variables schema. Your job configuration uses the "
                    "following undeclared variable(s): %s.", list ? list : "");
        free(list);
        goto done;
    }
    rc = 0;
    goto done;

nomem:
    render_errf(err, errlen, "out of memory");
done:
    json_decref(missing);
    return rc;
}
