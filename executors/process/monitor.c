/*
 * The monitor of one run, forked by the spawner (spawner.c).  It runs in a
 * session of its own and outlives the executor.
 *
 * It starts the command in a new process group in the run's working
 * directory, reports the start or the reason it failed on fd 3, forwards the
 * command's output there, waits for the command, writes
 * "<state dir>/<flow run id>.exit" and reports the exit status, then removes
 * the working directory when it was a temporary one.  When the executor is
 * gone (fd 3 broken) it keeps draining the output so the command never
 * blocks on it, and the exit file is what a restarted executor reads.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process.h"

extern char **environ;

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

/* The child: its own process group, its output to the pipes, exec.  The
 * monitor has one thread, so the child may call anything. */
static void monitor_exec_child(int err_w, int out_w, int errout_w, char **argv, char **envp)
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

    /* execvp searches the PATH of the command's environment. */
    environ = envp;
    execvp(argv[0], argv);
    if (errno == ENOENT)
        snprintf(msg, sizeof msg, "command not found: %.400s", argv[0]);
    else
        snprintf(msg, sizeof msg, "cannot run %.400s: %s", argv[0], strerror(errno));
    monitor_write_all(err_w, msg, strlen(msg));
    _exit(127);
}

/* Starts the command in cwd.  Returns its pid, or -1 with the reason in msg. */
static pid_t monitor_start_command(const struct proc_monitor_args *a, int out_w, int errout_w, char *msg,
                                   size_t msglen)
{
    int errp[2], status;
    pid_t child;
    ssize_t n;

    if (chdir(a->cwd) < 0) {
        snprintf(msg, msglen, "working directory %.400s: %s", a->cwd, strerror(errno));
        return -1;
    }
    if (pipe2(errp, O_CLOEXEC) < 0 || (child = fork()) < 0) {
        snprintf(msg, msglen, "cannot start the command: %s", strerror(errno));
        return -1;
    }
    if (child == 0)
        monitor_exec_child(errp[1], out_w, errout_w, a->argv, a->envp);
    setpgid(child, child);
    close(errp[1]);

    /* The close-on-exec pipe reads EOF once exec succeeded. */
    while ((n = read(errp[0], msg, msglen - 1)) < 0 && errno == EINTR)
        ;
    close(errp[0]);
    if (n <= 0)
        return child;
    msg[n] = '\0';
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    return -1;
}

/* Writes "<child pid> <monitor pid>" to "<state dir>/<flow run id>.pid" and
 * keeps an OFD write lock on it until the monitor exits: a restarted
 * executor checks the lock (F_OFD_GETLK) to tell that the monitor lives,
 * which a reused pid cannot fake.  The lock is taken before the rename, so
 * the record is never seen unlocked while the monitor runs.  No fsync: the
 * rename keeps the record whole, and after a power loss the processes it
 * names are gone anyway.  Returns the locked descriptor, or -1. */
static int monitor_write_pid(const struct proc_monitor_args *a, pid_t child)
{
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    char path[4200], tmp[4210], text[64];
    int fd, len;

    snprintf(path, sizeof path, "%s/%s.pid", a->state_dir, a->flow_run_id);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    len = snprintf(text, sizeof text, "%ld %ld\n", (long)child, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (fcntl(fd, F_OFD_SETLK, &lock) < 0 || write(fd, text, (size_t)len) != len || rename(tmp, path) < 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    return fd;
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

_Noreturn void proc_monitor_run(const struct proc_monitor_args *a)
{
    struct sigaction sa = {.sa_handler = monitor_on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    struct sigaction ign = {.sa_handler = SIG_IGN};
    int outp[2] = {-1, -1}, errout[2] = {-1, -1}, sigp[2], devnull;
    char path[4200], text[128], msg[700];
    sigset_t none;
    pid_t child;
    int status;

    /* A session of its own, so signals to the executor's process group or
     * terminal do not reach the run; nothing of the executor's stays open. */
    setsid();
    devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
    }
    close_range(PROC_MONITOR_FD + 1, ~0U, 0);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    sigaction(SIGPIPE, &ign, NULL);
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);
    if (pipe2(sigp, O_CLOEXEC | O_NONBLOCK) < 0 ||
        (a->stream && (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errout, O_CLOEXEC) < 0))) {
        snprintf(msg, sizeof msg, "cannot create pipes: %s", strerror(errno));
        monitor_send_text(PROC_TAG_ERROR, msg);
        _exit(1);
    }
    monitor_sigchld_w = sigp[1];
    sigaction(SIGCHLD, &sa, NULL);

    child = monitor_start_command(a, outp[1], errout[1], msg, sizeof msg);
    if (a->stream) {
        close(outp[1]);
        close(errout[1]);
    }
    if (child < 0) {
        monitor_send_text(PROC_TAG_ERROR, msg);
        if (a->remove_dir)
            nftw(a->cwd, monitor_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        _exit(0);
    }

    /* The descriptor stays open, and locked, until the monitor exits. */
    if (monitor_write_pid(a, child) < 0) {
        /* A restarted executor then cannot re-adopt the run, but the run
         * goes on and this executor still gets its exit status. */
    }
    snprintf(text, sizeof text, "%ld %ld", (long)child, (long)getpid());
    monitor_send_text(PROC_TAG_STARTED, text);

    status = monitor_watch(child, outp[0], errout[0], sigp[0]);

    /* The exit file first: it must exist before the executor can learn of
     * the exit any other way, so a restart in between loses nothing. */
    snprintf(path, sizeof path, "%s/%s.exit", a->state_dir, a->flow_run_id);
    snprintf(text, sizeof text, "%lld\n", (long long)monitor_code(status));
    proc_write_file(path, text);
    if (a->remove_dir)
        nftw(a->cwd, monitor_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(text, sizeof text, "%lld", (long long)monitor_code(status));
    monitor_send_text(PROC_TAG_EXIT, text);
    _exit(0);
}
