/*
 * Python's text forms of JSON values: str() as Prefect's templating inserts
 * it ("True", "None", "{'a': [1, 2.5]}"), repr() of strings with Python's
 * quote choice and escapes, and repr() of floats (shortest digits that read
 * back to the same double, "1e+16", "1.5e-07").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

/* Shortest decimal digits that round-trip: digits[] without a point, and
 * the decimal exponent decpt so that value = 0.d1d2... * 10^decpt. */
static int shortest_digits(double value, char *digits, size_t cap, int *decpt)
{
    char text[40];

    for (int prec = 1; prec <= 17; prec++) {
        char *end;
        int exp10;

        snprintf(text, sizeof(text), "%.*e", prec - 1, value);
        if (strtod(text, NULL) != value) {
            /* The correctly rounded string misses; at a power of two the
             * round-trip interval is lopsided and the neighbour on the wide
             * side may still read back, as Python's dtoa would find. */
            char alt[40];
            int ok = 0;

            for (int dir = -1; dir <= 1 && !ok; dir += 2) {
                double next = nextafter(value, dir < 0 ? -INFINITY : INFINITY);
                snprintf(alt, sizeof(alt), "%.*e", prec - 1, next);
                if (strcmp(alt, text) != 0 && strtod(alt, NULL) == value) {
                    memcpy(text, alt, sizeof(text));
                    ok = 1;
                }
            }
            if (!ok)
                continue;
        }
        /* text is [-]d[.ddd]e[+-]XX */
        {
            const char *p = text;
            size_t n = 0;

            if (*p == '-')
                p++;
            for (; *p && *p != 'e'; p++) {
                if (*p == '.')
                    continue;
                if (n + 1 < cap)
                    digits[n++] = *p;
            }
            while (n > 1 && digits[n - 1] == '0')
                n--;
            digits[n] = '\0';
            exp10 = (int)strtol(p + 1, &end, 10);
            *decpt = exp10 + 1;
        }
        return 0;
    }
    return -1;
}

void render_pyfloat_append(struct render_buf *buf, double value)
{
    char digits[32];
    char num[16];
    int decpt;
    size_t ndig;

    if (isnan(value)) {
        render_buf_append(buf, "nan", 3);
        return;
    }
    if (isinf(value)) {
        if (value < 0)
            render_buf_append(buf, "-inf", 4);
        else
            render_buf_append(buf, "inf", 3);
        return;
    }
    if (signbit(value))
        render_buf_putc(buf, '-');
    if (value == 0.0) {
        render_buf_append(buf, "0.0", 3);
        return;
    }
    if (shortest_digits(fabs(value), digits, sizeof(digits), &decpt) < 0) {
        /* Not reached for finite doubles: 17 digits always round-trip. */
        snprintf(digits, sizeof(digits), "%.17g", fabs(value));
        render_buf_append(buf, digits, strlen(digits));
        return;
    }
    ndig = strlen(digits);

    /* float.__repr__ switches to exponent form outside 1e-4 <= |x| < 1e16. */
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            render_buf_append(buf, "0.", 2);
            for (int i = 0; i < -decpt; i++)
                render_buf_putc(buf, '0');
            render_buf_append(buf, digits, ndig);
        } else if ((size_t)decpt >= ndig) {
            render_buf_append(buf, digits, ndig);
            for (size_t i = ndig; i < (size_t)decpt; i++)
                render_buf_putc(buf, '0');
            render_buf_append(buf, ".0", 2);
        } else {
            render_buf_append(buf, digits, (size_t)decpt);
            render_buf_putc(buf, '.');
            render_buf_append(buf, digits + decpt, ndig - (size_t)decpt);
        }
        return;
    }
    render_buf_putc(buf, digits[0]);
    if (ndig > 1) {
        render_buf_putc(buf, '.');
        render_buf_append(buf, digits + 1, ndig - 1);
    }
    snprintf(num, sizeof(num), "e%c%02d", decpt - 1 < 0 ? '-' : '+', abs(decpt - 1));
    render_buf_append(buf, num, strlen(num));
}

/* Decimal text of an integer; snprintf is slow enough to show in profiles. */
void render_int_append(struct render_buf *buf, json_int_t value)
{
    char text[24];
    char *p = text + sizeof(text);
    unsigned long long u = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (value < 0)
        *--p = '-';
    render_buf_append(buf, p, (size_t)(text + sizeof(text) - p));
}

static void append_hex_escape(struct render_buf *buf, uint32_t cp)
{
    char esc[16];

    if (cp <= 0xFF)
        snprintf(esc, sizeof(esc), "\\x%02x", (unsigned)cp);
    else if (cp <= 0xFFFF)
        snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
    else
        snprintf(esc, sizeof(esc), "\\U%08x", (unsigned)cp);
    render_buf_append(buf, esc, strlen(esc));
}

/* repr() of a str: single quotes unless the text has ' and no ". */
static void append_str_repr(struct render_buf *buf, const char *s, size_t len)
{
    char quote = '\'';
    size_t i = 0;

    if (memchr(s, '\'', len) && !memchr(s, '"', len))
        quote = '"';
    render_buf_putc(buf, quote);
    while (i < len) {
        uint32_t cp;
        size_t n = render_utf8_decode(s + i, len - i, &cp);

        if (cp == (uint32_t)quote || cp == '\\') {
            render_buf_putc(buf, '\\');
            render_buf_putc(buf, (char)cp);
        } else if (cp == '\t') {
            render_buf_append(buf, "\\t", 2);
        } else if (cp == '\n') {
            render_buf_append(buf, "\\n", 2);
        } else if (cp == '\r') {
            render_buf_append(buf, "\\r", 2);
        } else if (cp < 0x20 || cp == 0x7F) {
            append_hex_escape(buf, cp);
        } else if (cp < 0x7F) {
            render_buf_putc(buf, (char)cp);
        } else if (render_uc_is_printable(cp)) {
            render_buf_append(buf, s + i, n);
        } else {
            append_hex_escape(buf, cp);
        }
        i += n;
    }
    render_buf_putc(buf, quote);
}

void render_pytext_append(struct render_buf *buf, const json_t *value, int top)
{
    switch (json_typeof(value)) {
    case JSON_STRING:
        if (top)
            render_buf_append(buf, json_string_value(value), json_string_length(value));
        else
            append_str_repr(buf, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER:
        render_int_append(buf, json_integer_value(value));
        break;
    case JSON_REAL:
        render_pyfloat_append(buf, json_real_value(value));
        break;
    case JSON_TRUE:
        render_buf_append(buf, "True", 4);
        break;
    case JSON_FALSE:
        render_buf_append(buf, "False", 5);
        break;
    case JSON_NULL:
        render_buf_append(buf, "None", 4);
        break;
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        int first = 1;

        render_buf_putc(buf, '{');
        json_object_foreach((json_t *)value, key, item) {
            if (!first)
                render_buf_append(buf, ", ", 2);
            first = 0;
            append_str_repr(buf, key, strlen(key));
            render_buf_append(buf, ": ", 2);
            render_pytext_append(buf, item, 0);
        }
        render_buf_putc(buf, '}');
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *item;

        render_buf_putc(buf, '[');
        json_array_foreach(value, i, item) {
            if (i > 0)
                render_buf_append(buf, ", ", 2);
            render_pytext_append(buf, item, 0);
        }
        render_buf_putc(buf, ']');
        break;
    }
    }
}

char *render_pytext(const json_t *value)
{
    struct render_buf buf = {0};

    render_pytext_append(&buf, value, 1);
    return render_buf_finish(&buf);
}
