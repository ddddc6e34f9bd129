/*
 * render_run against the jansson steps on random inputs: base job
 * templates, job variables, block documents, Prefect variables and flow-run
 * contexts made from a seeded generator.  For each case both paths must
 * give the same JSON text (json_dumps with JSON_COMPACT after
 * render_template_apply, render_resolve_blocks_collect,
 * render_resolve_variables and render_prepare), the same block and
 * variable lists, and the same error.  A second render_run of the same
 * compiled template, with copies of the inputs released as soon as the run
 * has taken them, must give the same text again.
 *
 * A failing case is shrunk (members and items removed, values replaced by
 * null or shorter strings while the failure stays the same) and printed as
 * one JSON object:
 *
 *   {"template": ..., "vars": ..., "blocks": ..., "variables": ...,
 *    "ctx": {"flow_run": ..., "flow": ..., "deployment": ...,
 *            "settings_env": ..., "worker_name": "...", ...}}
 *
 * where a missing member is passed as NULL (no ctx skips the prepare step).
 * Cases the jansson steps render but render_run hands to them
 * (render_run_is_fast is 0) are counted, and the smallest are shrunk and
 * printed too, so that fallbacks on ordinary templates show up.
 *
 * usage: render_run_differential [SEED [COUNT]]
 *        render_run_differential --case FILE   (one case, printed in detail)
 *        render_run_differential --print SEED INDEX   (one case's JSON)
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

#define DEFAULT_SEED 1
#define DEFAULT_COUNT 6000
#define SHRINK_BUDGET 4000
#define MAX_FALLBACK_SHOWN 4

/* ---- a small deterministic generator (xorshift64*) ---- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* The generator state of case index of seed (splitmix64 steps). */
static uint64_t case_state(uint64_t seed, uint64_t index)
{
    uint64_t z = seed * 0x9E3779B97F4A7C15ULL + index + 1;

    for (int round = 0; round < 2; round++) {
        z += 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
    }
    return z ? z : 1;
}

/* A number in [0, n). */
static size_t pick(size_t n)
{
    return (size_t)(rng_next() % n);
}

/* True with probability percent / 100. */
static int chance(unsigned percent)
{
    return pick(100) < percent;
}

#define PICK(array) ((array)[pick(sizeof(array) / sizeof((array)[0]))])

/* ---- random inputs ---- */

static const char *const first_names[] = {
    "a", "b", "c", "image", "count", "command", "env", "labels", "name", "opts", "x", "é",
};
static const char *const segments[] = {
    ".a", ".b", ".k", ".0", ".1", "[0]", "[1]", ".x-y", ".é", ".2",
};
static const char *const env_keys[] = {
    "A", "B", "PATH", "PREFECT__FLOW_RUN_ID", "PREFECT_API_URL", "PREFECT__WORKER_NAME",
    "K\"Q", "é", "PREFECT_API_KEY", "PREFECT__FLOW_NAME", "LONG_KEY_WITH_MORE_THAN_8",
};
static const char *const label_keys[] = {
    "team", "prefect.io/flow-run-id", "prefect.io/version", "prefect.io/worker-name",
    "prefect.io/flow-name", "x", "prefect.io/flow-run-name", "ü\\",
};
static const char *const field_keys[] = {
    "command", "env", "labels", "name", "image", "args", "opts", "nested", "k\"q", "ü",
    "a.b", "stream_output", "working_dir", "\t",
};
static const char *const uuids[] = {
    "6f1b0c1e-5a49-4f7e-9a39-3c1d1d4d1a01",
    "7b2c6d3e-1f0a-4b6c-8d9e-0a1b2c3d4e5f",
    "0B1D2C3E-4F5A-4B6C-8D7E-9F0A1B2C3D4E",
    "{0b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e}",
    "urn:uuid:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "9a8b7c6d5e4f4a3b8c2d1e0f9a8b7c6d",
};
static const char *const fragments[] = {
    "", "x", "hello world", "é", "日本語", "😀", "\x01", "\n", "\t", "\"", "\\", "\x1f",
    "{", "}", "{{", "}}", "{ {", "}{", "/", "\x7f", " ", "$", "'", "None", "True",
};

static void buf_add(char *out, size_t cap, const char *text)
{
    size_t len = strlen(out);
    size_t add = strlen(text);

    if (len + add < cap)
        memcpy(out + len, text, add + 1);
}

static void spaces(char *out, size_t cap)
{
    static const char *const blanks[] = {"", "", " ", "  ", "\t", "\n", " \u00a0"};

    buf_add(out, cap, PICK(blanks));
}

/* A placeholder name: mostly standard ones, some block, variable and
 * environment names and a few odd ones. */
static void placeholder_name(char *out, size_t cap, int allow_env)
{
    static const char *const odd[] = {
        "a..b", "a.", ".a", "a-b", "prefect.blocks", "prefect.blocks.t", "prefect.variables",
        "prefect.variables.", "prefect.blocks.t.", "a[", "a]", "[0]", "ctx.flow_run.name",
        "ctx.flow.name", "prefect.blocks.t.n.k.0",
    };
    size_t kind = pick(100);

    if (kind < 62) {
        buf_add(out, cap, PICK(first_names));
        for (size_t n = pick(3); n > 0; n--)
            buf_add(out, cap, PICK(segments));
    } else if (kind < 76) {
        static const char *const tails[] = {"", "", ".k", ".k.a", ".0", ".k.0", ".missing", ".a-b"};

        buf_add(out, cap, "prefect.blocks.");
        buf_add(out, cap, chance(70) ? "t" : "s3");
        buf_add(out, cap, chance(70) ? ".n" : ".m");
        buf_add(out, cap, PICK(tails));
    } else if (kind < 88) {
        static const char *const vars[] = {"v", "w", "missing", "n-1", "é"};

        buf_add(out, cap, "prefect.variables.");
        buf_add(out, cap, PICK(vars));
    } else if (kind < 90 && allow_env) {
        buf_add(out, cap, chance(50) ? "$HOME" : "$NOPE");
    } else {
        buf_add(out, cap, PICK(odd));
    }
}

static void placeholder(char *out, size_t cap, int allow_env)
{
    buf_add(out, cap, "{{");
    spaces(out, cap);
    placeholder_name(out, cap, allow_env);
    spaces(out, cap);
    buf_add(out, cap, "}}");
}

/* A string of fragments; with placeholders when ph is set.  Sometimes a
 * run of 'a' longer than a word with one escaped byte at any position. */
static json_t *rand_string(int ph)
{
    char text[512] = "";

    if (chance(15)) {
        static const char specials[] = {'"', '\\', '\n', '\x01', '\x1f', 'x', '\t', '{'};
        size_t len = chance(10) ? 180 + pick(120) : 1 + pick(30);
        size_t at = pick(len);

        if (ph && chance(50))
            placeholder(text, sizeof(text), 0);
        for (size_t i = 0; i < len; i++) {
            char one[2] = {i == at ? specials[pick(sizeof(specials))] : 'a', '\0'};

            buf_add(text, sizeof(text), one);
        }
        return json_string(text);
    }
    if (ph && chance(35)) {
        /* A whole placeholder. */
        placeholder(text, sizeof(text), chance(3));
        return json_string(text);
    }
    for (size_t n = pick(5); n > 0; n--) {
        if (ph && chance(30))
            placeholder(text, sizeof(text), chance(3));
        else
            buf_add(text, sizeof(text), PICK(fragments));
    }
    return json_string(text);
}

static json_t *dollar_ref(void)
{
    switch (pick(8)) {
    case 0:
        return json_pack("{s:s}", "$ref", "x");
    case 1:
        return json_pack("{s:{s:i}}", "$ref", "block_document_id", 5);
    case 2:
        return json_pack("{s:{s:s},s:i}", "$ref", "block_document_id", PICK(uuids), "other", 1);
    default:
        return json_pack("{s:{s:s}}", "$ref", "block_document_id", PICK(uuids));
    }
}

static json_t *rand_value(int depth, int ph);

static json_t *rand_object(int depth, int ph, const char *const *keys, size_t nkeys)
{
    json_t *object = json_object();

    for (size_t n = pick(5); n > 0; n--) {
        json_t *key = rand_string(0);
        const char *name = chance(60) ? keys[pick(nkeys)] : json_string_value(key);

        json_object_set_new(object, name, rand_value(depth + 1, ph));
        json_decref(key);
    }
    return object;
}

static json_t *rand_scalar(void)
{
    static const double reals[] = {0.5, 1e300, -0.0, 1.0, 3.141592653589793, 1e-7, 123456789.5,
                                   2.5e-308, -1e22};
    static const json_int_t ints[] = {0, 1, -1, 42, INT64_MAX, INT64_MIN, 1000000, 10};

    switch (pick(6)) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(chance(50));
    case 2:
        return json_integer(PICK(ints));
    case 3:
        return json_real(PICK(reals));
    default:
        return json_string(chance(20) ? "" : PICK(fragments));
    }
}

static json_t *rand_value(int depth, int ph)
{
    size_t kind = pick(100);

    if (depth > 4)
        kind = 50 + pick(50);
    if (kind < 12)
        return rand_object(depth, ph, first_names, sizeof(first_names) / sizeof(first_names[0]));
    if (kind < 20) {
        json_t *array = json_array();

        for (size_t n = pick(4); n > 0; n--)
            json_array_append_new(array, rand_value(depth + 1, ph));
        return array;
    }
    if (kind < 24)
        return dollar_ref();
    if (kind < 55)
        return rand_scalar();
    return rand_string(ph);
}

static json_t *rand_env(int ph)
{
    json_t *env = json_object();

    for (size_t n = pick(5); n > 0; n--) {
        json_t *value;

        if (chance(15))
            value = json_null();
        else if (chance(6))
            value = rand_value(3, ph);
        else if (chance(20))
            value = rand_scalar();
        else
            value = rand_string(ph);
        json_object_set_new(env, PICK(env_keys), value);
    }
    return env;
}

static json_t *rand_labels(void)
{
    json_t *labels = json_object();

    for (size_t n = pick(4); n > 0; n--)
        json_object_set_new(labels, PICK(label_keys), chance(4) ? rand_scalar() : rand_string(1));
    return labels;
}

static json_t *rand_field(const char *key)
{
    if (strcmp(key, "env") == 0) {
        if (chance(10))
            return json_string("{{ env }}");
        return chance(5) ? rand_value(1, 1) : rand_env(1);
    }
    if (strcmp(key, "labels") == 0) {
        if (chance(10))
            return json_string("{{ labels }}");
        return chance(5) ? rand_value(1, 1) : rand_labels();
    }
    if (strcmp(key, "command") == 0 || strcmp(key, "name") == 0) {
        static const char *const forms[] = {
            "{{ command }}", "{{ name }}", "run-{{ ctx.flow_run.name }}", "{{ ctx.flow.name }}",
            "", "prefect flow-run execute", "{{ a }} {{ b }}", "{{ prefect.variables.v }}",
            "{{ prefect.blocks.t.n.k }}",
        };

        if (chance(10))
            return chance(50) ? json_null() : rand_value(2, 1);
        return json_string(PICK(forms));
    }
    return rand_value(0, 1);
}

/* Nesting depths around RENDER_RUN_MAX_DEPTH (512, in render_compile.c)
 * and RENDER_MAX_DEPTH. */
static const int deep_levels[] = {509, 510, 511, 512, 513, 514, 2044, 2045, 2046, 2047, 2048};

/* Arrays nested depth levels around a string with a placeholder, a
 * plain string, or an empty object. */
static json_t *deep_value(size_t kind)
{
    static const char *const cores[] = {"{{ a }}", "plain", "{{ prefect.variables.v }}"};
    int levels = PICK(deep_levels);
    json_t *value = kind < 3 ? json_string(cores[kind]) : json_object();

    for (int i = 0; i < levels && value; i++) {
        json_t *outer = json_array();

        json_array_append_new(outer, value);
        value = outer;
    }
    return value;
}

/* More than 64 fields, placeholder names and env members: the sizes
 * where render_run and render_template_apply switch from stack arrays to
 * allocated ones. */
static void add_many(json_t *config, json_t *properties)
{
    json_t *env = json_object_get(config, "env");
    size_t n = 60 + pick(20);

    if (!json_is_object(env)) {
        env = json_object();
        json_object_set_new(config, "env", env);
    }
    for (size_t i = 0; i < n; i++) {
        char key[32], text[64];

        snprintf(key, sizeof(key), "p%zu", i);
        snprintf(text, sizeof(text), chance(50) ? "{{ p%zu }}" : "v={{ p%zu }}", i);
        json_object_set_new(config, key, json_string(text));
        snprintf(key, sizeof(key), "E%zu", i);
        json_object_set_new(env, key, json_string(text));
        if (chance(50)) {
            snprintf(key, sizeof(key), "p%zu", i);
            json_object_set_new(properties, key, json_pack("{s:i}", "default", (int)i));
        }
    }
}

static json_t *rand_template(void)
{
    json_t *config = json_object();
    json_t *properties = json_object();

    for (size_t n = pick(7); n > 0; n--) {
        const char *key = PICK(field_keys);

        if (chance(1))
            key = "$ref";
        json_object_set_new(config, key, rand_field(key));
    }
    for (size_t i = 0; i < sizeof(first_names) / sizeof(first_names[0]); i++) {
        json_t *schema;

        if (!chance(45))
            continue;
        schema = json_pack("{s:s}", "type", "string");
        if (strcmp(first_names[i], "env") == 0 && chance(70))
            json_object_set_new(schema, "default", rand_env(1));
        else if (chance(75))
            json_object_set_new(schema, "default", rand_value(1, chance(20)));
        json_object_set_new(properties, first_names[i], schema);
    }
    if (chance(1))
        json_object_set_new(properties, "bad", json_integer(3));
    if (chance(2))
        add_many(config, properties);
    if (chance(2))
        json_object_set_new(config, "deep", deep_value(pick(4)));
    return json_pack("{s:o,s:{s:s,s:o}}", "job_configuration", config, "variables", "type",
                     "object", "properties", properties);
}

static json_t *rand_job_vars(void)
{
    static const char *const dotted[] = {"env.A", "env.PATH", "x.y", "a.b.c", "opts.k", "env"};
    json_t *vars = json_object();

    for (size_t i = 0; i < sizeof(first_names) / sizeof(first_names[0]); i++) {
        if (!chance(40))
            continue;
        if (strcmp(first_names[i], "env") == 0 && chance(80))
            json_object_set_new(vars, "env", chance(10) ? json_null() : rand_env(chance(30)));
        else
            json_object_set_new(vars, first_names[i], rand_value(1, chance(50)));
    }
    if (chance(20))
        json_object_set_new(vars, PICK(dotted), rand_value(2, chance(30)));
    if (chance(2))
        json_object_set_new(vars, PICK(first_names), deep_value(pick(4)));
    if (chance(3)) {
        json_t *env = json_object();

        for (size_t i = 0; i < 70; i++) {
            char key[32];

            snprintf(key, sizeof(key), "E%zu", i * 2);
            json_object_set_new(env, key, chance(10) ? json_null() : json_integer((json_int_t)i));
        }
        json_object_set_new(vars, "env", env);
    }
    if (chance(2)) {
        json_decref(vars);
        return rand_value(0, 0);
    }
    return vars;
}

static json_t *rand_blocks(void)
{
    static const char *const slugs[] = {"slug:t/n", "slug:t/m", "slug:s3/n", "slug:s3/m"};
    json_t *blocks = json_object();

    for (size_t i = 0; i < sizeof(slugs) / sizeof(slugs[0]); i++) {
        json_t *data;

        if (!chance(80))
            continue;
        data = rand_object(1, 1, (const char *const[]){"k", "a", "0", "b"}, 4);
        if (chance(10))
            data = (json_decref(data), rand_value(1, 1));
        json_object_set_new(blocks, slugs[i], data);
    }
    for (size_t i = 0; i < 2; i++) {
        char key[64];

        if (!chance(70))
            continue;
        snprintf(key, sizeof(key), "document:%s", uuids[i]);
        json_object_set_new(blocks, key, chance(85) ? rand_object(1, 1, first_names, 4)
                                                    : rand_value(1, 1));
    }
    if (chance(2)) {
        json_decref(blocks);
        return json_array();
    }
    return blocks;
}

static json_t *rand_variables(void)
{
    json_t *variables = json_object();

    if (chance(70))
        json_object_set_new(variables, "v", rand_value(1, 0));
    if (chance(50))
        json_object_set_new(variables, "w", rand_string(1));
    if (chance(20))
        json_object_set_new(variables, "é", rand_scalar());
    if (chance(2)) {
        json_decref(variables);
        return json_string("x");
    }
    return variables;
}

static json_t *rand_ctx(void)
{
    static const char *const updated[] = {
        "2026-08-21T12:00:00.123456Z", "2026-08-21T12:00:00+02:00", "2026-08-21T00:30:00-01:30",
        "2026-08-21 12:00:00", "yesterday",
    };
    static const char *const run_names[] = {"crimson-owl", "é-owl", "", "a\"b\\c\n", "{{ x }}"};
    json_t *ctx = json_object();
    json_t *flow_run = json_pack("{s:s,s:s}", "id", chance(95) ? PICK(uuids) : "nope", "name",
                                 PICK(run_names));

    if (chance(2))
        json_object_set_new(flow_run, "name", rand_scalar());
    if (chance(60))
        json_object_set_new(flow_run, "flow_id", json_string(PICK(uuids)));
    if (chance(40))
        json_object_set_new(flow_run, "deployment_id", chance(95) ? json_string(PICK(uuids))
                                                                  : json_integer(7));
    json_object_set_new(ctx, "flow_run", flow_run);
    if (chance(50))
        json_object_set_new(ctx, "flow", json_pack("{s:s,s:o}", "id", PICK(uuids), "name",
                                                   chance(95) ? rand_string(0) : rand_scalar()));
    if (chance(40)) {
        json_t *deployment = json_pack("{s:s,s:s}", "id", PICK(uuids), "name", "dep");

        if (chance(70))
            json_object_set_new(deployment, "updated",
                                chance(90) ? json_string(PICK(updated)) : json_null());
        json_object_set_new(ctx, "deployment", deployment);
    }
    if (chance(50)) {
        json_t *settings = json_pack("{s:s,s:n}", "PREFECT_API_URL", "http://127.0.0.1:4200/api",
                                     "PREFECT_API_KEY");

        for (size_t n = pick(3); n > 0; n--)
            json_object_set_new(settings, PICK(env_keys),
                                chance(20) ? json_null() : rand_string(0));
        json_object_set_new(ctx, "settings_env", settings);
    }
    if (chance(80))
        json_object_set_new(ctx, "worker_name", json_string(chance(90) ? "worker-1" : "wörker\""));
    if (chance(30))
        json_object_set_new(ctx, "worker_id", json_string(PICK(uuids)));
    if (chance(40))
        json_object_set_new(ctx, "work_pool_name", json_string("pool"));
    if (chance(30))
        json_object_set_new(ctx, "work_pool_id", json_string(uuids[1]));
    if (chance(20))
        json_object_set_new(ctx, "prefect_version", json_string("3.0.0"));
    return ctx;
}

static json_t *rand_case(void)
{
    json_t *c = json_object();

    json_object_set_new(c, "template", rand_template());
    if (chance(95))
        json_object_set_new(c, "vars", rand_job_vars());
    if (chance(90))
        json_object_set_new(c, "blocks", rand_blocks());
    if (chance(90))
        json_object_set_new(c, "variables", rand_variables());
    if (chance(85))
        json_object_set_new(c, "ctx", rand_ctx());
    return c;
}

/* ---- running one case both ways ---- */

static const char *fixed_env(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "HOME") == 0)
        return "/home/h";
    return NULL;
}

enum outcome {
    SAME,
    DIFFER_FAILING, /* one path fails, the other renders */
    DIFFER_ERROR,
    DIFFER_TEXT,
    DIFFER_BLOCKS,
    DIFFER_NAMES,
    DIFFER_RERUN, /* a second render_run gives other text */
    CHANGED_TREES, /* the jansson steps modified an input */
    CHANGED_RUN,   /* render_run modified an input */
    FALLBACK       /* the same result, but render_run used the jansson steps */
};

static const char *const outcome_names[] = {
    "same", "one path fails", "different errors", "different text",
    "different block lists", "different variable lists", "second run differs",
    "jansson steps modify an input", "render_run modifies an input",
    "fallback to the jansson steps",
};

struct result {
    char *text;
    char err[1024];
    json_t *blocks; /* render_run_new's or render_template_apply's list */
    json_t *names;
    int fast;
};

static void result_free(struct result *r)
{
    free(r->text);
    json_decref(r->blocks);
    json_decref(r->names);
}

static const char *ctx_string(const json_t *ctx, const char *key)
{
    return json_string_value(json_object_get(ctx, key));
}

static void fill_ctx(const json_t *c, struct render_context *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->flow_run = json_object_get(c, "flow_run");
    ctx->flow = json_object_get(c, "flow");
    ctx->deployment = json_object_get(c, "deployment");
    ctx->settings_env = json_object_get(c, "settings_env");
    ctx->work_pool_name = ctx_string(c, "work_pool_name");
    ctx->work_pool_id = ctx_string(c, "work_pool_id");
    ctx->worker_name = ctx_string(c, "worker_name");
    ctx->worker_id = ctx_string(c, "worker_id");
    ctx->prefect_version = ctx_string(c, "prefect_version");
    ctx->environ_lookup = fixed_env;
}

/* The jansson steps. */
static void run_trees(const struct render_template *tmpl, const json_t *c,
                      const struct render_context *ctx, struct result *r)
{
    json_t *config = render_template_apply(tmpl, json_object_get(c, "vars"), fixed_env, NULL,
                                           &r->blocks, r->err, sizeof(r->err));

    if (!config)
        return;
    r->names = render_resolve_blocks_collect(config, json_object_get(c, "blocks"), r->err,
                                             sizeof(r->err));
    if (r->names &&
        render_resolve_variables(config, json_object_get(c, "variables"), r->err,
                                 sizeof(r->err)) == 0 &&
        (!ctx || render_prepare(config, ctx, r->err, sizeof(r->err)) == 0)) {
        r->text = json_dumps(config, JSON_COMPACT);
        if (!r->text)
            snprintf(r->err, sizeof(r->err), "json_dumps failed");
    }
    json_decref(config);
}

/* render_run's steps.  With release set, each input is a copy that is
 * released as soon as the step that takes it returns. */
static void run_fast(const struct render_template *tmpl, const json_t *c,
                     const struct render_context *ctx, int release, struct result *r)
{
    json_t *vars = json_object_get(c, "vars");
    json_t *blocks = json_object_get(c, "blocks");
    json_t *variables = json_object_get(c, "variables");
    struct render_run *rr;
    size_t len = 0;

    vars = release ? json_deep_copy(vars) : json_incref(vars);
    rr = render_run_new(tmpl, vars, fixed_env, NULL, &r->blocks, r->err, sizeof(r->err));
    json_decref(vars);
    if (!rr)
        return;
    blocks = release ? json_deep_copy(blocks) : json_incref(blocks);
    r->names = render_run_resolve_blocks(rr, blocks, r->err, sizeof(r->err));
    json_decref(blocks);
    if (r->names) {
        variables = release ? json_deep_copy(variables) : json_incref(variables);
        if (render_run_resolve_variables(rr, variables, r->err, sizeof(r->err)) == 0)
            r->text = render_run_text(rr, ctx, &len, r->err, sizeof(r->err));
        json_decref(variables);
    }
    if (r->text && len != strlen(r->text))
        snprintf(r->err, sizeof(r->err), "render_run_text gave length %zu for %zu bytes", len,
                 strlen(r->text));
    r->fast = render_run_is_fast(rr);
    render_run_free(rr);
}

static int same_list(const json_t *a, const json_t *b)
{
    return (!a && !b) || (a && b && json_equal(a, b));
}

/* Whether c still has the text before. */
static int unchanged(const json_t *c, const char *before)
{
    char *after = json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY);
    int same = after && before && strcmp(after, before) == 0;

    free(after);
    return same;
}

/* Set by run_case: whether render_run kept its own tree to the end,
 * and whether the jansson steps rendered the case. */
static int last_fast;
static int last_rendered;

/* Runs case c both ways, each on its own copy of the inputs and its own
 * compiled template; with verbose, prints what each path gave. */
static enum outcome run_case(const json_t *c, int verbose)
{
    char err[1024];
    char *before = json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *copy_trees = json_deep_copy(c);
    json_t *copy_fast = json_deep_copy(c);
    struct render_template *tmpl_trees =
        render_template_compile(json_object_get(copy_trees, "template"), err, sizeof(err));
    struct render_template *tmpl_fast =
        render_template_compile(json_object_get(copy_fast, "template"), err, sizeof(err));
    struct render_context ctx_trees, ctx_fast;
    int has_ctx = json_object_get(c, "ctx") != NULL;
    struct result trees = {0}, fast = {0}, again = {0};
    enum outcome out = SAME;

    if (!tmpl_trees || !tmpl_fast) {
        if (verbose)
            printf("template not compiled: %s\n", err);
        render_template_free(&tmpl_trees);
        render_template_free(&tmpl_fast);
        json_decref(copy_trees);
        json_decref(copy_fast);
        free(before);
        return SAME;
    }
    fill_ctx(json_object_get(copy_trees, "ctx"), &ctx_trees);
    fill_ctx(json_object_get(copy_fast, "ctx"), &ctx_fast);
    run_trees(tmpl_trees, copy_trees, has_ctx ? &ctx_trees : NULL, &trees);
    run_fast(tmpl_fast, copy_fast, has_ctx ? &ctx_fast : NULL, 0, &fast);
    run_fast(tmpl_fast, copy_fast, has_ctx ? &ctx_fast : NULL, 1, &again);

    if (!trees.text != !fast.text)
        out = DIFFER_FAILING;
    else if (!trees.text && strcmp(trees.err, fast.err) != 0)
        out = DIFFER_ERROR;
    else if (trees.text && strcmp(trees.text, fast.text) != 0)
        out = DIFFER_TEXT;
    else if (trees.blocks && !same_list(trees.blocks, fast.blocks))
        out = DIFFER_BLOCKS;
    else if (trees.names && fast.names && !json_equal(trees.names, fast.names))
        out = DIFFER_NAMES;
    else if (!fast.text != !again.text || (fast.text && strcmp(fast.text, again.text) != 0) ||
             (!fast.text && strcmp(fast.err, again.err) != 0))
        out = DIFFER_RERUN;
    else if (!unchanged(copy_trees, before))
        out = CHANGED_TREES;
    else if (!unchanged(copy_fast, before))
        out = CHANGED_RUN;
    else if (trees.text && !fast.fast)
        out = FALLBACK;
    last_fast = fast.fast;
    last_rendered = trees.text != NULL;

    if (verbose) {
        char *blocks_trees = trees.blocks ? json_dumps(trees.blocks, JSON_COMPACT) : NULL;
        char *blocks_fast = fast.blocks ? json_dumps(fast.blocks, JSON_COMPACT) : NULL;
        char *names_trees = trees.names ? json_dumps(trees.names, JSON_COMPACT) : NULL;
        char *names_fast = fast.names ? json_dumps(fast.names, JSON_COMPACT) : NULL;

        printf("outcome: %s\n", outcome_names[out]);
        printf("jansson steps: %s\n", trees.text ? trees.text : trees.err);
        printf("render_run:    %s\n", fast.text ? fast.text : fast.err);
        printf("second run:    %s\n", again.text ? again.text : again.err);
        printf("blocks: %s | %s\n", blocks_trees ? blocks_trees : "-",
               blocks_fast ? blocks_fast : "-");
        printf("variables: %s | %s\n", names_trees ? names_trees : "-",
               names_fast ? names_fast : "-");
        printf("render_run_is_fast: %d\n", fast.fast);
        free(blocks_trees);
        free(blocks_fast);
        free(names_trees);
        free(names_fast);
    }
    result_free(&trees);
    result_free(&fast);
    result_free(&again);
    render_template_free(&tmpl_trees);
    render_template_free(&tmpl_fast);
    json_decref(copy_trees);
    json_decref(copy_fast);
    free(before);
    return out;
}

/* ---- shrinking a failing case ---- */

/* Applies edit number *index below node (counting down), in place.
 * Returns 1 when an edit was made. */
static int apply_edit(json_t *node, long *index)
{
    if (json_is_object(node)) {
        const char *key;
        json_t *item;
        void *iter;

        RENDER_OBJECT_FOREACH(node, iter, key, item) {
            size_t len = json_string_length(item);

            if ((*index)-- == 0) {
                json_object_del(node, key);
                return 1;
            }
            if (!json_is_null(item) && (*index)-- == 0) {
                json_object_iter_set_new(node, iter, json_null());
                return 1;
            }
            if (json_is_string(item) && len > 1 && (*index)-- == 0) {
                json_object_iter_set_new(node, iter,
                                         json_stringn_nocheck(json_string_value(item), len / 2));
                return 1;
            }
            if (json_is_string(item) && len > 1 && (*index)-- == 0) {
                json_object_iter_set_new(node, iter, json_stringn_nocheck(
                                                         json_string_value(item) + 1, len - 1));
                return 1;
            }
            if (apply_edit(item, index))
                return 1;
        }
        return 0;
    }
    if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            json_t *item = json_array_get(node, i);

            if ((*index)-- == 0) {
                json_array_remove(node, i);
                return 1;
            }
            if (!json_is_null(item) && (*index)-- == 0) {
                json_array_set_new(node, i, json_null());
                return 1;
            }
            if (apply_edit(item, index))
                return 1;
        }
    }
    return 0;
}

static int still_fails(const json_t *c, enum outcome want, int want_fast)
{
    json_t *template = json_object_get(c, "template");
    char *text;
    json_t *copy;
    int valid;

    /* A shrunk string may no longer be valid UTF-8: such a case is dropped. */
    text = json_dumps(c, JSON_COMPACT);
    copy = text ? json_loads(text, 0, NULL) : NULL;
    valid = copy && template;
    free(text);
    json_decref(copy);
    return valid && run_case(c, 0) == want && last_fast == want_fast;
}

static json_t *shrink(const json_t *c, enum outcome want, int want_fast)
{
    json_t *best = json_deep_copy(c);
    char *text = json_dumps(c, JSON_COMPACT);
    /* Deep cases stay whole: each edit would copy and walk thousands of levels. */
    long tries = text && !strstr(text, "[[[[[[[[[[") ? 0 : SHRINK_BUDGET;

    free(text);

    for (long e = 0; tries < SHRINK_BUDGET; tries++) {
        json_t *copy = json_deep_copy(best);
        long index = e;

        if (!apply_edit(copy, &index)) {
            json_decref(copy);
            break;
        }
        if (still_fails(copy, want, want_fast)) {
            json_decref(best);
            best = copy;
        } else {
            json_decref(copy);
            e++;
        }
    }
    return best;
}

static void print_case(const char *what, const json_t *c)
{
    char *text = json_dumps(c, JSON_COMPACT | JSON_ENSURE_ASCII);

    printf("%s: %s\n", what, text ? text : "(not printable)");
    free(text);
}

/* ---- main ---- */

static int run_file(const char *path)
{
    json_error_t error;
    json_t *c = json_load_file(path, 0, &error);
    enum outcome out;

    if (!c) {
        fprintf(stderr, "%s:%d: %s\n", path, error.line, error.text);
        return 2;
    }
    out = run_case(c, 1);
    json_decref(c);
    return out == SAME || out == FALLBACK ? 0 : 1;
}

int main(int argc, char **argv)
{
    uint64_t seed = DEFAULT_SEED;
    long count = DEFAULT_COUNT;
    long counts[sizeof(outcome_names) / sizeof(outcome_names[0])] = {0};
    long failures = 0;
    size_t fallback_shown = 0;
    int shown[sizeof(outcome_names) / sizeof(outcome_names[0])][2] = {{0}};
    long rendered = 0, fast = 0;

    /* Line buffered, so the report survives a sanitizer's exit. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "--case") == 0)
        return run_file(argv[2]);
    if (argc == 4 && strcmp(argv[1], "--print") == 0) {
        json_t *c;

        rng_state = case_state(strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0));
        c = rand_case();
        print_case("case", c);
        json_decref(c);
        return 0;
    }
    if (argc > 1)
        seed = strtoull(argv[1], NULL, 0);
    if (argc > 2)
        count = strtol(argv[2], NULL, 0);
    if (argc > 3 || count < 0) {
        fprintf(stderr, "usage: %s [SEED [COUNT]] | --case FILE\n", argv[0]);
        return 2;
    }

    for (long i = 0; i < count; i++) {
        json_t *c;
        enum outcome out;

        /* Each case has its own state, so one case can be replayed alone. */
        rng_state = case_state(seed, (uint64_t)i);
        c = rand_case();
        out = run_case(c, 0);
        counts[out]++;
        rendered += last_rendered;
        fast += last_rendered && last_fast;
        if (out != SAME && out != FALLBACK) {
            int was_fast = last_fast;

            failures++;
            if (shown[out][was_fast] < 3) {
                json_t *small = shrink(c, out, was_fast);

                shown[out][was_fast]++;
                printf("FAIL case %ld (seed %" PRIu64 "): %s\n", i, seed, outcome_names[out]);
                print_case("  case", small);
                run_case(small, 1);
                json_decref(small);
            }
        } else if (out == FALLBACK && fallback_shown < MAX_FALLBACK_SHOWN) {
            json_t *small = shrink(c, out, 0);

            fallback_shown++;
            printf("fallback case %ld (seed %" PRIu64 "):\n", i, seed);
            print_case("  case", small);
            json_decref(small);
        }
        json_decref(c);
    }
    printf("seed %" PRIu64 ", %ld cases, %ld rendered by the jansson steps, %ld of them by "
           "render_run's own tree:", seed, count, rendered, fast);
    for (size_t k = 0; k < sizeof(outcome_names) / sizeof(outcome_names[0]); k++)
        printf(" %s %ld;", outcome_names[k], counts[k]);
    printf("\n");
    return failures ? 1 : 0;
}
