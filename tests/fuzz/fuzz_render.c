/*
 * Fuzz target for the renderer: the input is a base job template and job
 * variables (JSON), split at the first NUL byte.  The variables may carry
 * "__blocks" and "__variables" objects that stand in for the API's block
 * documents and Prefect variables.  Every stage runs: merge, validation,
 * apply, block and variable resolution, prepare, the template checks and
 * both text forms.  Errors are fine; crashes and leaks are not.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

static const char *fixed_env(const char *name, void *arg)
{
    (void)arg;
    return strcmp(name, "HOME") == 0 ? "/home/fuzz" : NULL;
}

static void run(const json_t *tmpl, const json_t *vars)
{
    char err[512];
    json_t *merged;
    json_t *config;
    json_t *list;
    json_t *run_json;
    char *text;

    merged = render_merge_job_variables_checked(vars, json_object_get(vars, "__run"), err,
                                                sizeof(err));
    render_validate(json_object_get(tmpl, "variables"), merged, err, sizeof(err));
    render_check_template(tmpl, err, sizeof(err));
    json_decref(render_default_template(tmpl, err, sizeof(err)));

    config = render_apply(tmpl, merged, fixed_env, NULL, err, sizeof(err));
    json_decref(merged);
    if (!config)
        return;
    list = render_collect_blocks(config);
    json_decref(list);
    if (render_resolve_blocks(config, json_object_get(vars, "__blocks"), err, sizeof(err)) == 0) {
        list = render_collect_variables(config);
        json_decref(list);
        render_resolve_variables(config, json_object_get(vars, "__variables"), err, sizeof(err));
    }
    run_json = json_pack("{ssssss}", "id", "6f1b0c1e-5a49-4f7e-9a39-3c1d1d4d1a01", "name", "r",
                         "flow_id", "7b2c6d3e-1f0a-4b6c-8d9e-0a1b2c3d4e5f");
    if (run_json) {
        struct render_context ctx = {.flow_run = run_json, .worker_name = "w",
                                     .environ_lookup = fixed_env};
        render_prepare(config, &ctx, err, sizeof(err));
        json_decref(run_json);
    }
    text = render_dumps(config, 2);
    free(text);
    text = render_pytext(config);
    free(text);
    json_decref(config);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t tlen = nul ? (size_t)(nul - text) : size;
    json_t *tmpl = json_loadb(text, tlen, JSON_DECODE_ANY, NULL);
    json_t *vars = nul ? json_loadb(nul + 1, size - tlen - 1, JSON_DECODE_ANY, NULL) : json_object();

    if (tmpl && vars)
        run(tmpl, vars);
    json_decref(tmpl);
    json_decref(vars);
    return 0;
}
