/*
 * Text helpers of the executor SDK: key=value log lines on stderr, UTF-8
 * cleaning of infrastructure output, and POSIX command splitting.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sdk_internal.h"

/* One log line is built in a buffer and written with one write(2), so that
 * lines of concurrent processes sharing stderr do not interleave. */
#define TEXT_LOG_MAX 4096

static void text_vlog(const struct drover_executor *ex, const struct drover_run *run,
                      const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

static void text_vlog(const struct drover_executor *ex, const struct drover_run *run,
                      const char *fmt, va_list ap)
{
    char line[TEXT_LOG_MAX];
    size_t n = 0;
    int w;

    w = snprintf(line, sizeof line, "executor=%s ",
                 ex && ex->id[0] ? ex->id : (ex && ex->type[0] ? ex->type : "-"));
    if (w > 0)
        n = (size_t)w < sizeof line ? (size_t)w : sizeof line - 1;
    if (run && n < sizeof line) {
        w = snprintf(line + n, sizeof line - n, "flow_run=%s ", run->flow_run_id);
        if (w > 0)
            n += (size_t)w < sizeof line - n ? (size_t)w : sizeof line - n - 1;
    }
    if (n < sizeof line) {
        w = vsnprintf(line + n, sizeof line - n, fmt, ap);
        if (w > 0)
            n += (size_t)w < sizeof line - n ? (size_t)w : sizeof line - n - 1;
    }
    if (n >= sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';

    ssize_t off = 0;
    while ((size_t)off < n) {
        ssize_t r = write(STDERR_FILENO, line + off, n - (size_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        off += r;
    }
}

void sdk_logf(const struct drover_executor *ex, const struct drover_run *run, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    text_vlog(ex, run, fmt, ap);
    va_end(ap);
}

void drover_log(const struct drover_executor *ex, const struct drover_run *run, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    text_vlog(ex, run, fmt, ap);
    va_end(ap);
}

/* Returns the length of the valid UTF-8 sequence at s[0..len), or 0. */
static size_t text_utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t need;
    uint32_t cp;

    /* A NUL would end the line early on the wire, so it counts as invalid. */
    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and code points above U+10FFFF. */
    if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return need;
}

char *drover_utf8_clean(const char *src, size_t len, size_t max)
{
    static const char replacement[] = "\xef\xbf\xbd";
    const unsigned char *s = (const unsigned char *)src;
    size_t cap = len <= max / 3 ? len * 3 : max;
    size_t n = 0, i = 0;
    char *out;

    /* Every input byte yields at most 3 output bytes, and output stops at max. */
    out = malloc(cap + 1);
    if (!out)
        return NULL;
    while (i < len) {
        size_t seq = text_utf8_seq(s + i, len - i);
        const char *piece = seq ? src + i : replacement;
        size_t plen = seq ? seq : 3;

        if (n + plen > cap)
            break;
        memcpy(out + n, piece, plen);
        n += plen;
        i += seq ? seq : 1;
    }
    out[n] = '\0';
    return out;
}

/* Growable word buffer with the cap of the longest accepted command. */
struct text_word {
    char  *data;
    size_t len;
    size_t cap;
};

#define TEXT_MAX_COMMAND (DROVER_MAX_CONFIG)
#define TEXT_MAX_WORDS   65536

static int text_word_put(struct text_word *w, char c)
{
    if (w->len + 2 > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        char *grown = realloc(w->data, cap);
        if (!grown)
            return -1;
        w->data = grown;
        w->cap = cap;
    }
    w->data[w->len++] = c;
    w->data[w->len] = '\0';
    return 0;
}

static int text_argv_push(char ***argv, size_t *n, size_t *cap, struct text_word *w)
{
    if (*n + 2 > *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        char **grown;

        if (c > TEXT_MAX_WORDS)
            return -1;
        grown = realloc(*argv, c * sizeof **argv);
        if (!grown)
            return -1;
        *argv = grown;
        *cap = c;
    }
    (*argv)[(*n)++] = w->data ? w->data : strdup("");
    (*argv)[*n] = NULL;
    w->data = NULL;
    w->len = w->cap = 0;
    return (*argv)[*n - 1] ? 0 : -1;
}

void drover_argv_free(char ***argv)
{
    if (!argv || !*argv)
        return;
    for (char **p = *argv; *p; p++)
        free(*p);
    free(*argv);
    *argv = NULL;
}

/*
 * The rules of Python's shlex.split in POSIX mode: blanks separate words;
 * a backslash outside quotes takes the next character literally; single
 * quotes take everything literally; inside double quotes a backslash only
 * escapes a double quote or a backslash.  "" and '' make empty words.
 */
char **drover_split_command(const char *command, char *err, size_t errlen)
{
    enum { OUTSIDE, SINGLE, DOUBLE } state = OUTSIDE;
    struct text_word w = {0};
    char **argv = NULL;
    size_t n = 0, cap = 0;
    int in_word = 0;
    const char *p;

    if (strlen(command) > TEXT_MAX_COMMAND) {
        snprintf(err, errlen, "command is longer than %u bytes", TEXT_MAX_COMMAND);
        return NULL;
    }
    argv = calloc(1, sizeof *argv);
    if (!argv)
        goto oom;
    cap = 1;

    for (p = command; *p; p++) {
        char c = *p;

        if (state == SINGLE) {
            if (c == '\'')
                state = OUTSIDE;
            else if (text_word_put(&w, c) < 0)
                goto oom;
            continue;
        }
        if (state == DOUBLE) {
            if (c == '"') {
                state = OUTSIDE;
                continue;
            }
            if (c == '\\' && (p[1] == '"' || p[1] == '\\'))
                c = *++p;
            else if (c == '\\' && p[1] == '\0')
                goto no_escaped;
            if (text_word_put(&w, c) < 0)
                goto oom;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (in_word && text_argv_push(&argv, &n, &cap, &w) < 0)
                goto oom;
            in_word = 0;
            continue;
        }
        in_word = 1;
        if (c == '\'') {
            state = SINGLE;
        } else if (c == '"') {
            state = DOUBLE;
        } else {
            if (c == '\\') {
                if (p[1] == '\0')
                    goto no_escaped;
                c = *++p;
            }
            if (text_word_put(&w, c) < 0)
                goto oom;
        }
    }
    if (state != OUTSIDE) {
        snprintf(err, errlen, "invalid command %.200s: no closing quotation", command);
        goto fail;
    }
    if (in_word && text_argv_push(&argv, &n, &cap, &w) < 0)
        goto oom;
    return argv;

no_escaped:
    snprintf(err, errlen, "invalid command %.200s: a backslash ends it", command);
    goto fail;
oom:
    snprintf(err, errlen, "out of memory splitting the command");
fail:
    free(w.data);
    drover_argv_free(&argv);
    return NULL;
}
