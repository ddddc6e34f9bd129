/*
 * Local executor processes.  The supervisor starts each with --connect to
 * its ipc:// endpoint, notices its exit through SIGCHLD (the loop's signal
 * pipe) and starts it again after a backoff of 1, 2, 4 ... 60 s, reset once
 * a process has stayed up for a minute.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "worker.h"

extern char **environ;

struct local_executor {
    pid_t   pid;            /* 0: not running */
    int64_t started_ms;
    int64_t restart_at_ms;  /* when to start again; 0 = now */
    int     failures;
    char    id[DROVER_MAX_NAME + 1];
    char    state_dir[512];   /* executors keep their runs in state_dir/<id> */
};

#define SPAWN_CAPACITY 10000

static struct local_executor locals[WORKER_MAX_LOCAL];
static int nlocals;

static void
spawn_sanitize(char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            *s = '_';
}

static int
spawn_mkdirs(const char *path)
{
    char tmp[512];

    if (util_strlcpy(tmp, path, sizeof tmp) == -1)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) == -1 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) == -1 && errno != EEXIST)
        return -1;
    return 0;
}

int
spawn_init(struct worker *w, char *err, size_t errlen)
{
    char base[400];
    char pool[160];

    nlocals = w->cfg.local_executors < WORKER_MAX_LOCAL ? w->cfg.local_executors : WORKER_MAX_LOCAL;
    if (nlocals == 0)
        return 0;
    if (w->cfg.state_dir) {
        util_strlcpy(base, w->cfg.state_dir, sizeof base);
    } else if (getenv("XDG_RUNTIME_DIR") && *getenv("XDG_RUNTIME_DIR")) {
        snprintf(base, sizeof base, "%s/drover", getenv("XDG_RUNTIME_DIR"));
    } else {
        snprintf(base, sizeof base, "/tmp/drover-%u", (unsigned)getuid());
    }
    util_strlcpy(pool, w->cfg.pool, sizeof pool);
    spawn_sanitize(pool);

    for (int i = 0; i < nlocals; i++) {
        struct local_executor *l = &locals[i];
        /* The id and the state directory stay the same across restarts of
         * the supervisor, so a new executor re-adopts the old one's runs. */
        char id[DROVER_MAX_NAME + 1];

        snprintf(id, sizeof id, "%.60s-%.40s-%d", w->name, w->type, i + 1);
        spawn_sanitize(id);
        util_strlcpy(l->id, id, sizeof l->id);
        if ((size_t)snprintf(l->state_dir, sizeof l->state_dir, "%s/%s", base, pool) >=
            sizeof l->state_dir) {
            snprintf(err, errlen, "the state directory %s/%s is too long; pass a shorter --state-dir",
                     base, pool);
            return -1;
        }
        if (spawn_mkdirs(l->state_dir) == -1) {
            snprintf(err, errlen, "cannot create the state directory %s: %s; pass a writable --state-dir",
                     l->state_dir, strerror(errno));
            return -1;
        }
        l->pid = 0;
        l->restart_at_ms = 0;
    }
    return 0;
}

/* Starts program in a child that gets SIGTERM when the supervisor dies,
 * even by SIGKILL: it then sends GOODBYE and leaves its runs to the
 * executor the next supervisor starts.  Returns 0 or an errno value. */
static int
spawn_exec(const char *program, char *const argv[], pid_t *pid_out)
{
    pid_t parent = getpid();
    pid_t pid;
    int fds[2], err = 0;

    if (pipe(fds) == -1)
        return errno;
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    if ((pid = fork()) == -1) {
        err = errno;
        close(fds[0]);
        close(fds[1]);
        return err;
    }
    if (pid == 0) {
        sigset_t none;

        close(fds[0]);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)   /* the supervisor died before prctl took effect */
            _exit(127);
        execve(program, argv, environ);
        err = errno;
        (void)!write(fds[1], &err, sizeof err);
        _exit(127);
    }
    close(fds[1]);
    /* The pipe closes on a successful exec, or carries exec's errno. */
    if (read(fds[0], &err, sizeof err) != (ssize_t)sizeof err)
        err = 0;
    close(fds[0]);
    if (err != 0) {
        waitpid(pid, NULL, 0);
        return err;
    }
    *pid_out = pid;
    return 0;
}

static void
spawn_start(struct worker *w, struct local_executor *l)
{
    const char *argv[14];
    char capacity[16];
    int argc = 0;
    pid_t pid = 0;
    int rc;

    argv[argc++] = w->cfg.executor_program;
    argv[argc++] = "--connect";
    argv[argc++] = w->endpoint;
    argv[argc++] = "--id";
    argv[argc++] = l->id;
    argv[argc++] = "--state-dir";
    argv[argc++] = l->state_dir;
    /* The local executor takes as many runs as the worker may: --limit, or
     * SPAWN_CAPACITY when unlimited, as Prefect's process worker has no cap. */
    snprintf(capacity, sizeof capacity, "%d",
             w->cfg.limit > 0 && w->cfg.limit < SPAWN_CAPACITY ? w->cfg.limit : SPAWN_CAPACITY);
    argv[argc++] = "--capacity";
    argv[argc++] = capacity;
    if (w->cfg.trace)
        argv[argc++] = "--trace";
    argv[argc] = NULL;

    rc = spawn_exec(w->cfg.executor_program, (char *const *)argv, &pid);
    if (rc != 0) {
        l->failures++;
        l->restart_at_ms = util_now_ms() + 1000;
        log_error("executor=%s event=spawn_failed program=%s error=\"%s\" next=\"retrying in 1 s\"",
                  l->id, w->cfg.executor_program, strerror(rc));
        return;
    }
    l->pid = pid;
    l->started_ms = util_now_ms();
    log_info("executor=%s event=spawned pid=%ld program=%s", l->id, (long)pid, w->cfg.executor_program);
}

void
spawn_check(struct worker *w, int64_t now)
{
    if (w->stopping || !w->started)
        return;
    for (int i = 0; i < nlocals; i++)
        if (locals[i].pid == 0 && locals[i].restart_at_ms <= now)
            spawn_start(w, &locals[i]);
}

long
spawn_timeout_ms(struct worker *w, int64_t now)
{
    long best = -1;

    if (w->stopping || !w->started)
        return -1;
    for (int i = 0; i < nlocals; i++) {
        long left;

        if (locals[i].pid != 0)
            continue;
        left = locals[i].restart_at_ms > now ? (long)(locals[i].restart_at_ms - now) : 0;
        if (best == -1 || left < best)
            best = left;
    }
    return best;
}

static void
spawn_exited(struct worker *w, struct local_executor *l, int status)
{
    int64_t now = util_now_ms();
    int64_t delay;

    if (now - l->started_ms > 60000)
        l->failures = 0;
    delay = (int64_t)1000 << (l->failures < 6 ? l->failures : 6);
    if (delay > 60000)
        delay = 60000;
    l->failures++;
    l->pid = 0;
    l->restart_at_ms = now + delay;
    if (WIFSIGNALED(status))
        log_warn("executor=%s event=exited signal=%d next=\"%s\"", l->id, WTERMSIG(status),
                 w->stopping ? "not restarted: stopping" : "restarting");
    else
        log_warn("executor=%s event=exited status=%d next=\"%s\"", l->id, WEXITSTATUS(status),
                 w->stopping ? "not restarted: stopping" : "restarting");
    if (!w->stopping)
        log_info("executor=%s event=restart_scheduled delay_ms=%lld", l->id, (long long)delay);
}

void
spawn_reap(struct worker *w)
{
    pid_t pid;
    int status;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < nlocals; i++)
            if (locals[i].pid == pid)
                spawn_exited(w, &locals[i], status);
    }
}

int
spawn_running(struct worker *w)
{
    int n = 0;

    (void)w;
    for (int i = 0; i < nlocals; i++)
        if (locals[i].pid != 0)
            n++;
    return n;
}

/* Asks every local executor to stop; each sends GOODBYE and leaves its runs
 * to the next executor started with the same state directory. */
void
spawn_stop_all(struct worker *w)
{
    int64_t deadline = util_now_ms() + 5000;

    for (int i = 0; i < nlocals; i++)
        if (locals[i].pid != 0)
            kill(locals[i].pid, SIGTERM);
    while (spawn_running(w) > 0 && util_now_ms() < deadline) {
        usleep(20000);
        spawn_reap(w);
    }
    for (int i = 0; i < nlocals; i++) {
        if (locals[i].pid != 0) {
            log_warn("executor=%s event=kill reason=\"did not stop within 5 s of SIGTERM\"", locals[i].id);
            kill(locals[i].pid, SIGKILL);
        }
    }
    spawn_reap(w);
}
