/*
 * Replays a fuzz target's seed corpus without libFuzzer, so every ordinary
 * build runs each target over its seeds as a CTest case.  Arguments are
 * files or folders, and every regular file found in a folder is one input.
 * A failing input aborts inside the target, which fails the test.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int driver_run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL, *exact;
    size_t size = 0, cap = 0, n;
    uint8_t chunk[65536];

    if (f == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (size + n > cap) {
            uint8_t *grown;

            cap = (size + n) * 2;
            grown = realloc(data, cap);
            if (grown == NULL) {
                fprintf(stderr, "out of memory reading %s\n", path);
                free(data);
                fclose(f);
                return -1;
            }
            data = grown;
        }
        memcpy(data + size, chunk, n);
        size += n;
    }
    fclose(f);

    /* A heap copy of the exact size lets AddressSanitizer catch reads past
     * the end, as libFuzzer's own buffers do. */
    exact = malloc(size > 0 ? size : 1);
    if (exact == NULL) {
        fprintf(stderr, "out of memory reading %s\n", path);
        free(data);
        return -1;
    }
    if (size > 0)
        memcpy(exact, data, size);
    free(data);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    return 0;
}

static int driver_compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of a folder in name order; returns the count or -1. */
static int driver_run_folder(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t count = 0;
    int ran = 0;

    if (d == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        char **grown;

        if (e->d_name[0] == '.')
            continue;
        grown = realloc(names, (count + 1) * sizeof *names);
        if (grown == NULL)
            break;
        names = grown;
        names[count] = strdup(e->d_name);
        if (names[count] == NULL)
            break;
        count++;
    }
    closedir(d);
    qsort(names, count, sizeof *names, driver_compare_names);
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(len);
        struct stat st;

        snprintf(path, len, "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && driver_run_file(path) == 0)
            ran++;
        free(path);
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    int total = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int ran;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "cannot open %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        ran = S_ISDIR(st.st_mode) ? driver_run_folder(argv[i]) : driver_run_file(argv[i]) + 1;
        if (ran < 0)
            return 1;
        total += ran;
    }
    printf("ran %d inputs\n", total);
    /* An empty corpus would make the test pass without running anything. */
    return total > 0 ? 0 : 1;
}
