/*
 * Helpers shared by the protocol tests: reading files, listing the test
 * vectors and turning their JSON form into a struct drover_msg.
 */
#ifndef PROTO_TEST_UTIL_H
#define PROTO_TEST_UTIL_H

#include <stddef.h>
#include <jansson.h>

#include "drover/protocol.h"

/* Reads a whole file into a malloc'd buffer.  Returns NULL and prints the
 * reason on failure. */
unsigned char *ptu_read_file(const char *path, size_t *len);

/* Writes len bytes to path.  Returns 0, or -1 after printing the reason. */
int ptu_write_file(const char *path, const void *data, size_t len);

/* Lists the vector names (file names without ".json") in dir, sorted.
 * Returns the count and a malloc'd array of malloc'd names, or -1. */
int ptu_list_vectors(const char *dir, char ***names);
void ptu_free_names(char **names, int count);

/* Fills *m from a vector's JSON form {"type", "version", "fields"}.  The
 * fields must be exactly those of the type, in wire order.  Returns 0, or
 * -1 with the reason in err. */
int ptu_msg_from_json(const json_t *doc, struct drover_msg *m, char *err, size_t errlen);

/* Compares two messages field by field.  Returns 0 when equal, or -1 with
 * the first differing field and both values in err. */
int ptu_msg_compare(const struct drover_msg *expected, const struct drover_msg *actual,
                    char *err, size_t errlen);

/* Returns the message type number of an upper-case name, or -1. */
int ptu_type_from_name(const char *name);

#endif
