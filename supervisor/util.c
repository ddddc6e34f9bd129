/* Small helpers shared by the supervisor's modules; see util.h. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int64_t
util_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
util_random64(void)
{
    static uint64_t state;

    if (state == 0) {
        struct timespec ts;
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

        if (fd >= 0) {
            if (read(fd, &state, sizeof state) != (ssize_t)sizeof state)
                state = 0;
            close(fd);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        state ^= (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
    }
    /* xorshift64*: ids and jitter need spread, not secrecy. */
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545f4914f6cdd1dULL;
}

int64_t
util_jitter_ms(int64_t max_ms)
{
    if (max_ms <= 0)
        return 0;
    return (int64_t)(util_random64() % (uint64_t)(max_ms + 1));
}

int64_t
util_jittered(int64_t base_ms, double fraction)
{
    int64_t span = (int64_t)((double)base_ms * fraction);

    return base_ms - span + util_jitter_ms(2 * span);
}

void
util_iso_time(char *out, size_t outlen, double offset_s)
{
    struct timeval tv;
    struct tm tm;
    char stamp[32];
    int64_t us;
    time_t sec;

    gettimeofday(&tv, NULL);
    us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec + (int64_t)(offset_s * 1e6);
    sec = (time_t)(us / 1000000);
    gmtime_r(&sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%06ldZ", stamp, (long)(us % 1000000));
}

void
util_uuid4(char out[37])
{
    unsigned char b[16];
    uint64_t a = util_random64(), c = util_random64();

    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
             b[12], b[13], b[14], b[15]);
}

void
util_wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;

    while (n--)
        *v++ = 0;
}

int
util_strlcpy(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);

    if (n == 0)
        return -1;
    if (len >= n) {
        memcpy(dst, src, n - 1);
        dst[n - 1] = '\0';
        return -1;
    }
    memcpy(dst, src, len + 1);
    return 0;
}
