/*
 * Table test of bad input: every malformed template, schema, job variable
 * set, block reference and JSON/YAML text must give its documented error
 * (checked by a fragment of the message) and never crash.  Run it under
 * -DDROVER_SANITIZE=ON to catch memory errors on these paths.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "yamljson.h"

enum kind { LOAD, APPLY, VALIDATE, DECLARED, CHECK_TEMPLATE, BLOCKS, VARIABLES, PREPARE, MERGE };

struct row {
    enum kind kind;
    const char *a;        /* main input (text, JSON or YAML) */
    const char *b;        /* second input, JSON */
    const char *expected; /* fragment of the error message */
};

static const struct row rows[] = {
    /* JSON and YAML text */
    {LOAD, "{\"a\": 1,", NULL, "t:1:"},
    {LOAD, "{\"a\": 18446744073709551616}", NULL, "integers must fit in 64 bits"},
    {LOAD, "{\"a\": 1e400}", NULL, "numbers must be finite"},
    {LOAD, "{\"a\": \"\\u0000\"}", NULL, "invalid JSON"},
    {LOAD, "a: [1, 2\nb: 3\n", NULL, "invalid YAML"},
    {LOAD, "a: 1\na: 2\n", NULL, "duplicate key \"a\""},
    {LOAD, "? [1]\n: x\n", NULL, "mapping keys must be scalars"},
    {LOAD, "a: *nope\n", NULL, "unknown alias *nope"},
    {LOAD, "a: 1\n---\nb: 2\n", NULL, "only one YAML document"},
    {LOAD, "a: .inf\n", NULL, "infinite and NaN"},
    {LOAD, "a: 99999999999999999999\n", NULL, "does not fit in 64 bits"},
    {LOAD, "a: !!binary aGVsbG8=\n", NULL, "unsupported tag"},
    {LOAD, "base: &b {x: 1}\nc:\n  <<: *b\n", NULL, "merge keys (<<) are not supported"},
    {LOAD, "", NULL, "the file is empty"},
    {LOAD, "a: \"\\0\"\n", NULL, "NUL"},
    {LOAD, "a: &a [*a]\n", NULL, "unknown alias"},
    {LOAD, "x: \t- bad\n  - indent\n", NULL, "invalid YAML"},
    /* templates */
    {APPLY, "[]", "{}", "the base job template must be an object"},
    {APPLY, "{\"variables\": {}}", "{}", "job_configuration must be an object, not missing"},
    {APPLY, "{\"job_configuration\": [], \"variables\": {}}", "{}", "job_configuration must be an object"},
    {APPLY, "{\"job_configuration\": {}, \"variables\": 3}", "{}", "variables must be an object"},
    {APPLY, "{\"job_configuration\": {}, \"variables\": {\"properties\": []}}", "{}",
     "variables.properties must be an object"},
    {APPLY, "{\"job_configuration\": {}, \"variables\": {\"properties\": {\"x\": 5}}}", "{}",
     "variables.properties.x must be an object"},
    {APPLY, "{\"job_configuration\": {\"env\": {}}, \"variables\": {\"properties\": {\"env\": {\"default\": [1]}}}}",
     "{}", "must be an object to merge into job_configuration.env"},
    {APPLY, "{\"job_configuration\": {\"env\": {}}, \"variables\": {}}", "{\"env\": \"x\"}",
     "job variable env must be an object"},
    {APPLY, "{\"job_configuration\": {}, \"variables\": {}}", "{\"a.b\": 1, \"a.b.c\": 2}",
     "sets a key below \"b\", which is already an integer"},
    {APPLY, "{\"job_configuration\": {}, \"variables\": {}}", "[1]", "job variables must be an object"},
    /* job variable validation */
    {VALIDATE, "{\"type\": \"object\", \"properties\": {\"n\": {\"type\": \"integer\"}}}", "{\"n\": \"x\"}",
     "Validation failed for field 'n'. Failure reason: 'x' is not valid under any of the given schemas (expected integer or null)"},
    {VALIDATE, "{\"type\": \"object\", \"required\": [\"n\"], \"properties\": {\"n\": {}}}", "{}",
     "'n' is a required property"},
    {VALIDATE, "{\"properties\": {\"e\": {\"type\": \"object\", \"properties\": {\"k\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}}}}",
     "{\"e\": {\"k\": [\"a\", 2]}}", "field 'e.k[1]'"},
    {VALIDATE, "{\"properties\": {\"m\": {\"$ref\": \"#/definitions/Nope\"}}}", "{\"m\": 1}",
     "unresolvable reference #/definitions/Nope"},
    {VALIDATE, "{\"properties\": {\"m\": {\"type\": \"strong\"}}, \"required\": [\"m\"]}", "{\"m\": 1}",
     "unknown type"},
    {VALIDATE, "{\"properties\": {\"m\": {\"$ref\": \"#/definitions/A\"}}, \"definitions\": {\"A\": {\"$ref\": \"#/definitions/A\"}}}",
     "{\"m\": 1}", "circular"},
    {VALIDATE, "{\"properties\": {\"m\": {\"anyOf\": 5}}}", "{\"m\": 1}", "must be arrays"},
    {VALIDATE, "{\"properties\": {\"m\": {\"type\": \"string\", \"pattern\": \"(\"}}}", "{\"m\": \"a\"}",
     "not a supported regular expression"},
    {VALIDATE, "{\"properties\": {\"o\": {\"type\": \"object\", \"additionalProperties\": false}}}",
     "{\"o\": {\"z\": 1}}", "Additional properties are not allowed ('z' was unexpected)"},
    {VALIDATE, "{\"properties\": {\"c\": {\"enum\": [1, 2], \"default\": 1}}}", "{\"c\": true}",
     "True is not one of [1, 2]"},
    {VALIDATE, "[1]", "{}", "variables must be an object"},
    /* declared executor schemas */
    {DECLARED, "[]", NULL, "must be a JSON object"},
    {DECLARED, "{\"fields\": []}", NULL, "non-empty string \"type\""},
    {DECLARED, "{\"type\": \"p\"}", NULL, "\"fields\" array"},
    {DECLARED, "{\"type\": \"p\", \"fields\": [{\"name\": \"a\"}]}", NULL, "needs a \"schema\" object"},
    {DECLARED, "{\"type\": \"p\", \"fields\": [{\"schema\": {}}]}", NULL, "declared field 0 needs"},
    {DECLARED, "{\"type\": \"p\", \"fields\": [{\"name\": \"a\", \"schema\": {}}, {\"name\": \"a\", \"schema\": {}}]}",
     NULL, "appears twice"},
    {DECLARED, "{\"type\": \"p\", \"fields\": [{\"name\": \"a\", \"schema\": {}, \"template\": 1}]}", NULL,
     "\"template\" must be a string"},
    {DECLARED, "{\"type\": \"p\", \"fields\": [], \"variables\": []}", NULL, "must be null or a JSON schema"},
    /* server-side template check */
    {CHECK_TEMPLATE, "{\"job_configuration\": {\"a\": \"{{ x }}\"}}", NULL, "must contain both"},
    {CHECK_TEMPLATE, "{\"job_configuration\": {\"a\": \"{{ x }}\", \"b\": {\"{{ k }}\": 1}}, \"variables\": {\"properties\": {\"y\": {}}}}",
     NULL, "undeclared variable(s): x, k."},
    {CHECK_TEMPLATE, "{\"job_configuration\": {\"a\": \"{{ prefect.variables.v }}\"}, \"variables\": {\"properties\": {\"y\": {}}}}",
     NULL, "prefect.variables.v"},
    /* block references */
    {BLOCKS, "{\"a\": \"{{ prefect.blocks.secret }}\"}", "{}", "invalid block placeholder"},
    {BLOCKS, "{\"a\": \"{{ prefect.blocks.secret.gone }}\"}", "{}", "block not found: 'gone' of type 'secret'"},
    {BLOCKS, "{\"a\": {\"$ref\": {\"block_document_id\": \"42\"}}}", "{}", "block not found: ID '42'"},
    {BLOCKS, "{\"a\": {\"$ref\": {\"block_document_id\": 42}}}", "{}", "block_document_id must be a string"},
    {BLOCKS, "{\"a\": {\"$ref\": null}}", "{}", "\"$ref\" must be an object"},
    {BLOCKS, "{\"a\": \"{{ prefect.blocks.j.c.x.y }}\"}", "{\"slug:j/c\": {\"x\": {}}}", "the path \"x.y\" does not exist"},
    {BLOCKS, "{\"a\": \"u={{ prefect.blocks.j.c }}\"}", "{\"slug:j/c\": {\"x\": 1}}", "resolves to an object"},
    {BLOCKS, "{\"a\": \"u={{ prefect.blocks.j.c.l }}\"}", "{\"slug:j/c\": {\"l\": [1]}}", "resolves to an array"},
    {BLOCKS, "{\"a\": \"{{ prefect.blocks.j.c }}\"}", "{\"slug:j/c\": 5}", "is not an object"},
    {BLOCKS, "{\"a\": 1}", "[]", "block documents must be an object"},
    {VARIABLES, "{\"a\": 1}", "[]", "variables must be an object"},
    /* prepare */
    {PREPARE, "{\"command\": 5}", NULL, "command must be a string or null, not an integer"},
    {PREPARE, "{\"env\": \"x\"}", NULL, "env must be an object, not a string"},
    {PREPARE, "{\"labels\": {\"a\": true}}", NULL, "label \"a\" must be a string, not a boolean"},
    {PREPARE, "{\"name\": [1]}", NULL, "name must be a string or null, not an array"},
    /* merge */
    {MERGE, "{\"env\": {\"A\": \"1\"}}", "{\"env\": [1]}", "env must be an object to update"},
    {MERGE, "[1]", "{}", "deployment job variables must be an object"},
};

static const char *kind_name(enum kind k)
{
    static const char *const names[] = {"load", "apply", "validate", "declared", "check_template",
                                        "blocks", "variables", "prepare", "merge"};
    return names[k];
}

static json_t *parse(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    if (!v) {
        fprintf(stderr, "test table has invalid JSON: %s\n", text);
        exit(2);
    }
    return v;
}

/* Runs one row; returns 1 when the call failed as expected. */
static int run_row(const struct row *r, char *err, size_t errlen)
{
    json_t *a = NULL;
    json_t *b = NULL;
    json_t *out = NULL;
    int failed = 0;

    err[0] = '\0';
    if (r->kind != LOAD)
        a = parse(r->a);
    if (r->b)
        b = parse(r->b);
    switch (r->kind) {
    case LOAD:
        out = yamljson_loads(r->a, strlen(r->a), "t", err, errlen);
        failed = out == NULL;
        break;
    case APPLY:
        out = render_apply(a, b, NULL, NULL, err, errlen);
        failed = out == NULL;
        break;
    case VALIDATE:
        failed = render_validate(a, b, err, errlen) < 0;
        break;
    case DECLARED:
        out = render_default_template(a, err, errlen);
        failed = out == NULL;
        break;
    case CHECK_TEMPLATE:
        failed = render_check_template(a, err, errlen) < 0;
        break;
    case BLOCKS:
        failed = render_resolve_blocks(a, b, err, errlen) < 0;
        break;
    case VARIABLES:
        failed = render_resolve_variables(a, b, err, errlen) < 0;
        break;
    case PREPARE: {
        json_t *run = parse("{\"id\": \"6f1b0c1e-5a49-4f7e-9a39-3c1d1d4d1a01\", \"name\": \"r\"}");
        struct render_context ctx = {.flow_run = run};

        failed = render_prepare(a, &ctx, err, errlen) < 0;
        json_decref(run);
        break;
    }
    case MERGE:
        out = render_merge_job_variables_checked(a, b, err, errlen);
        failed = out == NULL;
        break;
    }
    json_decref(a);
    json_decref(b);
    json_decref(out);
    return failed;
}

int main(void)
{
    int failures = 0;
    size_t n = sizeof(rows) / sizeof(rows[0]);

    for (size_t i = 0; i < n; i++) {
        char err[1024];
        int failed = run_row(&rows[i], err, sizeof(err));

        if (!failed) {
            printf("FAIL %s row %zu: accepted %s\n", kind_name(rows[i].kind), i, rows[i].a);
            failures++;
        } else if (!strstr(err, rows[i].expected)) {
            printf("FAIL %s row %zu: error \"%s\" lacks \"%s\"\n", kind_name(rows[i].kind), i, err,
                   rows[i].expected);
            failures++;
        }
    }
    {
        /* Exit status of `drover render`: 2 for usage errors, 1 for bad input. */
        static const struct {
            const char *args[4];
            int argc;
            int status;
        } calls[] = {
            {{"render", "--bogus"}, 2, 2},
            {{"render"}, 1, 2},
            {{"render", "--template"}, 2, 2},
            {{"render", "--template", "/nonexistent/template.json"}, 3, 1},
        };

        for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
            int status = render_cli_main(calls[i].argc, (char **)calls[i].args);

            if (status != calls[i].status) {
                printf("FAIL cli call %zu: exit %d, expected %d\n", i, status, calls[i].status);
                failures++;
            }
        }
    }
    printf("%zu rows, %d failed\n", n, failures);
    return failures ? 1 : 0;
}
