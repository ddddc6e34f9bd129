/*
 * Encoder and decoder of the drover wire protocol, version 1.
 *
 * proto/PROTOCOL.md is the specification.  Each message type is described
 * once, by a table of its fields: name, kind, limits and offset in the C
 * struct.  The decoder, the encoder and drover_msg_clear() all walk that
 * table, so the checks of both directions cannot drift apart.
 *
 * Decoding runs in three steps: a bounds-checking walk over the raw msgpack
 * bytes (codec_scan), which rejects truncated and oversized structures before
 * msgpack-c allocates anything for them; msgpack_unpack_next(); and the field
 * checks.  msgpack-c sizes its allocation by the element count an array header
 * claims, so without the first step a five-byte frame could request gigabytes.
 */
#include "drover/protocol.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>
#include <msgpack/unpack_define.h>

#include "jsonscan.h"

/* msgpack-c's unpacker stops at 32 levels of nesting (MSGPACK_EMBED_STACK_SIZE
 * in msgpack-c 4.0), so the protocol fixes the same limit for every binding. */
#if DROVER_MAX_NESTING > MSGPACK_EMBED_STACK_SIZE
#error "DROVER_MAX_NESTING exceeds what msgpack-c's unpacker accepts"
#endif

/* Representation of a field on the wire and in its C struct. */
enum codec_kind {
    CODEC_UUID,        /* str, stored in char[DROVER_UUID_LEN + 1] */
    CODEC_TEXT,        /* str, stored as a malloc'd char * */
    CODEC_JSON,        /* str holding a JSON object, stored as char * */
    CODEC_UINT32,      /* uint, stored in uint32_t */
    CODEC_UINT64,      /* uint, stored in uint64_t */
    CODEC_SMALL_UINT,  /* uint, stored in int */
    CODEC_INT64,       /* int, stored in int64_t */
    CODEC_BOOL,        /* bool, stored in int as 0 or 1 */
    CODEC_INVENTORY    /* array of run entries, stored in struct drover_hello */
};

/* Characters a text field may contain beyond valid UTF-8. */
enum codec_charset { CHARSET_ANY, CHARSET_EXECUTOR_ID, CHARSET_TYPE };

struct codec_field {
    const char        *name;
    enum codec_kind    kind;
    uint64_t           min;      /* byte length for strings, value for integers */
    uint64_t           max;
    size_t             offset;   /* within the message's struct */
    enum codec_charset charset;
    const char        *choice;   /* when set, only min or max is valid, described so */
};

struct codec_type {
    const char               *name;
    const struct codec_field *fields;
    size_t                    nfields;
};

#define FIELD(st, member, kind, min, max) \
    { #member, kind, min, max, offsetof(struct st, member), CHARSET_ANY, NULL }
#define FIELD_CHARSET(st, member, min, max, charset) \
    { #member, CODEC_TEXT, min, max, offsetof(struct st, member), charset, NULL }
#define FIELD_CHOICE(st, member, kind, min, max, text) \
    { #member, kind, min, max, offsetof(struct st, member), CHARSET_ANY, text }
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct codec_field codec_run_entry_fields[] = {
    FIELD(drover_run_entry, flow_run_id, CODEC_UUID, DROVER_UUID_LEN, DROVER_UUID_LEN),
    FIELD(drover_run_entry, identifier, CODEC_TEXT, 0, DROVER_MAX_IDENTIFIER),
    FIELD(drover_run_entry, exited, CODEC_BOOL, 0, 1),
    FIELD(drover_run_entry, code, CODEC_INT64, 0, 0),
};

static const struct codec_field codec_hello_fields[] = {
    FIELD_CHARSET(drover_hello, executor_id, 1, DROVER_MAX_NAME, CHARSET_EXECUTOR_ID),
    FIELD_CHARSET(drover_hello, type, 1, DROVER_MAX_TYPE, CHARSET_TYPE),
    FIELD(drover_hello, capacity, CODEC_UINT32, 1, DROVER_MAX_CAPACITY),
    FIELD(drover_hello, schema, CODEC_JSON, 2, DROVER_MAX_SCHEMA),
    FIELD(drover_hello, software, CODEC_TEXT, 0, DROVER_MAX_NAME),
    FIELD(drover_hello, hostname, CODEC_TEXT, 0, DROVER_MAX_NAME),
    FIELD(drover_hello, inventory, CODEC_INVENTORY, 0, DROVER_MAX_INVENTORY),
};

/* codec_check_welcome also requires liveness_ms >= ping_interval_ms. */
static const struct codec_field codec_welcome_fields[] = {
    FIELD(drover_welcome, supervisor_id, CODEC_TEXT, 1, DROVER_MAX_NAME),
    FIELD(drover_welcome, ping_interval_ms, CODEC_UINT32, DROVER_MIN_PING_INTERVAL_MS, DROVER_MAX_PING_INTERVAL_MS),
    FIELD(drover_welcome, liveness_ms, CODEC_UINT32, DROVER_MIN_PING_INTERVAL_MS, DROVER_MAX_LIVENESS_MS),
};

static const struct codec_field codec_reject_fields[] = {
    FIELD(drover_reason, reason, CODEC_TEXT, 1, DROVER_MAX_REASON),
};

static const struct codec_field codec_job_fields[] = {
    FIELD(drover_job, flow_run_id, CODEC_UUID, DROVER_UUID_LEN, DROVER_UUID_LEN),
    FIELD(drover_job, config, CODEC_JSON, 2, DROVER_MAX_CONFIG),
};

static const struct codec_field codec_started_fields[] = {
    FIELD(drover_started, flow_run_id, CODEC_UUID, DROVER_UUID_LEN, DROVER_UUID_LEN),
    FIELD(drover_started, identifier, CODEC_TEXT, 1, DROVER_MAX_IDENTIFIER),
};

static const struct codec_field codec_log_fields[] = {
    FIELD(drover_log, flow_run_id, CODEC_UUID, DROVER_UUID_LEN, DROVER_UUID_LEN),
    FIELD_CHOICE(drover_log, stream, CODEC_SMALL_UINT, DROVER_STREAM_STDOUT, DROVER_STREAM_STDERR,
                 "1 (stdout) or 2 (stderr)"),
    FIELD(drover_log, line, CODEC_TEXT, 0, DROVER_MAX_LOG_LINE),
};

static const struct codec_field codec_exited_fields[] = {
    FIELD(drover_exited, flow_run_id, CODEC_UUID, DROVER_UUID_LEN, DROVER_UUID_LEN),
    FIELD(drover_exited, code, CODEC_INT64, 0, 0),
    FIELD(drover_exited, error, CODEC_TEXT, 0, DROVER_MAX_REASON),
};

static const struct codec_field codec_ack_fields[] = {
    FIELD(drover_ack, flow_run_id, CODEC_UUID, DROVER_UUID_LEN, DROVER_UUID_LEN),
    FIELD_CHOICE(drover_ack, acked_type, CODEC_SMALL_UINT, DROVER_MSG_STARTED, DROVER_MSG_EXITED,
                 "5 (STARTED) or 7 (EXITED)"),
};

static const struct codec_field codec_kill_fields[] = {
    FIELD(drover_kill, flow_run_id, CODEC_UUID, DROVER_UUID_LEN, DROVER_UUID_LEN),
    FIELD(drover_kill, grace_seconds, CODEC_UINT32, 0, DROVER_MAX_GRACE),
};

static const struct codec_field codec_ping_fields[] = {
    FIELD(drover_ping, seq, CODEC_UINT64, 0, UINT64_MAX),
    FIELD(drover_ping, running, CODEC_UINT32, 0, UINT32_MAX),
};

static const struct codec_field codec_goodbye_fields[] = {
    FIELD(drover_reason, reason, CODEC_TEXT, 0, DROVER_MAX_REASON),
};

/* Indexed by enum drover_msg_type. */
static const struct codec_type codec_types[] = {
    [DROVER_MSG_HELLO]   = { "HELLO", codec_hello_fields, COUNT(codec_hello_fields) },
    [DROVER_MSG_WELCOME] = { "WELCOME", codec_welcome_fields, COUNT(codec_welcome_fields) },
    [DROVER_MSG_REJECT]  = { "REJECT", codec_reject_fields, COUNT(codec_reject_fields) },
    [DROVER_MSG_JOB]     = { "JOB", codec_job_fields, COUNT(codec_job_fields) },
    [DROVER_MSG_STARTED] = { "STARTED", codec_started_fields, COUNT(codec_started_fields) },
    [DROVER_MSG_LOG]     = { "LOG", codec_log_fields, COUNT(codec_log_fields) },
    [DROVER_MSG_EXITED]  = { "EXITED", codec_exited_fields, COUNT(codec_exited_fields) },
    [DROVER_MSG_ACK]     = { "ACK", codec_ack_fields, COUNT(codec_ack_fields) },
    [DROVER_MSG_KILL]    = { "KILL", codec_kill_fields, COUNT(codec_kill_fields) },
    [DROVER_MSG_PING]    = { "PING", codec_ping_fields, COUNT(codec_ping_fields) },
    [DROVER_MSG_PONG]    = { "PONG", codec_ping_fields, COUNT(codec_ping_fields) },
    [DROVER_MSG_GOODBYE] = { "GOODBYE", codec_goodbye_fields, COUNT(codec_goodbye_fields) },
};

static const struct codec_type *codec_type_of(int type)
{
    if (type < DROVER_MSG_HELLO || type > DROVER_MSG_GOODBYE)
        return NULL;
    return &codec_types[type];
}

const char *drover_msg_type_name(int type)
{
    const struct codec_type *t = codec_type_of(type);

    return t ? t->name : "UNKNOWN";
}

const char *drover_decode_result_name(int result)
{
    switch (result) {
    case DROVER_DECODE_OK:        return "ok";
    case DROVER_DECODE_MALFORMED: return "malformed";
    case DROVER_DECODE_VERSION:   return "version";
    case DROVER_DECODE_UNKNOWN:   return "unknown";
    case DROVER_DECODE_TOO_LARGE: return "too large";
    default:                      return "invalid result";
    }
}

/* ------------------------------------------------------------------------ */
/* Error text */

static void codec_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void codec_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Writes "TYPE field NAME" (or "TYPE field inventory[3].NAME") into where,
 * cut to wherelen - 1 bytes.  It runs for every field of every message, so
 * it copies instead of calling snprintf. */
static void codec_where(char *where, size_t wherelen, const char *msgname,
                        const char *prefix, const struct codec_field *f)
{
    const char *parts[4] = {msgname, " field ", prefix, f->name};
    size_t used = 0;

    for (size_t k = 0; k < 4 && used + 1 < wherelen; k++) {
        size_t len = strlen(parts[k]);

        if (len > wherelen - 1 - used)
            len = wherelen - 1 - used;
        memcpy(where + used, parts[k], len);
        used += len;
    }
    if (wherelen > 0)
        where[used] = '\0';
}

/* Quotes at most 40 bytes of peer text for an error message, escaping every
 * byte outside printable ASCII so a reason stays one safe line. */
static void codec_quote(char *out, size_t outlen, const char *s, size_t n)
{
    size_t used = 0;
    size_t i;

    if (outlen < 8) {
        if (outlen > 0)
            out[0] = '\0';
        return;
    }
    out[used++] = '"';
    for (i = 0; i < n && i < 40 && used + 6 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[used++] = (char)c;
        else
            used += (size_t)snprintf(out + used, outlen - used, "\\x%02x", c);
    }
    out[used++] = '"';
    if (i < n && used + 4 < outlen) {
        memcpy(out + used, "...", 3);
        used += 3;
    }
    out[used] = '\0';
}

/* Describes a msgpack value for the "got ..." part of an error message. */
static void codec_describe(char *out, size_t outlen, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        snprintf(out, outlen, "nil");
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        snprintf(out, outlen, "%s", o->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(out, outlen, "%" PRIu64, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(out, outlen, "%" PRId64, o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        snprintf(out, outlen, "a float");
        break;
    case MSGPACK_OBJECT_STR:
        snprintf(out, outlen, "a string of %" PRIu32 " bytes", o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        snprintf(out, outlen, "bin data of %" PRIu32 " bytes", o->via.bin.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        snprintf(out, outlen, "an array of %" PRIu32 " elements", o->via.array.size);
        break;
    case MSGPACK_OBJECT_MAP:
        snprintf(out, outlen, "a map of %" PRIu32 " entries", o->via.map.size);
        break;
    default:
        snprintf(out, outlen, "an ext value");
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Checks shared by the encoder and the decoder.  Each takes the field's
 * position text ("HELLO field type") and writes "<where>: <problem>". */

/* Returns the offset of the first byte that breaks strict UTF-8 (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or n. */
static size_t codec_utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        uint32_t cp;
        uint32_t min;

        /* ASCII eight bytes at a time: no byte has its high bit set. */
        if (n - i >= 8) {
            uint64_t word;

            memcpy(&word, s + i, sizeof word);
            if ((word & 0x8080808080808080u) == 0) {
                i += 8;
                continue;
            }
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1; cp = c & 0x1fu; min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2; cp = c & 0x0fu; min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3; cp = c & 0x07u; min = 0x10000;
        } else {
            return i;
        }
        if (n - i <= need)
            return i;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += need + 1;
    }
    return n;
}

static int codec_charset_allows(enum codec_charset charset, unsigned char c)
{
    if (charset == CHARSET_ANY)
        return 1;
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')
        return 1;
    if (charset == CHARSET_EXECUTOR_ID)
        return (c >= 'A' && c <= 'Z') || c == '.' || c == ':';
    return 0;
}

static const char *codec_charset_text(enum codec_charset charset)
{
    return charset == CHARSET_EXECUTOR_ID ? "[A-Za-z0-9._:-]" : "[a-z0-9_-]";
}

static int codec_check_text(const char *where, const struct codec_field *f,
                            const char *s, size_t n, char *err, size_t errlen)
{
    char quoted[200];
    const char *nul;
    size_t bad;

    if (n < f->min || n > f->max) {
        if (f->min == f->max)
            codec_error(err, errlen, "%s: expected a string of %" PRIu64 " bytes, got %zu bytes",
                        where, f->max, n);
        else
            codec_error(err, errlen, "%s: expected a string of %" PRIu64 "..%" PRIu64
                        " bytes, got %zu bytes", where, f->min, f->max, n);
        return -1;
    }
    bad = codec_utf8_invalid_at((const unsigned char *)s, n);
    if (bad < n) {
        codec_error(err, errlen, "%s: invalid UTF-8 at byte %zu", where, bad);
        return -1;
    }
    /* msgpack-c leaves the pointer of an empty string NULL. */
    nul = n > 0 ? memchr(s, '\0', n) : NULL;
    if (nul != NULL) {
        codec_error(err, errlen, "%s: contains U+0000 at byte %zu", where, (size_t)(nul - s));
        return -1;
    }
    for (size_t i = 0; f->charset != CHARSET_ANY && i < n; i++) {
        if (!codec_charset_allows(f->charset, (unsigned char)s[i])) {
            codec_quote(quoted, sizeof quoted, s, n);
            codec_error(err, errlen, "%s: expected only characters of %s, got %s",
                        where, codec_charset_text(f->charset), quoted);
            return -1;
        }
    }
    return 0;
}

static int codec_is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int codec_uuid_valid(const char *s, size_t n)
{
    if (n != DROVER_UUID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int hyphen = (i == 8 || i == 13 || i == 18 || i == 23);

        if (hyphen ? s[i] != '-' : !codec_is_hex((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

int drover_uuid_valid(const char *s)
{
    return s != NULL && codec_uuid_valid(s, strnlen(s, DROVER_UUID_LEN + 1));
}

static int codec_check_uuid(const char *where, const char *s, size_t n,
                            char *err, size_t errlen)
{
    char quoted[200];

    if (codec_uuid_valid(s, n))
        return 0;
    codec_quote(quoted, sizeof quoted, s, n);
    codec_error(err, errlen, "%s: expected a canonical lowercase UUID "
                "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got %s", where, quoted);
    return -1;
}

/* The full parse that decides on duplicate member names when the scanner
 * cannot, because the open objects held more names than it tracks.
 * Integers are read as doubles so that only magnitudes beyond the double
 * range fail, as section 3.4 of PROTOCOL.md states; \u0000 is valid JSON. */
static int codec_parse_json(const char *where, const char *s, size_t n, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int rc = -1;

    root = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL,
                      &jerr);
    if (root == NULL) {
        codec_error(err, errlen, "%s: invalid JSON text: %s (line %d, column %d)",
                    where, jerr.text, jerr.line, jerr.column);
        goto done;
    }
    if (!json_is_object(root)) {
        codec_error(err, errlen, "%s: expected a JSON object, got a JSON array", where);
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* Checks a json field with the scanner of jsonscan.h, which accepts what
 * codec_parse_json accepts without building anything. */
static int codec_check_json(const char *where, const struct codec_field *f,
                            const char *s, size_t n, char *err, size_t errlen)
{
    struct jsonscan_error jerr;

    if (codec_check_text(where, f, s, n, err, errlen) < 0)
        return -1;
    switch (jsonscan(s, n, DROVER_MAX_JSON_DEPTH, &jerr)) {
    case JSONSCAN_OBJECT:
        return 0;
    case JSONSCAN_ARRAY:
        codec_error(err, errlen, "%s: expected a JSON object, got a JSON array", where);
        return -1;
    case JSONSCAN_TOO_DEEP:
        codec_error(err, errlen, "%s: JSON text nests more than %u levels deep", where,
                    DROVER_MAX_JSON_DEPTH);
        return -1;
    case JSONSCAN_TOO_MANY_KEYS:
        return codec_parse_json(where, s, n, err, errlen);
    case JSONSCAN_INVALID:
    default:
        codec_error(err, errlen, "%s: invalid JSON text: %s at byte %zu", where, jerr.reason, jerr.offset);
        return -1;
    }
}

static int codec_check_uint(const char *where, const struct codec_field *f, uint64_t v,
                            char *err, size_t errlen)
{
    if (f->choice != NULL ? (v == f->min || v == f->max) : (v >= f->min && v <= f->max))
        return 0;
    if (f->choice != NULL)
        codec_error(err, errlen, "%s: expected %s, got %" PRIu64, where, f->choice, v);
    else
        codec_error(err, errlen, "%s: expected an unsigned integer %" PRIu64 "..%" PRIu64
                    ", got %" PRIu64, where, f->min, f->max, v);
    return -1;
}

static int codec_check_welcome(const struct drover_welcome *w, char *err, size_t errlen)
{
    if (w->liveness_ms >= w->ping_interval_ms)
        return 0;
    codec_error(err, errlen, "WELCOME field liveness_ms: expected an unsigned integer %" PRIu32
                "..%u (at least ping_interval_ms), got %" PRIu32,
                w->ping_interval_ms, DROVER_MAX_LIVENESS_MS, w->liveness_ms);
    return -1;
}

static int codec_compare_ids(const void *a, const void *b)
{
    const struct drover_run_entry *const *x = a;
    const struct drover_run_entry *const *y = b;

    return strcmp((*x)->flow_run_id, (*y)->flow_run_id);
}

/* Rejects an inventory that lists a flow run id twice; sorts pointers so a
 * 4096-entry inventory costs n log n comparisons, not n squared. */
static int codec_check_unique(const struct drover_run_entry *entries, size_t n,
                              char *err, size_t errlen)
{
    const struct drover_run_entry **sorted;
    int rc = 0;

    if (n < 2)
        return 0;
    sorted = malloc(n * sizeof *sorted);
    if (sorted == NULL) {
        codec_error(err, errlen, "HELLO field inventory: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = &entries[i];
    qsort(sorted, n, sizeof *sorted, codec_compare_ids);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1]->flow_run_id, sorted[i]->flow_run_id) == 0) {
            codec_error(err, errlen, "HELLO field inventory: flow run id %s is listed twice",
                        sorted[i]->flow_run_id);
            rc = -1;
            break;
        }
    }
    free(sorted);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Structure check before msgpack-c unpacks the bytes */

static uint64_t codec_read_be(const unsigned char *p, size_t width)
{
    uint64_t v = 0;

    for (size_t i = 0; i < width; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Reads the header of the msgpack object at p[0..avail): how many header
 * bytes follow the type byte (*width), how many payload bytes follow those
 * (*payload), and how many child objects it contains (*children).  Returns
 * -1 for the reserved byte 0xc1 or a header cut short. */
static int codec_scan_header(const unsigned char *p, size_t avail, size_t *head,
                             uint64_t *payload, uint64_t *children)
{
    unsigned char b = p[0];
    size_t width = 0;
    int kind = 0; /* 0 scalar of fixed payload, 1 sized payload, 2 array, 3 map, 4 ext */

    *payload = 0;
    *children = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        *head = 1;
        return 0;
    }
    if (b >= 0x80 && b <= 0x8f) {
        *head = 1;
        *children = 2u * (b & 0x0fu);
        return 0;
    }
    if (b >= 0x90 && b <= 0x9f) {
        *head = 1;
        *children = b & 0x0fu;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        *head = 1;
        *payload = b & 0x1fu;
        return 0;
    }
    switch (b) {
    case 0xc4: case 0xd9: width = 1; kind = 1; break;           /* bin 8, str 8 */
    case 0xc5: case 0xda: width = 2; kind = 1; break;           /* bin 16, str 16 */
    case 0xc6: case 0xdb: width = 4; kind = 1; break;           /* bin 32, str 32 */
    case 0xc7: width = 1; kind = 4; break;                      /* ext 8 */
    case 0xc8: width = 2; kind = 4; break;                      /* ext 16 */
    case 0xc9: width = 4; kind = 4; break;                      /* ext 32 */
    case 0xca: *payload = 4; break;                             /* float 32 */
    case 0xcb: *payload = 8; break;                             /* float 64 */
    case 0xcc: case 0xd0: *payload = 1; break;                  /* uint 8, int 8 */
    case 0xcd: case 0xd1: *payload = 2; break;
    case 0xce: case 0xd2: *payload = 4; break;
    case 0xcf: case 0xd3: *payload = 8; break;
    case 0xd4: *payload = 2; break;                             /* fixext 1: type + 1 */
    case 0xd5: *payload = 3; break;
    case 0xd6: *payload = 5; break;
    case 0xd7: *payload = 9; break;
    case 0xd8: *payload = 17; break;
    case 0xdc: width = 2; kind = 2; break;                      /* array 16 */
    case 0xdd: width = 4; kind = 2; break;                      /* array 32 */
    case 0xde: width = 2; kind = 3; break;                      /* map 16 */
    case 0xdf: width = 4; kind = 3; break;                      /* map 32 */
    default: return -1;                                         /* 0xc1, never used */
    }
    if (avail < 1 + width)
        return -1;
    *head = 1 + width;
    if (kind == 1)
        *payload = codec_read_be(p + 1, width);
    else if (kind == 4)
        *payload = codec_read_be(p + 1, width) + 1;             /* the ext type byte */
    else if (kind == 2)
        *children = codec_read_be(p + 1, width);
    else if (kind == 3)
        *children = 2u * codec_read_be(p + 1, width);
    return 0;
}

/* Checks that data is exactly one msgpack object, complete, with every
 * length within the buffer, and nested at most DROVER_MAX_NESTING deep.
 * Every element needs at least one byte, so a container claiming more
 * elements than bytes remain is cut short by definition. */
static int codec_scan(const unsigned char *p, size_t len, char *err, size_t errlen)
{
    uint64_t left[DROVER_MAX_NESTING + 1];
    size_t depth = 0;
    size_t pos = 0;

    left[0] = 1;
    for (;;) {
        size_t head;
        uint64_t payload, children;

        if (pos >= len) {
            codec_error(err, errlen, "message: truncated frame of %zu bytes", len);
            return -1;
        }
        if (codec_scan_header(p + pos, len - pos, &head, &payload, &children) < 0) {
            if (p[pos] == 0xc1)
                codec_error(err, errlen, "message: byte 0xc1 at offset %zu is not msgpack", pos);
            else
                codec_error(err, errlen, "message: truncated frame of %zu bytes", len);
            return -1;
        }
        left[depth]--;
        if (payload > len - pos - head) {
            codec_error(err, errlen, "message: truncated frame of %zu bytes", len);
            return -1;
        }
        pos += head + (size_t)payload;

        if (children > 0) {
            if (children > len - pos) {
                codec_error(err, errlen, "message: truncated frame of %zu bytes", len);
                return -1;
            }
            if (depth == DROVER_MAX_NESTING) {
                codec_error(err, errlen, "message: arrays and maps nest deeper than %u levels",
                            DROVER_MAX_NESTING);
                return -1;
            }
            left[++depth] = children;
            continue;
        }
        while (depth > 0 && left[depth] == 0)
            depth--;
        if (depth == 0 && left[0] == 0)
            break;
    }
    if (pos != len) {
        codec_error(err, errlen, "message: %zu trailing bytes after the message array",
                    len - pos);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Decoding */

static int codec_decode_fields(const struct codec_field *fields, size_t nfields,
                               const msgpack_object *values, void *base,
                               const char *msgname, const char *prefix,
                               char *err, size_t errlen);

static void codec_clear_fields(const struct codec_field *fields, size_t nfields, void *base);

static int codec_decode_string(const char *where, const struct codec_field *f,
                               const msgpack_object *o, void *slot,
                               char *err, size_t errlen)
{
    const char *s = o->via.str.ptr;
    size_t n = o->via.str.size;
    char *copy;
    int rc;

    if (f->kind == CODEC_UUID)
        rc = codec_check_uuid(where, s, n, err, errlen);
    else if (f->kind == CODEC_JSON)
        rc = codec_check_json(where, f, s, n, err, errlen);
    else
        rc = codec_check_text(where, f, s, n, err, errlen);
    if (rc < 0)
        return -1;

    if (f->kind == CODEC_UUID) {
        memcpy(slot, s, DROVER_UUID_LEN);
        ((char *)slot)[DROVER_UUID_LEN] = '\0';
        return 0;
    }
    copy = malloc(n + 1);
    if (copy == NULL) {
        codec_error(err, errlen, "%s: out of memory", where);
        return -1;
    }
    if (n > 0)
        memcpy(copy, s, n);
    copy[n] = '\0';
    *(char **)slot = copy;
    return 0;
}

static int codec_decode_inventory(const char *where, const struct codec_field *f,
                                  const msgpack_object *o, struct drover_hello *hello,
                                  char *err, size_t errlen)
{
    const msgpack_object_array *items = &o->via.array;
    char prefix[64];
    char got[80];

    if (items->size > f->max) {
        codec_error(err, errlen, "%s: expected at most %" PRIu64 " entries, got %" PRIu32,
                    where, f->max, items->size);
        return -1;
    }
    if (items->size == 0)
        return 0;
    hello->inventory = calloc(items->size, sizeof *hello->inventory);
    if (hello->inventory == NULL) {
        codec_error(err, errlen, "%s: out of memory", where);
        return -1;
    }
    for (uint32_t i = 0; i < items->size; i++) {
        const msgpack_object *entry = &items->ptr[i];

        if (entry->type != MSGPACK_OBJECT_ARRAY || entry->via.array.size != 4) {
            codec_describe(got, sizeof got, entry);
            codec_error(err, errlen, "%s[%" PRIu32 "]: expected an array of 4 elements "
                        "[flow_run_id, identifier, exited, code], got %s", where, i, got);
            return -1;
        }
        snprintf(prefix, sizeof prefix, "inventory[%" PRIu32 "].", i);
        hello->inventory_len = i + 1;
        if (codec_decode_fields(codec_run_entry_fields, COUNT(codec_run_entry_fields),
                                entry->via.array.ptr, &hello->inventory[i], "HELLO", prefix,
                                err, errlen) < 0)
            return -1;
    }
    return codec_check_unique(hello->inventory, hello->inventory_len, err, errlen);
}

static int codec_decode_field(const struct codec_field *f, const msgpack_object *o,
                              void *base, const char *msgname, const char *prefix,
                              char *err, size_t errlen)
{
    void *slot = (char *)base + f->offset;
    char where[96];
    char got[80];
    const char *expected = NULL;

    codec_where(where, sizeof where, msgname, prefix, f);
    switch (f->kind) {
    case CODEC_UUID:
    case CODEC_TEXT:
    case CODEC_JSON:
        if (o->type == MSGPACK_OBJECT_STR)
            return codec_decode_string(where, f, o, slot, err, errlen);
        expected = "a string";
        break;
    case CODEC_UINT32:
    case CODEC_UINT64:
    case CODEC_SMALL_UINT:
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (codec_check_uint(where, f, o->via.u64, err, errlen) < 0)
                return -1;
            if (f->kind == CODEC_UINT32)
                *(uint32_t *)slot = (uint32_t)o->via.u64;
            else if (f->kind == CODEC_UINT64)
                *(uint64_t *)slot = o->via.u64;
            else
                *(int *)slot = (int)o->via.u64;
            return 0;
        }
        break;
    case CODEC_INT64:
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            *(int64_t *)slot = o->via.i64;
            return 0;
        }
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
            *(int64_t *)slot = (int64_t)o->via.u64;
            return 0;
        }
        expected = "an integer -9223372036854775808..9223372036854775807";
        break;
    case CODEC_BOOL:
        if (o->type == MSGPACK_OBJECT_BOOLEAN) {
            *(int *)slot = o->via.boolean ? 1 : 0;
            return 0;
        }
        expected = "a boolean";
        break;
    case CODEC_INVENTORY:
        if (o->type == MSGPACK_OBJECT_ARRAY)
            return codec_decode_inventory(where, f, o, base, err, errlen);
        expected = "an array";
        break;
    }

    codec_describe(got, sizeof got, o);
    if (expected != NULL)
        codec_error(err, errlen, "%s: expected %s, got %s", where, expected, got);
    else if (f->choice != NULL)
        codec_error(err, errlen, "%s: expected %s, got %s", where, f->choice, got);
    else
        codec_error(err, errlen, "%s: expected an unsigned integer %" PRIu64 "..%" PRIu64
                    ", got %s", where, f->min, f->max, got);
    return -1;
}

static int codec_decode_fields(const struct codec_field *fields, size_t nfields,
                               const msgpack_object *values, void *base,
                               const char *msgname, const char *prefix,
                               char *err, size_t errlen)
{
    for (size_t i = 0; i < nfields; i++) {
        if (codec_decode_field(&fields[i], &values[i], base, msgname, prefix, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Reads element 0 or 1 of the envelope, an unsigned integer. */
static int codec_envelope_uint(const msgpack_object *o, const char *name, uint64_t *v,
                               char *err, size_t errlen)
{
    char got[80];

    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *v = o->via.u64;
        return 0;
    }
    codec_describe(got, sizeof got, o);
    codec_error(err, errlen, "message %s: expected an unsigned integer, got %s", name, got);
    return -1;
}

static int codec_clamp_int(uint64_t v)
{
    return v > INT_MAX ? INT_MAX : (int)v;
}

/* Checks the envelope [version, type, ...] and the field count; on success
 * *type_out is a known type of this version. */
static int codec_decode_envelope(const msgpack_object *root, struct drover_msg *out,
                                 int *version_out, char *err, size_t errlen)
{
    const struct codec_type *t;
    uint64_t version, type;
    char got[80];

    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 2) {
        codec_describe(got, sizeof got, root);
        codec_error(err, errlen, "message: expected an array [version, type, fields...], got %s",
                    got);
        return DROVER_DECODE_MALFORMED;
    }
    if (codec_envelope_uint(&root->via.array.ptr[0], "version", &version, err, errlen) < 0 ||
        codec_envelope_uint(&root->via.array.ptr[1], "type", &type, err, errlen) < 0)
        return DROVER_DECODE_MALFORMED;

    if (version != DROVER_PROTOCOL_VERSION) {
        if (version_out != NULL)
            *version_out = codec_clamp_int(version);
        out->type = codec_clamp_int(type);
        codec_error(err, errlen, "message version: %" PRIu64 " is not the supported protocol "
                    "version %d (message type %" PRIu64 ")", version, DROVER_PROTOCOL_VERSION,
                    type);
        return DROVER_DECODE_VERSION;
    }
    if (version_out != NULL)
        *version_out = DROVER_PROTOCOL_VERSION;
    t = type <= INT_MAX ? codec_type_of((int)type) : NULL;
    if (t == NULL) {
        out->type = codec_clamp_int(type);
        codec_error(err, errlen, "message type: %" PRIu64 " is not a known message type", type);
        return DROVER_DECODE_UNKNOWN;
    }
    if (root->via.array.size - 2 != t->nfields) {
        codec_error(err, errlen, "%s: expected %zu fields, got %" PRIu32, t->name, t->nfields,
                    root->via.array.size - 2);
        return DROVER_DECODE_MALFORMED;
    }
    out->type = (int)type;
    return DROVER_DECODE_OK;
}

static int codec_check_decoded(const struct drover_msg *m, char *err, size_t errlen)
{
    if (m->type == DROVER_MSG_WELCOME)
        return codec_check_welcome(&m->u.welcome, err, errlen);
    return 0;
}

int drover_msg_decode(const void *data, size_t len, struct drover_msg *out,
                      int *version_out, char *err, size_t errlen)
{
    msgpack_unpacked unpacked;
    const struct codec_type *t;
    size_t offset = 0;
    int rc;

    memset(out, 0, sizeof *out);
    if (version_out != NULL)
        *version_out = 0;
    if (len > DROVER_MAX_FRAME) {
        codec_error(err, errlen, "message: frame of %zu bytes exceeds the limit of %u bytes",
                    len, DROVER_MAX_FRAME);
        return DROVER_DECODE_TOO_LARGE;
    }
    if (len == 0 || data == NULL) {
        codec_error(err, errlen, "message: empty frame");
        return DROVER_DECODE_MALFORMED;
    }
    if (codec_scan(data, len, err, errlen) < 0)
        return DROVER_DECODE_MALFORMED;

    msgpack_unpacked_init(&unpacked);
    if (msgpack_unpack_next(&unpacked, data, len, &offset) != MSGPACK_UNPACK_SUCCESS ||
        offset != len) {
        codec_error(err, errlen, "message: msgpack-c could not unpack the frame");
        rc = DROVER_DECODE_MALFORMED;
        goto done;
    }
    rc = codec_decode_envelope(&unpacked.data, out, version_out, err, errlen);
    if (rc != DROVER_DECODE_OK)
        goto done;

    t = codec_type_of(out->type);
    if (codec_decode_fields(t->fields, t->nfields, unpacked.data.via.array.ptr + 2, &out->u,
                            t->name, "", err, errlen) < 0 ||
        codec_check_decoded(out, err, errlen) < 0) {
        drover_msg_clear(out);
        rc = DROVER_DECODE_MALFORMED;
    }
done:
    msgpack_unpacked_destroy(&unpacked);
    if (rc == DROVER_DECODE_MALFORMED || rc == DROVER_DECODE_TOO_LARGE)
        memset(out, 0, sizeof *out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Releasing */

static void codec_clear_fields(const struct codec_field *fields, size_t nfields, void *base)
{
    for (size_t i = 0; i < nfields; i++) {
        void *slot = (char *)base + fields[i].offset;

        if (fields[i].kind == CODEC_TEXT || fields[i].kind == CODEC_JSON) {
            free(*(char **)slot);
            *(char **)slot = NULL;
        } else if (fields[i].kind == CODEC_INVENTORY) {
            struct drover_hello *hello = base;

            for (size_t k = 0; k < hello->inventory_len && hello->inventory != NULL; k++)
                codec_clear_fields(codec_run_entry_fields, COUNT(codec_run_entry_fields),
                                   &hello->inventory[k]);
            free(hello->inventory);
            hello->inventory = NULL;
            hello->inventory_len = 0;
        }
    }
}

void drover_msg_clear(struct drover_msg *m)
{
    const struct codec_type *t;

    if (m == NULL)
        return;
    t = codec_type_of(m->type);
    if (t != NULL)
        codec_clear_fields(t->fields, t->nfields, &m->u);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------ */
/* Encoding */

static int codec_check_fields(const struct codec_field *fields, size_t nfields,
                              const void *base, const char *msgname, const char *prefix,
                              char *err, size_t errlen);

static int codec_check_inventory(const char *where, const struct codec_field *f,
                                 const struct drover_hello *hello, char *err, size_t errlen)
{
    char prefix[64];

    if (hello->inventory_len > f->max) {
        codec_error(err, errlen, "%s: expected at most %" PRIu64 " entries, got %zu",
                    where, f->max, hello->inventory_len);
        return -1;
    }
    if (hello->inventory_len > 0 && hello->inventory == NULL) {
        codec_error(err, errlen, "%s: inventory is NULL but inventory_len is %zu",
                    where, hello->inventory_len);
        return -1;
    }
    for (size_t i = 0; i < hello->inventory_len; i++) {
        snprintf(prefix, sizeof prefix, "inventory[%zu].", i);
        if (codec_check_fields(codec_run_entry_fields, COUNT(codec_run_entry_fields),
                               &hello->inventory[i], "HELLO", prefix, err, errlen) < 0)
            return -1;
    }
    return codec_check_unique(hello->inventory, hello->inventory_len, err, errlen);
}

/* Validates one field of a caller's struct against the same rules the
 * decoder applies.  A NULL string counts as "". */
static int codec_check_field(const struct codec_field *f, const void *base,
                             const char *msgname, const char *prefix, char *err, size_t errlen)
{
    const void *slot = (const char *)base + f->offset;
    char where[96];
    const char *s;

    codec_where(where, sizeof where, msgname, prefix, f);
    switch (f->kind) {
    case CODEC_UUID:
        s = slot;
        return codec_check_uuid(where, s, strnlen(s, DROVER_UUID_LEN + 1), err, errlen);
    case CODEC_TEXT:
    case CODEC_JSON:
        s = *(char *const *)slot;
        if (s == NULL)
            s = "";
        if (f->kind == CODEC_JSON)
            return codec_check_json(where, f, s, strlen(s), err, errlen);
        return codec_check_text(where, f, s, strlen(s), err, errlen);
    case CODEC_UINT32:
        return codec_check_uint(where, f, *(const uint32_t *)slot, err, errlen);
    case CODEC_UINT64:
        return codec_check_uint(where, f, *(const uint64_t *)slot, err, errlen);
    case CODEC_SMALL_UINT:
        if (*(const int *)slot < 0) {
            codec_error(err, errlen, "%s: expected %s, got %d", where,
                        f->choice ? f->choice : "an unsigned integer", *(const int *)slot);
            return -1;
        }
        return codec_check_uint(where, f, (uint64_t)*(const int *)slot, err, errlen);
    case CODEC_INT64:
        return 0;
    case CODEC_BOOL:
        if (*(const int *)slot == 0 || *(const int *)slot == 1)
            return 0;
        codec_error(err, errlen, "%s: expected 0 or 1, got %d", where, *(const int *)slot);
        return -1;
    case CODEC_INVENTORY:
        return codec_check_inventory(where, f, base, err, errlen);
    }
    return 0;
}

static int codec_check_fields(const struct codec_field *fields, size_t nfields,
                              const void *base, const char *msgname, const char *prefix,
                              char *err, size_t errlen)
{
    for (size_t i = 0; i < nfields; i++) {
        if (codec_check_field(&fields[i], base, msgname, prefix, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int codec_pack_fields(msgpack_packer *pk, const struct codec_field *fields,
                             size_t nfields, const void *base);

static int codec_pack_string(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);

    if (msgpack_pack_str(pk, n) < 0)
        return -1;
    return msgpack_pack_str_body(pk, s, n);
}

static int codec_pack_field(msgpack_packer *pk, const struct codec_field *f, const void *base)
{
    const void *slot = (const char *)base + f->offset;
    const struct drover_hello *hello;
    const char *s;

    switch (f->kind) {
    case CODEC_UUID:
        return codec_pack_string(pk, slot);
    case CODEC_TEXT:
    case CODEC_JSON:
        s = *(char *const *)slot;
        return codec_pack_string(pk, s != NULL ? s : "");
    case CODEC_UINT32:
        return msgpack_pack_uint64(pk, *(const uint32_t *)slot);
    case CODEC_UINT64:
        return msgpack_pack_uint64(pk, *(const uint64_t *)slot);
    case CODEC_SMALL_UINT:
        return msgpack_pack_uint64(pk, (uint64_t)*(const int *)slot);
    case CODEC_INT64:
        return msgpack_pack_int64(pk, *(const int64_t *)slot);
    case CODEC_BOOL:
        return *(const int *)slot ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case CODEC_INVENTORY:
        hello = base;
        if (msgpack_pack_array(pk, hello->inventory_len) < 0)
            return -1;
        for (size_t i = 0; i < hello->inventory_len; i++) {
            if (msgpack_pack_array(pk, COUNT(codec_run_entry_fields)) < 0 ||
                codec_pack_fields(pk, codec_run_entry_fields, COUNT(codec_run_entry_fields),
                                  &hello->inventory[i]) < 0)
                return -1;
        }
        return 0;
    }
    return -1;
}

static int codec_pack_fields(msgpack_packer *pk, const struct codec_field *fields,
                             size_t nfields, const void *base)
{
    for (size_t i = 0; i < nfields; i++) {
        if (codec_pack_field(pk, &fields[i], base) < 0)
            return -1;
    }
    return 0;
}

int drover_msg_encode(const struct drover_msg *m, char **buf, size_t *len,
                      char *err, size_t errlen)
{
    const struct codec_type *t;
    msgpack_sbuffer sbuf;
    msgpack_packer pk;

    *buf = NULL;
    *len = 0;
    t = codec_type_of(m->type);
    if (t == NULL) {
        codec_error(err, errlen, "message type: %d is not a known message type", m->type);
        return -1;
    }
    if (codec_check_fields(t->fields, t->nfields, &m->u, t->name, "", err, errlen) < 0 ||
        codec_check_decoded(m, err, errlen) < 0)
        return -1;

    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    if (msgpack_pack_array(&pk, 2 + t->nfields) < 0 ||
        msgpack_pack_uint64(&pk, DROVER_PROTOCOL_VERSION) < 0 ||
        msgpack_pack_uint64(&pk, (uint64_t)m->type) < 0 ||
        codec_pack_fields(&pk, t->fields, t->nfields, &m->u) < 0) {
        codec_error(err, errlen, "%s: out of memory while encoding", t->name);
        msgpack_sbuffer_destroy(&sbuf);
        return -1;
    }
    if (sbuf.size > DROVER_MAX_FRAME) {
        codec_error(err, errlen, "%s: frame of %zu bytes exceeds the limit of %u bytes",
                    t->name, sbuf.size, DROVER_MAX_FRAME);
        msgpack_sbuffer_destroy(&sbuf);
        return -1;
    }
    *len = sbuf.size;
    *buf = msgpack_sbuffer_release(&sbuf);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One encode/decode pair per message type */

/* Decodes a frame that must be of type `type`; *out is cleared on failure. */
static int codec_decode_as(const void *data, size_t len, int type, struct drover_msg *out,
                           char *err, size_t errlen)
{
    int rc = drover_msg_decode(data, len, out, NULL, err, errlen);

    if (rc == DROVER_DECODE_OK && out->type != type) {
        codec_error(err, errlen, "message type: expected %s, got %s", drover_msg_type_name(type),
                    drover_msg_type_name(out->type));
        drover_msg_clear(out);
        return DROVER_DECODE_MALFORMED;
    }
    return rc;
}

#define CODEC_PAIR(fn, st, member, typenum)                                              \
    int drover_##fn##_encode(const struct st *m, char **buf, size_t *len,                \
                             char *err, size_t errlen)                                   \
    {                                                                                    \
        struct drover_msg msg;                                                           \
                                                                                         \
        memset(&msg, 0, sizeof msg);                                                     \
        msg.type = typenum;                                                              \
        msg.u.member = *m;                                                               \
        return drover_msg_encode(&msg, buf, len, err, errlen);                           \
    }                                                                                    \
    int drover_##fn##_decode(const void *data, size_t len, struct st *m,                 \
                             char *err, size_t errlen)                                   \
    {                                                                                    \
        struct drover_msg msg;                                                           \
        int rc = codec_decode_as(data, len, typenum, &msg, err, errlen);                 \
                                                                                         \
        memset(m, 0, sizeof *m);                                                         \
        if (rc == DROVER_DECODE_OK)                                                      \
            *m = msg.u.member;                                                           \
        return rc;                                                                       \
    }

CODEC_PAIR(hello, drover_hello, hello, DROVER_MSG_HELLO)
CODEC_PAIR(welcome, drover_welcome, welcome, DROVER_MSG_WELCOME)
CODEC_PAIR(reject, drover_reason, reject, DROVER_MSG_REJECT)
CODEC_PAIR(job, drover_job, job, DROVER_MSG_JOB)
CODEC_PAIR(started, drover_started, started, DROVER_MSG_STARTED)
CODEC_PAIR(log, drover_log, log, DROVER_MSG_LOG)
CODEC_PAIR(exited, drover_exited, exited, DROVER_MSG_EXITED)
CODEC_PAIR(ack, drover_ack, ack, DROVER_MSG_ACK)
CODEC_PAIR(kill, drover_kill, kill, DROVER_MSG_KILL)
CODEC_PAIR(ping, drover_ping, ping, DROVER_MSG_PING)
CODEC_PAIR(pong, drover_ping, ping, DROVER_MSG_PONG)
CODEC_PAIR(goodbye, drover_reason, goodbye, DROVER_MSG_GOODBYE)
