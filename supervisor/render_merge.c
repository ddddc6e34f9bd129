/*
 * Job variable merging with Prefect's rules, and render_apply.
 *
 * render_merge_job_variables is the merge of BaseJobConfiguration
 * .resolve_for_flow_run: deployment variables, env updated key by key from
 * the run's env, then every other run key overwriting.
 *
 * render_apply is from_template_and_values up to apply_values: non-null
 * schema defaults, the default env seeded into job_configuration.env,
 * dotted keys ("env.FOO") expanded with set_in_dict and deep-merged under
 * the plain keys, the env union, and the substitution itself.  Where
 * Prefect raises (TypeError, AttributeError, KeyError) this module
 * returns an error naming the value.
 */
#include <string.h>

#include "render.h"

static const char *type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

json_t *render_merge_job_variables_checked(const json_t *deployment_vars, const json_t *run_vars,
                                           char *err, size_t errlen)
{
    json_t *merged = NULL;
    json_t *dep_env;
    const char *key;
    json_t *value;

    if (deployment_vars && !json_is_null(deployment_vars) && !json_is_object(deployment_vars)) {
        render_errf(err, errlen, "deployment job variables must be an object, not %s",
                    type_name(deployment_vars));
        return NULL;
    }
    if (run_vars && !json_is_null(run_vars) && !json_is_object(run_vars)) {
        render_errf(err, errlen, "flow run job variables must be an object, not %s",
                    type_name(run_vars));
        return NULL;
    }
    merged = json_is_object(deployment_vars) ? json_copy((json_t *)deployment_vars) : json_object();
    if (!merged)
        goto nomem;
    if (!json_is_object(run_vars))
        return merged;

    dep_env = json_object_get(merged, "env");
    if (json_is_object(dep_env)) {
        json_t *run_env = json_object_get(run_vars, "env");
        json_t *env = json_copy(dep_env);

        if (!env)
            goto nomem;
        if (run_env && !json_is_object(run_env)) {
            json_decref(env);
            render_errf(err, errlen,
                        "flow run job variable env must be an object to update the "
                        "deployment's env, not %s", type_name(run_env));
            json_decref(merged);
            return NULL;
        }
        if (run_env && json_object_update(env, run_env) < 0) {
            json_decref(env);
            goto nomem;
        }
        if (json_object_set_new(merged, "env", env) < 0)
            goto nomem;
        json_object_foreach((json_t *)run_vars, key, value) {
            if (strcmp(key, "env") == 0)
                continue;
            if (json_object_set(merged, key, value) < 0)
                goto nomem;
        }
        return merged;
    }
    if (json_object_update(merged, (json_t *)run_vars) < 0)
        goto nomem;
    return merged;

nomem:
    json_decref(merged);
    render_errf(err, errlen, "out of memory");
    return NULL;
}

json_t *render_merge_job_variables(const json_t *deployment_vars, const json_t *run_vars)
{
    return render_merge_job_variables_checked(deployment_vars, run_vars, NULL, 0);
}

/* _get_base_config_defaults: every property whose schema has a non-null
 * default.  `"default" in attrs` also runs on non-objects in Python, which
 * raises unless attrs is an array or string without "default". */
static json_t *collect_defaults(const json_t *properties, char *err, size_t errlen)
{
    json_t *defaults = json_object();
    const char *name;
    json_t *attrs;

    if (!defaults) {
        render_errf(err, errlen, "out of memory");
        return NULL;
    }
    json_object_foreach((json_t *)properties, name, attrs) {
        json_t *def;

        if (json_is_object(attrs)) {
            def = json_object_get(attrs, "default");
            if (def && !json_is_null(def) && json_object_set(defaults, name, def) < 0) {
                render_errf(err, errlen, "out of memory");
                goto fail;
            }
            continue;
        }
        if (json_is_array(attrs)) {
            size_t i;
            json_t *item;
            int has = 0;

            json_array_foreach(attrs, i, item)
                if (json_is_string(item) && strcmp(json_string_value(item), "default") == 0)
                    has = 1;
            if (!has)
                continue;
        } else if (json_is_string(attrs) && !strstr(json_string_value(attrs), "default")) {
            continue;
        }
        render_errf(err, errlen, "variables.properties.%s must be an object (a JSON schema), not %s",
                    name, type_name(attrs));
        goto fail;
    }
    return defaults;

fail:
    json_decref(defaults);
    return NULL;
}

/* Python's dict union a | b into a new object; b must be an object. */
static json_t *dict_union(const json_t *a, const json_t *b, const char *what, char *err,
                          size_t errlen)
{
    json_t *result;

    if (!json_is_object(b)) {
        render_errf(err, errlen, "%s must be an object to merge into job_configuration.env, not %s",
                    what, type_name(b));
        return NULL;
    }
    result = json_copy((json_t *)a);
    if (!result || json_object_update(result, (json_t *)b) < 0) {
        json_decref(result);
        render_errf(err, errlen, "out of memory");
        return NULL;
    }
    return result;
}

/* set_in_dict(root, key, value) for a key with dots. */
static int set_dotted(json_t *root, const char *key, json_t *value, char *err, size_t errlen)
{
    char *path = strdup(key);
    char *w = path;
    char *seg;
    json_t *node = root;
    int rc = -1;

    if (!path) {
        render_errf(err, errlen, "out of memory");
        return -1;
    }
    /* '[' becomes '.', ']' disappears, as in Python. */
    for (const char *r = key; *r; r++) {
        if (*r == ']')
            continue;
        *w++ = *r == '[' ? '.' : *r;
    }
    *w = '\0';

    seg = path;
    for (;;) {
        char *dot = strchr(seg, '.');
        json_t *child;

        if (!dot) {
            if (json_object_set(node, seg, value) < 0) {
                render_errf(err, errlen, "out of memory");
                goto done;
            }
            break;
        }
        *dot = '\0';
        child = json_object_get(node, seg);
        if (child && !json_is_object(child)) {
            render_errf(err, errlen,
                        "job variable \"%s\" sets a key below \"%s\", which is already %s",
                        key, seg, type_name(child));
            goto done;
        }
        if (!child) {
            child = json_object();
            if (!child || json_object_set_new(node, seg, child) < 0) {
                render_errf(err, errlen, "out of memory");
                goto done;
            }
        }
        node = child;
        seg = dot + 1;
    }
    rc = 0;

done:
    free(path);
    return rc;
}

/* deep_merge(a, b) into a new object: b wins, objects merged recursively. */
static json_t *deep_merge(const json_t *a, const json_t *b)
{
    json_t *result = json_copy((json_t *)a);
    const char *key;
    json_t *value;

    if (!result)
        return NULL;
    json_object_foreach((json_t *)b, key, value) {
        json_t *mine = json_object_get(result, key);
        int rc;

        if (json_is_object(mine) && json_is_object(value))
            rc = json_object_set_new(result, key, deep_merge(mine, value));
        else
            rc = json_object_set(result, key, value);
        if (rc < 0) {
            json_decref(result);
            return NULL;
        }
    }
    return result;
}

static json_t *transform_dotted(const json_t *job_vars, char *err, size_t errlen)
{
    json_t *out = json_object();
    const char *key;
    json_t *value;

    if (!out)
        goto nomem;
    json_object_foreach((json_t *)job_vars, key, value) {
        if (strchr(key, '.') && set_dotted(out, key, value, err, errlen) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    json_object_foreach((json_t *)job_vars, key, value) {
        json_t *have;
        int rc;

        if (strchr(key, '.'))
            continue;
        have = json_object_get(out, key);
        if (json_is_object(have) && json_is_object(value))
            rc = json_object_set_new(out, key, deep_merge(have, value));
        else
            rc = json_object_set(out, key, value);
        if (rc < 0)
            goto nomem;
    }
    return out;

nomem:
    json_decref(out);
    render_errf(err, errlen, "out of memory");
    return NULL;
}

/* Seeds job_configuration.env from the default env and merges the job
 * variables' env into it, both only when truthy, as Prefect does. */
static int merge_env(json_t *config, const json_t *env_value, const char *what, int replace_when_not_object,
                     char *err, size_t errlen)
{
    json_t *config_env = json_object_get(config, "env");
    json_t *merged;

    if (!env_value || !render_truthy(env_value))
        return 0;
    if (!json_is_object(config_env)) {
        if (!replace_when_not_object)
            return 0;
        return json_object_set(config, "env", (json_t *)env_value) < 0 ? -1 : 0;
    }
    merged = dict_union(config_env, env_value, what, err, errlen);
    if (!merged)
        return -1;
    return json_object_set_new(config, "env", merged) < 0 ? -1 : 0;
}

json_t *render_apply(const json_t *base_template, const json_t *job_vars,
                     render_getenv_fn environ_lookup, void *environ_arg,
                     char *err, size_t errlen)
{
    const json_t *job_config;
    const json_t *variables;
    const json_t *properties;
    json_t *values = NULL;
    json_t *config = NULL;
    json_t *transformed = NULL;
    json_t *rendered = NULL;
    json_t *empty = NULL;

    if (!json_is_object(base_template)) {
        render_errf(err, errlen, "the base job template must be an object");
        goto done;
    }
    job_config = json_object_get(base_template, "job_configuration");
    variables = json_object_get(base_template, "variables");
    if (!json_is_object(job_config)) {
        render_errf(err, errlen, "the base job template's job_configuration must be an object, not %s",
                    job_config ? type_name(job_config) : "missing");
        goto done;
    }
    if (!json_is_object(variables)) {
        render_errf(err, errlen, "the base job template's variables must be an object, not %s",
                    variables ? type_name(variables) : "missing");
        goto done;
    }
    properties = json_object_get(variables, "properties");
    if (!properties)
        properties = empty = json_object();
    if (!json_is_object(properties)) {
        render_errf(err, errlen, "variables.properties must be an object, not %s",
                    type_name(properties));
        goto done;
    }
    if (job_vars && !json_is_null(job_vars) && !json_is_object(job_vars)) {
        render_errf(err, errlen, "job variables must be an object, not %s", type_name(job_vars));
        goto done;
    }

    values = collect_defaults(properties, err, errlen);
    if (!values)
        goto done;
    config = json_copy((json_t *)job_config);
    if (!config)
        goto nomem;
    if (merge_env(config, json_object_get(values, "env"), "the default of variable env", 1, err,
                  errlen) < 0)
        goto done;

    if (json_is_object(job_vars)) {
        transformed = transform_dotted(job_vars, err, errlen);
        if (!transformed)
            goto done;
        if (json_object_update(values, transformed) < 0)
            goto nomem;
    }
    if (merge_env(config, json_object_get(values, "env"), "job variable env", 0, err, errlen) < 0)
        goto done;

    if (render_apply_values(config, values, environ_lookup, environ_arg, &rendered, err, errlen) < 0)
        goto done;
    goto done;

nomem:
    render_errf(err, errlen, "out of memory");
done:
    json_decref(empty);
    json_decref(values);
    json_decref(config);
    json_decref(transformed);
    return rendered;
}
