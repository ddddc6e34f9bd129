/*
 * From a job configuration to a running monitor: read and check the fields
 * of Prefect's process worker (command, env, working_dir, stream_output),
 * build the command's environment, and hand the run to the spawner
 * (spawner.c), whose prepared monitor starts it.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "process.h"

extern char **environ;

/* Accepts a string or null; anything else is an error naming the field. */
static int spawn_optional_string(const json_t *config, const char *key, const char **out,
                                 char *err, size_t errlen)
{
    const json_t *v = json_object_get(config, key);

    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "job configuration field %s must be a string or null", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* The executor's environment with the configuration's env on top.  A null
 * value sets nothing, so the variable keeps the executor's value, as with
 * Prefect's process worker. */
static char **spawn_build_env(const json_t *env, char *err, size_t errlen)
{
    size_t n_own = 0, n_env = json_is_object(env) ? json_object_size(env) : 0, n = 0;
    const char *key;
    json_t *value;
    char **envp;

    while (environ[n_own])
        n_own++;
    envp = calloc(n_own + n_env + 1, sizeof *envp);
    if (!envp)
        goto oom;

    for (size_t i = 0; i < n_own; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = 0;

        json_object_foreach((json_t *)env, key, value) {
            if (json_is_string(value) && strlen(key) == klen && strncmp(key, environ[i], klen) == 0)
                overridden = 1;
        }
        if (!overridden && !(envp[n++] = strdup(environ[i])))
            goto oom;
    }
    json_object_foreach((json_t *)env, key, value) {
        size_t len;

        if (json_is_null(value))
            continue;
        if (!key[0] || strchr(key, '=')) {
            snprintf(err, errlen, "invalid environment variable name \"%.100s\" in env", key);
            goto fail;
        }
        len = strlen(key) + json_string_length(value) + 2;
        if (!(envp[n] = malloc(len)))
            goto oom;
        snprintf(envp[n++], len, "%s=%s", key, json_string_value(value));
    }
    return envp;

oom:
    snprintf(err, errlen, "out of memory building the environment");
fail:
    drover_argv_free(&envp);
    return NULL;
}

static int spawn_check_env(const json_t *env, char *err, size_t errlen)
{
    const char *key;
    json_t *value;

    if (!env || json_is_null(env))
        return 0;
    if (!json_is_object(env)) {
        snprintf(err, errlen, "job configuration field env must be an object of strings");
        return -1;
    }
    json_object_foreach((json_t *)env, key, value) {
        if (!json_is_string(value) && !json_is_null(value)) {
            snprintf(err, errlen, "env.%.100s must be a string or null", key);
            return -1;
        }
        if (json_is_string(value) && strlen(json_string_value(value)) != json_string_length(value)) {
            snprintf(err, errlen, "env.%.100s contains a NUL character", key);
            return -1;
        }
    }
    return 0;
}

int proc_spec_from_config(const json_t *config, struct proc_spec *spec, char *err, size_t errlen)
{
    const char *command = NULL, *working_dir = NULL;
    const json_t *env = json_object_get(config, "env");
    const json_t *stream = json_object_get(config, "stream_output");
    struct stat st;

    memset(spec, 0, sizeof *spec);
    if (spawn_optional_string(config, "command", &command, err, errlen) < 0 ||
        spawn_optional_string(config, "working_dir", &working_dir, err, errlen) < 0 ||
        spawn_check_env(env, err, errlen) < 0)
        return -1;
    if (stream && !json_is_null(stream) && !json_is_boolean(stream)) {
        snprintf(err, errlen, "job configuration field stream_output must be true or false");
        return -1;
    }
    spec->stream_output = !stream || json_is_null(stream) || json_is_true(stream);

    if (!command || !command[0])
        command = PROC_DEFAULT_COMMAND;
    spec->argv = drover_split_command(command, err, errlen);
    if (!spec->argv)
        goto fail;
    if (!spec->argv[0]) {
        snprintf(err, errlen, "command \"%.200s\" has no words", command);
        goto fail;
    }

    if (working_dir && working_dir[0]) {
        if (stat(working_dir, &st) < 0) {
            snprintf(err, errlen, "working directory %.400s: %s", working_dir, strerror(errno));
            goto fail;
        }
        if (!S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "working directory %.400s is not a directory", working_dir);
            goto fail;
        }
        spec->working_dir = strdup(working_dir);
        if (!spec->working_dir)
            goto fail;
    }

    spec->envp = spawn_build_env(env && json_is_object(env) ? env : NULL, err, errlen);
    if (!spec->envp)
        goto fail;
    return 0;

fail:
    proc_spec_clear(spec);
    return -1;
}

void proc_spec_clear(struct proc_spec *spec)
{
    drover_argv_free(&spec->argv);
    drover_argv_free(&spec->envp);
    free(spec->working_dir);
    spec->working_dir = NULL;
}

/* The spawner's socket and pid in the executor, -1 when none runs. */
static int spawner_sock = -1;
static pid_t spawner_pid = -1;
static char *spawner_state_dir;   /* to start the spawner again */

/* A blocked spawner must not hold the executor's loop forever. */
#define SPAWN_SEND_TIMEOUT_S 10

int proc_spawner_start(const char *state_dir, char *err, size_t errlen)
{
    char *argv[] = {"drover-executor-process", "--spawner", NULL, NULL};
    struct timeval timeout = {.tv_sec = SPAWN_SEND_TIMEOUT_S};
    sigset_t none;
    int sv[2];
    pid_t pid;

    proc_spawner_stop(1);
    if (state_dir != spawner_state_dir) {
        free(spawner_state_dir);
        if (!(spawner_state_dir = strdup(state_dir))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    argv[2] = spawner_state_dir;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "cannot create the spawner's socket: %s", strerror(errno));
        return -1;
    }
    sigemptyset(&none);
    pid = fork();
    if (pid == 0) {
        /* The executor has libzmq's threads: only async-signal-safe calls
         * until execve.  dup2 clears close-on-exec; fcntl covers sv[1]
         * being PROC_SPAWNER_FD already. */
        if (dup2(sv[1], PROC_SPAWNER_FD) < 0 || fcntl(PROC_SPAWNER_FD, F_SETFD, 0) < 0)
            _exit(127);
        close_range(PROC_SPAWNER_FD + 1, ~0U, 0);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve("/proc/self/exe", argv, environ);
        _exit(127);
    }
    close(sv[1]);
    if (pid < 0) {
        snprintf(err, errlen, "fork of the spawner failed: %s", strerror(errno));
        close(sv[0]);
        return -1;
    }
    setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    spawner_sock = sv[0];
    spawner_pid = pid;
    return 0;
}

void proc_spawner_stop(int force)
{
    int status;

    if (spawner_sock >= 0)
        close(spawner_sock);
    spawner_sock = -1;
    if (spawner_pid > 0) {
        /* The spawner exits once its waiting monitor reads the socket's
         * end, which a monitor still starting a run can delay.  SIGCHLD is
         * ignored (proc_init), so the kernel reaps a spawner that died, and
         * waitpid then fails with ECHILD.  Its pid may belong to another
         * process by then, so it gets no signal. */
        pid_t reaped = waitpid(spawner_pid, &status, WNOHANG);

        for (int waited_ms = 0; !force && reaped == 0 && waited_ms < 1000; waited_ms += 10) {
            reaped = waitpid(spawner_pid, &status, WNOHANG);
            if (reaped == 0)
                nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
        }
        if (reaped == 0) {
            kill(spawner_pid, SIGKILL);
            while (waitpid(spawner_pid, &status, 0) < 0 && errno == EINTR)
                ;
        }
    }
    spawner_pid = -1;
}

struct spawn_request {
    char  *data;
    size_t len, cap;
    int    failed;   /* out of memory or over PROC_SPAWN_MAX_REQUEST */
};

static void spawn_add_bytes(struct spawn_request *r, const void *data, size_t n)
{
    if (r->failed)
        return;
    if (r->len + n > (size_t)PROC_SPAWN_MAX_REQUEST + 4) {
        r->failed = 1;
        return;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        char *grown;

        while (cap < r->len + n)
            cap *= 2;
        if (!(grown = realloc(r->data, cap))) {
            r->failed = 1;
            return;
        }
        r->data = grown;
        r->cap = cap;
    }
    memcpy(r->data + r->len, data, n);
    r->len += n;
}

/* Appends s with its NUL to the request. */
static void spawn_add(struct spawn_request *r, const char *s)
{
    spawn_add_bytes(r, s, strlen(s) + 1);
}

static void spawn_add_list(struct spawn_request *r, char *const *list)
{
    char count[32];
    size_t n = 0;

    while (list[n])
        n++;
    snprintf(count, sizeof count, "%zu", n);
    spawn_add(r, count);
    for (size_t i = 0; i < n; i++)
        spawn_add(r, list[i]);
}

/* Builds the request in the format spawner.c describes. */
static int spawn_build_request(struct spawn_request *r, struct drover_run *run, const struct proc_spec *spec)
{
    size_t payload;

    spawn_add_bytes(r, "\0\0\0", 4);   /* the length, filled in below */
    spawn_add(r, drover_run_flow_run_id(run));
    spawn_add(r, drover_executor_state_dir(drover_run_executor(run)));
    spawn_add(r, spec->working_dir ? spec->working_dir : "");
    spawn_add(r, spec->stream_output ? "1" : "0");
    spawn_add_list(r, spec->argv);
    spawn_add_list(r, spec->envp);
    if (r->failed)
        return -1;
    payload = r->len - 4;
    r->data[0] = (char)(payload >> 24);
    r->data[1] = (char)(payload >> 16);
    r->data[2] = (char)(payload >> 8);
    r->data[3] = (char)payload;
    return 0;
}

/* Sends the request with pipe_w attached.  Returns 0; 1 when the spawner is
 * gone and nothing was sent; -1 on another error, after which the stream
 * may be out of step and the spawner is stopped. */
static int spawn_send(const struct spawn_request *r, int pipe_w, char *err, size_t errlen)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = r->data, .iov_len = r->len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    ssize_t n;
    size_t done;

    memset(control.buf, 0, sizeof control.buf);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &pipe_w, sizeof(int));
    while ((n = sendmsg(spawner_sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
        return 1;
    done = n < 0 ? 0 : (size_t)n;
    while (n >= 0 && done < r->len) {
        n = send(spawner_sock, r->data + done, r->len - done, MSG_NOSIGNAL);
        if (n > 0)
            done += (size_t)n;
        else if (n < 0 && errno == EINTR)
            n = 0;
    }
    if (n < 0) {
        snprintf(err, errlen, "cannot send the run to the spawner: %s", strerror(errno));
        proc_spawner_stop(1);
        return -1;
    }
    return 0;
}

int proc_spawn(struct drover_run *run, const struct proc_spec *spec, char *err, size_t errlen)
{
    struct spawn_request req = {0};
    int fds[2] = {-1, -1}, rc = -1, sent;

    if (spawn_build_request(&req, run, spec) < 0) {
        snprintf(err, errlen, "the command and environment exceed %u bytes or memory ran out",
                 PROC_SPAWN_MAX_REQUEST);
        goto done;
    }
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot create the monitor's pipe: %s", strerror(errno));
        goto done;
    }

    /* A spawner that died is started again, once per run. */
    if (spawner_sock < 0 && proc_spawner_start(spawner_state_dir, err, errlen) < 0)
        goto done;
    sent = spawn_send(&req, fds[1], err, errlen);
    if (sent == 1) {
        drover_log(drover_run_executor(run), run, "spawner_gone pid=%ld (starting it again)", (long)spawner_pid);
        if (proc_spawner_start(spawner_state_dir, err, errlen) < 0)
            goto done;
        sent = spawn_send(&req, fds[1], err, errlen);
    }
    if (sent == 1)
        snprintf(err, errlen, "the spawner process exited at once");
    if (sent != 0)
        goto done;

    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    rc = fds[0];
    fds[0] = -1;
done:
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(req.data);
    return rc;
}

int proc_write_file(const char *path, const char *text)
{
    char tmp[4200];
    size_t len = strlen(text);
    int fd, rc = -1;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return -1;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (write(fd, text, len) == (ssize_t)len && fsync(fd) == 0)
        rc = 0;
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -1;
    if (rc < 0)
        unlink(tmp);
    return rc;
}
