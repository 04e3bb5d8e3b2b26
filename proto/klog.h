/*
 * klog.h - the log of kabar's daemons (kabard, kabar-agent,
 * kabar-oversight): one line per happening, on stderr.
 *
 * Every line has the same shape in every program, so that operators can
 * grep and ship them all alike:
 *
 *     2026-11-25T07:40:00.123Z kabard INFO KABARD-READY listening on tcp://...
 *     ^ UTC, milliseconds       ^name  ^level ^stable code  ^text for a person
 *
 * The code (KABARD-READY, KABAR-AGENT-BROKER-DOWN, ...) is stable across
 * versions and listed in docs/OPERATIONS.md, docs/AGENT.md and
 * docs/OVERSIGHT.md; the text may change. A line is written with
 * one write(2), so lines from several threads or processes never interleave.
 *
 * Input from peers can be bad at any rate, so what it causes is logged
 * through a klog_limit: at most KLOG_BURST lines per second per limiter; the
 * rest are counted and reported as one summary line when the second is over
 * (klog_limit_flush, called from the broker's timer phase).
 *
 * Not thread-safe to reconfigure (klog_init) while others log.
 */
#ifndef KABAR_KLOG_H
#define KABAR_KLOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum klog_level {
    KLOG_DEBUG = 0,
    KLOG_INFO,
    KLOG_WARN,
    KLOG_ERROR,
} klog_level;

#define KLOG_BURST    5    /* lines per second through one klog_limit */
#define KLOG_LINE_MAX 1024 /* longer lines are cut, ending in "..." */

/*
 * Log as program `name` (a string that outlives the logging), lines of `min`
 * and above, to file descriptor `fd` (defaults: "kabar", 2, KLOG_INFO).
 */
void klog_init(const char *name, int fd, klog_level min);
bool klog_enabled(klog_level level);
/* "DEBUG", "INFO", "WARN", "ERROR". */
const char *klog_level_name(klog_level level);
/* Parse "debug", "info", "warn" or "error"; -1 when it is none of them. */
int klog_level_parse(const char *s);

/* Write one line: timestamp, program name, level, code, then the formatted text. */
void klog(klog_level level, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Format one line into out (at least KLOG_LINE_MAX bytes) without writing
 * it; returns its length including the final newline. For tests.
 */
int klog_format(char *out, int64_t now_ns, klog_level level, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A rate limiter for one kind of line. Zero-initialise. */
typedef struct klog_limit {
    int64_t window_ms;   /* start of the current one-second window (monotonic ms) */
    uint32_t lines;      /* lines written in that window */
    uint64_t suppressed; /* lines not written since the last summary */
    klog_level level;    /* of the last suppressed line, for the summary */
    const char *code;
} klog_limit;

/*
 * Log through the limiter, `now_ms` being a monotonic clock in ms. Returns
 * true when the line was written, false when it was only counted.
 */
bool klog_limited(klog_limit *l, int64_t now_ms, klog_level level, const char *code,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * When the limiter's window is over and lines were suppressed, write one
 * summary ("... 1234 more lines like this suppressed in the last 1 s") and
 * start a new window.
 */
void klog_limit_flush(klog_limit *l, int64_t now_ms);

#endif /* KABAR_KLOG_H */
