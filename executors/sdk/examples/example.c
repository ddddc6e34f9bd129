/*
 * drover-executor-example: the example of docs/writing-executors.md.
 *
 * An executor of type "example" that runs the command of each flow run as a
 * local process group at a lower CPU priority and stops it after a maximum
 * run time.  It shows every part of the SDK: fields with defaults and a
 * custom template, a variables schema, the prepare hook, a start that
 * returns an identifier, watching a run through file descriptors, and kill
 * with a grace period.  It has no recover callback, so its runs are
 * reported as lost when the executor itself restarts.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <drover/executor.h>

extern char **environ;

/* 1. The job configuration fields beyond command, env, labels and name. */
static const struct drover_field example_fields[] = {
    {.name = "niceness", .type = "integer", .default_json = "10",
     .description = "CPU priority of the flow run process, from 0 to 19 (nice value)."},
    {.name = "max_runtime", .type = "string", .default_json = "\"3600s\"",
     .description = "Run time after which the flow run is stopped, in seconds with an s suffix.",
     .template_text = "{{ max_runtime_seconds }}s"},
};

/* 2. The variables a deployment may set.  The custom template above uses
 *    max_runtime_seconds, so the variables must declare it, and with it
 *    every other variable the default template refers to. */
static const char example_variables[] =
    "{\"type\": \"object\", \"properties\": {"
    " \"command\": {\"title\": \"Command\", \"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}],"
    "   \"default\": null},"
    " \"env\": {\"title\": \"Environment Variables\", \"type\": \"object\","
    "   \"additionalProperties\": {\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}]}},"
    " \"labels\": {\"title\": \"Labels\", \"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}},"
    " \"name\": {\"title\": \"Name\", \"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}], \"default\": null},"
    " \"niceness\": {\"title\": \"Niceness\", \"type\": \"integer\", \"default\": 10, \"minimum\": 0, \"maximum\": 19},"
    " \"max_runtime_seconds\": {\"title\": \"Maximum Run Time\", \"type\": \"integer\", \"default\": 3600,"
    "   \"minimum\": 1}}}";

static const struct drover_describe example_describe = {
    .type = "example",
    .description = "Runs each flow run as a local process at a lower CPU priority, "
                   "stopped after a maximum run time.",
    .fields = example_fields,
    .n_fields = sizeof example_fields / sizeof example_fields[0],
    .variables_json = example_variables,
};

/* Per-run state of the example executor. */
struct example_run {
    pid_t   pid;
    int     pidfd, out, err;    /* watched fds, -1 once closed */
    int64_t stop_at;            /* monotonic ms: max_runtime reached */
    int64_t kill_at;            /* monotonic ms: SIGKILL after the grace period */
};

static int64_t example_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 3. prepare: may change the configuration before start; here it adds a label. */
static int example_prepare(struct drover_run *run, json_t *config, char *err, size_t errlen)
{
    json_t *labels = json_object_get(config, "labels");

    if (!json_is_object(labels)) {
        labels = json_object();
        json_object_set_new(config, "labels", labels);
    }
    json_object_set_new(labels, "drover.example/executor",
                        json_string(drover_executor_id(drover_run_executor(run))));
    return 0;
}

/* The executor's environment with the configuration's env on top. */
static char **example_env(const json_t *env)
{
    size_t n = 0, cap = json_object_size(env) + 1;
    const char *key;
    json_t *value;
    char **envp;

    for (char **e = environ; *e; e++)
        cap++;
    envp = calloc(cap, sizeof *envp);
    for (char **e = environ; envp && *e; e++) {
        size_t klen = strcspn(*e, "=");
        char name[256];

        snprintf(name, sizeof name, "%.*s", (int)(klen < 255 ? klen : 255), *e);
        if (!json_is_string(json_object_get(env, name)))
            envp[n++] = strdup(*e);
    }
    json_object_foreach((json_t *)env, key, value) {
        if (envp && json_is_string(value) && asprintf(&envp[n], "%s=%s", key, json_string_value(value)) >= 0)
            n++;
    }
    return envp;
}

static void example_rearm(struct drover_run *run, struct example_run *r)
{
    int64_t next = r->kill_at && r->kill_at < r->stop_at ? r->kill_at : r->stop_at;

    drover_run_set_timer(run, next > example_now() ? (long)(next - example_now()) : 0);
}

/* 4. start: start the infrastructure and return its identifier. */
static int example_start(struct drover_run *run, const json_t *config, char *identifier, size_t idlen,
                         char *err, size_t errlen)
{
    const char *command = json_string_value(json_object_get(config, "command"));
    const char *max_runtime = json_string_value(json_object_get(config, "max_runtime"));
    json_t *niceness = json_object_get(config, "niceness");
    int out[2], errp[2], rc;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    struct example_run *r;
    char **argv, **envp;
    long seconds = 3600;

    if (json_object_get(config, "command") && !json_is_null(json_object_get(config, "command")) && !command) {
        snprintf(err, errlen, "command must be a string or null");
        return DROVER_START_FAILED;
    }
    if (max_runtime && (sscanf(max_runtime, "%lds", &seconds) != 1 || seconds < 1)) {
        snprintf(err, errlen, "invalid max_runtime %s: expected seconds such as 600s", max_runtime);
        return DROVER_START_FAILED;
    }
    argv = drover_split_command(command && command[0] ? command : "prefect flow-run execute", err, errlen);
    if (!argv)
        return DROVER_START_FAILED;
    if (!argv[0]) {
        drover_argv_free(&argv);
        snprintf(err, errlen, "command is empty");
        return DROVER_START_FAILED;
    }

    /* The command runs in its own process group, its output in two pipes. */
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        drover_argv_free(&argv);
        return DROVER_START_FAILED;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, errp[1], STDERR_FILENO);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    envp = example_env(json_object_get(config, "env"));
    r = calloc(1, sizeof *r);
    rc = r && envp ? posix_spawnp(&r->pid, argv[0], &fa, &attr, argv, envp) : ENOMEM;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out[1]);
    close(errp[1]);
    if (rc != 0) {
        snprintf(err, errlen, rc == ENOENT ? "command not found: %s" : "cannot run %s: %s", argv[0], strerror(rc));
        close(out[0]);
        close(errp[0]);
        free(r);
        drover_argv_free(&argv);
        drover_argv_free(&envp);
        return DROVER_START_FAILED;
    }
    drover_argv_free(&argv);
    drover_argv_free(&envp);
    setpriority(PRIO_PROCESS, (id_t)r->pid, json_is_integer(niceness) ? (int)json_integer_value(niceness) : 10);

    /* 5. Watch it: the SDK's loop polls these fds and calls on_fd. */
    r->pidfd = pidfd_open(r->pid, 0);
    r->out = out[0];
    r->err = errp[0];
    fcntl(r->out, F_SETFL, O_NONBLOCK);
    fcntl(r->err, F_SETFL, O_NONBLOCK);
    r->stop_at = example_now() + seconds * 1000;
    drover_run_set_data(run, r);
    drover_run_watch_fd(run, r->pidfd);
    drover_run_watch_fd(run, r->out);
    drover_run_watch_fd(run, r->err);
    example_rearm(run, r);

    snprintf(identifier, idlen, "%ld", (long)r->pid);
    return DROVER_START_OK;
}

/* Reads what is in one pipe, a bounded amount per call so that a chatty
 * command cannot hold up the loop; closes the pipe at EOF. */
static void example_pump(struct drover_run *run, int *fd, int stream)
{
    char buf[8192];
    ssize_t n = -1;

    for (int i = 0; i < 16 && *fd >= 0 && (n = read(*fd, buf, sizeof buf)) > 0; i++)
        drover_run_log_data(run, stream, buf, (size_t)n);
    if (n != 0)
        return;   /* more to come, or EAGAIN */
    if (*fd >= 0) {
        drover_run_unwatch_fd(run, *fd);
        close(*fd);
        *fd = -1;
    }
}

static void example_on_fd(struct drover_run *run, int fd)
{
    struct example_run *r = drover_run_data(run);
    int status;
    pid_t w;

    if (fd == r->out || fd == r->err) {
        example_pump(run, fd == r->out ? &r->out : &r->err, fd == r->out ? DROVER_STREAM_STDOUT
                                                                      : DROVER_STREAM_STDERR);
        return;
    }
    /* The pidfd is readable: the process ended.  Take the output still in
     * the pipes, then report the result. */
    w = waitpid(r->pid, &status, WNOHANG);
    if (w == 0)
        return;
    drover_run_unwatch_fd(run, r->pidfd);
    if (w < 0) {
        drover_run_exited_error(run, 1, "the process could not be waited for");
        return;
    }
    example_pump(run, &r->out, DROVER_STREAM_STDOUT);
    example_pump(run, &r->err, DROVER_STREAM_STDERR);
    r->kill_at = r->stop_at = INT64_MAX;
    drover_run_set_timer(run, -1);
    drover_run_exited(run, WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
}

/* 6. kill: SIGTERM now, SIGKILL when the grace period is over (on_timer). */
static int example_kill(struct drover_run *run, unsigned grace_seconds, char *err, size_t errlen)
{
    struct example_run *r = drover_run_data(run);
    int64_t at = example_now() + (int64_t)grace_seconds * 1000;

    if (kill(-r->pid, SIGTERM) < 0 && errno != ESRCH) {
        snprintf(err, errlen, "SIGTERM to process group %ld: %s", (long)r->pid, strerror(errno));
        return -1;
    }
    if (!r->kill_at || at < r->kill_at)
        r->kill_at = at;
    example_rearm(run, r);
    return 0;
}

static void example_on_timer(struct drover_run *run)
{
    struct example_run *r = drover_run_data(run);
    char err[128];

    if (r->kill_at && example_now() >= r->kill_at) {
        kill(-r->pid, SIGKILL);
        r->kill_at = INT64_MAX;
    } else if (example_now() >= r->stop_at) {
        drover_log(drover_run_executor(run), run, "max_runtime_reached (stopping with a 10 s grace period)");
        r->stop_at = INT64_MAX;
        example_kill(run, 10, err, sizeof err);
        return;
    }
    example_rearm(run, r);
}

static void example_release(struct drover_run *run)
{
    struct example_run *r = drover_run_data(run);

    if (!r)
        return;
    if (r->pidfd >= 0)
        close(r->pidfd);
    if (r->out >= 0)
        close(r->out);
    if (r->err >= 0)
        close(r->err);
    free(r);
}

static const struct drover_executor_ops example_ops = {
    .describe = &example_describe,
    .prepare = example_prepare,
    .start = example_start,
    .on_fd = example_on_fd,
    .on_timer = example_on_timer,
    .kill = example_kill,
    .release = example_release,
};

int main(int argc, char **argv)
{
    return drover_executor_main(argc, argv, &example_ops);
}
