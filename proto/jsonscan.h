/*
 * A validating JSON syntax scanner for the codec's json fields (PROTOCOL.md
 * section 3.4).  It accepts the texts that jansson 2.14's json_loadb accepts
 * with JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL:
 * an array or object of RFC 8259 JSON in strict UTF-8, without duplicate
 * member names, NUL in member names or numbers beyond the double range.  It
 * adds a nesting limit, and it builds and allocates nothing.
 * tests/proto/test_jsonscan.c and the codec's fuzz target compare its
 * verdicts with jansson's.
 */
#ifndef DROVER_JSONSCAN_H
#define DROVER_JSONSCAN_H

#include <stddef.h>

enum jsonscan_result {
    JSONSCAN_OBJECT = 0,       /* valid, the top-level value is an object */
    JSONSCAN_ARRAY,            /* valid, the top-level value is an array */
    JSONSCAN_INVALID,          /* not JSON, or a rule above is broken */
    JSONSCAN_TOO_DEEP,         /* nests deeper than max_depth */
    JSONSCAN_TOO_MANY_KEYS     /* valid but for duplicate member names, which
                                  were not all checked because the open objects
                                  held more names than the scanner tracks: the
                                  caller checks them with a parser */
};

/* Details of a result other than JSONSCAN_OBJECT or JSONSCAN_ARRAY. */
struct jsonscan_error {
    const char *reason;        /* static text, e.g. "duplicate object key" */
    size_t      offset;        /* byte offset in the text */
};

/* Scans the n bytes at s.  Returns an enum jsonscan_result, and fills
 * *error (which may be NULL) when the result is not OBJECT or ARRAY.  The
 * top-level value counts as level 1 of max_depth. */
enum jsonscan_result jsonscan(const char *s, size_t n, unsigned max_depth, struct jsonscan_error *error);

#endif /* DROVER_JSONSCAN_H */
