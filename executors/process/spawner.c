/*
 * The spawner: "drover-executor-process --spawner STATE_DIR", started by the
 * executor with a socket to it on PROC_SPAWNER_FD.  It keeps one monitor
 * (monitor.c) forked and prepared, waiting on the socket for the next run.
 * No fork happens between a request and the run's start: the monitor that
 * read a request sends the spawner a note once the run started, and the
 * spawner then forks the next monitor.  A request sent meanwhile waits in
 * the socket.  The spawner exits when the executor closes the socket.
 *
 * Why a separate process: the executor runs libzmq's I/O threads, and after
 * fork in a multi-threaded process only async-signal-safe calls are allowed
 * until exec.  The monitor needs more than that (malloc, snprintf, nftw), and
 * re-executing the executor's binary for every run cost about 3 ms of dynamic
 * loading.  The spawner is executed once, has one thread, and forks monitors
 * that may call anything and need no exec of their own.
 *
 * Request on the socket: the payload length as 4 bytes big-endian, then
 * NUL-terminated strings: flow run id, state dir, cwd ("" for a temporary
 * directory), stream ("0" or "1"), argc, the argv words, envc, the envp
 * entries.  The first bytes carry the write end of the run's pipe to the
 * executor as SCM_RIGHTS.  No reply comes on the socket: the monitor, or
 * the spawner when it cannot fork, reports on that pipe.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "process.h"

/* Reads exactly len bytes.  Returns 0, 1 at end of file before the first
 * byte, or -1. */
static int spawner_read_all(int fd, void *data, size_t len)
{
    char *p = data;
    size_t done = 0;

    while (done < len) {
        ssize_t n = read(fd, p + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 && done == 0)
            return 1;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* Reads the 4-byte header and the file descriptor sent with it.  Returns 0,
 * 1 when the executor closed the socket, or -1. */
static int spawner_read_header(int sock, uint32_t *len, int *fd)
{
    unsigned char head[4];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = head, .iov_len = sizeof head};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    struct cmsghdr *cm;
    ssize_t n;

    *fd = -1;
    while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (n == 0)
        return 1;
    if (n < 0)
        return -1;
    cm = CMSG_FIRSTHDR(&mh);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
        cm->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(fd, CMSG_DATA(cm), sizeof(int));
    if ((size_t)n < sizeof head && spawner_read_all(sock, head + n, sizeof head - (size_t)n) != 0)
        return -1;
    *len = ((uint32_t)head[0] << 24) | ((uint32_t)head[1] << 16) | ((uint32_t)head[2] << 8) | head[3];
    return 0;
}

/* Returns the next NUL-terminated string of the request, or NULL at its end. */
static char *spawner_next(char *buf, size_t len, size_t *off)
{
    char *s = buf + *off;
    char *nul;

    if (*off >= len || !(nul = memchr(s, '\0', len - *off)))
        return NULL;
    *off += (size_t)(nul - s) + 1;
    return s;
}

/* Reads a count followed by that many strings into a new NULL-terminated
 * array.  Returns NULL when the request is malformed or memory runs out. */
static char **spawner_list(char *buf, size_t len, size_t *off)
{
    char *count = spawner_next(buf, len, off), *end;
    unsigned long n;
    char **list;

    if (!count)
        return NULL;
    errno = 0;
    n = strtoul(count, &end, 10);
    if (errno || *end || n > len)
        return NULL;
    list = calloc(n + 1, sizeof *list);
    for (unsigned long i = 0; list && i < n; i++) {
        if (!(list[i] = spawner_next(buf, len, off))) {
            free(list);
            return NULL;
        }
    }
    return list;
}

static int spawner_parse(char *buf, size_t len, struct proc_monitor_args *a)
{
    char *stream;
    size_t off = 0;

    memset(a, 0, sizeof *a);
    a->flow_run_id = spawner_next(buf, len, &off);
    a->state_dir = spawner_next(buf, len, &off);
    a->cwd = spawner_next(buf, len, &off);
    stream = spawner_next(buf, len, &off);
    if (!stream)
        return -1;
    a->stream = strcmp(stream, "1") == 0;
    a->argv = spawner_list(buf, len, &off);
    a->envp = a->argv ? spawner_list(buf, len, &off) : NULL;
    if (!a->envp || !a->argv[0] || off != len) {
        free(a->argv);
        free(a->envp);
        return -1;
    }
    return 0;
}

/* Tells the executor through the run's pipe why no monitor started. */
static void spawner_report(int fd, const char *msg)
{
    size_t len = strlen(msg);
    unsigned char head[5] = {PROC_TAG_ERROR, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                             (unsigned char)(len >> 8), (unsigned char)len};

    if (write(fd, head, sizeof head) != (ssize_t)sizeof head || write(fd, msg, len) != (ssize_t)len) {
        /* The executor then reads the pipe's end without a start record. */
    }
}

/* Reads one request with its pipe.  Returns 0, 1 when the executor closed
 * the socket, or -1 when the stream is broken. */
static int spawner_read_request(char **buf, uint32_t *len, int *pipe_w)
{
    int rc = spawner_read_header(PROC_SPAWNER_FD, len, pipe_w);

    *buf = NULL;
    if (rc != 0)
        return rc;
    if (*pipe_w < 0 || *len > PROC_SPAWN_MAX_REQUEST)
        return -1;
    *buf = malloc(*len ? *len : 1);
    if (!*buf || spawner_read_all(PROC_SPAWNER_FD, *buf, *len) != 0)
        return -1;
    return 0;
}

/* Notes to the spawner from the monitor waiting for a run.  A monitor that
 * took a run sends PROC_NOTE_TAKEN (process.h) once the run started or
 * failed, and the spawner then forks the next monitor. */
#define SPAWNER_NOTE_CLOSED 'C'   /* the executor closed the socket: exit */
#define SPAWNER_NOTE_BROKEN 'B'   /* the stream is out of step: exit */

/* Runs in the forked monitor: prepares, waits for a run and runs it. */
static _Noreturn void spawner_monitor(const char *state_dir, int note_w)
{
    struct proc_monitor_prep prep;
    struct proc_monitor_args a;
    uint32_t len;
    char *buf, note;
    int pipe_w, rc;

    proc_monitor_prepare(state_dir, &prep);
    prep.taken_fd = note_w;
    rc = spawner_read_request(&buf, &len, &pipe_w);
    if (rc != 0) {
        note = rc == 1 ? SPAWNER_NOTE_CLOSED : SPAWNER_NOTE_BROKEN;
        if (write(note_w, &note, 1) != 1) {
            /* The spawner is gone already. */
        }
        if (pipe_w >= 0)
            spawner_report(pipe_w, "the spawner received a malformed request");
        proc_monitor_unprepare(&prep);
        _exit(rc == 1 ? 0 : 1);
    }

    dup2(pipe_w, PROC_MONITOR_FD);   /* also closes the socket */
    close(pipe_w);
    fcntl(PROC_MONITOR_FD, F_SETFD, FD_CLOEXEC);
    if (spawner_parse(buf, len, &a) < 0) {
        note = PROC_NOTE_TAKEN;
        spawner_report(PROC_MONITOR_FD, "the spawner received a malformed request");
        if (write(note_w, &note, 1) != 1) {
            /* The spawner is gone already. */
        }
        proc_monitor_unprepare(&prep);
        _exit(1);
    }
    proc_monitor_run(&a, &prep);
}

/* Serves one request without a monitor, to report why none could be forked.
 * Returns what spawner_read_request returned. */
static int spawner_report_fork_failure(const char *why)
{
    char msg[200], *buf;
    uint32_t len;
    int pipe_w, rc = spawner_read_request(&buf, &len, &pipe_w);

    if (pipe_w >= 0) {
        snprintf(msg, sizeof msg, "fork of the monitor failed: %s", why);
        spawner_report(pipe_w, msg);
        close(pipe_w);
    }
    free(buf);
    return rc;
}

int proc_spawner_main(int argc, char **argv)
{
    struct sigaction ign = {.sa_handler = SIG_IGN};
    struct stat st;

    if (argc != 3 || strcmp(argv[1], "--spawner") != 0 || fstat(PROC_SPAWNER_FD, &st) < 0 ||
        !S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "drover-executor-process: --spawner is started by the executor itself\n");
        return 2;
    }
    /* SIGCHLD ignored: the kernel reaps the monitors, which report to the
     * executor, not to the spawner.  Terminal signals are for the executor,
     * which closes the socket when it stops. */
    sigaction(SIGCHLD, &ign, NULL);
    sigaction(SIGPIPE, &ign, NULL);
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);

    for (;;) {
        int note[2];
        char b = 0;
        ssize_t n;
        pid_t pid;

        if (pipe2(note, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
            int rc = spawner_report_fork_failure(strerror(errno));

            if (rc != 0)
                return rc == 1 ? 0 : 1;
            continue;
        }
        if (pid == 0) {
            close(note[0]);
            spawner_monitor(argv[2], note[1]);
        }
        close(note[1]);
        while ((n = read(note[0], &b, 1)) < 0 && errno == EINTR)
            ;
        close(note[0]);
        if (b == SPAWNER_NOTE_CLOSED)
            return 0;
        if (b == SPAWNER_NOTE_BROKEN) {
            fprintf(stderr, "drover-executor-process: spawner: invalid request from the executor, exiting\n");
            return 1;
        }
        if (b != PROC_NOTE_TAKEN)   /* the monitor died while waiting: no tight loop */
            nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
}
