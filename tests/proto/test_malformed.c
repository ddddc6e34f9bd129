/*
 * Feeds the decoder frames that break the protocol and checks that each is
 * rejected with the expected result code and a reason naming the culprit,
 * without crashing.  A few well-formed but unusual frames (wide integer
 * encodings, limits met exactly) are in the table too, to show the checks
 * are not stricter than proto/PROTOCOL.md.
 *
 *   proto_malformed VECTOR_DIR
 *   proto_malformed --export VECTOR_DIR
 *
 * The vectors are used to test truncation at every length.  The table is
 * also kept as VECTOR_DIR/malformed/frames.json for other implementations:
 * --export rewrites that file, and every normal run checks that it still
 * matches the table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "proto_test_util.h"

/* A frame in a small notation: space-separated tokens, each either hex bytes
 * ("9401"), U for a valid flow run id string, or a quoted string ('text'),
 * which becomes a msgpack str and may contain \xNN escapes. */
struct bad_case {
    const char *name;
    const char *frame;
    int         expected;  /* enum drover_decode_result */
    const char *reason;    /* substring the reason must contain, or NULL */
};

#define RUN_ID "0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a10"

/* HELLO's array header and its fields before capacity, and the rest after it. */
#define HELLO_HEAD "99 01 01 'node-a' 'process'"
#define HELLO_TAIL "'{}' '' '' 90"

static const struct bad_case cases[] = {
    /* Envelope */
    { "empty frame", "", DROVER_DECODE_MALFORMED, "empty frame" },
    { "not an array", "01", DROVER_DECODE_MALFORMED, "expected an array" },
    { "map instead of array", "82 01 0a 02 00", DROVER_DECODE_MALFORMED, "got a map" },
    { "empty array", "90", DROVER_DECODE_MALFORMED, "expected an array" },
    { "array of one", "91 01", DROVER_DECODE_MALFORMED, "expected an array" },
    { "version 2", "94 02 0a 00 00", DROVER_DECODE_VERSION, "version" },
    { "version 0", "94 00 0a 00 00", DROVER_DECODE_VERSION, "version" },
    { "version 2 with other fields", "92 02 01", DROVER_DECODE_VERSION, "version" },
    { "version negative", "94 ff 0a 00 00", DROVER_DECODE_MALFORMED, "version" },
    { "version as string", "94 '1' 0a 00 00", DROVER_DECODE_MALFORMED, "version" },
    { "version as float", "94 cb3ff0000000000000 0a 00 00", DROVER_DECODE_MALFORMED, "version" },
    { "version as uint64", "94 cf0000000000000001 0a 00 00", DROVER_DECODE_OK, NULL },
    { "unknown type 99", "94 01 63 00 00", DROVER_DECODE_UNKNOWN, "type" },
    { "unknown type 0", "92 01 00", DROVER_DECODE_UNKNOWN, "type" },
    { "unknown type huge", "92 01 cfffffffffffffffff", DROVER_DECODE_UNKNOWN, "type" },
    { "type nil", "92 01 c0", DROVER_DECODE_MALFORMED, "type" },
    { "type negative", "92 01 f6", DROVER_DECODE_MALFORMED, "type" },
    { "trailing byte", "94 01 0a 00 00 00", DROVER_DECODE_MALFORMED, "trailing" },
    { "two messages", "94 01 0a 00 00 94 01 0a 00 00", DROVER_DECODE_MALFORMED, "trailing" },
    { "truncated str header", "93 01 0c d9", DROVER_DECODE_MALFORMED, "truncated" },
    { "reserved byte c1", "93 01 0c c1", DROVER_DECODE_MALFORMED, "0xc1" },
    { "array32 of 4 billion", "dd ffffffff", DROVER_DECODE_MALFORMED, "truncated" },
    { "map32 of 4 billion", "df ffffffff 00", DROVER_DECODE_MALFORMED, "truncated" },
    { "str32 of 4 GiB", "93 01 0c db ffffffff 41", DROVER_DECODE_MALFORMED, "truncated" },
    { "nested 33 deep",
      "91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91"
      " 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 00",
      DROVER_DECODE_MALFORMED, "nest deeper" },
    { "nested garbage in field", "93 01 0c 91 91 91 00", DROVER_DECODE_MALFORMED,
      "GOODBYE field reason: expected a string, got an array" },
    { "ext instead of str", "93 01 0c d4 01 00", DROVER_DECODE_MALFORMED, "ext" },
    { "bin instead of str", "93 01 0c c4 02 6869", DROVER_DECODE_MALFORMED, "bin data" },

    /* Field counts */
    { "PING one field short", "93 01 0a 00", DROVER_DECODE_MALFORMED, "expected 2 fields, got 1" },
    { "PING one field extra", "95 01 0a 00 00 00", DROVER_DECODE_MALFORMED, "expected 2 fields" },
    { "HELLO without inventory", "98 01 01 'node-a' 'process' 01 '{}' '' ''",
      DROVER_DECODE_MALFORMED, "expected 7 fields" },

    /* Integers */
    { "PING seq negative", "94 01 0a ff 00", DROVER_DECODE_MALFORMED, "PING field seq" },
    { "PING seq float", "94 01 0a cb3ff0000000000000 00", DROVER_DECODE_MALFORMED, "a float" },
    { "PING seq true", "94 01 0a c3 00", DROVER_DECODE_MALFORMED, "got true" },
    { "PING running above uint32", "94 01 0a 00 cf0000000100000000", DROVER_DECODE_MALFORMED,
      "PING field running" },
    { "PING seq uint64 max", "94 01 0a cfffffffffffffffff 00", DROVER_DECODE_OK, NULL },
    { "PING seq as int8", "94 01 0a d005 d300000000000000ff", DROVER_DECODE_OK, NULL },
    { "HELLO capacity -3", HELLO_HEAD " d0fd " HELLO_TAIL, DROVER_DECODE_MALFORMED,
      "HELLO field capacity: expected an unsigned integer 1..65535, got -3" },
    { "HELLO capacity 0", HELLO_HEAD " 00 " HELLO_TAIL, DROVER_DECODE_MALFORMED,
      "HELLO field capacity" },
    { "HELLO capacity 65536", HELLO_HEAD " ce00010000 " HELLO_TAIL, DROVER_DECODE_MALFORMED,
      "HELLO field capacity" },
    { "HELLO capacity 65535 as uint32", HELLO_HEAD " ce0000ffff " HELLO_TAIL, DROVER_DECODE_OK,
      NULL },
    { "EXITED code above int64", "95 01 07 U cf8000000000000000 ''", DROVER_DECODE_MALFORMED,
      "EXITED field code" },
    { "EXITED code int64 min", "95 01 07 U d38000000000000000 ''", DROVER_DECODE_OK, NULL },
    { "LOG stream 3", "95 01 06 U 03 'x'", DROVER_DECODE_MALFORMED,
      "LOG field stream: expected 1 (stdout) or 2 (stderr), got 3" },
    { "LOG stream 0", "95 01 06 U 00 'x'", DROVER_DECODE_MALFORMED, "LOG field stream" },
    { "ACK of LOG", "94 01 08 U 06", DROVER_DECODE_MALFORMED, "ACK field acked_type" },
    { "ACK of STARTED", "94 01 08 U 05", DROVER_DECODE_OK, NULL },
    { "KILL grace 86401", "94 01 09 U ce00015181", DROVER_DECODE_MALFORMED,
      "KILL field grace_seconds" },
    { "KILL grace as uint32", "94 01 09 U ce0000001e", DROVER_DECODE_OK, NULL },
    { "WELCOME liveness below ping", "95 01 02 'sup' cd07d0 cd03e8", DROVER_DECODE_MALFORMED,
      "WELCOME field liveness_ms" },
    { "WELCOME ping 99", "95 01 02 'sup' 63 cd2710", DROVER_DECODE_MALFORMED,
      "WELCOME field ping_interval_ms" },
    { "WELCOME liveness above 1h", "95 01 02 'sup' cd07d0 ce0036ee81", DROVER_DECODE_MALFORMED,
      "WELCOME field liveness_ms" },
    { "WELCOME liveness equal to ping", "95 01 02 'sup' 64 64", DROVER_DECODE_OK, NULL },

    /* Strings */
    { "HELLO empty executor_id", "99 01 01 '' 'process' 01 " HELLO_TAIL, DROVER_DECODE_MALFORMED,
      "HELLO field executor_id" },
    { "HELLO executor_id with space", "99 01 01 'node a' 'process' 01 " HELLO_TAIL,
      DROVER_DECODE_MALFORMED, "HELLO field executor_id" },
    { "HELLO type upper case", "99 01 01 'node-a' 'Process' 01 " HELLO_TAIL,
      DROVER_DECODE_MALFORMED, "HELLO field type" },
    { "HELLO software as bin", HELLO_HEAD " 01 '{}' c40161 '' 90", DROVER_DECODE_MALFORMED,
      "HELLO field software: expected a string, got bin data" },
    { "REJECT empty reason", "93 01 03 ''", DROVER_DECODE_MALFORMED, "REJECT field reason" },
    { "GOODBYE reason nil", "93 01 0c c0", DROVER_DECODE_MALFORMED, "GOODBYE field reason" },
    { "STARTED empty identifier", "94 01 05 U ''", DROVER_DECODE_MALFORMED,
      "STARTED field identifier" },
    { "LOG line invalid byte ff", "95 01 06 U 01 'a\\xffb'", DROVER_DECODE_MALFORMED,
      "LOG field line: invalid UTF-8 at byte 1" },
    { "LOG line overlong NUL", "95 01 06 U 01 '\\xc0\\x80'", DROVER_DECODE_MALFORMED,
      "invalid UTF-8" },
    { "LOG line overlong slash", "95 01 06 U 01 '\\xe0\\x80\\xaf'", DROVER_DECODE_MALFORMED,
      "invalid UTF-8" },
    { "LOG line surrogate", "95 01 06 U 01 '\\xed\\xa0\\x80'", DROVER_DECODE_MALFORMED,
      "invalid UTF-8" },
    { "LOG line above U+10FFFF", "95 01 06 U 01 '\\xf4\\x90\\x80\\x80'", DROVER_DECODE_MALFORMED,
      "invalid UTF-8" },
    { "LOG line cut sequence", "95 01 06 U 01 'ok\\xe2\\x82'", DROVER_DECODE_MALFORMED,
      "invalid UTF-8 at byte 2" },
    { "LOG line NUL byte", "95 01 06 U 01 'a\\x00b'", DROVER_DECODE_MALFORMED, "U+0000" },
    { "LOG line four-byte char", "95 01 06 U 01 '\\xf0\\x9f\\x90\\x8d'", DROVER_DECODE_OK, NULL },

    /* Flow run ids */
    { "JOB id upper case", "94 01 04 '0B9E5C39-7D0F-4C63-9A47-2F1C5D3E8A10' '{}'",
      DROVER_DECODE_MALFORMED, "JOB field flow_run_id: expected a canonical lowercase UUID" },
    { "JOB id 35 chars", "94 01 04 '0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a1' '{}'",
      DROVER_DECODE_MALFORMED, "JOB field flow_run_id" },
    { "JOB id without hyphens", "94 01 04 '0b9e5c397d0f4c639a472f1c5d3e8a10abcd' '{}'",
      DROVER_DECODE_MALFORMED, "JOB field flow_run_id" },
    { "JOB id with braces", "94 01 04 '{0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a1}' '{}'",
      DROVER_DECODE_MALFORMED, "JOB field flow_run_id" },
    { "JOB id not hex", "94 01 04 '0b9e5c39-7d0f-4c63-9a47-2f1c5d3e8a1g' '{}'",
      DROVER_DECODE_MALFORMED, "JOB field flow_run_id" },
    { "JOB id as integer", "94 01 04 07 '{}'", DROVER_DECODE_MALFORMED, "JOB field flow_run_id" },

    /* JSON text fields */
    { "JOB config empty object", "94 01 04 U '{}'", DROVER_DECODE_OK, NULL },
    { "JOB config not JSON", "94 01 04 U '{x'", DROVER_DECODE_MALFORMED,
      "JOB field config: invalid JSON text" },
    { "JOB config array", "94 01 04 U '[1]'", DROVER_DECODE_MALFORMED,
      "JOB field config: expected a JSON object" },
    { "JOB config string", "94 01 04 U '\"{}\"'", DROVER_DECODE_MALFORMED, "JOB field config" },
    { "JOB config empty", "94 01 04 U ''", DROVER_DECODE_MALFORMED, "JOB field config" },
    { "JOB config trailing text", "94 01 04 U '{} {}'", DROVER_DECODE_MALFORMED,
      "JOB field config" },
    { "JOB config duplicate key", "94 01 04 U '{\"a\":1,\"a\":2}'", DROVER_DECODE_MALFORMED,
      "JOB field config" },
    { "JOB config NaN", "94 01 04 U '{\"a\":NaN}'", DROVER_DECODE_MALFORMED, "JOB field config" },
    { "JOB config lone surrogate", "94 01 04 U '{\"a\":\"\\\\ud800\"}'", DROVER_DECODE_MALFORMED,
      "JOB field config" },
    { "JOB config 1e400", "94 01 04 U '{\"a\":1e400}'", DROVER_DECODE_MALFORMED,
      "JOB field config" },
    { "JOB config big integer", "94 01 04 U '{\"a\":123456789012345678901234567890}'",
      DROVER_DECODE_OK, NULL },
    { "JOB config escaped NUL", "94 01 04 U '{\"a\":\"\\\\u0000\"}'", DROVER_DECODE_OK, NULL },
    { "HELLO schema not JSON", HELLO_HEAD " 01 'nope' '' '' 90", DROVER_DECODE_MALFORMED,
      "HELLO field schema" },

    /* Inventory */
    { "HELLO inventory nil", HELLO_HEAD " 01 '{}' '' '' c0", DROVER_DECODE_MALFORMED,
      "HELLO field inventory: expected an array, got nil" },
    { "HELLO inventory entry short", HELLO_HEAD " 01 '{}' '' '' 91 93 U '' c2",
      DROVER_DECODE_MALFORMED, "HELLO field inventory[0]: expected an array of 4" },
    { "HELLO inventory exited as 1", HELLO_HEAD " 01 '{}' '' '' 91 94 U '' 01 00",
      DROVER_DECODE_MALFORMED, "HELLO field inventory[0].exited: expected a boolean" },
    { "HELLO inventory bad id", HELLO_HEAD " 01 '{}' '' '' 92 94 U '' c2 00 94 'x' '' c2 00",
      DROVER_DECODE_MALFORMED, "HELLO field inventory[1].flow_run_id" },
    { "HELLO inventory duplicate", HELLO_HEAD " 01 '{}' '' '' 92 94 U '' c2 00 94 U 'p:1' c3 01",
      DROVER_DECODE_MALFORMED, "listed twice" },
    { "HELLO inventory code float", HELLO_HEAD " 01 '{}' '' '' 91 94 U '' c3 ca00000000",
      DROVER_DECODE_MALFORMED, "HELLO field inventory[0].code" },
    { "HELLO inventory of one", HELLO_HEAD " 01 '{}' '' '' 91 94 U 'node-a:12' c3 f7",
      DROVER_DECODE_OK, NULL },
};

static int failures;
static int checks;

static void expect(int ok, const char *name, const char *what)
{
    checks++;
    if (!ok) {
        fprintf(stderr, "FAIL %s: %s\n", name, what);
        failures++;
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void pack_string(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* Parses a quoted token starting after its opening quote; returns the
 * position after the closing quote. */
static const char *pack_quoted(msgpack_packer *pk, const char *p)
{
    char text[256];
    size_t n = 0;

    while (*p != '\0' && *p != '\'' && n < sizeof text) {
        if (p[0] == '\\' && p[1] == 'x') {
            text[n++] = (char)(hex_value(p[2]) * 16 + hex_value(p[3]));
            p += 4;
        } else if (p[0] == '\\' && p[1] == '\\') {
            text[n++] = '\\';
            p += 2;
        } else {
            text[n++] = *p++;
        }
    }
    pack_string(pk, text, n);
    return *p == '\'' ? p + 1 : p;
}

/* Builds the bytes of a frame in the notation of struct bad_case. */
static void build_frame(const char *spec, msgpack_sbuffer *sbuf)
{
    msgpack_packer pk;
    const char *p = spec;

    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    while (*p != '\0') {
        if (*p == ' ') {
            p++;
        } else if (*p == '\'') {
            p = pack_quoted(&pk, p + 1);
        } else if (*p == 'U') {
            pack_string(&pk, RUN_ID, strlen(RUN_ID));
            p++;
        } else {
            char byte = (char)(hex_value(p[0]) * 16 + hex_value(p[1]));

            msgpack_sbuffer_write(sbuf, &byte, 1);
            p += 2;
        }
    }
}

static void check_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bad_case *c = &cases[i];
        struct drover_msg m;
        msgpack_sbuffer sbuf;
        char err[512] = "";
        char what[800];
        int rc;

        msgpack_sbuffer_init(&sbuf);
        build_frame(c->frame, &sbuf);
        rc = drover_msg_decode(sbuf.data, sbuf.size, &m, NULL, err, sizeof err);
        snprintf(what, sizeof what, "expected %s, got %s (%s)",
                 drover_decode_result_name(c->expected), drover_decode_result_name(rc), err);
        expect(rc == c->expected, c->name, what);
        if (c->reason != NULL) {
            snprintf(what, sizeof what, "reason \"%s\" does not contain \"%s\"", err, c->reason);
            expect(strstr(err, c->reason) != NULL, c->name, what);
        }
        drover_msg_clear(&m);
        msgpack_sbuffer_destroy(&sbuf);
    }
}

/* Every proper prefix of a valid frame is malformed, and so is the frame with
 * one more byte. */
static void check_truncations(const char *dir)
{
    char **names = NULL;
    int count = ptu_list_vectors(dir, &names);

    expect(count > 0, "truncation", "no vectors found");
    for (int i = 0; i < count; i++) {
        size_t pathlen = strlen(dir) + strlen(names[i]) + 10;
        char *path = malloc(pathlen);
        unsigned char *bytes;
        size_t len = 0;
        char what[300];

        snprintf(path, pathlen, "%s/%s.msgpack", dir, names[i]);
        bytes = ptu_read_file(path, &len);
        free(path);
        if (bytes == NULL) {
            expect(0, names[i], "cannot read the .msgpack file");
            continue;
        }
        for (size_t cut = 0; cut < len; cut++) {
            struct drover_msg m;
            char err[512];
            int rc = drover_msg_decode(bytes, cut, &m, NULL, err, sizeof err);

            snprintf(what, sizeof what, "cut to %zu of %zu bytes: got %s", cut, len,
                     drover_decode_result_name(rc));
            expect(rc == DROVER_DECODE_MALFORMED, names[i], what);
            drover_msg_clear(&m);
        }
        {
            unsigned char *longer = malloc(len + 1);
            struct drover_msg m;
            char err[512];
            int rc;

            memcpy(longer, bytes, len);
            longer[len] = 0xc0;
            rc = drover_msg_decode(longer, len + 1, &m, NULL, err, sizeof err);
            snprintf(what, sizeof what, "one trailing byte: got %s", drover_decode_result_name(rc));
            expect(rc == DROVER_DECODE_MALFORMED, names[i], what);
            expect(strstr(err, "trailing") != NULL, names[i], err);
            free(longer);
        }
        free(bytes);
    }
    ptu_free_names(names, count);
}

/* Encodes *m and returns the decode result of the bytes, or 99 when the
 * encoder fails. */
static int round_trip(const struct drover_msg *m, struct drover_msg *out, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int rc;

    if (drover_msg_encode(m, &buf, &len, err, errlen) < 0)
        return 99;
    rc = drover_msg_decode(buf, len, out, NULL, err, errlen);
    free(buf);
    return rc;
}

static char *filled(size_t n, char c)
{
    char *s = malloc(n + 1);

    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Builds a LOG frame whose line is n bytes, encoded by hand so that limits
 * the encoder refuses can still reach the decoder. */
static int decode_log_line_of(size_t n, char *err, size_t errlen)
{
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    struct drover_msg m;
    char *line = filled(n, 'x');
    int rc;

    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint8(&pk, DROVER_MSG_LOG);
    pack_string(&pk, RUN_ID, strlen(RUN_ID));
    msgpack_pack_uint8(&pk, 1);
    pack_string(&pk, line, n);
    rc = drover_msg_decode(sbuf.data, sbuf.size, &m, NULL, err, errlen);
    drover_msg_clear(&m);
    msgpack_sbuffer_destroy(&sbuf);
    free(line);
    return rc;
}

/* Builds a HELLO frame with n inventory entries with distinct ids. */
static int decode_inventory_of(size_t n, char *err, size_t errlen)
{
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    struct drover_msg m;
    char id[DROVER_UUID_LEN + 1];
    int rc;

    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    build_frame(HELLO_HEAD " 01 '{}' '' ''", &sbuf);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "00000000-0000-4000-8000-%012x", (unsigned)(i & 0xffffu));
        msgpack_pack_array(&pk, 4);
        pack_string(&pk, id, DROVER_UUID_LEN);
        pack_string(&pk, "", 0);
        msgpack_pack_false(&pk);
        msgpack_pack_int64(&pk, 0);
    }
    rc = drover_msg_decode(sbuf.data, sbuf.size, &m, NULL, err, errlen);
    drover_msg_clear(&m);
    msgpack_sbuffer_destroy(&sbuf);
    return rc;
}

static void check_sizes(void)
{
    char err[512];
    unsigned char *big = calloc(DROVER_MAX_FRAME + 1, 1);
    struct drover_msg m;

    expect(drover_msg_decode(big, DROVER_MAX_FRAME + 1, &m, NULL, err, sizeof err) ==
           DROVER_DECODE_TOO_LARGE, "frame above 2 MiB", "expected too large");
    expect(strstr(err, "2097153") != NULL, "frame above 2 MiB", "reason lacks the size");
    free(big);

    expect(decode_log_line_of(DROVER_MAX_LOG_LINE, err, sizeof err) == DROVER_DECODE_OK,
           "LOG line of 64 KiB", err);
    expect(decode_log_line_of(DROVER_MAX_LOG_LINE + 1, err, sizeof err) ==
           DROVER_DECODE_MALFORMED, "LOG line of 64 KiB + 1", "expected malformed");
    expect(strstr(err, "LOG field line") != NULL, "LOG line of 64 KiB + 1", err);

    expect(decode_inventory_of(DROVER_MAX_INVENTORY, err, sizeof err) == DROVER_DECODE_OK,
           "inventory of 4096", err);
    expect(decode_inventory_of(DROVER_MAX_INVENTORY + 1, err, sizeof err) ==
           DROVER_DECODE_MALFORMED, "inventory of 4097", "expected malformed");
    expect(strstr(err, "at most 4096 entries") != NULL, "inventory of 4097", err);
}

/* Checks that encoding m fails with a reason containing `reason` and
 * returns neither a buffer nor a length. */
static void expect_encode_error(const struct drover_msg *m, const char *name, const char *reason)
{
    char sentinel = 0;
    char *buf = &sentinel;
    size_t len = 1;
    char err[512] = "";
    char what[700];
    int rc = drover_msg_encode(m, &buf, &len, err, sizeof err);

    expect(rc == -1, name, "encoder accepted the message");
    snprintf(what, sizeof what, "reason \"%s\" does not contain \"%s\"", err, reason);
    expect(strstr(err, reason) != NULL, name, what);
    expect(buf == NULL || buf == &sentinel, name, "encoder returned a buffer with its error");
    expect(buf != &sentinel, name, "encoder left the buffer pointer unset");
    expect(len == 0, name, "encoder returned a length with its error");
    if (rc == 0)
        free(buf);
}

/* Oversized and invalid fields are refused by the encoder too, which then
 * allocates nothing. */
static void check_encoder_limits(void)
{
    struct { const char *name; size_t len; int type; } strings[] = {
        { "REJECT reason", DROVER_MAX_REASON, DROVER_MSG_REJECT },
        { "GOODBYE reason", DROVER_MAX_REASON, DROVER_MSG_GOODBYE },
        { "STARTED identifier", DROVER_MAX_IDENTIFIER, DROVER_MSG_STARTED },
        { "WELCOME supervisor_id", DROVER_MAX_NAME, DROVER_MSG_WELCOME },
        { "EXITED error", DROVER_MAX_REASON, DROVER_MSG_EXITED },
    };
    char err[512];

    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        for (size_t extra = 0; extra <= 1; extra++) {
            struct drover_msg m, back;
            char *s = filled(strings[i].len + extra, 'r');
            int rc;

            memset(&m, 0, sizeof m);
            m.type = strings[i].type;
            switch (m.type) {
            case DROVER_MSG_REJECT: m.u.reject.reason = s; break;
            case DROVER_MSG_GOODBYE: m.u.goodbye.reason = s; break;
            case DROVER_MSG_STARTED:
                strcpy(m.u.started.flow_run_id, RUN_ID);
                m.u.started.identifier = s;
                break;
            case DROVER_MSG_WELCOME:
                m.u.welcome.supervisor_id = s;
                m.u.welcome.ping_interval_ms = 1000;
                m.u.welcome.liveness_ms = 5000;
                break;
            default:
                strcpy(m.u.exited.flow_run_id, RUN_ID);
                m.u.exited.error = s;
                break;
            }
            if (extra == 0) {
                rc = round_trip(&m, &back, err, sizeof err);
                expect(rc == DROVER_DECODE_OK, strings[i].name, "at the limit: round trip failed");
                drover_msg_clear(&back);
            } else {
                expect_encode_error(&m, strings[i].name, "expected a string of");
            }
            free(s);
        }
    }
}

static void check_encoder_rejects(void)
{
    struct drover_run_entry entries[2];
    struct drover_msg m;

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_HELLO;
    m.u.hello.executor_id = "node-a";
    m.u.hello.type = "process";
    m.u.hello.capacity = 0;
    m.u.hello.schema = "{}";
    expect_encode_error(&m, "encode HELLO capacity 0", "HELLO field capacity");
    m.u.hello.capacity = 1;
    m.u.hello.schema = "{\"a\":}";
    expect_encode_error(&m, "encode HELLO bad schema", "HELLO field schema");
    m.u.hello.schema = "{}";
    m.u.hello.inventory_len = 1;
    expect_encode_error(&m, "encode HELLO NULL inventory", "inventory is NULL");
    memset(entries, 0, sizeof entries);
    strcpy(entries[0].flow_run_id, RUN_ID);
    strcpy(entries[1].flow_run_id, RUN_ID);
    m.u.hello.inventory = entries;
    m.u.hello.inventory_len = 2;
    expect_encode_error(&m, "encode HELLO duplicate run", "listed twice");
    entries[1].exited = 2;
    entries[1].flow_run_id[0] = '1';
    expect_encode_error(&m, "encode HELLO exited 2", "inventory[1].exited");

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_LOG;
    strcpy(m.u.log.flow_run_id, "not-a-uuid");
    m.u.log.stream = 1;
    m.u.log.line = "x";
    expect_encode_error(&m, "encode LOG bad id", "LOG field flow_run_id");
    strcpy(m.u.log.flow_run_id, RUN_ID);
    m.u.log.stream = 3;
    expect_encode_error(&m, "encode LOG stream 3", "LOG field stream");
    m.u.log.stream = -1;
    expect_encode_error(&m, "encode LOG stream -1", "LOG field stream");
    m.u.log.stream = 2;
    m.u.log.line = "bad \xff byte";
    expect_encode_error(&m, "encode LOG invalid UTF-8", "invalid UTF-8");

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_WELCOME;
    m.u.welcome.supervisor_id = "s";
    m.u.welcome.ping_interval_ms = 5000;
    m.u.welcome.liveness_ms = 4999;
    expect_encode_error(&m, "encode WELCOME liveness", "WELCOME field liveness_ms");

    m.type = 13;
    expect_encode_error(&m, "encode type 13", "not a known message type");
}

/* Values at the edges of their ranges survive a round trip unchanged. */
static void check_extremes(void)
{
    int64_t codes[] = { INT64_MIN, -129, -128, -33, -32, -1, 0, 127, 128, 255, 256, 65536,
                        INT64_MAX };
    struct drover_msg m, back;
    char err[512];

    memset(&m, 0, sizeof m);
    m.type = DROVER_MSG_PONG;
    m.u.ping.seq = UINT64_MAX;
    m.u.ping.running = UINT32_MAX;
    expect(round_trip(&m, &back, err, sizeof err) == DROVER_DECODE_OK, "PONG maximum values", err);
    expect(back.u.ping.seq == UINT64_MAX, "PONG maximum seq", "value changed");
    expect(back.u.ping.running == UINT32_MAX, "PONG maximum running", "value changed");

    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char name[64];

        snprintf(name, sizeof name, "EXITED code %lld", (long long)codes[i]);
        memset(&m, 0, sizeof m);
        m.type = DROVER_MSG_EXITED;
        strcpy(m.u.exited.flow_run_id, RUN_ID);
        m.u.exited.code = codes[i];
        expect(round_trip(&m, &back, err, sizeof err) == DROVER_DECODE_OK, name, err);
        expect(back.u.exited.code == codes[i], name, "value changed");
        expect(back.u.exited.error != NULL && back.u.exited.error[0] == '\0', name,
               "a NULL error did not decode as an empty string");
        drover_msg_clear(&back);
    }
}

/* The per-type decoders accept their own type only, and the envelope
 * results report what the peer sent. */
static void check_typed_and_envelope(void)
{
    const unsigned char ping[] = { 0x94, 0x01, 0x0a, 0x05, 0x02 };
    const unsigned char v2[] = { 0x94, 0x02, 0x01, 0x05, 0x02 };
    const unsigned char t99[] = { 0x92, 0x01, 0x63 };
    struct drover_ping p;
    struct drover_hello h;
    struct drover_msg m;
    char err[512];
    int version = -1;
    int rc;

    rc = drover_ping_decode(ping, sizeof ping, &p, err, sizeof err);
    expect(rc == DROVER_DECODE_OK, "drover_ping_decode", err);
    expect(p.seq == 5, "drover_ping_decode seq", "wrong value");
    expect(p.running == 2, "drover_ping_decode running", "wrong value");

    rc = drover_pong_decode(ping, sizeof ping, &p, err, sizeof err);
    expect(rc == DROVER_DECODE_MALFORMED, "drover_pong_decode of PING", "accepted");
    expect(strstr(err, "expected PONG, got PING") != NULL, "drover_pong_decode of PING", err);

    rc = drover_hello_decode(ping, sizeof ping, &h, err, sizeof err);
    expect(rc == DROVER_DECODE_MALFORMED, "drover_hello_decode of PING", "accepted");
    expect(h.executor_id == NULL, "drover_hello_decode of PING", "output not cleared");

    rc = drover_msg_decode(v2, sizeof v2, &m, &version, err, sizeof err);
    expect(rc == DROVER_DECODE_VERSION, "version 2 HELLO", err);
    expect(version == 2, "version 2 HELLO", "version_out not reported");
    expect(m.type == DROVER_MSG_HELLO, "version 2 HELLO", "type not reported");

    rc = drover_msg_decode(t99, sizeof t99, &m, &version, err, sizeof err);
    expect(rc == DROVER_DECODE_UNKNOWN, "type 99", err);
    expect(version == 1, "type 99", "version_out not reported");
    expect(m.type == 99, "type 99", "type not reported");

    expect(strcmp(drover_msg_type_name(DROVER_MSG_GOODBYE), "GOODBYE") == 0,
           "drover_msg_type_name 12", "wrong name");
    expect(strcmp(drover_msg_type_name(0), "UNKNOWN") == 0, "drover_msg_type_name 0",
           "wrong name");
    expect(strcmp(drover_msg_type_name(13), "UNKNOWN") == 0, "drover_msg_type_name 13",
           "wrong name");
    expect(drover_uuid_valid(RUN_ID) == 1, "drover_uuid_valid lowercase", "rejected");
    expect(drover_uuid_valid("0B9E5C39-7D0F-4C63-9A47-2F1C5D3E8A10") == 0,
           "drover_uuid_valid upper case", "accepted");
    expect(drover_uuid_valid(NULL) == 0, "drover_uuid_valid NULL", "accepted");
    drover_msg_clear(NULL);
}

static const char *result_names[] = { "ok", "malformed", "version", "unknown", "too_large" };

/* Builds the JSON form of the table: name, frame in hex, expected result and
 * the substring the reference codec's reason contains. */
static json_t *table_to_json(void)
{
    json_t *list = json_array();

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bad_case *c = &cases[i];
        msgpack_sbuffer sbuf;
        char *hex;

        msgpack_sbuffer_init(&sbuf);
        build_frame(c->frame, &sbuf);
        hex = malloc(sbuf.size * 2 + 1);
        for (size_t k = 0; k < sbuf.size; k++)
            sprintf(hex + 2 * k, "%02x", (unsigned char)sbuf.data[k]);
        hex[sbuf.size * 2] = '\0';
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s?}", "name", c->name,
                                              "frame", hex, "result", result_names[-c->expected],
                                              "reason_contains", c->reason));
        free(hex);
        msgpack_sbuffer_destroy(&sbuf);
    }
    return json_pack("{s:s, s:o}", "description",
                     "Frames every decoder of the drover wire protocol v1 must classify with the "
                     "given result (proto/PROTOCOL.md, section 7). frame is hex. reason_contains "
                     "is informative: it is part of the reason the reference codec writes.",
                     "cases", list);
}

static char *frames_path(const char *dir)
{
    size_t n = strlen(dir) + 32;
    char *path = malloc(n);

    snprintf(path, n, "%s/malformed/frames.json", dir);
    return path;
}

static void check_exported(const char *dir)
{
    char *path = frames_path(dir);
    json_error_t jerr;
    json_t *saved = json_load_file(path, 0, &jerr);
    json_t *current = table_to_json();

    expect(saved != NULL, "frames.json", "cannot load malformed/frames.json");
    expect(saved != NULL && json_equal(saved, current), "frames.json",
           "malformed/frames.json differs from the table; run proto_malformed --export");
    json_decref(saved);
    json_decref(current);
    free(path);
}

static int export_table(const char *dir)
{
    char *path = frames_path(dir);
    json_t *doc = table_to_json();
    int rc = json_dump_file(doc, path, JSON_INDENT(2) | JSON_ENSURE_ASCII);

    if (rc == 0)
        printf("wrote %s\n", path);
    else
        fprintf(stderr, "cannot write %s\n", path);
    json_decref(doc);
    free(path);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--export") == 0)
        return export_table(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: %s [--export] VECTOR_DIR\n", argv[0]);
        return 2;
    }
    check_table();
    check_exported(argv[1]);
    check_truncations(argv[1]);
    check_sizes();
    check_encoder_limits();
    check_encoder_rejects();
    check_extremes();
    check_typed_and_envelope();
    printf("%zu table cases, %d checks, %d failures\n", sizeof cases / sizeof cases[0], checks,
           failures);
    return failures == 0 ? 0 : 1;
}
