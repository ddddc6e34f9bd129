/*
 * The renderer's canonical JSON text: byte for byte what Python's
 * json.dumps(value, indent=N) prints with its defaults (ensure_ascii=True,
 * so DEL and non-ASCII text are written as \uXXXX escapes and astral characters as
 * surrogate pairs; floats as float.__repr__).
 */
#include <stdio.h>
#include <string.h>

#include "render.h"

static void append_json_string(struct render_buf *buf, const char *s, size_t len)
{
    char esc[16];
    size_t i = 0;

    render_buf_putc(buf, '"');
    while (i < len) {
        uint32_t cp;
        size_t n = render_utf8_decode(s + i, len - i, &cp);

        switch (cp) {
        case '"':  render_buf_append(buf, "\\\"", 2); break;
        case '\\': render_buf_append(buf, "\\\\", 2); break;
        case '\n': render_buf_append(buf, "\\n", 2); break;
        case '\r': render_buf_append(buf, "\\r", 2); break;
        case '\t': render_buf_append(buf, "\\t", 2); break;
        case '\b': render_buf_append(buf, "\\b", 2); break;
        case '\f': render_buf_append(buf, "\\f", 2); break;
        default:
            if (cp < 0x20 || (cp >= 0x7F && cp <= 0xFFFF)) {
                snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
                render_buf_append(buf, esc, 6);
            } else if (cp > 0xFFFF) {
                uint32_t v = cp - 0x10000;
                snprintf(esc, sizeof(esc), "\\u%04x\\u%04x",
                         (unsigned)(0xD800 | (v >> 10)), (unsigned)(0xDC00 | (v & 0x3FF)));
                render_buf_append(buf, esc, 12);
            } else {
                render_buf_putc(buf, (char)cp);
            }
        }
        i += n;
    }
    render_buf_putc(buf, '"');
}

static void append_newline(struct render_buf *buf, int indent, int level)
{
    render_buf_putc(buf, '\n');
    for (int i = 0; i < indent * level; i++)
        render_buf_putc(buf, ' ');
}

static void dump_value(struct render_buf *buf, const json_t *value, int indent, int level)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        int first = 1;

        if (json_object_size(value) == 0) {
            render_buf_append(buf, "{}", 2);
            break;
        }
        render_buf_putc(buf, '{');
        json_object_foreach((json_t *)value, key, item) {
            if (!first)
                render_buf_append(buf, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            first = 0;
            if (indent >= 0)
                append_newline(buf, indent, level + 1);
            append_json_string(buf, key, strlen(key));
            render_buf_append(buf, ": ", 2);
            dump_value(buf, item, indent, level + 1);
        }
        if (indent >= 0)
            append_newline(buf, indent, level);
        render_buf_putc(buf, '}');
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *item;

        if (json_array_size(value) == 0) {
            render_buf_append(buf, "[]", 2);
            break;
        }
        render_buf_putc(buf, '[');
        json_array_foreach(value, i, item) {
            if (i > 0)
                render_buf_append(buf, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0)
                append_newline(buf, indent, level + 1);
            dump_value(buf, item, indent, level + 1);
        }
        if (indent >= 0)
            append_newline(buf, indent, level);
        render_buf_putc(buf, ']');
        break;
    }
    case JSON_STRING:
        append_json_string(buf, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER:
        render_int_append(buf, json_integer_value(value));
        break;
    case JSON_REAL:
        /* jansson stores finite reals only, so Infinity and NaN never occur. */
        render_pyfloat_append(buf, json_real_value(value));
        break;
    case JSON_TRUE:
        render_buf_append(buf, "true", 4);
        break;
    case JSON_FALSE:
        render_buf_append(buf, "false", 5);
        break;
    case JSON_NULL:
        render_buf_append(buf, "null", 4);
        break;
    }
}

void render_dumps_append(struct render_buf *buf, const json_t *value, int indent)
{
    dump_value(buf, value, indent, 0);
}

char *render_dumps(const json_t *value, int indent)
{
    struct render_buf buf = {0};

    dump_value(&buf, value, indent, 0);
    return render_buf_finish(&buf);
}
