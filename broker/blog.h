/*
 * blog.h - kabard's log: one line per happening, on stderr.
 *
 * Every line has the same shape, so that operators can grep and ship it:
 *
 *     2026-11-25T07:40:00.123Z kabard INFO KABARD-READY listening on tcp://...
 *     ^ UTC, milliseconds       ^name  ^level ^stable code  ^text for a person
 *
 * The code (KABARD-READY, KABARD-BAD-MSG, ...) is stable across versions and
 * listed in docs/OPERATIONS.md; the text may change. A line is written with
 * one write(2), so lines from several threads or processes never interleave.
 *
 * Input from peers can be bad at any rate, so what it causes is logged
 * through a blog_limit: at most BLOG_BURST lines per second per limiter; the
 * rest are counted and reported as one summary line when the second is over
 * (blog_limit_flush, called from the broker's timer phase).
 *
 * Not thread-safe to reconfigure (blog_init) while others log.
 */
#ifndef KABARD_BLOG_H
#define KABARD_BLOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum blog_level {
    BLOG_DEBUG = 0,
    BLOG_INFO,
    BLOG_WARN,
    BLOG_ERROR,
} blog_level;

#define BLOG_BURST    5    /* lines per second through one blog_limit */
#define BLOG_LINE_MAX 1024 /* longer lines are cut, ending in "..." */

/* Log lines of `min` and above to file descriptor `fd` (default: 2, BLOG_INFO). */
void blog_init(int fd, blog_level min);
bool blog_enabled(blog_level level);
/* "DEBUG", "INFO", "WARN", "ERROR". */
const char *blog_level_name(blog_level level);
/* Parse "debug", "info", "warn" or "error"; -1 when it is none of them. */
int blog_level_parse(const char *s);

/* Write one line: timestamp, "kabard", level, code, then the formatted text. */
void blog(blog_level level, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Format one line into out (at least BLOG_LINE_MAX bytes) without writing
 * it; returns its length including the final newline. For tests.
 */
int blog_format(char *out, int64_t now_ns, blog_level level, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A rate limiter for one kind of line. Zero-initialise. */
typedef struct blog_limit {
    int64_t window_ms;   /* start of the current one-second window (monotonic ms) */
    uint32_t lines;      /* lines written in that window */
    uint64_t suppressed; /* lines not written since the last summary */
    blog_level level;    /* of the last suppressed line, for the summary */
    const char *code;
} blog_limit;

/*
 * Log through the limiter, `now_ms` being a monotonic clock in ms. Returns
 * true when the line was written, false when it was only counted.
 */
bool blog_limited(blog_limit *l, int64_t now_ms, blog_level level, const char *code,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * When the limiter's window is over and lines were suppressed, write one
 * summary ("... 1234 more lines like this suppressed in the last 1 s") and
 * start a new window.
 */
void blog_limit_flush(blog_limit *l, int64_t now_ms);

#endif /* KABARD_BLOG_H */
