/*
 * Fuzz target for the renderer: the input is a base job template and job
 * variables (JSON), split at the first NUL byte.  The variables may carry
 * "__blocks" and "__variables" objects that stand in for the API's block
 * documents and Prefect variables.  Every stage runs: merge, validation,
 * apply, block and variable resolution, prepare, the template checks and
 * both text forms.  Errors are fine; crashes and leaks are not, and neither
 * is a compiled template or a fused walk that disagrees with the plain
 * functions (the target aborts then).
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

static int same_text(const json_t *a, const json_t *b)
{
    char *ta = render_dumps(a, -1);
    char *tb = render_dumps(b, -1);
    int same = !ta || !tb || strcmp(ta, tb) == 0; /* too long to print is no finding */

    free(ta);
    free(tb);
    return same;
}

/* The compiled path and its block list against render_apply's result
 * (config, NULL when it failed). */
static void check_compiled(const json_t *tmpl, const json_t *merged, const json_t *config)
{
    char err[512];
    struct render_template *compiled = render_template_compile(tmpl, err, sizeof(err));
    json_t *blocks = NULL;
    json_t *out = compiled ? render_template_apply(compiled, merged, fixed_env, NULL, &blocks, err,
                                                   sizeof(err))
                           : NULL;

    if (!out != !config || (out && !same_text(out, config)))
        abort();
    if (out) {
        json_t *walked = render_collect_blocks(out);

        if (walked && !json_equal(walked, blocks))
            abort();
        json_decref(walked);
    }
    json_decref(out);
    json_decref(blocks);
    render_template_free(&compiled);
}

/* render_resolve_blocks_collect against resolve, then collect. */
static void check_resolve_collect(const json_t *config, const json_t *blocks)
{
    char err[512];
    json_t *plain = json_deep_copy(config);
    json_t *fused = json_deep_copy(config);
    int plain_rc = plain ? render_resolve_blocks(plain, blocks, err, sizeof(err)) : -1;
    json_t *names = fused ? render_resolve_blocks_collect(fused, blocks, err, sizeof(err)) : NULL;

    if (plain && fused && (plain_rc == 0) != (names != NULL))
        abort();
    if (names) {
        json_t *walked = render_collect_variables(plain);

        if (!same_text(plain, fused) || (walked && !json_equal(walked, names)))
            abort();
        json_decref(walked);
    }
    json_decref(names);
    json_decref(plain);
    json_decref(fused);
}

/* render_run against the jansson steps and json_dumps: the same text or
 * the same error, with and without the prepare step. */
static void check_run(const json_t *tmpl, const json_t *merged, const json_t *vars,
                      const struct render_context *ctx)
{
    char err_trees[512] = "", err_run[512] = "";
    struct render_template *compiled = render_template_compile(tmpl, err_trees, sizeof(err_trees));
    const json_t *blocks = json_object_get(vars, "__blocks");
    const json_t *values = json_object_get(vars, "__variables");
    json_t *config, *list_trees = NULL, *names_trees = NULL, *list_run = NULL, *names_run = NULL;
    char *text_trees = NULL, *text_run = NULL;
    struct render_run *rr;

    if (!compiled)
        return;
    config = render_template_apply(compiled, merged, fixed_env, NULL, &list_trees, err_trees,
                                   sizeof(err_trees));
    if (config)
        names_trees = render_resolve_blocks_collect(config, blocks, err_trees, sizeof(err_trees));
    if (names_trees && render_resolve_variables(config, values, err_trees, sizeof(err_trees)) == 0 &&
        (!ctx || render_prepare(config, ctx, err_trees, sizeof(err_trees)) == 0))
        text_trees = json_dumps(config, JSON_COMPACT);
    rr = render_run_new(compiled, merged, fixed_env, NULL, &list_run, err_run, sizeof(err_run));
    if (rr)
        names_run = render_run_resolve_blocks(rr, blocks, err_run, sizeof(err_run));
    if (names_run && render_run_resolve_variables(rr, values, err_run, sizeof(err_run)) == 0)
        text_run = render_run_text(rr, ctx, NULL, err_run, sizeof(err_run));
    if (!text_trees != !text_run || (text_run && strcmp(text_trees, text_run) != 0) ||
        (!text_run && strcmp(err_trees, err_run) != 0))
        abort();
    if ((list_trees && !json_equal(list_trees, list_run)) ||
        (names_trees && names_run && !json_equal(names_trees, names_run)))
        abort();
    render_run_free(rr);
    free(text_trees);
    free(text_run);
    json_decref(config);
    json_decref(list_trees);
    json_decref(names_trees);
    json_decref(list_run);
    json_decref(names_run);
    render_template_free(&compiled);
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
    check_compiled(tmpl, merged, config);
    run_json = json_pack("{ssssss}", "id", "6f1b0c1e-5a49-4f7e-9a39-3c1d1d4d1a01", "name", "r",
                         "flow_id", "7b2c6d3e-1f0a-4b6c-8d9e-0a1b2c3d4e5f");
    if (run_json) {
        json_t *settings = json_pack("{ssss}", "PREFECT_API_URL", "http://127.0.0.1:4200/api",
                                     "A", "settings");
        struct render_context ctx = {.flow_run = run_json, .worker_name = "w",
                                     .environ_lookup = fixed_env, .settings_env = settings};

        check_run(tmpl, merged, vars, NULL);
        check_run(tmpl, merged, vars, &ctx);
        json_decref(settings);
        json_decref(run_json);
    }
    json_decref(merged);
    if (!config)
        return;
    check_resolve_collect(config, json_object_get(vars, "__blocks"));
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
