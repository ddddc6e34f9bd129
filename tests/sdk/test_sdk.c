/*
 * Unit tests of the executor SDK's helpers: UTF-8 cleaning, the declared
 * schema built from a describe table (checked with the supervisor's own
 * schema checker and template derivation), and its errors.
 *
 *   test_sdk                run the tests
 *   test_sdk split COMMAND  print drover_split_command(COMMAND) as JSON, for
 *                           the comparison with Python's shlex.split
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover/executor.h"
#include "render.h"

static int failures;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            failures++;                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
        }                                                        \
    } while (0)

static int print_split(const char *command)
{
    char err[256];
    char **argv = drover_split_command(command, err, sizeof err);
    json_t *out;

    if (!argv) {
        out = json_pack("{s:s}", "error", err);
    } else {
        out = json_array();
        for (char **p = argv; *p; p++)
            json_array_append_new(out, json_string(*p));
    }
    json_dumpf(out, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
    fputc('\n', stdout);
    json_decref(out);
    drover_argv_free(&argv);
    return 0;
}

static void test_utf8(void)
{
    static const struct {
        const char *in;
        size_t len;
        size_t max;
        const char *out;
    } cases[] = {
        {"plain", 5, 100, "plain"},
        {"caf\xc3\xa9", 5, 100, "caf\xc3\xa9"},
        {"a\xff" "b", 3, 100, "a\xef\xbf\xbd" "b"},
        {"\xc0\xaf", 2, 100, "\xef\xbf\xbd\xef\xbf\xbd"},             /* overlong '/' */
        {"\xed\xa0\x80", 3, 100, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"\xf4\x90\x80\x80", 4, 100, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"a\0b", 3, 100, "a\xef\xbf\xbd" "b"},                        /* NUL */
        {"\xe2\x82", 2, 100, "\xef\xbf\xbd\xef\xbf\xbd"},             /* truncated sequence */
        {"ab\xc3\xa9", 4, 3, "ab"},                                   /* cut before a character */
        {"\xf0\x9f\x98\x80", 4, 100, "\xf0\x9f\x98\x80"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = drover_utf8_clean(cases[i].in, cases[i].len, cases[i].max);

        CHECK(out && strcmp(out, cases[i].out) == 0, "utf8 case %zu: got \"%s\"", i, out ? out : "NULL");
        free(out);
    }
}

static void test_split_errors(void)
{
    static const char *const bad[] = {"echo 'open", "echo \"open", "echo trailing\\"};
    char err[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char **argv = drover_split_command(bad[i], err, sizeof err);

        CHECK(argv == NULL, "split accepted %s", bad[i]);
        CHECK(argv || strstr(err, "invalid command"), "split error for %s: %s", bad[i], err);
        drover_argv_free(&argv);
    }
}

static const struct drover_field good_fields[] = {
    {.name = "working_dir", .type = "{\"anyOf\": [{\"type\": \"string\", \"format\": \"path\"}, {\"type\": \"null\"}]}",
     .default_json = "null"},
    {.name = "memory", .type = "string", .default_json = "\"1024Mi\"", .description = "Memory.",
     .template_text = "{{ memory_request }}Mi"},
};

static const char good_variables[] =
    "{\"type\": \"object\", \"properties\": {\"memory_request\": {\"type\": \"integer\", \"default\": 1024}}}";

static const struct drover_describe good = {
    .type = "unit-test",
    .description = "Unit test type.",
    .documentation_url = "https://example.invalid/doc",
    .fields = good_fields,
    .n_fields = 2,
    .variables_json = good_variables,
};

static void test_describe(void)
{
    static const char *const order[] = {"command", "env", "labels", "name", "working_dir", "memory"};
    char err[512] = "";
    json_t *schema = drover_describe_schema(&good, err, sizeof err);
    json_t *fields = json_object_get(schema, "fields"), *f;

    CHECK(schema != NULL, "describe failed: %s", err);
    if (!schema)
        return;
    CHECK(json_array_size(fields) == 6, "fields: %zu entries", json_array_size(fields));
    for (size_t i = 0; i < 6 && i < json_array_size(fields); i++) {
        f = json_array_get(fields, i);
        CHECK(strcmp(json_string_value(json_object_get(f, "name")), order[i]) == 0, "field %zu is %s", i,
              json_string_value(json_object_get(f, "name")));
    }
    f = json_array_get(fields, 4);
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(f, "schema"), "title")), "Working Dir") == 0,
          "derived title of working_dir");
    CHECK(json_is_null(json_object_get(json_object_get(f, "schema"), "default")), "working_dir default");
    CHECK(json_object_get(f, "template") == NULL, "working_dir has a template without declaring one");
    f = json_array_get(fields, 5);
    CHECK(strcmp(json_string_value(json_object_get(f, "template")), "{{ memory_request }}Mi") == 0,
          "memory template");
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(f, "schema"), "default")), "1024Mi") == 0,
          "memory default");
    CHECK(json_is_object(json_object_get(schema, "variables")), "variables missing");

    /* The supervisor must accept it and derive the template Prefect would. */
    CHECK(render_check_schema(schema, err, sizeof err) == 0, "render_check_schema: %s", err);
    {
        json_t *tmpl = render_default_template(schema, err, sizeof err);
        json_t *jc = json_object_get(tmpl, "job_configuration");

        CHECK(tmpl != NULL, "render_default_template: %s", err);
        CHECK(json_is_string(json_object_get(jc, "memory")) &&
                  strcmp(json_string_value(json_object_get(jc, "memory")), "{{ memory_request }}Mi") == 0,
              "template of memory in the derived job configuration");
        CHECK(json_is_string(json_object_get(jc, "command")) &&
                  strcmp(json_string_value(json_object_get(jc, "command")), "{{ command }}") == 0,
              "template of command in the derived job configuration");
        json_decref(tmpl);
    }
    json_decref(schema);
}

static void test_describe_errors(void)
{
    static const struct {
        struct drover_field field;
        const char *expect;
    } bad[] = {
        {{.name = "env", .type = "object"}, "declares it already"},
        {{.name = "bad name", .type = "string"}, "invalid name"},
        {{.name = "x", .type = "text"}, "unknown JSON type"},
        {{.name = "x", .type = "{\"anyOf\": "}, "not a JSON schema object"},
        {{.name = "x", .type = "integer", .default_json = "ten"}, "default is not JSON"},
        {{.name = "x"}, "type is missing"},
    };
    struct drover_describe d = {.type = "unit-test", .n_fields = 1};
    char err[512];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *schema;

        d.fields = &bad[i].field;
        err[0] = '\0';
        schema = drover_describe_schema(&d, err, sizeof err);
        CHECK(schema == NULL, "describe accepted bad field %zu", i);
        CHECK(strstr(err, bad[i].expect) != NULL, "bad field %zu: error \"%s\" lacks \"%s\"", i, err,
              bad[i].expect);
        json_decref(schema);
    }
    d.type = "Bad Type";
    d.n_fields = 0;
    CHECK(drover_describe_schema(&d, err, sizeof err) == NULL, "describe accepted type \"Bad Type\"");
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "split") == 0)
        return print_split(argv[2]);

    test_utf8();
    test_split_errors();
    test_describe();
    test_describe_errors();
    printf("%s\n", failures ? "sdk: FAILED" : "sdk: ok");
    return failures ? 1 : 0;
}
