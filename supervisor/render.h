/*
 * Job configuration rendering with the semantics of Prefect 3's workers.
 *
 * A library-like module: functions return NULL or -1 and write a one-line
 * reason into the caller's err buffer; nothing here logs or performs I/O.
 * Every json_t * returned is a new reference owned by the caller.  Inputs are
 * never modified unless the parameter is documented as updated in place.
 *
 * Rendering one flow run, in order:
 *   vars   = render_merge_job_variables(deployment_vars, run_vars)
 *   render_validate(template.variables, defaults+vars)          (optional)
 *   config = render_apply(base_template, vars)
 *   loop:  refs = render_collect_blocks(config)   -> fetch each  -> render_resolve_blocks()
 *   then:  names = render_collect_variables(config) -> fetch each -> render_resolve_variables()
 *   render_prepare(config, &ctx)
 */
#ifndef DROVER_RENDER_H
#define DROVER_RENDER_H

#include <stddef.h>
#include <jansson.h>

/*
 * Declared executor schema (the JSON text an executor sends in HELLO):
 *
 *   {"type": "process", "description": "...", "documentation_url": "...",
 *    "logo_url": "...",
 *    "fields": [ {"name": "command",
 *                 "schema": {"title": "Command", "anyOf": [...], "default": null,
 *                            "description": "..."},
 *                 "template": "{{ command }}"},          (template optional)
 *                ... ],
 *    "variables": null | {"type": "object", "properties": {...}, ...}}
 *
 * "fields" lists every job configuration field in order, the common ones
 * (command, env, labels, name) included.
 */

/* Checks a declared schema.  Returns 0, or -1 with the offending field in err. */
int render_check_schema(const json_t *declared, char *err, size_t errlen);

/* Derives the default base job template {"job_configuration", "variables"}
 * from a declared schema, as Prefect's BaseWorker derives it from its
 * configuration and variables classes.  Returns NULL with err on bad input. */
json_t *render_default_template(const json_t *declared, char *err, size_t errlen);

/* Checks a base job template as Prefect's server does on pool creation
 * (both keys present, every placeholder declared in variables.properties). */
int render_check_template(const json_t *base_template, char *err, size_t errlen);

/* Merges deployment and flow-run job variables: env updated key by key, other
 * keys overwritten by the run.  Either argument may be NULL. */
json_t *render_merge_job_variables(const json_t *deployment_vars, const json_t *run_vars);

/* Validates the values a run will render with (the schema defaults updated
 * with job_vars) against the variables JSON Schema.  Returns 0, or -1 with
 * the JSON path, the value and the expected type in err. */
int render_validate(const json_t *variables_schema, const json_t *job_vars,
                    char *err, size_t errlen);

/* Applies defaults, dotted keys, the env merge and every standard and $ENV
 * placeholder to base_template's job_configuration.  Block and variable
 * placeholders are left for the resolve steps.  environ_lookup returns the
 * worker's environment value for "{{ $NAME }}" (NULL = unset); pass NULL to
 * use getenv. */
typedef const char *(*render_getenv_fn)(const char *name, void *arg);
json_t *render_apply(const json_t *base_template, const json_t *job_vars,
                     render_getenv_fn environ_lookup, void *environ_arg,
                     char *err, size_t errlen);

/* Lists the block documents a configuration refers to, each once, as keys:
 *   "document:<uuid>"        for {"$ref": {"block_document_id": "<uuid>"}}
 *   "slug:<type>/<name>"     for {{ prefect.blocks.<type>.<name>... }}
 * Returns a JSON array of strings (possibly empty). */
json_t *render_collect_blocks(const json_t *config);

/* Replaces block references in config (updated in place) using blocks, an
 * object mapping the keys above to each document's "data".  A key absent
 * from blocks means the document does not exist, which is an error, as are
 * an unresolvable attribute path and an inline object.  Returns 0 or -1. */
int render_resolve_blocks(json_t *config, const json_t *blocks, char *err, size_t errlen);

/* Lists the Prefect variable names a configuration refers to, each once. */
json_t *render_collect_variables(const json_t *config);

/* Replaces {{ prefect.variables.NAME }} in config (in place) using vars, an
 * object mapping names to values; an absent name renders as "" as in
 * Prefect.  Returns 0 or -1. */
int render_resolve_variables(json_t *config, const json_t *vars, char *err, size_t errlen);

/* Context of the prepare step. */
struct render_context {
    const json_t *flow_run;        /* GET /flow_runs/{id}, required */
    const json_t *flow;            /* GET /flows/{id}, may be NULL */
    const json_t *deployment;      /* GET /deployments/{id}, may be NULL */
    const char   *work_pool_name;
    const char   *work_pool_id;
    const char   *worker_name;
    const char   *prefect_version; /* for the prefect.io/version label */
    const json_t *settings_env;    /* object: PREFECT_* settings passed through */
};

/* Fills env, labels, name and command of a rendered configuration (in place)
 * as Prefect's prepare_for_flow_run does: settings, PREFECT__FLOW_RUN_ID and
 * the attribution variables under the rendered env, null values removed and
 * the rest turned into Python's text form; prefect.io/ labels; the name
 * rendered with ctx; "prefect flow-run execute" when no command is set. */
int render_prepare(json_t *config, const struct render_context *ctx, char *err, size_t errlen);

/* Writes Python's str() text form of a JSON value into a new malloc'd string
 * ("True", "None", "{'a': 1}"); NULL on allocation failure. */
char *render_pytext(const json_t *value);

#endif /* DROVER_RENDER_H */
