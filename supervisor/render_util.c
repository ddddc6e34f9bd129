/*
 * Small helpers shared by the renderer's files: the capped text buffer,
 * error formatting, UTF-8 decoding, Python truthiness and tree copies.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

static int buf_reserve(struct render_buf *buf, size_t extra)
{
    size_t need;
    size_t cap;
    char *data;

    if (buf->failed)
        return -1;
    if (extra > RENDER_MAX_TEXT || buf->len + extra + 1 > RENDER_MAX_TEXT) {
        buf->failed = 1;
        return -1;
    }
    need = buf->len + extra + 1;
    if (need <= buf->cap)
        return 0;
    if (!buf->data && need <= sizeof(buf->small)) {
        buf->data = buf->small;
        buf->cap = sizeof(buf->small);
        return 0;
    }
    cap = buf->cap ? buf->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > RENDER_MAX_TEXT)
        cap = RENDER_MAX_TEXT;
    if (buf->data == buf->small) {
        data = malloc(cap);
        if (data)
            memcpy(data, buf->small, buf->len + 1);
    } else {
        data = realloc(buf->data, cap);
    }
    if (!data) {
        buf->failed = 1;
        return -1;
    }
    buf->data = data;
    buf->cap = cap;
    return 0;
}

int render_buf_reserve_slow(struct render_buf *buf, size_t extra)
{
    return buf_reserve(buf, extra);
}

void render_buf_append_slow(struct render_buf *buf, const char *text, size_t len)
{
    if (buf_reserve(buf, len) < 0)
        return;
    if (len)
        memcpy(buf->data + buf->len, text, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
}

void render_buf_putc(struct render_buf *buf, char c)
{
    if (buf_reserve(buf, 1) < 0)
        return;
    buf->data[buf->len++] = c;
    buf->data[buf->len] = '\0';
}

char *render_buf_finish(struct render_buf *buf)
{
    char *text;

    if (!buf->failed && !buf->data)
        render_buf_append(buf, "", 0);
    if (buf->failed) {
        render_buf_free(buf);
        return NULL;
    }
    text = buf->data == buf->small ? strdup(buf->small) : buf->data;
    buf->data = NULL;
    buf->len = buf->cap = 0;
    return text;
}

void render_buf_free(struct render_buf *buf)
{
    if (buf->data != buf->small)
        free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

void render_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *render_excerpt(const char *text, char *out, size_t outlen)
{
    size_t max = outlen > 4 ? outlen - 4 : 0;
    size_t len = strlen(text);

    if (len <= max) {
        snprintf(out, outlen, "%s", text);
        return out;
    }
    /* Cut on a UTF-8 boundary so the message stays valid text. */
    while (max > 0 && ((unsigned char)text[max] & 0xC0) == 0x80)
        max--;
    snprintf(out, outlen, "%.*s...", (int)max, text);
    return out;
}

size_t render_utf8_decode(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len;
    uint32_t value;

    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    if ((u[0] & 0xE0) == 0xC0) {
        len = 2;
        value = u[0] & 0x1F;
    } else if ((u[0] & 0xF0) == 0xE0) {
        len = 3;
        value = u[0] & 0x0F;
    } else if ((u[0] & 0xF8) == 0xF0) {
        len = 4;
        value = u[0] & 0x07;
    } else {
        *cp = u[0];
        return 1;
    }
    if (len > n) {
        *cp = u[0];
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = u[0];
            return 1;
        }
        value = (value << 6) | (u[i] & 0x3F);
    }
    *cp = value;
    return len;
}

int render_truthy(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return json_object_size(value) > 0;
    case JSON_ARRAY:
        return json_array_size(value) > 0;
    case JSON_STRING:
        return json_string_length(value) > 0;
    case JSON_INTEGER:
        return json_integer_value(value) != 0;
    case JSON_REAL:
        return json_real_value(value) != 0.0;
    case JSON_TRUE:
        return 1;
    case JSON_FALSE:
    case JSON_NULL:
    default:
        return 0;
    }
}

json_t *render_copy(const json_t *value)
{
    json_t *copy;

    if (json_is_object(value)) {
        const char *key;
        json_t *item;
        void *iter;

        copy = json_object();
        if (!copy)
            return NULL;
        RENDER_OBJECT_FOREACH((json_t *)value, iter, key, item) {
            if (json_object_set_new_nocheck(copy, key, render_copy(item)) < 0) {
                json_decref(copy);
                return NULL;
            }
        }
        return copy;
    }
    if (json_is_array(value)) {
        size_t i;
        json_t *item;

        copy = json_array();
        if (!copy)
            return NULL;
        json_array_foreach(value, i, item) {
            if (json_array_append_new(copy, render_copy(item)) < 0) {
                json_decref(copy);
                return NULL;
            }
        }
        return copy;
    }
    return json_incref((json_t *)value);
}

const char *render_type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}
