/*
 * Placeholder scanning and value lookup with Prefect's rules.
 *
 * A placeholder is a match of the regular expression
 * {{\s*([\w.\-\[\]$]+)\s*}} with Python's Unicode classes for \w and \s,
 * found left to right without overlaps as re.findall finds them.  Because
 * the name class, \s and '}' are disjoint, the match at a given start is
 * unique, so a direct scan gives the same matches as the regex engine.
 *
 * render_lookup follows prefect.utilities.collections.get_from_dict: the
 * path's '[' become '.', ']' are dropped, the result is split on '.'; an
 * object is indexed by exact key, anything else by int(segment) as Python
 * indexes lists and strings.
 */
#include <stdlib.h>
#include <string.h>

#include "render.h"

#define BLOCK_PREFIX "prefect.blocks."
#define VARIABLE_PREFIX "prefect.variables."

/* ASCII classes: 1 = name character ([\w.\-\[\]$]), 2 = \s; bytes >= 0x80
 * are 0 and go to the Unicode checks. */
static const unsigned char ascii_class[256] = {
    ['\t'] = 2, ['\n'] = 2, ['\v'] = 2, ['\f'] = 2, ['\r'] = 2,
    [0x1C] = 2, [0x1D] = 2, [0x1E] = 2, [0x1F] = 2, [' '] = 2,
    ['$'] = 1, ['-'] = 1, ['.'] = 1, ['['] = 1, [']'] = 1, ['_'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* The ASCII loops run until a byte of another class; a byte >= 0x80 has
 * class 0 there and is then decoded and checked against Unicode. */
static size_t skip_space(const char *text, size_t len, size_t i)
{
    for (;;) {
        uint32_t cp;
        size_t n;

        while (i < len && ascii_class[(unsigned char)text[i]] == 2)
            i++;
        if (i >= len || (unsigned char)text[i] < 0x80)
            return i;
        n = render_utf8_decode(text + i, len - i, &cp);
        if (!render_uc_is_space(cp))
            return i;
        i += n;
    }
}

static size_t skip_name(const char *text, size_t len, size_t i)
{
    for (;;) {
        uint32_t cp;
        size_t n;

        while (i < len && ascii_class[(unsigned char)text[i]] == 1)
            i++;
        if (i >= len || (unsigned char)text[i] < 0x80)
            return i;
        n = render_utf8_decode(text + i, len - i, &cp);
        if (!render_uc_is_word(cp))
            return i;
        i += n;
    }
}

static enum render_ph_kind classify(const char *name, size_t len)
{
    if (len >= strlen(BLOCK_PREFIX) && memcmp(name, BLOCK_PREFIX, strlen(BLOCK_PREFIX)) == 0)
        return RENDER_PH_BLOCK;
    if (len >= strlen(VARIABLE_PREFIX) &&
        memcmp(name, VARIABLE_PREFIX, strlen(VARIABLE_PREFIX)) == 0)
        return RENDER_PH_VARIABLE;
    if (len > 0 && name[0] == '$')
        return RENDER_PH_ENV;
    return RENDER_PH_STANDARD;
}

/* The scan from the first '{' on; kept out of line so that the common call
 * on a string without any '{' costs one memchr and no register spills. */
static __attribute__((noinline)) int ph_scan(const char *text, size_t len, const char *brace,
                                              struct render_ph *ph)
{
    for (;;) {
        size_t i = (size_t)(brace - text);
        size_t name_start;
        size_t name_end;

        if (text[i + 1] == '{') {
            name_start = skip_space(text, len, i + 2);
            name_end = skip_name(text, len, name_start);
            if (name_end > name_start) {
                size_t close = skip_space(text, len, name_end);
                if (close + 1 < len && text[close] == '}' && text[close + 1] == '}') {
                    ph->start = i;
                    ph->end = close + 2;
                    ph->name_start = name_start;
                    ph->name_end = name_end;
                    ph->kind = classify(text + name_start, name_end - name_start);
                    return 1;
                }
            }
        }
        if (i + 2 >= len)
            return 0;
        brace = memchr(text + i + 1, '{', len - i - 2);
        if (!brace)
            return 0;
    }
}

int render_ph_next(const char *text, size_t len, size_t pos, struct render_ph *ph)
{
    const char *brace;

    if (pos + 1 >= len)
        return 0;
    brace = memchr(text + pos, '{', len - pos - 1);
    if (!brace)
        return 0;
    return ph_scan(text, len, brace, ph);
}

/* int(segment) as Python parses it: an optional '-' ('+' and spaces cannot
 * occur in a name), decimal digits of any script, single '_' between digits.
 * Returns 0 and the value (saturated, *big set on overflow), or -1. */
static int parse_python_int(const char *s, size_t len, long long *out, int *big)
{
    size_t i = 0;
    int negative = 0;
    int digits = 0;
    int last_underscore = 0;
    unsigned long long value = 0;

    *big = 0;
    if (i < len && s[i] == '-') {
        negative = 1;
        i++;
    }
    while (i < len) {
        uint32_t cp;
        size_t n = render_utf8_decode(s + i, len - i, &cp);
        int d;

        if (cp == '_') {
            if (!digits || last_underscore)
                return -1;
            last_underscore = 1;
            i += n;
            continue;
        }
        d = render_uc_decimal(cp);
        if (d < 0)
            return -1;
        if (value > (unsigned long long)INT64_MAX / 10)
            *big = 1;
        else
            value = value * 10 + (unsigned)d;
        if (value > (unsigned long long)INT64_MAX)
            *big = 1;
        digits++;
        last_underscore = 0;
        i += n;
    }
    if (!digits || last_underscore)
        return -1;
    *out = *big ? 0 : (negative ? -(long long)value : (long long)value);
    return 0;
}

static size_t utf8_count(const char *s, size_t len)
{
    size_t count = 0;

    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    return count;
}

/* Index a string by code point, as Python's str[i]. */
static json_t *string_index(const json_t *value, long long index)
{
    const char *s = json_string_value(value);
    size_t len = json_string_length(value);
    long long count = (long long)utf8_count(s, len);
    long long at;
    size_t i = 0;

    if (index < 0)
        index += count;
    if (index < 0 || index >= count)
        return NULL;
    for (at = 0; at < index; at++) {
        uint32_t cp;
        i += render_utf8_decode(s + i, len - i, &cp);
    }
    {
        uint32_t cp;
        size_t n = render_utf8_decode(s + i, len - i, &cp);
        return json_stringn(s + i, n);
    }
}

json_t *render_lookup_segment(const json_t *value, const char *seg, size_t seglen)
{
    long long index;
    int big;

    if (json_is_object(value)) {
        json_t *found = json_object_getn(value, seg, seglen);
        return found ? json_incref(found) : NULL;
    }
    if (!json_is_array(value) && !json_is_string(value))
        return NULL;
    if (parse_python_int(seg, seglen, &index, &big) < 0 || big)
        return NULL;
    if (json_is_string(value))
        return string_index(value, index);
    if (index < 0)
        index += (long long)json_array_size(value);
    if (index < 0 || (size_t)index >= json_array_size(value))
        return NULL;
    return json_incref(json_array_get(value, (size_t)index));
}

json_t *render_lookup(const json_t *root, const char *path, size_t len)
{
    char small[256];
    char *seg = small;
    size_t seglen = 0;
    json_t *current = json_incref((json_t *)root);

    if (len >= sizeof(small)) {
        seg = malloc(len + 1);
        if (!seg) {
            json_decref(current);
            return NULL;
        }
    }
    for (size_t i = 0; i <= len && current; i++) {
        if (i == len || path[i] == '.' || path[i] == '[') {
            json_t *next = render_lookup_segment(current, seg, seglen);
            json_decref(current);
            current = next;
            seglen = 0;
        } else if (path[i] != ']') {
            seg[seglen++] = path[i];
        }
    }
    if (seg != small)
        free(seg);
    return current;
}

/* A property's "default".  Property objects hold a handful of keys, so
 * comparing them in order is cheaper than hashing "default" each time. */
static json_t *property_default(const json_t *attrs)
{
    const char *key;
    json_t *value;
    void *iter;

    if (json_object_size(attrs) > 8)
        return json_object_getn(attrs, "default", 7);
    RENDER_OBJECT_FOREACH((json_t *)attrs, iter, key, value)
        if (key[0] == 'd' && json_object_iter_key_len(iter) == 7 &&
            memcmp(key, "default", 7) == 0)
            return value;
    return NULL;
}

json_t *render_lookup_layered(const json_t *values, const json_t *properties, const char *path,
                              size_t len)
{
    char small[256];
    char *seg = (char *)path;
    size_t seglen;
    size_t d = 0;
    int bracket = 0;
    json_t *root = NULL;
    json_t *result;

    for (; d < len; d++) {
        if (path[d] == '.' || path[d] == '[')
            break;
        if (path[d] == ']')
            bracket = 1;
    }
    seglen = d;
    /* Only a first segment with ']' in it needs a copy without them. */
    if (bracket) {
        seg = d >= sizeof(small) ? malloc(d + 1) : small;
        if (!seg)
            return NULL;
        seglen = 0;
        for (size_t i = 0; i < d; i++)
            if (path[i] != ']')
                seg[seglen++] = path[i];
    }

    if (values)
        root = json_object_getn(values, seg, seglen);
    if (!root && properties) {
        json_t *attrs = json_object_getn(properties, seg, seglen);
        json_t *def = json_is_object(attrs) ? property_default(attrs) : NULL;

        if (def && !json_is_null(def))
            root = def;
    }
    if (seg != small && seg != path)
        free(seg);
    if (!root)
        return NULL;
    if (d == len)
        return json_incref(root);
    result = render_lookup(root, path + d + 1, len - d - 1);
    return result;
}
