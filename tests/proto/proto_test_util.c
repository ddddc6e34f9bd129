/*
 * Helpers shared by the protocol tests.  The field tables here are written
 * from proto/PROTOCOL.md independently of the codec's own tables, so that a
 * field the codec puts in the wrong place or order shows up as a mismatch.
 */
#include "proto_test_util.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ptu_kind { PTU_UUID, PTU_STR, PTU_U32, PTU_U64, PTU_INT, PTU_I64, PTU_BOOL, PTU_INVENTORY };

struct ptu_field {
    const char   *name;
    enum ptu_kind kind;
    size_t        offset;
};

#define F(st, member, kind) { #member, kind, offsetof(struct st, member) }

static const struct ptu_field ptu_entry[] = {
    F(drover_run_entry, flow_run_id, PTU_UUID), F(drover_run_entry, identifier, PTU_STR),
    F(drover_run_entry, exited, PTU_BOOL), F(drover_run_entry, code, PTU_I64), { NULL, 0, 0 },
};

/* Indexed by message type; each list ends with a NULL name. */
static const struct ptu_field ptu_fields[13][8] = {
    [DROVER_MSG_HELLO] = {
        F(drover_hello, executor_id, PTU_STR), F(drover_hello, type, PTU_STR),
        F(drover_hello, capacity, PTU_U32), F(drover_hello, schema, PTU_STR),
        F(drover_hello, software, PTU_STR), F(drover_hello, hostname, PTU_STR),
        F(drover_hello, inventory, PTU_INVENTORY), { NULL, 0, 0 } },
    [DROVER_MSG_WELCOME] = {
        F(drover_welcome, supervisor_id, PTU_STR), F(drover_welcome, ping_interval_ms, PTU_U32),
        F(drover_welcome, liveness_ms, PTU_U32), { NULL, 0, 0 } },
    [DROVER_MSG_REJECT] = { F(drover_reason, reason, PTU_STR), { NULL, 0, 0 } },
    [DROVER_MSG_JOB] = {
        F(drover_job, flow_run_id, PTU_UUID), F(drover_job, config, PTU_STR), { NULL, 0, 0 } },
    [DROVER_MSG_STARTED] = {
        F(drover_started, flow_run_id, PTU_UUID), F(drover_started, identifier, PTU_STR),
        { NULL, 0, 0 } },
    [DROVER_MSG_LOG] = {
        F(drover_log, flow_run_id, PTU_UUID), F(drover_log, stream, PTU_INT),
        F(drover_log, line, PTU_STR), { NULL, 0, 0 } },
    [DROVER_MSG_EXITED] = {
        F(drover_exited, flow_run_id, PTU_UUID), F(drover_exited, code, PTU_I64),
        F(drover_exited, error, PTU_STR), { NULL, 0, 0 } },
    [DROVER_MSG_ACK] = {
        F(drover_ack, flow_run_id, PTU_UUID), F(drover_ack, acked_type, PTU_INT), { NULL, 0, 0 } },
    [DROVER_MSG_KILL] = {
        F(drover_kill, flow_run_id, PTU_UUID), F(drover_kill, grace_seconds, PTU_U32),
        { NULL, 0, 0 } },
    [DROVER_MSG_PING] = {
        F(drover_ping, seq, PTU_U64), F(drover_ping, running, PTU_U32), { NULL, 0, 0 } },
    [DROVER_MSG_PONG] = {
        F(drover_ping, seq, PTU_U64), F(drover_ping, running, PTU_U32), { NULL, 0, 0 } },
    [DROVER_MSG_GOODBYE] = { F(drover_reason, reason, PTU_STR), { NULL, 0, 0 } },
};

unsigned char *ptu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long size;

    if (f == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cannot size %s: %s\n", path, strerror(errno));
        goto done;
    }
    buf = malloc((size_t)size + 1);
    if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "cannot read %s\n", path);
        free(buf);
        buf = NULL;
        goto done;
    }
    buf[size] = '\0';
    *len = (size_t)size;
done:
    fclose(f);
    return buf;
}

int ptu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int rc = 0;

    if (f == NULL) {
        fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fwrite(data, 1, len, f) != len)
        rc = -1;
    if (fclose(f) != 0)
        rc = -1;
    if (rc < 0)
        fprintf(stderr, "cannot write %s\n", path);
    return rc;
}

static int ptu_compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ptu_list_vectors(const char *dir, char ***names)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **list = NULL;
    int count = 0;

    if (d == NULL) {
        fprintf(stderr, "cannot open vector folder %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        char **grown;

        if (n <= 5 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        grown = realloc(list, (size_t)(count + 1) * sizeof *list);
        if (grown == NULL)
            break;
        list = grown;
        list[count] = strndup(e->d_name, n - 5);
        if (list[count] == NULL)
            break;
        count++;
    }
    closedir(d);
    qsort(list, (size_t)count, sizeof *list, ptu_compare_names);
    *names = list;
    return count;
}

void ptu_free_names(char **names, int count)
{
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

int ptu_type_from_name(const char *name)
{
    for (int t = DROVER_MSG_HELLO; t <= DROVER_MSG_GOODBYE; t++) {
        if (strcmp(drover_msg_type_name(t), name) == 0)
            return t;
    }
    return -1;
}

/* Stores one JSON value into a struct slot. */
static int ptu_field_from_json(const struct ptu_field *f, const json_t *v, void *base,
                               char *err, size_t errlen);

static int ptu_fields_from_json(const struct ptu_field *fields, const json_t *obj, void *base,
                                char *err, size_t errlen)
{
    const char *key;
    json_t *value;
    size_t i = 0;

    if (!json_is_object(obj)) {
        snprintf(err, errlen, "fields: expected an object");
        return -1;
    }
    /* jansson keeps object members in document order, so this checks the
     * order of the fields as well as their names. */
    json_object_foreach((json_t *)obj, key, value) {
        if (fields[i].name == NULL || strcmp(fields[i].name, key) != 0) {
            snprintf(err, errlen, "field %zu: expected %s, got %s", i,
                     fields[i].name ? fields[i].name : "no more fields", key);
            return -1;
        }
        if (ptu_field_from_json(&fields[i], value, base, err, errlen) < 0)
            return -1;
        i++;
    }
    if (fields[i].name != NULL) {
        snprintf(err, errlen, "field %s: missing", fields[i].name);
        return -1;
    }
    return 0;
}

static int ptu_inventory_from_json(const json_t *v, struct drover_hello *hello,
                                   char *err, size_t errlen)
{
    size_t n = json_array_size(v);

    if (!json_is_array(v)) {
        snprintf(err, errlen, "inventory: expected an array");
        return -1;
    }
    if (n == 0)
        return 0;
    hello->inventory = calloc(n, sizeof *hello->inventory);
    if (hello->inventory == NULL)
        return -1;
    hello->inventory_len = n;
    for (size_t i = 0; i < n; i++) {
        if (ptu_fields_from_json(ptu_entry, json_array_get(v, i), &hello->inventory[i],
                                 err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int ptu_field_from_json(const struct ptu_field *f, const json_t *v, void *base,
                               char *err, size_t errlen)
{
    void *slot = (char *)base + f->offset;

    switch (f->kind) {
    case PTU_UUID:
    case PTU_STR:
        if (!json_is_string(v)) {
            snprintf(err, errlen, "%s: expected a string", f->name);
            return -1;
        }
        if (f->kind == PTU_UUID) {
            snprintf(slot, DROVER_UUID_LEN + 1, "%s", json_string_value(v));
            return 0;
        }
        *(char **)slot = strdup(json_string_value(v));
        return *(char **)slot ? 0 : -1;
    case PTU_BOOL:
        if (!json_is_boolean(v)) {
            snprintf(err, errlen, "%s: expected a boolean", f->name);
            return -1;
        }
        *(int *)slot = json_is_true(v);
        return 0;
    case PTU_INVENTORY:
        return ptu_inventory_from_json(v, base, err, errlen);
    default:
        break;
    }
    if (!json_is_integer(v)) {
        snprintf(err, errlen, "%s: expected an integer", f->name);
        return -1;
    }
    switch (f->kind) {
    case PTU_U32: *(uint32_t *)slot = (uint32_t)json_integer_value(v); break;
    case PTU_U64: *(uint64_t *)slot = (uint64_t)json_integer_value(v); break;
    case PTU_INT: *(int *)slot = (int)json_integer_value(v); break;
    default:      *(int64_t *)slot = (int64_t)json_integer_value(v); break;
    }
    return 0;
}

int ptu_msg_from_json(const json_t *doc, struct drover_msg *m, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(doc, "type"));
    int type = name ? ptu_type_from_name(name) : -1;

    memset(m, 0, sizeof *m);
    if (type < 0) {
        snprintf(err, errlen, "type: expected a message type name, got %s", name ? name : "none");
        return -1;
    }
    if (json_integer_value(json_object_get(doc, "version")) != DROVER_PROTOCOL_VERSION) {
        snprintf(err, errlen, "version: expected %d", DROVER_PROTOCOL_VERSION);
        return -1;
    }
    m->type = type;
    if (ptu_fields_from_json(ptu_fields[type], json_object_get(doc, "fields"), &m->u,
                             err, errlen) < 0) {
        drover_msg_clear(m);
        return -1;
    }
    return 0;
}

/* Formats a numeric slot for a mismatch message. */
static void ptu_num_text(enum ptu_kind kind, const void *slot, char *out, size_t outlen)
{
    switch (kind) {
    case PTU_U32: snprintf(out, outlen, "%" PRIu32, *(const uint32_t *)slot); break;
    case PTU_U64: snprintf(out, outlen, "%" PRIu64, *(const uint64_t *)slot); break;
    case PTU_I64: snprintf(out, outlen, "%" PRId64, *(const int64_t *)slot); break;
    default:      snprintf(out, outlen, "%d", *(const int *)slot); break;
    }
}

static int ptu_compare_fields(const struct ptu_field *fields, const void *a, const void *b,
                              const char *prefix, char *err, size_t errlen)
{
    for (size_t i = 0; fields[i].name != NULL; i++) {
        const struct ptu_field *f = &fields[i];
        const void *x = (const char *)a + f->offset;
        const void *y = (const char *)b + f->offset;
        const struct drover_hello *ha = a, *hb = b;
        char sub[64], num_a[32], num_b[32];

        switch (f->kind) {
        case PTU_UUID:
            if (strcmp(x, y) != 0)
                goto differ_str;
            break;
        case PTU_STR:
            x = *(char *const *)x;
            y = *(char *const *)y;
            if (x == NULL || y == NULL || strcmp(x, y) != 0)
                goto differ_str;
            break;
        case PTU_U32:
            if (*(const uint32_t *)x != *(const uint32_t *)y)
                goto differ_num;
            break;
        case PTU_U64:
            if (*(const uint64_t *)x != *(const uint64_t *)y)
                goto differ_num;
            break;
        case PTU_INT:
        case PTU_BOOL:
            if (*(const int *)x != *(const int *)y)
                goto differ_num;
            break;
        case PTU_I64:
            if (*(const int64_t *)x != *(const int64_t *)y)
                goto differ_num;
            break;
        case PTU_INVENTORY:
            if (ha->inventory_len != hb->inventory_len) {
                snprintf(err, errlen, "inventory: expected %zu entries, got %zu",
                         ha->inventory_len, hb->inventory_len);
                return -1;
            }
            for (size_t k = 0; k < ha->inventory_len; k++) {
                snprintf(sub, sizeof sub, "inventory[%zu].", k);
                if (ptu_compare_fields(ptu_entry, &ha->inventory[k], &hb->inventory[k], sub,
                                       err, errlen) < 0)
                    return -1;
            }
            break;
        }
        continue;
differ_str:
        snprintf(err, errlen, "%s%s: expected \"%.60s\", got \"%.60s\"", prefix, f->name,
                 x ? (const char *)x : "(null)", y ? (const char *)y : "(null)");
        return -1;
differ_num:
        ptu_num_text(f->kind, x, num_a, sizeof num_a);
        ptu_num_text(f->kind, y, num_b, sizeof num_b);
        snprintf(err, errlen, "%s%s: expected %s, got %s", prefix, f->name, num_a, num_b);
        return -1;
    }
    return 0;
}

int ptu_msg_compare(const struct drover_msg *expected, const struct drover_msg *actual,
                    char *err, size_t errlen)
{
    if (expected->type != actual->type) {
        snprintf(err, errlen, "type: expected %s, got %s", drover_msg_type_name(expected->type),
                 drover_msg_type_name(actual->type));
        return -1;
    }
    return ptu_compare_fields(ptu_fields[expected->type], &expected->u, &actual->u, "",
                              err, errlen);
}
