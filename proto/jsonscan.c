/*
 * The JSON syntax scanner of jsonscan.h: one pass over the text with an
 * explicit stack and no allocation.  Duplicate member names are found with
 * a small open-addressing table of the names of the objects still open, and
 * an object's names leave the table when it closes.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"

/* jansson's own nesting limit (JSON_PARSER_MAX_DEPTH in 2.14). */
#define JSONSCAN_DEPTH_CAP 2048u

/* Member names of the open objects that the duplicate check tracks, and the
 * slots of its hash table (a power of two, twice the names). */
#define JSONSCAN_MAX_KEYS  512u
#define JSONSCAN_SLOTS     1024u

/* Significant digits given to strtod for a number near the double limit.
 * The halfway point between DBL_MAX and 2^1024 has 309 significant
 * digits, so cutting more digits than that never changes the outcome. */
#define JSONSCAN_NUMBER_DIGITS 400

struct jsonscan_key {
    uint32_t start;            /* offset of the first byte after the quote */
    uint32_t len;              /* raw bytes up to the closing quote */
    uint32_t hash;             /* of the decoded bytes */
    uint16_t depth;            /* level of the object it belongs to */
    uint8_t  escaped;          /* contains a backslash escape */
};

struct jsonscan {
    const unsigned char *s;
    size_t n;
    size_t i;
    struct jsonscan_error *error;
    enum jsonscan_result result;      /* of the failure, when one returned -1 */
    struct jsonscan_key keys[JSONSCAN_MAX_KEYS];
    uint16_t nkeys;
    int overflow;                     /* a name was not tracked */
    uint16_t slots[JSONSCAN_SLOTS];   /* index + 1 into keys, 0 when free */
};

/* Records why the text is rejected; returns -1. */
static int jsonscan_fail(struct jsonscan *sc, enum jsonscan_result result, const char *reason)
{
    sc->result = result;
    if (sc->error) {
        sc->error->reason = reason;
        sc->error->offset = sc->i;
    }
    return -1;
}

static void jsonscan_skip_space(struct jsonscan *sc)
{
    while (sc->i < sc->n) {
        unsigned char c = sc->s[sc->i];

        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            return;
        sc->i++;
    }
}

static int jsonscan_hex4(const unsigned char *p, uint32_t *out)
{
    uint32_t v = 0;

    for (int k = 0; k < 4; k++) {
        unsigned char c = p[k];

        if (c >= '0' && c <= '9')
            v = v * 16 + (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v = v * 16 + (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Returns the length of the valid UTF-8 sequence at p (at most left bytes),
 * or 0 when it is invalid: overlong, a surrogate, or beyond U+10FFFF. */
static size_t jsonscan_utf8_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    size_t need;
    uint32_t cp, min;

    if (c >= 0xc2 && c <= 0xdf) {
        need = 1; cp = c & 0x1fu; min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2; cp = c & 0x0fu; min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3; cp = c & 0x07u; min = 0x10000;
    } else {
        return 0;
    }
    if (left <= need)
        return 0;
    for (size_t k = 1; k <= need; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[k] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need + 1;
}

/* Checks the \u escape at sc->i (the backslash), with the low surrogate
 * that must follow a high one.  Stores the code point and moves past. */
static int jsonscan_unicode_escape(struct jsonscan *sc, uint32_t *cp)
{
    uint32_t low;

    if (sc->n - sc->i < 6 || jsonscan_hex4(sc->s + sc->i + 2, cp) < 0)
        return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid escape");
    if (*cp >= 0xdc00 && *cp <= 0xdfff)
        return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid Unicode escape: a lone low surrogate");
    if (*cp >= 0xd800 && *cp <= 0xdbff) {
        if (sc->n - sc->i < 12 || sc->s[sc->i + 6] != '\\' || sc->s[sc->i + 7] != 'u' ||
            jsonscan_hex4(sc->s + sc->i + 8, &low) < 0 || low < 0xdc00 || low > 0xdfff)
            return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid Unicode escape: a high surrogate without a low one");
        *cp = 0x10000 + ((*cp - 0xd800) << 10) + (low - 0xdc00);
        sc->i += 6;
    }
    sc->i += 6;
    return 0;
}

/* Scans the string whose opening quote is at sc->i and moves past its
 * closing quote.  For a member name, fills key and rejects \u0000. */
static int jsonscan_string(struct jsonscan *sc, struct jsonscan_key *key)
{
    const unsigned char *s = sc->s;
    size_t n = sc->n;
    int escaped = 0;
    size_t start = ++sc->i;

    for (;;) {
        unsigned char c;

        while (sc->i < n && s[sc->i] >= 0x20 && s[sc->i] < 0x80 && s[sc->i] != '"' && s[sc->i] != '\\')
            sc->i++;
        if (sc->i >= n)
            return jsonscan_fail(sc, JSONSCAN_INVALID, "premature end of input in a string");
        c = s[sc->i];
        if (c == '"')
            break;
        if (c < 0x20)
            return jsonscan_fail(sc, JSONSCAN_INVALID, "control character in a string");
        if (c >= 0x80) {
            size_t len = jsonscan_utf8_len(s + sc->i, n - sc->i);

            if (len == 0)
                return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid UTF-8 in a string");
            sc->i += len;
            continue;
        }
        escaped = 1;
        if (sc->i + 1 >= n)
            return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid escape");
        switch (s[sc->i + 1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            sc->i += 2;
            break;
        case 'u': {
            uint32_t cp;

            if (jsonscan_unicode_escape(sc, &cp) < 0)
                return -1;
            if (cp == 0 && key)
                return jsonscan_fail(sc, JSONSCAN_INVALID, "NUL byte in object key not supported");
            break;
        }
        default:
            return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid escape");
        }
    }
    if (key) {
        key->start = (uint32_t)start;
        key->len = (uint32_t)(sc->i - start);
        key->escaped = (uint8_t)escaped;
    }
    sc->i++;
    return 0;
}

/* Decodes the next unit of a validated member name at *p into out as UTF-8,
 * one raw byte or the bytes of one escape, and moves *p past it.  Returns
 * the number of bytes stored. */
static size_t jsonscan_decode_next(const unsigned char **p, unsigned char out[4])
{
    const unsigned char *q = *p;
    uint32_t cp = 0, low = 0;

    if (q[0] != '\\') {
        out[0] = q[0];
        *p = q + 1;
        return 1;
    }
    switch (q[1]) {
    case 'b': out[0] = '\b'; break;
    case 'f': out[0] = '\f'; break;
    case 'n': out[0] = '\n'; break;
    case 'r': out[0] = '\r'; break;
    case 't': out[0] = '\t'; break;
    case 'u':
        jsonscan_hex4(q + 2, &cp);
        *p = q + 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            jsonscan_hex4(q + 8, &low);
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            *p = q + 12;
        }
        if (cp < 0x80) {
            out[0] = (unsigned char)cp;
            return 1;
        }
        if (cp < 0x800) {
            out[0] = (unsigned char)(0xc0 | (cp >> 6));
            out[1] = (unsigned char)(0x80 | (cp & 0x3f));
            return 2;
        }
        if (cp < 0x10000) {
            out[0] = (unsigned char)(0xe0 | (cp >> 12));
            out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
            out[2] = (unsigned char)(0x80 | (cp & 0x3f));
            return 3;
        }
        out[0] = (unsigned char)(0xf0 | (cp >> 18));
        out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[3] = (unsigned char)(0x80 | (cp & 0x3f));
        return 4;
    default:   /* '"', '\\', '/' */
        out[0] = q[1];
        break;
    }
    *p = q + 2;
    return 1;
}

/* FNV-1a over the decoded bytes of a member name. */
static uint32_t jsonscan_hash(const struct jsonscan *sc, const struct jsonscan_key *key)
{
    const unsigned char *p = sc->s + key->start, *end = p + key->len;
    unsigned char buf[4];
    uint32_t h = 2166136261u;

    while (p < end) {
        size_t len = key->escaped ? jsonscan_decode_next(&p, buf) : (buf[0] = *p++, 1);

        for (size_t k = 0; k < len; k++)
            h = (h ^ buf[k]) * 16777619u;
    }
    return h;
}

/* Compares the decoded bytes of two member names. */
static int jsonscan_same_name(const struct jsonscan *sc, const struct jsonscan_key *a,
                              const struct jsonscan_key *b)
{
    const unsigned char *p = sc->s + a->start, *pe = p + a->len;
    const unsigned char *q = sc->s + b->start, *qe = q + b->len;
    unsigned char x[4], y[4];
    size_t xl = 0, yl = 0, xi = 0, yi = 0;

    if (!a->escaped && !b->escaped)
        return a->len == b->len && memcmp(p, q, a->len) == 0;
    for (;;) {
        if (xi == xl && p < pe) {
            xl = jsonscan_decode_next(&p, x);
            xi = 0;
        }
        if (yi == yl && q < qe) {
            yl = jsonscan_decode_next(&q, y);
            yi = 0;
        }
        if (xi == xl || yi == yl)
            return xi == xl && yi == yl;
        if (x[xi++] != y[yi++])
            return 0;
    }
}

/* Adds a member name of the object at depth; rejects a duplicate.  A name
 * beyond JSONSCAN_MAX_KEYS is not tracked, and the scan ends with
 * JSONSCAN_TOO_MANY_KEYS instead of a verdict on duplicates.  The
 * probe sequence of a hash collision is bounded by the table size, so at
 * worst JSONSCAN_MAX_KEYS^2 / 2 names are compared per text. */
static int jsonscan_add_key(struct jsonscan *sc, struct jsonscan_key *key, unsigned depth)
{
    uint32_t slot;

    if (sc->nkeys == JSONSCAN_MAX_KEYS) {
        sc->overflow = 1;
        return 0;
    }
    key->depth = (uint16_t)depth;
    key->hash = jsonscan_hash(sc, key);
    slot = (key->hash ^ depth * 0x9e3779b9u) & (JSONSCAN_SLOTS - 1);
    while (sc->slots[slot]) {
        const struct jsonscan_key *other = &sc->keys[sc->slots[slot] - 1];

        if (other->depth == depth && other->hash == key->hash && jsonscan_same_name(sc, other, key)) {
            sc->i = key->start - 1;
            return jsonscan_fail(sc, JSONSCAN_INVALID, "duplicate object key");
        }
        slot = (slot + 1) & (JSONSCAN_SLOTS - 1);
    }
    sc->keys[sc->nkeys] = *key;
    sc->slots[slot] = (uint16_t)(++sc->nkeys);
    return 0;
}

/* Forgets the names added since there were base of them.  Removing the
 * latest entries of a linear-probing table first leaves it exactly as it
 * was before they were added. */
static void jsonscan_drop_keys(struct jsonscan *sc, uint16_t base)
{
    while (sc->nkeys > base) {
        const struct jsonscan_key *key = &sc->keys[sc->nkeys - 1];
        uint32_t slot = (key->hash ^ key->depth * 0x9e3779b9u) & (JSONSCAN_SLOTS - 1);

        while (sc->slots[slot] != sc->nkeys)
            slot = (slot + 1) & (JSONSCAN_SLOTS - 1);
        sc->slots[slot] = 0;
        sc->nkeys--;
    }
}

/* Checks that a number whose first significant digit has the decimal
 * exponent e10 (value = d.ddd x 10^e10) fits a double, as strtod decides
 * for jansson.  Only e10 == 308 needs strtod: digits points to the
 * significant digits, which may contain the decimal point. */
static int jsonscan_number_fits(const unsigned char *digits, const unsigned char *end, int64_t e10)
{
    char buf[JSONSCAN_NUMBER_DIGITS + 16];
    int k = 0;
    double v;

    if (e10 < 308)
        return 1;
    if (e10 > 308)
        return 0;
    for (const unsigned char *p = digits; p < end && k < JSONSCAN_NUMBER_DIGITS; p++) {
        if (*p >= '0' && *p <= '9')
            buf[k++] = (char)*p;
        else if (*p != '.')
            break;
    }
    /* An integer and an exponent, without a decimal point that would depend
     * on the locale: D x 10^(308 - (k - 1)). */
    snprintf(buf + k, sizeof buf - (size_t)k, "e%d", 309 - k);
    errno = 0;
    v = strtod(buf, NULL);
    return !(errno == ERANGE && isinf(v));
}

/* Scans the number at sc->i (RFC 8259 grammar) and rejects a magnitude
 * beyond the double range. */
static int jsonscan_number(struct jsonscan *sc)
{
    const unsigned char *s = sc->s;
    size_t n = sc->n, int_start, int_end, frac_start = 0, frac_end = 0;
    const unsigned char *digits = NULL;
    int64_t e10, exponent = 0;
    int exp_negative = 0;

    if (s[sc->i] == '-')
        sc->i++;
    int_start = sc->i;
    if (sc->i >= n || s[sc->i] < '0' || s[sc->i] > '9')
        return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid number");
    if (s[sc->i] == '0') {
        sc->i++;
    } else {
        while (sc->i < n && s[sc->i] >= '0' && s[sc->i] <= '9')
            sc->i++;
    }
    int_end = sc->i;
    if (sc->i < n && s[sc->i] == '.') {
        frac_start = ++sc->i;
        while (sc->i < n && s[sc->i] >= '0' && s[sc->i] <= '9')
            sc->i++;
        frac_end = sc->i;
        if (frac_end == frac_start)
            return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid number");
    }
    if (sc->i < n && (s[sc->i] == 'e' || s[sc->i] == 'E')) {
        size_t exp_start;

        sc->i++;
        if (sc->i < n && (s[sc->i] == '+' || s[sc->i] == '-'))
            exp_negative = s[sc->i++] == '-';
        exp_start = sc->i;
        while (sc->i < n && s[sc->i] >= '0' && s[sc->i] <= '9') {
            /* Saturates far beyond any exponent a double or a text reaches. */
            if (exponent < 1000000000)
                exponent = exponent * 10 + (s[sc->i] - '0');
            sc->i++;
        }
        if (sc->i == exp_start)
            return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid number");
    }

    /* The decimal exponent of the first significant digit. */
    if (s[int_start] != '0') {
        digits = s + int_start;
        e10 = (int64_t)(int_end - int_start) - 1;
    } else {
        size_t k = frac_start;

        while (k < frac_end && s[k] == '0')
            k++;
        if (k >= frac_end)
            return 0;   /* zero */
        digits = s + k;
        e10 = -(int64_t)(k - frac_start) - 1;
    }
    e10 += exp_negative ? -exponent : exponent;
    if (!jsonscan_number_fits(digits, s + (frac_end ? frac_end : int_end), e10)) {
        sc->i = int_start;
        return jsonscan_fail(sc, JSONSCAN_INVALID, "real number overflow");
    }
    return 0;
}

static int jsonscan_literal(struct jsonscan *sc)
{
    static const char *const words[] = {"true", "false", "null"};

    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
        size_t len = strlen(words[w]);

        if (sc->n - sc->i >= len && memcmp(sc->s + sc->i, words[w], len) == 0) {
            sc->i += len;
            return 0;
        }
    }
    return jsonscan_fail(sc, JSONSCAN_INVALID, "invalid token");
}

enum jsonscan_result jsonscan(const char *text, size_t n, unsigned max_depth, struct jsonscan_error *error)
{
    struct jsonscan sc;
    unsigned char is_object[JSONSCAN_DEPTH_CAP + 1];
    uint16_t key_base[JSONSCAN_DEPTH_CAP + 1];
    struct jsonscan_key key;
    unsigned depth = 0;
    unsigned char c, top;
    int rc;

    sc.s = (const unsigned char *)text;
    sc.n = n;
    sc.i = 0;
    sc.error = error;
    sc.nkeys = 0;
    sc.overflow = 0;
    memset(sc.slots, 0, sizeof sc.slots);
    if (max_depth > JSONSCAN_DEPTH_CAP)
        max_depth = JSONSCAN_DEPTH_CAP;
    if (n > UINT32_MAX) {
        jsonscan_fail(&sc, JSONSCAN_TOO_MANY_KEYS, "text too long to check for duplicates");
        return sc.result;
    }

    jsonscan_skip_space(&sc);
    if (sc.i >= n || (sc.s[sc.i] != '{' && sc.s[sc.i] != '[')) {
        jsonscan_fail(&sc, JSONSCAN_INVALID, "'[' or '{' expected");
        return sc.result;
    }
    top = sc.s[sc.i];

value:
    jsonscan_skip_space(&sc);
    if (sc.i >= n) {
        jsonscan_fail(&sc, JSONSCAN_INVALID, "premature end of input");
        return sc.result;
    }
    c = sc.s[sc.i];
    if (c == '{' || c == '[') {
        if (++depth > max_depth) {
            jsonscan_fail(&sc, JSONSCAN_TOO_DEEP, "nesting too deep");
            return sc.result;
        }
        is_object[depth] = c == '{';
        key_base[depth] = sc.nkeys;
        sc.i++;
        jsonscan_skip_space(&sc);
        if (sc.i < n && sc.s[sc.i] == (c == '{' ? '}' : ']')) {
            sc.i++;
            depth--;
            goto after_value;
        }
        if (c == '[')
            goto value;
        goto member;
    }
    if (c == '"')
        rc = jsonscan_string(&sc, NULL);
    else if (c == '-' || (c >= '0' && c <= '9'))
        rc = jsonscan_number(&sc);
    else
        rc = jsonscan_literal(&sc);
    if (rc < 0)
        return sc.result;

after_value:
    jsonscan_skip_space(&sc);
    if (depth == 0) {
        if (sc.i != n) {
            jsonscan_fail(&sc, JSONSCAN_INVALID, "end of file expected");
            return sc.result;
        }
        if (sc.overflow) {
            jsonscan_fail(&sc, JSONSCAN_TOO_MANY_KEYS, "too many member names to check for duplicates");
            return sc.result;
        }
        return top == '{' ? JSONSCAN_OBJECT : JSONSCAN_ARRAY;
    }
    if (sc.i >= n) {
        jsonscan_fail(&sc, JSONSCAN_INVALID, "premature end of input");
        return sc.result;
    }
    c = sc.s[sc.i];
    if (c == ',') {
        sc.i++;
        if (is_object[depth])
            goto member;
        goto value;
    }
    if (c != (is_object[depth] ? '}' : ']')) {
        jsonscan_fail(&sc, JSONSCAN_INVALID, is_object[depth] ? "'}' or ',' expected" : "']' or ',' expected");
        return sc.result;
    }
    sc.i++;
    jsonscan_drop_keys(&sc, key_base[depth]);
    depth--;
    goto after_value;

member:
    jsonscan_skip_space(&sc);
    if (sc.i >= n || sc.s[sc.i] != '"') {
        jsonscan_fail(&sc, JSONSCAN_INVALID, "string expected as a member name");
        return sc.result;
    }
    if (jsonscan_string(&sc, &key) < 0 || jsonscan_add_key(&sc, &key, depth) < 0)
        return sc.result;
    jsonscan_skip_space(&sc);
    if (sc.i >= n || sc.s[sc.i] != ':') {
        jsonscan_fail(&sc, JSONSCAN_INVALID, "':' expected");
        return sc.result;
    }
    sc.i++;
    goto value;
}
