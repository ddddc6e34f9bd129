/*
 * Executor discovery (see discover.h): a directory scan for
 * drover-executor-<type> programs and one --describe run per program.
 */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "discover.h"
#include "drover/protocol.h"
#include "drover/version.h"

#define DISCOVER_PREFIX "drover-executor-"

/* Search directories beyond this many are ignored (a PATH is rarely longer). */
#define DISCOVER_MAX_DIRS 256

extern char **environ;

static int discover_valid_type(const char *type, size_t len)
{
    if (len == 0 || len > DROVER_MAX_TYPE)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = type[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Fills dirs with the search directories in order; returns their count.
 * Each string is malloc'd. */
static size_t discover_dirs(char **dirs, size_t max)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    const char *path = getenv("PATH");
    size_t n = 0;

    if (len > 0) {
        char *slash;

        self[len] = '\0';
        slash = strrchr(self, '/');
        if (slash && slash != self) {
            *slash = '\0';
            dirs[n] = strdup(self);
            n += dirs[n] != NULL;
        }
    }
    if (n < max) {
        dirs[n] = strdup(DROVER_LIBEXECDIR);
        n += dirs[n] != NULL;
    }
    while (path && *path && n < max) {
        size_t seg = strcspn(path, ":");

        /* An empty PATH entry means the current directory, which is never
         * searched for programs to start. */
        if (seg > 0 && path[0] == '/') {
            dirs[n] = strndup(path, seg);
            n += dirs[n] != NULL;
        }
        path += seg + (path[seg] == ':');
    }
    return n;
}

static void discover_free_dirs(char **dirs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
}

static int discover_is_program(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *discover_find(const char *type)
{
    char *dirs[DISCOVER_MAX_DIRS], *found = NULL;
    size_t n;

    if (!type || !discover_valid_type(type, strlen(type)))
        return NULL;
    n = discover_dirs(dirs, DISCOVER_MAX_DIRS);
    for (size_t i = 0; i < n && !found; i++) {
        char path[PATH_MAX];

        if ((size_t)snprintf(path, sizeof path, "%s/" DISCOVER_PREFIX "%s", dirs[i], type) >= sizeof path)
            continue;
        if (discover_is_program(path))
            found = strdup(path);
    }
    discover_free_dirs(dirs, n);
    return found;
}

/* Runs "path --describe" and returns its standard output (at most the
 * schema limit), or NULL with a reason.  The program is killed when it does
 * not finish within DISCOVER_DESCRIBE_TIMEOUT_S. */
static char *discover_run_describe(const char *path, char *err, size_t errlen)
{
    char *const argv[] = {(char *)path, "--describe", NULL};
    posix_spawn_file_actions_t fa;
    struct timespec start, now;
    size_t len = 0, cap = DROVER_MAX_SCHEMA + 1;
    char *buf = malloc(cap + 1);
    int fds[2] = {-1, -1}, status = 0, rc, timed_out = 0;
    pid_t pid;

    if (!buf || pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot run %s: %s", path, buf ? strerror(errno) : "out of memory");
        free(buf);
        return NULL;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    rc = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        snprintf(err, errlen, "cannot run %s: %s", path, strerror(rc));
        close(fds[0]);
        free(buf);
        return NULL;
    }

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        long elapsed_ms;
        ssize_t r;

        clock_gettime(CLOCK_MONOTONIC, &now);
        elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed_ms >= DISCOVER_DESCRIBE_TIMEOUT_S * 1000L) {
            timed_out = 1;
            break;
        }
        if (poll(&p, 1, (int)(DISCOVER_DESCRIBE_TIMEOUT_S * 1000L - elapsed_ms)) <= 0)
            continue;
        r = read(fds[0], buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == cap)
            break;
    }
    close(fds[0]);
    /* The program may close its output and go on running: wait for it
     * within the same deadline, then kill it. */
    for (;;) {
        long elapsed_ms;
        pid_t w = timed_out || len == cap ? 0 : waitpid(pid, &status, WNOHANG);

        if (w == pid || (w < 0 && errno != EINTR))
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (timed_out || len == cap || elapsed_ms >= DISCOVER_DESCRIBE_TIMEOUT_S * 1000L) {
            timed_out = len != cap;
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    buf[len] = '\0';

    if (timed_out)
        snprintf(err, errlen, "%s --describe did not finish within %d s", path, DISCOVER_DESCRIBE_TIMEOUT_S);
    else if (len == cap)
        snprintf(err, errlen, "%s --describe printed more than %u bytes", path, DROVER_MAX_SCHEMA);
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        snprintf(err, errlen, "%s --describe failed with %s %d", path,
                 WIFEXITED(status) ? "exit status" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    else
        return buf;
    free(buf);
    return NULL;
}

json_t *discover_schema(const char *path, char *err, size_t errlen)
{
    char *text = discover_run_describe(path, err, errlen);
    json_error_t jerr;
    json_t *schema;

    if (text == NULL)
        return NULL;
    schema = json_loads(text, 0, &jerr);
    free(text);
    if (schema == NULL || !json_is_object(schema)) {
        snprintf(err, errlen, "%s --describe printed invalid JSON: %s", path,
                 schema ? "not an object" : jerr.text);
        json_decref(schema);
        return NULL;
    }
    return schema;
}

static char *discover_string_member(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return strdup(s ? s : "");
}

/* Fills e->description, e->documentation_url or e->error from --describe. */
static void discover_describe(struct discover_entry *e)
{
    char err[1024] = "";
    char *text = discover_run_describe(e->path, err, sizeof err);
    json_error_t jerr;
    json_t *schema = NULL;
    const char *declared;

    if (text) {
        schema = json_loads(text, 0, &jerr);
        if (!schema || !json_is_object(schema))
            snprintf(err, sizeof err, "%s --describe printed invalid JSON: %s", e->path,
                     schema ? "not an object" : jerr.text);
    }
    if (schema && json_is_object(schema)) {
        declared = json_string_value(json_object_get(schema, "type"));
        if (!declared || strcmp(declared, e->type) != 0)
            snprintf(err, sizeof err, "%s declares type %s, expected %s", e->path,
                     declared ? declared : "(none)", e->type);
    }
    if (err[0]) {
        e->error = strdup(err);
        e->description = strdup("");
        e->documentation_url = strdup("");
    } else {
        e->description = discover_string_member(schema, "description");
        e->documentation_url = discover_string_member(schema, "documentation_url");
    }
    json_decref(schema);
    free(text);
}

static int discover_known(struct discover_entry *list, size_t n, const char *type)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].type, type) == 0)
            return 1;
    return 0;
}

/* Adds the programs of one directory that are not known yet. */
static int discover_scan(const char *dir, struct discover_entry **list, size_t *n, size_t *cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return 0;   /* a missing directory of the search path is normal */
    while ((de = readdir(d)) != NULL) {
        const char *type = de->d_name + strlen(DISCOVER_PREFIX);
        char path[PATH_MAX];

        if (strncmp(de->d_name, DISCOVER_PREFIX, strlen(DISCOVER_PREFIX)) != 0 ||
            !discover_valid_type(type, strlen(type)) || discover_known(*list, *n, type))
            continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path ||
            !discover_is_program(path))
            continue;
        if (*n == *cap) {
            size_t c = *cap ? *cap * 2 : 8;
            struct discover_entry *grown = realloc(*list, c * sizeof **list);

            if (!grown) {
                closedir(d);
                return -1;
            }
            *list = grown;
            *cap = c;
        }
        memset(&(*list)[*n], 0, sizeof **list);
        (*list)[*n].type = strdup(type);
        (*list)[*n].path = strdup(path);
        if (!(*list)[*n].type || !(*list)[*n].path) {
            free((*list)[*n].type);
            free((*list)[*n].path);
            closedir(d);
            return -1;
        }
        (*n)++;
    }
    closedir(d);
    return 0;
}

static int discover_by_type(const void *a, const void *b)
{
    return strcmp(((const struct discover_entry *)a)->type, ((const struct discover_entry *)b)->type);
}

int discover_list(struct discover_entry **out, size_t *n, char *err, size_t errlen)
{
    char *dirs[DISCOVER_MAX_DIRS];
    struct discover_entry *list = NULL;
    size_t ndirs, count = 0, cap = 0;
    int rc = 0;

    *out = NULL;
    *n = 0;
    ndirs = discover_dirs(dirs, DISCOVER_MAX_DIRS);
    for (size_t i = 0; i < ndirs && rc == 0; i++)
        rc = discover_scan(dirs[i], &list, &count, &cap);
    discover_free_dirs(dirs, ndirs);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory listing executor programs");
        discover_free(&list, count);
        return -1;
    }
    for (size_t i = 0; i < count; i++)
        discover_describe(&list[i]);
    if (count > 1)
        qsort(list, count, sizeof *list, discover_by_type);
    *out = list;
    *n = count;
    return 0;
}

void discover_free(struct discover_entry **entries, size_t n)
{
    if (!entries || !*entries)
        return;
    for (size_t i = 0; i < n; i++) {
        free((*entries)[i].type);
        free((*entries)[i].path);
        free((*entries)[i].description);
        free((*entries)[i].documentation_url);
        free((*entries)[i].error);
    }
    free(*entries);
    *entries = NULL;
}
