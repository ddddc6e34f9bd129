/*
 * From a job configuration to a running monitor: read and check the fields
 * of Prefect's process worker (command, env, working_dir, stream_output),
 * build the command's environment, and start the monitor detached from the
 * executor (fork, setsid, fork, exec of this program with --monitor).
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* Creates the run's temporary working directory, which the monitor removes
 * when the command has ended. */
static char *spawn_temp_dir(const struct drover_run *run, char *err, size_t errlen)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];

    snprintf(path, sizeof path, "%s/drover-%.8s-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp",
             drover_run_flow_run_id(run));
    if (!mkdtemp(path)) {
        snprintf(err, errlen, "cannot create a temporary working directory in %s: %s",
                 tmp && tmp[0] == '/' ? tmp : "/tmp", strerror(errno));
        return NULL;
    }
    return strdup(path);
}

/* argv of the monitor: --monitor FLOW_RUN STATE_DIR CWD RMDIR STREAM -- COMMAND... */
static char **spawn_monitor_argv(struct drover_run *run, const struct proc_spec *spec, const char *cwd,
                                 int remove_dir)
{
    size_t n = 0, words = 0;
    char **argv;

    while (spec->argv[words])
        words++;
    argv = calloc(words + 9, sizeof *argv);
    if (!argv)
        return NULL;
    argv[n++] = strdup("drover-executor-process");
    argv[n++] = strdup("--monitor");
    argv[n++] = strdup(drover_run_flow_run_id(run));
    argv[n++] = strdup(drover_executor_state_dir(drover_run_executor(run)));
    argv[n++] = strdup(cwd);
    argv[n++] = strdup(remove_dir ? "1" : "0");
    argv[n++] = strdup(spec->stream_output ? "1" : "0");
    argv[n++] = strdup("--");
    for (size_t i = 0; i < words; i++)
        argv[n++] = strdup(spec->argv[i]);
    for (size_t i = 0; i < n; i++) {
        if (!argv[i]) {
            drover_argv_free(&argv);
            return NULL;
        }
    }
    return argv;
}

/* Runs in the forked child of a multi-threaded process (libzmq's threads),
 * so only async-signal-safe calls are made until execve. */
static void spawn_child(int pipe_w, char **margv, char **envp)
{
    sigset_t none;
    int devnull;

    setsid();
    if (fork() != 0)
        _exit(0);   /* the intermediate exits, so the monitor is nobody's zombie */

    if (dup2(pipe_w, PROC_MONITOR_FD) < 0)
        _exit(127);
    /* The monitor outlives the executor, so it must not keep the
     * executor's stdout or stderr (perhaps a supervisor's pipe) open. */
    devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
    }
    close_range(PROC_MONITOR_FD + 1, ~0U, 0);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve("/proc/self/exe", margv, envp);
    _exit(127);
}

int proc_spawn(struct drover_run *run, const struct proc_spec *spec, char *err, size_t errlen)
{
    char *cwd = spec->working_dir ? strdup(spec->working_dir) : spawn_temp_dir(run, err, errlen);
    char **margv = NULL;
    int fds[2] = {-1, -1}, rc = -1, status;
    pid_t pid;

    if (!cwd) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    margv = spawn_monitor_argv(run, spec, cwd, spec->working_dir == NULL);
    if (!margv || pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot prepare the monitor: %s", margv ? strerror(errno) : "out of memory");
        goto done;
    }

    pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork failed: %s", strerror(errno));
        goto done;
    }
    if (pid == 0)
        spawn_child(fds[1], margv, spec->envp);

    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    close(fds[1]);
    fds[1] = -1;
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    rc = fds[0];
    fds[0] = -1;
done:
    if (rc < 0 && !spec->working_dir)
        rmdir(cwd);
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    drover_argv_free(&margv);
    free(cwd);
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
