/* Small helpers shared by the supervisor's modules. */
#ifndef DROVER_UTIL_H
#define DROVER_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds on the monotonic clock. */
int64_t util_now_ms(void);

/* Returns a random value in [0, max_ms]. */
int64_t util_jitter_ms(int64_t max_ms);

/* Returns base_ms scaled by a random factor in [1 - fraction, 1 + fraction]. */
int64_t util_jittered(int64_t base_ms, double fraction);

/* Writes the current UTC time plus offset_s as ISO 8601 with microseconds
 * and a Z suffix. */
void util_iso_time(char *out, size_t outlen, double offset_s);

/* Writes a random lowercase UUID (version 4) into out (37 bytes). */
void util_uuid4(char out[37]);

/* Overwrites a secret in memory. */
void util_wipe(void *p, size_t n);

/* Copies src into dst (size n), always NUL-terminated; returns 0, or -1 when truncated. */
int util_strlcpy(char *dst, const char *src, size_t n);

#endif
