/*
 * Compiled templates and the fused walks against the plain functions, on
 * the inputs of every golden case:
 *
 *   - render_template_apply gives what render_apply gives (the same JSON
 *     text, or the same error), also when one compiled template renders
 *     several sets of job variables in a row;
 *   - the block list it returns equals render_collect_blocks on its result;
 *   - render_resolve_blocks_collect leaves what render_resolve_blocks
 *     leaves and returns what render_collect_variables then lists;
 *   - render_run gives the text json_dumps gives for the configuration of
 *     the jansson steps (with and without the prepare step), the same
 *     block and variable lists, and the same errors;
 *   - the prepare step's name, which renders most names without building
 *     the ctx values object, equals render_apply_values with that object.
 *
 * All of it runs with render_pool_install's allocator (except in
 * AddressSanitizer builds, where it installs nothing), after a check that
 * the cache hands out blocks large enough and takes plain malloc blocks.
 *
 * usage: render_compiled CASES_DIR
 */
#include <dirent.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "render.h"
#include "render_compiled.h"
#include "yamljson.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

static int failures;

static void fail(const char *name, const char *what)
{
    fprintf(stderr, "FAIL %s: %s\n", name, what);
    failures++;
}

/* Loads DIR/NAME.json, .yaml or .yml; NULL when none exists. */
static json_t *load_input(const char *dir, const char *name)
{
    static const char *const exts[] = {".json", ".yaml", ".yml"};
    char path[4096];
    char err[512];
    struct stat st;

    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s%s", dir, name, exts[i]);
        if (stat(path, &st) == 0)
            return yamljson_load_file(path, err, sizeof(err));
    }
    return NULL;
}

static const char *environ_lookup(const char *name, void *arg)
{
    return json_string_value(json_object_get(arg, name));
}

/* Whether two values print the same (both NULL counts as the same). */
static int same_json(const json_t *a, const json_t *b)
{
    char *ta;
    char *tb;
    int same;

    if (!a || !b)
        return a == b;
    ta = render_dumps(a, -1);
    tb = render_dumps(b, -1);
    same = ta && tb && strcmp(ta, tb) == 0;
    free(ta);
    free(tb);
    return same;
}

/* render_template_apply against render_apply for one set of job
 * variables; returns the compiled result (or NULL) and its block list. */
static json_t *check_apply(const char *name, const json_t *base,
                           const struct render_template *tmpl, const json_t *vars,
                           json_t *environ, json_t **blocks)
{
    char err_plain[1024] = "";
    char err_compiled[1024] = "";
    json_t *plain = render_apply(base, vars, environ ? environ_lookup : NULL, environ, err_plain,
                                 sizeof(err_plain));
    json_t *compiled = render_template_apply(tmpl, vars, environ ? environ_lookup : NULL, environ,
                                             blocks, err_compiled, sizeof(err_compiled));

    if (!plain != !compiled)
        fail(name, "render_apply and render_template_apply disagree on failing");
    else if (!plain && strcmp(err_plain, err_compiled) != 0)
        fail(name, "render_apply and render_template_apply give different errors");
    else if (!same_json(plain, compiled))
        fail(name, "render_apply and render_template_apply give different configurations");
    if (compiled && !*blocks) {
        fail(name, "render_template_apply returned no block list");
    } else if (compiled) {
        json_t *walked = render_collect_blocks(compiled);

        if (!json_equal(walked, *blocks))
            fail(name, "block list differs from render_collect_blocks");
        json_decref(walked);
    }
    json_decref(plain);
    return compiled;
}

/* render_resolve_blocks_collect against render_resolve_blocks followed by
 * render_collect_variables, each on its own copy of config. */
static void check_resolve(const char *name, const json_t *config, const json_t *values)
{
    const json_t *data = json_object_get(values, "blocks");
    json_t *plain = json_deep_copy(config);
    json_t *fused = json_deep_copy(config);
    char err[1024];
    int plain_rc = render_resolve_blocks(plain, data, err, sizeof(err));
    json_t *names = render_resolve_blocks_collect(fused, data, err, sizeof(err));

    if ((plain_rc == 0) != (names != NULL)) {
        fail(name, "render_resolve_blocks and render_resolve_blocks_collect disagree on failing");
    } else if (names) {
        json_t *walked = render_collect_variables(plain);

        if (!same_json(plain, fused))
            fail(name, "render_resolve_blocks_collect resolves differently");
        if (!json_equal(walked, names))
            fail(name, "variable list differs from render_collect_variables");
        json_decref(walked);
    }
    json_decref(names);
    json_decref(plain);
    json_decref(fused);
}

static int fast_runs;

/* The jansson steps and their text; NULL with err when a step fails. */
static char *trees_text(const struct render_template *tmpl, const json_t *vars,
                        json_t *environ, const json_t *values,
                        const struct render_context *ctx, json_t **blocks, json_t **names,
                        char *err, size_t errlen)
{
    json_t *config = render_template_apply(tmpl, vars, environ ? environ_lookup : NULL, environ,
                                           blocks, err, errlen);
    char *text = NULL;

    if (!config)
        return NULL;
    *names = render_resolve_blocks_collect(config, json_object_get(values, "blocks"), err,
                                           errlen);
    if (*names &&
        render_resolve_variables(config, json_object_get(values, "variables"), err, errlen) == 0 &&
        (!ctx || render_prepare(config, ctx, err, errlen) == 0))
        text = json_dumps(config, JSON_COMPACT);
    json_decref(config);
    return text;
}

/* render_run's text, lists and errors against the jansson steps'. */
static void check_run(const char *name, const struct render_template *tmpl, const json_t *vars,
                      json_t *environ, const json_t *values, const struct render_context *ctx)
{
    char err_trees[1024] = "";
    char err_run[1024] = "";
    json_t *blocks_trees = NULL, *names_trees = NULL;
    json_t *blocks_run = NULL, *names_run = NULL;
    char *text_trees = trees_text(tmpl, vars, environ, values, ctx, &blocks_trees, &names_trees,
                                  err_trees, sizeof(err_trees));
    char *text_run = NULL;
    size_t len = 0;
    struct render_run *rr = render_run_new(tmpl, vars, environ ? environ_lookup : NULL, environ,
                                           &blocks_run, err_run, sizeof(err_run));

    if (rr && !(names_run = render_run_resolve_blocks(rr, json_object_get(values, "blocks"),
                                                      err_run, sizeof(err_run)))) {
    } else if (rr && render_run_resolve_variables(rr, json_object_get(values, "variables"),
                                                  err_run, sizeof(err_run)) == 0) {
        text_run = render_run_text(rr, ctx, &len, err_run, sizeof(err_run));
    }
    if (!text_trees != !text_run) {
        fprintf(stderr, "  jansson steps: %s\n  render_run: %s\n",
                text_trees ? "rendered" : err_trees, text_run ? "rendered" : err_run);
        fail(name, "render_run and the jansson steps disagree on failing");
    } else if (!text_trees && strcmp(err_trees, err_run) != 0) {
        fprintf(stderr, "  jansson steps: %s\n  render_run: %s\n", err_trees, err_run);
        fail(name, "render_run and the jansson steps give different errors");
    } else if (text_trees && (strcmp(text_trees, text_run) != 0 || len != strlen(text_run))) {
        fprintf(stderr, "  jansson steps: %s\n  render_run:    %s\n", text_trees, text_run);
        fail(name, "render_run and the jansson steps give different text");
    }
    if (blocks_trees && !json_equal(blocks_trees, blocks_run))
        fail(name, "render_run lists other blocks");
    if (names_trees && names_run && !json_equal(names_trees, names_run))
        fail(name, "render_run lists other variables");
    if (rr && text_run && render_run_is_fast(rr))
        fast_runs++;
    render_run_free(rr);
    free(text_trees);
    free(text_run);
    json_decref(blocks_trees);
    json_decref(names_trees);
    json_decref(blocks_run);
    json_decref(names_run);
}

/* check_run without the prepare step, with the case's flow run (or a
 * made-up one), and with settings that clash with the rendered env. */
static void check_runs(const char *name, const char *dir, const struct render_template *tmpl,
                       const json_t *vars, json_t *environ, const json_t *values)
{
    json_t *flow_run = load_input(dir, "flow-run");
    json_t *flow = load_input(dir, "flow");
    json_t *deployment = load_input(dir, "deployment");
    json_t *pool = load_input(dir, "work-pool");
    json_t *settings = json_pack("{sssnss}", "PREFECT_API_URL", "http://127.0.0.1:4200/api",
                                 "PREFECT_API_KEY", "PREFECT__FLOW_RUN_ID", "settings");
    struct render_context ctx = {
        .flow_run = flow_run,
        .flow = flow,
        .deployment = deployment,
        .work_pool_name = json_string_value(json_object_get(pool, "name")),
        .work_pool_id = json_string_value(json_object_get(pool, "id")),
        .worker_name = "worker-1",
        .environ_lookup = environ ? environ_lookup : NULL,
        .environ_arg = environ,
    };

    if (!flow_run)
        ctx.flow_run = flow_run = json_pack("{ssssssss}", "id",
                                            "6f1b0c1e-5a49-4f7e-9a39-3c1d1d4d1a01", "name",
                                            "crimson-owl", "flow_id",
                                            "7b2c6d3e-1f0a-4b6c-8d9e-0a1b2c3d4e5f",
                                            "deployment_id",
                                            "{0B1D2C3E-4F5A-4B6C-8D7E-9F0A1B2C3D4E}");
    check_run(name, tmpl, vars, environ, values, NULL);
    check_run(name, tmpl, vars, environ, values, &ctx);
    ctx.settings_env = settings;
    ctx.worker_id = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    ctx.prefect_version = "3.9.1";
    check_run(name, tmpl, vars, environ, values, &ctx);
    json_decref(flow_run);
    json_decref(flow);
    json_decref(deployment);
    json_decref(pool);
    json_decref(settings);
}

static void check_case(const char *cases, const char *name)
{
    char dir[4096];
    char err[1024];
    json_t *base;
    json_t *deployment_vars;
    json_t *run_vars;
    json_t *values;
    json_t *environ;
    json_t *vars;
    struct render_template *tmpl;

    snprintf(dir, sizeof(dir), "%s/%s", cases, name);
    base = load_input(dir, "template");
    if (!base)
        return; /* a declared-schema case or a template that does not parse */
    deployment_vars = load_input(dir, "deployment-vars");
    run_vars = load_input(dir, "run-vars");
    values = load_input(dir, "values");
    environ = load_input(dir, "environ");
    vars = render_merge_job_variables(deployment_vars, run_vars);
    tmpl = render_template_compile(base, err, sizeof(err));

    if (!tmpl) {
        char err_plain[1024] = "";

        if (render_apply(base, vars, NULL, NULL, err_plain, sizeof(err_plain)) != NULL)
            fail(name, "render_template_compile fails where render_apply succeeds");
        else if (strcmp(err, err_plain) != 0)
            fail(name, "render_template_compile and render_apply give different errors");
    } else if (vars) {
        /* The same compiled template renders, in a row, no job variables,
         * the deployment's alone and the merged ones. */
        const json_t *sets[] = {NULL, deployment_vars, vars};

        for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
            json_t *blocks = NULL;
            json_t *config = check_apply(name, base, tmpl, sets[i], environ, &blocks);

            if (config && i == 2)
                check_resolve(name, config, values);
            check_runs(name, dir, tmpl, sets[i], environ, values);
            json_decref(config);
            json_decref(blocks);
        }
    }
    render_template_free(&tmpl);
    json_decref(base);
    json_decref(deployment_vars);
    json_decref(run_vars);
    json_decref(values);
    json_decref(environ);
    json_decref(vars);
}

/* The name the prepare step gives for each template in a table, against
 * render_apply_values with {"ctx": {"flow": ..., "flow_run": ...}}, with
 * and without a flow. */
static void check_names(void)
{
    static const char *const names[] = {
        "job-{{ ctx.flow_run.name }}",
        "{{ctx.flow_run.name}}-{{ ctx.flow.name }}",
        "x{{ ctx.flow_run.tags[0] }}",
        "x{{ ctx.flow_run.tags[1] }}|{{ ctx.flow_run.tags.0 }}",
        "x{{ ctx.flow_run.parameters.a.b }}/{{ ctx.flow_run.parameters[a][b] }}",
        "a{{ ctx.flow_run. }}b",
        "a{{ ctx.flow_run.]name }}b",
        "a{{ ctx.flow_run.name] }}b",
        "{{ ctx.flow.name }}y",
        "{{ ctx.flow.id }}{{ ctx.flow. }}",
        "{{ ctx.flow_run.missing }}z",
        "{{ ctx.flow_run.missing }}{{ ctx.flow.missing }}",
        "p{{ prefect.blocks.a.b }}-{{ ctx.flow_run.name }}",
        "p{{ prefect.variables.v }}{{ctx.flow_run.id}}",
        "{{ ctx.flow_run.name }}",
        "{{ ctx.flow_run.missing }}",
        "n{{ $HOME }}{{ ctx.flow_run.name }}",
        "{{ ctx.flow_run.state.type }}x",
        "{{ ctx.flow_run.parameters }}x",
        "{{ ctx.flow_run.tags }}x",
        "{{ ctx.flow_run.run_count }}x{{ ctx.flow_run.flag }}{{ ctx.flow_run.none }}",
        "{{ ctx.flow_run.ratio }}x",
        "{{ ctx }}x{{ ctx.flow_run }}",
        "{{ ctx.flow_runs.name }}x{{ ctx.flows.name }}",
        "{{ other.flow_run.name }}x",
        "\u00e9{{ ctx.flow_run.name }}\u00e9",
        "{{ ctx.flow_run.name }}{{ ctx.flow_run.name }}",
        "{ {{ ctx.flow_run.name }} }",
        "{{ ctx.flow_run.name }",
        "",
        "plain",
    };
    json_t *run = json_pack("{ss ss s[ss] s{s{si}} s{ss} si sb sn sf}", "id",
                            "6f1b0c1e-5a49-4f7e-9a39-3c1d1d4d1a01", "name", "crimson-owl",
                            "tags", "t0", "t1", "parameters", "a", "b", 3, "state", "type",
                            "RUNNING", "run_count", 2, "flag", 1, "none", "ratio", 0.5);
    json_t *flow = json_pack("{ssss}", "id", "7b2c6d3e-1f0a-4b6c-8d9e-0a1b2c3d4e5f", "name",
                             "etl");
    json_t *run_name = json_object_get(run, "name");

    for (int with_flow = 0; with_flow < 2; with_flow++) {
        struct render_context ctx = {.flow_run = run, .flow = with_flow ? flow : NULL};
        json_t *flow_value = with_flow ? json_incref(flow) : json_object();
        json_t *values = json_pack("{s{sosO}}", "ctx", "flow", flow_value, "flow_run", run);

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            char err[512];
            json_t *name = json_string(names[i]);
            json_t *expected = NULL;
            json_t *got = render_prepare_name(&ctx, name, run_name, err, sizeof(err));

            if (render_apply_values(name, values, NULL, NULL, &expected, err, sizeof(err)) < 0)
                expected = NULL;
            else if (!expected)
                expected = json_incref(name);
            if (expected && !render_truthy(expected)) {
                json_decref(expected);
                expected = json_incref(run_name);
            }
            if (!expected || !got || !same_json(expected, got)) {
                fprintf(stderr, "  name template: %s (flow %s)\n", names[i],
                        with_flow ? "given" : "absent");
                fail("names", "the prepare step renders a name differently");
            }
            json_decref(name);
            json_decref(expected);
            json_decref(got);
        }
        json_decref(values);
    }
    json_decref(run);
    json_decref(flow);
}

/* Blocks of every size up to past the cached ones, twice, so the second
 * round reuses cached blocks; blocks from malloc are freed into it too. */
static void check_pool(void)
{
    enum { sizes = RENDER_POOL_MAX_SIZE + 64 };
    static unsigned char *blocks[sizes];

    for (int round = 0; round < 2; round++) {
        for (size_t size = 0; size < sizes; size++) {
            blocks[size] = render_pool_malloc(size);
            if (!blocks[size] || malloc_usable_size(blocks[size]) < size)
                fail("pool", "block smaller than requested");
            else if (size > 0)
                memset(blocks[size], 0xA5, size);
        }
        for (size_t size = 0; size < sizes; size++)
            render_pool_free(blocks[size]);
    }
    for (size_t size = 1; size < sizes; size += 7)
        render_pool_free(malloc(size));
    render_pool_free(NULL);
}

int main(int argc, char **argv)
{
    DIR *d;
    struct dirent *entry;
    int cases = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: render_compiled CASES_DIR\n");
        return 2;
    }
    check_pool();
    render_pool_install();
    check_names();
    d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 2;
    }
    while ((entry = readdir(d)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        check_case(argv[1], entry->d_name);
        cases++;
    }
    closedir(d);
    printf("%d cases, %d renders by render_run without jansson trees, %d failures\n", cases,
           fast_runs, failures);
    if (fast_runs < cases) {
        fprintf(stderr, "FAIL: render_run rendered fewer cases than expected without jansson "
                        "trees\n");
        failures++;
    }
    return failures ? 1 : 0;
}
