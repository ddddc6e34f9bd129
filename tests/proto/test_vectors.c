/*
 * Checks the codec against the shared test vectors in proto/vectors: each
 * NAME.msgpack must decode to the fields of NAME.json, and the fields of
 * NAME.json must encode to exactly the bytes of NAME.msgpack.
 *
 *   proto_vectors DIR          check every vector in DIR
 *   proto_vectors --write DIR  rewrite each NAME.msgpack from NAME.json
 *
 * The JSON files are the hand-edited reference; --write is how a new vector
 * gets its bytes, which then must be reviewed and committed with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_test_util.h"

static int failures;

static void fail(const char *vector, const char *what)
{
    fprintf(stderr, "FAIL %s: %s\n", vector, what);
    failures++;
}

static char *vector_path(const char *dir, const char *name, const char *ext)
{
    size_t n = strlen(dir) + strlen(name) + strlen(ext) + 2;
    char *path = malloc(n);

    if (path != NULL)
        snprintf(path, n, "%s/%s%s", dir, name, ext);
    return path;
}

static json_t *load_vector_json(const char *dir, const char *name, struct drover_msg *m)
{
    char *path = vector_path(dir, name, ".json");
    json_error_t jerr;
    json_t *doc = path ? json_load_file(path, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    char err[512];

    if (doc == NULL) {
        snprintf(err, sizeof err, "cannot parse the JSON form: %s", path ? jerr.text : "no memory");
        fail(name, err);
    } else if (ptu_msg_from_json(doc, m, err, sizeof err) < 0) {
        fail(name, err);
        json_decref(doc);
        doc = NULL;
    }
    free(path);
    return doc;
}

/* Decodes the bytes and compares them with the JSON form, then encodes the
 * JSON form and compares with the bytes.  Returns the message type or -1. */
static int check_vector(const char *dir, const char *name)
{
    struct drover_msg expected, decoded;
    char *path = vector_path(dir, name, ".msgpack");
    unsigned char *bytes = NULL;
    char *encoded = NULL;
    size_t len = 0, enclen = 0;
    char err[512], what[700];
    json_t *doc;
    int version = 0;
    int type = -1;
    int rc;

    memset(&decoded, 0, sizeof decoded);
    doc = load_vector_json(dir, name, &expected);
    if (doc == NULL)
        goto done;
    bytes = path ? ptu_read_file(path, &len) : NULL;
    if (bytes == NULL) {
        fail(name, "cannot read the .msgpack file");
        goto done;
    }

    rc = drover_msg_decode(bytes, len, &decoded, &version, err, sizeof err);
    if (rc != DROVER_DECODE_OK) {
        snprintf(what, sizeof what, "decode returned %s: %s", drover_decode_result_name(rc), err);
        fail(name, what);
    } else if (ptu_msg_compare(&expected, &decoded, err, sizeof err) < 0) {
        snprintf(what, sizeof what, "decoded field %s", err);
        fail(name, what);
    }

    if (drover_msg_encode(&expected, &encoded, &enclen, err, sizeof err) < 0) {
        snprintf(what, sizeof what, "encode failed: %s", err);
        fail(name, what);
    } else if (enclen != len || memcmp(encoded, bytes, len) != 0) {
        snprintf(what, sizeof what, "encoding of the JSON form differs from the .msgpack bytes "
                 "(%zu bytes, expected %zu)", enclen, len);
        fail(name, what);
    }
    type = expected.type;
done:
    drover_msg_clear(&expected);
    drover_msg_clear(&decoded);
    json_decref(doc);
    free(encoded);
    free(bytes);
    free(path);
    return type;
}

static int write_vector(const char *dir, const char *name)
{
    struct drover_msg m;
    char *path = vector_path(dir, name, ".msgpack");
    char *encoded = NULL;
    size_t enclen = 0;
    char err[512];
    json_t *doc = load_vector_json(dir, name, &m);
    int rc = -1;

    if (doc == NULL || path == NULL)
        goto done;
    if (drover_msg_encode(&m, &encoded, &enclen, err, sizeof err) < 0) {
        fail(name, err);
        goto done;
    }
    rc = ptu_write_file(path, encoded, enclen);
    if (rc == 0)
        printf("wrote %s (%zu bytes)\n", path, enclen);
done:
    if (doc != NULL)
        drover_msg_clear(&m);
    json_decref(doc);
    free(encoded);
    free(path);
    return rc;
}

int main(int argc, char **argv)
{
    int writing = argc == 3 && strcmp(argv[1], "--write") == 0;
    const char *dir = argv[argc - 1];
    int seen[DROVER_MSG_GOODBYE + 1] = { 0 };
    char **names = NULL;
    int count;

    if (argc != 2 && !writing) {
        fprintf(stderr, "usage: %s [--write] VECTOR_DIR\n", argv[0]);
        return 2;
    }
    count = ptu_list_vectors(dir, &names);
    if (count <= 0) {
        fprintf(stderr, "FAIL: no vectors found in %s\n", dir);
        return 1;
    }
    for (int i = 0; i < count; i++) {
        if (writing) {
            write_vector(dir, names[i]);
            continue;
        }
        int type = check_vector(dir, names[i]);

        if (type > 0)
            seen[type]++;
        printf("%s %s\n", type > 0 ? "checked" : "failed", names[i]);
    }
    for (int t = DROVER_MSG_HELLO; t <= DROVER_MSG_GOODBYE && !writing; t++) {
        if (seen[t] == 0) {
            fprintf(stderr, "FAIL: no vector of type %s\n", drover_msg_type_name(t));
            failures++;
        }
    }
    ptu_free_names(names, count);
    printf("%d vectors, %d failures\n", count, failures);
    return failures == 0 ? 0 : 1;
}
