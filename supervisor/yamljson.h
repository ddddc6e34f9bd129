/*
 * Loading JSON or YAML files into jansson values, with errors that name
 * the file, line and column.
 *
 * YAML scalars are typed as the YAML 1.2 core schema types them: null
 * (~, null, empty), true/false, decimal/0o/0x integers, floats; quoted and
 * block scalars stay strings, as does anything tagged !!str.  Aliases are
 * expanded (with a cap on the total size); duplicate keys, non-scalar keys,
 * merge keys (<<), several documents, integers beyond 64 bits and
 * non-finite floats are rejected.
 */
#ifndef DROVER_YAMLJSON_H
#define DROVER_YAMLJSON_H

#include <stddef.h>
#include <jansson.h>

/* Largest file or text accepted. */
#define YAMLJSON_MAX_BYTES ((size_t)64 * 1024 * 1024)

/* Parses text as JSON when it looks like JSON ('{' or '[' first) and
 * parses as such, otherwise as YAML.  name labels error messages
 * ("name:LINE:COL: problem").  Returns a new reference or NULL with err. */
json_t *yamljson_loads(const char *text, size_t len, const char *name, char *err, size_t errlen);

/* Parses text as YAML only. */
json_t *yamljson_load_yaml(const char *text, size_t len, const char *name, char *err,
                           size_t errlen);

/* Reads and parses a file; a name ending in .json is parsed as JSON only. */
json_t *yamljson_load_file(const char *path, char *err, size_t errlen);

#endif /* DROVER_YAMLJSON_H */
