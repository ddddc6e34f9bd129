/*
 * Executor discovery against programs made by the test: a good one, one
 * shadowed by an earlier PATH entry, broken ones (wrong type, invalid JSON,
 * failing, hanging), names that are not executors, and the real
 * drover-executor-process of the build tree.
 *
 *   test_discover BIN_DIR      (the directory holding drover-executor-process)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "discover.h"

static int failures;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            failures++;                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
        }                                                        \
    } while (0)

static void write_program(const char *dir, const char *name, const char *body, mode_t mode)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(path, mode);
}

static const struct discover_entry *find_entry(const struct discover_entry *list, size_t n, const char *type)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].type, type) == 0)
            return &list[i];
    return NULL;
}

int main(int argc, char **argv)
{
    char first[] = "/tmp/drover-discover-a-XXXXXX", second[] = "/tmp/drover-discover-b-XXXXXX";
    char path_env[4096], expect[600], err[256] = "", cmd[200];
    struct discover_entry *list = NULL;
    const struct discover_entry *e;
    size_t n = 0;
    char *found;

    if (argc != 2 || !mkdtemp(first) || !mkdtemp(second)) {
        fprintf(stderr, "usage: test_discover BIN_DIR\n");
        return 2;
    }
    write_program(first, "drover-executor-good",
                  "echo '{\"type\": \"good\", \"description\": \"Good one\", "
                  "\"documentation_url\": \"https://example.invalid/good\", \"fields\": []}'", 0755);
    write_program(second, "drover-executor-good", "echo '{\"type\": \"good\", \"description\": \"shadowed\"}'", 0755);
    write_program(first, "drover-executor-wrongtype", "echo '{\"type\": \"other\"}'", 0755);
    write_program(first, "drover-executor-junk", "echo 'not json'", 0755);
    write_program(first, "drover-executor-fails", "exit 3", 0755);
    write_program(first, "drover-executor-slow", "exec sleep 60", 0755);
    write_program(first, "drover-executor-Upper", "echo '{\"type\": \"Upper\"}'", 0755);
    write_program(first, "drover-executor-noexec", "echo '{\"type\": \"noexec\"}'", 0644);
    write_program(first, "not-an-executor", "echo '{}'", 0755);

    snprintf(path_env, sizeof path_env, "%s:%s:%s:/usr/bin:/bin", first, second, argv[1]);
    setenv("PATH", path_env, 1);

    CHECK(discover_list(&list, &n, err, sizeof err) == 0, "discover_list failed: %s", err);

    e = find_entry(list, n, "good");
    snprintf(expect, sizeof expect, "%s/drover-executor-good", first);
    CHECK(e && strcmp(e->path, expect) == 0, "good: path %s, expected the first PATH entry %s",
          e ? e->path : "(missing)", expect);
    CHECK(e && !e->error, "good: error %s", e && e->error ? e->error : "");
    CHECK(e && strcmp(e->description, "Good one") == 0, "good: description %s", e ? e->description : "");
    CHECK(e && strcmp(e->documentation_url, "https://example.invalid/good") == 0, "good: documentation_url %s",
          e ? e->documentation_url : "");

    e = find_entry(list, n, "wrongtype");
    CHECK(e && e->error && strstr(e->error, "declares type other"), "wrongtype: error %s",
          e && e->error ? e->error : "(none)");
    e = find_entry(list, n, "junk");
    CHECK(e && e->error && strstr(e->error, "invalid JSON"), "junk: error %s", e && e->error ? e->error : "(none)");
    e = find_entry(list, n, "fails");
    CHECK(e && e->error && strstr(e->error, "exit status 3"), "fails: error %s", e && e->error ? e->error : "(none)");
    e = find_entry(list, n, "slow");
    CHECK(e && e->error && strstr(e->error, "did not finish"), "slow: error %s", e && e->error ? e->error : "(none)");
    CHECK(!find_entry(list, n, "Upper"), "a program with an invalid type name was listed");
    CHECK(!find_entry(list, n, "noexec"), "a program without the execute bit was listed");

    e = find_entry(list, n, "process");
    CHECK(e && !e->error && e->description[0], "process: %s", e ? (e->error ? e->error : "no description")
                                                                : "drover-executor-process not found");
    for (size_t i = 1; i < n; i++)
        CHECK(strcmp(list[i - 1].type, list[i].type) < 0, "entries not sorted: %s before %s", list[i - 1].type,
              list[i].type);
    discover_free(&list, n);
    CHECK(list == NULL, "discover_free left the pointer set");

    found = discover_find("good");
    CHECK(found && strcmp(found, expect) == 0, "discover_find(good) = %s", found ? found : "NULL");
    free(found);
    CHECK(discover_find("missing") == NULL, "discover_find(missing) found a program");
    CHECK(discover_find("../good") == NULL, "discover_find accepted a path in the type");
    CHECK(discover_find("") == NULL, "discover_find accepted an empty type");
    CHECK(discover_find(NULL) == NULL, "discover_find accepted NULL");

    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", first, second);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s and %s\n", first, second);
    printf("%s\n", failures ? "discover: FAILED" : "discover: ok");
    return failures ? 1 : 0;
}
