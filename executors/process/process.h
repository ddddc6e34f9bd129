/*
 * drover-executor-process: runs each flow run as a local process group.
 *
 *   main.c     describe table, the SDK callbacks (start, kill, recover, watch)
 *   spawn.c    turns a job configuration into a started monitor
 *   monitor.c  the monitor: the executor re-executed with --monitor, which
 *              starts the command, forwards its output, waits for it and
 *              writes its exit status to the state directory
 *
 * The monitor runs in its own session and outlives the executor, so a run
 * keeps going when the executor stops, and a restarted executor with the
 * same id finds the run's exit status in "<state dir>/<flow run id>.exit".
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

/* File descriptor of the pipe in the monitor. */
#define PROC_MONITOR_FD 3

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

/* Starts the monitor for run.  Returns the read end of its pipe
 * (non-blocking), or -1 with a reason in err. */
int proc_spawn(struct drover_run *run, const struct proc_spec *spec, char *err, size_t errlen);

/* The monitor's main(), for "drover-executor-process --monitor ...". */
int proc_monitor_main(int argc, char **argv);

/* Writes text to path through a temporary file and rename(2). */
int proc_write_file(const char *path, const char *text);

#endif /* DROVER_PROCESS_H */
