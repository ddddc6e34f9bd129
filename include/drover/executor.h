/*
 * drover executor SDK: write an executor for one infrastructure type in C.
 *
 * The SDK owns the wire protocol (include/drover/protocol.h): it connects a
 * DEALER socket to the supervisor, says HELLO with the declared schema and the
 * inventory of runs it still knows, pings, detects a lost supervisor and
 * reconnects, resends STARTED and EXITED until they are acknowledged, keeps a
 * record of every run in a state directory so that runs survive a restart of
 * the executor, and handles SIGTERM/SIGINT.  An author supplies:
 *
 *   - a describe table (struct drover_describe): the type, its documentation
 *     and the job configuration fields it accepts;
 *   - a struct drover_executor_ops of callbacks: prepare, start, kill,
 *     recover, and the fd/timer callbacks that watch a run.
 *
 * Threading: everything runs on one thread, the SDK's loop.  Callbacks must
 * not block; a run is watched through a file descriptor the SDK polls
 * (drover_run_watch_fd) or a timer (drover_run_set_timer).
 *
 * Ownership: the SDK owns every struct drover_run; an author attaches its own
 * data with drover_run_set_data() and frees it in ops->release.  The json_t
 * configuration passed to prepare and start belongs to the SDK.
 */
#ifndef DROVER_EXECUTOR_H
#define DROVER_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "drover/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

struct drover_executor;
struct drover_run;

/*
 * One job configuration field.  The SDK declares the common fields command,
 * env, labels and name itself, before the author's fields; an author lists
 * only the fields of its infrastructure.
 */
struct drover_field {
    const char *name;          /* key in the job configuration: [A-Za-z_][A-Za-z0-9_]* */
    const char *title;         /* NULL: derived from name ("working_dir" -> "Working Dir") */
    const char *type;          /* a JSON type name ("string", "integer", "number",
                                  "boolean", "object", "array") or the JSON text of a
                                  schema object such as {"anyOf":[...]} */
    const char *default_json;  /* JSON text of the default, NULL for none */
    const char *description;   /* NULL for none */
    const char *template_text; /* NULL: "{{ <name> }}" */
};

/* Description of an executor type: the source of the schema that `--describe`
 * prints and HELLO carries (format in supervisor/render.h). */
struct drover_describe {
    const char *type;               /* [a-z0-9_-]{1,64} */
    const char *description;
    const char *documentation_url;  /* NULL for none */
    const char *logo_url;           /* NULL for none */
    const struct drover_field *fields;
    size_t n_fields;
    const char *variables_json;     /* NULL, or a JSON Schema object for the variables */
};

/* Return values of ops->start and ops->recover. */
enum drover_start_result {
    DROVER_START_FAILED  = -1,  /* err holds the reason; the SDK sends EXITED with it */
    DROVER_START_OK      = 0,   /* identifier holds the infrastructure identifier */
    DROVER_START_PENDING = 1    /* the author calls drover_run_started() or
                                   drover_run_failed() later, from a callback */
};

struct drover_executor_ops {
    const struct drover_describe *describe;

    /* Default for --capacity; 0 means four runs per online CPU. */
    unsigned default_capacity;

    /* Optional.  Called once after the options are parsed, before runs are
     * recovered and before connecting.  Settings of the author's own come
     * from the environment.  Return 0, or -1 with a reason to stop the
     * executor with exit status 1. */
    int (*init)(struct drover_executor *ex, char *err, size_t errlen);

    /* Optional.  May change the job configuration in place (for example add
     * a label).  Return 0, or -1 with a reason: the run then fails to start. */
    int (*prepare)(struct drover_run *run, json_t *config, char *err, size_t errlen);

    /* Required.  Starts the infrastructure for run.  Returns DROVER_START_OK
     * with a non-empty identifier (at most DROVER_MAX_IDENTIFIER bytes),
     * DROVER_START_PENDING, or DROVER_START_FAILED with a reason in err. */
    int (*start)(struct drover_run *run, const json_t *config,
                 char *identifier, size_t idlen, char *err, size_t errlen);

    /* Required.  Stops the run: ask it to stop, wait grace_seconds, then force
     * it.  Must not block: arm a timer for the forced stop.  The run reports
     * its end through drover_run_exited() as usual.  Return 0, or -1 with a
     * reason (logged). */
    int (*kill)(struct drover_run *run, unsigned grace_seconds, char *err, size_t errlen);

    /* Optional.  Called at start-up for each run that a previous executor with
     * the same id started and did not see end.  Re-adopt it by identifier:
     * return DROVER_START_OK when it is still alive (and watch it again), or
     * call drover_run_exited() and return DROVER_START_OK when it has ended,
     * or return DROVER_START_FAILED with a reason when it cannot be found.
     * A run the executor stopped during (DROVER_START_PENDING) comes with an
     * empty identifier: report its start with drover_run_started() if it
     * did start.  Without this callback such runs are reported as lost. */
    int (*recover)(struct drover_run *run, const char *identifier, char *err, size_t errlen);

    /* Called when a watched fd is readable or hung up. */
    void (*on_fd)(struct drover_run *run, int fd);

    /* Called once when a timer armed with drover_run_set_timer() expires. */
    void (*on_timer)(struct drover_run *run);

    /* Optional.  Frees what drover_run_set_data() attached; called when the
     * SDK forgets the run (its EXITED was acknowledged) or exits. */
    void (*release)(struct drover_run *run);

    /* Optional.  Called once before the executor exits. */
    void (*shutdown)(struct drover_executor *ex);
};

/*
 * Parses the command line (--connect, --id, --capacity, --describe,
 * --state-dir, --trace, --curve-server-key, --curve-secret-key-file, --help),
 * runs the executor until SIGTERM/SIGINT and returns the process exit status:
 * 0 after a clean shutdown or --describe/--help, 1 on a fatal error or a
 * REJECT from the supervisor, 2 on a usage error.
 */
int drover_executor_main(int argc, char **argv, const struct drover_executor_ops *ops);

/* Writes the declared schema JSON (the format in supervisor/render.h) as a
 * new json_t, or NULL with a reason in err when the describe table is
 * invalid.  The caller owns the result. */
json_t *drover_describe_schema(const struct drover_describe *d, char *err, size_t errlen);

/* --- Calls an author makes from callbacks ------------------------------- */

/* The run's flow run id (36 characters). */
const char *drover_run_flow_run_id(const struct drover_run *run);

/* The identifier returned by start or passed to recover ("" before). */
const char *drover_run_identifier(const struct drover_run *run);

struct drover_executor *drover_run_executor(const struct drover_run *run);

void  drover_run_set_data(struct drover_run *run, void *data);
void *drover_run_data(const struct drover_run *run);

/* Reports that a DROVER_START_PENDING run started. */
void drover_run_started(struct drover_run *run, const char *identifier);

/* Reports that a DROVER_START_PENDING run could not start. */
void drover_run_failed(struct drover_run *run, const char *error);

/* Reports the end of the run: an exit status, or -N when signal N ended it.
 * Later calls for the same run are ignored. */
void drover_run_exited(struct drover_run *run, int64_t code);

/* Same, with a reason for an abnormal end (for example a run lost while the
 * executor was down); error may be NULL. */
void drover_run_exited_error(struct drover_run *run, int64_t code, const char *error);

/* Sends one log line (no trailing newline).  Invalid UTF-8 and NUL bytes
 * are replaced by U+FFFD, and a line above DROVER_MAX_LOG_LINE bytes goes out
 * as several LOG messages.  Lines are dropped while the supervisor is not
 * connected (LOG is at most once). */
void drover_run_log(struct drover_run *run, int stream, const char *line, size_t len);

/* Splits raw output into lines and sends each complete line; a partial last
 * line is kept until more data or drover_run_log_flush().  stream is
 * DROVER_STREAM_STDOUT or DROVER_STREAM_STDERR. */
void drover_run_log_data(struct drover_run *run, int stream, const char *data, size_t len);
void drover_run_log_flush(struct drover_run *run, int stream);

/* Watches fd: ops->on_fd(run, fd) runs when it is readable or hung up.  At
 * most DROVER_MAX_RUN_FDS per run.  Returns 0 or -1. */
#define DROVER_MAX_RUN_FDS 4
int  drover_run_watch_fd(struct drover_run *run, int fd);
void drover_run_unwatch_fd(struct drover_run *run, int fd);

/* Arms the run's single timer: ops->on_timer(run) runs once after ms
 * milliseconds.  A negative ms disarms it. */
void drover_run_set_timer(struct drover_run *run, long ms);

/* Writes "<state dir>/<flow run id><suffix>" into buf: files named so belong
 * to the run and are removed once its EXITED is acknowledged.  Returns 0, or
 * -1 when buf is too small. */
int drover_run_state_path(const struct drover_run *run, const char *suffix, char *buf, size_t len);

/* The executor's state directory (created at start-up, one per executor id). */
const char *drover_executor_state_dir(const struct drover_executor *ex);
const char *drover_executor_id(const struct drover_executor *ex);
const char *drover_executor_argv0(const struct drover_executor *ex);

/* Logs one line to stderr, "executor=<id> [flow_run=<id>] " then the
 * formatted text, which should be "event key=value ...".  run may be NULL. */
void drover_log(const struct drover_executor *ex, const struct drover_run *run, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- Helpers ------------------------------------------------------------- */

/* Splits a command line into words with the POSIX rules of Python's
 * shlex.split (quotes and backslashes, no expansion, no comments).  Returns a
 * NULL-terminated malloc'd vector (free with drover_argv_free) or NULL with a
 * reason in err; an empty command gives a vector with no words. */
char **drover_split_command(const char *command, char *err, size_t errlen);
void   drover_argv_free(char ***argv);

/* Replaces invalid UTF-8 in src[0..len) by U+FFFD and cuts the result at a
 * character boundary at most max bytes long.  Returns a malloc'd
 * NUL-terminated string, or NULL when out of memory. */
char *drover_utf8_clean(const char *src, size_t len, size_t max);

#ifdef __cplusplus
}
#endif

#endif /* DROVER_EXECUTOR_H */
