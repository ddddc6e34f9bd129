/*
 * drover-executor-process: the executor of type "process".  It accepts the
 * job configuration of Prefect's process worker unchanged and runs each
 * flow run as a local process group; see process.h for the parts.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "process.h"

/* Re-adopted runs have no pipe from their monitor, so their exit file is
 * checked at this interval. */
#define PROC_POLL_MS 500

/* Cap of the bytes buffered from the monitor's pipe: one record and a half. */
#define PROC_RBUF_MAX (PROC_MAX_PAYLOAD * 2 + 16)

static const struct drover_field proc_fields[] = {
    {
        .name = "stream_output",
        .title = "Stream Output",
        .type = "boolean",
        .default_json = "true",
        .description = "When true, the standard output and standard error of the flow run "
                       "process are sent to the worker as log lines.",
    },
    {
        .name = "working_dir",
        .title = "Working Directory",
        .type = "{\"anyOf\": [{\"type\": \"string\", \"format\": \"path\"}, {\"type\": \"null\"}]}",
        .default_json = "null",
        .description = "Directory the flow run process starts in. When empty, a new temporary "
                       "directory is created for the run and removed after it.",
    },
};

static const struct drover_describe proc_describe = {
    .type = "process",
    .description = "Runs each flow run as a process group on the executor's host, with the job "
                   "configuration of Prefect's process worker.",
    .fields = proc_fields,
    .n_fields = sizeof proc_fields / sizeof proc_fields[0],
};

struct proc_run {
    int      fd;            /* pipe from the monitor, -1 when closed or re-adopted */
    pid_t    pid;           /* the command, leader of its process group */
    pid_t    monitor_pid;
    int64_t  kill_at;       /* monotonic ms of the SIGKILL, 0 when none */
    int      polling;       /* re-adopted: watch the exit file */
    int      pid_fd;        /* re-adopted: the .pid record the monitor locks, or -1 */
    unsigned char *rbuf;
    size_t   rlen;
};

static int64_t proc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct proc_run *proc_run_new(struct drover_run *run)
{
    struct proc_run *p = calloc(1, sizeof *p);

    if (p) {
        p->fd = -1;
        p->pid_fd = -1;
        drover_run_set_data(run, p);
    }
    return p;
}

static void proc_close_pipe(struct drover_run *run, struct proc_run *p)
{
    if (p->fd < 0)
        return;
    drover_run_unwatch_fd(run, p->fd);
    close(p->fd);
    p->fd = -1;
}

/* Reads "<state dir>/<flow run id>.exit".  Returns 0 with the code, or -1. */
static int proc_read_exit(const struct drover_run *run, int64_t *code)
{
    char path[4200];
    long long c;
    FILE *f;
    int rc = -1;

    if (drover_run_state_path(run, ".exit", path, sizeof path) < 0 || !(f = fopen(path, "r")))
        return -1;
    if (fscanf(f, "%lld", &c) == 1) {
        *code = c;
        rc = 0;
    }
    fclose(f);
    return rc;
}

static void proc_rearm(struct drover_run *run, struct proc_run *p)
{
    int64_t now = proc_now_ms(), next = -1;

    if (p->polling)
        next = now + PROC_POLL_MS;
    if (p->kill_at && (next < 0 || p->kill_at < next))
        next = p->kill_at;
    drover_run_set_timer(run, next < 0 ? -1 : (long)(next > now ? next - now : 0));
}

/* --- Start -------------------------------------------------------------- */

static int proc_start(struct drover_run *run, const json_t *config, char *identifier, size_t idlen,
                      char *err, size_t errlen)
{
    struct proc_spec spec;
    struct proc_run *p;
    int fd;

    if (proc_spec_from_config(config, &spec, err, errlen) < 0)
        return DROVER_START_FAILED;
    p = proc_run_new(run);
    if (!p) {
        proc_spec_clear(&spec);
        snprintf(err, errlen, "out of memory");
        return DROVER_START_FAILED;
    }
    fd = proc_spawn(run, &spec, err, errlen);
    proc_spec_clear(&spec);
    if (fd < 0)
        return DROVER_START_FAILED;
    p->fd = fd;
    drover_run_watch_fd(run, fd);
    return DROVER_START_PENDING;
}

/* Handles one record from the monitor. */
static void proc_record(struct drover_run *run, struct proc_run *p, char tag, const char *data, size_t len)
{
    char text[PROC_MAX_PAYLOAD + 1], ident[DROVER_MAX_IDENTIFIER + 1], host[DROVER_MAX_NAME + 1] = "";
    long a = 0, b = 0;

    if (tag == PROC_TAG_STDOUT || tag == PROC_TAG_STDERR) {
        drover_run_log_data(run, tag == PROC_TAG_STDOUT ? DROVER_STREAM_STDOUT : DROVER_STREAM_STDERR,
                            data, len);
        return;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    switch (tag) {
    case PROC_TAG_STARTED:
        if (sscanf(text, "%ld %ld", &a, &b) != 2 || a <= 0) {
            drover_run_failed(run, "the monitor reported an invalid process id");
            return;
        }
        p->pid = (pid_t)a;
        p->monitor_pid = (pid_t)b;
        gethostname(host, sizeof host - 1);
        snprintf(ident, sizeof ident, "%s:%ld", host, a);
        drover_run_started(run, ident);
        break;
    case PROC_TAG_ERROR:
        drover_run_failed(run, text);
        break;
    case PROC_TAG_EXIT:
        drover_run_log_flush(run, DROVER_STREAM_STDOUT);
        drover_run_log_flush(run, DROVER_STREAM_STDERR);
        p->kill_at = 0;
        drover_run_exited(run, strtoll(text, NULL, 10));
        break;
    default:
        drover_log(drover_run_executor(run), run, "monitor_record_unknown tag=%d (ignored)", tag);
        break;
    }
}

/* Parses the complete records in the buffer and keeps the rest. */
static void proc_parse(struct drover_run *run, struct proc_run *p)
{
    size_t off = 0;

    while (p->rlen - off >= 5) {
        const unsigned char *h = p->rbuf + off;
        size_t len = ((size_t)h[1] << 24) | ((size_t)h[2] << 16) | ((size_t)h[3] << 8) | h[4];

        if (len > PROC_MAX_PAYLOAD) {
            drover_log(drover_run_executor(run), run, "monitor_record_invalid length=%zu", len);
            proc_close_pipe(run, p);
            p->rlen = 0;
            return;
        }
        if (p->rlen - off - 5 < len)
            break;
        proc_record(run, p, (char)h[0], (const char *)h + 5, len);
        off += 5 + len;
    }
    memmove(p->rbuf, p->rbuf + off, p->rlen - off);
    p->rlen -= off;
}

/* The pipe closed: the monitor ended.  Without its exit record, the exit
 * file or a lost run is what remains. */
static void proc_pipe_closed(struct drover_run *run, struct proc_run *p)
{
    int64_t code;

    proc_close_pipe(run, p);
    if (proc_read_exit(run, &code) == 0)
        drover_run_exited(run, code);
    else if (!drover_run_identifier(run)[0])
        drover_run_failed(run, "the monitor ended before the command started");
    else
        drover_run_exited_error(run, 1, "the monitor ended without reporting the exit status");
}

static void proc_on_fd(struct drover_run *run, int fd)
{
    struct proc_run *p = drover_run_data(run);
    ssize_t n;

    if (!p || fd != p->fd)
        return;
    if (!p->rbuf && !(p->rbuf = malloc(PROC_RBUF_MAX)))
        return;
    n = read(fd, p->rbuf + p->rlen, PROC_RBUF_MAX - p->rlen);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        proc_pipe_closed(run, p);
        return;
    }
    p->rlen += (size_t)n;
    proc_parse(run, p);
}

/* Checks that pid is a monitor of this run started by an executor of an
 * earlier version, before the spawner existed.  Such a monitor took no
 * lock, but its command line contains --monitor and the flow run id, so a
 * reused pid is not taken for it. */
static int proc_is_legacy_monitor(pid_t pid, const char *flow_run_id)
{
    char path[64], buf[4096];
    size_t n;
    FILE *f;
    int found_flag = 0, found_id = 0;

    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
        found_flag |= strcmp(buf + i, "--monitor") == 0;
        found_id |= strcmp(buf + i, flow_run_id) == 0;
    }
    return found_flag && found_id;
}

/* Checks that the run's monitor lives: it holds a write lock on the .pid
 * record from before the record exists until it exits, and a lock cannot
 * outlive its process, so a reused pid is never taken for the monitor. */
static int proc_monitor_alive(const struct drover_run *run, const struct proc_run *p)
{
    struct flock lock = {.l_type = F_RDLCK, .l_whence = SEEK_SET};

    if (p->pid_fd >= 0 && fcntl(p->pid_fd, F_OFD_GETLK, &lock) == 0 && lock.l_type != F_UNLCK)
        return 1;
    return proc_is_legacy_monitor(p->monitor_pid, drover_run_flow_run_id(run));
}

/* --- Kill --------------------------------------------------------------- */

static int proc_kill(struct drover_run *run, unsigned grace_seconds, char *err, size_t errlen)
{
    struct proc_run *p = drover_run_data(run);
    int64_t at = proc_now_ms() + (int64_t)grace_seconds * 1000;

    if (!p || p->pid <= 0) {
        snprintf(err, errlen, "the run has no process to signal");
        return -1;
    }
    if (kill(-p->pid, SIGTERM) < 0 && errno != ESRCH) {
        snprintf(err, errlen, "SIGTERM to process group %ld failed: %s", (long)p->pid, strerror(errno));
        return -1;
    }
    /* A later KILL may shorten the grace period, never lengthen it. */
    if (!p->kill_at || at < p->kill_at)
        p->kill_at = at;
    drover_log(drover_run_executor(run), run, "sigterm pgid=%ld grace_s=%u", (long)p->pid, grace_seconds);
    proc_rearm(run, p);
    return 0;
}

static void proc_on_timer(struct drover_run *run)
{
    struct proc_run *p = drover_run_data(run);
    int64_t code, now = proc_now_ms();

    if (!p)
        return;
    if (p->kill_at && now >= p->kill_at) {
        p->kill_at = 0;
        drover_log(drover_run_executor(run), run, "sigkill pgid=%ld (grace period over)", (long)p->pid);
        if (kill(-p->pid, SIGKILL) < 0 && errno != ESRCH)
            drover_log(drover_run_executor(run), run, "sigkill_failed error=\"%s\"", strerror(errno));
    }
    if (p->polling) {
        if (proc_read_exit(run, &code) == 0) {
            p->polling = 0;
            p->kill_at = 0;
            drover_run_exited(run, code);
        } else if (!proc_monitor_alive(run, p) && proc_read_exit(run, &code) < 0) {
            p->polling = 0;
            drover_run_exited_error(run, 1, "the monitor ended without writing the exit status");
        }
    }
    proc_rearm(run, p);
}

/* --- Recover ------------------------------------------------------------ */

static int proc_recover(struct drover_run *run, const char *identifier, char *err, size_t errlen)
{
    char host[DROVER_MAX_NAME + 1] = "", path[4200];
    const char *colon = strrchr(identifier, ':');
    struct proc_run *p;
    long child = 0, monitor = 0;
    int64_t code;

    gethostname(host, sizeof host - 1);
    if (identifier[0] &&
        (!colon || (size_t)(colon - identifier) != strlen(host) || strncmp(identifier, host, strlen(host)) != 0)) {
        snprintf(err, errlen, "identifier %s does not belong to host %s", identifier, host);
        return DROVER_START_FAILED;
    }
    if (!(p = proc_run_new(run))) {
        snprintf(err, errlen, "out of memory");
        return DROVER_START_FAILED;
    }
    /* The descriptor stays open for proc_monitor_alive's lock checks. */
    if (drover_run_state_path(run, ".pid", path, sizeof path) == 0 &&
        (p->pid_fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
        char text[64];
        ssize_t n = pread(p->pid_fd, text, sizeof text - 1, 0);

        text[n > 0 ? n : 0] = '\0';
        if (sscanf(text, "%ld %ld", &child, &monitor) != 2)
            child = monitor = 0;
    }
    /* The executor stopped before it read the monitor's start record: the
     * monitor's .pid file tells whether the command started. */
    if (!identifier[0]) {
        char ident[DROVER_MAX_IDENTIFIER + 1];

        if (child <= 0) {
            snprintf(err, errlen, "the command never started");
            return DROVER_START_FAILED;
        }
        snprintf(ident, sizeof ident, "%s:%ld", host, child);
        drover_run_started(run, ident);
    }
    if (proc_read_exit(run, &code) == 0) {
        drover_run_exited(run, code);
        return DROVER_START_OK;
    }
    p->pid = (pid_t)child;
    p->monitor_pid = (pid_t)monitor;
    if (monitor <= 0 || !proc_monitor_alive(run, p)) {
        /* The monitor may have written the exit file and ended just now. */
        if (proc_read_exit(run, &code) == 0) {
            drover_run_exited(run, code);
            return DROVER_START_OK;
        }
        snprintf(err, errlen, "its monitor process is gone and left no exit status");
        return DROVER_START_FAILED;
    }
    p->polling = 1;
    proc_rearm(run, p);
    return DROVER_START_OK;
}

static void proc_release(struct drover_run *run)
{
    struct proc_run *p = drover_run_data(run);

    if (!p)
        return;
    proc_close_pipe(run, p);
    if (p->pid_fd >= 0)
        close(p->pid_fd);
    free(p->rbuf);
    free(p);
    drover_run_set_data(run, NULL);
}

/* The spawner starts before the executor connects, so the first run does
 * not wait for it.  The spawner is the executor's only child, and with
 * SIGCHLD ignored the kernel reaps it when it dies while the executor is
 * idle, instead of leaving a zombie until the next run restarts it. */
static int proc_init(struct drover_executor *ex, char *err, size_t errlen)
{
    struct sigaction ign = {.sa_handler = SIG_IGN};

    sigaction(SIGCHLD, &ign, NULL);
    return proc_spawner_start(drover_executor_state_dir(ex), err, errlen);
}

static void proc_shutdown(struct drover_executor *ex)
{
    (void)ex;
    proc_spawner_stop(0);
}

static const struct drover_executor_ops proc_ops = {
    .describe = &proc_describe,
    .init = proc_init,
    .shutdown = proc_shutdown,
    .start = proc_start,
    .kill = proc_kill,
    .recover = proc_recover,
    .on_fd = proc_on_fd,
    .on_timer = proc_on_timer,
    .release = proc_release,
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--spawner") == 0)
        return proc_spawner_main(argc, argv);
    return drover_executor_main(argc, argv, &proc_ops);
}
