/*
 * Golden test of `drover render`: runs drover-render on every folder under
 * the cases directory and compares its stdout byte for byte with the
 * folder's expected.json, which tests/render/gen_expected.py wrote from
 * Prefect's own code.  An expected.json of the form {"$error": ...} means
 * Prefect raises: drover must then exit with status 1 and a message (and,
 * when the folder has an error-contains file, a message containing it).
 *
 * usage: render_golden DROVER_RENDER CASES_DIR
 */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define MAX_ARGS 64

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    long size;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        data = malloc((size_t)size + 1);
        if (data && fread(data, 1, (size_t)size, f) == (size_t)size) {
            data[size] = '\0';
            if (len)
                *len = (size_t)size;
        } else {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    return data;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Finds NAME.json or NAME.yaml in dir; returns a malloc'd path or NULL. */
static char *input_path(const char *dir, const char *name)
{
    static const char *const exts[] = {".json", ".yaml", ".yml"};
    char path[8192];

    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s%s", dir, name, exts[i]);
        if (exists(path))
            return strdup(path);
    }
    return NULL;
}

struct args {
    char *argv[MAX_ARGS];
    int argc;
};

static void add(struct args *a, const char *s)
{
    if (a->argc < MAX_ARGS - 1)
        a->argv[a->argc++] = strdup(s);
    a->argv[a->argc] = NULL;
}

static void add_file_option(struct args *a, const char *dir, const char *option, const char *name)
{
    char *path = input_path(dir, name);

    if (path) {
        add(a, option);
        add(a, path);
        free(path);
    }
}

static void add_options(struct args *a, const char *dir)
{
    char path[8192];
    json_t *opts;

    snprintf(path, sizeof(path), "%s/options.json", dir);
    opts = json_load_file(path, 0, NULL);
    if (!opts)
        return;
    if (json_is_true(json_object_get(opts, "validate")))
        add(a, "--validate");
    if (json_is_true(json_object_get(opts, "no_prepare")))
        add(a, "--no-prepare");
    if (json_is_string(json_object_get(opts, "worker_name"))) {
        add(a, "--worker-name");
        add(a, json_string_value(json_object_get(opts, "worker_name")));
    }
    if (json_is_string(json_object_get(opts, "worker_id"))) {
        add(a, "--worker-id");
        add(a, json_string_value(json_object_get(opts, "worker_id")));
    }
    if (json_is_string(json_object_get(opts, "prefect_version"))) {
        add(a, "--prefect-version");
        add(a, json_string_value(json_object_get(opts, "prefect_version")));
    }
    json_decref(opts);
}

/* The environment the case runs in: exactly the entries of environ.json. */
static void build_environ(struct args *env, const char *dir)
{
    char path[8192];
    json_t *obj;
    const char *key;
    json_t *value;

    env->argc = 0;
    env->argv[0] = NULL;
    snprintf(path, sizeof(path), "%s/environ.json", dir);
    obj = json_load_file(path, 0, NULL);
    json_object_foreach(obj, key, value) {
        char entry[8192];

        if (!json_is_string(value))
            continue;
        snprintf(entry, sizeof(entry), "%s=%s", key, json_string_value(value));
        add(env, entry);
    }
    json_decref(obj);
}

static void free_args(struct args *a)
{
    for (int i = 0; i < a->argc; i++)
        free(a->argv[i]);
    a->argc = 0;
}

static int run_case(const char *tool, const char *dir, const char *name)
{
    struct args a = {.argc = 0};
    struct args env = {.argc = 0};
    char out_path[] = "/tmp/render-golden-out-XXXXXX";
    char err_path[] = "/tmp/render-golden-err-XXXXXX";
    int out_fd = mkstemp(out_path);
    int err_fd = mkstemp(err_path);
    posix_spawn_file_actions_t actions;
    char expected_path[8192];
    char contains_path[8192];
    char *expected = NULL, *output = NULL, *errors = NULL, *contains = NULL;
    size_t expected_len = 0, output_len = 0;
    json_t *parsed = NULL;
    pid_t pid;
    int status = 0;
    int ok = 0;

    add(&a, tool);
    add_file_option(&a, dir, "--template", "template");
    add_file_option(&a, dir, "--deployment-vars", "deployment-vars");
    add_file_option(&a, dir, "--run-vars", "run-vars");
    add_file_option(&a, dir, "--values", "values");
    add_file_option(&a, dir, "--flow-run", "flow-run");
    add_file_option(&a, dir, "--flow", "flow");
    add_file_option(&a, dir, "--deployment", "deployment");
    add_file_option(&a, dir, "--work-pool", "work-pool");
    add_file_option(&a, dir, "--settings-env", "settings-env");
    add_options(&a, dir);
    build_environ(&env, dir);

    if (out_fd < 0 || err_fd < 0) {
        fprintf(stderr, "FAIL %s: cannot create temporary files\n", name);
        goto done;
    }
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
    if (posix_spawn(&pid, tool, &actions, NULL, a.argv, env.argv) != 0) {
        fprintf(stderr, "FAIL %s: cannot run %s\n", name, tool);
        posix_spawn_file_actions_destroy(&actions);
        goto done;
    }
    posix_spawn_file_actions_destroy(&actions);
    waitpid(pid, &status, 0);

    output = read_file(out_path, &output_len);
    errors = read_file(err_path, NULL);
    snprintf(expected_path, sizeof(expected_path), "%s/expected.json", dir);
    expected = read_file(expected_path, &expected_len);
    if (!expected) {
        fprintf(stderr, "FAIL %s: no expected.json (run gen_expected.py)\n", name);
        goto done;
    }
    if (!WIFEXITED(status)) {
        fprintf(stderr, "FAIL %s: drover-render died with signal %d\n", name, WTERMSIG(status));
        goto done;
    }
    parsed = json_loads(expected, 0, NULL);
    if (json_is_object(parsed) && json_object_get(parsed, "$error")) {
        if (WEXITSTATUS(status) != 1 || !errors || !errors[0]) {
            fprintf(stderr, "FAIL %s: Prefect raises (%s) but drover exited %d: %s%s\n", name,
                    json_string_value(json_object_get(parsed, "$error")), WEXITSTATUS(status),
                    errors ? errors : "", output ? output : "");
            goto done;
        }
        snprintf(contains_path, sizeof(contains_path), "%s/error-contains", dir);
        contains = read_file(contains_path, NULL);
        if (contains) {
            contains[strcspn(contains, "\n")] = '\0';
            if (!strstr(errors, contains)) {
                fprintf(stderr, "FAIL %s: error \"%s\" lacks \"%s\"\n", name, errors, contains);
                goto done;
            }
        }
        ok = 1;
        goto done;
    }
    if (WEXITSTATUS(status) != 0) {
        fprintf(stderr, "FAIL %s: drover exited %d: %s\n", name, WEXITSTATUS(status),
                errors ? errors : "");
        goto done;
    }
    if (!output || output_len != expected_len || memcmp(output, expected, expected_len) != 0) {
        size_t i = 0;
        size_t line = 1;

        while (output && i < output_len && i < expected_len && output[i] == expected[i]) {
            if (output[i] == '\n')
                line++;
            i++;
        }
        fprintf(stderr, "FAIL %s: output differs from expected.json at line %zu\n", name, line);
        goto done;
    }
    ok = 1;

done:
    if (out_fd >= 0) {
        close(out_fd);
        unlink(out_path);
    }
    if (err_fd >= 0) {
        close(err_fd);
        unlink(err_path);
    }
    free(expected);
    free(output);
    free(errors);
    free(contains);
    json_decref(parsed);
    free_args(&a);
    free_args(&env);
    if (ok)
        printf("ok   %s\n", name);
    return ok ? 0 : -1;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    DIR *d;
    struct dirent *entry;
    char *names[4096];
    size_t count = 0;
    int failures = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: %s DROVER_RENDER CASES_DIR\n", argv[0]);
        return 2;
    }
    d = opendir(argv[2]);
    if (!d) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        return 2;
    }
    while ((entry = readdir(d)) && count < sizeof(names) / sizeof(names[0])) {
        char path[8192];
        struct stat st;

        if (entry->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", argv[2], entry->d_name);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            names[count++] = strdup(entry->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof(names[0]), compare_names);
    for (size_t i = 0; i < count; i++) {
        char path[8192];

        snprintf(path, sizeof(path), "%s/%s", argv[2], names[i]);
        if (run_case(argv[1], path, names[i]) < 0)
            failures++;
        free(names[i]);
    }
    printf("%zu cases, %d failed\n", count, failures);
    return failures == 0 && count > 0 ? 0 : 1;
}
