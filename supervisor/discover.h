/*
 * Executor discovery: finds the programs named drover-executor-<type> that
 * the supervisor can start, and what each declares with --describe.
 *
 * Programs are looked for, in this order, in the directory of the running
 * program (so that a build tree uses the executors it built beside drover),
 * in DROVER_LIBEXECDIR of the installation, and in each directory of PATH.
 * The first program found for a type wins; later ones of the same type are
 * ignored.  A library-like module: functions fill the caller's err buffer
 * and never log.
 */
#ifndef DROVER_DISCOVER_H
#define DROVER_DISCOVER_H

#include <stddef.h>
#include <jansson.h>

/* Seconds a program has to complete --describe before it is killed. */
#define DISCOVER_DESCRIBE_TIMEOUT_S 5

/* One executor program.  All strings are malloc'd and owned by the entry. */
struct discover_entry {
    char *type;               /* the <type> of drover-executor-<type> */
    char *path;               /* absolute path of the program */
    char *description;        /* "" when the program declares none */
    char *documentation_url;  /* "" when the program declares none */
    char *error;              /* NULL, or why --describe failed (then the
                                 description and URL are "") */
};

/* Lists every executor program found, sorted by type, each run once with
 * --describe.  A program whose --describe fails is listed with its error.
 * Returns 0 with a malloc'd array in *out (free with discover_free) and its
 * length in *n, or -1 with a reason in err. */
int discover_list(struct discover_entry **out, size_t *n, char *err, size_t errlen);

/* Returns the malloc'd path of the program for type, or NULL when there is
 * none or type is not a valid executor type ([a-z0-9_-], 1 to 64 bytes).
 * Does not run the program. */
char *discover_find(const char *type);

/* Runs the program at path with --describe and returns its declared schema
 * (a new reference), or NULL with a reason in err. */
json_t *discover_schema(const char *path, char *err, size_t errlen);

/* Frees an array returned by discover_list and sets *entries to NULL.
 * Accepts NULL. */
void discover_free(struct discover_entry **entries, size_t n);

#endif /* DROVER_DISCOVER_H */
