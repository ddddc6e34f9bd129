/*
 * `drover render`: renders a job configuration from files, the way the
 * supervisor renders one for a flow run, and prints it as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "yamljson.h"

struct cli_options {
    const char *template_path;
    const char *declared_path;
    const char *deployment_vars_path;
    const char *run_vars_path;
    const char *values_path;
    const char *flow_run_path;
    const char *flow_path;
    const char *deployment_path;
    const char *work_pool_path;
    const char *settings_env_path;
    const char *environ_path;
    const char *worker_name;
    const char *worker_id;
    const char *prefect_version;
    int no_prepare;
    int validate;
    int print_template;
};

static void usage(FILE *out)
{
    fputs("usage: drover render --template FILE [options]\n"
          "       drover render --declared FILE --print-template\n"
          "\n"
          "Renders a flow run's job configuration as the worker would and prints it as\n"
          "JSON (the form of Python's json.dumps(indent=2)).  Files may be JSON or YAML.\n"
          "\n"
          "  --template FILE         base job template {job_configuration, variables}\n"
          "  --declared FILE         executor schema (as printed by --describe); the base\n"
          "                          job template is derived from it\n"
          "  --print-template        print the base job template and exit\n"
          "  --deployment-vars FILE  the deployment's job_variables\n"
          "  --run-vars FILE         the flow run's job_variables\n"
          "  --values FILE           {\"variables\": {NAME: VALUE},\n"
          "                           \"blocks\": {\"slug:TYPE/NAME\" or \"document:ID\": DATA}}\n"
          "  --validate              check the job variables against the variables schema\n"
          "  --flow-run FILE         the flow run (GET /flow_runs/ID); enables the prepare step\n"
          "  --flow FILE             the flow (GET /flows/ID)\n"
          "  --deployment FILE       the deployment (GET /deployments/ID)\n"
          "  --work-pool FILE        the work pool ({\"name\", \"id\"})\n"
          "  --settings-env FILE     object of PREFECT_* settings put under the env\n"
          "  --environ FILE          object used for {{ $NAME }} instead of the environment\n"
          "  --worker-name NAME      worker name for the env and labels\n"
          "  --worker-id ID          worker id (PREFECT__WORKER_ID)\n"
          "  --prefect-version V     value of the prefect.io/version label\n"
          "  --no-prepare            print the configuration before the prepare step\n"
          "\n"
          "Exit status: 0 rendered, 1 invalid input, 2 usage error.\n",
          out);
}

static int parse_args(int argc, char **argv, struct cli_options *opt)
{
    static const struct {
        const char *name;
        size_t offset;
    } with_value[] = {
        {"--template", offsetof(struct cli_options, template_path)},
        {"--declared", offsetof(struct cli_options, declared_path)},
        {"--deployment-vars", offsetof(struct cli_options, deployment_vars_path)},
        {"--run-vars", offsetof(struct cli_options, run_vars_path)},
        {"--values", offsetof(struct cli_options, values_path)},
        {"--flow-run", offsetof(struct cli_options, flow_run_path)},
        {"--flow", offsetof(struct cli_options, flow_path)},
        {"--deployment", offsetof(struct cli_options, deployment_path)},
        {"--work-pool", offsetof(struct cli_options, work_pool_path)},
        {"--settings-env", offsetof(struct cli_options, settings_env_path)},
        {"--environ", offsetof(struct cli_options, environ_path)},
        {"--worker-name", offsetof(struct cli_options, worker_name)},
        {"--worker-id", offsetof(struct cli_options, worker_id)},
        {"--prefect-version", offsetof(struct cli_options, prefect_version)},
    };

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        size_t k;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--no-prepare") == 0) {
            opt->no_prepare = 1;
            continue;
        }
        if (strcmp(arg, "--validate") == 0) {
            opt->validate = 1;
            continue;
        }
        if (strcmp(arg, "--print-template") == 0) {
            opt->print_template = 1;
            continue;
        }
        for (k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++)
            if (strcmp(arg, with_value[k].name) == 0)
                break;
        if (k == sizeof(with_value) / sizeof(with_value[0])) {
            fprintf(stderr, "drover render: unknown option %s (see --help)\n", arg);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "drover render: %s needs a value\n", arg);
            return -1;
        }
        *(const char **)((char *)opt + with_value[k].offset) = argv[++i];
    }
    if (!opt->template_path == !opt->declared_path) {
        fprintf(stderr, "drover render: give exactly one of --template and --declared\n");
        return -1;
    }
    return 0;
}

/* Loads an optional file that must hold a JSON object (or null). */
static int load_object(const char *path, json_t **out, int allow_null)
{
    char err[512];

    *out = NULL;
    if (!path)
        return 0;
    *out = yamljson_load_file(path, err, sizeof(err));
    if (!*out) {
        fprintf(stderr, "drover render: %s\n", err);
        return -1;
    }
    if (!json_is_object(*out) && !(allow_null && json_is_null(*out))) {
        fprintf(stderr, "drover render: %s: expected a JSON object at the top level\n", path);
        json_decref(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static const char *environ_from_object(const char *name, void *arg)
{
    json_t *value = json_object_get((json_t *)arg, name);
    return json_is_string(value) ? json_string_value(value) : NULL;
}

static int print_json(const json_t *value)
{
    char *text = render_dumps(value, 2);

    if (!text) {
        fprintf(stderr, "drover render: output too large or out of memory\n");
        return 1;
    }
    fputs(text, stdout);
    fputc('\n', stdout);
    free(text);
    return fflush(stdout) == 0 ? 0 : 1;
}

struct cli_inputs {
    json_t *base;
    json_t *deployment_vars;
    json_t *run_vars;
    json_t *values;
    json_t *flow_run;
    json_t *flow;
    json_t *deployment;
    json_t *work_pool;
    json_t *settings_env;
    json_t *environ;
};

static void inputs_free(struct cli_inputs *in)
{
    json_decref(in->base);
    json_decref(in->deployment_vars);
    json_decref(in->run_vars);
    json_decref(in->values);
    json_decref(in->flow_run);
    json_decref(in->flow);
    json_decref(in->deployment);
    json_decref(in->work_pool);
    json_decref(in->settings_env);
    json_decref(in->environ);
}

static int load_inputs(const struct cli_options *opt, struct cli_inputs *in)
{
    char err[512];

    if (opt->declared_path) {
        json_t *declared;

        if (load_object(opt->declared_path, &declared, 0) < 0)
            return -1;
        in->base = render_default_template(declared, err, sizeof(err));
        json_decref(declared);
        if (!in->base) {
            fprintf(stderr, "drover render: %s: %s\n", opt->declared_path, err);
            return -1;
        }
    } else if (load_object(opt->template_path, &in->base, 0) < 0) {
        return -1;
    }
    if (load_object(opt->deployment_vars_path, &in->deployment_vars, 1) < 0 ||
        load_object(opt->run_vars_path, &in->run_vars, 1) < 0 ||
        load_object(opt->values_path, &in->values, 0) < 0 ||
        load_object(opt->flow_run_path, &in->flow_run, 0) < 0 ||
        load_object(opt->flow_path, &in->flow, 0) < 0 ||
        load_object(opt->deployment_path, &in->deployment, 0) < 0 ||
        load_object(opt->work_pool_path, &in->work_pool, 0) < 0 ||
        load_object(opt->settings_env_path, &in->settings_env, 0) < 0 ||
        load_object(opt->environ_path, &in->environ, 0) < 0)
        return -1;
    if (in->values) {
        const json_t *vars = json_object_get(in->values, "variables");
        const json_t *blocks = json_object_get(in->values, "blocks");

        if ((vars && !json_is_object(vars)) || (blocks && !json_is_object(blocks))) {
            fprintf(stderr, "drover render: %s: \"variables\" and \"blocks\" must be objects\n",
                    opt->values_path);
            return -1;
        }
    }
    return 0;
}

static const char *string_member(const json_t *object, const char *key)
{
    return json_string_value(json_object_get(object, key));
}

static int run_pipeline(const struct cli_options *opt, struct cli_inputs *in)
{
    char err[1024];
    const char *template_name = opt->template_path ? opt->template_path : opt->declared_path;
    struct render_template *tmpl = NULL;
    struct render_run *rr = NULL;
    json_t *vars = NULL;
    json_t *config = NULL;
    json_t *blocks = NULL;
    json_t *names = NULL;
    const json_t *block_data = in->values ? json_object_get(in->values, "blocks") : NULL;
    struct render_context ctx = {
        .flow_run = in->flow_run,
        .flow = in->flow,
        .deployment = in->deployment,
        .work_pool_name = string_member(in->work_pool, "name"),
        .work_pool_id = string_member(in->work_pool, "id"),
        .worker_name = opt->worker_name,
        .worker_id = opt->worker_id,
        .prefect_version = opt->prefect_version,
        .settings_env = in->settings_env,
        .environ_lookup = in->environ ? environ_from_object : NULL,
        .environ_arg = in->environ,
    };
    int prepare = in->flow_run && !opt->no_prepare;
    json_error_t parse_error;
    char *text = NULL;
    size_t len = 0;
    int rc = 1;

    vars = render_merge_job_variables_checked(in->deployment_vars, in->run_vars, err, sizeof(err));
    if (!vars) {
        fprintf(stderr, "drover render: job variables: %s\n", err);
        goto done;
    }
    if (opt->validate &&
        render_validate(json_object_get(in->base, "variables"), vars, err, sizeof(err)) < 0) {
        fprintf(stderr, "drover render: job variables do not match the template's variables "
                "schema: %s\n", err);
        goto done;
    }
    /* The supervisor's steps, so that this command previews what a run
     * gets; the lists of blocks and variables are not needed here. */
    tmpl = render_template_compile(in->base, err, sizeof(err));
    if (tmpl)
        rr = render_run_new(tmpl, vars, in->environ ? environ_from_object : NULL, in->environ,
                            &blocks, err, sizeof(err));
    if (!rr) {
        fprintf(stderr, "drover render: %s: %s\n", template_name, err);
        goto done;
    }
    names = render_run_resolve_blocks(rr, block_data, err, sizeof(err));
    if (!names ||
        render_run_resolve_variables(rr,
                                     in->values ? json_object_get(in->values, "variables") : NULL,
                                     err, sizeof(err)) < 0 ||
        (text = render_run_text(rr, prepare ? &ctx : NULL, &len, err, sizeof(err))) == NULL) {
        fprintf(stderr, "drover render: %s\n", err);
        goto done;
    }
    /* The text is what an executor gets; it is printed in Prefect's form. */
    config = json_loadb(text, len, JSON_ALLOW_NUL, &parse_error);
    if (!config) {
        fprintf(stderr, "drover render: cannot read the rendered configuration back: %s\n",
                parse_error.text);
        goto done;
    }
    if (prepare && render_order_fields(config) < 0) {
        fprintf(stderr, "drover render: out of memory\n");
        goto done;
    }
    rc = print_json(config);

done:
    render_run_free(rr);
    render_template_free(&tmpl);
    free(text);
    json_decref(vars);
    json_decref(config);
    json_decref(blocks);
    json_decref(names);
    return rc;
}

int render_cli_main(int argc, char **argv)
{
    struct cli_options opt = {0};
    struct cli_inputs in = {0};
    int rc;

    rc = parse_args(argc, argv, &opt);
    if (rc > 0)
        return 0;
    if (rc < 0)
        return 2;
    if (load_inputs(&opt, &in) < 0) {
        rc = 1;
        goto done;
    }
    if (opt.print_template) {
        char err[512];

        if (opt.template_path && render_check_template(in.base, err, sizeof(err)) < 0) {
            fprintf(stderr, "drover render: %s: %s\n", opt.template_path, err);
            rc = 1;
            goto done;
        }
        rc = print_json(in.base);
        goto done;
    }
    rc = run_pipeline(&opt, &in);

done:
    inputs_free(&in);
    return rc;
}
