/*
 * Tests of the JSON scanner (proto/jsonscan.c) against the check it replaced:
 * jansson's json_loadb with JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL
 * | JSON_ALLOW_NUL, a top-level object, and at most 128 levels of nesting.
 * A table of hand-written cases states the expected verdicts.  Texts made by
 * a seeded generator, and mutations of them, must get the same verdict from
 * both.
 *
 *   proto_jsonscan [ITERATIONS]     (default 200000)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "drover/protocol.h"
#include "jsonscan.h"

struct scan_case {
    const char *text;
    int accepted;   /* 1: a valid object */
};

static const struct scan_case cases[] = {
    {"{}", 1},
    {" \t\r\n{ } \n", 1},
    {"{\"a\":1}", 1},
    {"[]", 0},
    {"[1]", 0},
    {"", 0},
    {"   ", 0},
    {"1", 0},
    {"\"x\"", 0},
    {"null", 0},
    {"{} {}", 0},
    {"{}x", 0},
    {"{", 0},
    {"{\"a\"}", 0},
    {"{\"a\":}", 0},
    {"{\"a\":1,}", 0},
    {"{,}", 0},
    {"{\"a\":[1,]}", 0},
    {"{\"a\":[,1]}", 0},
    {"{\"a\" : [ 1 , 2 ] , \"b\" : { } }", 1},
    {"{a:1}", 0},
    {"{'a':1}", 0},
    /* literals */
    {"{\"a\":true,\"b\":false,\"c\":null}", 1},
    {"{\"a\":tru}", 0},
    {"{\"a\":true1}", 0},
    {"{\"a\":truex}", 0},
    {"{\"a\":True}", 0},
    {"{\"a\":NaN}", 0},
    {"{\"a\":Infinity}", 0},
    {"{\"a\":-Infinity}", 0},
    /* numbers */
    {"{\"a\":0,\"b\":-0,\"c\":-0.0e-0,\"d\":1E+2,\"e\":0.5e-3}", 1},
    {"{\"a\":01}", 0},
    {"{\"a\":-01}", 0},
    {"{\"a\":1.}", 0},
    {"{\"a\":.5}", 0},
    {"{\"a\":-}", 0},
    {"{\"a\":+1}", 0},
    {"{\"a\":1e}", 0},
    {"{\"a\":1e+}", 0},
    {"{\"a\":1.5.3}", 0},
    {"{\"a\":0x10}", 0},
    {"{\"a\":123456789012345678901234567890}", 1},
    {"{\"a\":1e308}", 1},
    {"{\"a\":1e309}", 0},
    {"{\"a\":1e400}", 0},
    {"{\"a\":-1e309}", 0},
    {"{\"a\":1e-400}", 1},
    {"{\"a\":1e-99999999999999999999}", 1},
    {"{\"a\":1e99999999999999999999}", 0},
    {"{\"a\":0e99999999999}", 1},
    {"{\"a\":0.0000000000000000000000000000001e330}", 1},
    {"{\"a\":0.0000000000000000000000000000001e340}", 0},
    {"{\"a\":1.7976931348623157e308}", 1},
    {"{\"a\":1.7976931348623158e308}", 1},
    /* 2^1024 - 2^970, halfway between DBL_MAX and 2^1024, rounds to even:
     * infinity.  One less rounds to DBL_MAX. */
    {"{\"a\":1.797693134862315807937289714053034151e308}", 0},
    {"{\"a\":1.797693134862315807937289714053034150e308}", 1},
    {"{\"a\":-1.797693134862315807937289714053034151e308}", 0},
    {"{\"a\":0.1797693134862315807937289714053034151e309}", 0},
    {"{\"a\":" "1797693134862315807937289714053034150799341327100378269361737789804449682927647509466490"
     "1797758720709633028641669288791094655554785194040263065748867150582068190890200070838367"
     "6273854845817711531764475730270069855571366959622842914819860834936475292719074168444365"
     "510704342711559699508093042880177904174497792" "}", 0},
    {"{\"a\":" "1797693134862315807937289714053034150799341327100378269361737789804449682927647509466490"
     "1797758720709633028641669288791094655554785194040263065748867150582068190890200070838367"
     "6273854845817711531764475730270069855571366959622842914819860834936475292719074168444365"
     "510704342711559699508093042880177904174497791" "}", 1},
    {"{\"a\":" "1797693134862315807937289714053034150799341327100378269361737789804449682927647509466490"
     "1797758720709633028641669288791094655554785194040263065748867150582068190890200070838367"
     "6273854845817711531764475730270069855571366959622842914819860834936475292719074168444365"
     "510704342711559699508093042880177904174497792" ".0e-1}", 1},
    /* strings */
    {"{\"a\":\"\"}", 1},
    {"{\"a\":\"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\"}", 1},
    {"{\"a\":\"\\x\"}", 0},
    {"{\"a\":\"\\u00e9\\u00E9\"}", 1},
    {"{\"a\":\"\\u00g9\"}", 0},
    {"{\"a\":\"\\u00e\"}", 0},
    {"{\"a\":\"\\u0000\"}", 1},
    {"{\"\\u0000\":1}", 0},
    {"{\"a\\u0000b\":1}", 0},
    {"{\"a\":\"\\ud800\"}", 0},
    {"{\"a\":\"\\udc00\"}", 0},
    {"{\"a\":\"\\ud800\\udc00\"}", 1},
    {"{\"a\":\"\\uD83D\\uDE00\"}", 1},
    {"{\"a\":\"\\ud800\\u0041\"}", 0},
    {"{\"a\":\"\\ud800x\"}", 0},
    {"{\"a\":\"\\udbff\\udfff\"}", 1},
    {"{\"a\":\"tab\there\"}", 0},
    {"{\"a\":\"nl\nhere\"}", 0},
    {"{\"a\":\"\x7f\"}", 1},
    {"{\"a\":\"unterminated}", 0},
    {"{\"a\":\"caf\xc3\xa9\"}", 1},
    {"{\"a\":\"\xc3\"}", 0},
    {"{\"a\":\"\xc0\xaf\"}", 0},
    {"{\"a\":\"\xed\xa0\x80\"}", 0},
    {"{\"a\":\"\xf4\x90\x80\x80\"}", 0},
    {"{\"a\":\"\xf0\x9f\x98\x80\"}", 1},
    {"{\"a\":\"\xe2\x82\"}", 0},
    {"{\"a\":\"\x80\"}", 0},
    {"{\"a\":1}\xc3\xa9", 0},
    {"\xef\xbb\xbf{}", 0},
    /* duplicate member names */
    {"{\"a\":1,\"a\":2}", 0},
    {"{\"a\":1,\"b\":2,\"a\":3}", 0},
    {"{\"\":1,\"\":2}", 0},
    {"{\"a\":1,\"\\u0061\":2}", 0},
    {"{\"\\/\":1,\"/\":2}", 0},
    {"{\"\\u00e9\":1,\"\xc3\xa9\":2}", 0},
    {"{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}", 0},
    {"{\"a\":{\"a\":1},\"b\":1}", 1},
    {"{\"a\":{\"b\":1},\"b\":1}", 1},
    {"{\"a\":{\"b\":1,\"b\":2}}", 0},
    {"{\"a\":[{\"b\":1},{\"b\":1}]}", 1},
    {"{\"a\":{\"x\":{}},\"x\":1,\"b\":{\"x\":1}}", 1},
    {"{\"ab\":1,\"a\\u0062\":2}", 0},
    {"{\"ab\":1,\"a\\u0063\":2}", 1},
};

static int failures;

/* The check the codec made before the scanner.  The codec rejects a raw NUL
 * byte before any JSON check, and jansson 2.14 accepts one right after a
 * number ("{\"a\":2\0}"), so the reference rejects it first too. */
static int reference_accepts(const char *s, size_t n)
{
    size_t depth = 0, deepest = 0;
    int in_string = 0;
    json_error_t jerr;
    json_t *root;
    int ok;

    if (n > 0 && memchr(s, '\0', n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest)
                deepest = depth;
        } else if ((c == ']' || c == '}') && depth > 0) {
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

/* The scanner's verdict, with jansson deciding on duplicates where the
 * scanner cannot, as proto/codec.c does. */
static int scanner_accepts(const char *s, size_t n)
{
    switch (jsonscan(s, n, DROVER_MAX_JSON_DEPTH, NULL)) {
    case JSONSCAN_OBJECT:
        return 1;
    case JSONSCAN_TOO_MANY_KEYS:
        return reference_accepts(s, n);
    default:
        return 0;
    }
}

static void print_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n && i < 300; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c < 0x7f)
            putc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    if (n > 300)
        fprintf(stderr, "...(%zu bytes)", n);
}

static void check_case(const char *what, const char *s, size_t n, int expected)
{
    int scanner = scanner_accepts(s, n);

    if (scanner == expected)
        return;
    failures++;
    fprintf(stderr, "FAIL %s: scanner %s, expected %s: ", what, scanner ? "accepts" : "rejects",
            expected ? "accept" : "reject");
    print_text(s, n);
    fputc('\n', stderr);
}

static void check_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s = cases[i].text;
        size_t n = strlen(s);

        check_case("table", s, n, cases[i].accepted);
        if (reference_accepts(s, n) != cases[i].accepted) {
            failures++;
            fprintf(stderr, "FAIL table entry disagrees with jansson: ");
            print_text(s, n);
            fputc('\n', stderr);
        }
    }
}

/* Nesting at the limit is accepted, one level more is rejected. */
static void check_depth(void)
{
    char text[2 * (DROVER_MAX_JSON_DEPTH + 1) + 16];

    for (unsigned levels = DROVER_MAX_JSON_DEPTH; levels <= DROVER_MAX_JSON_DEPTH + 1; levels++) {
        size_t n = 0;

        text[n++] = '{';
        memcpy(text + n, "\"a\":", 4);
        n += 4;
        for (unsigned k = 1; k < levels; k++)
            text[n++] = '[';
        for (unsigned k = 1; k < levels; k++)
            text[n++] = ']';
        text[n++] = '}';
        check_case("depth", text, n, levels <= DROVER_MAX_JSON_DEPTH);
        if (levels > DROVER_MAX_JSON_DEPTH && jsonscan(text, n, DROVER_MAX_JSON_DEPTH, NULL) != JSONSCAN_TOO_DEEP) {
            failures++;
            fprintf(stderr, "FAIL depth: %u levels are not reported as too deep\n", levels);
        }
    }
}

/* An object of more member names than the scanner tracks: jansson decides,
 * with a duplicate first and last, and without one. */
static void check_many_keys(void)
{
    static char text[64 * 1024];

    for (int dup = 0; dup < 2; dup++) {
        size_t n = 0;

        text[n++] = '{';
        for (int k = 0; k < 2000; k++)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s\"key%d\":%d", k ? "," : "", k, k);
        if (dup)
            n += (size_t)snprintf(text + n, sizeof text - n, ",\"key0\":1");
        text[n++] = '}';
        check_case("many keys", text, n, !dup);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

struct gen {
    char buf[4096];
    size_t n;
};

static void gen_put(struct gen *g, const char *s)
{
    size_t len = strlen(s);

    if (g->n + len < sizeof g->buf)
        memcpy(g->buf + g->n, s, len), g->n += len;
}

static const char *const gen_strings[] = {
    "\"a\"", "\"b\"", "\"\\u0061\"", "\"\"", "\"\\u0000\"", "\"\\ud800\\udc00\"", "\"\\ud800\"",
    "\"\\udc00\"", "\"caf\xc3\xa9\"", "\"caf\\u00e9\"", "\"\\/\"", "\"/\"", "\"\\n\"", "\"\xc3\"",
    "\"\xed\xa0\x80\"", "\"x\\\"y\"", "\"\\q\"", "\"\t\"", "\"\\uD83D\\uDE00\"", "\"\xf0\x9f\x98\x80\"",
};

static const char *const gen_numbers[] = {
    "0", "-0", "1", "-1", "01", "1.5", "1.", ".5", "1e308", "1e309", "-1e309", "1.7976931348623157e308",
    "1.797693134862315807937289714053e308", "1.797693134862315807937289714052e308", "0.1e309",
    "0.01e310", "10e307", "100e306", "99e307", "18e307", "17e307", "1e-400", "123456789012345678901234567890",
    "1E+2", "1e", "-", "2e-0", "0.0e999999", "1e99999999999",
};

static const char *const gen_words[] = {"true", "false", "null", "tru", "nul", "NaN", "True"};

static void gen_value(struct gen *g, int depth);

static void gen_space(struct gen *g)
{
    static const char *const spaces[] = {"", "", "", " ", "\n", "\t ", "\r\n"};

    gen_put(g, spaces[rng() % 7]);
}

static void gen_container(struct gen *g, int depth)
{
    int object = rng() % 3 != 0;
    int count = (int)(rng() % 5);

    gen_put(g, object ? "{" : "[");
    for (int k = 0; k < count; k++) {
        if (k)
            gen_put(g, ",");
        gen_space(g);
        if (object) {
            gen_put(g, gen_strings[rng() % (sizeof gen_strings / sizeof gen_strings[0])]);
            gen_space(g);
            gen_put(g, ":");
        }
        gen_space(g);
        gen_value(g, depth + 1);
    }
    gen_space(g);
    gen_put(g, object ? "}" : "]");
}

static void gen_value(struct gen *g, int depth)
{
    switch (depth > 6 ? 1 + rng() % 3 : rng() % 5) {
    case 0:
    case 4:
        gen_container(g, depth);
        break;
    case 1:
        gen_put(g, gen_strings[rng() % (sizeof gen_strings / sizeof gen_strings[0])]);
        break;
    case 2:
        gen_put(g, gen_numbers[rng() % (sizeof gen_numbers / sizeof gen_numbers[0])]);
        break;
    default:
        gen_put(g, gen_words[rng() % (sizeof gen_words / sizeof gen_words[0])]);
        break;
    }
}

/* Changes one to three bytes: a flip, a deletion, or an inserted byte. */
static void gen_mutate(struct gen *g)
{
    static const char interesting[] = "{}[],:\"\\u0e.-+ \x80\xc3\xff";
    int edits = 1 + (int)(rng() % 3);

    for (int e = 0; e < edits && g->n > 0; e++) {
        size_t at = rng() % g->n;

        switch (rng() % 3) {
        case 0:
            g->buf[at] = interesting[rng() % (sizeof interesting - 1)];
            break;
        case 1:
            memmove(g->buf + at, g->buf + at + 1, g->n - at - 1);
            g->n--;
            break;
        default:
            if (g->n + 1 < sizeof g->buf) {
                memmove(g->buf + at + 1, g->buf + at, g->n - at);
                g->buf[at] = interesting[rng() % (sizeof interesting - 1)];
                g->n++;
            }
            break;
        }
    }
}

static void check_generated(long iterations)
{
    long accepted = 0;

    for (long i = 0; i < iterations; i++) {
        struct gen g = {.n = 0};
        int expected;

        gen_space(&g);
        gen_container(&g, 0);
        gen_space(&g);
        if (i % 2)
            gen_mutate(&g);
        expected = reference_accepts(g.buf, g.n);
        accepted += expected;
        check_case("generated", g.buf, g.n, expected);
        if (failures > 20)
            return;
    }
    printf("generated: %ld texts, %ld valid objects\n", iterations, accepted);
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;

    check_table();
    check_case("raw NUL after a number", "{\"a\":2\0}", 8, 0);
    check_case("raw NUL in a string", "{\"a\":\"x\0\"}", 10, 0);
    check_depth();
    check_many_keys();
    check_generated(iterations);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
