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
 * returns an error naming the value.  This file contains the checks and the
 * dotted-key and env steps; render_compile.c compiles the template and
 * runs the substitution, and render_apply compiles for each call.
 */
#include <string.h>

#include "render.h"

/* json_copy for an object: a new object sharing the members' values.
 * The keys come from an object, so they need no UTF-8 check. */
static json_t *shallow_copy(const json_t *object)
{
    json_t *copy = json_object();
    const char *key;
    json_t *value;
    void *iter;

    if (!copy)
        return NULL;
    RENDER_OBJECT_FOREACH((json_t *)object, iter, key, value) {
        if (json_object_setn_nocheck(copy, key, json_object_iter_key_len(iter), value) < 0) {
            json_decref(copy);
            return NULL;
        }
    }
    return copy;
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
                    render_type_name(deployment_vars));
        return NULL;
    }
    if (run_vars && !json_is_null(run_vars) && !json_is_object(run_vars)) {
        render_errf(err, errlen, "flow run job variables must be an object, not %s",
                    render_type_name(run_vars));
        return NULL;
    }
    merged = json_is_object(deployment_vars) ? shallow_copy(deployment_vars) : json_object();
    if (!merged)
        goto nomem;
    if (!json_is_object(run_vars))
        return merged;

    dep_env = json_object_get(merged, "env");
    if (json_is_object(dep_env)) {
        json_t *run_env = json_object_get(run_vars, "env");
        json_t *env = shallow_copy(dep_env);

        if (!env)
            goto nomem;
        if (run_env && !json_is_object(run_env)) {
            json_decref(env);
            render_errf(err, errlen,
                        "flow run job variable env must be an object to update the "
                        "deployment's env, not %s", render_type_name(run_env));
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

/* _get_base_config_defaults reads every property's "default"; `"default"
 * in attrs` also runs on non-objects in Python, which raises unless attrs
 * is an array or string without "default".  The defaults themselves are
 * looked up in place (render_lookup_layered), not copied. */
int render_check_properties(const json_t *properties, char *err, size_t errlen)
{
    const char *name;
    json_t *attrs;

    json_object_foreach((json_t *)properties, name, attrs) {
        if (json_is_object(attrs))
            continue;
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
                    name, render_type_name(attrs));
        return -1;
    }
    return 0;
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
                        key, seg, render_type_name(child));
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

static int has_dotted_key(const json_t *job_vars)
{
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)job_vars, key, value)
        if (strchr(key, '.'))
            return 1;
    return 0;
}

static int env_union_check(const json_t *b, const char *what, char *err, size_t errlen)
{
    if (json_is_object(b))
        return 0;
    render_errf(err, errlen, "%s must be an object to merge into job_configuration.env, not %s",
                what, render_type_name(b));
    return -1;
}

int render_effective_env(const json_t *config_env, const json_t *default_env,
                         const json_t *vars_env, struct render_env_layers *env, char *err,
                         size_t errlen)
{
    env->n = 0;
    if (config_env)
        env->layer[env->n++] = config_env;
    if (default_env && render_truthy(default_env)) {
        if (env->n && json_is_object(env->layer[0])) {
            if (env_union_check(default_env, "the default of variable env", err, errlen) < 0)
                return -1;
            env->layer[env->n++] = default_env;
        } else {
            env->layer[0] = default_env;
            env->n = 1;
        }
    }
    if (env->n && json_is_object(env->layer[0]) && vars_env && render_truthy(vars_env)) {
        if (env_union_check(vars_env, "job variable env", err, errlen) < 0)
            return -1;
        env->layer[env->n++] = vars_env;
    }
    return 0;
}

json_t *render_expand_dotted(const json_t *job_vars, char *err, size_t errlen)
{
    json_t *vars;

    if (json_is_object(job_vars) && has_dotted_key(job_vars))
        return transform_dotted(job_vars, err, errlen);
    vars = json_is_object(job_vars) ? json_incref((json_t *)job_vars) : json_object();
    if (!vars)
        render_errf(err, errlen, "out of memory");
    return vars;
}

json_t *render_apply(const json_t *base_template, const json_t *job_vars,
                     render_getenv_fn environ_lookup, void *environ_arg,
                     char *err, size_t errlen)
{
    struct render_template *tmpl = render_template_compile(base_template, err, errlen);
    json_t *result;

    if (!tmpl)
        return NULL;
    result = render_template_apply(tmpl, job_vars, environ_lookup, environ_arg, NULL, err,
                                   errlen);
    render_template_free(&tmpl);
    return result;
}
