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
 *   refs   = render_collect_blocks(config)    -> fetch each -> render_resolve_blocks()
 *   names  = render_collect_variables(config) -> fetch each -> render_resolve_variables()
 *   render_prepare(config, &ctx)
 *   render_order_fields(config)       (only to print Prefect's key order)
 *
 * The supervisor's faster form of the same steps, with the template
 * compiled once per work pool template and no walk only to list names:
 *   tmpl   = render_template_compile(base_template)       (kept between runs)
 *   config = render_template_apply(tmpl, vars, &refs)  -> fetch each
 *   names  = render_resolve_blocks_collect(config, blocks) -> fetch each
 *   render_resolve_variables(config, variables); render_prepare(config, &ctx)
 *
 * An empty list from a collect function means the matching resolve
 * function has nothing to do.
 *
 * Block resolution is a single pass, as in Prefect: block data that itself
 * contains block references is inserted as is, so one collect/fetch/resolve
 * round is complete.  Variables are collected after blocks are resolved
 * because block data may contain variable placeholders.
 *
 * Trees returned here may share unchanged scalar nodes (strings, numbers)
 * with the inputs.  Nothing in this module modifies a scalar in place; callers
 * must not either (json_string_set and friends), or inputs change too.
 *
 * Limits: JSON integers must fit in 64 bits (json_int_t) and reals must be
 * finite; Python accepts both without bound.  Strings may not contain U+0000.
 */
#ifndef DROVER_RENDER_H
#define DROVER_RENDER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
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
 * (command, env, labels, name) included; a common field left out is added
 * first with Prefect's own schema for it.  A field may also carry
 * "required": true, which lists it in the inferred schema's "required".
 * When "variables" is null the variables schema is inferred from the
 * fields (each field's schema without "template"), as Prefect does for a
 * worker without a variables class.
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
 * keys overwritten by the run.  Either argument may be NULL.  Returns NULL
 * when an argument is not an object or the run's env is not an object while
 * the deployment's is (Prefect raises there too), or on allocation failure.
 * render_merge_job_variables_checked also writes the reason into err. */
json_t *render_merge_job_variables(const json_t *deployment_vars, const json_t *run_vars);
json_t *render_merge_job_variables_checked(const json_t *deployment_vars, const json_t *run_vars,
                                           char *err, size_t errlen);

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

/* A base job template compiled for render_template_apply: checked, its
 * placeholders found and their names split, and the schema defaults they
 * fall back to looked up.  Compile once per work pool template and apply
 * it to each flow run's job variables.  The compiled template keeps a
 * reference to base_template and points into it, so base_template must not
 * be modified while the compiled template exists.  Returns NULL with err
 * when the template is not an object with job_configuration and variables
 * objects, nests deeper than RENDER_MAX_DEPTH, or memory runs out.  A bad
 * variables.properties entry is reported by each apply,
 * because render_apply reports it after checking the job variables. */
struct render_template;
struct render_template *render_template_compile(const json_t *base_template, char *err,
                                                size_t errlen);
/* render_apply with a compiled template: the same result and the same
 * errors, except for those render_template_compile reports.  When
 * blocks is not NULL, *blocks receives the list render_collect_blocks
 * would return for the result, found while rendering without a walk over
 * the result (NULL when the render fails). */
json_t *render_template_apply(const struct render_template *tmpl, const json_t *job_vars,
                              render_getenv_fn environ_lookup, void *environ_arg,
                              json_t **blocks, char *err, size_t errlen);
/* Frees a compiled template and sets *tmpl to NULL; accepts NULL. */
void render_template_free(struct render_template **tmpl);

/* One flow run rendered from a compiled template to the JSON text its
 * executor gets, in the supervisor's steps:
 *
 *   rr    = render_run_new(tmpl, vars, ..., &blocks)   -> fetch each block
 *   names = render_run_resolve_blocks(rr, blocks)      -> fetch each variable
 *   render_run_resolve_variables(rr, variables)
 *   text  = render_run_text(rr, &ctx, &len); render_run_free(rr)
 *
 * The text is json_dumps(config, JSON_COMPACT) of the configuration that
 * the jansson steps above produce (render_template_apply,
 * render_resolve_blocks_collect, render_resolve_variables, render_prepare).
 * Every list and error is theirs too, because the run is kept in an arena
 * only where that gives the same result and goes to those steps otherwise.
 * Each step is called once, in order, and a NULL ctx skips the prepare
 * step.  The run takes its own references to job_vars, blocks and vars.
 * It borrows tmpl, which must outlive it, and reads ctx only during
 * render_run_text. */
struct render_run;
struct render_run *render_run_new(const struct render_template *tmpl, const json_t *job_vars,
                                  render_getenv_fn environ_lookup, void *environ_arg,
                                  json_t **blocks, char *err, size_t errlen);
json_t *render_run_resolve_blocks(struct render_run *rr, const json_t *blocks, char *err,
                                  size_t errlen);
int render_run_resolve_variables(struct render_run *rr, const json_t *vars, char *err,
                                 size_t errlen);
/* A malloc'd NUL-terminated text, its length in *len when len is not NULL. */
struct render_context;
char *render_run_text(struct render_run *rr, const struct render_context *ctx, size_t *len,
                      char *err, size_t errlen);
/* Whether the run was rendered without jansson trees (for tests). */
int render_run_is_fast(const struct render_run *rr);
void render_run_free(struct render_run *rr);

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

/* render_resolve_blocks, then render_collect_variables on the result, in
 * one walk over config.  Returns the variable list (as
 * render_collect_variables returns it), or NULL with err. */
json_t *render_resolve_blocks_collect(json_t *config, const json_t *blocks, char *err,
                                      size_t errlen);

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
    const char   *worker_id;       /* PREFECT__WORKER_ID; NULL on Prefect OSS */
    render_getenv_fn environ_lookup; /* for {{ $NAME }} in the name; NULL = getenv */
    void         *environ_arg;
};

/* Fills env, labels, name and command of a rendered configuration (in place)
 * as Prefect's prepare_for_flow_run does.  The env is the settings,
 * PREFECT__FLOW_RUN_ID and the attribution variables under the rendered env,
 * with null values removed and the rest turned into Python's text form.
 * Labels get the prefect.io/ entries, the name is rendered with ctx, and
 * the command defaults to "prefect flow-run execute".  The four base fields
 * are first checked as Prefect's configuration class checks them (command
 * and name strings or null, env an object, labels an object of strings).
 * Existing keys keep their position and missing ones are appended. */
int render_prepare(json_t *config, const struct render_context *ctx, char *err, size_t errlen);

/* Moves command, env, labels and name to the front of a prepared
 * configuration, in that order, as Prefect's model_dump prints the
 * configuration object; the other fields keep their order.  Key order
 * does not matter to executors, so only output meant to match Prefect's
 * byte for byte (drover render) needs this.  Returns 0 or -1 (no memory). */
int render_order_fields(json_t *config);

/* Writes Python's str() text form of a JSON value into a new malloc'd string
 * ("True", "None", "{'a': 1}"); NULL on allocation failure. */
char *render_pytext(const json_t *value);

/* Serialises a value exactly as Python's json.dumps(value, indent=indent)
 * does with its default ensure_ascii=True (indent < 0 means indent=None).
 * This is the renderer's canonical output form.  Returns a malloc'd string,
 * NULL on allocation failure or beyond RENDER_MAX_TEXT bytes. */
char *render_dumps(const json_t *value, int indent);

/* Installs a cache of small freed blocks in front of malloc as jansson's
 * allocator (json_set_alloc_funcs), for the whole process.  Renders
 * allocate and free hundreds of small jansson values each, and the cache
 * serves them faster than glibc's malloc.  Safe to call at any time, also
 * while jansson values allocated with malloc are alive: every cached
 * block is a malloc block, and render_pool_free takes any malloc block.
 * Each thread keeps its own lists, each capped at RENDER_POOL_MAX_BLOCKS
 * blocks of at most RENDER_POOL_MAX_SIZE bytes.  In AddressSanitizer
 * builds it does nothing. */
#define RENDER_POOL_MAX_SIZE 256
#define RENDER_POOL_MAX_BLOCKS 1024
void render_pool_install(void);
void *render_pool_malloc(size_t size);
void render_pool_free(void *ptr);

/* `drover render ...`; argv[0] is "render".  Prints the job configuration
 * JSON on stdout.  Returns 0, 1 on bad input (message on stderr naming the
 * file and the problem) or 2 on usage errors. */
int render_cli_main(int argc, char **argv);

/* ---------------------------------------------------------------------
 * Helpers shared by the renderer's own source files.  Other modules use
 * the functions above.
 * --------------------------------------------------------------------- */

#include <stdint.h>

/* Hard cap on any text the renderer builds (one string, one JSON dump). */
#define RENDER_MAX_TEXT ((size_t)64 * 1024 * 1024)
/* Nesting deeper than this is rejected (jansson's parser has the same cap). */
#define RENDER_MAX_DEPTH 2048

/* Growable byte buffer (initialize with {0}, never copy); failed is set once an allocation fails or the text
 * would exceed RENDER_MAX_TEXT, after which appends do nothing. */
struct render_buf {
    char  *data;
    size_t len;
    size_t cap;
    int    failed;
    char   small[192]; /* first storage, so short strings need no malloc */
};
void render_buf_append_slow(struct render_buf *buf, const char *text, size_t len);
/* Copies len bytes; short copies take a few moves instead of a call. */
static inline void render_copy_bytes(char *dst, const char *src, size_t len)
{
    if (len > 16) {
        memcpy(dst, src, len);
    } else if (len >= 8) {
        uint64_t head, tail;

        memcpy(&head, src, 8);
        memcpy(&tail, src + len - 8, 8);
        memcpy(dst, &head, 8);
        memcpy(dst + len - 8, &tail, 8);
    } else if (len >= 4) {
        uint32_t head, tail;

        memcpy(&head, src, 4);
        memcpy(&tail, src + len - 4, 4);
        memcpy(dst, &head, 4);
        memcpy(dst + len - 4, &tail, 4);
    } else {
        for (size_t i = 0; i < len; i++)
            dst[i] = src[i];
    }
}

/* Appends text; inline while it fits, because the renderer appends many
 * short pieces. */
static inline void render_buf_append(struct render_buf *buf, const char *text, size_t len)
{
    if (buf->data && !buf->failed && len < buf->cap - buf->len) {
        render_copy_bytes(buf->data + buf->len, text, len);
        buf->len += len;
        buf->data[buf->len] = '\0';
        return;
    }
    render_buf_append_slow(buf, text, len);
}
void render_buf_putc(struct render_buf *buf, char c);
/* Makes room for extra more bytes and the NUL, so that up to extra bytes
 * may be written at data + len directly.  Returns 0, or -1 once failed. */
int render_buf_reserve_slow(struct render_buf *buf, size_t extra);
static inline int render_buf_reserve(struct render_buf *buf, size_t extra)
{
    if (buf->data && !buf->failed && extra < buf->cap - buf->len)
        return 0;
    return render_buf_reserve_slow(buf, extra);
}
/* Returns the NUL-terminated text and hands it to the caller, or NULL (and
 * frees it) if the buffer failed. */
char *render_buf_finish(struct render_buf *buf);
void render_buf_free(struct render_buf *buf);

/* Appends str(value) (top = 1) or repr(value) (top = 0) in Python's form. */
void render_pytext_append(struct render_buf *buf, const json_t *value, int top);
/* Appends the decimal text of an integer. */
void render_int_append(struct render_buf *buf, json_int_t value);
/* Appends Python's repr() of a float: shortest round-trip digits. */
void render_pyfloat_append(struct render_buf *buf, double value);
/* Appends json.dumps(value, indent=indent) as render_dumps does. */
void render_dumps_append(struct render_buf *buf, const json_t *value, int indent);

/* Code point classes of Python's re module (\w, \s) and str.isprintable. */
int render_uc_is_word(uint32_t cp);
int render_uc_is_space(uint32_t cp);
int render_uc_is_printable(uint32_t cp);
/* Value 0-9 of a decimal digit (Unicode Nd, as int() reads them), else -1. */
int render_uc_decimal(uint32_t cp);
/* Decodes one UTF-8 sequence at s (n bytes available); returns its length
 * (1 for an invalid byte, decoded as that byte's value). */
size_t render_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* One match of Prefect's placeholder pattern {{\s*([\w.\-\[\]$]+)\s*}}. */
enum render_ph_kind {
    RENDER_PH_STANDARD,
    RENDER_PH_BLOCK,     /* name starts with prefect.blocks. */
    RENDER_PH_VARIABLE,  /* name starts with prefect.variables. */
    RENDER_PH_ENV        /* name starts with $ */
};
struct render_ph {
    size_t start, end;           /* the full match: text[start, end) */
    size_t name_start, name_end; /* the name */
    enum render_ph_kind kind;
};
/* Finds the leftmost match at or after pos, as re.finditer does.  Returns 1
 * and fills ph, or 0 when there is none. */
int render_ph_next(const char *text, size_t len, size_t pos, struct render_ph *ph);
/* Python truthiness of a JSON value (null, false, 0, 0.0, "", [], {} are false). */
int render_truthy(const json_t *value);
/* Prefect's get_from_dict(root, path): returns a new reference, or NULL
 * when the path does not resolve. */
json_t *render_lookup(const json_t *root, const char *path, size_t len);
/* render_lookup over Prefect's `variables` dict without building it: the
 * first path segment is taken from values, else from the non-null
 * "default" of properties[segment]. */
json_t *render_lookup_layered(const json_t *values, const json_t *properties, const char *path,
                              size_t len);
/* render_apply_values with that layered lookup. */
int render_apply_layered(const json_t *tmpl, const json_t *values, const json_t *properties,
                         render_getenv_fn environ_lookup, void *environ_arg, json_t **out,
                         char *err, size_t errlen);
/* Renders the dict union layers[0] | ... | layers[n-1] (all objects) as
 * render_apply_layered renders an object, without building the union. */
int render_apply_union(const json_t *const *layers, size_t n, const json_t *values,
                       const json_t *properties, render_getenv_fn environ_lookup,
                       void *environ_arg, json_t **out, char *err, size_t errlen);
/* Prefect's apply_values(tmpl, values) with removal of unset values: *out
 * is the rendered value (new reference) or NULL when tmpl is a whole-string
 * placeholder that is not set.  Returns 0, or -1 with err. */
int render_apply_values(const json_t *tmpl, const json_t *values, render_getenv_fn environ_lookup,
                        void *environ_arg, json_t **out, char *err, size_t errlen);
/* Iterates an object's members in order with fewer library calls than
 * json_object_foreach; the current value may be replaced with
 * json_object_iter_set_new, but no key may be added or removed. */
#define RENDER_OBJECT_FOREACH(object, iter, key, value)                          \
    for ((iter) = json_object_iter(object);                                     \
         (iter) && ((key) = json_object_iter_key(iter),                         \
                    (value) = json_object_iter_value(iter), 1);                 \
         (iter) = json_object_iter_next((object), (iter)))

#define RENDER_OBJECT_FOREACH_VALUE(object, iter, value)                         \
    for ((iter) = json_object_iter(object);                                     \
         (iter) && ((value) = json_object_iter_value(iter), 1);                 \
         (iter) = json_object_iter_next((object), (iter)))

/* One step of get_from_dict: value[seg] for an object, value[int(seg)]
 * for an array or string.  Returns a new reference, or NULL (unset). */
json_t *render_lookup_segment(const json_t *value, const char *seg, size_t seglen);
/* render_apply_layered starting at nesting depth (for the depth cap). */
int render_apply_item(const json_t *tmpl, const json_t *values, const json_t *properties,
                      render_getenv_fn environ_lookup, void *environ_arg, int depth,
                      json_t **out, char *err, size_t errlen);

/* The env template that will be rendered: job_configuration.env seeded with
 * the default env and merged with the job variables' env, each only when
 * truthy, as from_template_and_values does.  It is kept as the list of
 * objects to unite, so no merged copy is built.  A single entry may be any
 * value, and n == 0 when the template has no env and nothing seeds one. */
struct render_env_layers {
    const json_t *layer[3];
    size_t n;
};
int render_effective_env(const json_t *config_env, const json_t *default_env,
                         const json_t *vars_env, struct render_env_layers *env, char *err,
                         size_t errlen);
/* Checks that every variables.properties entry can be read for its
 * default as Prefect reads it.  Returns 0, or -1 with err. */
int render_check_properties(const json_t *properties, char *err, size_t errlen);
/* The job variables with dotted keys expanded (set_in_dict, deep-merged
 * under the plain keys): a new reference, an empty object for NULL or
 * null, or NULL with err. */
json_t *render_expand_dotted(const json_t *job_vars, char *err, size_t errlen);
/* "an object", "a string", ... for messages. */
const char *render_type_name(const json_t *value);

/* Appends the block keys below node, at depth, to list (each once, seen
 * holds those listed).  Returns 0 or -1 (no memory). */
int render_collect_blocks_into(const json_t *node, json_t *list, json_t *seen, int depth);
/* Appends the variable names below node, at depth, to list (each once,
 * seen contains those listed).  Returns 0 or -1 (no memory). */
int render_collect_variables_into(const json_t *node, json_t *list, json_t *seen, int depth);

/* Whether value can contain no placeholder and no block reference: a
 * number, boolean or null, or a string shorter than "{{x}}" or without
 * '{'.  The walks over a configuration skip such values cheaply. */
static inline int render_is_plain(const json_t *value)
{
    size_t len;

    if (!json_is_string(value))
        return !json_is_object(value) && !json_is_array(value);
    len = json_string_length(value);
    return len < 5 || !memchr(json_string_value(value), '{', len);
}

/* Copies containers and shares scalars (see the note at the top). */
json_t *render_copy(const json_t *value);
/* Formats err like snprintf; tolerates err == NULL. */
void render_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends a short, quoted excerpt of text to a message (at most 60 bytes). */
const char *render_excerpt(const char *text, char *out, size_t outlen);

#endif /* DROVER_RENDER_H */
