/*
 * drover wire protocol, version 1: message types, limits and the codec.
 *
 * Every ZeroMQ message between a supervisor (ROUTER) and an executor (DEALER)
 * carries exactly one body frame: a msgpack array
 *
 *     [ version, type, field1, field2, ... ]
 *
 * where version is the positive integer DROVER_PROTOCOL_VERSION, type is one
 * of enum drover_msg_type, and the fields follow in the order and with the
 * types listed for each message below.  proto/PROTOCOL.md is the normative
 * text; this header mirrors it for C callers.
 *
 * Ownership: decoded messages own their strings and arrays; release them with
 * drover_msg_clear().  Encoders never take ownership of their input and return
 * a malloc'd buffer that the caller frees with free().
 */
#ifndef DROVER_PROTOCOL_H
#define DROVER_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DROVER_PROTOCOL_VERSION 1

/* Hard caps.  A message or field above its cap is malformed. */
#define DROVER_MAX_FRAME        (2u * 1024u * 1024u)  /* whole encoded body frame */
#define DROVER_UUID_LEN         36u                    /* flow run ids, canonical lowercase */
#define DROVER_MAX_NAME         128u    /* executor id, supervisor id, hostname, software */
#define DROVER_MAX_TYPE         64u     /* infrastructure type: [a-z0-9_-]+ */
#define DROVER_MAX_IDENTIFIER   256u    /* infrastructure identifier, e.g. "host:pid" */
#define DROVER_MAX_REASON       1024u   /* REJECT / GOODBYE reasons, EXITED error */
#define DROVER_MAX_CONFIG       (1024u * 1024u)        /* JOB configuration, JSON text */
#define DROVER_MAX_SCHEMA       (256u * 1024u)         /* HELLO schema, JSON text */
#define DROVER_MAX_LOG_LINE     (64u * 1024u)
#define DROVER_MAX_INVENTORY    4096u
#define DROVER_MAX_CAPACITY     65535u
#define DROVER_MAX_GRACE        86400u  /* seconds */
#define DROVER_MIN_PING_INTERVAL_MS 100u
#define DROVER_MAX_PING_INTERVAL_MS 600000u
#define DROVER_MAX_LIVENESS_MS      3600000u
#define DROVER_MAX_NESTING      32u     /* msgpack arrays and maps, the message array is level 1 */
#define DROVER_MAX_JSON_DEPTH   128u    /* arrays and objects in schema and config */

/* Stable message numbers.  A retired number is never reused. */
enum drover_msg_type {
    DROVER_MSG_HELLO   = 1,   /* executor -> supervisor */
    DROVER_MSG_WELCOME = 2,   /* supervisor -> executor */
    DROVER_MSG_REJECT  = 3,   /* supervisor -> executor */
    DROVER_MSG_JOB     = 4,   /* supervisor -> executor */
    DROVER_MSG_STARTED = 5,   /* executor -> supervisor */
    DROVER_MSG_LOG     = 6,   /* executor -> supervisor */
    DROVER_MSG_EXITED  = 7,   /* executor -> supervisor */
    DROVER_MSG_ACK     = 8,   /* supervisor -> executor */
    DROVER_MSG_KILL    = 9,   /* supervisor -> executor */
    DROVER_MSG_PING    = 10,  /* executor -> supervisor */
    DROVER_MSG_PONG    = 11,  /* supervisor -> executor */
    DROVER_MSG_GOODBYE = 12   /* either way */
};

/* Result codes of the decoder. */
enum drover_decode_result {
    DROVER_DECODE_OK        = 0,
    DROVER_DECODE_MALFORMED = -1,  /* not msgpack, wrong shape, bad field, trailing bytes */
    DROVER_DECODE_VERSION   = -2,  /* well-formed envelope, other protocol version */
    DROVER_DECODE_UNKNOWN   = -3,  /* well-formed envelope, unknown message type */
    DROVER_DECODE_TOO_LARGE = -4   /* frame above DROVER_MAX_FRAME */
};

/* LOG streams. */
enum drover_stream { DROVER_STREAM_STDOUT = 1, DROVER_STREAM_STDERR = 2 };

/* One run an executor still knows about, sent in HELLO after a reconnect. */
struct drover_run_entry {
    char     flow_run_id[DROVER_UUID_LEN + 1];
    char    *identifier;   /* "" when the infrastructure never started */
    int      exited;       /* 1: the run ended and its EXITED is not yet acknowledged */
    int64_t  code;         /* exit status when exited; -N means killed by signal N */
};

/* HELLO: [1, 1, executor_id, type, capacity, schema, software, hostname, inventory]
 *   executor_id str 1..128 of [A-Za-z0-9._:-]; type str 1..64 of [a-z0-9_-];
 *   capacity uint 1..65535; schema str JSON object text <= 256 KiB;
 *   software str 0..128; hostname str 0..128;
 *   inventory array <= 4096 of [flow_run_id str 36, identifier str 0..256,
 *                               exited bool, code int]                          */
struct drover_hello {
    char     *executor_id;
    char     *type;
    uint32_t  capacity;
    char     *schema;
    char     *software;
    char     *hostname;
    struct drover_run_entry *inventory;
    size_t    inventory_len;
};

/* WELCOME: [1, 2, supervisor_id, ping_interval_ms, liveness_ms]
 *   supervisor_id str 1..128; ping_interval_ms uint 100..600000;
 *   liveness_ms uint >= ping_interval_ms, <= 3600000                             */
struct drover_welcome {
    char     *supervisor_id;
    uint32_t  ping_interval_ms;
    uint32_t  liveness_ms;
};

/* REJECT: [1, 3, reason]      reason str 1..1024 */
/* GOODBYE: [1, 12, reason]    reason str 0..1024 */
struct drover_reason {
    char *reason;
};

/* JOB: [1, 4, flow_run_id, config]   config str JSON object text <= 1 MiB */
struct drover_job {
    char  flow_run_id[DROVER_UUID_LEN + 1];
    char *config;
};

/* STARTED: [1, 5, flow_run_id, identifier]   identifier str 1..256 */
struct drover_started {
    char  flow_run_id[DROVER_UUID_LEN + 1];
    char *identifier;
};

/* LOG: [1, 6, flow_run_id, stream, line]   stream 1 or 2; line str 0..64 KiB */
struct drover_log {
    char     flow_run_id[DROVER_UUID_LEN + 1];
    int      stream;
    char    *line;
};

/* EXITED: [1, 7, flow_run_id, code, error]
 *   code int (exit status; -N = killed by signal N);
 *   error str 0..1024: non-empty when the infrastructure could not be started,
 *   in which case code is meaningless.                                         */
struct drover_exited {
    char     flow_run_id[DROVER_UUID_LEN + 1];
    int64_t  code;
    char    *error;
};

/* ACK: [1, 8, flow_run_id, acked_type]   acked_type is 5 (STARTED) or 7 (EXITED) */
struct drover_ack {
    char flow_run_id[DROVER_UUID_LEN + 1];
    int  acked_type;
};

/* KILL: [1, 9, flow_run_id, grace_seconds]   grace_seconds uint 0..86400 */
struct drover_kill {
    char     flow_run_id[DROVER_UUID_LEN + 1];
    uint32_t grace_seconds;
};

/* PING: [1, 10, seq, running]   PONG: [1, 11, seq, running]
 *   seq uint64; running uint: runs the sender has in flight.                   */
struct drover_ping {
    uint64_t seq;
    uint32_t running;
};

/* A decoded message of any type. */
struct drover_msg {
    int type;                       /* enum drover_msg_type */
    union {
        struct drover_hello   hello;
        struct drover_welcome welcome;
        struct drover_reason  reject;
        struct drover_job     job;
        struct drover_started started;
        struct drover_log     log;
        struct drover_exited  exited;
        struct drover_ack     ack;
        struct drover_kill    kill;
        struct drover_ping    ping;   /* PING and PONG */
        struct drover_reason  goodbye;
    } u;
};

/* Returns the upper-case name of a message type ("HELLO"), or "UNKNOWN". */
const char *drover_msg_type_name(int type);

/* Returns a lower-case name of an enum drover_decode_result ("malformed"),
 * for logs and counters. */
const char *drover_decode_result_name(int result);

/* Returns 1 when s is a flow run id in canonical form (36 characters,
 * lowercase hexadecimal digits and hyphens in 8-4-4-4-12 groups), else 0. */
int drover_uuid_valid(const char *s);

/* Decodes one body frame into *out.  On success returns DROVER_DECODE_OK and
 * out owns its strings.  On failure returns a negative drover_decode_result,
 * leaves *out cleared and writes a one-line reason naming the field into err.
 * For DROVER_DECODE_VERSION and DROVER_DECODE_UNKNOWN, out->type and (when
 * version_out is non-NULL) *version_out hold what the peer sent, clamped to
 * INT_MAX; nothing else in *out is set, so drover_msg_clear() is optional.
 * data may be freed as soon as the call returns. */
int drover_msg_decode(const void *data, size_t len, struct drover_msg *out,
                      int *version_out, char *err, size_t errlen);

/* Encodes *m.  Returns 0 and a malloc'd buffer in *buf / *len, or -1 with a
 * reason in err when a field breaks its limit (nothing is allocated).  A NULL
 * string field is encoded as "", which only fields that allow "" accept. */
int drover_msg_encode(const struct drover_msg *m, char **buf, size_t *len,
                      char *err, size_t errlen);

/* Releases what a decoded (or caller-filled, heap-owned) message holds and
 * zeroes it.  Accepts NULL. */
void drover_msg_clear(struct drover_msg *m);

/* One encode/decode pair per message type.  Each encoder checks the limits of
 * its own fields; each decoder expects a frame of exactly that type and
 * returns DROVER_DECODE_MALFORMED for a valid frame of another type.  A
 * decoded struct is released by putting it into a struct drover_msg of its
 * type and calling drover_msg_clear(). */
int drover_hello_encode(const struct drover_hello *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_hello_decode(const void *data, size_t len, struct drover_hello *m, char *err, size_t errlen);
int drover_welcome_encode(const struct drover_welcome *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_welcome_decode(const void *data, size_t len, struct drover_welcome *m, char *err, size_t errlen);
int drover_reject_encode(const struct drover_reason *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_reject_decode(const void *data, size_t len, struct drover_reason *m, char *err, size_t errlen);
int drover_job_encode(const struct drover_job *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_job_decode(const void *data, size_t len, struct drover_job *m, char *err, size_t errlen);
int drover_started_encode(const struct drover_started *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_started_decode(const void *data, size_t len, struct drover_started *m, char *err, size_t errlen);
int drover_log_encode(const struct drover_log *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_log_decode(const void *data, size_t len, struct drover_log *m, char *err, size_t errlen);
int drover_exited_encode(const struct drover_exited *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_exited_decode(const void *data, size_t len, struct drover_exited *m, char *err, size_t errlen);
int drover_ack_encode(const struct drover_ack *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_ack_decode(const void *data, size_t len, struct drover_ack *m, char *err, size_t errlen);
int drover_kill_encode(const struct drover_kill *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_kill_decode(const void *data, size_t len, struct drover_kill *m, char *err, size_t errlen);
int drover_ping_encode(const struct drover_ping *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_ping_decode(const void *data, size_t len, struct drover_ping *m, char *err, size_t errlen);
int drover_pong_encode(const struct drover_ping *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_pong_decode(const void *data, size_t len, struct drover_ping *m, char *err, size_t errlen);
int drover_goodbye_encode(const struct drover_reason *m, char **buf, size_t *len, char *err, size_t errlen);
int drover_goodbye_decode(const void *data, size_t len, struct drover_reason *m, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* DROVER_PROTOCOL_H */
