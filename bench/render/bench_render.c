/*
 * Renders per second on one core for a realistic job template: 50
 * configuration fields (whole-string, inline and literal values), 20 env
 * entries, deployment and flow-run job variables, 2 block references
 * resolved from an in-memory cache, one Prefect variable, and the prepare
 * step.  Prints the median of several timed runs.
 *
 * usage: bench_render [RENDERS_PER_RUN [RUNS [run|trees]]]
 *
 * Both ways of rendering are timed by turns unless one is named.  "run" is
 * render_run, the supervisor's path, and "trees" is the jansson steps
 * followed by json_dumps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "render.h"

static json_t *build_template(void)
{
    json_t *config = json_object();
    json_t *props = json_object();
    json_t *env = json_object();
    char key[64], text[128];

    /* The base fields lead, in the order a derived default template has. */
    json_object_set_new(config, "command", json_string("{{ command }}"));
    json_object_set_new(config, "env", json_object());
    json_object_set_new(config, "labels", json_string("{{ labels }}"));
    json_object_set_new(config, "name", json_string("{{ name }}"));
    json_object_set_new(props, "command", json_pack("{sn}", "default"));
    json_object_set_new(props, "labels", json_pack("{ss}", "type", "object"));
    json_object_set_new(props, "name", json_pack("{ss}", "default", "job-{{ ctx.flow_run.name }}"));
    json_object_set_new(props, "env", json_pack("{ss}", "type", "object"));

    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "VAR_%02d", i);
        if (i % 4 == 0)
            snprintf(text, sizeof(text), "{{ field_%02d }}", i);
        else if (i % 4 == 1)
            snprintf(text, sizeof(text), "prefix-{{ field_%02d }}-suffix", i);
        else
            snprintf(text, sizeof(text), "constant-value-%d", i);
        json_object_set_new(env, key, json_string(text));
    }
    json_object_set_new(config, "env", env);

    for (int i = 0; i < 46; i++) {
        snprintf(key, sizeof(key), "field_%02d", i);
        if (i % 3 == 0)
            snprintf(text, sizeof(text), "{{ field_%02d }}", i);
        else if (i % 3 == 1)
            snprintf(text, sizeof(text), "img:{{ field_%02d }}-{{ field_%02d }}", i, (i + 1) % 46);
        else
            snprintf(text, sizeof(text), "{{ field_%02d }}", i);
        json_object_set_new(config, key, json_string(text));
        json_object_set_new(props, key,
                            i % 2 ? json_pack("{sssi}", "type", "integer", "default", i)
                                  : json_pack("{ssss}", "type", "string", "default", "value"));
    }
    json_object_set_new(config, "token", json_string("{{ token }}"));
    json_object_set_new(props, "token",
                        json_pack("{ss}", "default", "{{ prefect.blocks.secret.api-token }}"));
    json_object_set_new(config, "credentials", json_string("{{ credentials }}"));
    json_object_set_new(props, "credentials",
                        json_pack("{s{s{ss}}}", "default", "$ref", "block_document_id",
                                  "0b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"));
    json_object_set_new(config, "image", json_string("repo/app:{{ prefect.variables.tag }}"));
    return json_pack("{soso}", "job_configuration", config, "variables",
                     json_pack("{ssso}", "type", "object", "properties", props));
}

/* CPU time of this process: on a shared machine it counts only the cycles
 * spent rendering, where wall time also counts waiting for a core. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct inputs {
    const struct render_template *tmpl;
    json_t *dep, *run, *blocks, *vars;
    struct render_context ctx;
};

/* The jansson steps, then the text the supervisor sends. */
static int render_trees(const struct inputs *in, char *err, size_t errlen)
{
    json_t *merged = render_merge_job_variables(in->dep, in->run);
    json_t *refs;
    json_t *config = render_template_apply(in->tmpl, merged, NULL, NULL, &refs, err, errlen);
    char *text;

    if (!config)
        return -1;
    /* The supervisor's steps: each list is fetched from the API. */
    json_decref(refs);
    refs = render_resolve_blocks_collect(config, in->blocks, err, errlen);
    json_decref(refs);
    if (!refs || render_resolve_variables(config, in->vars, err, errlen) < 0 ||
        render_prepare(config, &in->ctx, err, errlen) < 0)
        return -1;
    text = json_dumps(config, JSON_COMPACT);
    if (!text)
        return -1;
    free(text);
    json_decref(config);
    json_decref(merged);
    return 0;
}

/* The supervisor's render: render_run from the compiled template to text. */
static int render_arena(const struct inputs *in, char *err, size_t errlen)
{
    json_t *merged = render_merge_job_variables(in->dep, in->run);
    json_t *refs;
    struct render_run *rr = render_run_new(in->tmpl, merged, NULL, NULL, &refs, err, errlen);
    char *text;

    if (!rr)
        return -1;
    json_decref(refs);
    refs = render_run_resolve_blocks(rr, in->blocks, err, errlen);
    json_decref(refs);
    if (!refs || render_run_resolve_variables(rr, in->vars, err, errlen) < 0 ||
        (text = render_run_text(rr, &in->ctx, NULL, err, errlen)) == NULL)
        return -1;
    if (!render_run_is_fast(rr)) {
        snprintf(err, errlen, "render_run used the jansson steps");
        return -1;
    }
    free(text);
    render_run_free(rr);
    json_decref(merged);
    return 0;
}

struct mode {
    const char *name;
    int (*render)(const struct inputs *in, char *err, size_t errlen);
    double *rates, *cpu_rates;
};

int main(int argc, char **argv)
{
    int per_run = argc > 1 ? atoi(argv[1]) : 20000;
    int runs = argc > 2 ? atoi(argv[2]) : 7;
    const char *only = argc > 3 ? argv[3] : NULL;
    json_t *base = build_template();
    struct render_template *tmpl;
    struct inputs in;
    json_t *flow_run = json_pack("{ssssss}", "id", "6f1b0c1e-5a49-4f7e-9a39-3c1d1d4d1a01", "name",
                                 "crimson-owl", "flow_id", "7b2c6d3e-1f0a-4b6c-8d9e-0a1b2c3d4e5f");
    json_t *flow = json_pack("{ssss}", "id", "7b2c6d3e-1f0a-4b6c-8d9e-0a1b2c3d4e5f", "name", "etl");
    json_t *settings = json_pack("{ss}", "PREFECT_API_URL", "http://127.0.0.1:4200/api");
    struct mode modes[] = {
        {"run", render_arena, NULL, NULL},
        {"trees", render_trees, NULL, NULL},
    };
    size_t nmodes = sizeof(modes) / sizeof(modes[0]);
    char err[512];

    if (per_run <= 0 || runs <= 0 || !base ||
        (only && strcmp(only, "run") != 0 && strcmp(only, "trees") != 0)) {
        fprintf(stderr, "usage: bench_render [RENDERS_PER_RUN [RUNS [run|trees]]]\n");
        return 2;
    }
    in.dep = json_pack("{s{ssss}sisssi}", "env", "VAR_00", "override", "EXTRA", "1",
                       "field_01", 7, "field_02", "deployment", "field_03", 3);
    in.run = json_pack("{s{ss}si}", "env", "VAR_04", "from-run", "field_05", 11);
    in.blocks = json_pack("{s{ss}s{ssss}}", "slug:secret/api-token", "value", "s3cr3t",
                          "document:0b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", "user", "u",
                          "password", "p");
    in.vars = json_pack("{ss}", "tag", "1.2.3");
    in.ctx = (struct render_context){.flow_run = flow_run, .flow = flow, .work_pool_name = "pool",
                                     .work_pool_id = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f62",
                                     .worker_name = "w", .settings_env = settings};
    /* The supervisor compiles its pool's template once and renders every
     * run with it, so compiling is not part of a render here either.  It
     * also installs the renderer's block cache as jansson's allocator. */
    render_pool_install();
    tmpl = render_template_compile(base, err, sizeof(err));
    if (!tmpl) {
        fprintf(stderr, "compile failed: %s\n", err);
        return 1;
    }
    in.tmpl = tmpl;
    for (size_t m = 0; m < nmodes; m++) {
        modes[m].rates = calloc((size_t)runs, sizeof(double));
        modes[m].cpu_rates = calloc((size_t)runs, sizeof(double));
        if (!modes[m].rates || !modes[m].cpu_rates)
            return 1;
    }
    /* The modes take turns, so a change in the machine's speed meets both. */
    for (int r = 0; r < runs; r++) {
        for (size_t m = 0; m < nmodes; m++) {
            double start;
            double cpu_start;

            if (only && strcmp(only, modes[m].name) != 0)
                continue;
            start = now();
            cpu_start = cpu_now();
            for (int i = 0; i < per_run; i++) {
                if (modes[m].render(&in, err, sizeof(err)) < 0) {
                    fprintf(stderr, "%s: render failed: %s\n", modes[m].name, err);
                    return 1;
                }
            }
            modes[m].rates[r] = per_run / (now() - start);
            modes[m].cpu_rates[r] = per_run / (cpu_now() - cpu_start);
        }
    }
    for (size_t m = 0; m < nmodes; m++) {
        double *rates = modes[m].rates, *cpu_rates = modes[m].cpu_rates;

        if (only && strcmp(only, modes[m].name) != 0)
            continue;
        qsort(rates, (size_t)runs, sizeof(double), compare_doubles);
        qsort(cpu_rates, (size_t)runs, sizeof(double), compare_doubles);
        printf("%s: %s\n", modes[m].name,
               modes[m].render == render_arena ? "render_run, the supervisor's path"
                                               : "jansson steps, then json_dumps");
        printf("  renders per second, wall time (median of %d runs of %d): %.0f (range %.0f .. %.0f)\n",
               runs, per_run, rates[runs / 2], rates[0], rates[runs - 1]);
        printf("  renders per second, CPU time  (median of %d runs of %d): %.0f (range %.0f .. %.0f)\n",
               runs, per_run, cpu_rates[runs / 2], cpu_rates[0], cpu_rates[runs - 1]);
    }
    for (size_t m = 0; m < nmodes; m++) {
        free(modes[m].rates);
        free(modes[m].cpu_rates);
    }
    render_template_free(&tmpl);
    json_decref(base);
    json_decref(in.dep);
    json_decref(in.run);
    json_decref(in.blocks);
    json_decref(in.vars);
    json_decref(flow_run);
    json_decref(flow);
    json_decref(settings);
    return 0;
}
