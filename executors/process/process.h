/*
 * drover-executor-process: runs each flow run as a local process group.
 *
 *   main.c     describe table, the SDK callbacks (start, kill, recover, watch)
 *   spawn.c    turns a job configuration into a request to the spawner
 *   spawner.c  the spawner: a single-threaded helper process, the executor
 *              re-executed with --spawner, that keeps one monitor forked
 *              and ready for the next run
 *   monitor.c  the monitor: starts the command, forwards its output, waits
 *              for it and writes its exit status to the state directory
 *
 * The monitor runs in its own session and outlives the executor, so a run
 * keeps going when the executor stops.  It keeps a write lock on
 * "<state dir>/<flow run id>.pid" while it lives, and a restarted executor
 * with the same id finds the run's exit status in
 * "<state dir>/<flow run id>.exit".
 */
#ifndef DROVER_PROCESS_H
#define DROVER_PROCESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "drover/executor.h"

/* Records on the pipe from the monitor to the executor: one tag byte, the
 * payload length as 4 bytes big-endian, then the payload. */
#define PROC_TAG_STARTED 'S'   /* "<child pid> <monitor pid>" */
#define PROC_TAG_ERROR   'E'   /* why the command could not start */
#define PROC_TAG_STDOUT  'O'   /* raw output bytes */
#define PROC_TAG_STDERR  'R'
#define PROC_TAG_EXIT    'X'   /* "<code>": exit status, or -N for signal N */

#define PROC_MAX_PAYLOAD (64u * 1024u)

/* File descriptor of the pipe to the executor in the monitor. */
#define PROC_MONITOR_FD 3

/* File descriptor of the socket to the executor in the spawner. */
#define PROC_SPAWNER_FD 3

/* Cap of one request to the spawner.  Linux limits a command's arguments
 * and environment together to a quarter of the stack limit, 2 MiB with the
 * usual 8 MiB stack. */
#define PROC_SPAWN_MAX_REQUEST (16u * 1024u * 1024u)

#define PROC_DEFAULT_COMMAND "prefect flow-run execute"

/* Inputs of proc_spawn for one run. */
struct proc_spec {
    char  **argv;          /* the command's words */
    char  **envp;          /* the complete environment of the command */
    char   *working_dir;   /* NULL: a fresh temporary directory */
    int     stream_output;
};

/* Reads the job configuration into spec.  Returns 0, or -1 with a reason
 * naming the field in err. */
int  proc_spec_from_config(const json_t *config, struct proc_spec *spec, char *err, size_t errlen);
void proc_spec_clear(struct proc_spec *spec);

/* Arguments of one monitor, parsed from a request to the spawner.  The
 * strings and arrays point into the request's buffer. */
struct proc_monitor_args {
    const char *flow_run_id;
    const char *state_dir;
    const char *cwd;       /* "": the prepared temporary directory */
    int stream;            /* forward the command's output */
    char **argv;
    char **envp;
};

/* Resources a monitor makes ready before its run arrives, so that the run
 * does not wait for the file system. */
struct proc_monitor_prep {
    int  pid_fd;           /* unnamed, locked file in the state directory, or -1 */
    char temp_dir[4096];   /* a new empty directory, or "" */
    int  taken_fd;         /* pipe to the spawner for PROC_NOTE_TAKEN, or -1 */
};

/* The note a monitor sends the spawner once its run started or failed. */
#define PROC_NOTE_TAKEN 'T'


/* Starts the spawner process (again, after it died) for the executor's
 * state directory.  Returns 0, or -1 with a reason in err. */
int proc_spawner_start(const char *state_dir, char *err, size_t errlen);

/* Stops the spawner and reaps it.  Closing its socket makes it exit after
 * the requests already sent, and force, or a second without exit, kills
 * it. */
void proc_spawner_stop(int force);

/* Asks the spawner to start the monitor for run.  Returns the read end of
 * the monitor's pipe (non-blocking), or -1 with a reason in err. */
int proc_spawn(struct drover_run *run, const struct proc_spec *spec, char *err, size_t errlen);

/* The spawner's main(), for "drover-executor-process --spawner STATE_DIR"
 * with the socket to the executor on PROC_SPAWNER_FD. */
int proc_spawner_main(int argc, char **argv);

/* Detaches a freshly forked child of the spawner from the executor (a new
 * session, /dev/null as standard input and output) and fills prep.  What
 * cannot be prepared is left for proc_monitor_run. */
void proc_monitor_prepare(const char *state_dir, struct proc_monitor_prep *prep);

/* Removes what proc_monitor_prepare made, for a monitor that gets no run. */
void proc_monitor_unprepare(struct proc_monitor_prep *prep);

/* Runs the monitor of one run, with the pipe to the executor on
 * PROC_MONITOR_FD, and exits. */
_Noreturn void proc_monitor_run(const struct proc_monitor_args *a, struct proc_monitor_prep *prep);

/* Writes text to path through a temporary file, fsync and rename(2). */
int proc_write_file(const char *path, const char *text);

#endif /* DROVER_PROCESS_H */
