/*
 * The spawner: "drover-executor-process --spawner", started by the executor
 * with a socket to it on PROC_SPAWNER_FD.  For each request it forks one
 * monitor (monitor.c) and exits when the executor closes the socket.
 *
 * Why a separate process: the executor runs libzmq's I/O threads, and after
 * fork in a multi-threaded process only async-signal-safe calls are allowed
 * until exec.  The monitor needs more than that (malloc, snprintf, nftw), and
 * re-executing the executor's binary for every run cost about 3 ms of dynamic
 * loading.  The spawner is executed once, has one thread, and forks monitors
 * that may call anything and need no exec of their own.  Being small, it also
 * forks faster than the executor would.
 *
 * Request on the socket: the payload length as 4 bytes big-endian, then
 * NUL-terminated strings: flow run id, state dir, cwd, remove_dir ("0" or
 * "1"), stream ("0" or "1"), argc, the argv words, envc, the envp entries.
 * The first bytes carry the write end of the run's pipe to the executor as
 * SCM_RIGHTS.  No reply comes on the socket: the monitor, or the spawner when
 * it cannot fork, reports on that pipe.
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
    char *remove_dir, *stream;
    size_t off = 0;

    memset(a, 0, sizeof *a);
    a->flow_run_id = spawner_next(buf, len, &off);
    a->state_dir = spawner_next(buf, len, &off);
    a->cwd = spawner_next(buf, len, &off);
    remove_dir = spawner_next(buf, len, &off);
    stream = spawner_next(buf, len, &off);
    if (!stream)
        return -1;
    a->remove_dir = strcmp(remove_dir, "1") == 0;
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
        /* The executor sees the pipe close without a start record instead. */
    }
}

/* Handles one request: forks the monitor, which owns the pipe from then on. */
static void spawner_handle(char *buf, size_t len, int pipe_w)
{
    struct proc_monitor_args a;
    char msg[200];
    pid_t pid;

    if (spawner_parse(buf, len, &a) < 0) {
        spawner_report(pipe_w, "the spawner received a malformed request");
        return;
    }
    pid = fork();
    if (pid == 0) {
        if (pipe_w != PROC_MONITOR_FD) {
            dup2(pipe_w, PROC_MONITOR_FD);   /* also closes the spawner's socket */
            close(pipe_w);
        }
        fcntl(PROC_MONITOR_FD, F_SETFD, FD_CLOEXEC);
        proc_monitor_run(&a);
    }
    if (pid < 0) {
        snprintf(msg, sizeof msg, "fork of the monitor failed: %s", strerror(errno));
        spawner_report(pipe_w, msg);
    }
    free(a.argv);
    free(a.envp);
}

int proc_spawner_main(int argc, char **argv)
{
    struct sigaction ign = {.sa_handler = SIG_IGN};
    struct stat st;

    if (argc != 2 || strcmp(argv[1], "--spawner") != 0 || fstat(PROC_SPAWNER_FD, &st) < 0 ||
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
        uint32_t len;
        char *buf;
        int fd, rc = spawner_read_header(PROC_SPAWNER_FD, &len, &fd);

        if (rc == 1)
            return 0;
        if (rc < 0 || fd < 0 || len > PROC_SPAWN_MAX_REQUEST) {
            fprintf(stderr, "drover-executor-process: spawner: invalid request from the executor, exiting\n");
            return 1;
        }
        buf = malloc(len ? len : 1);
        if (!buf || spawner_read_all(PROC_SPAWNER_FD, buf, len) != 0) {
            fprintf(stderr, "drover-executor-process: spawner: cannot read a request of %u bytes, exiting\n",
                    (unsigned)len);
            return 1;
        }
        spawner_handle(buf, len, fd);
        close(fd);
        free(buf);
    }
}
