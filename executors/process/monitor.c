/*
 * The monitor of one run, forked by the spawner (spawner.c).  It runs in a
 * session of its own and outlives the executor.
 *
 * It starts the command in a new process group in the run's working
 * directory and reports the start, or the reason it failed, on fd 3.  Then
 * it forwards the command's output there and waits for the command.  At the
 * end it writes "<state dir>/<flow run id>.exit", reports the exit status
 * and removes the working directory when it was a temporary one.  When the
 * executor is gone (fd 3 broken) it keeps draining the output so the command
 * never blocks on it, and the exit file is what a restarted executor reads.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
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

/* Sends one record to the executor, unless it is gone.  One writev for
 * header and payload wakes the executor once per record. */
static void monitor_send(char tag, const void *payload, size_t len)
{
    unsigned char head[5] = {(unsigned char)tag, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                             (unsigned char)(len >> 8), (unsigned char)len};
    struct iovec iov[2] = {{.iov_base = head, .iov_len = sizeof head}, {.iov_base = (void *)payload, .iov_len = len}};
    ssize_t n;

    if (!monitor_forward)
        return;
    while ((n = writev(PROC_MONITOR_FD, iov, 2)) < 0 && errno == EINTR)
        ;
    if (n < 0) {
        monitor_forward = 0;
        return;
    }
    /* A short write (a full pipe): the rest the slow way. */
    if ((size_t)n < sizeof head) {
        if (monitor_write_all(PROC_MONITOR_FD, head + n, sizeof head - (size_t)n) < 0 ||
            monitor_write_all(PROC_MONITOR_FD, payload, len) < 0)
            monitor_forward = 0;
    } else if ((size_t)n < sizeof head + len &&
               monitor_write_all(PROC_MONITOR_FD, (const char *)payload + (n - (ssize_t)sizeof head),
                                 len - ((size_t)n - sizeof head)) < 0) {
        monitor_forward = 0;
    }
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

/* Finds the file execvp would run for name, searching the PATH of the
 * command's environment ("/bin:/usr/bin" without one).  An empty PATH entry
 * is the working directory.  Returns 0 with the path in buf, or -1 with
 * errno ENOENT, EACCES (found, not executable) or ENAMETOOLONG. */
static int monitor_find_program(const char *name, char *const *envp, char *buf, size_t len)
{
    const char *path = "/bin:/usr/bin";
    int denied = 0;
    struct stat st;

    if (strchr(name, '/')) {
        if ((size_t)snprintf(buf, len, "%s", name) >= len)
            return errno = ENAMETOOLONG, -1;
        return 0;
    }
    for (char *const *e = envp; *e; e++) {
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }
    }
    for (;;) {
        const char *end = strchrnul(path, ':');
        int dlen = (int)(end - path);

        if ((size_t)snprintf(buf, len, "%.*s%s%s", dlen, path, dlen ? "/" : "", name) < len &&
            stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(buf, X_OK) == 0)
                return 0;
            denied = 1;
        }
        if (!*end)
            break;
        path = end + 1;
    }
    errno = denied ? EACCES : ENOENT;
    return -1;
}

/* Starts the command with posix_spawn in its own process group, in the
 * monitor's working directory, its output on the pipes (or /dev/null).
 * glibc's posix_spawn (2.24 and later) runs the child with vfork semantics
 * and returns only after the exec, with the exec's error when it failed, so
 * a returned pid means the command's exec succeeded.  A file without a
 * "#!" line is run by /bin/sh, as execvp does.  Returns 0, or an errno. */
static int monitor_spawn_command(pid_t *child, const char *file, char **argv, char **envp, int out_w,
                                 int errout_w)
{
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t none, dfl;
    int rc;

    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    if (out_w >= 0)
        posix_spawn_file_actions_adddup2(&actions, out_w, STDOUT_FILENO);
    else
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    if (errout_w >= 0)
        posix_spawn_file_actions_adddup2(&actions, errout_w, STDERR_FILENO);
    else
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);

    /* The monitor ignores SIGPIPE, SIGINT and SIGHUP; the command gets the
     * default actions and an empty signal mask. */
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGHUP);
    sigaddset(&dfl, SIGCHLD);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dfl);

    rc = posix_spawn(child, file, &actions, &attr, argv, envp);
    if (rc == ENOEXEC) {
        size_t n = 0;
        char **shell_argv;

        while (argv[n])
            n++;
        shell_argv = calloc(n + 2, sizeof *shell_argv);
        if (shell_argv) {
            shell_argv[0] = (char *)"/bin/sh";
            shell_argv[1] = (char *)file;
            memcpy(shell_argv + 2, argv + 1, (n - 1) * sizeof *argv);
            rc = posix_spawn(child, "/bin/sh", &actions, &attr, shell_argv, envp);
            free(shell_argv);
        }
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

/* Starts the command in cwd.  Returns its pid, or -1 with the reason in msg. */
static pid_t monitor_start_command(const struct proc_monitor_args *a, const char *cwd, int out_w, int errout_w,
                                   char *msg, size_t msglen)
{
    char file[4096];
    pid_t child = -1;
    int rc;

    if (chdir(cwd) < 0) {
        snprintf(msg, msglen, "working directory %.400s: %s", cwd, strerror(errno));
        return -1;
    }
    rc = monitor_find_program(a->argv[0], a->envp, file, sizeof file) < 0 ? errno
         : monitor_spawn_command(&child, file, a->argv, a->envp, out_w, errout_w);
    if (rc == 0)
        return child;
    if (rc == ENOENT)
        snprintf(msg, msglen, "command not found: %.400s", a->argv[0]);
    else
        snprintf(msg, msglen, "cannot run %.400s: %s", a->argv[0], strerror(rc));
    return -1;
}

/* Writes "<child pid> <monitor pid>" to "<state dir>/<flow run id>.pid" and
 * keeps an OFD write lock on it until the monitor exits: a restarted
 * executor checks the lock (F_OFD_GETLK) to tell that the monitor lives,
 * which a reused pid cannot fake.  The lock is taken before the record gets
 * its name, so it is never seen unlocked while the monitor runs.  The
 * prepared unnamed file gets its name with linkat, which is much cheaper
 * than creating a file; otherwise a temporary file is renamed.  No fsync:
 * either way the record appears whole, and after a power loss the
 * processes it names are gone anyway.  Returns the locked descriptor, or
 * -1. */
static int monitor_write_pid(const struct proc_monitor_args *a, struct proc_monitor_prep *prep, pid_t child)
{
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    char path[4200], tmp[4210], text[64];
    int fd = prep->pid_fd, len;

    snprintf(path, sizeof path, "%s/%s.pid", a->state_dir, a->flow_run_id);
    len = snprintf(text, sizeof text, "%ld %ld\n", (long)child, (long)getpid());
    prep->pid_fd = -1;
    if (fd >= 0) {
        snprintf(tmp, sizeof tmp, "/proc/self/fd/%d", fd);
        if (write(fd, text, (size_t)len) == len && linkat(AT_FDCWD, tmp, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0)
            return fd;
        close(fd);
    }

    snprintf(tmp, sizeof tmp, "%s.tmp", path);
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

/* Creates an empty temporary directory "$TMPDIR/drover-run-XXXXXX". */
static int monitor_make_temp_dir(char *path, size_t len)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(path, len, "%s/drover-run-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (mkdtemp(path))
        return 0;
    path[0] = '\0';
    return -1;
}

void proc_monitor_prepare(const char *state_dir, struct proc_monitor_prep *prep)
{
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigset_t none;
    int devnull;

    /* A session of its own, so signals to the executor's process group or
     * terminal do not reach the run, and no output of the executor's. */
    setsid();
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        close(devnull);
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    sigaction(SIGPIPE, &ign, NULL);
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);

    /* Creating files and directories took 0.3 ms or more each on a busy
     * ext4 disk, so they are made before the run arrives. */
    prep->pid_fd = open(state_dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (prep->pid_fd >= 0 && fcntl(prep->pid_fd, F_OFD_SETLK, &lock) < 0) {
        close(prep->pid_fd);
        prep->pid_fd = -1;
    }
    monitor_make_temp_dir(prep->temp_dir, sizeof prep->temp_dir);
}

/* Sends the spawner the note to fork the next monitor.  The note waits for
 * the run's start, so that the fork does not compete with it for the CPU. */
static void monitor_release_spawner(struct proc_monitor_prep *prep)
{
    char note = PROC_NOTE_TAKEN;

    if (prep->taken_fd < 0)
        return;
    if (write(prep->taken_fd, &note, 1) != 1) {
        /* The spawner is gone: nothing waits for the note. */
    }
    close(prep->taken_fd);
    prep->taken_fd = -1;
}

void proc_monitor_unprepare(struct proc_monitor_prep *prep)
{
    if (prep->pid_fd >= 0)
        close(prep->pid_fd);
    prep->pid_fd = -1;
    if (prep->temp_dir[0])
        rmdir(prep->temp_dir);
    prep->temp_dir[0] = '\0';
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

_Noreturn void proc_monitor_run(const struct proc_monitor_args *a, struct proc_monitor_prep *prep)
{
    struct sigaction sa = {.sa_handler = monitor_on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    int outp[2] = {-1, -1}, errout[2] = {-1, -1}, sigp[2], remove_dir = !a->cwd[0];
    char path[4200], text[128], msg[700];
    const char *cwd = a->cwd;
    pid_t child;
    int status;

    if (pipe2(sigp, O_CLOEXEC | O_NONBLOCK) < 0 ||
        (a->stream && (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errout, O_CLOEXEC) < 0))) {
        snprintf(msg, sizeof msg, "cannot create pipes: %s", strerror(errno));
        monitor_send_text(PROC_TAG_ERROR, msg);
        monitor_release_spawner(prep);
        proc_monitor_unprepare(prep);
        _exit(1);
    }
    monitor_sigchld_w = sigp[1];
    sigaction(SIGCHLD, &sa, NULL);

    if (remove_dir) {
        if (!prep->temp_dir[0] && monitor_make_temp_dir(prep->temp_dir, sizeof prep->temp_dir) < 0) {
            snprintf(msg, sizeof msg, "cannot create a temporary working directory: %s", strerror(errno));
            monitor_send_text(PROC_TAG_ERROR, msg);
            monitor_release_spawner(prep);
            proc_monitor_unprepare(prep);
            _exit(0);
        }
        cwd = prep->temp_dir;
    }
    child = monitor_start_command(a, cwd, outp[1], errout[1], msg, sizeof msg);
    if (a->stream) {
        close(outp[1]);
        close(errout[1]);
    }
    if (child < 0) {
        monitor_send_text(PROC_TAG_ERROR, msg);
        monitor_release_spawner(prep);
        proc_monitor_unprepare(prep);
        _exit(0);
    }

    /* The descriptor stays open, and locked, until the monitor exits. */
    if (monitor_write_pid(a, prep, child) < 0) {
        /* A restarted executor then cannot re-adopt the run, but the run
         * goes on and this executor still gets its exit status. */
    }
    snprintf(text, sizeof text, "%ld %ld", (long)child, (long)getpid());
    monitor_send_text(PROC_TAG_STARTED, text);
    monitor_release_spawner(prep);
    if (!remove_dir)
        proc_monitor_unprepare(prep);   /* the unused temporary directory */

    status = monitor_watch(child, outp[0], errout[0], sigp[0]);

    /* The exit file first: it must exist before the executor can learn of
     * the exit any other way, so a restart in between loses nothing. */
    snprintf(path, sizeof path, "%s/%s.exit", a->state_dir, a->flow_run_id);
    snprintf(text, sizeof text, "%lld\n", (long long)monitor_code(status));
    proc_write_file(path, text);
    if (remove_dir)
        nftw(cwd, monitor_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(text, sizeof text, "%lld", (long long)monitor_code(status));
    monitor_send_text(PROC_TAG_EXIT, text);
    _exit(0);
}
