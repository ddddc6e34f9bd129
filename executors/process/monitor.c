/*
 * The monitor of one run: "drover-executor-process --monitor FLOW_RUN
 * STATE_DIR CWD RMDIR STREAM -- COMMAND...", started by the executor in a
 * session of its own with the command's environment as its own.
 *
 * It starts the command in a new process group in CWD, reports the start or
 * the reason it failed on fd 3, forwards the command's output there, waits
 * for the command, writes "<STATE_DIR>/<FLOW_RUN>.exit" and reports the exit
 * status, then removes CWD when RMDIR is 1.  When the executor is gone (fd 3
 * broken) it keeps draining the output so the command never blocks on it,
 * and the exit file is what a restarted executor reads.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process.h"

static int monitor_sigchld_w = -1;
static int monitor_forward = 1;   /* cleared once the executor's pipe breaks */

static void monitor_on_sigchld(int sig)
{
    int saved = errno;
    char b = (char)sig;

    if (write(monitor_sigchld_w, &b, 1) < 0) {
        /* The pipe is full, so a wake-up is already pending. */
    }
    errno = saved;
}

static int monitor_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends one record to the executor, unless it is gone. */
static void monitor_send(char tag, const void *payload, size_t len)
{
    unsigned char head[5] = {(unsigned char)tag, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                             (unsigned char)(len >> 8), (unsigned char)len};

    if (!monitor_forward)
        return;
    if (monitor_write_all(PROC_MONITOR_FD, head, sizeof head) < 0 ||
        monitor_write_all(PROC_MONITOR_FD, payload, len) < 0)
        monitor_forward = 0;
}

static void monitor_send_text(char tag, const char *text)
{
    monitor_send(tag, text, strlen(text));
}

static int monitor_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    /* A file that cannot be removed must not stop the removal of the rest. */
    remove(path);
    return 0;
}

/* The child: its own process group, its output to the pipes, CWD, exec. */
static void monitor_exec_child(int err_w, int out_w, int errout_w, const char *cwd, char **argv)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    char msg[600];
    int devnull = open("/dev/null", O_RDWR);

    setpgid(0, 0);
    sigaction(SIGPIPE, &dfl, NULL);
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGHUP, &dfl, NULL);
    sigaction(SIGCHLD, &dfl, NULL);
    if (devnull >= 0)
        dup2(devnull, STDIN_FILENO);
    dup2(out_w >= 0 ? out_w : devnull, STDOUT_FILENO);
    dup2(errout_w >= 0 ? errout_w : devnull, STDERR_FILENO);
    close(PROC_MONITOR_FD);

    if (chdir(cwd) < 0) {
        snprintf(msg, sizeof msg, "working directory %.400s: %s", cwd, strerror(errno));
    } else {
        execvp(argv[0], argv);
        if (errno == ENOENT)
            snprintf(msg, sizeof msg, "command not found: %.400s", argv[0]);
        else
            snprintf(msg, sizeof msg, "cannot run %.400s: %s", argv[0], strerror(errno));
    }
    monitor_write_all(err_w, msg, strlen(msg));
    _exit(127);
}

/* Reads what the command wrote on one of its pipes; returns -1 at EOF. */
static int monitor_pump(int fd, char tag)
{
    char buf[PROC_MAX_PAYLOAD];
    ssize_t n = read(fd, buf, sizeof buf);

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0)
        return -1;
    monitor_send(tag, buf, (size_t)n);
    return 0;
}

static int64_t monitor_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return -(int64_t)WTERMSIG(status);
    return -1;
}

struct monitor_args {
    const char *flow_run_id;
    const char *state_dir;
    const char *cwd;
    int remove_dir;
    int stream;
    char **command;
};

static int monitor_parse(int argc, char **argv, struct monitor_args *a)
{
    if (argc < 9 || strcmp(argv[1], "--monitor") != 0 || strcmp(argv[7], "--") != 0)
        return -1;
    a->flow_run_id = argv[2];
    a->state_dir = argv[3];
    a->cwd = argv[4];
    a->remove_dir = strcmp(argv[5], "1") == 0;
    a->stream = strcmp(argv[6], "1") == 0;
    a->command = argv + 8;
    return 0;
}

/* Waits for the command, forwarding its output, and returns its wait status. */
static int monitor_watch(pid_t child, int out_r, int errout_r, int sig_r)
{
    int status = 0;

    for (;;) {
        struct pollfd p[3] = {{.fd = sig_r, .events = POLLIN},
                              {.fd = out_r, .events = POLLIN},
                              {.fd = errout_r, .events = POLLIN}};
        pid_t w;

        if (poll(p, 3, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents && monitor_pump(out_r, PROC_TAG_STDOUT) < 0) {
            close(out_r);
            out_r = -1;
        }
        if (p[2].revents && monitor_pump(errout_r, PROC_TAG_STDERR) < 0) {
            close(errout_r);
            errout_r = -1;
        }
        if (p[0].revents) {
            char drain[64];

            while (read(sig_r, drain, sizeof drain) > 0)
                ;
        }
        w = waitpid(child, &status, WNOHANG);
        if (w == child || (w < 0 && errno == ECHILD))
            break;
    }

    /* Output still buffered in the pipes belongs to the run.  Descendants
     * of the command may keep the pipes open, so take only what is there. */
    if (out_r >= 0) {
        fcntl(out_r, F_SETFL, O_NONBLOCK);
        while (monitor_pump(out_r, PROC_TAG_STDOUT) == 0 && poll(&(struct pollfd){out_r, POLLIN, 0}, 1, 0) > 0)
            ;
        close(out_r);
    }
    if (errout_r >= 0) {
        fcntl(errout_r, F_SETFL, O_NONBLOCK);
        while (monitor_pump(errout_r, PROC_TAG_STDERR) == 0 &&
               poll(&(struct pollfd){errout_r, POLLIN, 0}, 1, 0) > 0)
            ;
        close(errout_r);
    }
    return status;
}

int proc_monitor_main(int argc, char **argv)
{
    struct monitor_args a;
    struct sigaction sa = {.sa_handler = monitor_on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    struct sigaction ign = {.sa_handler = SIG_IGN};
    int errp[2], outp[2] = {-1, -1}, errout[2] = {-1, -1}, sigp[2];
    char path[4200], text[128], msg[700];
    ssize_t n;
    pid_t child;
    int status;

    if (monitor_parse(argc, argv, &a) < 0) {
        fprintf(stderr, "drover-executor-process: --monitor is started by the executor itself\n");
        return 2;
    }
    sigaction(SIGPIPE, &ign, NULL);
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);
    if (pipe2(sigp, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        (a.stream && (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errout, O_CLOEXEC) < 0))) {
        snprintf(msg, sizeof msg, "cannot create pipes: %s", strerror(errno));
        monitor_send_text(PROC_TAG_ERROR, msg);
        return 1;
    }
    monitor_sigchld_w = sigp[1];
    sigaction(SIGCHLD, &sa, NULL);

    child = fork();
    if (child < 0) {
        snprintf(msg, sizeof msg, "fork failed: %s", strerror(errno));
        monitor_send_text(PROC_TAG_ERROR, msg);
        return 1;
    }
    if (child == 0)
        monitor_exec_child(errp[1], outp[1], errout[1], a.cwd, a.command);
    setpgid(child, child);
    close(errp[1]);
    if (a.stream) {
        close(outp[1]);
        close(errout[1]);
    }

    /* The close-on-exec pipe reads EOF once exec succeeded. */
    while ((n = read(errp[0], msg, sizeof msg - 1)) < 0 && errno == EINTR)
        ;
    close(errp[0]);
    if (n > 0) {
        msg[n] = '\0';
        while (waitpid(child, &status, 0) < 0 && errno == EINTR)
            ;
        monitor_send_text(PROC_TAG_ERROR, msg);
        if (a.remove_dir)
            nftw(a.cwd, monitor_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
    }

    snprintf(path, sizeof path, "%s/%s.pid", a.state_dir, a.flow_run_id);
    snprintf(text, sizeof text, "%ld %ld\n", (long)child, (long)getpid());
    proc_write_file(path, text);
    snprintf(text, sizeof text, "%ld %ld", (long)child, (long)getpid());
    monitor_send_text(PROC_TAG_STARTED, text);

    status = monitor_watch(child, outp[0], errout[0], sigp[0]);

    /* The exit file first: it must exist before the executor can learn of
     * the exit any other way, so a restart in between loses nothing. */
    snprintf(path, sizeof path, "%s/%s.exit", a.state_dir, a.flow_run_id);
    snprintf(text, sizeof text, "%lld\n", (long long)monitor_code(status));
    proc_write_file(path, text);
    if (a.remove_dir)
        nftw(a.cwd, monitor_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(text, sizeof text, "%lld", (long long)monitor_code(status));
    monitor_send_text(PROC_TAG_EXIT, text);
    return 0;
}
