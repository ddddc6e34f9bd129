/*
 * Fuzz target of the wire codec.  Every input is decoded.  An input that
 * decodes must re-encode, decode again to the same fields, and re-encode to
 * the same bytes.  The encoding is never longer than the input, because the
 * encoder always picks the shortest form.  Every input is also scanned as a
 * JSON text, and the codec's JSON scanner (proto/jsonscan.c) must give the
 * verdict of the jansson parse it replaced.  A broken property aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "drover/protocol.h"
#include "../../proto/jsonscan.h"

static void fuzz_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_codec: %s: %s\n", what, detail);
    abort();
}

static int fuzz_same_str(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static int fuzz_same_entry(const struct drover_run_entry *a, const struct drover_run_entry *b)
{
    return strcmp(a->flow_run_id, b->flow_run_id) == 0 &&
           fuzz_same_str(a->identifier, b->identifier) &&
           a->exited == b->exited && a->code == b->code;
}

static int fuzz_same_hello(const struct drover_hello *a, const struct drover_hello *b)
{
    if (!fuzz_same_str(a->executor_id, b->executor_id) || !fuzz_same_str(a->type, b->type) ||
        a->capacity != b->capacity || !fuzz_same_str(a->schema, b->schema) ||
        !fuzz_same_str(a->software, b->software) || !fuzz_same_str(a->hostname, b->hostname) ||
        a->inventory_len != b->inventory_len)
        return 0;
    for (size_t i = 0; i < a->inventory_len; i++) {
        if (!fuzz_same_entry(&a->inventory[i], &b->inventory[i]))
            return 0;
    }
    return 1;
}

/* Compares every field of two decoded messages of the same type. */
static int fuzz_same_msg(const struct drover_msg *a, const struct drover_msg *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case DROVER_MSG_HELLO:
        return fuzz_same_hello(&a->u.hello, &b->u.hello);
    case DROVER_MSG_WELCOME:
        return fuzz_same_str(a->u.welcome.supervisor_id, b->u.welcome.supervisor_id) &&
               a->u.welcome.ping_interval_ms == b->u.welcome.ping_interval_ms &&
               a->u.welcome.liveness_ms == b->u.welcome.liveness_ms;
    case DROVER_MSG_REJECT:
        return fuzz_same_str(a->u.reject.reason, b->u.reject.reason);
    case DROVER_MSG_JOB:
        return strcmp(a->u.job.flow_run_id, b->u.job.flow_run_id) == 0 &&
               fuzz_same_str(a->u.job.config, b->u.job.config);
    case DROVER_MSG_STARTED:
        return strcmp(a->u.started.flow_run_id, b->u.started.flow_run_id) == 0 &&
               fuzz_same_str(a->u.started.identifier, b->u.started.identifier);
    case DROVER_MSG_LOG:
        return strcmp(a->u.log.flow_run_id, b->u.log.flow_run_id) == 0 &&
               a->u.log.stream == b->u.log.stream && fuzz_same_str(a->u.log.line, b->u.log.line);
    case DROVER_MSG_EXITED:
        return strcmp(a->u.exited.flow_run_id, b->u.exited.flow_run_id) == 0 &&
               a->u.exited.code == b->u.exited.code &&
               fuzz_same_str(a->u.exited.error, b->u.exited.error);
    case DROVER_MSG_ACK:
        return strcmp(a->u.ack.flow_run_id, b->u.ack.flow_run_id) == 0 &&
               a->u.ack.acked_type == b->u.ack.acked_type;
    case DROVER_MSG_KILL:
        return strcmp(a->u.kill.flow_run_id, b->u.kill.flow_run_id) == 0 &&
               a->u.kill.grace_seconds == b->u.kill.grace_seconds;
    case DROVER_MSG_PING:
    case DROVER_MSG_PONG:
        return a->u.ping.seq == b->u.ping.seq && a->u.ping.running == b->u.ping.running;
    case DROVER_MSG_GOODBYE:
        return fuzz_same_str(a->u.goodbye.reason, b->u.goodbye.reason);
    default:
        return 0;
    }
}

/* The check the codec made before the scanner: no raw NUL byte (the codec
 * rejects one before any JSON check, and jansson 2.14 accepts one right
 * after a number), at most DROVER_MAX_JSON_DEPTH levels counted by
 * brackets outside strings, then jansson. */
static int fuzz_json_reference(const char *s, size_t n)
{
    size_t depth = 0, deepest = 0;
    int in_string = 0, ok;
    json_error_t jerr;
    json_t *root;

    if (n > 0 && memchr(s, '\0', n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (in_string) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '"')
                in_string = 0;
        } else if (s[i] == '"') {
            in_string = 1;
        } else if (s[i] == '[' || s[i] == '{') {
            deepest = ++depth > deepest ? depth : deepest;
        } else if ((s[i] == ']' || s[i] == '}') && depth > 0) {
            depth--;
        }
    }
    if (deepest > DROVER_MAX_JSON_DEPTH)
        return 0;
    root = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
    ok = root != NULL && json_is_object(root);
    json_decref(root);
    return ok;
}

static void fuzz_json_scanner(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    enum jsonscan_result r = jsonscan(s, size, DROVER_MAX_JSON_DEPTH, NULL);
    int reference = fuzz_json_reference(s, size);

    if (r == JSONSCAN_TOO_MANY_KEYS)
        return;   /* the codec parses the text with jansson then */
    if ((r == JSONSCAN_OBJECT) != reference)
        fuzz_fail("the JSON scanner and jansson disagree", reference ? "jansson accepts" : "jansson rejects");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct drover_msg first, second;
    char *bytes = NULL, *again = NULL;
    size_t len = 0, len_again = 0;
    char err[512];
    int rc;

    fuzz_json_scanner(data, size);
    rc = drover_msg_decode(data, size, &first, NULL, err, sizeof err);
    if (rc < DROVER_DECODE_TOO_LARGE || rc > DROVER_DECODE_OK)
        fuzz_fail("decode returned an undefined result", drover_decode_result_name(rc));
    if (rc != DROVER_DECODE_OK) {
        if (err[0] == '\0' || strchr(err, '\n') != NULL)
            fuzz_fail("reason is empty or spans lines", err);
        drover_msg_clear(&first);
        return 0;
    }

    if (drover_msg_encode(&first, &bytes, &len, err, sizeof err) < 0)
        fuzz_fail("a decoded message does not encode", err);
    if (len > size)
        fuzz_fail("re-encoding is longer than the input", drover_msg_type_name(first.type));
    rc = drover_msg_decode(bytes, len, &second, NULL, err, sizeof err);
    if (rc != DROVER_DECODE_OK)
        fuzz_fail("a re-encoded message does not decode", err);
    if (!fuzz_same_msg(&first, &second))
        fuzz_fail("fields changed in a round trip", drover_msg_type_name(first.type));
    if (drover_msg_encode(&second, &again, &len_again, err, sizeof err) < 0)
        fuzz_fail("a second encoding failed", err);
    if (len_again != len || memcmp(bytes, again, len) != 0)
        fuzz_fail("two encodings of one message differ", drover_msg_type_name(first.type));

    drover_msg_clear(&first);
    drover_msg_clear(&second);
    free(bytes);
    free(again);
    return 0;
}
